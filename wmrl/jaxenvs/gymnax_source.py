"""gymnax environments (`gymnax:CartPole-v1`, `gymnax:Breakout-MinAtar`, ...) as `Source`s.

Only gymnax's `reset_env` and `step_env` are used: its `step` auto-resets,
which would drop every episode's final observation, and `JaxEnv` makes the
episodes instead. gymnax 1.0 keeps termination (`step_env`'s done) apart
from its time limit (`is_truncated`); the limit is read from the
environment's `max_steps_in_episode` and applied by `JaxEnv`.

The environment's parameters (gymnax's `EnvParams`, numbers only) are set
after commas in the id: `gymnax:MemoryChain-bsuite,memory_length=63` asks
bsuite's MemoryChain to hold its context for 63 steps (5 by default), and
`max_steps_in_episode=...` changes the time limit along with it.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import jax.numpy as jnp

from wmrl.jaxenvs.core import Source, box_action, parse_settings, split_settings
from wmrl.spaces import ActionSpec, ArraySpec


def _import():
  try:
    import gymnax
  except ImportError as e:
    raise ImportError(f"gymnax: ids need the gymnax package ({e}); pip install -e '.[gymnax]'") from e
  return gymnax


def env_ids() -> list[str]:
  try:
    return [f"gymnax:{name}" for name in _import().registered_envs]
  except ImportError:
    return []


def _set_params(env_id: str, params, settings: str):
  """`params` with the id's settings; only numbers can be set (some fields are arrays)."""
  numbers = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)
             if isinstance(getattr(params, f.name), (bool, int, float))}
  return params.replace(**parse_settings(env_id, settings, numbers)) if settings else params


def source(name: str) -> Source:
  gymnax = _import()
  env_id = f"gymnax:{name}"
  name, settings = split_settings(name)
  if name not in gymnax.registered_envs:
    from wmrl.names import did_you_mean
    raise ValueError(f"unknown environment 'gymnax:{name}'"
                     f"{did_you_mean(name, gymnax.registered_envs)}; gymnax has "
                     f"{', '.join(gymnax.registered_envs)}")
  env, params = gymnax.make(name)
  params = _set_params(env_id, params, settings)
  spaces = gymnax.environments.spaces
  obs_space, act_space = env.observation_space(params), env.action_space(params)
  if not isinstance(obs_space, spaces.Box):
    raise ValueError(f"{env_id}: observation space {obs_space} is not a Box; wmrl reads Box "
                     "observations of gymnax environments")
  image = len(obs_space.shape) == 3 and np.dtype(obs_space.dtype) == np.uint8
  key = "image" if image else "obs"
  shape = tuple(obs_space.shape) if image else (int(np.prod(obs_space.shape)),)
  obs_spec = {key: ArraySpec(shape, "uint8" if image else "float32")}

  def observe(obs) -> dict:
    obs = jnp.asarray(obs)
    return {key: obs.astype(jnp.uint8) if image else obs.reshape(-1).astype(jnp.float32)}

  if isinstance(act_space, spaces.Discrete):
    act_spec = ActionSpec("discrete", (int(act_space.n),))
    start = int(getattr(act_space, "start", 0) or 0)
    to_env = lambda action: jnp.argmax(action).astype(jnp.int32) + start
  elif isinstance(act_space, spaces.Box):
    dim = int(np.prod(act_space.shape))
    act_spec = ActionSpec("continuous", (dim,))
    scale = box_action(np.broadcast_to(act_space.low, (dim,)), np.broadcast_to(act_space.high, (dim,)))
    to_env = lambda action: scale(action).reshape(act_space.shape)
  else:
    raise ValueError(f"{env_id}: action space {act_space} is neither Discrete nor Box")

  def init(key):
    obs, state = env.reset_env(key, params)
    return state, observe(obs)

  def transition(key, state, action):
    obs, state, reward, terminated, _ = env.step_env(key, state, to_env(action), params)
    return state, observe(obs), jnp.asarray(reward, jnp.float32), jnp.asarray(terminated, bool)

  return Source(env_id, obs_spec, act_spec, init, transition,
                int(getattr(params, "max_steps_in_episode", 0) or 0))
