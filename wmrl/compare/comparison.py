"""The comparison itself: runs grouped by task, scored at the chosen steps beside the
published figures, and aggregated over tasks; a JSON-ready dict."""
from __future__ import annotations

from typing import Any

import numpy as np

from wmrl.compare import outputs, references
from wmrl.compare.errors import CompareError
from wmrl.compare.references import Reference
from wmrl.compare.runs import Run, check_metric, find_runs, load_run, select_runs, warn_duplicate_seeds
from wmrl.compare.scores import check_steps, default_steps, window_scores
from wmrl.compare.stats import aggregate, number, over_seeds


def _task_step(scores: np.ndarray, published: dict[str, Any]) -> dict[str, Any]:
  """One task at one step: the runs over seeds, the published figure, and their ratio."""
  entry = {"runs": over_seeds(scores) | {"scores": [number(v) for v in scores]},
           "published": published}
  # A ratio to a published mean at or below zero (early DMC steps, Pong) has no meaning.
  if published["mean"] is not None and published["mean"] > 0:
    ratios = scores / published["mean"]
    entry["normalised"] = over_seeds(ratios) | {"scores": [number(v) for v in ratios]}
  else:
    entry["normalised"] = None
  return entry


def _curve(runs: list[Run], window: int) -> dict[str, list]:
  """The task's seed mean, min and max every `window` steps, for plots."""
  furthest = max(r.last_step for r in runs)
  grid = np.arange(window, furthest + 1, window)
  scores = np.stack([window_scores(r, grid, window) for r in runs])
  # Steps no seed reached are left out, so every point has at least one finite score.
  keep = np.isfinite(scores).any(0)
  scores, grid = scores[:, keep], grid[keep]
  return {"step": grid.tolist(), "mean": np.nanmean(scores, 0).tolist(),
          "min": np.nanmin(scores, 0).tolist(), "max": np.nanmax(scores, 0).tolist(),
          "n": np.isfinite(scores).sum(0).tolist()}


def _published_curve(reference: Reference, task: str) -> dict[str, list]:
  columns = reference.tasks[task]
  return {"step": columns["env_step"].tolist(), "mean": columns["mean"].tolist(),
          "min": columns["min"].tolist(), "max": columns["max"].tolist(),
          "seeds": int(columns["seeds"].max())}


def _task_summary(task: str, runs: list[Run], steps: list[int], reference: Reference) -> dict:
  scores = np.stack([window_scores(r, steps, reference.window) for r in runs])
  return {
      "runs": [r.path for r in runs],
      "seeds": [r.seed for r in runs],
      "steps": [dict(step=s, **_task_step(scores[:, i], reference.at(task, s)))
                for i, s in enumerate(steps)],
      "curve": _curve(runs, reference.window),
      "published_curve": _published_curve(reference, task),
  }


def _step_groups(tasks: dict[str, dict], i: int, kind: str) -> dict[str, np.ndarray]:
  """Per task, the finite seed scores of kind 'runs' or 'normalised' at step index i."""
  groups = {}
  for task, summary in tasks.items():
    entry = summary["steps"][i][kind]
    if entry is not None:
      groups[task] = np.array([v for v in entry["scores"] if v is not None], np.float64)
  return groups


def _aggregates(tasks: dict[str, dict], steps: list[int], bootstrap: int, seed: int) -> dict:
  result: dict[str, list] = {"normalised": [], "raw": []}
  for i, step in enumerate(steps):
    for k, kind in enumerate(("normalised", "raw")):
      # One generator per (step, kind): the numbers do not depend on which others were asked for.
      rng = np.random.default_rng([seed, step, k])
      entry = aggregate(_step_groups(tasks, i, "runs" if kind == "raw" else kind), bootstrap, rng)
      if kind == "raw":
        published = [tasks[t]["steps"][i]["published"]["mean"] for t in entry["tasks"]]
        published = [p for p in published if p is not None]
        entry["published_mean"] = float(np.mean(published)) if published else None
      result[kind].append({"step": step} | entry)
  return result


def compare(run_paths: list[str], reference: str, steps: list[int] | None = None,
            metric: str = "episode/score", out: str | None = None, bootstrap: int = 2000,
            seed: int = 0) -> dict:
  """Compares training runs with the published DreamerV3 curves of `reference`.

  Returns a JSON-ready dict (missing values are None): the runs used and skipped, per task
  and step the runs' mean/min/max over seeds beside the published mean/min/max, and per
  step the aggregates over tasks (normalised by the published mean, and raw) with
  bootstrap confidence intervals. With `out`, also writes compare.json, compare.md and
  one PNG per task there.
  """
  ref = references.load_reference(reference)  # an unknown name fails before any run is read
  if bootstrap < 0:
    raise CompareError(f"bootstrap must be >= 0 resamples, got {bootstrap}")
  runs = [load_run(p, metric) for p in find_runs(run_paths)]
  runs, skipped = select_runs(runs, ref)
  check_metric(runs, metric)
  warn_duplicate_seeds(runs)
  steps = check_steps(steps, runs, ref) if steps else default_steps(runs, ref)
  by_task: dict[str, list[Run]] = {}
  for run in runs:
    by_task.setdefault(run.task, []).append(run)
  tasks = {t: _task_summary(t, by_task[t], steps, ref) for t in sorted(by_task)}
  result = {
      "reference": ref.name, "metric": metric, "window": ref.window, "steps": steps,
      "bootstrap": bootstrap, "seed": seed,
      "runs": [{"path": r.path, "env_id": r.env_id, "task": r.task, "seed": r.seed,
                "last_step": r.last_step, "records": int(len(r.steps))} for r in runs],
      "skipped": skipped, "tasks": tasks,
      "aggregate": _aggregates(tasks, steps, bootstrap, seed),
  }
  if out is not None:
    outputs.write_outputs(result, out)
  return result
