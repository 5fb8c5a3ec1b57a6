"""A `JaxEnv` behind the host `Env` interface: what the host driver, evaluation
and the benchmarks' host side step. Each call is one jitted program whose
results come back as numpy arrays; the environments' state stays inside."""
from __future__ import annotations

import jax
import numpy as np

from wmrl.jaxenvs.core import EnvState, JaxEnv


class HostEnv:
  """`wmrl.envs.Env`'s interface over a `JaxEnv`, seeded `seed` (env i: `seed + i`)."""

  renders = False  # JAX environments draw no frames here: no videos

  def __init__(self, env: JaxEnv, seed: int):
    self.jax_env = env
    self.obs_spec, self.act_spec, self.num_envs = env.obs_spec, env.act_spec, env.num_envs
    self.seed = int(seed)
    self.state: EnvState | None = None
    self._reset = jax.jit(env.reset)
    self._step = jax.jit(env.step)

  def reset(self) -> dict[str, np.ndarray]:
    self.state, step = self._reset(self.seed)
    return jax.device_get(step)

  def step(self, action: np.ndarray) -> dict[str, np.ndarray]:
    action = np.asarray(action, np.float32)
    expected = (self.num_envs, self.act_spec.dim)
    if action.shape != expected:
      raise ValueError(f"action has shape {action.shape}, expected (num_envs, act_spec.dim) = "
                       f"{expected}; pass a batch, also for num_envs=1")
    if self.state is None:
      raise RuntimeError(f"{self.jax_env.name}: step() before reset()")
    self.state, step = self._step(self.state, action)
    return jax.device_get(step)

  def render(self) -> np.ndarray:
    raise NotImplementedError(f"{self.jax_env.name} renders no frames")

  def close(self) -> None:
    self.state = None

  def __enter__(self) -> "HostEnv":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __repr__(self) -> str:
    return f"HostEnv({self.jax_env!r}, seed={self.seed})"
