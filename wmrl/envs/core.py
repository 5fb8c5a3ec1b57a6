"""The unbatched environment interface shared by the adapters and wrappers.

An adapter turns one foreign environment (Gymnasium, DeepMind Control) into a
``SingleEnv``; wrappers add one behaviour each; ``wmrl.envs.base.Env`` batches
several of them. A step is a plain dict: the observation keys of ``obs_spec``
(unbatched arrays) plus ``reward`` (float) and ``is_first``, ``is_last``,
``is_terminal`` (bool), the keys of ``wmrl.spaces.STEP_KEYS``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from wmrl.spaces import ActionSpec, ArraySpec

Step = dict[str, Any]


def first_step(obs: dict[str, np.ndarray]) -> Step:
  """The step a reset returns: no reward, nothing ended yet."""
  return {**obs, "reward": 0.0, "is_first": True, "is_last": False, "is_terminal": False}


class SingleEnv:
  """One environment in wmrl's step format; actions are model-format vectors."""

  obs_spec: dict[str, ArraySpec]
  act_spec: ActionSpec
  # Whether render() returns RGB frames; the pixels wrapper checks it up front
  # so that a non-rendering env fails at construction, not at the first step.
  renders: bool = False

  def reset(self) -> Step:
    raise NotImplementedError

  def step(self, action: np.ndarray) -> Step:
    raise NotImplementedError

  def render(self) -> np.ndarray:
    raise NotImplementedError(f"{type(self).__name__} cannot render frames")

  def close(self) -> None:
    pass


class Wrapper(SingleEnv):
  """Delegates everything to the wrapped env; subclasses override one thing."""

  def __init__(self, env: SingleEnv):
    self.env = env
    self.obs_spec = env.obs_spec
    self.act_spec = env.act_spec
    self.renders = env.renders

  def reset(self) -> Step:
    return self.env.reset()

  def step(self, action: np.ndarray) -> Step:
    return self.env.step(action)

  def render(self) -> np.ndarray:
    return self.env.render()

  def close(self) -> None:
    self.env.close()
