"""Learning benchmark: DMC cartpole-balance, reacher-easy and walker-walk from
proprioception, scored against the published DreamerV3 curves.

  python benchmarks/learning.py --steps 100000                      # reference settings
  python benchmarks/learning.py --steps 50000 --train-ratio 32 --parallel 3   # what a CPU affords

Runs (or resumes) one seed per task through the suite runner, then prints
`wmrl compare` at 50k and 100k agent steps (those reached; compared at their
frames, 100k and 200k at the suite's action repeat 2, the published curves'
axis; a shorter run at the published points it reached) and writes its
table, JSON and plots to LOGDIR/compare/. The reference implementation manages
about 1.4 environment steps per second at train ratio 512 on a 2-core CPU,
so full-ratio runs are GPU work; the ratio used is in every run's config.json.
"""
from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wmrl import presets, suites  # noqa: E402
from wmrl.config import Config  # noqa: E402

TASKS = ("dmc_cartpole_balance", "dmc_reacher_easy", "dmc_walker_walk")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--logdir", default="runs/learning")
  parser.add_argument("--steps", type=int, default=100_000)
  parser.add_argument("--train-ratio", type=float, default=512.0)
  parser.add_argument("--seeds", default="0")
  parser.add_argument("--parallel", type=int, default=1)
  parser.add_argument("--tasks", default=",".join(TASKS))
  args = parser.parse_args(argv)
  run = [sys.executable, str(ROOT / "experiments" / "run_suite.py"), "dmc_proprio",
         "--logdir", args.logdir, "--tasks", args.tasks, "--seeds", args.seeds,
         "--steps", str(args.steps), "--parallel", str(args.parallel),
         "--run.train_ratio", str(args.train_ratio)]
  code = subprocess.run(run).returncode
  steps = [s for s in (50_000, 100_000) if s <= args.steps]
  compare = [sys.executable, "-m", "wmrl.cli", "compare", args.logdir, "--reference", "dmc_proprio",
             "--out", str(pathlib.Path(args.logdir) / "compare")]
  # Shorter runs: compare's own choice, the reference points they reached (the
  # published curves have points every 10k frames, which --steps need not fall on).
  if steps:
    # The published curves count frames: agent steps x the suite's action repeat.
    per_step = suites.frames_per_step(
        presets.apply_presets(Config(), suites.get("dmc_proprio").presets).env)
    compare += ["--frames", ",".join(str(s * per_step) for s in steps)]
  return code or subprocess.run(compare).returncode


if __name__ == "__main__":
  sys.exit(main())
