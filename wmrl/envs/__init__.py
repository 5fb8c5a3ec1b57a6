"""Environment adapters: Gymnasium and DeepMind Control envs as batched wmrl ``Env``s.

    env = wmrl.envs.make("dmc:walker-walk", num_envs=4, action_repeat=2)
    step = env.reset()                      # dict of [4, ...] arrays
    step = env.step(actions)                # float32 [4, env.act_spec.dim], model format

See ``wmrl.envs.base.Env`` for the step format and ``make`` for the ids.
"""
from wmrl.envs.base import Env
from wmrl.envs.registry import register

__all__ = ["Env", "from_config", "make", "register"]


def __getattr__(name: str):
  # The builder loads JAX (for JAX environments): imported on first use, so that
  # checking an id (wmrl.envs.registry) stays quick.
  if name in ("make", "from_config"):
    from wmrl.envs import builder
    return getattr(builder, name)
  raise AttributeError(f"module 'wmrl.envs' has no attribute {name!r}")
