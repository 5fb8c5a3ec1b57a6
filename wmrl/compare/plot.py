"""`wmrl plot RUNS... [--out DIR]`: learning curves of any runs, seeds grouped.

Works for every run `wmrl train` writes (classic control, JAX environments,
DMC, your own environment), with or without a published reference: the runs
are grouped by environment id (a `--run.seeds` logdir's seed-K folders, or
separate runs of one task, are one group), and for each group every point
holds the mean over its seeds and a 95% percentile-bootstrap interval of that
mean (the seeds resampled), of the training episodes' score and, where the
runs evaluated, of the evaluation score. A run's score at a point is the mean
of its records in the `--every` frames before it (wmrl compare's rule, the
last record before it where there is none). Writes to `--out`:

  <env>.png    the group's training and evaluation curves against environment
               frames (agent steps x action repeat), each seed thin, the mean
               bold, the interval shaded
  plot.md      a table: each group's seeds, last point, and its scores there
  plot.json    every point of every curve, with steps beside frames

`wmrl compare` puts runs beside the published curves; both read runs and
scores with the same functions (wmrl/compare/runs.py, scores.py).
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import re
import sys
from collections import defaultdict

import numpy as np

from wmrl.compare.errors import CompareError
from wmrl.compare.outputs import figure_class, json_ready
from wmrl.compare.runs import Run, find_runs, load_run
from wmrl.compare.scores import window_scores

METRICS = {"episode/score": "training episodes", "eval/score": "evaluation"}
POINTS = 40  # about how many points a curve gets when --every is not given


def interval(scores: np.ndarray, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
  """95% percentile-bootstrap interval of the mean of `scores` (one per seed)."""
  scores = np.asarray(scores, np.float64)
  if len(scores) == 1:
    return float(scores[0]), float(scores[0])
  rng = np.random.default_rng(seed)
  means = scores[rng.integers(0, len(scores), (resamples, len(scores)))].mean(1)
  low, high = np.percentile(means, [2.5, 97.5])
  return float(low), float(high)


def nice_every(last_frame: int, points: int = POINTS) -> int:
  """A round number of frames (1, 2 or 5 x 10^k) that gives about `points` points."""
  raw = max(last_frame / points, 1.0)
  power = 10 ** math.floor(math.log10(raw))
  return int(min((m * power for m in (1, 2, 5, 10) if m * power >= raw), default=10 * power))


def group_runs(paths: list[str]) -> dict[str, dict[str, list[Run]]]:
  """{env id: {metric: runs}}: every run's records of each metric it logged."""
  groups: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
  for path in find_runs(paths):
    for metric in METRICS:
      run = load_run(path, metric)
      if metric == "episode/score" or len(run.values):
        groups[run.env_id][metric].append(run)
  return groups


def curve(runs: list[Run], every: int) -> dict:
  """The seed mean and its interval at every `every` frames the runs reached, and each
  seed's score: NaN-free points only (where every run had a score)."""
  last = min(run.last_frame for run in runs)
  frames = np.arange(every, last + 1, every)
  scores = np.stack([window_scores(run, frames, every) for run in runs]) if len(frames) else (
      np.zeros((len(runs), 0)))
  keep = np.isfinite(scores).all(0)
  frames, scores = frames[keep], scores[:, keep]
  bounds = [interval(column) for column in scores.T]
  per_step = runs[0].frames_per_step or 1
  return {"frames": frames.tolist(), "steps": (frames // per_step).tolist(),
          "mean": scores.mean(0).tolist(), "ci_low": [b[0] for b in bounds],
          "ci_high": [b[1] for b in bounds],
          "seeds": {str(run.seed): row.tolist() for run, row in zip(runs, scores)}}


def summarize(groups: dict[str, dict[str, list[Run]]], every: int | None) -> dict:
  result = {}
  for env_id, by_metric in sorted(groups.items()):
    runs = by_metric["episode/score"]
    step = every or nice_every(min(run.last_frame for run in runs))
    result[env_id] = {"runs": [run.path for run in runs], "seeds": [run.seed for run in runs],
                      "every": step,
                      "curves": {metric: curve(group, step) for metric, group in by_metric.items()
                                 if group}}
  return result


def plot_group(env_id: str, summary: dict, path: pathlib.Path) -> None:
  figure = figure_class()(figsize=(6, 3.8), dpi=110)
  ax = figure.subplots()
  for (metric, points), color in zip(summary["curves"].items(), ("C0", "C1")):
    if not points["frames"]:
      continue
    for row in points["seeds"].values():
      ax.plot(points["frames"], row, color=color, alpha=0.3, linewidth=0.8)
    ax.fill_between(points["frames"], points["ci_low"], points["ci_high"], color=color,
                    alpha=0.25)
    ax.plot(points["frames"], points["mean"], color=color, linewidth=2,
            label=f"{METRICS[metric]}: mean of {len(points['seeds'])} (95% interval)")
  ax.set(title=env_id, xlabel="environment frames (agent steps x action repeat)",
         ylabel="score")
  ax.legend(loc="best", fontsize="small")
  ax.grid(alpha=0.3)
  figure.tight_layout()
  figure.savefig(path)


def markdown(result: dict) -> str:
  lines = ["| environment | seeds | last point (frames) | training episodes | evaluation |",
           "| --- | --- | --- | --- | --- |"]
  for env_id, summary in result.items():
    cells = []
    for metric in METRICS:
      points = summary["curves"].get(metric)
      if not points or not points["frames"]:
        cells.append("-")
        continue
      cells.append(f"{points['mean'][-1]:.4g} [{points['ci_low'][-1]:.4g}, "
                   f"{points['ci_high'][-1]:.4g}] at {points['frames'][-1]:,}")
    last = summary["curves"]["episode/score"]["frames"]
    lines.append(f"| {env_id} | {len(summary['seeds'])} | {last[-1] if last else 0:,} | "
                 f"{cells[0]} | {cells[1]} |")
  return ("Mean over seeds with a 95% bootstrap interval, at the last point each curve "
          "reached (a run's score: the mean of its records in the window before it).\n\n"
          + "\n".join(lines) + "\n")


def file_name(env_id: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "_", env_id).strip("_") or "runs"


def write(result: dict, out: pathlib.Path) -> list[pathlib.Path]:
  figure_class()  # fails before anything is written when matplotlib is missing
  if out.exists() and not out.is_dir():
    raise CompareError(f"--out '{out}' is a file; pass a folder for the plots and tables")
  out.mkdir(parents=True, exist_ok=True)
  written = [out / "plot.md", out / "plot.json"]
  written[0].write_text(markdown(result))
  written[1].write_text(json.dumps(json_ready(result), indent=1, allow_nan=False) + "\n")
  for env_id, summary in result.items():
    written.append(out / f"{file_name(env_id)}.png")
    plot_group(env_id, summary, written[-1])
  return written


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="wmrl plot", description="Learning curves of runs, seeds grouped by environment "
      "(mean and 95% interval), as PNG, Markdown and JSON.")
  parser.add_argument("runs", nargs="+", help="run folders, or folders holding them")
  parser.add_argument("--out", default="plots", help="folder for the files (default: plots)")
  parser.add_argument("--every", type=int, help="frames between points (default: about "
                      f"{POINTS} points)")
  args = parser.parse_args(argv)
  if args.every is not None and args.every < 1:
    parser.error(f"--every must be at least 1 frame, got {args.every}")
  try:
    result = summarize(group_runs(args.runs), args.every)
    written = write(result, pathlib.Path(args.out))
  except CompareError as e:
    print(f"wmrl plot: error: {e}", file=sys.stderr)
    return 2
  print(markdown(result), end="")
  print("wrote " + ", ".join(str(p) for p in written))
  return 0
