"""Speed benchmark of wmrl's train and policy steps; see `wmrl/bench.py`.

    python benchmarks/speed.py --preset size1m --preset size12m --out benchmarks/results/mine.json
"""
import pathlib
import sys

# Run from a checkout without installing: the repo root holds the package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from wmrl.bench import main  # noqa: E402

if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
