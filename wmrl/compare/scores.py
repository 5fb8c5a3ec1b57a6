"""A run's score at the reference's steps, and which steps a table shows."""
from __future__ import annotations

import numpy as np

from wmrl.compare.errors import CompareError
from wmrl.compare.references import Reference
from wmrl.compare.runs import Run

MAX_COLUMNS = 6  # step columns in the default table: wider tables wrap in a terminal
# Multiples of the reference's step spacing tried, smallest first, when thinning
# the default steps to at most MAX_COLUMNS (round numbers: 50k, 100k, 200k ...).
NICE_STRIDES = (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000)


def window_scores(run: Run, steps, window: int) -> np.ndarray:
  """The run's score at each step s: the mean of its records in (s - window, s], else the
  last record at or before s; NaN where the run had not reached s or logged nothing yet.

  The window matches how the reference bins episodes (one point per `window` steps).
  """
  steps = np.asarray(steps, np.int64)
  if not len(run.values):
    return np.full(steps.shape, np.nan)
  # Prefix sums give every window's mean at once: records in (s - window, s] are [low, high).
  sums = np.concatenate([[0.0], np.cumsum(run.values)])
  high = np.searchsorted(run.steps, steps, side="right")
  low = np.searchsorted(run.steps, steps - window, side="right")
  count = high - low
  last = np.where(high > 0, run.values[np.maximum(high - 1, 0)], np.nan)
  scores = np.where(count > 0, (sums[high] - sums[low]) / np.maximum(count, 1), last)
  return np.where(steps <= run.last_step, scores, np.nan)


def _thin(steps: list[int], window: int) -> list[int]:
  """At most MAX_COLUMNS round steps (multiples of a nice stride), always with the last."""
  for stride in NICE_STRIDES:
    picked = [s for s in steps if s % (stride * window) == 0]
    if not picked or picked[-1] != steps[-1]:
      picked.append(steps[-1])
    if len(picked) <= MAX_COLUMNS:
      return picked
  return [steps[-1]]


def default_steps(runs: list[Run], reference: Reference) -> list[int]:
  """The reference's steps that some run reached, thinned for the table."""
  furthest = max(r.last_step for r in runs)
  reached = [s for s in reference.steps({r.task for r in runs}) if s <= furthest]
  if not reached:
    first = reference.steps({r.task for r in runs})[0]
    raise CompareError(f"no run reached the reference's first step {first} (the furthest run "
                       f"is at step {furthest}); train longer or pass --steps")
  return _thin(reached, reference.window)


def check_steps(steps: list[int], runs: list[Run], reference: Reference) -> list[int]:
  """The asked-for steps, sorted and once each; each must be one of the reference's."""
  known = reference.steps({r.task for r in runs})
  bad = [s for s in steps if s not in known]
  if bad:
    raise CompareError(f"steps {', '.join(map(str, bad))} not in reference '{reference.name}', "
                       f"whose steps are {known[0]} to {known[-1]} every {reference.window}")
  return sorted(set(int(s) for s in steps))
