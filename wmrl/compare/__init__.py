"""`wmrl compare`: training runs beside the published DreamerV3 learning curves.

  wmrl compare runs/walker runs/cheetah --reference dmc_proprio
  wmrl compare runs/ --reference dmc_proprio --frames 100k,400k --metric eval/score --out cmp/
  wmrl compare runs/ --reference dmc_proprio --require-inside 0.8   # exit status 3 below 80%

Each path is a run folder (it holds ``config.json`` and ``metrics.jsonl``) or a
folder searched recursively for run folders. Runs are grouped by task (the env
id mapped to the reference's names by `wmrl.suites.task_name`); the runs of a
task are its seeds. Everything is on the published curves' axis, environment
frames: a record's `frames` (agent steps x action repeat x the emulator's frame
skip), or for runs written before wmrl logged them, that product from the run's
config.json (with a warning). Per task and point the table shows the runs' mean
[min, max] over seeds beside the published mean [min, max], and whether the
runs' mean lies inside the published [min, max] of the seed means (`in` /
`out`); per task and overall, the share of points inside, which
`--require-inside FRACTION` turns into exit status 3 below it. The aggregate
rows give the mean, median and interquartile mean (IQM) over tasks of the scores
normalised by the published mean, with 95% stratified-bootstrap confidence
intervals (as rliable). A reference is a suite of wmrl/suites.py that has
published figures.

One module per job: `references` (the published figures), `runs` (reading run
folders), `scores` (a run's score at a point, the table's points), `stats`
(IQM, bootstrap), `comparison` (the result dict and the verdict), `tables`,
`outputs` (JSON, Markdown, plots) and `cli`. Everything here is host-side NumPy;
matplotlib is needed only for ``--out``.
"""
from wmrl.compare.cli import main, parse_fraction, parse_frames
from wmrl.compare.comparison import compare, inside, share_inside
from wmrl.compare.errors import CompareError
from wmrl.compare.outputs import plot_task, write_outputs
from wmrl.compare.references import Reference, load_reference, parse_reference
from wmrl.compare.runs import Run, find_runs, load_run
from wmrl.compare.scores import default_frames, window_scores
from wmrl.compare.stats import STATISTICS, aggregate, iqm
from wmrl.compare.tables import format_markdown, format_table, frames_label
from wmrl.suites import frames_per_step, task_name

__all__ = ["CompareError", "Reference", "Run", "STATISTICS", "aggregate", "compare",
           "default_frames", "find_runs", "format_markdown", "format_table", "frames_label",
           "frames_per_step", "inside", "iqm", "load_reference", "load_run", "main",
           "parse_fraction", "parse_frames", "parse_reference", "plot_task", "share_inside",
           "task_name", "window_scores", "write_outputs"]
