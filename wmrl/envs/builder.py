"""``make``: an env id and options -> a batched ``Env``; ``from_config`` for an ``EnvConfig``."""
from __future__ import annotations

import dataclasses

from wmrl import jaxenvs
from wmrl.config import EnvConfig

from wmrl.envs.base import Env
from wmrl.envs.core import SingleEnv
from wmrl.envs.observations import key_pattern
from wmrl.envs.registry import resolve
from wmrl.envs.wrappers import ActionRepeat, AutoReset, Pixels, TimeLimit


@dataclasses.dataclass(frozen=True)
class Builder:
  """Builds one wrapped env; picklable, so worker processes can call it."""

  maker: object  # one of wmrl.envs.makers' makers
  env_id: str
  seed: int
  action_repeat: int
  image_size: tuple[int, int]
  pixels: bool
  time_limit: int | None
  obs_keys: str = ".*"

  def __call__(self) -> SingleEnv:
    env = self.maker.create(self.seed, self.image_size, self.pixels, self.obs_keys)
    try:
      if self.time_limit is not None:
        env = TimeLimit(env, self.time_limit)
      if self.action_repeat > 1:
        env = ActionRepeat(env, self.action_repeat)
      if self.pixels:
        env = Pixels(env, self.image_size, self.env_id)
    except BaseException:
      env.close()
      raise
    return AutoReset(env)


def _positive_int(name: str, value, allow_none: bool = False) -> None:
  if value is None and allow_none:
    return
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"make(): {name} must be a positive int{' or None' if allow_none else ''}, "
                     f"got {value!r}")


def make(env_id: str, *, seed: int = 0, num_envs: int = 1, parallel: bool = False,
         action_repeat: int = 1, image_size: tuple[int, int] = (64, 64), pixels: bool = False,
         time_limit: int | None = None, obs_keys: str = ".*") -> Env:
  """Builds ``num_envs`` copies of ``env_id`` as one batched ``Env``.

  Args:
    env_id: ``gym:CartPole-v1`` (or bare ``CartPole-v1``), ``dmc:walker-walk``,
      ``custom:NAME`` (see ``register``), ``some.module.path:factory``, or a JAX
      environment (``gymnax:CartPole-v1``, wmrl/jaxenvs), stepped by one jitted
      program behind the same interface.
    seed: env i is seeded with ``seed + i``.
    parallel: run each env in its own subprocess.
    action_repeat: repeat each action this many env steps, summing rewards.
    image_size: (height, width) of rendered ``image`` observations.
    pixels: observe only the rendered frame, under the key ``image``.
    time_limit: end episodes after this many env steps (before action repeat)
      as a truncation; it adds to any limit the env has itself (the suite's
      1000 steps for DMC, ``max_episode_steps`` for Gymnasium ids).
    obs_keys: a regular expression; the agent sees the observation keys it
      matches whole (nested Dict keys are ``outer/inner``). Text keys are
      dropped with a note.
  """
  if isinstance(seed, bool) or not isinstance(seed, int):
    raise ValueError(f"make(): seed must be an int, got {seed!r}")
  _positive_int("num_envs", num_envs)
  _positive_int("action_repeat", action_repeat)
  _positive_int("time_limit", time_limit, allow_none=True)
  if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
      or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in image_size)):
    raise ValueError(f"make(): image_size must be (height, width) of positive ints, got {image_size!r}")
  key_pattern(obs_keys)
  if obs_keys != ".*" and (pixels or jaxenvs.is_jax_id(env_id)):
    why = "pixels observe only the rendered image" if pixels else f"{env_id} is a JAX environment"
    raise ValueError(f"make(): obs_keys selects the keys of a host environment's observations; {why}")
  if jaxenvs.is_jax_id(env_id):  # written in JAX: one program steps all of them
    if parallel or pixels:
      raise ValueError(f"make(): {env_id} is a JAX environment, stepped as one program: "
                       f"{'parallel' if parallel else 'pixels'} is for host environments")
    return jaxenvs.HostEnv(jaxenvs.make(env_id, num_envs=num_envs, time_limit=time_limit or 0,
                                        action_repeat=action_repeat), seed)
  maker = resolve(env_id)
  builders = [Builder(maker, env_id, seed + i, action_repeat, tuple(image_size), bool(pixels),
                      time_limit, obs_keys) for i in range(num_envs)]
  return Env(builders, parallel=parallel)


def from_config(config: EnvConfig, *, seed: int, num_envs: int | None = None) -> Env:
  """The environments an ``EnvConfig`` describes (``num_envs`` overrides its count)."""
  return make(config.id, seed=seed, num_envs=num_envs or config.num_envs, parallel=config.parallel,
              action_repeat=config.action_repeat, image_size=tuple(config.image_size),
              pixels=config.pixels, time_limit=config.time_limit or None,
              obs_keys=config.obs_keys)
