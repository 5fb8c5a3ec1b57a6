"""What the benchmark feeds the compiled programs: a task's spaces and random data of
their shapes (the values do not change the speed, only the shapes do). The data
comes from `wmrl.testing`, the one source of fake spaces and batches."""
from __future__ import annotations

from wmrl import config as cfg
from wmrl import envs
from wmrl.testing import (WALKER_ACT, WALKER_OBS, entry_specs, policy_obs,  # noqa: F401
                          random_batch, random_obs)

DEFAULT_ENV = "dmc:walker-walk"


def task_spaces(config: cfg.Config, env_id: str | None):
  """Walker's proprio spaces as constants (no simulator needed), else the env's own."""
  if env_id is None and not config.env.pixels:
    return WALKER_OBS, WALKER_ACT
  with envs.from_config(config.env, seed=0, num_envs=1) as env:
    return env.obs_spec, env.act_spec
