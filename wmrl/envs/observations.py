"""Gymnasium observation spaces -> wmrl observation keys, checked every step.

Each leaf of the space (a Dict is walked, nested keys joined as ``outer/inner``)
gets a small converter that knows its declared shape and dtype. The per-step
checks are a few attribute comparisons and one ``isfinite`` over each vector,
because they run on every environment step.

A Tuple of vector spaces is one leaf: its parts' vectors concatenated, as
MultiDiscrete's one-hots are, since a Tuple is one observation in parts
(POPGym's Autoencode gives ``(mode, card)``), not several named ones.

Which keys the agent sees is a regular expression over the key names
(``env.obs_keys``, default every key; the reference's old ``mlp_keys`` /
``cnn_keys`` idea): keys it does not match are never converted, so a space
wmrl cannot read is no obstacle once the pattern leaves it out. A Text key
(MiniGrid's ``mission``) that the pattern keeps is dropped with a note, since
no network reads a string.
"""
from __future__ import annotations

import re
import warnings
from typing import Any

import gymnasium
import numpy as np

from wmrl.spaces import STEP_KEYS, ArraySpec

SUPPORTED = ("Box, Discrete, MultiDiscrete, MultiBinary, a Tuple of these (no images), "
             "or a Dict of these")


class DroppedKey(UserWarning):
  """An observation key the agent cannot read (text), left out of its observations."""


class ObservationError(ValueError):
  """An observation that does not match its declared space, or is not finite."""


def _obs_error(env: str, key: str, step: int, problem: str, fix: str) -> ObservationError:
  return ObservationError(
      f"{env}: observation {key!r} at step {step} of the episode (0 is the reset) {problem}; {fix}")


def is_image_box(space: gymnasium.spaces.Box) -> bool:
  """uint8 HxWxC with 1-4 channels, or a uint8 HxW frame (given a channel axis)."""
  if space.dtype != np.uint8:
    return False
  shape = space.shape
  return len(shape) == 2 or (len(shape) == 3 and 1 <= shape[-1] <= 4)


class _Box:
  def __init__(self, space: gymnasium.spaces.Box):
    self.shape = space.shape
    self.dtype = space.dtype
    self.image = is_image_box(space)
    if self.image:
      out = self.shape if len(self.shape) == 3 else self.shape + (1,)
      self.spec = ArraySpec(tuple(int(s) for s in out), "uint8")
    else:
      # Scalars become (1,) so every vector key has exactly one axis.
      self.spec = ArraySpec((max(1, int(np.prod(self.shape))),), "float32")

  def __call__(self, value, env: str, key: str, step: int) -> np.ndarray:
    if not isinstance(value, np.ndarray):
      raise _obs_error(env, key, step, f"is a {type(value).__name__}, not a numpy array",
                       f"return np.asarray(value, dtype=np.{self.dtype}) from the env")
    if value.shape != self.shape or value.dtype != self.dtype:
      raise _obs_error(
          env, key, step,
          f"has shape {value.shape} and dtype {value.dtype}, but its space declares "
          f"shape {self.shape} and dtype {self.dtype}",
          "make the env return arrays that match its observation_space (or fix the space)")
    if self.image:
      return value if value.ndim == 3 else value[..., None]
    out = value.astype(np.float32).reshape(self.spec.shape)
    # Checked after the cast, so float64 values too large for float32 are caught too.
    if not np.isfinite(out).all():
      raise _obs_error(env, key, step, "contains NaN or inf (after conversion to float32)",
                       "find where the env produces it (a diverged simulation?) or clip it in the env")
    return out


class _Discrete:
  def __init__(self, space: gymnasium.spaces.Discrete):
    self.n = int(space.n)
    self.start = int(space.start)
    self.eye = np.eye(self.n, dtype=np.float32)
    self.spec = ArraySpec((self.n,), "float32")

  def __call__(self, value, env: str, key: str, step: int) -> np.ndarray:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
      if not (isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iu"):
        raise _obs_error(env, key, step, f"is {value!r} of type {type(value).__name__}, "
                         "but its Discrete space needs an integer", "return an int from the env")
    index = int(value) - self.start
    if not 0 <= index < self.n:
      raise _obs_error(env, key, step, f"is {int(value)}, outside its space "
                       f"Discrete({self.n}, start={self.start})", "fix the env or its space")
    return self.eye[index]


class _MultiDiscrete:
  def __init__(self, space: gymnasium.spaces.MultiDiscrete):
    self.nvec = space.nvec
    self.shape = space.shape
    self.start = space.start
    self.sizes = [int(n) for n in space.nvec.reshape(-1)]
    self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
    self.spec = ArraySpec((int(sum(self.sizes)),), "float32")

  def __call__(self, value, env: str, key: str, step: int) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.shape != self.shape or value.dtype.kind not in "iu":
      got = f"shape {value.shape} dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
      raise _obs_error(env, key, step, f"is {got}, but its MultiDiscrete space declares "
                       f"integers of shape {self.shape}", "return an integer numpy array of that shape")
    index = value - self.start
    if (index < 0).any() or (index >= self.nvec).any():
      raise _obs_error(env, key, step, f"is {value.tolist()}, outside its space "
                       f"MultiDiscrete({self.nvec.tolist()})", "fix the env or its space")
    out = np.zeros(self.spec.shape, np.float32)
    out[self.offsets + index.reshape(-1)] = 1.0
    return out


class _MultiBinary:
  def __init__(self, space: gymnasium.spaces.MultiBinary):
    self.shape = space.shape
    self.spec = ArraySpec((max(1, int(np.prod(self.shape))),), "float32")

  def __call__(self, value, env: str, key: str, step: int) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.shape != self.shape:
      got = f"shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
      raise _obs_error(env, key, step, f"is {got}, but its MultiBinary space declares shape "
                       f"{self.shape}", "return a numpy array of 0s and 1s of that shape")
    return value.astype(np.float32).reshape(self.spec.shape)


class _Tuple:
  """The parts' float32 vectors concatenated in order (one-hots for discrete parts)."""

  def __init__(self, space: gymnasium.spaces.Tuple, env: str, key: str):
    where = key or "obs"  # a Tuple at the top level is the key "obs"
    if not space.spaces:
      raise ValueError(f"{env}: observation {where!r} is an empty Tuple space")
    self.parts = []
    for i, sub in enumerate(space.spaces):
      part = _leaf(sub, env, f"{where}/{i}")
      if part is None or getattr(part, "image", False):
        what = "an image Box" if part is not None else f"a {type(sub).__name__} space ({sub})"
        raise ValueError(
            f"{env}: observation {where!r} is a Tuple whose part {i} is {what}; a Tuple's parts "
            "become one vector, so each must be a Box vector, Discrete, MultiDiscrete, "
            "MultiBinary or a Tuple of these. Use a Dict to give images keys of their own.")
      self.parts.append(part)
    self.spec = ArraySpec((sum(p.spec.shape[0] for p in self.parts),), "float32")

  def __call__(self, value, env: str, key: str, step: int) -> np.ndarray:
    if not isinstance(value, (tuple, list)) or len(value) != len(self.parts):
      got = type(value).__name__
      if isinstance(value, (tuple, list)):
        got += f" of length {len(value)}"
      raise _obs_error(env, key, step, f"is a {got}, but its Tuple space has {len(self.parts)} "
                       "parts", "return a tuple with one value per part of the space")
    return np.concatenate([part(v, env, f"{key}/{i}", step)
                           for i, (part, v) in enumerate(zip(self.parts, value))])


_LEAVES = {
    gymnasium.spaces.Box: _Box,
    gymnasium.spaces.Discrete: _Discrete,
    gymnasium.spaces.MultiDiscrete: _MultiDiscrete,
    gymnasium.spaces.MultiBinary: _MultiBinary,
}


def _leaf(space, env: str, key: str):
  """The converter of one leaf space, or None where the space is not supported."""
  if isinstance(space, gymnasium.spaces.Tuple):
    return _Tuple(space, env, key)
  leaf = _LEAVES.get(type(space))
  return leaf(space) if leaf is not None else None


def key_pattern(pattern: str) -> re.Pattern:
  """``env.obs_keys`` compiled, or a ValueError that names the setting."""
  try:
    return re.compile(pattern)
  except (re.error, TypeError) as e:
    raise ValueError(f"env.obs_keys must be a regular expression over observation keys "
                     f"(like 'image|direction'), got {pattern!r}: {e}") from None


def selected(keys, pattern: str, env: str) -> list[str]:
  """The keys ``pattern`` matches whole; a ValueError listing them where it matches none."""
  keys, compiled = list(keys), key_pattern(pattern)
  chosen = [k for k in keys if compiled.fullmatch(k)]
  if not chosen:
    raise ValueError(f"{env}: env.obs_keys={pattern!r} matches none of the observation keys "
                     f"{', '.join(keys)}; the pattern must match a whole key")
  return chosen


def _leaf_spaces(space, path: tuple[str, ...], env: str):
  """Yields (path, leaf space) for each leaf of a (nested) Dict space."""
  if isinstance(space, gymnasium.spaces.Dict):
    if not space.spaces:
      raise ValueError(f"{env}: observation Dict space {'/'.join(path) or '(top level)'} has no keys")
    for name, sub in space.spaces.items():
      yield from _leaf_spaces(sub, path + (name,), env)
    return
  yield path, space


def _walk(space, env: str, pattern: str):
  """Yields (key, path into the raw observation, converter) for each selected leaf,
  and (key, None, None) for each selected text leaf."""
  leaves = list(_leaf_spaces(space, (), env))
  if len(leaves) == 1 and not leaves[0][0]:  # a plain (non-Dict) space: one key
    key, path, converter = _converted(leaves[0][1], (), env)
    selected([key], pattern, env)
    yield key, path, converter
    return
  keys = {"/".join(str(p) for p in path): (path, sub) for path, sub in leaves}
  for key in selected(keys, pattern, env):
    path, sub = keys[key]
    yield (key, None, None) if _is_text(sub) else _converted(sub, path, env)


def _is_text(space) -> bool:
  """A space of strings: Text, or a space of its own with a string dtype
  (MiniGrid's MissionSpace)."""
  dtype = getattr(space, "dtype", None)
  return isinstance(space, gymnasium.spaces.Text) or (dtype is not None
                                                     and np.dtype(dtype).kind in "US")


def _converted(space, path: tuple[str, ...], env: str):
  key = "/".join(str(p) for p in path)
  converter = _leaf(space, env, key)
  if converter is None:
    raise ValueError(
        f"{env}: observation {key or '(top level)'!r} has unsupported space "
        f"{type(space).__name__} ({space}); supported: {SUPPORTED}. Convert it with a "
        "gymnasium.ObservationWrapper around the env, or leave it out with --env.obs_keys.")
  if not path:  # a plain (non-Dict) space: one key named after what it holds
    key = "image" if getattr(converter, "image", False) else "obs"
  return key, path, converter


class ObservationConverter:
  """Converts one raw Gymnasium observation into wmrl keys, checking it."""

  def __init__(self, space: gymnasium.Space, env: str, keys: str = ".*"):
    self.env = env
    walked = list(_walk(space, env, keys))
    self.leaves = [leaf for leaf in walked if leaf[2] is not None]
    texts = [key for key, _, converter in walked if converter is None]
    if not self.leaves:
      raise ValueError(f"{env}: env.obs_keys={keys!r} leaves only text observations, which the "
                       "agent cannot read")
    for key in texts:
      warnings.warn(f"{env}: observation {key!r} is text, which the agent cannot read: "
                    "dropped (choose the keys with --env.obs_keys)", DroppedKey)
    self.is_dict = isinstance(space, gymnasium.spaces.Dict)
    self.spec: dict[str, ArraySpec] = {}
    for key, _, converter in self.leaves:
      if key in STEP_KEYS or key in self.spec:
        raise ValueError(f"{env}: observation key {key!r} clashes with "
                         f"{'a step key' if key in STEP_KEYS else 'another key'}; rename it in the "
                         "env's observation Dict (step keys are " + ", ".join(STEP_KEYS) + ")")
      self.spec[key] = converter.spec

  def __call__(self, obs: Any, step: int) -> dict[str, np.ndarray]:
    if not self.is_dict:
      (key, _, converter), = self.leaves
      return {key: converter(obs, self.env, key, step)}
    out = {}
    for key, path, converter in self.leaves:
      value = obs
      for depth, name in enumerate(path):
        if not isinstance(value, dict) or name not in value:
          where = "/".join(str(p) for p in path[:depth + 1])
          raise _obs_error(self.env, where, step, "is missing from the observation dict",
                           "return every key of the observation Dict space")
        value = value[name]
      out[key] = converter(value, self.env, key, step)
    return out
