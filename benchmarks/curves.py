"""Learning curves over seeds: the mean and a 95% interval at each point, as CSV and a plot.

  python benchmarks/curves.py RUNS... --name cartpole_classic [--every 1000] [--metric episode/score]

RUNS are run folders or folders holding them (a `--run.seeds` logdir holds
seed-0, seed-1, ...). At every `--every` environment frames up to where the
shortest run got, each run's score is the mean of its records in the
`--every` frames before (wmrl compare's scoring, wmrl/compare/scores.py);
the row holds their mean over seeds and a 95% percentile-bootstrap interval
of that mean (seeds resampled, 10,000 times), and each seed's score.
Writes benchmarks/results/curves_<name>.csv and docs/images/curves_<name>.png
(matplotlib: the `plot` extra), and prints the last point and, where the runs
evaluated, their last evaluation's mean and interval.

`--beside DIR...` adds runs of the reference implementation itself (its
logdirs: `metrics.jsonl`, whose `step` its logger already counts in frames,
and `config.yaml`) on the same axis: their mean and interval go beside
wmrl's in the CSV (columns `ref_*`) and the plot, and each point prints the
difference of the means with its 95% bootstrap interval (each side's seeds
resampled).
"""
from __future__ import annotations

import argparse
import csv
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wmrl.compare.plot import interval  # noqa: E402
from wmrl.compare.runs import Run, find_runs, load_run  # noqa: E402
from wmrl.compare.scores import window_scores  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "images"


def load_reference_run(path: pathlib.Path, metric: str) -> Run:
  """A logdir of the reference's `dreamerv3/main.py` as a `Run`: its records'
  `step` are frames already (its logger multiplies by the action repeat)."""
  import json
  import re
  records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()
             if line.strip()]
  config = (path / "config.yaml").read_text()
  seed = int(re.search(r"^seed: (\d+)", config, re.M).group(1))
  task = re.search(r"^task: (\S+)", config, re.M).group(1)
  points = sorted((int(r["step"]), float(r[metric])) for r in records if metric in r)
  last = max((int(r["step"]) for r in records), default=0)
  return Run(str(path), f"reference {task}", task, seed, last_frame=last,
             frames=np.array([p[0] for p in points], np.int64),
             values=np.array([p[1] for p in points], np.float64),
             metrics=frozenset(k for r in records for k in r), last_step=last)


def reference_curves(paths: list[str], frames: np.ndarray, every: int,
                     metric: str) -> tuple[list, np.ndarray]:
  folders = sorted({p.parent for raw in paths for p in pathlib.Path(raw).rglob("metrics.jsonl")
                    if (p.parent / "config.yaml").is_file()})
  runs = sorted((load_reference_run(f, metric) for f in folders), key=lambda run: run.seed)
  return runs, np.stack([window_scores(run, frames, every) for run in runs])


def difference(a: np.ndarray, b: np.ndarray, resamples: int = 10_000,
               seed: int = 0) -> tuple[float, float, float]:
  """mean(a) - mean(b) and its 95% percentile-bootstrap interval (each side's
  seeds resampled on their own)."""
  rng = np.random.default_rng(seed)
  draw = lambda x: x[rng.integers(0, len(x), (resamples, len(x)))].mean(1)
  low, high = np.percentile(draw(a) - draw(b), [2.5, 97.5])
  return float(a.mean() - b.mean()), float(low), float(high)


def curves(paths: list[str], every: int, metric: str) -> tuple[list, np.ndarray, np.ndarray]:
  """(runs, frames [P], scores [seeds, P]) at every `every` frames both reached."""
  runs = sorted((load_run(path, metric) for path in find_runs(paths)),
                key=lambda run: (run.seed is None, run.seed))
  last = min(run.last_frame for run in runs)
  frames = np.arange(every, last + 1, every)
  return runs, frames, np.stack([window_scores(run, frames, every) for run in runs])


def _summary(column: np.ndarray) -> list[str]:
  """seeds, mean, ci_low, ci_high of one point's finite scores."""
  done = column[np.isfinite(column)]
  low, high = interval(done) if len(done) else (np.nan, np.nan)
  return [str(len(done)), f"{done.mean():.4g}" if len(done) else "", f"{low:.4g}", f"{high:.4g}"]


def write(name: str, runs, frames, scores, reference=None) -> pathlib.Path:
  path = RESULTS / f"curves_{name}.csv"
  seeds = [f"seed_{run.seed}" for run in runs]
  head = ["frames", "seeds", "mean", "ci_low", "ci_high"]
  if reference is not None:
    ref_runs, ref_scores = reference
    head += ["ref_seeds", "ref_mean", "ref_ci_low", "ref_ci_high"]
    seeds += [f"ref_seed_{run.seed}" for run in ref_runs]
  with path.open("w", newline="") as f:
    out = csv.writer(f)
    out.writerow([*head, *seeds])
    for i, frame in enumerate(frames):
      row = [int(frame), *_summary(scores[:, i])]
      values = list(scores[:, i])
      if reference is not None:
        row += _summary(ref_scores[:, i])
        values += list(ref_scores[:, i])
      out.writerow([*row, *(f"{v:.4g}" for v in values)])
  return path


def plot(name: str, runs, frames, scores, title: str, reference=None) -> pathlib.Path:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 3.6))
  groups = [("wmrl", runs, scores, "C0")]
  if reference is not None:
    groups.append(("reference", *reference, "C1"))
  for label, group_runs, group_scores, color in groups:
    for row in group_scores:
      ax.plot(frames, row, color=color, alpha=0.25, linewidth=0.8)
    mean = np.nanmean(group_scores, 0)
    bounds = np.array([interval(col[np.isfinite(col)]) for col in group_scores.T])
    prefix = f"{label}: " if reference is not None else ""
    ax.fill_between(frames, bounds[:, 0], bounds[:, 1], color=color, alpha=0.25,
                    label=f"{prefix}95% interval of the mean")
    ax.plot(frames, mean, color=color, linewidth=2,
            label=f"{prefix}mean of {len(group_runs)} seeds")
  ax.set_xlabel("environment frames")
  ax.set_ylabel("episode score")
  ax.set_title(title)
  ax.legend(loc="lower right", fontsize=8)
  fig.tight_layout()
  path = IMAGES / f"curves_{name}.png"
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("runs", nargs="+")
  parser.add_argument("--name", required=True, help="curves_<name>.csv and .png")
  parser.add_argument("--every", type=int, default=1000, help="frames between points")
  parser.add_argument("--metric", default="episode/score")
  parser.add_argument("--title", default="")
  parser.add_argument("--no-plot", action="store_true")
  parser.add_argument("--beside", nargs="*", default=[],
                      help="logdirs of the reference implementation's runs (module doc)")
  args = parser.parse_args(argv)
  runs, frames, scores = curves(args.runs, args.every, args.metric)
  print(f"{len(runs)} runs of {runs[0].env_id}, seeds {[run.seed for run in runs]}")
  reference = None
  if args.beside:
    reference = reference_curves(args.beside, frames, args.every, args.metric)
    ref_runs, ref_scores = reference
    keep = np.isfinite(ref_scores).all(0)  # the points every reference seed reached too
    frames, scores, reference = frames[keep], scores[:, keep], (ref_runs, ref_scores[:, keep])
    if not len(frames):
      parser.error(f"no multiple of --every {args.every} frames that every run of both reached "
                   "with a record before it")
    print(f"beside {len(ref_runs)} runs of the reference, seeds {[r.seed for r in ref_runs]}")
    print("frames | wmrl mean [95%] | reference mean [95%] | wmrl - reference [95%]")
    for i, frame in enumerate(frames):
      ours, theirs = scores[:, i], reference[1][:, i]
      delta, low, high = difference(ours, theirs)
      print(f"{int(frame)} | {ours.mean():.1f} {np.round(interval(ours), 1).tolist()} | "
            f"{theirs.mean():.1f} {np.round(interval(theirs), 1).tolist()} | "
            f"{delta:+.1f} [{low:+.1f}, {high:+.1f}]")
  print(f"wrote {write(args.name, runs, frames, scores, reference)}")
  if not args.no_plot:
    print(f"wrote {plot(args.name, runs, frames, scores, args.title or runs[0].env_id, reference)}")
  last = scores[:, -1]
  low, high = interval(last)
  print(f"at {frames[-1]} frames: mean {last.mean():.1f} [{low:.1f}, {high:.1f}] over "
        f"{len(last)} seeds; each {np.round(last, 1).tolist()}")
  evals = [load_run(run.path, "eval/score") for run in runs]
  if all(len(e.values) for e in evals):
    finals = np.array([e.values[-1] for e in evals])
    low, high = interval(finals)
    print(f"last evaluation (at {[int(e.frames[-1]) for e in evals]} frames): mean "
          f"{finals.mean():.1f} [{low:.1f}, {high:.1f}]; each {np.round(finals, 1).tolist()}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
