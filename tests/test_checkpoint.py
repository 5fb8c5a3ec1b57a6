"""Tests for wmrl/checkpoint.py: a resume takes the newest checkpoint that reads
back whole, and sets aside (never deletes) the newer ones that do not.

Three checkpoints at steps 10, 20 and 30 each hold their step in every agent
array, replay step and pending value, so a restore shows by its values which
one it read.
"""
import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from wmrl import algorithms, checkpoint, testing
from wmrl.replay import Positions, Replay
from wmrl.trees import is_key

STEPS = (10, 20, 30)
CHUNK = 4  # replay steps per chunk: each save after the first hard-links full chunks


@pytest.fixture(scope="module")
def agent():
  """The tiny config and its agent's state as shapes (init traced, not run)."""
  config = testing.tiny_config()
  obs, act = testing.SPACES["vector-continuous"]
  algo = algorithms.get(config.algorithm)
  return config, jax.eval_shape(lambda k: algo.init(k, obs, act, config), jax.random.key(0))


def filled(shapes, value: int):
  """A state of `shapes` with every array filled with `value` (keys from `value`'s seed)."""
  def leaf(s):
    return jax.random.key(value) if is_key(s) else np.full(s.shape, value, s.dtype)
  return jax.tree.map(leaf, shapes)


def saved_value(state) -> int:
  """The value `filled` wrote, after checking every array holds it."""
  leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(state) if not is_key(leaf)]
  values = {float(v) for leaf in leaves for v in np.unique(leaf)}
  assert len(values) == 1, values
  return int(values.pop())


def save_at(logdir, agent, replay: Replay, step: int) -> None:
  """Fills `replay` up to `step` steps (step t holds t) and saves a checkpoint of it."""
  config, template = agent
  while replay.steps_added < step:
    replay.add({"x": np.full((1, 2), replay.steps_added, np.float32)})
  run = {"config": config.to_dict(), "counters": {"env_steps": step}}
  checkpoint.save(logdir, filled(template, step), replay, run, {"obs": np.full(3, step)}, keep=3)


def save_three(logdir, agent) -> list[pathlib.Path]:
  replay = Replay(capacity=64, num_envs=1, chunk_size=CHUNK)
  for step in STEPS:
    save_at(logdir, agent, replay, step)
  return checkpoint.list_checkpoints(logdir)


def restore(logdir, agent):
  skips = []
  restored = checkpoint.restore_newest([logdir], lambda i, config: agent[1],
                                       lambda path, reason: skips.append((path, reason)))
  return (restored[0] if restored else None), skips


def check_restored(restored, step: int):
  assert restored.path.name == f"ckpt-{step:012d}"
  assert restored.run["counters"]["env_steps"] == step
  assert saved_value(restored.state) == step
  assert restored.replay.steps_added == step
  last = restored.replay.gather(Positions(np.zeros(1, int), np.full(1, step - 1)), 1)["x"]
  assert last[0, 0, 0] == step - 1
  np.testing.assert_array_equal(restored.pending["obs"], np.full(3, step))
  assert restored.config == testing.tiny_config()


def halve(file: pathlib.Path) -> None:
  """Truncates a file in place to half its size, as a full disk or a killed copy would."""
  with open(file, "r+b") as f:
    f.truncate(file.stat().st_size // 2)


def array_file(path: pathlib.Path) -> pathlib.Path:
  """The data file orbax reads the agent from: its arrays are constants, which
  compress to a few bytes that OCDBT keeps inline in its tree's nodes."""
  [file] = (path / "agent" / "d").iterdir()
  return file


def test_intact_newest_is_restored_without_skip(tmp_path, agent):
  save_three(tmp_path, agent)
  for _ in range(2):  # reading a checkpoint changes none of its files
    restored, skips = restore(tmp_path, agent)
    check_restored(restored, 30)
    assert skips == []
  assert not (checkpoint.checkpoint_dir(tmp_path) / checkpoint.UNREADABLE).exists()


def test_no_checkpoint_restores_none(tmp_path, agent):
  assert restore(tmp_path, agent) == (None, [])


DAMAGES = {
    "agent-arrays-halved": lambda ckpt: halve(array_file(ckpt)),
    "agent-arrays-deleted": lambda ckpt: array_file(ckpt).unlink(),
    "agent-metadata-halved": lambda ckpt: halve(ckpt / "agent" / "_METADATA"),
    "pending-halved": lambda ckpt: halve(ckpt / "pending.npz"),
    "run-json-garbage": lambda ckpt: (ckpt / "run.json").write_bytes(b"\x00garbage{"),
    "replay-meta-halved": lambda ckpt: halve(next((ckpt / "replay").glob("*/replay.json"))),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_newest_is_set_aside_and_previous_restored(tmp_path, agent, damage):
  newest = save_three(tmp_path, agent)[-1]
  DAMAGES[damage](newest)
  restored, skips = restore(tmp_path, agent)
  check_restored(restored, 20)
  aside = checkpoint.checkpoint_dir(tmp_path) / checkpoint.UNREADABLE / newest.name
  assert aside.is_dir() and not newest.exists()
  [(path, reason)] = skips
  assert path == aside
  assert reason.startswith(f"{newest.name} is unreadable (")
  assert reason.endswith(
      "and was moved to checkpoints/unreadable/; resuming from ckpt-000000000020")
  assert "\n" not in reason and len(reason) < 400
  assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["ckpt-000000000010",
                                                                     "ckpt-000000000020"]


def test_garbled_agent_array_is_found_by_its_checksum(tmp_path, agent):
  # orbax keeps no checksum of array data and may read a flipped byte back as a wrong
  # value: the checkpoint's own checksums find it before orbax reads anything.
  newest = save_three(tmp_path, agent)[-1]
  data = array_file(newest)
  raw = bytearray(data.read_bytes())
  raw[len(raw) * 2 // 3] ^= 0xFF
  data.write_bytes(bytes(raw))
  restored, [(_, reason)] = restore(tmp_path, agent)
  check_restored(restored, 20)
  assert f"{data.name} differs from what was saved" in reason


def test_truncated_replay_chunk_damages_every_checkpoint_sharing_it(tmp_path, agent):
  # Full chunks are hard links to the previous checkpoint's: truncating chunk 0 in
  # place truncates it in all three, so none can be read and the error lists them all.
  paths = save_three(tmp_path, agent)
  chunks = [next((p / "replay").glob("*/chunk000000000.npz")) for p in paths]
  assert len({c.stat().st_ino for c in chunks}) == 1
  halve(chunks[-1])
  with pytest.raises(checkpoint.CheckpointError) as error:
    restore(tmp_path, agent)
  message = str(error.value)
  for path in paths:
    assert f"{path.name} (cannot restore the replay" in message
  assert "moved to" in message and checkpoint.UNREADABLE in message
  aside = checkpoint.checkpoint_dir(tmp_path) / checkpoint.UNREADABLE
  assert sorted(p.name for p in aside.iterdir()) == [p.name for p in paths]
  assert checkpoint.list_checkpoints(tmp_path) == []


def test_all_damaged_raises_naming_each(tmp_path, agent):
  paths = save_three(tmp_path, agent)
  for path in paths:
    halve(path / "pending.npz")
  skips = []
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint in .* can be read") as error:
    checkpoint.restore_newest([tmp_path], lambda i, config: agent[1], lambda *a: skips.append(a))
  assert all(f"{p.name} (cannot read pending.npz: File is not a zip file)" in str(error.value)
             for p in paths)
  assert skips == []  # nothing was resumed: the error says it all


def test_set_aside_checkpoint_is_kept_out_of_saves_and_pruning(tmp_path, agent):
  newest = save_three(tmp_path, agent)[-1]
  halve(newest / "pending.npz")
  restored, _ = restore(tmp_path, agent)
  # The run goes on from step 20 and reaches 30 again, then 40 and 50: pruning keeps
  # the newest three committed ones and leaves the unreadable one where it lies.
  for step in (30, 40, 50):
    save_at(tmp_path, agent, restored.replay, step)
  paths = checkpoint.list_checkpoints(tmp_path)
  assert [checkpoint._step_of(p) for p in paths] == [30, 40, 50]
  aside = checkpoint.checkpoint_dir(tmp_path) / checkpoint.UNREADABLE
  assert [p.name for p in aside.iterdir()] == [newest.name]
  check_restored(restore(tmp_path, agent)[0], 50)
  # The same step failing again is set aside beside the first, not over it.
  for path in paths[1:]:
    shutil.rmtree(path)
  halve(paths[0] / "pending.npz")
  with pytest.raises(checkpoint.CheckpointError, match="ckpt-000000000030 .cannot read pending"):
    restore(tmp_path, agent)
  assert sorted(p.name for p in aside.iterdir()) == [newest.name, newest.name + ".2"]


def test_incompatible_checkpoint_is_refused_in_place(tmp_path, agent):
  # A state with other arrays, a config the caller refuses, a foreign run.json: the
  # files are intact, the older checkpoints would be alike, so nothing is moved.
  paths = save_three(tmp_path, agent)
  other = {"other": jax.ShapeDtypeStruct((3,), np.float32)}
  with pytest.raises(checkpoint.CheckpointError, match="holds other arrays than this state"):
    checkpoint.restore_newest([tmp_path], lambda i, config: other, lambda *a: None)

  def refuse(i, config):
    raise ValueError("cannot resume with a changed env.id")
  with pytest.raises(ValueError, match="changed env.id"):
    checkpoint.restore_newest([tmp_path], refuse, lambda *a: None)
  run = paths[-1] / "run.json"
  run.write_text(json.dumps({**json.loads(run.read_text()), "format": checkpoint.FORMAT + 1}))
  (paths[-1] / checkpoint.CHECKSUMS).unlink()  # as a wmrl of another version would write it
  with pytest.raises(checkpoint.CheckpointError, match="written by another program or version"):
    restore(tmp_path, agent)
  assert checkpoint.list_checkpoints(tmp_path) == paths


def test_checkpoint_without_checksums_still_detects_truncation(tmp_path, agent):
  # Checkpoints saved before checksums were kept: orbax and zip find what is cut off.
  # (orbax also finds a halved array file, but floods stderr with its tasks' errors.)
  paths = save_three(tmp_path, agent)
  for path in paths:
    (path / checkpoint.CHECKSUMS).unlink()
  check_restored(restore(tmp_path, agent)[0], 30)
  halve(paths[2] / "agent" / "_METADATA")
  halve(paths[1] / "pending.npz")
  restored, skips = restore(tmp_path, agent)
  check_restored(restored, 10)
  [(_, newest), (_, previous)] = skips
  assert "ckpt-000000000030 is unreadable (cannot read the agent's metadata" in newest
  assert "ckpt-000000000020 is unreadable (cannot read pending.npz" in previous


def test_a_checkpoint_with_the_earlier_host_rng_resumes_from_its_counters(tmp_path, agent):
  """Catches a resume that refuses checkpoints of the earlier wmrl, which kept each
  seed's numpy RNG state ("rng") beside its counters: the format is the same, the
  drivers now draw by the counters alone, so the RNG state is read past."""
  from wmrl import drivers
  config, template = agent
  replay = Replay(capacity=64, num_envs=1, chunk_size=CHUNK)
  replay.add({"x": np.zeros((1, 2), np.float32)})
  counters = {"env_steps": 40, "updates": 9, "episodes": 3, "update_debt": 0.25, "last_eval": 20}
  rng = np.random.default_rng(0).bit_generator.state
  checkpoint.save(tmp_path, filled(template, 40), replay,
                  {"config": config.to_dict(), "counters": counters, "rng": rng}, {}, keep=3)
  restored, skips = restore(tmp_path, agent)
  assert not skips and restored.run["rng"] == json.loads(json.dumps(rng))
  assert drivers.restored_counters(restored.run["counters"]) == drivers.Counters(
      env_steps=40, updates=9, update_debt=0.25, last_eval=20)


def test_a_checkpoint_of_an_algorithm_not_registered_here_says_to_import_it(tmp_path, agent):
  """Catches a checkpoint of a user's algorithm, read where its module was not
  imported, blamed on another wmrl version: the error names the algorithm and says
  to import the module that registers it."""
  config, template = agent
  replay = Replay(capacity=64, num_envs=1, chunk_size=CHUNK)
  replay.add({"x": np.zeros((1, 2), np.float32)})
  saved = {"config": {**config.to_dict(), "algorithm": "mine"}, "counters": {"env_steps": 1}}
  path = checkpoint.save(tmp_path, filled(template, 1), replay, saved, {}, keep=3)
  with pytest.raises(checkpoint.CheckpointError,
                     match="unknown algorithm 'mine'.*import the module that registers it"):
    checkpoint.saved_config(path)


def test_a_mistyped_logdir_is_named_with_the_close_ones(tmp_path):
  (tmp_path / "runs" / "pendulum").mkdir(parents=True)
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"run folder .*pendulm does not exist; did you mean .*runs/pendulum\?"):
    checkpoint.find(tmp_path / "runs" / "pendulm")
  with pytest.raises(checkpoint.CheckpointError, match=r"run folder .*xyz does not exist$"):
    checkpoint.find(tmp_path / "runs" / "xyz")
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint in .*pendulum"):
    checkpoint.find(tmp_path / "runs" / "pendulum")  # it exists, it has no checkpoint yet
