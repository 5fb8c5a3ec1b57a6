"""`wmrl compare`: training runs beside the published DreamerV3 learning curves.

  wmrl compare runs/walker runs/cheetah --reference dmc_proprio
  wmrl compare runs/ --reference dmc_proprio --steps 100k,400k --metric eval/score --out cmp/

Each path is a run folder (it holds ``config.json`` and ``metrics.jsonl``) or a
folder searched recursively for run folders. Runs are grouped by task (the env
id mapped to the reference's names, see `task_name`); the runs of a task are its
seeds. Per task and step the table shows the runs' mean [min, max] over seeds
beside the published mean [min, max]; the aggregate rows give the mean, median
and interquartile mean (IQM) over tasks of the scores normalised by the
published mean, with 95% stratified-bootstrap confidence intervals (as rliable).

Everything here is host-side NumPy; matplotlib is needed only for ``--out``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import difflib
import importlib.resources
import io
import json
import math
import pathlib
import re
import sys
from typing import Any

import numpy as np

from wmrl.logging import read_metrics

REFERENCES = {
    "dmc_proprio": "dreamerv3_dmc_proprio.csv",
    "dmc_vision": "dreamerv3_dmc_vision.csv",
    "atari100k": "dreamerv3_atari100k.csv",
}
RUN_FILES = ("config.json", "metrics.jsonl")
MAX_COLUMNS = 6  # step columns in the default table: wider tables wrap in a terminal
# Multiples of the reference's step spacing tried, smallest first, when thinning
# the default steps to at most MAX_COLUMNS (round numbers: 50k, 100k, 200k ...).
NICE_STRIDES = (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000)
STATISTICS = ("mean", "median", "iqm")
REQUIRED_RECORDS = "config.json (with env.id) and metrics.jsonl"


class CompareError(ValueError):
  """A problem with the user's runs or options; the message says the fix."""


def _warn(message: str) -> None:
  print(f"wmrl compare: warning: {message}", file=sys.stderr)


# --- task names ------------------------------------------------------------------------

def _snake(name: str) -> str:
  """MsPacman -> ms_pacman, UpNDown -> up_n_down (ALE's CamelCase game names)."""
  return re.sub(r"(?<=[A-Za-z0-9])(?=[A-Z])", "_", name).lower()


def _slug(text: str) -> str:
  return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _atari_game(env_id: str) -> str | None:
  """The game of an Atari env id (atari:pong, gym:ALE/Pong-v5, PongNoFrameskip-v4), else None."""
  if env_id.startswith("atari:"):
    return env_id[len("atari:"):]
  # Gymnasium ids may carry the registering module: gym:ale_py:ALE/Pong-v5.
  name = env_id.split(":")[-1]
  match = re.fullmatch(r"ALE/(\w+?)(?:NoFrameskip|Deterministic)?-v\d+", name)
  match = match or re.fullmatch(r"(\w+?)(?:NoFrameskip|Deterministic)-v\d+", name)
  return match.group(1) if match else None


def task_name(env_id: str) -> str:
  """The reference's name for an env id: dmc:walker-walk -> dmc_walker_walk,
  gym:ALE/Pong-v5 -> atari_pong, anything else lower-cased with non-alphanumerics as `_`."""
  game = _atari_game(env_id)
  if game is not None:
    return "atari_" + _slug(_snake(game))
  return _slug(env_id)


# --- reference figures -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Reference:
  """One published suite: per task, columns env_step, seeds, mean, min, max (sorted by step)."""

  name: str
  tasks: dict[str, dict[str, np.ndarray]]
  window: int  # step spacing of the figures: a run's score at s averages over (s - window, s]

  def steps(self, tasks) -> list[int]:
    return sorted({int(s) for t in tasks for s in self.tasks[t]["env_step"]})

  def at(self, task: str, step: int) -> dict[str, Any]:
    """The published mean, min, max and seeds at a step (all None where the figure has no point)."""
    columns = self.tasks[task]
    where = np.flatnonzero(columns["env_step"] == step)
    if not where.size:
      return {"mean": None, "min": None, "max": None, "seeds": None}
    i = where[0]
    return {"mean": float(columns["mean"][i]), "min": float(columns["min"][i]),
            "max": float(columns["max"][i]), "seeds": int(columns["seeds"][i])}


def parse_reference(text: str, name: str) -> Reference:
  """A reference from CSV text with the columns task, env_step, seeds, mean, min, max."""
  rows = list(csv.DictReader(io.StringIO(text)))
  columns = ("env_step", "seeds", "mean", "min", "max")
  missing = [c for c in ("task",) + columns if rows and c not in rows[0]]
  if not rows or missing:
    raise CompareError(f"reference '{name}' has no rows or lacks the columns {missing}; "
                       "expected task, env_step, seeds, mean, min, max")
  grouped: dict[str, list[dict[str, str]]] = {}
  for row in rows:
    grouped.setdefault(row["task"], []).append(row)
  tasks = {}
  for task, task_rows in grouped.items():
    task_rows.sort(key=lambda r: int(float(r["env_step"])))
    tasks[task] = {c: np.array([float(r[c]) for r in task_rows]) for c in columns}
    tasks[task]["env_step"] = tasks[task]["env_step"].astype(np.int64)
  steps = np.unique(np.concatenate([t["env_step"] for t in tasks.values()]))
  window = int(np.diff(steps).min()) if len(steps) > 1 else int(steps[0])
  return Reference(name, tasks, window)


def load_reference(name: str) -> Reference:
  """One of the shipped reference suites (REFERENCES), read from the package data."""
  if name not in REFERENCES:
    raise CompareError(f"unknown reference '{name}'; known references: {', '.join(REFERENCES)}")
  text = (importlib.resources.files("wmrl") / "reference" / REFERENCES[name]).read_text()
  return parse_reference(text, name)


# --- runs ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Run:
  """One training run: where it is, what it trained on, and the chosen metric's records."""

  path: str
  env_id: str
  task: str
  seed: int | None
  last_step: int  # the furthest step of any record: how far the run got
  steps: np.ndarray  # steps of the metric's records, ascending
  values: np.ndarray
  metrics: frozenset[str]  # every metric name the run logged


def _is_run_dir(path: pathlib.Path) -> bool:
  return all((path / name).is_file() for name in RUN_FILES)


def find_runs(paths: list[str]) -> list[pathlib.Path]:
  """Run folders: each path itself, or every folder below it holding both RUN_FILES."""
  if not paths:
    raise CompareError("no run paths given; pass run folders or folders that hold them")
  found: dict[pathlib.Path, None] = {}  # a dict keeps order and drops folders found twice
  for raw in paths:
    path = pathlib.Path(raw)
    if not path.exists():
      raise CompareError(f"run path '{raw}' does not exist")
    if path.is_file() and path.name in RUN_FILES:
      path = path.parent  # a run's own metrics.jsonl or config.json names its run
    if _is_run_dir(path):
      found[path.resolve()] = None
      continue
    below = sorted(p.parent for p in path.rglob(RUN_FILES[1]) if _is_run_dir(p.parent))
    if not below:
      raise CompareError(f"no run folders under '{raw}': a run folder holds {REQUIRED_RECORDS}, "
                         "as `wmrl train --logdir DIR` writes them")
    found.update((p.resolve(), None) for p in below)
  return list(found)


def _read_config(path: pathlib.Path) -> tuple[str, int | None]:
  """The env id and seed from a run's config.json."""
  file = path / RUN_FILES[0]
  try:
    config = json.loads(file.read_text())
  except json.JSONDecodeError as e:
    raise CompareError(f"{file} is not valid JSON ({e}); it should be the run's "
                       "Config.to_json() as `wmrl train` writes it") from None
  env_id = _field(config, "env", "id")
  if not isinstance(env_id, str) or not env_id:
    raise CompareError(f"{file} has no field env.id (the environment id, e.g. "
                       "\"dmc:walker-walk\"); add it or rerun `wmrl train`")
  seed = _field(config, "run", "seed")
  return env_id, seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _field(config, group: str, name: str):
  """config[group][name], or None where either level is absent or not a JSON object."""
  section = config.get(group) if isinstance(config, dict) else None
  return section.get(name) if isinstance(section, dict) else None


def _finite(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_run(path: str | pathlib.Path, metric: str) -> Run:
  """A run folder's env id, seed and the (step, value) records of `metric`."""
  path = pathlib.Path(path)
  env_id, seed = _read_config(path)
  records = [r for r in read_metrics(path / RUN_FILES[1]) if _finite(r.get("step"))]
  points = sorted((r["step"], r[metric]) for r in records if _finite(r.get(metric)))
  steps = np.array([p[0] for p in points], np.int64)
  values = np.array([p[1] for p in points], np.float64)
  last_step = max((int(r["step"]) for r in records), default=0)
  metrics = frozenset(k for r in records for k in r if k != "step")
  return Run(str(path), env_id, task_name(env_id), seed, last_step, steps, values, metrics)


def _closest_tasks(task: str, reference: Reference) -> list[str]:
  return difflib.get_close_matches(task, sorted(reference.tasks), n=3, cutoff=0.0)


def _select_runs(runs: list[Run], reference: Reference) -> tuple[list[Run], list[dict]]:
  """The runs whose task the reference has; the others are skipped with a warning."""
  kept = [r for r in runs if r.task in reference.tasks]
  skipped = [{"path": r.path, "env_id": r.env_id, "task": r.task,
              "closest": _closest_tasks(r.task, reference)}
             for r in runs if r.task not in reference.tasks]
  # One warning per task, not per seed: ten seeds of one wrong task are one mistake.
  for task in sorted({s["task"] for s in skipped}):
    paths = [s["path"] for s in skipped if s["task"] == task]
    first = next(s for s in skipped if s["task"] == task)
    more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
    _warn(f"skipping {paths[0]}{more}: task '{task}' (env.id {first['env_id']}) is not in "
          f"reference '{reference.name}'; closest tasks there: {', '.join(first['closest'])}")
  if not kept:
    tasks = sorted({r.task for r in runs})
    raise CompareError(f"no run has a task of reference '{reference.name}' (runs' tasks: "
                       f"{', '.join(tasks)}); its tasks: {', '.join(sorted(reference.tasks))}. "
                       "Choose another --reference or pass runs of these tasks")
  return kept, skipped


def _check_metric(runs: list[Run], metric: str) -> None:
  """Fails when no run logged `metric`; warns about the runs that did not."""
  without = [r for r in runs if not len(r.steps)]
  if len(without) == len(runs):
    names = sorted(set().union(*(r.metrics for r in runs)))
    raise CompareError(f"no run has records of metric '{metric}'; metrics in these runs: "
                       f"{', '.join(names) or 'none'}. Choose one with --metric")
  for run in without:
    _warn(f"{run.path} has no records of '{metric}': its scores are missing")


def _warn_duplicate_seeds(runs: list[Run]) -> None:
  # Two runs with one task and seed usually mean two experiments mixed together.
  seen: dict[tuple[str, int], str] = {}
  for run in runs:
    key = (run.task, run.seed)
    if run.seed is not None and key in seen:
      _warn(f"{run.path} and {seen[key]} are both task {run.task} seed {run.seed}; "
            "both count as seeds of one group")
    seen.setdefault(key, run.path)


# --- scores at steps -------------------------------------------------------------------

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


def _check_steps(steps: list[int], runs: list[Run], reference: Reference) -> list[int]:
  known = reference.steps({r.task for r in runs})
  bad = [s for s in steps if s not in known]
  if bad:
    raise CompareError(f"steps {', '.join(map(str, bad))} not in reference '{reference.name}', "
                       f"whose steps are {known[0]} to {known[-1]} every {reference.window}")
  return sorted(set(int(s) for s in steps))


# --- statistics ------------------------------------------------------------------------

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


def _stats_over_seeds(scores: np.ndarray) -> dict[str, Any]:
  finite = scores[np.isfinite(scores)]
  if not finite.size:
    return {"mean": None, "min": None, "max": None, "n": 0}
  return {"mean": float(finite.mean()), "min": float(finite.min()),
          "max": float(finite.max()), "n": int(finite.size)}


def _number(value: float) -> float | None:
  return float(value) if np.isfinite(value) else None


# --- the comparison --------------------------------------------------------------------

def _task_step(scores: np.ndarray, published: dict[str, Any]) -> dict[str, Any]:
  """One task at one step: the runs over seeds, the published figure, and their ratio."""
  entry = {"runs": _stats_over_seeds(scores) | {"scores": [_number(v) for v in scores]},
           "published": published}
  # A ratio to a published mean at or below zero (early DMC steps, Pong) has no meaning.
  if published["mean"] is not None and published["mean"] > 0:
    ratios = scores / published["mean"]
    entry["normalised"] = _stats_over_seeds(ratios) | {"scores": [_number(v) for v in ratios]}
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
  ref = load_reference(reference)  # an unknown name fails before any run is read
  if bootstrap < 0:
    raise CompareError(f"bootstrap must be >= 0 resamples, got {bootstrap}")
  runs = [load_run(p, metric) for p in find_runs(run_paths)]
  runs, skipped = _select_runs(runs, ref)
  _check_metric(runs, metric)
  _warn_duplicate_seeds(runs)
  steps = _check_steps(steps, runs, ref) if steps else default_steps(runs, ref)
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
    write_outputs(result, out)
  return result


# --- tables ----------------------------------------------------------------------------

def step_label(step: int) -> str:
  """50000 -> 50k, 1000000 -> 1M; other steps as they are."""
  if step and step % 1_000_000 == 0:
    return f"{step // 1_000_000}M"
  if step and step % 1000 == 0:
    return f"{step // 1000}k"
  return str(step)


def _range_cell(entry: dict | None, digits: int, seeds: int | None = None) -> str:
  """mean [min, max], with (n) when fewer than `seeds` seeds reached the step."""
  if entry is None or entry.get("mean") is None:
    return "missing"
  text = f"{entry['mean']:.{digits}f} [{entry['min']:.{digits}f}, {entry['max']:.{digits}f}]"
  if seeds is not None and entry["n"] < seeds:
    text += f" ({entry['n']})"
  return text


def _ci_cell(entry: dict | None, digits: int) -> str:
  if entry is None:
    return "missing"
  text = f"{entry['value']:.{digits}f}"
  if entry["ci"] is not None:
    text += f" [{entry['ci'][0]:.{digits}f}, {entry['ci'][1]:.{digits}f}]"
  return text


def _task_table(result: dict) -> tuple[list[str], list[list[str]]]:
  header = ["task", "source"] + [step_label(s) for s in result["steps"]]
  rows = []
  for task, summary in result["tasks"].items():
    seeds = len(summary["runs"])
    published_seeds = summary["published_curve"]["seeds"]
    rows.append([task, f"runs ({seeds})"]
                + [_range_cell(e["runs"], 1, seeds) for e in summary["steps"]])
    rows.append(["", f"published ({published_seeds})"]
                + [_range_cell(e["published"], 1) for e in summary["steps"]])
  return header, rows


def _aggregate_table(result: dict) -> tuple[list[str], list[list[str]]]:
  header = ["aggregate", "statistic"] + [step_label(s) for s in result["steps"]]
  rows = []
  for kind, digits in (("normalised", 2), ("raw", 1)):
    entries = result["aggregate"][kind]
    rows.append([kind, "tasks"] + [str(len(e["tasks"])) for e in entries])
    for name in STATISTICS:
      label = "IQM" if name == "iqm" else name
      rows.append(["", label] + [_ci_cell(e[name], digits) for e in entries])
    if kind == "raw":
      rows.append(["", "published mean"] + [
          "missing" if e["published_mean"] is None else f"{e['published_mean']:.1f}"
          for e in entries])
  return header, rows


def _render_text(header: list[str], rows: list[list[str]]) -> str:
  widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
  line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
  return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _render_markdown(header: list[str], rows: list[list[str]]) -> str:
  line = lambda cells: "| " + " | ".join(cells) + " |"
  return "\n".join([line(header), line(["---"] * len(header))] + [line(r) for r in rows])


def _title(result: dict) -> str:
  tasks = len(result["tasks"])
  return (f"{len(result['runs'])} runs on {tasks} task{'s' * (tasks != 1)} vs DreamerV3 "
          f"'{result['reference']}'; metric {result['metric']}; a run's score at step s is "
          f"its mean over (s - {step_label(result['window'])}, s]")


def _notes(result: dict) -> str:
  intervals = (f"[..]: 95% stratified bootstrap CI, {result['bootstrap']} resamples"
               if result["bootstrap"] else "no bootstrap intervals (--bootstrap 0)")
  return ("cells: mean [min, max] over seeds; (n): seeds that reached the step. "
          "normalised: score / published mean at the same step (tasks with a published mean "
          f"<= 0 left out); {intervals}")


def format_table(result: dict) -> str:
  """The per-task and aggregate tables as plain text, for the terminal."""
  return "\n\n".join([_title(result), _render_text(*_task_table(result)),
                      _render_text(*_aggregate_table(result)), _notes(result)])


def format_markdown(result: dict) -> str:
  """The same tables in Markdown."""
  return "\n\n".join([f"# wmrl compare\n\n{_title(result)}",
                      "## Per task\n\n" + _render_markdown(*_task_table(result)),
                      "## Aggregate\n\n" + _render_markdown(*_aggregate_table(result)),
                      _notes(result)]) + "\n"


# --- files -----------------------------------------------------------------------------

def _figure_class():
  try:
    from matplotlib.figure import Figure
  except ImportError:
    raise ImportError("plots need matplotlib: pip install matplotlib "
                      "(or pip install 'wmrl[plot]')") from None
  return Figure


def plot_task(task: str, summary: dict, path: str | pathlib.Path) -> None:
  """One task's published mean and min-max band beside the runs' seed mean and band."""
  # The object API, not pyplot: no global figure state, no GUI backend needed.
  figure = _figure_class()(figsize=(6, 4), dpi=100)
  ax = figure.subplots()
  published = summary["published_curve"]
  ax.plot(published["step"], published["mean"], color="0.3",
          label=f"DreamerV3 published ({published['seeds']} seeds)")
  ax.fill_between(published["step"], published["min"], published["max"], color="0.3", alpha=0.15)
  curve = summary["curve"]
  ax.plot(curve["step"], curve["mean"], color="C0", label=f"runs ({len(summary['runs'])} seeds)")
  ax.fill_between(curve["step"], curve["min"], curve["max"], color="C0", alpha=0.25)
  ax.set(title=task, xlabel="environment steps", ylabel="score")
  ax.legend(loc="best", fontsize="small")
  ax.grid(alpha=0.3)
  figure.tight_layout()
  figure.savefig(path)


def _json_ready(value):
  """NaN and infinities as None, so compare.json is strict JSON."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _json_ready(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_json_ready(v) for v in value]
  return value


def write_outputs(result: dict, out: str | pathlib.Path) -> list[pathlib.Path]:
  """compare.json, compare.md and <task>.png in `out`; returns the paths written."""
  _figure_class()  # fails before anything is written when matplotlib is missing
  out = pathlib.Path(out)
  if out.exists() and not out.is_dir():
    raise CompareError(f"--out '{out}' is a file; pass a folder for compare.json and the plots")
  out.mkdir(parents=True, exist_ok=True)
  written = [out / "compare.json", out / "compare.md"]
  written[0].write_text(json.dumps(_json_ready(result), indent=1, allow_nan=False) + "\n")
  written[1].write_text(format_markdown(result))
  for task, summary in result["tasks"].items():
    written.append(out / f"{task}.png")
    plot_task(task, summary, written[-1])
  return written


# --- command line ----------------------------------------------------------------------

def parse_steps(text: str) -> list[int]:
  """'50000,100k,1M' -> [50000, 100000, 1000000]."""
  steps = []
  for item in (t.strip() for t in text.split(",") if t.strip()):
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", item)
    if not match:
      raise CompareError(f"--steps item '{item}' is not a step count; write e.g. 50000,100k,1M")
    scale = {"": 1, "k": 1000, "m": 1_000_000}[match.group(2).lower()]
    steps.append(int(round(float(match.group(1)) * scale)))
  if not steps:
    raise CompareError("--steps is empty; write e.g. 50000,100000")
  return steps


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="wmrl compare",
      usage="wmrl compare RUNS... --reference NAME [--steps S,T] [--metric M] [--out DIR]",
      description="Put training runs beside the published DreamerV3 learning curves.")
  parser.add_argument("runs", nargs="+", metavar="RUNS",
                      help="run folders (config.json + metrics.jsonl) or folders holding them")
  parser.add_argument("--reference", required=True,
                      help="published suite: " + ", ".join(REFERENCES))
  parser.add_argument("--steps", help="comma-separated env steps for the table, e.g. 50k,100k "
                      "(default: up to 6 reference steps the runs reached, with the last)")
  parser.add_argument("--metric", default="episode/score",
                      help="metric to compare (default: episode/score; or eval/score)")
  parser.add_argument("--out", help="folder for compare.json, compare.md and a PNG per task")
  parser.add_argument("--bootstrap", type=int, default=2000,
                      help="bootstrap resamples; 0: no intervals (default 2000)")
  parser.add_argument("--seed", type=int, default=0, help="bootstrap random seed (default 0)")
  return parser


def main(argv: list[str]) -> int:
  """`wmrl compare ...`; returns the exit status."""
  args = _parser().parse_args(argv)
  try:
    steps = parse_steps(args.steps) if args.steps is not None else None
    result = compare(args.runs, args.reference, steps=steps, metric=args.metric, out=args.out,
                     bootstrap=args.bootstrap, seed=args.seed)
  except (CompareError, ImportError) as e:
    print(f"wmrl compare: error: {e}", file=sys.stderr)
    return 2
  print(format_table(result))
  if args.out:
    print(f"\nwrote {args.out}/compare.json, compare.md and {len(result['tasks'])} plots")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
