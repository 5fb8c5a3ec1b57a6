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
"""
from __future__ import annotations

import argparse
import csv
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wmrl.compare.runs import find_runs, load_run  # noqa: E402
from wmrl.compare.scores import window_scores  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "images"


def interval(scores: np.ndarray, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
  """95% percentile-bootstrap interval of the mean of `scores` (one per seed)."""
  rng = np.random.default_rng(seed)
  means = scores[rng.integers(0, len(scores), (resamples, len(scores)))].mean(1)
  return tuple(float(v) for v in np.percentile(means, [2.5, 97.5]))


def curves(paths: list[str], every: int, metric: str) -> tuple[list, np.ndarray, np.ndarray]:
  """(runs, frames [P], scores [seeds, P]) at every `every` frames both reached."""
  runs = sorted((load_run(path, metric) for path in find_runs(paths)),
                key=lambda run: (run.seed is None, run.seed))
  last = min(run.last_frame for run in runs)
  frames = np.arange(every, last + 1, every)
  return runs, frames, np.stack([window_scores(run, frames, every) for run in runs])


def write(name: str, runs, frames, scores) -> pathlib.Path:
  path = RESULTS / f"curves_{name}.csv"
  seeds = [f"seed_{run.seed}" for run in runs]
  with path.open("w", newline="") as f:
    out = csv.writer(f)
    out.writerow(["frames", "seeds", "mean", "ci_low", "ci_high", *seeds])
    for i, frame in enumerate(frames):
      column = scores[:, i]
      done = column[np.isfinite(column)]
      low, high = interval(done) if len(done) else (np.nan, np.nan)
      out.writerow([int(frame), len(done), f"{done.mean():.4g}" if len(done) else "",
                    f"{low:.4g}", f"{high:.4g}", *(f"{v:.4g}" for v in column)])
  return path


def plot(name: str, runs, frames, scores, title: str) -> pathlib.Path:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 3.6))
  for row in scores:
    ax.plot(frames, row, color="0.75", linewidth=0.8)
  mean = np.nanmean(scores, 0)
  bounds = np.array([interval(col[np.isfinite(col)]) for col in scores.T])
  ax.fill_between(frames, bounds[:, 0], bounds[:, 1], alpha=0.3, label="95% interval of the mean")
  ax.plot(frames, mean, linewidth=2, label=f"mean of {len(runs)} seeds")
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
  args = parser.parse_args(argv)
  runs, frames, scores = curves(args.runs, args.every, args.metric)
  print(f"{len(runs)} runs of {runs[0].env_id}, seeds {[run.seed for run in runs]}")
  print(f"wrote {write(args.name, runs, frames, scores)}")
  if not args.no_plot:
    print(f"wrote {plot(args.name, runs, frames, scores, args.title or runs[0].env_id)}")
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
