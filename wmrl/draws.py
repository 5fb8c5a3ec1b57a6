"""Where a driver's random draws come from: the policy's keys, the random
prefill actions and the replayed windows.

`HostDraws` (the host driver's): each lane's numpy generator and its
replay's own, as a run has always drawn. `KeyedDraws` (the fused driver's):
pure functions of the seed and a counter (the vector step for the first two,
the update for the windows), so the fused driver draws them inside its
compiled iteration with nothing carried, and a host driver given the same
`KeyedDraws` draws the very same numbers: that is how the two drivers are
compared step for step (tests/test_fused.py).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from wmrl.spaces import ActionSpec

_STREAMS = {"policy": 0, "prefill": 1, "windows": 2}


def host_key(rng: np.random.Generator) -> np.ndarray:
  """Raw uint32 key data drawn on the host: no device work per env step."""
  return rng.integers(0, 2**32, 2, dtype=np.uint32)


def random_actions(rng: np.random.Generator, spec: ActionSpec, num: int) -> np.ndarray:
  if spec.discrete:
    choices = np.stack([rng.integers(0, n, num) for n in spec.sizes], -1)
    return spec.from_indices(choices)
  return rng.uniform(-1, 1, (num, spec.dim)).astype(np.float32)


class HostDraws:
  """A lane's numpy generator (saved in its checkpoints) and its replay's own."""

  def policy_key(self, lane) -> np.ndarray:
    return host_key(lane.rng)

  def random_actions(self, lane, spec: ActionSpec, num: int) -> np.ndarray:
    return random_actions(lane.rng, spec, num)

  def positions(self, lane, batch_size: int, length: int):
    return lane.replay.sample_positions(batch_size, length)


def seed_key(seed) -> jax.Array:
  """The root of a seed's keyed draws (apart from the agent's own `key(seed)`)."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), 0x5EED)


def _key(root, stream: str, counter) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(root, _STREAMS[stream]), counter)


def keyed_policy_key(root, step) -> jax.Array:
  """The policy's key (raw uint32 [2]) at vector step `step` of the run."""
  return _key(root, "policy", step)


def keyed_prefill_actions(root, step, spec: ActionSpec, num: int) -> jax.Array:
  """Uniform random model-format actions [num, dim] at vector step `step`."""
  key = _key(root, "prefill", step)
  if not spec.discrete:
    return jax.random.uniform(key, (num, spec.dim), jnp.float32, -1.0, 1.0)
  keys = jax.random.split(key, len(spec.sizes))
  return jnp.concatenate([jax.nn.one_hot(jax.random.randint(k, (num,), 0, n), n, dtype=jnp.float32)
                          for k, n in zip(keys, spec.sizes)], -1)


def keyed_window_indices(root, update, batch_size: int, count) -> jax.Array:
  """`batch_size` flat window indices uniform in [0, count) for update `update`
  (wmrl/replay.py `Replay.positions` names the windows)."""
  return jax.random.randint(_key(root, "windows", update), (batch_size,), 0, count)


class KeyedDraws:
  """The fused driver's draws, made on the host for a host driver's lane: the
  lane's counters say which vector step and which update it is."""

  def __init__(self, seed: int):
    self.root = seed_key(seed)
    self._policy = jax.jit(keyed_policy_key)
    self._prefill = jax.jit(keyed_prefill_actions, static_argnums=(2, 3))
    self._windows = jax.jit(keyed_window_indices, static_argnums=2)

  def policy_key(self, lane) -> np.ndarray:
    return np.asarray(self._policy(self.root, lane.counters.env_steps // lane.env.num_envs))

  def random_actions(self, lane, spec: ActionSpec, num: int) -> np.ndarray:
    return np.asarray(self._prefill(self.root, lane.counters.env_steps // num, spec, num))

  def positions(self, lane, batch_size: int, length: int):
    replay = lane.replay
    windows = len(replay) // replay.num_envs - length + 1
    indices = self._windows(self.root, lane.counters.updates, batch_size, replay.num_envs * windows)
    return replay.positions(np.asarray(indices), length)
