"""Sequence replay in device memory: the fused driver's replay, as pure functions.

The same contract as the host replay (`wmrl/replay.py`): `num_envs` streams
advance together, each keeps its newest `capacity // num_envs` steps,
windows are drawn uniformly over every stored window of every stream (an
index `i` in `[0, num_envs * windows)` is stream `i // windows`, offset
`i % windows` from the oldest kept step), and `write` puts the training
posteriors back over the steps they were computed for. Given the same
indices, both replays hand out the same windows.

Layout: one ring per key, `[num_envs, capacity // num_envs, ...]`, and one
time counter; step `t` of a stream lies at row `t % rows`. A ring and not
flashbax's trajectory buffer: the ring is the host replay's layout with the
chunks folded onto one array, so sampling, write-back and the saved format
are the host replay's own, and adding a step is one `dynamic_update_slice`
per key where flashbax's buffer adds the same plus bookkeeping we do not
need (its sampler draws its own way, which would break the drivers'
equivalence).

Memory is allocated up front: `memory_bytes` says how much, and
`DeviceReplay.check_fits` refuses a replay the device cannot hold before
anything is allocated. A run that adds at most `max_time` steps to each
stream never evicts past them, so its rings hold `min(capacity // num_envs,
max_time)` rows: the same steps as rings of the whole capacity would, in
the memory the run can fill (the default capacity of 5M steps would
otherwise take 20 GB of latents at size1m, for a run of 15k steps).

Saving goes through the host replay's format (`to_host` / `from_host`), so
a checkpoint of the fused driver is read as any other (and a host-driver
run could continue from it).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from wmrl.replay import Positions, Replay


class ReplayState(NamedTuple):
  """The device replay's arrays: rings `[num_envs, rows, ...]` and the steps added per stream."""

  data: dict[str, jax.Array]
  time: jax.Array  # int32 []


class DeviceReplay:
  """The static description of a device replay (its spec, streams and rows) and
  the pure functions over its `ReplayState` (module doc)."""

  def __init__(self, spec: dict[str, jax.ShapeDtypeStruct], num_envs: int, capacity: int,
               max_time: int | None = None):
    if capacity < num_envs:
      raise ValueError(f"DeviceReplay capacity={capacity} is less than num_envs={num_envs}; give "
                       "each stream room for at least one step")
    if not spec:
      raise ValueError("DeviceReplay needs the spec of at least one key")
    self.spec = {k: jax.ShapeDtypeStruct(tuple(s.shape), np.dtype(s.dtype)) for k, s in spec.items()}
    self.num_envs, self.capacity = int(num_envs), int(capacity)
    self.kept = self.capacity // self.num_envs  # steps each stream keeps
    self.rows = min(self.kept, max_time) if max_time else self.kept  # and holds in memory

  def memory_bytes(self) -> int:
    """Bytes the rings take on the device."""
    return sum(self.num_envs * self.rows * int(np.prod(s.shape)) * s.dtype.itemsize
               for s in self.spec.values())

  def check_fits(self, device: jax.Device | None = None, reserve: float = 0.25,
                 copies: int = 1) -> None:
    """Refuses `copies` replays (one per seed) larger than `1 - reserve` of the
    device's free memory, where the device reports it (CPU: of the host's
    available memory)."""
    device = device or jax.devices()[0]
    free = _free_bytes(device)
    if free is None:
      return
    need = copies * self.memory_bytes()
    if need > (1 - reserve) * free:
      each = f" for each of {copies} seeds" if copies > 1 else ""
      keys = ", ".join(f"{k} {s.dtype}{list(s.shape)}" for k, s in self.spec.items())
      raise ValueError(
          f"the device replay needs {need / 2**30:.2f} GiB for {self.rows * self.num_envs} "
          f"steps{each} of {keys}, "
          f"but {device.platform} device {device.id} has {free / 2**30:.2f} GiB free and "
          f"{int(reserve * 100)}% of it is kept for the agent: lower run.replay_capacity to at "
          f"most {int((1 - reserve) * free / need * self.rows * self.num_envs)}, run fewer "
          "run.steps or seeds, or use run.driver host")

  def init(self) -> ReplayState:
    data = {k: jnp.zeros((self.num_envs, self.rows) + s.shape, s.dtype) for k, s in self.spec.items()}
    return ReplayState(data, jnp.int32(0))

  def stored(self, state: ReplayState) -> jax.Array:
    """Steps each stream holds."""
    return jnp.minimum(state.time, self.rows)

  def add(self, state: ReplayState, step: dict[str, jax.Array]) -> ReplayState:
    """Stores one step of every stream (each value `[num_envs, ...]`)."""
    if set(step) != set(self.spec):
      raise ValueError(f"DeviceReplay.add: keys {sorted(step)}, expected {sorted(self.spec)}")
    row = state.time % self.rows
    data = {k: jax.lax.dynamic_update_index_in_dim(v, step[k].astype(v.dtype)[:, None], row, 1)
            for k, v in state.data.items()}
    return ReplayState(data, state.time + 1)

  def positions(self, state: ReplayState, indices: jax.Array, length: int) -> Positions:
    """Windows of `length` steps for flat window indices (module doc)."""
    stored = self.stored(state)
    windows = stored - length + 1
    envs, offsets = jnp.divmod(indices, windows)
    return Positions(envs, state.time - stored + offsets)

  def gather(self, state: ReplayState, positions: Positions, length: int) -> dict[str, jax.Array]:
    """The windows at `positions`: `[B, length, ...]` per key."""
    envs, starts = positions
    rows = (starts[:, None] + jnp.arange(length)) % self.rows
    return {k: v[envs[:, None], rows] for k, v in state.data.items()}

  def write(self, state: ReplayState, positions: Positions, offset: int,
            values: dict[str, jax.Array]) -> ReplayState:
    """Stores `values` [B, n, ...] at steps `offset ..` of the windows at `positions`;
    steps evicted since the windows were drawn are left alone."""
    if not values:
      return state
    envs, starts = positions
    n = next(iter(values.values())).shape[1]
    times = starts[:, None] + offset + jnp.arange(n)
    kept = times >= state.time - self.stored(state)
    # Out-of-range rows are dropped by the scatter: that is how evicted steps are skipped.
    rows = jnp.where(kept, times % self.rows, self.rows)
    data = dict(state.data)
    for k, v in values.items():
      data[k] = data[k].at[envs[:, None], rows].set(v.astype(data[k].dtype), mode="drop")
    return ReplayState(data, state.time)

  # The host replay's format, for checkpoints.

  def to_host(self, state: ReplayState, seed: int = 0, chunk_size: int = 1024) -> Replay:
    """A host `Replay` holding the same steps (and time) as `state`."""
    time = int(state.time)
    stored = min(time, self.rows)
    rows = (np.arange(time - stored, time) % self.rows) if stored else np.zeros(0, int)
    streams = {k: np.asarray(v)[:, rows] for k, v in jax.device_get(state.data).items()}
    return Replay.from_streams(streams, time, self.capacity, chunk_size, seed)

  def from_host(self, replay: Replay) -> ReplayState:
    """`replay`'s steps as a device replay state; refuses another layout or keys."""
    if (replay.num_envs, replay.capacity) != (self.num_envs, self.capacity):
      raise ValueError(f"the saved replay has num_envs={replay.num_envs}, capacity="
                       f"{replay.capacity}; this run's device replay has {self.num_envs}, "
                       f"{self.capacity}")
    time = replay.steps_added // replay.num_envs
    if time == 0:
      return self.init()
    if set(replay.keys) != set(self.spec):
      raise ValueError(f"the saved replay holds {sorted(replay.keys)}, this run stores "
                       f"{sorted(self.spec)}")
    if time > self.rows < self.kept:
      raise ValueError(f"the saved replay has {time} steps per stream, more than this device "
                       f"replay holds ({self.rows})")
    streams = replay.streams()
    stored = min(time, self.rows)
    rows = np.arange(time - stored, time) % self.rows
    data = {}
    for k, s in self.spec.items():
      ring = np.zeros((self.num_envs, self.rows) + s.shape, s.dtype)
      ring[:, rows] = streams[k]
      data[k] = jnp.asarray(ring)
    return ReplayState(data, jnp.int32(time))


def _free_bytes(device: jax.Device) -> int | None:
  if device.platform == "cpu":
    try:
      import os
      return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
      return None
  stats = device.memory_stats() or {}
  if "bytes_limit" in stats:
    return stats["bytes_limit"] - stats.get("bytes_in_use", 0)
  return None
