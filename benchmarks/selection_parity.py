"""wmrl's replay selectors against the reference's own, on the same replay.

  python benchmarks/selection_parity.py --reference-src DIR [--draws 200000]

DIR is a checkout of the reference (danijar/dreamerv3 at e3f0224). Its
`embodied/core/selectors.py` needs only numpy and is loaded from the file,
so this runs in wmrl's environment. For each case both draw `--draws`
windows from the same stored steps and the same priorities, and the two
frequency tables are compared with a chi-square test of homogeneity and
their total-variation distance, and each with the exact probabilities
(worked out in float64 here) by a chi-square goodness-of-fit test:

- prioritized, finite priorities (the reference's `Prioritized` with the
  default exponent 0.8 and maxfrac 0.5; its sum tree against wmrl's weights);
- prioritized, some priorities infinite (new steps at the default initial
  inf): the reference's tree draws uniformly among its children that hold
  an infinite weight, level by level, so its draw depends on the tree's
  shape; wmrl draws uniformly among the windows: the case shows how far apart;
- recency over a capacity larger than the replay (ages scaled onto it), with
  the reference's `Recency` mended where it crashes (`fixed_recency`: at
  e3f0224 its first draw raises UnboundLocalError, so the reference itself
  cannot run `replay.fracs.recency` above 0).

Prints a row per case and a last line with the verdict (PASS where, in every
case that should agree, the two codes agree with each other and wmrl with the
exact probabilities, at p > 0.001). For the infinite case "exact" is uniform
over the windows holding an infinite step, wmrl's rule.
"""
from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wmrl.config import ReplayConfig, SelectionFractions  # noqa: E402
from wmrl.drivers import selection  # noqa: E402
from wmrl.replay import Positions  # noqa: E402


def load_selectors(reference_src: pathlib.Path):
  path = reference_src / "embodied" / "core" / "selectors.py"
  spec = importlib.util.spec_from_file_location("reference_selectors", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def reference_prioritized(ref, priorities: np.ndarray, length: int, draws: int, seed: int = 0):
  """Window starts drawn by the reference's Prioritized over one stream whose
  step t has priority priorities[t] (item k: the window at step k)."""
  selector = ref.Prioritized(exponent=0.8, maxfrac=0.5, initial=1.0, zero_on_sample=False,
                             seed=seed)
  steps = len(priorities)
  stepid = lambda t: np.frombuffer(int(t).to_bytes(20, "big"), np.uint8)
  for k in range(steps - length + 1):
    selector[k] = [stepid(t) for t in range(k, k + length)]
  selector.prioritize([stepid(t) for t in range(steps)], priorities.tolist())
  return np.array([selector() for _ in range(draws)])


def wmrl_prioritized(priorities: np.ndarray, length: int, draws: int, seed: int = 0):
  row = jnp.asarray(priorities, jnp.float32)[None]
  keys = jax.random.split(jax.random.key(seed), draws)
  draw = jax.jit(jax.vmap(lambda key: selection.priority_draw(key, row, len(priorities), length,
                                                              0.8, 0.5)[1]))
  return np.asarray(draw(keys))


def fixed_recency(ref):
  """The reference's Recency with its one crash mended: at e3f0224 its `_sample`
  calls `rng.choice(len(segment), p=p)` before any `segment` is bound (the loop
  over the path is empty at the tree's first level), so its first draw raises
  UnboundLocalError; `len(p)` is what the line means (every level's `p` is the
  branching factor long). Nothing else is changed."""

  class Recency(ref.Recency):
    def _sample(self, tree, rng, bfactor=16):
      path = []
      for level, prob in enumerate(tree):
        p = prob
        for segment in path:
          p = p[segment]
        path.append(rng.choice(len(p), p=p))
      return sum(index * bfactor ** (len(tree) - level - 1) for level, index in enumerate(path))

  return Recency


def reference_recency(ref, capacity: int, windows: int, draws: int, exponent: float = 1.0):
  """Ages (0: the newest window) drawn by the reference's Recency holding `windows` items."""
  selector = fixed_recency(ref)(1.0 / np.arange(1, capacity + 1) ** exponent, seed=0)
  for k in range(windows):
    selector[k] = None
  return np.array([windows - 1 - selector() for _ in range(draws)])


def wmrl_recency(capacity: int, windows: int, length: int, draws: int, exponent: float = 1.0):
  stored = windows + length - 1
  cdf = jnp.asarray(selection.recency_cdf(capacity, exponent))
  replay = ReplayConfig(fracs=SelectionFractions(0.0, 0.0, 1.0), recexp=exponent)
  positions = Positions(jnp.zeros(draws, jnp.int32), jnp.zeros(draws, jnp.int32))
  drawn, _, _ = selection.mix(jax.random.key(0), positions, 0, stored, stored, None, cdf,
                              replay=replay, length=length, num_envs=1)
  return stored - length - np.asarray(drawn.starts)


def compare(a: np.ndarray, b: np.ndarray, size: int) -> tuple[float, float]:
  """(chi-square p-value of homogeneity, total-variation distance) of two draws."""
  counts = np.stack([np.bincount(a, minlength=size), np.bincount(b, minlength=size)])
  counts = counts[:, counts.sum(0) > 0]
  p = stats.chi2_contingency(counts)[1] if counts.shape[1] > 1 else 1.0
  freq = counts / counts.sum(1, keepdims=True)
  return float(p), float(0.5 * np.abs(freq[0] - freq[1]).sum())


def goodness(draws: np.ndarray, expected: np.ndarray) -> float:
  """Chi-square p-value of `draws` against the exact probabilities `expected`."""
  counts = np.bincount(draws, minlength=len(expected))
  keep = expected > 0
  return float(stats.chisquare(counts[keep], expected[keep] / expected[keep].sum() *
                               counts.sum())[1])


def exact_prioritized(priorities: np.ndarray, length: int) -> np.ndarray:
  """Each window's probability from the reference's aggregate, in float64."""
  powered = priorities ** 0.8
  windows = np.lib.stride_tricks.sliding_window_view(powered, length)
  weights = 0.5 * windows.max(1) + 0.5 * windows.mean(1)
  return weights / weights.sum()


def exact_recency(capacity: int, windows: int) -> np.ndarray:
  weights = 1 / np.arange(1, capacity + 1)
  out = np.zeros(windows)
  np.add.at(out, (np.arange(capacity) / capacity * windows).astype(int), weights / weights.sum())
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--reference-src", required=True, type=pathlib.Path)
  parser.add_argument("--draws", type=int, default=200_000)
  args = parser.parse_args(argv)
  ref = load_selectors(args.reference_src)
  rng = np.random.default_rng(0)
  n = args.draws
  rows, verdict = [], True

  length, steps = 8, 100
  finite = rng.gamma(1.0, 1.0, steps)
  size = steps - length + 1
  ours, theirs = wmrl_prioritized(finite, length, n), reference_prioritized(ref, finite, length, n)
  exact = exact_prioritized(finite, length)
  rows.append(("prioritized, finite priorities", size, *compare(theirs, ours, size),
               goodness(theirs, exact), goodness(ours, exact), "agree"))
  verdict &= min(rows[-1][2], rows[-1][5]) > 1e-3

  mixed = finite.copy()
  mixed[rng.choice(steps, 10, replace=False)] = np.inf
  theirs, ours = reference_prioritized(ref, mixed, length, n), wmrl_prioritized(mixed, length, n)
  uniform = np.isinf(np.lib.stride_tricks.sliding_window_view(mixed, length).max(1)) * 1.0
  rows.append(("prioritized, 10 steps infinite", size, *compare(theirs, ours, size),
               goodness(theirs, uniform), goodness(ours, uniform),
               "differ (the tree's shape)"))

  capacity, windows = 5000, 300
  theirs = reference_recency(ref, capacity, windows, n)
  ours = wmrl_recency(capacity, windows, length, n)
  exact = exact_recency(capacity, windows)
  rows.append((f"recency, {windows} windows of capacity {capacity}", windows,
               *compare(theirs, ours, windows), goodness(theirs, exact), goodness(ours, exact),
               "agree"))
  verdict &= min(rows[-1][2], rows[-1][5]) > 1e-3

  print(f"{n} draws each | case | windows | p, reference vs wmrl | total variation | "
        "p, reference vs exact | p, wmrl vs exact | expected")
  for name, size, p, tv, p_ref, p_ours, expected in rows:
    print(f"{name} | {size} | {p:.3g} | {tv:.4f} | {p_ref:.3g} | {p_ours:.3g} | {expected}")
  print("PASS: the selectors draw the reference's distributions" if verdict else
        "FAIL: a selector's distribution differs from the reference's")
  return 0 if verdict else 1


if __name__ == "__main__":
  sys.exit(main())
