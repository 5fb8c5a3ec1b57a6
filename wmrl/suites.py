"""The benchmark suites: one registry entry per suite.

    from wmrl import suites
    suite = suites.get("dmc_proprio")
    suite.presets                           # 'dmc_proprio': names from wmrl/presets.py
    suite.env_id("dmc_walker_walk")         # 'dmc:walker-walk'
    suite.task_name("dmc:walker-walk")      # 'dmc_walker_walk'
    suite.figures                           # 'dreamerv3_dmc_proprio.csv' in wmrl/reference/
    frames_per_step(config.env)             # 2 at action repeat 2: the figures count frames

A `Suite` holds what every reader of a benchmark needs: its presets (by
name, so the recipe is written once, in wmrl/presets.py), its tasks as
(task name, env id) pairs, its published reference figures and the modules
its environments need. `wmrl compare` reads the figures and names a run's
task with `task_name`; the runner (experiments/run_suite.py) trains a
suite's tasks with its presets; a suite with figures is a `--reference`.

Task names are the reference figures' names (`dmc_walker_walk`,
`atari_pong`), so the runs of a suite compare with the published curves
unchanged. Host-side and light: nothing here imports JAX or NumPy.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import importlib
import importlib.resources
import io
import re
from typing import Any, Callable, Iterable, Mapping

from wmrl import presets as presets_lib
from wmrl.config import EnvConfig
from wmrl.names import did_you_mean


class SuiteError(ValueError):
  """A wrong suite, task, preset or setting; the message says the fix."""


# --- task names: env id -> task ----------------------------------------------------------

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


# MuJoCo Playground's DM Control Suite names the tasks whose DMC name is not its own in
# snake case (its `_envs`); every other one is (CartpoleBalance -> cartpole_balance).
_PLAYGROUND_DMC = {"BallInCup": "ball_in_cup_catch", "PointMass": "point_mass_easy"}


def task_name(env_id: str) -> str:
  """The reference's name for an env id: dmc:walker-walk -> dmc_walker_walk,
  gym:ALE/Pong-v5 -> atari_pong, playground:WalkerWalk -> dmc_walker_walk (MuJoCo
  Playground's JAX port of the same task), anything else lower-cased with
  non-alphanumerics as `_`."""
  game = _atari_game(env_id)
  if game is not None:
    return "atari_" + _slug(_snake(game))
  if env_id.startswith("playground:"):
    name = env_id.split(":", 1)[1].split(",")[0]
    return "dmc_" + _PLAYGROUND_DMC.get(name, _slug(_snake(name)))
  return _slug(env_id)


# --- frames: what the published curves count --------------------------------------------

def emulator_frame_skip(env_id: str) -> int:
  """The frames the environment itself advances per step, before wmrl's action repeat.

  ALE's v5 ids (gym:ale_py:ALE/Pong-v5) skip 4 frames themselves (frameskip=4), as do
  the old Deterministic ids (Gymnasium registers SpaceInvaders there with 3); NoFrameskip
  ids skip none. Every other id counts one frame a step, the old plain Pong-v4 too,
  whose skip is drawn from 2 to 4 at every step and so has no fixed count.
  """
  name = env_id.split(":")[-1]
  if re.fullmatch(r"ALE/\w+-v5", name):
    return 4
  match = re.fullmatch(r"(\w+?)Deterministic-v\d+", name)
  if match:
    return 3 if match.group(1) == "SpaceInvaders" else 4
  return 1


def frames_per_step(env: EnvConfig) -> int:
  """Environment frames per agent step: the action repeat times the emulator's own frame skip.

  The published curves count frames (the reference's logger multiplies its agent-step
  counter by the suite's repeat), so a run is compared at agent steps x this.
  """
  return int(env.action_repeat) * emulator_frame_skip(env.id)


# --- env ids: task -> env id -------------------------------------------------------------

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


# --- reference figures -------------------------------------------------------------------

def figures_text(figures: str) -> str:
  """The CSV text of a shipped figures file (wmrl/reference/NAME)."""
  return (importlib.resources.files("wmrl") / "reference" / figures).read_text()


def figures_tasks(figures: str) -> list[str]:
  """The task names of a shipped figures file, sorted."""
  rows = csv.DictReader(io.StringIO(figures_text(figures)))
  return sorted({row["task"] for row in rows})


# --- the registry ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Suite:
  """One benchmark: which tasks, with which settings, over which seeds, against which figures.

  `load_tasks` is a function, not a list, so that the DMC suites import
  dm_control (to map their names) only when they are used.
  """

  name: str
  description: str
  load_tasks: Callable[[], list[tuple[str, str]]]  # -> [(task name, env id)]
  presets: str = ""  # wmrl/presets.py names joined by commas, applied in order
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # dotted field -> value
  seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
  requires: Mapping[str, str] = dataclasses.field(default_factory=dict)  # module -> how to install
  figures: str | None = None  # the published figures in wmrl/reference/, if any

  @property
  def tasks(self) -> list[tuple[str, str]]:
    return list(self.load_tasks())

  def select(self, names: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """The suite's (task, env id) pairs, or those named, in the order given, once each."""
    tasks = self.tasks
    if names is None:
      return tasks
    by_name = dict(tasks)
    names = list(names)
    if not names:
      raise SuiteError(f"no tasks selected; suite '{self.name}' has: {', '.join(by_name)}")
    for name in names:
      if name not in by_name:
        raise SuiteError(f"unknown task '{name}' in suite '{self.name}'"
                         f"{did_you_mean(name, by_name)} (its tasks: {', '.join(by_name)})")
    return [(n, by_name[n]) for n in dict.fromkeys(names)]

  def env_id(self, task: str) -> str:
    """The env id of one of the suite's tasks."""
    return self.select([task])[0][1]

  def task_name(self, env_id: str) -> str:
    """The task an env id trains, when it is one of the suite's tasks."""
    name = task_name(env_id)
    by_name = dict(self.tasks)
    if name not in by_name:
      raise SuiteError(f"env id '{env_id}' is task '{name}', which is not in suite "
                       f"'{self.name}'{did_you_mean(name, by_name)}")
    return name

  def missing(self) -> list[str]:
    """The required modules that do not import here, each with its install hint."""
    problems = []
    for module, hint in self.requires.items():
      try:
        importlib.import_module(module)
      except Exception as e:  # an ImportError, or a broken install raising anything
        problems.append(f"{module} ({type(e).__name__}: {e}); install it with: {hint}")
    return problems


SUITES: dict[str, Suite] = {}


def register(suite: Suite) -> Suite:
  """Adds a suite to SUITES (a new name only, so a typo cannot replace a published one)."""
  if suite.name in SUITES:
    raise SuiteError(f"suite '{suite.name}' exists already")
  try:  # a mistyped preset fails here, not in every run of the suite
    presets_lib.check(suite.presets)
  except ValueError as e:
    raise SuiteError(f"suite '{suite.name}': {e}") from None
  SUITES[suite.name] = suite
  return suite


def get(name: str | Suite) -> Suite:
  if isinstance(name, Suite):
    return name
  if name not in SUITES:
    raise SuiteError(f"unknown suite '{name}'{did_you_mean(name, SUITES)} "
                     f"(suites: {', '.join(SUITES)})")
  return SUITES[name]


def references() -> dict[str, str]:
  """The suites with published figures, each with its figures file: `wmrl compare --reference`."""
  return {name: suite.figures for name, suite in SUITES.items() if suite.figures}


# --- the suites --------------------------------------------------------------------------

def _from_figures(figures: str, env_id: Callable[[str], str]) -> Callable[[], list[tuple[str, str]]]:
  """The tasks of a figures file, each with its env id."""
  return lambda: [(task, env_id(task)) for task in figures_tasks(figures)]


def _named(env_ids: Iterable[str]) -> Callable[[], list[tuple[str, str]]]:
  """Tasks named as `task_name` names their env ids (gym:Hopper-v5 -> gym_hopper_v5)."""
  env_ids = tuple(env_ids)
  return lambda: [(task_name(env_id), env_id) for env_id in env_ids]


GYM_MUJOCO_IDS = ("gym:HalfCheetah-v5", "gym:Hopper-v5", "gym:Walker2d-v5", "gym:Ant-v5",
                  "gym:Humanoid-v5")
_DMC_NEEDS = {"dm_control": "pip install 'wmrl[dmc]'  (dm-control with mujoco<4)"}

# The DMC suites train the recipe that made their published curves (wmrl/presets.py).
register(Suite(
    "dmc_proprio", "DeepMind Control, proprioceptive inputs: 18 tasks, 250k agent steps "
    "(500k frames)",
    _from_figures("dreamerv3_dmc_proprio.csv", dmc_env_id), presets="dmc_proprio",
    requires=_DMC_NEEDS, figures="dreamerv3_dmc_proprio.csv"))
register(Suite(
    "dmc_vision", "DeepMind Control from 64x64 pixels: 20 tasks, 500k agent steps (1M frames)",
    _from_figures("dreamerv3_dmc_vision.csv", dmc_env_id), presets="dmc_vision",
    requires=_DMC_NEEDS, figures="dreamerv3_dmc_vision.csv"))
register(Suite(
    "gym_mujoco", "Gymnasium MuJoCo v5: HalfCheetah, Hopper, Walker2d, Ant, Humanoid, 1M steps",
    _named(GYM_MUJOCO_IDS), presets="gym_mujoco,size1m",
    requires={"mujoco": "pip install 'gymnasium[mujoco]' 'mujoco<4'"}))
register(Suite(
    "atari100k", "Atari 100k: 26 games, 100k agent steps (400k frames)",
    _from_figures("dreamerv3_atari100k.csv", atari_env_id), presets="atari100k",
    requires={"ale_py": "pip install ale-py"}, figures="dreamerv3_atari100k.csv"))
POPGYM_MEMORY_IDS = tuple(f"popgym:{task}{level}"
                          for task in ("RepeatPrevious", "RepeatFirst", "Autoencode", "Concentration")
                          for level in ("Easy", "Medium", "Hard"))
register(Suite(
    "popgym_memory", "POPGym memory tasks: RepeatPrevious, RepeatFirst, Autoencode, "
    "Concentration at three difficulties (docs/memory.md)",
    _named(POPGYM_MEMORY_IDS), presets="memory",
    requires={"popgym": "pip install 'wmrl[popgym]'"}))
