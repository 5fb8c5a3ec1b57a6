"""``Env``: a batch of environments in wmrl's step format."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from wmrl.envs.vector import Builder, ParallelBackend, SerialBackend
from wmrl.spaces import ActionSpec, ArraySpec


class Env:
  """N environments stepped together; num_envs=1 is a batch of one.

  Every returned dict holds each key of ``obs_spec`` (images uint8 [N, H, W, C],
  vectors float32 [N, n]), ``reward`` float32 [N] and ``is_first``, ``is_last``,
  ``is_terminal`` bool [N]. Stepping an env whose previous step had is_last
  resets it instead, ignoring its action, so every episode's final
  observation is returned exactly once. Build it with ``wmrl.envs.make``.
  """

  obs_spec: dict[str, ArraySpec]
  act_spec: ActionSpec
  num_envs: int
  renders: bool  # whether render() gives RGB frames

  def __init__(self, builders: Sequence[Builder], parallel: bool = False):
    if not builders:
      raise ValueError("Env needs at least one environment (num_envs >= 1)")
    self._backend = ParallelBackend(builders) if parallel else SerialBackend(builders)
    self._closed = False
    obs_spec, act_spec, _ = self._backend.specs[0]
    for i, (other_obs, other_act, _) in enumerate(self._backend.specs[1:], 1):
      if (other_obs, other_act) != (obs_spec, act_spec):
        self.close()
        raise ValueError(f"env {i} has specs {other_obs}, {other_act} but env 0 has {obs_spec}, "
                         f"{act_spec}; all envs of a batch must share their spaces")
    self.obs_spec = obs_spec
    self.act_spec = act_spec
    self.num_envs = len(builders)
    # Known up front, so callers never need a render() that fails (in a
    # parallel worker, a failure leaves the Env unusable).
    self.renders = all(renders for _, _, renders in self._backend.specs)

  def reset(self) -> dict[str, np.ndarray]:
    """Resets every env and returns the first step of each."""
    return self._stack(self._backend.call("reset"))

  def step(self, action: np.ndarray) -> dict[str, np.ndarray]:
    """Steps with model-format actions, float32 [num_envs, act_spec.dim]."""
    action = np.asarray(action)
    expected = (self.num_envs, self.act_spec.dim)
    if action.shape != expected:
      raise ValueError(f"action has shape {action.shape}, expected (num_envs, act_spec.dim) = "
                       f"{expected}; pass a batch, also for num_envs=1")
    if action.dtype.kind not in "fiub":
      raise ValueError(f"action has dtype {action.dtype}; pass float32 model-format actions")
    action = action.astype(np.float32, copy=False)
    if not np.isfinite(action).all():
      bad = sorted(set(np.argwhere(~np.isfinite(action))[:, 0].tolist()))
      raise ValueError(f"action for env(s) {bad} contains NaN or inf; check the policy's outputs")
    return self._stack(self._backend.call("step", [(a,) for a in action]))

  def render(self) -> np.ndarray:
    """Frames uint8 [N, H, W, 3] from envs that render rgb_array, for videos.

    Gymnasium envs render at their own resolution, DMC at ``image_size``.
    """
    return np.stack([np.asarray(f)[..., :3] for f in self._backend.call("render")])

  def close(self) -> None:
    if not getattr(self, "_closed", True):
      self._closed = True
      self._backend.close()

  def __enter__(self) -> "Env":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __repr__(self) -> str:
    return f"Env(num_envs={self.num_envs}, obs_spec={self.obs_spec}, act_spec={self.act_spec})"

  def _stack(self, steps: list[dict]) -> dict[str, np.ndarray]:
    out = {key: np.stack([s[key] for s in steps]) for key in self.obs_spec}
    out["reward"] = np.array([s["reward"] for s in steps], np.float32)
    for key in ("is_first", "is_last", "is_terminal"):
      out[key] = np.array([s[key] for s in steps], bool)
    return out
