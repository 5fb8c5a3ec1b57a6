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

Saving. ``save(directory)`` writes a numbered snapshot folder inside
``directory``: into a temporary folder first, renamed into place at the end,
and only then are older snapshots deleted. ``load`` reads the newest snapshot,
so a crash mid-save leaves the previous one intact. A full chunk never changes
again, so it is written once and hard-linked (copied where links fail) into
later snapshots; only the newest, partial chunk is written anew each save.
Save into the same directory each time to benefit.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import uuid

import numpy as np

_FORMAT = 1
_META = "replay.json"


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
    self._snapshot: tuple[pathlib.Path, int] | None = None  # (folder, time) of the last save or load

  @property
  def steps_added(self) -> int:
    """Steps ever added, over all streams."""
    return self._time * self.num_envs

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
    reports) that must not change which batches training sees.
    """
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
    envs, offsets = np.divmod(rng.integers(self.num_envs * windows, size=batch_size), windows)
    starts = self._time - stored + offsets
    out = {key: np.empty((batch_size, length) + shape, dtype) for key, (shape, dtype) in self._spec.items()}
    for b in range(batch_size):
      self._copy_window(out, b, int(envs[b]), int(starts[b]), length)
    return out

  def _copy_window(self, out: dict[str, np.ndarray], b: int, env: int, start: int, length: int) -> None:
    done = 0
    while done < length:  # one pass per chunk the window touches
      number, row = divmod(start + done, self.chunk_size)
      n = min(self.chunk_size - row, length - done)
      for key, array in self._chunks[number - self._first_chunk].items():
        out[key][b, done:done + n] = array[env, row:row + n]
      done += n

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
    for path in directory.iterdir():  # older snapshots, and leftovers of crashed saves
      if path != final and (_number(path) is not None or path.name.startswith(".tmp-")):
        shutil.rmtree(path, ignore_errors=True)

  def _save_chunk(self, folder: pathlib.Path, number: int, chunk: dict[str, np.ndarray]) -> None:
    path = folder / _chunk_name(number)
    filled = min(self._time - number * self.chunk_size, self.chunk_size)
    if filled == self.chunk_size and self._snapshot is not None:
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
