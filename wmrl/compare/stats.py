"""Statistics over seeds and over tasks: the interquartile mean and stratified-bootstrap
intervals as rliable defines them."""
from __future__ import annotations

from typing import Any

import numpy as np

STATISTICS = ("mean", "median", "iqm")


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
  """Interquartile mean: the mean of the middle 50% (scipy's trim_mean(x, 0.25), as rliable)."""
  values = np.sort(values, axis=axis)
  n = values.shape[axis]
  cut = int(0.25 * n)
  return np.take(values, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def _statistics(groups: list[np.ndarray]) -> dict[str, np.ndarray]:
  """Mean and median over tasks of the per-task seed means, and the IQM of all scores pooled
  (rliable's definitions); each group is [batch, seeds] and each result is [batch]."""
  task_means = np.stack([g.mean(-1) for g in groups], -1)
  return {"mean": task_means.mean(-1), "median": np.median(task_means, -1),
          "iqm": iqm(np.concatenate(groups, -1))}


def aggregate(groups: dict[str, np.ndarray], bootstrap: int = 2000,
              rng: np.random.Generator | None = None) -> dict[str, Any]:
  """Mean, median and IQM of per-task seed scores, with 95% percentile-bootstrap intervals.

  The bootstrap resamples seeds within each task (stratified), keeping every task, as
  rliable's StratifiedBootstrap does.
  """
  names = sorted(t for t, g in groups.items() if len(g))
  result: dict[str, Any] = {"tasks": names}
  if not names:
    return result | {s: None for s in STATISTICS}
  arrays = [np.asarray(groups[t], np.float64) for t in names]
  point = _statistics([a[None] for a in arrays])
  samples = None
  if bootstrap > 0:
    rng = rng if rng is not None else np.random.default_rng(0)
    draws = [a[rng.integers(0, len(a), (bootstrap, len(a)))] for a in arrays]
    samples = _statistics(draws)
  for name in STATISTICS:
    ci = None if samples is None else [float(v) for v in np.percentile(samples[name], [2.5, 97.5])]
    result[name] = {"value": float(point[name][0]), "ci": ci}
  return result


def over_seeds(scores: np.ndarray) -> dict[str, Any]:
  """Mean, min, max and count of the finite scores (all None and 0 when there are none)."""
  finite = scores[np.isfinite(scores)]
  if not finite.size:
    return {"mean": None, "min": None, "max": None, "n": 0}
  return {"mean": float(finite.mean()), "min": float(finite.min()),
          "max": float(finite.max()), "n": int(finite.size)}


def number(value: float) -> float | None:
  """A float for JSON, None for NaN and infinities."""
  return float(value) if np.isfinite(value) else None
