"""`wmrl compare`'s command line."""
from __future__ import annotations

import argparse
import re
import sys

from wmrl import suites
from wmrl.compare.comparison import check_fraction, compare
from wmrl.compare.errors import CompareError
from wmrl.compare.tables import format_table, verdict_line

# Exit statuses: a comparison made, a bad run or option, a required share not met.
OK, ERROR, BELOW_REQUIRED = 0, 2, 3


def parse_frames(text: str) -> list[int]:
  """'50000,100k,1M' -> [50000, 100000, 1000000]."""
  frames = []
  for item in (t.strip() for t in text.split(",") if t.strip()):
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", item)
    if not match:
      raise CompareError(f"--frames item '{item}' is not a frame count; write e.g. 50000,100k,1M")
    scale = {"": 1, "k": 1000, "m": 1_000_000}[match.group(2).lower()]
    frames.append(int(round(float(match.group(1)) * scale)))
  if not frames:
    raise CompareError("--frames is empty; write e.g. 50000,100000")
  return frames


def parse_fraction(text: str) -> float:
  """'0.8' -> 0.8; a number outside 0..1, or no number, is refused."""
  try:
    value = float(text)
  except ValueError:
    raise CompareError(f"--require-inside takes a fraction from 0 to 1, got '{text}'") from None
  return check_fraction(value)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="wmrl compare",
      usage="wmrl compare RUNS... --reference NAME [--frames F,G] [--metric M] [--out DIR] "
            "[--require-inside FRACTION]",
      description="Put training runs beside the published DreamerV3 learning curves, on their "
                  "axis: environment frames (agent steps x action repeat x the emulator's "
                  "frame skip).",
      epilog=f"exit status: {OK} compared; {ERROR} a bad run folder or option; {BELOW_REQUIRED} "
             "fewer points inside the published band than --require-inside asks.")
  parser.add_argument("runs", nargs="+", metavar="RUNS",
                      help="run folders (config.json + metrics.jsonl) or folders holding them")
  parser.add_argument("--reference", required=True,
                      help="published suite: " + ", ".join(suites.references()))
  parser.add_argument("--frames", help="comma-separated environment frames for the table, e.g. "
                      "50k,100k (default: up to 6 reference points the runs reached, with the "
                      "last)")
  # The option's old name: its numbers were always the reference's axis, which counts frames.
  parser.add_argument("--steps", help=argparse.SUPPRESS)
  parser.add_argument("--metric", default="episode/score",
                      help="metric to compare (default: episode/score; or eval/score)")
  parser.add_argument("--out", help="folder for compare.json, compare.md and a PNG per task")
  parser.add_argument("--bootstrap", type=int, default=2000,
                      help="bootstrap resamples; 0: no intervals (default 2000)")
  parser.add_argument("--seed", type=int, default=0, help="bootstrap random seed (default 0)")
  parser.add_argument("--require-inside", metavar="FRACTION",
                      help="exit with status 3 when the share of task points whose mean over "
                      "seeds lies inside the published [min, max] of the seed means is below "
                      "FRACTION (0 to 1)")
  return parser


def main(argv: list[str]) -> int:
  """`wmrl compare ...`; returns the exit status."""
  args = _parser().parse_args(argv)
  try:
    if args.steps is not None:
      raise CompareError("--steps is now --frames: the published curves count environment "
                         "frames (agent steps x action repeat), and so does the table; pass "
                         f"--frames {args.steps} if those are frames")
    frames = parse_frames(args.frames) if args.frames is not None else None
    required = parse_fraction(args.require_inside) if args.require_inside is not None else None
    result = compare(args.runs, args.reference, frames=frames, metric=args.metric, out=args.out,
                     bootstrap=args.bootstrap, seed=args.seed, require_inside=required)
  except (CompareError, ImportError) as e:
    print(f"wmrl compare: error: {e}", file=sys.stderr)
    return ERROR
  print(format_table(result))
  if args.out:
    print(f"\nwrote {args.out}/compare.json, compare.md and {len(result['tasks'])} plots")
  if result["verdict"]["passed"] is False:
    print(f"wmrl compare: {verdict_line(result)} (--require-inside {args.require_inside})",
          file=sys.stderr)
    return BELOW_REQUIRED
  return OK
