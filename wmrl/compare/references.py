"""The published figures a comparison is made against.

Which suites have figures, and where their files are, is the suite
registry's (wmrl/suites.py); this module reads and indexes them. The
figures count environment frames (agent steps x action repeat), as the
reference's logger does.
"""
from __future__ import annotations

import csv
import dataclasses
import io
from typing import Any

import numpy as np

from wmrl import suites
from wmrl.compare.errors import CompareError
from wmrl.names import did_you_mean


@dataclasses.dataclass(frozen=True)
class Reference:
  """One published suite: per task, columns frames, seeds, mean, min, max (sorted by frames)."""

  name: str
  tasks: dict[str, dict[str, np.ndarray]]
  window: int  # frame spacing of the figures: a run's score at f averages over (f - window, f]

  def frames(self, tasks) -> list[int]:
    """The frames at which any of `tasks` has a point, ascending."""
    return sorted({int(f) for t in tasks for f in self.tasks[t]["frames"]})

  def at(self, task: str, frames: int) -> dict[str, Any]:
    """The published mean, min, max and seeds at a frame count (all None where the figure
    has no point)."""
    columns = self.tasks[task]
    where = np.flatnonzero(columns["frames"] == frames)
    if not where.size:
      return {"mean": None, "min": None, "max": None, "seeds": None}
    i = where[0]
    return {"mean": float(columns["mean"][i]), "min": float(columns["min"][i]),
            "max": float(columns["max"][i]), "seeds": int(columns["seeds"][i])}


def parse_reference(text: str, name: str) -> Reference:
  """A reference from CSV text with the columns task, frames, seeds, mean, min, max."""
  rows = list(csv.DictReader(io.StringIO(text)))
  columns = ("frames", "seeds", "mean", "min", "max")
  missing = [c for c in ("task",) + columns if rows and c not in rows[0]]
  if not rows or missing:
    raise CompareError(f"reference '{name}' has no rows or lacks the columns {missing}; "
                       "expected task, frames, seeds, mean, min, max")
  grouped: dict[str, list[dict[str, str]]] = {}
  for row in rows:
    grouped.setdefault(row["task"], []).append(row)
  tasks = {}
  for task, task_rows in grouped.items():
    task_rows.sort(key=lambda r: int(float(r["frames"])))
    tasks[task] = {c: np.array([float(r[c]) for r in task_rows]) for c in columns}
    tasks[task]["frames"] = tasks[task]["frames"].astype(np.int64)
  frames = np.unique(np.concatenate([t["frames"] for t in tasks.values()]))
  window = int(np.diff(frames).min()) if len(frames) > 1 else int(frames[0])
  return Reference(name, tasks, window)


def load_reference(name: str) -> Reference:
  """The shipped figures of the suite `name` (a suite of wmrl/suites.py with figures)."""
  known = suites.references()
  if name not in known:
    raise CompareError(f"unknown reference '{name}'{did_you_mean(name, known)} "
                       f"(known references: {', '.join(known)})")
  return parse_reference(suites.figures_text(known[name]), name)
