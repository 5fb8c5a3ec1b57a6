"""MuJoCo Playground's DM Control Suite (`playground:CartpoleBalance`, ...) as `Source`s.

Only the raw environment's `reset(key)` and `step(state, action)` are used:
Playground's training wrappers auto-reset to one cached first state (every
episode would start alike) and drop the final observation; `JaxEnv` makes
the episodes, each from `reset` with a key of its own. The tasks run on
MJX's JAX implementation (`impl="jax"`, which runs on CPU too; Playground's
default is Warp, GPU only). Their `done` is set only where the physics
diverged (NaN positions or velocities): it is reported as `terminated`, as
Playground's training does. Their time limit is the config's
`episode_length` (1000 control steps; `ctrl_dt` 0.01 s for most tasks), the
source's `time_limit`; every DMC config has `action_repeat` 1, so the source
steps once per action and any repeat is `JaxEnv`'s (env.action_repeat).
"""
from __future__ import annotations

import functools

import numpy as np
import jax
import jax.numpy as jnp

from wmrl.jaxenvs.core import Source, box_action
from wmrl.spaces import ActionSpec, ArraySpec


def _import():
  try:
    from mujoco_playground import dm_control_suite
  except ImportError as e:
    raise ImportError(f"playground: ids need the playground package ({e}); "
                      "pip install -e '.[playground]'") from e
  return dm_control_suite


def _strong(x):
  x = jnp.asarray(x)
  return x.astype(x.dtype)  # astype leaves no weak type


def env_ids() -> list[str]:
  try:
    return [f"playground:{name}" for name in _import().ALL_ENVS]
  except ImportError:
    return []


@functools.cache
def load(name: str):
  """The raw environment on MJX's JAX implementation, and its config (loading takes seconds)."""
  suite = _import()
  config = suite.get_default_config(name)
  config.impl = "jax"
  return suite.load(name, config=config), config


def source(name: str) -> Source:
  suite = _import()
  if name not in suite.ALL_ENVS:
    from wmrl.names import did_you_mean
    raise ValueError(f"unknown environment 'playground:{name}'{did_you_mean(name, suite.ALL_ENVS)}; "
                     f"playground's DM Control Suite has {', '.join(suite.ALL_ENVS)}")
  env, config = load(name)
  if int(config.get("action_repeat", 1)) != 1:
    raise ValueError(f"playground:{name}: its config repeats actions {config.action_repeat} "
                     "times; wmrl reads configs that do not (set env.action_repeat instead)")
  model = env.mj_model
  # Unlimited actuators have no range: their actions pass unscaled (box_action's infinite bounds).
  limited = np.asarray(model.actuator_ctrllimited, bool)
  low = np.where(limited, model.actuator_ctrlrange[:, 0], -np.inf)
  high = np.where(limited, model.actuator_ctrlrange[:, 1], np.inf)
  to_env = box_action(low, high)
  obs_size = env.observation_size
  if not isinstance(obs_size, int):
    raise ValueError(f"playground:{name}: observation {obs_size} is not a flat vector; wmrl reads "
                     "the state observations of the DM Control Suite")
  obs_spec = {"obs": ArraySpec((int(obs_size),), "float32")}

  def observe(state) -> dict:
    return {"obs": jnp.asarray(state.obs, jnp.float32).reshape(-1)}

  def init(key):
    state = env.reset(key)
    # Some tasks' states have weakly typed leaves in their first state or after a step
    # (CheetahRun, HopperHop, the sparse ones): without weak types the state is of one
    # kind throughout, so a jitted step compiles once for both.
    return jax.tree.map(_strong, state), observe(state)

  def transition(key, state, action):
    del key  # a task that draws carries its own key (state.info['rng'])
    state = jax.tree.map(_strong, env.step(state, to_env(action)))
    return state, observe(state), jnp.asarray(state.reward, jnp.float32), state.done > 0

  return Source(f"playground:{name}", obs_spec, ActionSpec("continuous", (int(env.action_size),)),
                init, transition, int(config.episode_length))
