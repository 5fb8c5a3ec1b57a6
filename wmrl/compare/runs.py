"""Reading training runs: finding run folders, their env id, seed and metric records on
the frames axis, and the checks that keep a comparison honest (task in the reference,
metric logged, no seed counted twice, frames computed for older runs said so)."""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import numpy as np

from wmrl.compare.errors import CompareError, warn
from wmrl.compare.references import Reference
from wmrl.config import EnvConfig
from wmrl.logging import read_metrics
from wmrl.names import close_names
from wmrl.suites import frames_per_step, task_name

RUN_FILES = ("config.json", "metrics.jsonl")
REQUIRED_RECORDS = "config.json (with env.id) and metrics.jsonl"


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run: where it is, what it trained on, and the chosen metric's records,
  placed on the published curves' axis, environment frames."""

  path: str
  env_id: str
  task: str
  seed: int | None
  last_frame: int  # the furthest frame count of any record: how far the run got
  frames: np.ndarray  # frames of the metric's records, ascending
  values: np.ndarray
  metrics: frozenset[str]  # every metric name the run logged
  last_step: int = 0  # the same as `last_frame`, in agent steps
  action_repeat: int | None = 1  # env.action_repeat of config.json; None where it had none
  frames_per_step: int = 1  # what a record without `frames` is counted at
  frames_computed: int = 0  # records without `frames` (older wmrl), counted as step x that


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


def _read_config(path: pathlib.Path) -> tuple[str, int | None, int | None]:
  """The env id, seed and action repeat from a run's config.json."""
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
  repeat = _field(config, "env", "action_repeat")
  if repeat is not None and (isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1):
    raise CompareError(f"{file} has env.action_repeat {repeat!r}; it must be a positive int "
                       "(the frames a run counts are its agent steps times it)")
  return env_id, seed if isinstance(seed, int) and not isinstance(seed, bool) else None, repeat


def _field(config, group: str, name: str):
  """config[group][name], or None where either level is absent or not a JSON object."""
  section = config.get(group) if isinstance(config, dict) else None
  return section.get(name) if isinstance(section, dict) else None


def _finite(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_run(path: str | pathlib.Path, metric: str) -> Run:
  """A run folder's env id, seed and the (frames, value) records of `metric`.

  A record's frames are its `frames`; records written before wmrl logged them count
  step x action repeat x the emulator's frame skip, from the run's config.json.
  """
  path = pathlib.Path(path)
  env_id, seed, repeat = _read_config(path)
  per_step = frames_per_step(EnvConfig(id=env_id, action_repeat=repeat or 1))
  records = [r for r in read_metrics(path / RUN_FILES[1]) if _finite(r.get("step"))]
  frames = [int(r["frames"]) if _finite(r.get("frames")) else int(r["step"]) * per_step
            for r in records]
  points = sorted((f, r[metric]) for f, r in zip(frames, records) if _finite(r.get(metric)))
  return Run(
      str(path), env_id, task_name(env_id), seed, last_frame=max(frames, default=0),
      frames=np.array([p[0] for p in points], np.int64),
      values=np.array([p[1] for p in points], np.float64),
      metrics=frozenset(k for r in records for k in r if k not in ("step", "frames")),
      last_step=max((int(r["step"]) for r in records), default=0), action_repeat=repeat,
      frames_per_step=per_step,
      frames_computed=sum(not _finite(r.get("frames")) for r in records))


def warn_computed_frames(runs: list[Run]) -> None:
  """One warning for every run whose frames came (in part) from config.json, not its records."""
  older = [r for r in runs if r.frames_computed]
  if not older:
    return
  groups: dict[tuple[int, bool], list[str]] = {}
  for run in older:
    groups.setdefault((run.frames_per_step, run.action_repeat is None), []).append(run.path)
  parts = []
  for (per_step, guessed), paths in sorted(groups.items()):
    more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
    guess = " (its config.json has no env.action_repeat: taken as 1)" if guessed else ""
    parts.append(f"x{per_step} for {paths[0]}{more}{guess}")
  runs_text = "1 run has" if len(older) == 1 else f"{len(older)} runs have"
  warn(f"{runs_text} records without 'frames' (written before wmrl logged them): their frames "
       "are agent step x env.action_repeat x the emulator's frame skip, from config.json: "
       + "; ".join(parts))


def select_runs(runs: list[Run], reference: Reference) -> tuple[list[Run], list[dict]]:
  """The runs whose task the reference has; the others are skipped with a warning."""
  kept = [r for r in runs if r.task in reference.tasks]
  # Cutoff 0: a skipped run always gets the reference's closest tasks named.
  skipped = [{"path": r.path, "env_id": r.env_id, "task": r.task,
              "closest": close_names(r.task, sorted(reference.tasks), cutoff=0.0)}
             for r in runs if r.task not in reference.tasks]
  # One warning per task, not per seed: ten seeds of one wrong task are one mistake.
  for task in sorted({s["task"] for s in skipped}):
    paths = [s["path"] for s in skipped if s["task"] == task]
    first = next(s for s in skipped if s["task"] == task)
    more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
    warn(f"skipping {paths[0]}{more}: task '{task}' (env.id {first['env_id']}) is not in "
         f"reference '{reference.name}'; closest tasks there: {', '.join(first['closest'])}")
  if not kept:
    tasks = sorted({r.task for r in runs})
    raise CompareError(f"no run has a task of reference '{reference.name}' (runs' tasks: "
                       f"{', '.join(tasks)}); its tasks: {', '.join(sorted(reference.tasks))}. "
                       "Choose another --reference or pass runs of these tasks")
  return kept, skipped


def check_metric(runs: list[Run], metric: str) -> None:
  """Fails when no run logged `metric`; warns about the runs that did not."""
  without = [r for r in runs if not len(r.frames)]
  if len(without) == len(runs):
    names = sorted(set().union(*(r.metrics for r in runs)))
    raise CompareError(f"no run has records of metric '{metric}'; metrics in these runs: "
                       f"{', '.join(names) or 'none'}. Choose one with --metric")
  for run in without:
    warn(f"{run.path} has no records of '{metric}': its scores are missing")


def warn_duplicate_seeds(runs: list[Run]) -> None:
  # Two runs with one task and seed usually mean two experiments mixed together.
  seen: dict[tuple[str, int], str] = {}
  for run in runs:
    key = (run.task, run.seed)
    if run.seed is not None and key in seen:
      warn(f"{run.path} and {seen[key]} are both task {run.task} seed {run.seed}; "
           "both count as seeds of one group")
    seen.setdefault(key, run.path)
