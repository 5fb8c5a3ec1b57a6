"""Benchmark suites: the tasks, settings and seeds of the published DreamerV3 benchmarks.

A `Suite` names its tasks (each a task name and a wmrl env id), the presets
and dotted overrides every run of it gets, its default seeds and the Python
modules its environments need. `commands` turns a suite into one `wmrl train`
command per (task, seed); `status` says how far a run folder got. The runner
`run_suite.py` starts them; from Python:

  import suites
  for run in suites.commands("dmc_proprio", "runs/dmc_proprio", seeds=[0, 1]):
    print(run.task, run.seed, suites.status(run))

Task names are the reference figures' names (`dmc_walker_walk`,
`atari_pong`), which is what `wmrl compare` calls a run's env id, so the
folders of a suite compare against the published curves unchanged:
`wmrl compare runs/dmc_proprio --reference dmc_proprio`.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import pathlib
import sys
from typing import Any, Callable, Iterable, Mapping

from wmrl import config as cfg

# Fields the runner sets per run; a suite-wide override of them would make
# every run of the suite the same run.
PER_RUN_FIELDS = ("env.id", "run.seed")


class SuiteError(ValueError):
  """A wrong suite, task, seed or override; the message says the fix."""


@dataclasses.dataclass(frozen=True)
class Suite:
  """One benchmark: which tasks, with which settings, over which seeds.

  `load_tasks` is a function, not a list, so that the DMC suites import
  dm_control (to map their names) only when they are used.
  """

  name: str
  description: str
  load_tasks: Callable[[], list[tuple[str, str]]]  # -> [(task name, env id)]
  presets: str = ""  # comma-separated wmrl.config presets, applied in order
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # dotted field -> value
  seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
  requires: Mapping[str, str] = dataclasses.field(default_factory=dict)  # module -> how to install
  reference: str | None = None  # the `wmrl compare --reference` figures of this suite

  @property
  def tasks(self) -> list[tuple[str, str]]:
    return list(self.load_tasks())

  def missing(self) -> list[str]:
    """The required modules that do not import here, each with its install hint."""
    problems = []
    for module, hint in self.requires.items():
      try:
        importlib.import_module(module)
      except Exception as e:  # an ImportError, or a broken install raising anything
        problems.append(f"{module} ({type(e).__name__}: {e}); install it with: {hint}")
    return problems


@dataclasses.dataclass(frozen=True)
class Run:
  """One (task, seed) of a suite: where it writes and the command that trains it."""

  task: str
  env_id: str
  seed: int
  logdir: pathlib.Path
  steps: int  # environment steps the run trains for; a checkpoint this far is finished
  command: tuple[str, ...]


# --- task names ------------------------------------------------------------------------

def reference_tasks(reference: str) -> list[str]:
  """The task names of one of wmrl's shipped reference figures (wmrl/reference/*.csv)."""
  from wmrl import compare  # NumPy only; the CSVs ship inside the package
  return sorted(compare.load_reference(reference).tasks)


@functools.cache
def _dmc_pairs() -> tuple[tuple[str, str], ...]:
  from wmrl.envs.dmc import load_suite  # picks a headless GL backend before dm_control loads
  return tuple(load_suite().ALL_TASKS)


def dmc_env_id(task: str, pairs: Iterable[tuple[str, str]] | None = None) -> str:
  """`dmc_ball_in_cup_catch` -> `dmc:ball_in_cup-catch`.

  Domains (ball_in_cup, point_mass) and tasks (swingup_sparse, turn_hard)
  both contain underscores, so no split rule is right for all: the name is
  matched against dm_control's own (domain, task) pairs instead.
  """
  pairs = _dmc_pairs() if pairs is None else tuple(pairs)
  if not task.startswith("dmc_"):
    raise SuiteError(f"'{task}' is not a DMC task name; they look like dmc_walker_walk")
  rest = task[len("dmc_"):]
  matches = [(domain, name) for domain, name in pairs if f"{domain}_{name}" == rest]
  if len(matches) != 1:
    found = "no" if not matches else f"{len(matches)} ({matches})"
    raise SuiteError(f"'{task}' matches {found} dm_control (domain, task) pairs; "
                     "expected exactly one")
  domain, name = matches[0]
  return f"dmc:{domain}-{name}"


def atari_env_id(task: str) -> str:
  """`atari_ms_pacman` -> `gym:ale_py:ALE/MsPacman-v5`.

  The game is the CamelCase of the name's words (ALE spells James Bond
  `Jamesbond`, as the reference figures do). Gymnasium 1.x has no plugin
  registry, so the id names `ale_py`: wmrl imports it, which registers the
  ALE ids, before making the env.
  """
  if not task.startswith("atari_"):
    raise SuiteError(f"'{task}' is not an Atari task name; they look like atari_pong")
  game = "".join(word.capitalize() for word in task[len("atari_"):].split("_"))
  return f"gym:ale_py:ALE/{game}-v5"


def _dmc_tasks(reference: str) -> Callable[[], list[tuple[str, str]]]:
  return lambda: [(task, dmc_env_id(task)) for task in reference_tasks(reference)]


def _atari_tasks() -> list[tuple[str, str]]:
  return [(task, atari_env_id(task)) for task in reference_tasks("atari100k")]


def _named(env_ids: Iterable[str]) -> Callable[[], list[tuple[str, str]]]:
  """Tasks named as `wmrl compare` names their env ids (gym:Hopper-v5 -> gym_hopper_v5)."""
  env_ids = tuple(env_ids)

  def load():
    from wmrl import compare
    return [(compare.task_name(env_id), env_id) for env_id in env_ids]

  return load


# --- the suites ------------------------------------------------------------------------

GYM_MUJOCO_IDS = ("gym:HalfCheetah-v5", "gym:Hopper-v5", "gym:Walker2d-v5", "gym:Ant-v5",
                  "gym:Humanoid-v5")

# Settings without a preset in wmrl/config.py yet; the same values as the
# proposed `gym_mujoco` and `atari100k` presets (experiments/README.md).
GYM_MUJOCO = {
    # Gymnasium's MuJoCo v5 tasks step at their own frame skip already
    # (HalfCheetah 5, Hopper 4, ...), so no action repeat on top.
    "env.action_repeat": 1, "run.steps": 1_000_000, "run.train_ratio": 512,
    "run.eval_every": 10_000, "run.eval_episodes": 10,
}
ATARI100K = {
    # ALE v5 skips 4 frames itself, so action_repeat stays 1: 110k agent
    # steps are 440k frames, the reference's `atari100k` run.steps 1.1e5.
    "env.action_repeat": 1, "env.pixels": True, "env.image_size": (64, 64), "env.num_envs": 1,
    "run.steps": 110_000, "run.train_ratio": 256,
}

_DMC_NEEDS = {"dm_control": "pip install 'wmrl[dmc]'  (dm-control with mujoco<4)"}

SUITES: dict[str, Suite] = {}


def register(suite: Suite) -> Suite:
  """Adds a suite to SUITES (a new name only, so a typo cannot replace a published one)."""
  if suite.name in SUITES:
    raise SuiteError(f"suite '{suite.name}' exists already")
  SUITES[suite.name] = suite
  return suite


register(Suite(
    "dmc_proprio", "DeepMind Control, proprioceptive inputs: 18 tasks, 500k steps",
    _dmc_tasks("dmc_proprio"), presets="dmc_proprio,size1m", requires=_DMC_NEEDS,
    reference="dmc_proprio"))
register(Suite(
    "dmc_vision", "DeepMind Control from 64x64 pixels: 20 tasks, 1M steps",
    _dmc_tasks("dmc_vision"), presets="dmc_vision", requires=_DMC_NEEDS,
    reference="dmc_vision"))
register(Suite(
    "gym_mujoco", "Gymnasium MuJoCo v5: HalfCheetah, Hopper, Walker2d, Ant, Humanoid, 1M steps",
    _named(GYM_MUJOCO_IDS), presets="size1m", overrides=GYM_MUJOCO,
    requires={"mujoco": "pip install 'gymnasium[mujoco]' 'mujoco<4'"}))
register(Suite(
    "atari100k", "Atari 100k: 26 games, 110k agent steps (440k frames)",
    _atari_tasks, overrides=ATARI100K, requires={"ale_py": "pip install ale-py"},
    reference="atari100k"))


def get(name: str | Suite) -> Suite:
  if isinstance(name, Suite):
    return name
  if name not in SUITES:
    close = difflib.get_close_matches(name, SUITES, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise SuiteError(f"unknown suite '{name}'{hint} (suites: {', '.join(SUITES)})")
  return SUITES[name]


# --- commands --------------------------------------------------------------------------

def select_tasks(suite: Suite, names: Iterable[str] | None) -> list[tuple[str, str]]:
  """The suite's tasks, or those named, in the order given; unknown names are an error."""
  tasks = suite.tasks
  if names is None:
    return tasks
  by_name = dict(tasks)
  names = list(names)
  unknown = [n for n in names if n not in by_name]
  if unknown:
    close = difflib.get_close_matches(unknown[0], by_name, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise SuiteError(f"unknown task '{unknown[0]}' in suite '{suite.name}' (its tasks: "
                     f"{', '.join(by_name)}){hint}")
  if not names:
    raise SuiteError(f"no tasks selected; suite '{suite.name}' has: {', '.join(by_name)}")
  return [(n, by_name[n]) for n in dict.fromkeys(names)]


def resolve(suite: Suite, steps: int | None = None, overrides: Mapping[str, Any] | None = None,
            presets: str = "") -> tuple[str, dict[str, Any], cfg.Config]:
  """The presets string, merged overrides and resulting config of the suite's runs.

  Resolving here, once, turns a mistyped field or preset into one clear
  error before any run starts, instead of one failed run per task and seed.
  """
  overrides = dict(overrides or {})
  fixed = [n for n in overrides if n in PER_RUN_FIELDS]
  if fixed:
    raise SuiteError(f"{', '.join(fixed)} is set per run by the suite; choose tasks with "
                     "--tasks and seeds with --seeds")
  if steps is not None and "run.steps" in overrides:
    raise SuiteError("both --steps and run.steps given; give one")
  merged = {**suite.overrides, **overrides}
  if steps is not None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
      raise SuiteError(f"steps must be a positive int, got {steps!r}")
    merged["run.steps"] = steps
  names = ",".join(p for p in (suite.presets, presets) if p)
  try:
    config = cfg.apply_presets(cfg.Config(), names).replace(**merged)
  except ValueError as e:
    raise SuiteError(f"suite '{suite.name}': {e}") from None
  return names, merged, config


def flag_value(value: Any) -> str:
  """A config value as `wmrl train` parses it back (tuples comma-separated)."""
  if isinstance(value, (tuple, list)):
    return ",".join(flag_value(v) for v in value)
  if isinstance(value, bool):
    return "true" if value else "false"
  return str(value)


def train_command(env_id: str, logdir: pathlib.Path, seed: int, presets: str,
                  overrides: Mapping[str, Any]) -> tuple[str, ...]:
  command = [sys.executable, "-m", "wmrl.cli", "train", "--env", env_id, "--logdir", str(logdir)]
  if presets:
    command += ["--preset", presets]
  command += ["--seed", str(seed), "--quiet"]
  for name, value in overrides.items():
    command += [f"--{name}", flag_value(value)]
  return tuple(command)


def commands(suite: str | Suite, logdir: str | pathlib.Path, seeds: Iterable[int] | None = None,
             tasks: Iterable[str] | None = None, steps: int | None = None,
             overrides: Mapping[str, Any] | None = None, presets: str = "") -> list[Run]:
  """One `wmrl train` run per (task, seed), logging to `logdir/TASK/seedN`.

  `steps` and `overrides` (dotted fields) apply to every run, after the
  suite's own; `presets` are applied after the suite's presets.
  """
  suite = get(suite)
  seeds = list(suite.seeds if seeds is None else seeds)
  if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
    raise SuiteError(f"seeds must be non-negative ints, at least one; got {seeds!r}")
  selected = select_tasks(suite, tasks)
  names, merged, config = resolve(suite, steps, overrides, presets)
  runs = []
  for task, env_id in selected:
    for seed in dict.fromkeys(seeds):
      run_logdir = pathlib.Path(logdir) / task / f"seed{seed}"
      # Only what the suite and the user set goes on the command line; the
      # presets fill in the rest, as in a hand-typed `wmrl train`.
      runs.append(Run(task, env_id, seed, run_logdir, config.run.steps,
                      train_command(env_id, run_logdir, seed, names, merged)))
  return runs


# --- progress of a run -----------------------------------------------------------------

START, RESUME, FINISHED = "start", "resume", "finished"


def progress(logdir: pathlib.Path) -> int | None:
  """Environment steps of the run's latest committed checkpoint; None without one.

  Uses wmrl.checkpoint itself, so what counts as a checkpoint here is what
  the driver resumes from (a checkpoint without COMMITTED is not one).
  """
  from wmrl import checkpoint  # imports JAX: only when a run folder is looked at
  latest = checkpoint.latest(logdir)
  if latest is None:
    return None
  return int(checkpoint.read_run(latest)["counters"]["env_steps"])


def status(run: Run) -> tuple[str, int]:
  """(START, 0), (RESUME, steps so far) or (FINISHED, steps so far).

  An unreadable checkpoint counts as RESUME: `wmrl train` then stops with
  an error that names it, in the run's train.log.
  """
  try:
    steps = progress(run.logdir)
  except ValueError:  # checkpoint.CheckpointError
    return RESUME, 0
  if steps is None:
    return START, 0
  return (FINISHED if steps >= run.steps else RESUME), steps
