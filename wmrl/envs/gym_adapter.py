"""One ``gymnasium.Env`` as a wmrl ``SingleEnv``."""
from __future__ import annotations

import math

import gymnasium
import numpy as np

from wmrl.envs.actions import action_converter
from wmrl.envs.core import SingleEnv, Step, first_step
from wmrl.envs.observations import ObservationConverter


class GymAdapter(SingleEnv):
  """Converts spaces, actions and observations; seeds the first reset only.

  Seeding only the first reset lets later episodes continue the env's own
  random stream, so they differ from each other yet repeat across runs.
  """

  def __init__(self, env: gymnasium.Env, seed: int, name: str, obs_keys: str = ".*"):
    if not isinstance(env, gymnasium.Env):
      raise TypeError(f"{name}: expected a gymnasium.Env, got {type(env).__name__}; the factory "
                      "must return a gymnasium.Env (old gym.Env classes need porting)")
    self._env = env
    self._name = name
    self._obs = ObservationConverter(env.observation_space, name, obs_keys)
    self._act = action_converter(env.action_space, name)
    self.obs_spec = self._obs.spec
    self.act_spec = self._act.spec
    self.renders = env.render_mode == "rgb_array"
    self._seed = seed
    self._t = 0

  def reset(self) -> Step:
    obs, _ = self._env.reset(seed=self._seed)
    self._seed = None
    self._t = 0
    return first_step(self._obs(obs, 0))

  def step(self, action: np.ndarray) -> Step:
    self._t += 1
    result = self._env.step(self._act(action))
    if len(result) != 5:
      raise ValueError(f"{self._name}: env.step returned {len(result)} values; Gymnasium envs return "
                       "(obs, reward, terminated, truncated, info): port the env to the Gymnasium API")
    obs, reward, terminated, truncated, _ = result
    reward = float(reward)
    if not math.isfinite(reward):
      raise ValueError(f"{self._name}: reward at step {self._t} of the episode is {reward}; "
                       "find where the env produces it or clip it in the env")
    return {**self._obs(obs, self._t), "reward": reward, "is_first": False,
            "is_last": bool(terminated or truncated), "is_terminal": bool(terminated)}

  def render(self) -> np.ndarray:
    if not self.renders:
      raise RuntimeError(
          f"{self._name}: render() needs an env made with render_mode='rgb_array', this one has "
          f"render_mode={self._env.render_mode!r}; create it with render_mode='rgb_array' in its factory")
    return self._env.render()

  def close(self) -> None:
    self._env.close()
