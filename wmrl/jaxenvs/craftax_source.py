"""Craftax environments (`craftax:Craftax-Classic-Symbolic-v1`, ...) as `Source`s.

Only Craftax's no-auto-reset environments and their `reset_env`/`step_env`
are used: the auto-resetting ones drop every episode's final observation,
and `JaxEnv` makes the episodes instead. Craftax's own `is_terminal` counts
reaching `max_timesteps` as game over (a time limit treated as a
termination, with discount 0), so the step runs with `max_timesteps` out of
reach and reports only the true ends (death; Classic: standing in lava;
Craftax: beating the final boss), while the library's `max_timesteps`
becomes `Source.time_limit`, a truncation in `JaxEnv`.
"""
from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp

from wmrl.jaxenvs.core import Source
from wmrl.spaces import ActionSpec, ArraySpec

IDS = ("Craftax-Classic-Symbolic-v1", "Craftax-Classic-Pixels-v1", "Craftax-Symbolic-v1",
       "Craftax-Pixels-v1")
_NEVER = 2**31 - 1  # a max_timesteps the int32 step counter never reaches


def _import():
  try:
    import craftax.craftax_env
  except ImportError as e:
    raise ImportError(f"craftax: ids need the craftax package ({e}); pip install -e '.[craftax]'") from e
  return craftax.craftax_env


def _strong(x):
  x = jnp.asarray(x)  # a Python number leaf too
  return x.astype(x.dtype)  # astype leaves no weak type


def env_ids() -> list[str]:
  try:
    _import()
  except ImportError:
    return []
  return [f"craftax:{name}" for name in IDS]


def source(name: str) -> Source:
  craftax_env = _import()
  if name not in IDS:
    from wmrl.names import did_you_mean
    raise ValueError(f"unknown environment 'craftax:{name}'{did_you_mean(name, IDS)}; craftax has "
                     f"{', '.join(IDS)}")
  env = craftax_env.make_craftax_env_from_name(name, auto_reset=False)
  params = env.default_params
  step_params = params.replace(max_timesteps=_NEVER)
  obs_space = env.observation_space(params)
  # Pixels come as float32 in [0, 1]: stored as the uint8 image they were rendered from.
  image = "Pixels" in name
  key = "image" if image else "obs"
  shape = tuple(obs_space.shape) if image else (int(np.prod(obs_space.shape)),)
  obs_spec = {key: ArraySpec(shape, "uint8" if image else "float32")}

  def observe(obs) -> dict:
    if image:
      return {key: jnp.round(jnp.clip(obs, 0.0, 1.0) * 255).astype(jnp.uint8)}
    return {key: obs.reshape(-1).astype(jnp.float32)}

  def init(key):
    obs, state = env.reset_env(key, params)
    # Its first state has weakly typed leaves that its steps make strong: a state
    # of one kind throughout, so a jitted step compiles once for both.
    return jax.tree.map(_strong, state), observe(obs)

  def transition(key, state, action):
    obs, state, reward, terminated, _ = env.step_env(
        key, state, jnp.argmax(action).astype(jnp.int32), step_params)
    return state, observe(obs), jnp.asarray(reward, jnp.float32), jnp.asarray(terminated, bool)

  return Source(f"craftax:{name}", obs_spec, ActionSpec("discrete", (int(env.num_actions),)),
                init, transition, int(params.max_timesteps))
