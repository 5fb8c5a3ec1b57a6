"""Environment adapters: Gymnasium and DeepMind Control envs as batched wmrl ``Env``s.

    env = wmrl.envs.make("dmc:walker-walk", num_envs=4, action_repeat=2)
    step = env.reset()                      # dict of [4, ...] arrays
    step = env.step(actions)                # float32 [4, env.act_spec.dim], model format

See ``wmrl.envs.base.Env`` for the step format and ``make`` for the ids.
"""
from wmrl.envs.base import Env
from wmrl.envs.builder import from_config, make
from wmrl.envs.registry import register

__all__ = ["Env", "from_config", "make", "register"]
