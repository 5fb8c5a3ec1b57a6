"""Wrappers over ``SingleEnv``, one behaviour each.

``wmrl.envs.make`` stacks them as AutoReset(Pixels(ActionRepeat(TimeLimit(adapter)))):
the time limit counts raw env steps, action repeat stops at it, pixels render
only the step the agent sees, and the auto-reset sits on top.
"""
from __future__ import annotations

import numpy as np

from wmrl.envs.core import SingleEnv, Step, Wrapper
from wmrl.spaces import ArraySpec


class TimeLimit(Wrapper):
  """Ends an episode after ``limit`` env steps as a truncation (is_last, not is_terminal)."""

  def __init__(self, env: SingleEnv, limit: int):
    super().__init__(env)
    self._limit = limit
    self._t = 0

  def reset(self) -> Step:
    self._t = 0
    return self.env.reset()

  def step(self, action: np.ndarray) -> Step:
    out = self.env.step(action)
    self._t += 1
    if self._t >= self._limit:
      out["is_last"] = True  # is_terminal stays as the env said: a real termination wins
    return out


class ActionRepeat(Wrapper):
  """Repeats each action ``repeat`` times, summing rewards, stopping at the episode's end."""

  def __init__(self, env: SingleEnv, repeat: int):
    super().__init__(env)
    self._repeat = repeat

  def step(self, action: np.ndarray) -> Step:
    total = 0.0
    for _ in range(self._repeat):
      out = self.env.step(action)
      total += out["reward"]
      if out["is_last"]:
        break
    out["reward"] = total
    return out


def resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Nearest-neighbour resize of an HxWxC frame to ``size`` = (height, width).

  Plain NumPy, so no image library is needed and results are identical on
  every machine. Each output pixel takes the input pixel under its centre.
  """
  height, width = size
  if frame.shape[:2] == (height, width):
    return frame
  rows = ((np.arange(height) + 0.5) * frame.shape[0] / height).astype(np.int64)
  cols = ((np.arange(width) + 0.5) * frame.shape[1] / width).astype(np.int64)
  return frame[rows[:, None], cols[None, :]]


def rgb_frame(frame, size: tuple[int, int], name: str) -> np.ndarray:
  """Checks a rendered frame and returns it as uint8 RGB at ``size``."""
  if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3
          and frame.shape[-1] in (3, 4)):
    got = (f"shape {frame.shape} dtype {frame.dtype}" if isinstance(frame, np.ndarray)
           else type(frame).__name__)
    raise ValueError(f"{name}: render() returned {got}; pixels need a uint8 HxWx3 (or RGBA) frame "
                     "from an env made with render_mode='rgb_array'")
  return resize(frame[..., :3], size)


class Pixels(Wrapper):
  """Replaces the observation by the rendered frame under the key ``image``.

  The vector observations are dropped, so that ``pixels=True`` means learning
  from pixels alone, as in the DMC vision benchmark.
  """

  def __init__(self, env: SingleEnv, size: tuple[int, int], name: str):
    super().__init__(env)
    if not env.renders:
      raise ValueError(f"{name}: pixels=True needs an env that renders rgb_array frames; create it "
                       "with render_mode='rgb_array' (in your factory for custom envs)")
    self._size = size
    self._name = name
    self.obs_spec = {"image": ArraySpec((size[0], size[1], 3), "uint8")}

  def _replace(self, out: Step) -> Step:
    image = rgb_frame(self.env.render(), self._size, self._name)
    return {"image": image, "reward": out["reward"], "is_first": out["is_first"],
            "is_last": out["is_last"], "is_terminal": out["is_terminal"]}

  def reset(self) -> Step:
    return self._replace(self.env.reset())

  def step(self, action: np.ndarray) -> Step:
    return self._replace(self.env.step(action))


class AutoReset(Wrapper):
  """Steps after the last step of an episode reset instead, ignoring the action.

  So the final observation is returned exactly once (with is_last) and the
  next step is the first of a new episode (is_first, reward 0).
  """

  def __init__(self, env: SingleEnv):
    super().__init__(env)
    self._done = None  # None until the first reset()

  def reset(self) -> Step:
    out = self.env.reset()
    self._done = out["is_last"]
    return out

  def step(self, action: np.ndarray) -> Step:
    if self._done is None:
      raise RuntimeError("step() was called before reset(): call env.reset() first")
    out = self.env.reset() if self._done else self.env.step(action)
    self._done = out["is_last"]
    return out
