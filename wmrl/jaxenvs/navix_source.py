"""Navix environments (`navix:Navix-Empty-5x5-v0`, ...) as `Source`s.

Navix's `step` auto-resets (the step after a done one is a reset, from the
key carried in its state), so only its non-resetting `_step` is used, and
`JaxEnv` makes the episodes, each from `reset` with a key of its own. A
Navix `Timestep` says TERMINATION or TRUNCATION in `step_type` (termination
wins where both hold): `terminated` is TERMINATION only, and the library's
`max_steps` (its default, 4 * height * width) becomes `Source.time_limit`.

Observations are Navix's defaults for each id (symbolic grids: small
integer codes, given as a flat float32 "obs"); RGB ones are an "image".
"""
from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp

from wmrl.jaxenvs.core import Source
from wmrl.spaces import ActionSpec, ArraySpec


def _import():
  try:
    import navix
  except ImportError as e:
    raise ImportError(f"navix: ids need the navix package ({e}); pip install -e '.[navix]'") from e
  return navix


def _strong(x):
  x = jnp.asarray(x)  # a Python number leaf too
  return x.astype(x.dtype)  # astype leaves no weak type


def env_ids() -> list[str]:
  try:
    return [f"navix:{name}" for name in _import().registry()]
  except ImportError:
    return []


def source(name: str) -> Source:
  navix = _import()
  names = list(navix.registry())
  if name not in names:
    from wmrl.names import did_you_mean
    raise ValueError(f"unknown environment 'navix:{name}'{did_you_mean(name, names)}; navix has "
                     f"{', '.join(names)}")
  # max_steps=None: the environment's own default (navix.make's is a flat 100).
  env = navix.make(name, max_steps=None)
  obs_space = env.observation_space
  image = env.observation_fn in (navix.observations.rgb, navix.observations.rgb_first_person)
  key = "image" if image else "obs"
  shape = tuple(obs_space.shape) if image else (int(np.prod(obs_space.shape)),)
  obs_spec = {key: ArraySpec(shape, "uint8" if image else "float32")}
  termination = navix.StepType.TERMINATION

  def observe(obs) -> dict:
    return {key: obs.astype(jnp.uint8) if image else obs.reshape(-1).astype(jnp.float32)}

  def init(key):
    timestep = env.reset(key)
    # Its first timestep has weakly typed leaves that its steps make strong: a state
    # of one kind throughout, so a jitted step compiles once for both.
    return jax.tree.map(_strong, timestep), observe(timestep.observation)

  def transition(key, timestep, action):
    del key  # Navix carries its own key in its state
    timestep = env._step(timestep, jnp.argmax(action).astype(jnp.int32))
    return (timestep, observe(timestep.observation), jnp.asarray(timestep.reward, jnp.float32),
            timestep.step_type == termination)

  n = int(np.asarray(env.action_space.maximum)) + 1  # Discrete(n): 0 .. n-1
  return Source(f"navix:{name}", obs_spec, ActionSpec("discrete", (n,)), init, transition,
                int(env.max_steps))
