"""Sequence replay on the host: add steps of vectorised envs, sample windows.

Layout. Each of the ``num_envs`` environments is one stream of consecutive
steps. All streams advance together (one ``add`` per vectorised env step), so
one time counter serves them all. Time is cut into chunks of ``chunk_size``
steps: chunk ``k`` holds steps ``[k * chunk_size, (k + 1) * chunk_size)`` of
every stream, one array per key shaped ``[num_envs, chunk_size, ...]``, so a
stream's steps in a chunk lie next to each other in memory and a window is a
few slice copies. A chunk is allocated when its first step arrives: memory
grows with the data and adding never moves old data.

Eviction is precise, per step: each stream keeps its newest
``capacity // num_envs`` steps, so ``len(replay) <= capacity`` always (short of
it by less than ``num_envs`` when capacity is not a multiple of it). A chunk is
freed once all its steps are evicted, so at most
``ceil(capacity / num_envs / chunk_size) + 1`` chunks are held. A stream's kept
steps are one unbroken run of time, so no window can join data across a gap.

Writing back. ``sample_positions`` draws windows as (env, start) pairs and
``gather`` copies them out (``sample`` is the two in one); ``write`` puts new
values of stored keys back at some of a window's steps, as the reference
writes the training posteriors back (its ``Replay.update``). Steps evicted
since the window was drawn are skipped.

Saving. ``save(directory)`` writes a numbered snapshot folder inside
``directory``: into a temporary folder first, renamed into place at the end,
and only then are older snapshots deleted. ``load`` reads the newest snapshot,
so a crash mid-save leaves the previous one intact. A full chunk that nothing
has written to since the last save is hard-linked (copied where links fail)
from that snapshot; the newest, partial chunk and every chunk ``write``
changed are written anew. Save into the same directory each time to benefit.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import uuid
from typing import NamedTuple

import numpy as np

_FORMAT = 1
_META = "replay.json"


class Positions(NamedTuple):
  """Where sampled windows lie: window ``b`` holds steps ``starts[b]`` onwards of stream ``envs[b]``."""

  envs: np.ndarray  # [B] int
  starts: np.ndarray  # [B] int, the time of each window's first step


class Replay:
  """Chunked sequence replay over ``num_envs`` parallel streams (see module doc)."""

  def __init__(self, capacity: int, num_envs: int = 1, chunk_size: int = 1024, seed: int = 0):
    for name, value in (("capacity", capacity), ("num_envs", num_envs), ("chunk_size", chunk_size)):
      if int(value) != value or value < 1:
        raise ValueError(f"Replay {name} must be a positive integer, got {value!r}")
    if capacity < num_envs:
      raise ValueError(
          f"Replay capacity={capacity} is less than num_envs={num_envs}; "
          "capacity counts steps over all streams, give each stream room for at least one")
    self.capacity, self.num_envs = int(capacity), int(num_envs)
    self.chunk_size, self.seed = int(chunk_size), int(seed)
    self._stream_capacity = self.capacity // self.num_envs
    self._rng = np.random.default_rng(self.seed)
    self._spec: dict[str, tuple[tuple[int, ...], np.dtype]] | None = None  # fixed by the first add
    self._chunks: list[dict[str, np.ndarray]] = []  # chunk number self._first_chunk + j at index j
    self._first_chunk = 0
    self._time = 0  # steps added to each stream
    self._written: set[int] = set()  # chunk numbers `write` changed since the last save or load
    self._snapshot: tuple[pathlib.Path, int] | None = None  # (folder, time) of the last save or load

  @property
  def steps_added(self) -> int:
    """Steps ever added, over all streams."""
    return self._time * self.num_envs

  @property
  def keys(self) -> tuple[str, ...]:
    """The keys each step holds, fixed by the first ``add``; () before it."""
    return tuple(self._spec or ())

  def _stored(self) -> int:
    return min(self._time, self._stream_capacity)  # steps held by each stream

  def __len__(self) -> int:
    return self._stored() * self.num_envs

  def __repr__(self) -> str:
    return (f"Replay(size={len(self)}, capacity={self.capacity}, num_envs={self.num_envs}, "
            f"chunk_size={self.chunk_size}, steps_added={self.steps_added})")

  # Adding.

  def add(self, step: dict[str, np.ndarray]) -> None:
    """Stores one step of every env: each value has leading axis ``num_envs``."""
    step = {key: np.asarray(value) for key, value in step.items()}
    if self._spec is None:
      self._spec = self._spec_of(step)
    self._check(step)
    row = self._time % self.chunk_size
    if row == 0:
      self._chunks.append(self._new_chunk())
    for key, value in step.items():
      self._chunks[-1][key][:, row] = value  # copies: the caller may reuse its arrays
    self._time += 1
    oldest = (self._time - self._stored()) // self.chunk_size  # chunk of the oldest kept step
    while self._first_chunk < oldest:
      self._chunks.pop(0)
      self._first_chunk += 1

  def _new_chunk(self) -> dict[str, np.ndarray]:
    return {key: np.empty((self.num_envs, self.chunk_size) + shape, dtype)
            for key, (shape, dtype) in self._spec.items()}

  def _spec_of(self, step: dict[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    if not step:
      raise ValueError("Replay.add got an empty step; pass a dict of arrays, one entry per key")
    for key, value in step.items():
      if not isinstance(key, str):
        raise ValueError(f"Replay.add: key {key!r} is not a string; name every entry with a string")
      self._check_leading_axis(key, value)
      if value.dtype == object:
        raise ValueError(f"Replay.add: key {key!r} has dtype object; store numeric or bool arrays")
    return {key: (value.shape[1:], value.dtype) for key, value in step.items()}

  def _check(self, step: dict[str, np.ndarray]) -> None:
    for key in self._spec:
      if key not in step:
        raise ValueError(f"Replay.add: key {key!r} is missing; expected the keys of the first step "
                         f"{sorted(self._spec)}, got {sorted(step)}")
    for key, value in step.items():
      if key not in self._spec:
        raise ValueError(f"Replay.add: key {key!r} is unexpected; expected the keys of the first step "
                         f"{sorted(self._spec)}, got {sorted(step)}")
      self._check_leading_axis(key, value)
      shape, dtype = self._spec[key]
      if value.shape[1:] != shape or value.dtype != dtype:
        raise ValueError(
            f"Replay.add: key {key!r} expected shape {(self.num_envs,) + shape} dtype {dtype}, "
            f"got shape {value.shape} dtype {value.dtype}; every step keeps the first step's "
            "shapes and dtypes (cast it before adding)")

  def _check_leading_axis(self, key: str, value: np.ndarray) -> None:
    if value.shape[:1] != (self.num_envs,):
      raise ValueError(
          f"Replay.add: key {key!r} expected leading axis num_envs={self.num_envs}, got shape "
          f"{value.shape}; pass one step of every env at once (a scalar per env is shape [num_envs])")

  # Sampling.

  def can_sample(self, length: int) -> bool:
    return length >= 1 and self._stored() >= length

  def sample(self, batch_size: int, length: int,
             rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """``batch_size`` windows of ``length`` consecutive steps, each from one stream.

    Start positions are uniform over all windows stored. Windows may cross
    episode boundaries; ``is_first`` marks where the model resets its state.
    ``rng`` draws instead of the replay's own generator, for samples (like
    reports) that must not change which batches training sees. The same as
    ``gather(sample_positions(batch_size, length, rng), length)``.
    """
    return self.gather(self.sample_positions(batch_size, length, rng), length)

  def sample_positions(self, batch_size: int, length: int,
                       rng: np.random.Generator | None = None) -> Positions:
    """Draws ``batch_size`` windows of ``length`` steps as in ``sample``, without copying them."""
    if batch_size < 1 or length < 1:
      raise ValueError(f"Replay.sample needs batch_size >= 1 and length >= 1, got {batch_size}, {length}")
    stored = self._stored()
    if stored < length:
      hint = ""
      if length > self._stream_capacity:
        hint = (f", and each stream keeps only capacity // num_envs = {self._stream_capacity} steps: "
                "raise capacity")
      raise ValueError(f"Replay.sample: no stream holds {length} steps yet (each holds {stored}); "
                       f"add more steps first (see can_sample){hint}")
    windows = stored - length + 1  # per stream, all streams alike
    rng = self._rng if rng is None else rng
    return self.positions(rng.integers(self.num_envs * windows, size=batch_size), length)

  def positions(self, indices: np.ndarray, length: int) -> Positions:
    """The windows of ``length`` steps that flat window indices in
    ``[0, num_envs * windows)`` name: stream ``i // windows``, offset ``i % windows``
    from the oldest kept step. ``sample_positions`` draws them uniformly."""
    stored = self._stored()
    envs, offsets = np.divmod(np.asarray(indices), stored - length + 1)
    return Positions(envs, self._time - stored + offsets)

  def gather(self, positions: Positions, length: int, keys=None) -> dict[str, np.ndarray]:
    """Copies of the windows of ``length`` steps at ``positions`` (all still
    stored): every key, or those of ``keys``."""
    envs, starts = positions
    keys = tuple(self._spec) if keys is None else tuple(keys)
    if not starts.size or starts.min() < self._oldest() or starts.max() + length > self._time:
      raise ValueError(f"Replay.gather: windows of {length} steps at {starts.tolist()} are not all "
                       f"stored (steps {self._oldest()} to {self._time - 1} are); gather right "
                       "after sample_positions, before adding more")
    out = {key: np.empty((len(starts), length) + self._spec[key][0], self._spec[key][1])
           for key in keys}
    for b in range(len(starts)):
      for key, array, row, done, n in self._pieces(int(envs[b]), int(starts[b]), length, keys):
        out[key][b, done:done + n] = array[row:row + n]
    return out

  def write(self, positions: Positions, offset: int, values: dict[str, np.ndarray]) -> None:
    """Stores ``values`` [B, n, ...] at steps ``offset .. offset + n - 1`` of the windows at
    ``positions``, over what those keys held there.

    Only keys that ``add`` stored can be written. Steps evicted since the
    windows were drawn are skipped; the rest are written.
    """
    if not values:
      return
    envs, starts = positions
    values = {key: self._write_value(key, value, len(starts)) for key, value in values.items()}
    lengths = {value.shape[1] for value in values.values()}
    if len(lengths) != 1:
      raise ValueError("Replay.write: the values cover different numbers of steps "
                       f"{ {k: v.shape[1] for k, v in values.items()} }; give each key the same")
    n = lengths.pop()
    if offset < 0 or (starts.size and starts.max() + offset + n > self._time):
      raise ValueError(f"Replay.write: steps {offset} to {offset + n - 1} of the windows at "
                       f"{starts.tolist()} reach past the newest step {self._time - 1}; write "
                       "inside windows that sample_positions drew")
    for b in range(len(starts)):
      first = int(starts[b]) + offset
      skip = max(self._oldest() - first, 0)  # evicted since the window was drawn
      if skip >= n:
        continue
      for key, array, row, done, count in self._pieces(int(envs[b]), first + skip, n - skip, values):
        array[row:row + count] = values[key][b, skip + done:skip + done + count]
      self._written.update(range((first + skip) // self.chunk_size,
                                 (first + n - 1) // self.chunk_size + 1))

  def _write_value(self, key: str, value, batch_size: int) -> np.ndarray:
    if self._spec is None or key not in self._spec:
      stored = sorted(self._spec or ())
      raise ValueError(f"Replay.write: key {key!r} is not stored (stored keys: {stored}); only keys "
                       "that add stored can be written")
    value = np.asarray(value)
    shape, dtype = self._spec[key]
    if value.ndim < 2 or value.shape[0] != batch_size or value.shape[2:] != shape:
      raise ValueError(f"Replay.write: key {key!r} expected shape ({batch_size}, n) + {shape} "
                       f"(windows, steps, then the stored step's shape), got {value.shape}")
    if not np.can_cast(value.dtype, dtype, "same_kind"):
      raise ValueError(f"Replay.write: key {key!r} is stored as {dtype}, got {value.dtype}; cast "
                       "it before writing")
    return value

  def _oldest(self) -> int:
    return self._time - self._stored()  # the time of the oldest step kept

  def _pieces(self, env: int, start: int, length: int, keys=None):
    """(key, the stream's row in a chunk, row, steps done, n) for each chunk piece of a window."""
    done = 0
    while done < length:  # one pass per chunk the window touches
      number, row = divmod(start + done, self.chunk_size)
      n = min(self.chunk_size - row, length - done)
      chunk = self._chunks[number - self._first_chunk]
      for key in keys or chunk:
        yield key, chunk[key][env], row, done, n
      done += n

  # Whole streams.

  def streams(self, keys=None) -> dict[str, np.ndarray]:
    """Every stored step of every stream in time order: ``[num_envs, len // num_envs, ...]``
    (every key, or those of ``keys``)."""
    stored = self._stored()
    if not stored:
      return {}
    return self.gather(Positions(np.arange(self.num_envs), np.full(self.num_envs, self._oldest())),
                       stored, keys)

  @classmethod
  def from_streams(cls, streams: dict[str, np.ndarray], time: int, capacity: int,
                   chunk_size: int = 1024, seed: int = 0) -> "Replay":
    """A replay whose streams hold ``streams`` ``[num_envs, n, ...]`` as their newest
    ``n`` steps of ``time`` added (the inverse of ``streams``; ``n`` is what the
    capacity keeps of ``time``)."""
    num_envs = next(iter(streams.values())).shape[0] if streams else 1
    replay = cls(capacity, num_envs, chunk_size, seed)
    if not streams or time == 0:
      return replay
    replay._spec = replay._spec_of({k: v[:, 0] for k, v in streams.items()})
    replay._time = int(time)
    stored = replay._stored()
    for key, value in streams.items():
      if value.shape[:2] != (num_envs, stored):
        raise ValueError(f"Replay.from_streams: key {key!r} has shape {value.shape}, expected "
                         f"({num_envs}, {stored}, ...) for {time} steps at capacity {capacity}")
    replay._first_chunk = replay._oldest() // chunk_size
    last = (replay._time - 1) // chunk_size
    replay._chunks = [replay._new_chunk() for _ in range(replay._first_chunk, last + 1)]
    done = 0  # one pass per chunk, every stream at once
    while done < stored:
      number, row = divmod(replay._oldest() + done, chunk_size)
      n = min(chunk_size - row, stored - done)
      for key, value in streams.items():
        replay._chunks[number - replay._first_chunk][key][:, row:row + n] = value[:, done:done + n]
      done += n
    return replay

  # Saving and loading.

  def save(self, directory) -> None:
    """Writes a snapshot to continue exactly: data, counters, arguments, RNG state."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    number = max(_snapshots(directory), default=0) + 1
    final = directory / f"{number:08d}-{uuid.uuid4().hex[:8]}"  # unique, so reuse never picks a stranger's files
    tmp = directory / f".tmp-{final.name}"
    tmp.mkdir()
    for j, chunk in enumerate(self._chunks):
      self._save_chunk(tmp, self._first_chunk + j, chunk)
    (tmp / _META).write_text(json.dumps(self._meta()))
    os.replace(tmp, final)  # the commit point: until here the previous snapshot is the newest
    self._snapshot = (final, self._time)
    self._written.clear()  # the snapshot holds what was written: later saves may link to it
    for path in directory.iterdir():  # older snapshots, and leftovers of crashed saves
      if path != final and (_number(path) is not None or path.name.startswith(".tmp-")):
        shutil.rmtree(path, ignore_errors=True)

  def _save_chunk(self, folder: pathlib.Path, number: int, chunk: dict[str, np.ndarray]) -> None:
    path = folder / _chunk_name(number)
    filled = min(self._time - number * self.chunk_size, self.chunk_size)
    # A chunk `write` changed since the last save differs from the file there.
    if filled == self.chunk_size and self._snapshot is not None and number not in self._written:
      old_folder, old_time = self._snapshot
      old = old_folder / path.name
      if (number + 1) * self.chunk_size <= old_time and old.exists():  # it was full there too
        try:
          os.link(old, path)
        except OSError:  # a filesystem without hard links
          shutil.copyfile(old, path)
        return
    # Positional arrays (arr_0, ...) in spec order: keys may be any string, even "file".
    np.savez(path, *(array[:, :filled] for array in chunk.values()))

  def _meta(self) -> dict:
    spec = None if self._spec is None else [
        [key, list(shape), dtype.str] for key, (shape, dtype) in self._spec.items()]
    return {"format": _FORMAT, "capacity": self.capacity, "num_envs": self.num_envs,
            "chunk_size": self.chunk_size, "seed": self.seed, "steps_added": self.steps_added,
            "spec": spec, "rng": self._rng.bit_generator.state}

  @classmethod
  def load(cls, directory) -> "Replay":
    """Restores the newest snapshot written by ``save(directory)``."""
    directory = pathlib.Path(directory)
    snapshots = _snapshots(directory) if directory.is_dir() else {}
    if not snapshots:
      raise FileNotFoundError(f"Replay.load: no saved replay in {directory}; write one with Replay.save")
    folder = snapshots[max(snapshots)]
    meta = json.loads((folder / _META).read_text())
    if meta.get("format") != _FORMAT:
      raise ValueError(f"Replay.load: {folder} has format {meta.get('format')}, this wmrl reads {_FORMAT}")
    replay = cls(meta["capacity"], meta["num_envs"], meta["chunk_size"], meta["seed"])
    replay._rng.bit_generator.state = meta["rng"]
    replay._time = meta["steps_added"] // replay.num_envs
    replay._first_chunk = (replay._time - replay._stored()) // replay.chunk_size
    if meta["spec"] is not None:
      replay._spec = {key: (tuple(shape), np.dtype(dtype)) for key, shape, dtype in meta["spec"]}
      last = (replay._time - 1) // replay.chunk_size
      replay._chunks = [replay._load_chunk(folder, n) for n in range(replay._first_chunk, last + 1)]
    replay._snapshot = (folder, replay._time)
    return replay

  def _load_chunk(self, folder: pathlib.Path, number: int) -> dict[str, np.ndarray]:
    chunk = {}
    with np.load(folder / _chunk_name(number), allow_pickle=False) as data:
      for j, (key, (shape, dtype)) in enumerate(self._spec.items()):
        saved = data[f"arr_{j}"]
        if saved.shape[1] < self.chunk_size:  # the newest chunk: give it room to fill up
          chunk[key] = np.empty((self.num_envs, self.chunk_size) + shape, dtype)
          chunk[key][:, :saved.shape[1]] = saved
        else:
          chunk[key] = saved  # full: take it as is, no second copy
    return chunk


def _chunk_name(number: int) -> str:
  return f"chunk{number:09d}.npz"


def _number(path: pathlib.Path) -> int | None:
  """The snapshot number of a folder named like ``00000012-1a2b3c4d``, else None."""
  head = path.name.split("-")[0]
  return int(head) if head.isdigit() and path.is_dir() else None


def _snapshots(directory: pathlib.Path) -> dict[int, pathlib.Path]:
  return {n: path for path in directory.iterdir() if (n := _number(path)) is not None}
