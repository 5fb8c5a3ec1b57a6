"""A run's score at the reference's points, and which points a table shows; all in
environment frames, the published curves' axis."""
from __future__ import annotations

import numpy as np

from wmrl.compare.errors import CompareError
from wmrl.compare.references import Reference
from wmrl.compare.runs import Run

MAX_COLUMNS = 6  # frame columns in the default table: wider tables wrap in a terminal
# Multiples of the reference's spacing tried, smallest first, when thinning the
# default points to at most MAX_COLUMNS (round numbers: 50k, 100k, 200k ...).
NICE_STRIDES = (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000)


def window_scores(run: Run, frames, window: int) -> np.ndarray:
  """The run's score at each frame count f: the mean of its records in (f - window, f], else
  the last record at or before f; NaN where the run had not reached f or logged nothing yet.

  The window matches how the reference bins episodes (one point per `window` frames).
  """
  frames = np.asarray(frames, np.int64)
  if not len(run.values):
    return np.full(frames.shape, np.nan)
  # Prefix sums give every window's mean at once: records in (f - window, f] are [low, high).
  sums = np.concatenate([[0.0], np.cumsum(run.values)])
  high = np.searchsorted(run.frames, frames, side="right")
  low = np.searchsorted(run.frames, frames - window, side="right")
  count = high - low
  last = np.where(high > 0, run.values[np.maximum(high - 1, 0)], np.nan)
  scores = np.where(count > 0, (sums[high] - sums[low]) / np.maximum(count, 1), last)
  return np.where(frames <= run.last_frame, scores, np.nan)


def _thin(frames: list[int], window: int) -> list[int]:
  """At most MAX_COLUMNS round points (multiples of a nice stride), always with the last."""
  for stride in NICE_STRIDES:
    picked = [f for f in frames if f % (stride * window) == 0]
    if not picked or picked[-1] != frames[-1]:
      picked.append(frames[-1])
    if len(picked) <= MAX_COLUMNS:
      return picked
  return [frames[-1]]


def default_frames(runs: list[Run], reference: Reference) -> list[int]:
  """The reference's points that some run reached, thinned for the table."""
  furthest = max(r.last_frame for r in runs)
  reached = [f for f in reference.frames({r.task for r in runs}) if f <= furthest]
  if not reached:
    first = reference.frames({r.task for r in runs})[0]
    raise CompareError(f"no run reached the reference's first point at {first} frames (the "
                       f"furthest run is at {furthest} frames); train longer or pass --frames")
  return _thin(reached, reference.window)


def check_frames(frames: list[int], runs: list[Run], reference: Reference) -> list[int]:
  """The asked-for points, sorted and once each; each must be one of the reference's."""
  known = reference.frames({r.task for r in runs})
  bad = [f for f in frames if f not in known]
  if bad:
    raise CompareError(f"frames {', '.join(map(str, bad))} not in reference '{reference.name}', "
                       f"whose points are at {known[0]} to {known[-1]} frames every "
                       f"{reference.window}")
  return sorted(set(int(f) for f in frames))
