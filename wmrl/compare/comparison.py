"""The comparison itself: runs grouped by task, scored at the chosen frames beside the
published figures, judged inside or outside the published band, and aggregated over
tasks; a JSON-ready dict."""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from wmrl.compare import outputs, references
from wmrl.compare.errors import CompareError
from wmrl.compare.references import Reference
from wmrl.compare.runs import (Run, check_metric, find_runs, load_run, select_runs,
                               warn_computed_frames, warn_duplicate_seeds)
from wmrl.compare.scores import check_frames, default_frames, window_scores
from wmrl.compare.stats import aggregate, number, over_seeds


def inside(runs: dict[str, Any], published: dict[str, Any]) -> bool | None:
  """Whether the runs' mean over seeds lies in the published [min, max] of the seed means,
  ends included; None where either side is missing."""
  if runs["mean"] is None or published["min"] is None:
    return None
  return bool(published["min"] <= runs["mean"] <= published["max"])


def share_inside(flags: Iterable[bool | None]) -> dict[str, Any]:
  """How many judged points lie inside, and their share (None where none was judged)."""
  judged = [f for f in flags if f is not None]
  count = sum(judged)
  return {"points": len(judged), "inside": count,
          "share": count / len(judged) if judged else None}


def _task_point(scores: np.ndarray, published: dict[str, Any]) -> dict[str, Any]:
  """One task at one point: the runs over seeds, the published figure, their ratio and
  whether the runs' mean lies in the published band."""
  entry = {"runs": over_seeds(scores) | {"scores": [number(v) for v in scores]},
           "published": published}
  # A ratio to a published mean at or below zero (early DMC points, Pong) has no meaning.
  if published["mean"] is not None and published["mean"] > 0:
    ratios = scores / published["mean"]
    entry["normalised"] = over_seeds(ratios) | {"scores": [number(v) for v in ratios]}
  else:
    entry["normalised"] = None
  entry["inside"] = inside(entry["runs"], published)
  return entry


def _curve(runs: list[Run], window: int) -> dict[str, list]:
  """The task's seed mean, min and max every `window` frames, for plots."""
  furthest = max(r.last_frame for r in runs)
  grid = np.arange(window, furthest + 1, window)
  scores = np.stack([window_scores(r, grid, window) for r in runs])
  # Points no seed reached are left out, so every point has at least one finite score.
  keep = np.isfinite(scores).any(0)
  scores, grid = scores[:, keep], grid[keep]
  return {"frames": grid.tolist(), "mean": np.nanmean(scores, 0).tolist(),
          "min": np.nanmin(scores, 0).tolist(), "max": np.nanmax(scores, 0).tolist(),
          "n": np.isfinite(scores).sum(0).tolist()}


def _published_curve(reference: Reference, task: str) -> dict[str, list]:
  columns = reference.tasks[task]
  return {"frames": columns["frames"].tolist(), "mean": columns["mean"].tolist(),
          "min": columns["min"].tolist(), "max": columns["max"].tolist(),
          "seeds": int(columns["seeds"].max())}


def _task_summary(task: str, runs: list[Run], frames: list[int], reference: Reference) -> dict:
  scores = np.stack([window_scores(r, frames, reference.window) for r in runs])
  points = [dict(frames=f, **_task_point(scores[:, i], reference.at(task, f)))
            for i, f in enumerate(frames)]
  return {
      "runs": [r.path for r in runs],
      "seeds": [r.seed for r in runs],
      "points": points,
      "verdict": share_inside(p["inside"] for p in points),
      "curve": _curve(runs, reference.window),
      "published_curve": _published_curve(reference, task),
  }


def _point_groups(tasks: dict[str, dict], i: int, kind: str) -> dict[str, np.ndarray]:
  """Per task, the finite seed scores of kind 'runs' or 'normalised' at point index i."""
  groups = {}
  for task, summary in tasks.items():
    entry = summary["points"][i][kind]
    if entry is not None:
      groups[task] = np.array([v for v in entry["scores"] if v is not None], np.float64)
  return groups


def _aggregates(tasks: dict[str, dict], frames: list[int], bootstrap: int, seed: int) -> dict:
  result: dict[str, list] = {"normalised": [], "raw": []}
  for i, point in enumerate(frames):
    for k, kind in enumerate(("normalised", "raw")):
      # One generator per (point, kind): the numbers do not depend on which others were asked for.
      rng = np.random.default_rng([seed, point, k])
      entry = aggregate(_point_groups(tasks, i, "runs" if kind == "raw" else kind), bootstrap, rng)
      if kind == "raw":
        published = [tasks[t]["points"][i]["published"]["mean"] for t in entry["tasks"]]
        published = [p for p in published if p is not None]
        entry["published_mean"] = float(np.mean(published)) if published else None
      result[kind].append({"frames": point} | entry)
  return result


def check_fraction(value) -> float:
  """A share from 0 to 1 for `require_inside`; anything else is refused."""
  if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
      or not 0 <= value <= 1):
    raise CompareError(f"--require-inside takes a fraction from 0 to 1 (the share of compared "
                       f"points inside the published band), got {value!r}")
  return float(value)


def _verdict(tasks: dict[str, dict], require_inside: float | None) -> dict[str, Any]:
  verdict = share_inside(p["inside"] for s in tasks.values() for p in s["points"])
  if require_inside is None:
    passed = None
  else:
    # No judged point is no evidence: a required share is then not met.
    passed = verdict["share"] is not None and verdict["share"] >= require_inside
  return verdict | {"require_inside": require_inside, "passed": passed}


def compare(run_paths: list[str], reference: str, frames: list[int] | None = None,
            metric: str = "episode/score", out: str | None = None, bootstrap: int = 2000,
            seed: int = 0, require_inside: float | None = None) -> dict:
  """Compares training runs with the published DreamerV3 curves of `reference`, on their
  axis: environment frames (agent steps x action repeat x the emulator's frame skip).

  Returns a JSON-ready dict (missing values are None): the runs used and skipped; per task
  and point the runs' mean/min/max over seeds beside the published mean/min/max, and
  whether the runs' mean lies inside the published [min, max]; per task and overall the
  share of points inside (overall: `verdict`, with `passed` against `require_inside` when
  given); and per point the aggregates over tasks (normalised by the published mean, and
  raw) with bootstrap confidence intervals. With `out`, also writes compare.json,
  compare.md and one PNG per task there.
  """
  ref = references.load_reference(reference)  # an unknown name fails before any run is read
  if bootstrap < 0:
    raise CompareError(f"bootstrap must be >= 0 resamples, got {bootstrap}")
  if require_inside is not None:
    require_inside = check_fraction(require_inside)
  runs = [load_run(p, metric) for p in find_runs(run_paths)]
  runs, skipped = select_runs(runs, ref)
  check_metric(runs, metric)
  warn_duplicate_seeds(runs)
  warn_computed_frames(runs)
  frames = check_frames(frames, runs, ref) if frames else default_frames(runs, ref)
  by_task: dict[str, list[Run]] = {}
  for run in runs:
    by_task.setdefault(run.task, []).append(run)
  tasks = {t: _task_summary(t, by_task[t], frames, ref) for t in sorted(by_task)}
  result = {
      "reference": ref.name, "metric": metric, "window": ref.window, "frames": frames,
      "bootstrap": bootstrap, "seed": seed,
      "runs": [{"path": r.path, "env_id": r.env_id, "task": r.task, "seed": r.seed,
                "last_step": r.last_step, "last_frame": r.last_frame,
                "frames_per_step": r.frames_per_step, "frames_computed": r.frames_computed,
                "records": int(len(r.frames))} for r in runs],
      "skipped": skipped, "tasks": tasks,
      "verdict": _verdict(tasks, require_inside),
      "aggregate": _aggregates(tasks, frames, bootstrap, seed),
  }
  if out is not None:
    outputs.write_outputs(result, out)
  return result
