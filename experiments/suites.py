"""The runner's side of the benchmark suites: one `wmrl train` command per task and seed,
and how far each run got.

The suites themselves (their presets, tasks, reference figures and required
modules) are the registry in wmrl/suites.py; its names are re-exported here,
so a script needs only `import suites`. `commands` turns a suite into one
`wmrl train` command per (task, seed); `status` says how far a run folder
got. The runner `run_suite.py` starts them; from Python:

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
import pathlib
import sys
from typing import Any, Iterable, Mapping

from wmrl import config as cfg
from wmrl import presets as presets_lib
from wmrl.suites import (  # noqa: F401  (the registry, for `import suites`)
    SUITES, Suite, SuiteError, atari_env_id, dmc_env_id, get, register, task_name)

# Fields the runner sets per run; a suite-wide override of them would make
# every run of the suite the same run.
PER_RUN_FIELDS = ("env.id", "run.seed")


@dataclasses.dataclass(frozen=True)
class Run:
  """One (task, seed) of a suite: where it writes and the command that trains it."""

  task: str
  env_id: str
  seed: int
  logdir: pathlib.Path
  steps: int  # environment steps the run trains for; a checkpoint this far is finished
  command: tuple[str, ...]


# --- commands --------------------------------------------------------------------------

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
    raise SuiteError("both --steps and --run.steps given; give one")
  merged = {**suite.overrides, **overrides}
  if steps is not None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
      raise SuiteError(f"steps must be a positive int, got {steps!r}")
    merged["run.steps"] = steps
  names = presets_lib.join(suite.presets, presets)
  try:
    config = presets_lib.apply_presets(cfg.Config(), names).replace(**merged)
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
  selected = suite.select(tasks)
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
