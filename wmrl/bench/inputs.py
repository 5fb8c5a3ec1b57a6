"""What the benchmark feeds the compiled programs: a task's spaces and random data of
their shapes (the values do not change the speed, only the shapes do)."""
from __future__ import annotations

import numpy as np

from wmrl import config as cfg
from wmrl import driver
from wmrl.spaces import ActionSpec, ArraySpec

# DMC walker-walk, proprioceptive: the reference's DMC proprio benchmark task.
WALKER_OBS = {"orientations": ArraySpec((14,), "float32"), "height": ArraySpec((1,), "float32"),
              "velocity": ArraySpec((9,), "float32")}
WALKER_ACT = ActionSpec("continuous", (6,))
DEFAULT_ENV = "dmc:walker-walk"


def task_spaces(config: cfg.Config, env_id: str | None):
  """Walker's proprio spaces as constants (no simulator needed), else the env's own."""
  if env_id is None and not config.env.pixels:
    return WALKER_OBS, WALKER_ACT
  env = driver.make_env(config, seed=0, num_envs=1)
  try:
    return env.obs_spec, env.act_spec
  finally:
    env.close()


def random_obs(rng: np.random.Generator, obs_spec, lead: tuple[int, ...]) -> dict:
  obs = {}
  for key, spec in obs_spec.items():
    shape = (*lead, *spec.shape)
    if spec.dtype == "uint8":
      obs[key] = rng.integers(0, 256, shape, dtype=np.uint8)
    else:
      obs[key] = rng.normal(size=shape).astype(spec.dtype)
  return obs


def random_batch(obs_spec, act_spec: ActionSpec, batch_size: int, length: int, seed: int = 0):
  """A replay-shaped batch; its values do not change the speed, only its shapes."""
  rng = np.random.default_rng(seed)
  batch = random_obs(rng, obs_spec, (batch_size, length))
  actions = driver.random_actions(rng, act_spec, batch_size * length)
  batch["action"] = actions.reshape(batch_size, length, act_spec.dim)
  batch["reward"] = rng.normal(size=(batch_size, length)).astype(np.float32)
  batch["is_first"] = np.zeros((batch_size, length), bool)
  batch["is_first"][:, 0] = True
  batch["is_last"] = np.zeros((batch_size, length), bool)
  batch["is_terminal"] = np.zeros((batch_size, length), bool)
  return batch


def policy_obs(obs_spec, num_envs: int) -> dict:
  obs = random_obs(np.random.default_rng(0), obs_spec, (num_envs,))
  obs["is_first"] = np.zeros((num_envs,), bool)
  return obs
