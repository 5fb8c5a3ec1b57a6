"""Model-format actions (see wmrl.spaces) -> the environment's own actions."""
from __future__ import annotations

import gymnasium
import numpy as np

from wmrl.spaces import ActionSpec

SUPPORTED = "Box (continuous), Discrete and MultiDiscrete"


class BoxScaler:
  """Maps [-1, 1] linearly onto [low, high], per dimension.

  Dimensions with an infinite bound have no range to scale onto: they pass
  through unscaled, so the env receives the model's action in [-1, 1].
  """

  def __init__(self, low: np.ndarray, high: np.ndarray, shape: tuple[int, ...], dtype):
    low = np.broadcast_to(np.asarray(low, np.float64), shape).reshape(-1)
    high = np.broadcast_to(np.asarray(high, np.float64), shape).reshape(-1)
    finite = np.isfinite(low) & np.isfinite(high)
    # Replacing infinite bounds by [-1, 1] makes the formula the identity there,
    # without computing inf - inf.
    self.low = np.where(finite, low, -1.0).astype(np.float32)
    self.half_range = (0.5 * (np.where(finite, high, 1.0) - self.low)).astype(np.float32)
    self.shape = shape
    self.dtype = dtype
    self.spec = ActionSpec("continuous", (max(1, int(np.prod(shape))),))

  def __call__(self, action: np.ndarray) -> np.ndarray:
    action = np.clip(action, -1.0, 1.0)
    return (self.low + (action + 1.0) * self.half_range).astype(self.dtype).reshape(self.shape)


class _Discrete:
  def __init__(self, space: gymnasium.spaces.Discrete):
    self.start = int(space.start)
    self.spec = ActionSpec("discrete", (int(space.n),))

  def __call__(self, action: np.ndarray) -> int:
    return int(action.argmax()) + self.start


class _MultiDiscrete:
  def __init__(self, space: gymnasium.spaces.MultiDiscrete):
    self.shape = space.shape
    self.start = space.start.reshape(-1)
    self.dtype = space.dtype
    self.spec = ActionSpec("discrete", tuple(int(n) for n in space.nvec.reshape(-1)))

  def __call__(self, action: np.ndarray) -> np.ndarray:
    indices = self.spec.to_indices(action) + self.start
    return indices.astype(self.dtype).reshape(self.shape)


def action_converter(space: gymnasium.Space, env: str):
  """Returns a callable model-format action -> env action, with its ``spec``."""
  if isinstance(space, gymnasium.spaces.Box):
    if not np.issubdtype(space.dtype, np.floating):
      raise ValueError(f"{env}: Box action spaces must have a float dtype, got {space.dtype}; "
                       "use a Discrete or MultiDiscrete space for integer actions")
    return BoxScaler(space.low, space.high, space.shape, space.dtype)
  if isinstance(space, gymnasium.spaces.Discrete):
    return _Discrete(space)
  if isinstance(space, gymnasium.spaces.MultiDiscrete):
    return _MultiDiscrete(space)
  if isinstance(space, gymnasium.spaces.Dict):
    keys = ", ".join(repr(k) for k in space.spaces)
    raise ValueError(
        f"{env}: Dict action spaces are not supported (keys {keys}); supported: {SUPPORTED}. "
        "Flatten the actions with a gymnasium.ActionWrapper around the env.")
  raise ValueError(
      f"{env}: action space {type(space).__name__} ({space}) is not supported; supported: "
      f"{SUPPORTED}. Convert it with a gymnasium.ActionWrapper around the env.")
