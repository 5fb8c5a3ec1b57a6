"""One DeepMind Control Suite task as a wmrl ``SingleEnv``.

Observations are the suite's proprioceptive arrays, each flattened to float32
(scalars to shape (1,)). Episodes end by the suite's own time limit (1000
control steps), a truncation: dm_env reports discount 1 on that last step,
and discount 0 only for a real termination.
"""
from __future__ import annotations

import numpy as np

from wmrl.envs.actions import BoxScaler
from wmrl.envs.core import SingleEnv, Step, first_step
from wmrl.envs.gl import default_headless_backend
from wmrl.envs.observations import ObservationError, selected
from wmrl.spaces import ArraySpec

# The quadruped's default camera 0 sees it from too far; camera 2 is the one
# the DreamerV3 reference (and earlier DMC vision work) uses for it.
_CAMERAS = {"quadruped": 2}


def load_suite():
  """Imports ``dm_control.suite`` after choosing a headless GL backend."""
  default_headless_backend()
  try:
    from dm_control import suite
  except ImportError as exc:
    raise ImportError("dmc: environments need dm-control: pip install 'wmrl[dmc]' "
                      "(dm-control>=1.0.20 with mujoco<4)") from exc
  return suite


class DMCAdapter(SingleEnv):

  renders = True

  def __init__(self, domain: str, task: str, seed: int, image_size: tuple[int, int],
               obs_keys: str = ".*"):
    suite = load_suite()
    self._name = f"dmc:{domain}-{task}"
    self._env = suite.load(domain, task, task_kwargs={"random": seed})
    specs = self._env.observation_spec()
    self._keys = selected(specs, obs_keys, self._name)
    self.obs_spec = {key: ArraySpec((max(1, int(np.prod(specs[key].shape))),), "float32")
                     for key in self._keys}
    spec = self._env.action_spec()
    self._act = BoxScaler(spec.minimum, spec.maximum, spec.shape, spec.dtype)
    self.act_spec = self._act.spec
    self._size = image_size
    self._camera = _CAMERAS.get(domain, 0)
    self._t = 0

  def _obs(self, observation, step: int) -> dict[str, np.ndarray]:
    out = {}
    for key in self._keys:
      value = np.asarray(observation[key], np.float32).reshape(-1)
      if not np.isfinite(value).all():
        raise ObservationError(f"{self._name}: observation {key!r} at step {step} of the episode "
                               "contains NaN or inf; the simulation diverged (try smaller actions)")
      out[key] = value
    return out

  def reset(self) -> Step:
    self._t = 0
    return first_step(self._obs(self._env.reset().observation, 0))

  def step(self, action: np.ndarray) -> Step:
    self._t += 1
    ts = self._env.step(self._act(action))
    last = ts.last()
    return {**self._obs(ts.observation, self._t), "reward": float(ts.reward or 0.0),
            "is_first": False, "is_last": last, "is_terminal": bool(last and ts.discount == 0)}

  def render(self) -> np.ndarray:
    height, width = self._size
    return self._env.physics.render(height=height, width=width, camera_id=self._camera)

  def close(self) -> None:
    self._env.close()
