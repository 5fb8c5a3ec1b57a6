"""Checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint is a folder ``LOGDIR/checkpoints/ckpt-<env steps>/`` holding

- ``agent/``: the algorithm's state pytree as it is, every array named by its
  tree path (typed RNG keys as their key data), saved with orbax and restored
  into the shapes of a template state (``jax.eval_shape`` builds one without
  computing it), so a new state field is saved without anyone listing it;
- ``replay/``: the replay buffer (its data, bookkeeping and RNG state);
- ``run.json``: the config, the loop's counters and the host RNG state;
- ``pending.npz``: the environment step not yet acted on and the policy's
  recurrent carry (by tree path), so the last observation before a restart is kept.

The file ``COMMITTED`` is written last, atomically: a checkpoint without it
(a kill during the save) is ignored and removed, so the previous one stays
the latest. Full replay chunks are hard-linked from the previous checkpoint,
so each save writes only what is new.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
from typing import Any

import numpy as np
import orbax.checkpoint as ocp

from wmrl.config import Config
from wmrl.replay import Replay
from wmrl.trees import arrays_tree, tree_arrays, tree_shapes

COMMITTED = "COMMITTED"
# 2: the RSSM keeps its shared-input weights as a dense matrix.
# 3: the state is saved by tree path, whatever its fields.
FORMAT = 3
STATE = "state"  # the prefix of the state's array names


class CheckpointError(ValueError):
  """A checkpoint that cannot be used: corrupt, foreign or for another config."""


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
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save((path / "agent").absolute(), _nested(tree_arrays(state, STATE)))
  checkpointer.wait_until_finished()
  replay.save(path / "replay")
  np.savez(path / "pending.npz", **(pending or {}))
  (path / "run.json").write_text(json.dumps({"format": FORMAT, **run}, indent=1))
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


def read_run(path: pathlib.Path) -> dict[str, Any]:
  """The run.json of a checkpoint, checked to be one of ours."""
  try:
    run = json.loads((path / "run.json").read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise CheckpointError(f"{path} is not a readable wmrl checkpoint (run.json: {e}); "
                          "delete it or point --logdir elsewhere") from None
  if run.get("format") != FORMAT or "config" not in run or "counters" not in run:
    raise CheckpointError(f"{path} is not a wmrl checkpoint of format {FORMAT}; "
                          "it was written by another program or version")
  return run


def load_agent(path: pathlib.Path, template):
  """Restores the algorithm state of a checkpoint into the structure and shapes
  of `template` (a state, or its `jax.eval_shape`)."""
  read_run(path)
  shapes = tree_shapes(template, STATE)
  try:
    arrays = ocp.StandardCheckpointer().restore((path / "agent").absolute(), _nested(shapes))
    return arrays_tree(template, _flat(arrays), STATE)
  except Exception as e:  # orbax raises many types; all mean the same here
    raise CheckpointError(f"cannot restore the agent from {path / 'agent'}: {e}. The checkpoint "
                          "is corrupt or was made with another model config") from None


def load(path: pathlib.Path, template) -> tuple[Any, Replay, dict]:
  """Restores the agent state (into the shapes of `template`), replay and run info."""
  run = read_run(path)
  state = load_agent(path, template)
  try:
    replay = Replay.load(path / "replay")
  except (OSError, ValueError, KeyError) as e:
    raise CheckpointError(f"cannot restore the replay from {path / 'replay'}: {e}") from None
  return state, replay, run


def find(logdir, name: str | None = None) -> pathlib.Path:
  """The named checkpoint (``ckpt-...`` or its step), or the latest one."""
  found = list_checkpoints(logdir)
  if not found:
    raise CheckpointError(f"no checkpoint in {checkpoint_dir(logdir)}; train with "
                          f"`wmrl train --logdir {logdir}` first")
  if name is None:
    return found[-1]
  for path in found:
    if path.name == name or (name.isdigit() and _step_of(path) == int(name)):
      return path
  raise CheckpointError(f"no checkpoint '{name}' in {checkpoint_dir(logdir)}; there are: "
                        + ", ".join(p.name for p in found))


def load_pending(path: pathlib.Path) -> dict[str, np.ndarray]:
  """The driver's pending step and policy carry (empty for a run not yet started)."""
  with np.load(path / "pending.npz", allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


def saved_config(path: pathlib.Path) -> Config:
  return Config.from_dict(read_run(path)["config"])


def rng_state(rng: np.random.Generator) -> dict:
  return rng.bit_generator.state


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
  rng.bit_generator.state = state
