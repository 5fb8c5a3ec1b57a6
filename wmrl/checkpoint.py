"""Checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint is a folder ``LOGDIR/checkpoints/ckpt-<env steps>/`` holding

- ``agent/``: the algorithm's state pytree as it is, every array named by its
  tree path (typed RNG keys as their key data), saved with orbax and restored
  into the shapes of a template state (``jax.eval_shape`` builds one without
  computing it), so a new state field is saved without anyone listing it;
- ``replay/``: the replay buffer (its data, bookkeeping and RNG state);
- ``run.json``: the config and the run's counters (the drivers' draws are keyed by
  them; checkpoints of earlier versions also hold a host RNG state, not read);
- ``pending.npz``: the environment step not yet acted on and the policy's
  recurrent carry (by tree path), so the last observation before a restart is kept.

``CHECKSUMS.json`` holds the CRC-32 of every file but the ``.npz`` archives
(zip keeps a CRC-32 of each member and numpy checks it on reading): orbax
reads a garbled array back without complaint. The file ``COMMITTED`` is
written last, atomically: a checkpoint without it (a kill during the save) is
ignored and removed, so the previous one stays the latest. Full replay chunks
are hard-linked from the previous checkpoint, so each save writes only what
is new (a chunk damaged in place is damaged in every checkpoint sharing it).

A resume takes the newest checkpoint that reads back whole
(`restore_newest`); a newer one that does not is moved to
``checkpoints/unreadable/``, never deleted.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import shutil
import zipfile
import zlib
from typing import Any, Callable, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from wmrl.config import Config
from wmrl.names import close_names
from wmrl.registry import UnknownName
from wmrl.replay import Replay
from wmrl.trees import arrays_tree, tree_arrays, tree_shapes

COMMITTED = "COMMITTED"
CHECKSUMS = "CHECKSUMS.json"
UNREADABLE = "unreadable"  # the folder under checkpoints/ that unreadable ones are moved to
# 2: the RSSM keeps its shared-input weights as a dense matrix.
# 3: the state is saved by tree path, whatever its fields.
FORMAT = 3
STATE = "state"  # the prefix of the state's array names


class CheckpointError(ValueError):
  """A checkpoint that cannot be used: corrupt, foreign or for another config."""


class _Damaged(Exception):
  """A checkpoint whose files are not what its save wrote: missing, truncated or
  garbled. Unlike a foreign or incompatible one, an older checkpoint may serve."""


def _nested(arrays: dict[str, Any]) -> dict[str, Any]:
  """Names `a/b/c` as nested dicts {a: {b: {c: ...}}}, the form orbax saves."""
  root: dict[str, Any] = {}
  for name, value in arrays.items():
    *parents, leaf = name.split("/")
    node = root
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return root


def _flat(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in nested.items():
    name = f"{prefix}/{key}" if prefix else key
    out.update(_flat(value, name) if isinstance(value, dict) else {name: value})
  return out


# The agent of a distributed run's process I > 0 (wmrl/distributed.py): its
# host copy of the replicated state, as numpy arrays by tree path.
AGENT_NPZ = "agent.npz"


def _agent_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
  try:
    with np.load(path / AGENT_NPZ) as saved:
      return {name: saved[name] for name in saved.files}
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    raise _Damaged(f"cannot read {AGENT_NPZ}: {e}") from None


def _checkpointer() -> ocp.StandardCheckpointer:
  """Orbax's checkpointer, writing and reading this process's own checkpoint.

  In a distributed run orbax by default waits for all processes at barriers;
  but every process saves its own folder (its replay, and its host copy of
  the agent: with orbax on process 0, as `AGENT_NPZ` elsewhere, since orbax's
  array handlers write on process 0 alone), so each save is of one process.
  """
  if jax.process_count() == 1:
    return ocp.StandardCheckpointer()
  me = jax.process_index()
  return ocp.StandardCheckpointer(multiprocessing_options=ocp.options.MultiprocessingOptions(
      primary_host=me, active_processes={me}, barrier_sync_key_prefix=f"process-{me}"))


def checkpoint_dir(logdir: str | pathlib.Path) -> pathlib.Path:
  return pathlib.Path(logdir) / "checkpoints"


def _step_of(path: pathlib.Path) -> int | None:
  name = path.name
  if name.startswith("ckpt-") and name[5:].isdigit():
    return int(name[5:])
  return None


def list_checkpoints(logdir) -> list[pathlib.Path]:
  """Committed checkpoints, oldest first."""
  root = checkpoint_dir(logdir)
  if not root.is_dir():
    return []
  found = [p for p in root.iterdir() if _step_of(p) is not None and (p / COMMITTED).exists()]
  return sorted(found, key=_step_of)


def steps(logdir) -> list[int]:
  """The steps of the committed checkpoints in `logdir`, oldest first."""
  return [_step_of(p) for p in list_checkpoints(logdir)]


def latest(logdir) -> pathlib.Path | None:
  found = list_checkpoints(logdir)
  return found[-1] if found else None


def save(logdir, state, replay: Replay, run: dict[str, Any],
         pending: dict[str, np.ndarray] | None = None, keep: int = 3) -> pathlib.Path:
  """Writes a checkpoint named by `run["counters"]["env_steps"]`; keeps the newest `keep`."""
  root = checkpoint_dir(logdir)
  root.mkdir(parents=True, exist_ok=True)
  path = root / f"ckpt-{run['counters']['env_steps']:012d}"
  if path.exists():  # an interrupted save of the same step, or a re-save
    shutil.rmtree(path)
  path.mkdir()
  if jax.process_index() == 0:
    checkpointer = _checkpointer()
    checkpointer.save((path / "agent").absolute(), _nested(tree_arrays(state, STATE)))
    checkpointer.wait_until_finished()
  else:  # orbax writes arrays on process 0 alone, whatever its options say
    np.savez(path / AGENT_NPZ, **tree_arrays(state, STATE))
  replay.save(path / "replay")
  np.savez(path / "pending.npz", **(pending or {}))
  (path / "run.json").write_text(json.dumps({"format": FORMAT, **run}, indent=1))
  _write_checksums(path)
  _commit(path)
  _prune(root, keep)
  return path


def _commit(path: pathlib.Path) -> None:
  tmp = path / (COMMITTED + ".tmp")
  with open(tmp, "w") as f:
    f.write("ok\n")
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path / COMMITTED)


def _prune(root: pathlib.Path, keep: int) -> None:
  committed = sorted((p for p in root.iterdir() if _step_of(p) is not None
                      and (p / COMMITTED).exists()), key=_step_of)
  newest = _step_of(committed[-1]) if committed else -1
  for path in root.iterdir():
    step = _step_of(path)
    if step is None:
      continue
    stale = (path / COMMITTED).exists() and path in committed[:-keep] if keep > 0 else False
    unfinished = not (path / COMMITTED).exists() and step < newest
    if stale or unfinished:
      shutil.rmtree(path, ignore_errors=True)


def _checksummed(path: pathlib.Path) -> list[pathlib.Path]:
  """The files of a checkpoint that carry no checksum of their own: all but the
  .npz archives (zip checks each member's CRC-32) and the commit marks."""
  return sorted(f for f in path.rglob("*") if f.is_file() and f.suffix != ".npz"
                and f.name not in (COMMITTED, COMMITTED + ".tmp", CHECKSUMS))


def _crc32(file: pathlib.Path) -> int:
  crc = 0
  with open(file, "rb") as f:
    while block := f.read(1 << 20):
      crc = zlib.crc32(block, crc)
  return crc


def _write_checksums(path: pathlib.Path) -> None:
  sums = {f.relative_to(path).as_posix(): _crc32(f) for f in _checksummed(path)}
  (path / CHECKSUMS).write_text(json.dumps(sums, indent=0))


def _verify(path: pathlib.Path) -> None:
  """Raises _Damaged for a file that is missing or differs from what the save
  wrote. A checkpoint saved before checksums were kept has none and passes."""
  try:
    sums = json.loads((path / CHECKSUMS).read_text())
  except FileNotFoundError:
    return
  except (OSError, ValueError) as e:
    raise _Damaged(f"{CHECKSUMS}: {e}") from None
  if not isinstance(sums, dict):
    raise _Damaged(f"{CHECKSUMS} holds no checksums")
  for name, crc in sums.items():
    file = path / name
    if not file.is_file():
      raise _Damaged(f"{name} is missing")
    if _crc32(file) != crc:
      raise _Damaged(f"{name} differs from what was saved: truncated or garbled")


def _parse_run(path: pathlib.Path) -> dict[str, Any]:
  """run.json: _Damaged where it cannot be read, CheckpointError where it reads
  but was not written by this wmrl (moving such a one aside would help nothing:
  the older ones are alike)."""
  try:
    run = json.loads((path / "run.json").read_text())
  except (OSError, ValueError) as e:  # ValueError: bad JSON or bad UTF-8
    raise _Damaged(f"run.json: {e}") from None
  if not isinstance(run, dict) or run.get("format") != FORMAT or "config" not in run \
      or "counters" not in run:
    raise CheckpointError(f"{path} is not a wmrl checkpoint of format {FORMAT}; "
                          "it was written by another program or version")
  return run


def read_run(path: pathlib.Path) -> dict[str, Any]:
  """The run.json of a checkpoint, checked to be one of ours."""
  try:
    return _parse_run(path)
  except _Damaged as e:
    raise CheckpointError(f"{path} is not a readable wmrl checkpoint ({e}); "
                          "delete it or point --logdir elsewhere") from None


def _config_of(path: pathlib.Path, run: dict[str, Any]) -> Config:
  try:
    return Config.from_dict(run["config"])
  except UnknownName as e:  # not another version: the module that registers it not imported
    raise CheckpointError(f"{path}: the saved config names what this process has not "
                          f"registered ({e}); import the module that registers it first, or "
                          "name the algorithm module:NAME when you train") from None
  except (ValueError, TypeError, AttributeError) as e:
    raise CheckpointError(f"{path}: this wmrl cannot read the saved config ({e}); it was "
                          "written by another version") from None


def _saved_shapes(path: pathlib.Path) -> dict[str, tuple]:
  """(shape, dtype) of each saved agent array by name, from orbax's metadata."""
  if (path / AGENT_NPZ).exists():
    arrays = _agent_npz(path)
    return {name: (tuple(a.shape), a.dtype) for name, a in arrays.items()}
  try:
    meta = _checkpointer().metadata((path / "agent").absolute()).item_metadata
  except Exception as e:  # orbax raises many types; all mean the same here
    raise _Damaged(f"cannot read the agent's metadata: {e}") from None
  if meta is None:  # orbax logs why and gives none
    raise _Damaged("cannot read the agent's metadata")
  return {name: (tuple(m.shape), np.dtype(m.dtype)) for name, m in _flat(meta.tree).items()}


def _restore_agent(path: pathlib.Path, template):
  """The agent state into `template`'s structure. Other arrays than the
  template's are an incompatibility (CheckpointError), checked before reading
  any, so that only a failure to read the arrays themselves counts as damage."""
  shapes = tree_shapes(template, STATE)
  saved = _saved_shapes(path)
  wanted = {name: (tuple(s.shape), np.dtype(s.dtype)) for name, s in shapes.items()}
  if saved != wanted:
    differ = sorted(n for n in saved.keys() | wanted.keys() if saved.get(n) != wanted.get(n))
    more = ", ..." if len(differ) > 3 else ""
    raise CheckpointError(f"{path / 'agent'} holds other arrays than this state has "
                          f"({', '.join(differ[:3])}{more}): it was made with another model "
                          "config or wmrl version")
  if (path / AGENT_NPZ).exists():
    return arrays_tree(template, _agent_npz(path), STATE)
  try:
    arrays = _checkpointer().restore((path / "agent").absolute(), _nested(shapes))
  except Exception as e:  # orbax raises many types; all mean the same here
    raise _Damaged(f"cannot restore the agent: {e}") from None
  return arrays_tree(template, _flat(arrays), STATE)


# What numpy and json raise for a missing, truncated or garbled .npz or .json.
_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def _read_replay(path: pathlib.Path) -> Replay:
  try:
    return Replay.load(path / "replay")
  except _READ_ERRORS as e:
    raise _Damaged(f"cannot restore the replay: {e}") from None


def _read_pending(path: pathlib.Path) -> dict[str, np.ndarray]:
  try:
    with np.load(path / "pending.npz", allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  except _READ_ERRORS as e:
    raise _Damaged(f"cannot read pending.npz: {e}") from None


def _as_error(path: pathlib.Path, e: _Damaged) -> CheckpointError:
  return CheckpointError(f"{path} is damaged: {e}")


def load_agent(path: pathlib.Path, template):
  """Restores the algorithm state of a checkpoint into the structure and shapes
  of `template` (a state, or its `jax.eval_shape`)."""
  read_run(path)
  try:
    _verify(path)
    return _restore_agent(path, template)
  except _Damaged as e:
    raise _as_error(path, e) from None


def load(path: pathlib.Path, template) -> tuple[Any, Replay, dict]:
  """Restores the agent state (into the shapes of `template`), replay and run info."""
  run = read_run(path)
  try:
    _verify(path)
    return _restore_agent(path, template), _read_replay(path), run
  except _Damaged as e:
    raise _as_error(path, e) from None


@dataclasses.dataclass(frozen=True)
class Restored:
  """Everything a resume reads from one checkpoint, all of it read back."""

  path: pathlib.Path
  config: Config  # the saved one
  run: dict[str, Any]  # run.json: the config and the counters
  state: Any
  replay: Replay
  pending: dict[str, np.ndarray]


def _restore(path: pathlib.Path, template: Callable[[Config], Any]) -> Restored:
  """Reads all of one checkpoint: _Damaged where a file is broken, CheckpointError
  where it is intact but unfit; what `template` raises passes through."""
  _verify(path)  # first: a garbled but parsable file must not pass for a changed config
  run = _parse_run(path)
  config = _config_of(path, run)
  state = _restore_agent(path, template(config))
  return Restored(path, config, run, state, _read_replay(path), _read_pending(path))


def _short(text: str, limit: int = 200) -> str:
  """The first line of an error, at most `limit` characters: orbax's run to pages."""
  line = next((l.strip() for l in str(text).splitlines() if l.strip()), "")
  return line if len(line) <= limit else line[:limit - 3] + "..."


def _set_aside(path: pathlib.Path) -> pathlib.Path:
  """Moves a checkpoint to checkpoints/unreadable/ (where list_checkpoints and
  pruning do not look), under a name not taken there: the same step may fail twice."""
  folder = path.parent / UNREADABLE
  folder.mkdir(exist_ok=True)
  target, n = folder / path.name, 1
  while target.exists():
    n += 1
    target = folder / f"{path.name}.{n}"
  path.rename(target)
  return target


def restore_newest(logdirs: Sequence, template: Callable[[int, Config], Any],
                   on_skip: Callable[[pathlib.Path, str], None],
                   newest: int | None = None) -> list[Restored] | None:
  """The newest step at which every one of `logdirs` (one per seed of a run)
  has a committed checkpoint that reads back whole: one `Restored` per logdir;
  None where none has any.

  `template(i, saved_config)` gives the state to restore logdir i's agent into
  (a state or its `jax.eval_shape`); it may raise to refuse the saved config,
  which then passes through. Each newer checkpoint that cannot be read is
  moved to ``checkpoints/unreadable/`` and, once a step is restored, reported
  by `on_skip(where it lies now, one-line reason)`. A checkpoint that reads
  but is not for this wmrl or state raises CheckpointError and is left in
  place; so does finding no step readable, after moving them all aside.
  Checkpoints of steps after `newest` (where given) are left alone: the
  processes of a distributed run resume from a step all of them have.
  """
  roots = [pathlib.Path(d) for d in logdirs]
  skipped: list[tuple[str, pathlib.Path, str]] = []  # (name, where it lies now, cause)
  while True:
    # Names hold the zero-padded step: equal names, equal steps.
    found = [{p.name: p for p in list_checkpoints(root)
              if newest is None or _step_of(p) <= newest} for root in roots]
    if not any(found):
      break
    if not all(found):
      missing = ", ".join(str(root) for root, saved in zip(roots, found) if not saved)
      raise CheckpointError(f"{missing} holds no checkpoint while the run's other seeds do: "
                            "resume with the saved run.seeds or start a new logdir")
    common = sorted(set.intersection(*(set(saved) for saved in found)))
    if not common:
      raise CheckpointError("the seeds' checkpoints share no step: " + "; ".join(
          f"{root}: {', '.join(saved)}" for root, saved in zip(roots, found)))
    name, restored = common[-1], []
    for i, saved in enumerate(found):
      try:
        restored.append(_restore(saved[name], functools.partial(template, i)))
      except _Damaged as e:
        skipped.append((name, _set_aside(saved[name]), _short(e)))
        break
    if len(restored) < len(roots):
      continue  # an older common step may read
    for old, moved, cause in skipped:
      where = moved.parent.relative_to(moved.parents[3] if len(roots) > 1 else moved.parents[2])
      on_skip(moved, f"{old} is unreadable ({cause}) and was moved to {where.as_posix()}/; "
                     f"resuming from {name}")
    return restored
  if skipped:
    label = (lambda name, moved: f"{moved.parents[2].name}/{name}") if len(roots) > 1 else (
        lambda name, moved: name)  # with seeds, the seed's folder too
    tried = "; ".join(f"{label(name, moved)} ({cause})" for name, moved, cause in skipped)
    raise CheckpointError(
        f"no checkpoint in {', '.join(str(checkpoint_dir(r)) for r in roots)} can be read: "
        f"{tried}. They were moved to checkpoints/{UNREADABLE}/ (delete them, or move one back "
        "once repaired); this logdir now holds no checkpoint, so a new run here starts from "
        "step 0")
  return None


def find(logdir, name: str | None = None) -> pathlib.Path:
  """The named checkpoint (``ckpt-...`` or its step), or the latest one."""
  found = list_checkpoints(logdir)
  if not found:
    raise CheckpointError(_missing_logdir(logdir) or f"no checkpoint in {checkpoint_dir(logdir)}; "
                          f"train with `wmrl train --logdir {logdir}` first")
  if name is None:
    return found[-1]
  for path in found:
    if path.name == name or (name.isdigit() and _step_of(path) == int(name)):
      return path
  raise CheckpointError(f"no checkpoint '{name}' in {checkpoint_dir(logdir)}; there are: "
                        + ", ".join(p.name for p in found))


def _missing_logdir(logdir) -> str:
  """Where `logdir` does not exist: says so, with the folders beside it whose
  names are close (a mistyped run name); '' where it exists."""
  logdir = pathlib.Path(logdir)
  if logdir.exists():
    return ""
  parent = logdir.parent
  siblings = [p.name for p in parent.iterdir() if p.is_dir()] if parent.is_dir() else []
  close = close_names(logdir.name, siblings)
  suggestion = (f"; did you mean {', '.join(str(logdir.parent / name) for name in close)}?"
                if close else "")
  return f"the run folder {logdir} does not exist{suggestion}"


def load_pending(path: pathlib.Path) -> dict[str, np.ndarray]:
  """The driver's pending step and policy carry (empty for a run not yet started)."""
  try:
    return _read_pending(path)
  except _Damaged as e:
    raise _as_error(path, e) from None


def saved_config(path: pathlib.Path) -> Config:
  return _config_of(path, read_run(path))
