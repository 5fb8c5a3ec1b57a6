"""Tests for wmrl/replay.py: every stored value encodes (env, time), so a sampled
window shows by its values whether it is consecutive and from one stream."""
import collections
import os

import numpy as np
import pytest

from wmrl.replay import Positions, Replay


def make_step(t, num_envs=2):
  """Step t of every env: obs = [env, t]; the other keys are functions of t and env."""
  env = np.arange(num_envs)
  return {
      "obs": np.stack([env, np.full(num_envs, t)], axis=1).astype(np.float32),
      "image": np.broadcast_to(((t + 7 * env) % 256).astype(np.uint8)[:, None, None, None],
                               (num_envs, 2, 2, 1)).copy(),
      "action": np.full((num_envs, 1), -t, np.float32),
      "reward": np.full(num_envs, t, np.float32) + env,
      "is_first": np.full(num_envs, t % 5 == 0),
      "is_last": np.full(num_envs, t % 5 == 4),
      "is_terminal": np.zeros(num_envs, bool),
  }


def fill(replay, steps, start=0):
  for t in range(start, start + steps):
    replay.add(make_step(t, replay.num_envs))


def windows(batch):
  """(env, first time) of each sampled window, after checking it is one consecutive stream."""
  env, time = batch["obs"][..., 0], batch["obs"][..., 1]
  assert (env == env[:, :1]).all(), "a window mixes streams"
  assert (np.diff(time, axis=1) == 1).all(), "a window is not consecutive in time"
  np.testing.assert_array_equal(batch["reward"], time + env)
  np.testing.assert_array_equal(batch["action"][..., 0], -time)
  np.testing.assert_array_equal(batch["image"][..., 0, 0, 0], (time + 7 * env) % 256)
  np.testing.assert_array_equal(batch["is_first"], time % 5 == 0)
  return [(int(e), int(t)) for e, t in zip(env[:, 0], time[:, 0])]


def assert_same(a, b):
  assert a.keys() == b.keys()
  for key in a:
    assert a[key].dtype == b[key].dtype, key
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# Sampling.


def test_sample_shapes_and_dtypes():
  replay = Replay(capacity=100, num_envs=2, chunk_size=4)
  fill(replay, 10)
  batch = replay.sample(3, 5)
  step = make_step(0)
  assert list(batch) == list(step)
  for key, value in step.items():
    assert batch[key].shape == (3, 5) + value.shape[1:], key
    assert batch[key].dtype == value.dtype, key


@pytest.mark.parametrize("length", [1, 3, 4, 5, 11])
def test_windows_are_consecutive_and_cross_chunk_boundaries(length):
  replay = Replay(capacity=1000, num_envs=3, chunk_size=4)
  fill(replay, 30)
  starts = windows(replay.sample(200, length))
  assert {env for env, _ in starts} == {0, 1, 2}
  assert all(0 <= t <= 30 - length for _, t in starts)
  if length > 1:  # some window runs over the end of a chunk
    assert any(t // 4 != (t + length - 1) // 4 for _, t in starts)


def test_every_start_position_is_reachable_and_uniform():
  replay = Replay(capacity=100, num_envs=2, chunk_size=3, seed=1)
  fill(replay, 7)  # each stream: 5 windows of 3 steps
  counts = collections.Counter()
  for _ in range(200):
    counts.update(windows(replay.sample(10, 3)))
  assert set(counts) == {(env, t) for env in range(2) for t in range(5)}
  assert min(counts.values()) > 0.7 * 2000 / 10 and max(counts.values()) < 1.3 * 2000 / 10


def test_samples_are_copies_and_add_copies():
  replay = Replay(capacity=100, num_envs=2, chunk_size=4)
  step = make_step(0)
  replay.add(step)
  step["obs"][:] = -1  # the caller reuses its buffer
  batch = replay.sample(2, 1)
  assert (batch["obs"] >= 0).all()
  batch["obs"][:] = -1
  assert (replay.sample(2, 1)["obs"] >= 0).all()


def test_same_seed_same_samples_other_seed_other_samples():
  a, b, c = (Replay(capacity=100, num_envs=2, chunk_size=4, seed=s) for s in (3, 3, 4))
  for replay in (a, b, c):
    fill(replay, 20)
  assert_same(a.sample(8, 5), b.sample(8, 5))
  assert not np.array_equal(a.sample(8, 5)["obs"], c.sample(8, 5)["obs"])


# Eviction: precise, per step; each stream keeps its newest capacity // num_envs steps.


@pytest.mark.parametrize("capacity", [10, 11])
def test_eviction_keeps_the_newest_steps(capacity):
  replay = Replay(capacity=capacity, num_envs=2, chunk_size=2)
  for t in range(23):
    replay.add(make_step(t))
    assert len(replay) == 2 * min(t + 1, 5) <= capacity
    assert len(replay._chunks) <= -(-5 // 2) + 1  # memory stays bounded by the capacity
  assert replay.steps_added == 46
  starts = windows(replay.sample(300, 5))  # the whole kept run of a stream, over chunk edges
  assert set(starts) == {(0, 18), (1, 18)}
  starts = windows(replay.sample(300, 2))
  assert {t for _, t in starts} == {18, 19, 20, 21}


def test_eviction_with_capacity_below_a_chunk():
  replay = Replay(capacity=6, num_envs=2, chunk_size=8)
  fill(replay, 20)
  assert len(replay) == 6
  assert {t for _, t in windows(replay.sample(200, 2))} == {17, 18}


def test_memory_grows_with_the_data():
  replay = Replay(capacity=10**9, num_envs=2, chunk_size=4)
  assert replay._chunks == []
  fill(replay, 5)
  assert len(replay._chunks) == 2
  assert replay._chunks[0]["obs"].shape == (2, 4, 2)


def test_len_and_repr():
  replay = Replay(capacity=10, num_envs=2, chunk_size=4)
  assert len(replay) == 0 and replay.steps_added == 0 and not replay.can_sample(1)
  fill(replay, 3)
  assert len(replay) == 6 and replay.steps_added == 6
  assert replay.can_sample(3) and not replay.can_sample(4)
  assert "size=6" in repr(replay) and "capacity=10" in repr(replay)


# Save and load.


def test_save_load_round_trip_continues_exactly(tmp_path):
  replay = Replay(capacity=14, num_envs=2, chunk_size=3, seed=5)
  fill(replay, 11)  # evicted some, last chunk partial
  replay.sample(4, 3)  # advance the generator
  replay.save(tmp_path / "replay")
  loaded = Replay.load(tmp_path / "replay")
  assert (loaded.capacity, loaded.num_envs, loaded.chunk_size, loaded.seed) == (14, 2, 3, 5)
  assert len(loaded) == len(replay) and loaded.steps_added == replay.steps_added
  assert repr(loaded) == repr(replay)
  assert_same(loaded.sample(6, 7), replay.sample(6, 7))
  fill(replay, 9, start=11)
  fill(loaded, 9, start=11)
  assert_same(loaded.sample(6, 7), replay.sample(6, 7))
  windows(loaded.sample(50, 7))


def test_resave_writes_full_chunks_once(tmp_path, monkeypatch):
  replay = Replay(capacity=100, num_envs=2, chunk_size=3)
  fill(replay, 7)
  replay.save(tmp_path)
  first, = [p for p in tmp_path.iterdir()]
  inode = (first / "chunk000000000.npz").stat().st_ino
  fill(replay, 5, start=7)
  replay.save(tmp_path)
  second, = [p for p in tmp_path.iterdir()]  # the older snapshot is gone
  assert second != first
  assert (second / "chunk000000000.npz").stat().st_ino == inode  # linked, not rewritten
  assert_same(Replay.load(tmp_path).sample(5, 12), replay.sample(5, 12))
  # Without hard links the full chunks are copied instead; the data is the same.
  def no_link(*args):
    raise OSError("links not supported")
  monkeypatch.setattr(os, "link", no_link)
  fill(replay, 4, start=12)
  replay.save(tmp_path)
  loaded = Replay.load(tmp_path)
  assert_same(loaded.sample(5, 16), replay.sample(5, 16))
  # A loaded replay reuses the chunks of the snapshot it came from.
  monkeypatch.undo()
  third, = [p for p in tmp_path.iterdir()]
  inode = (third / "chunk000000001.npz").stat().st_ino
  fill(loaded, 3, start=16)
  loaded.save(tmp_path)
  fourth, = [p for p in tmp_path.iterdir()]
  assert (fourth / "chunk000000001.npz").stat().st_ino == inode


def test_empty_replay_round_trip(tmp_path):
  Replay(capacity=8, num_envs=2, chunk_size=4, seed=9).save(tmp_path)
  loaded = Replay.load(tmp_path)
  assert len(loaded) == 0 and loaded.seed == 9
  fill(loaded, 4)
  windows(loaded.sample(4, 4))


def test_interrupted_save_leaves_the_previous_one(tmp_path, monkeypatch):
  replay = Replay(capacity=100, num_envs=2, chunk_size=3)
  fill(replay, 5)
  replay.save(tmp_path)
  expected = Replay.load(tmp_path).sample(4, 5)
  fill(replay, 6, start=5)
  def crash(*args):
    raise OSError("simulated crash before the rename")
  monkeypatch.setattr(os, "replace", crash)
  with pytest.raises(OSError, match="simulated crash"):
    replay.save(tmp_path)
  monkeypatch.undo()
  leftover, = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
  assert (leftover / "replay.json").exists()  # it crashed at the rename, all else written
  loaded = Replay.load(tmp_path)
  assert loaded.steps_added == 10
  assert_same(loaded.sample(4, 5), expected)
  replay.save(tmp_path)  # the next save succeeds and clears the leftovers
  assert len(list(tmp_path.iterdir())) == 1
  assert Replay.load(tmp_path).steps_added == 22


def test_keys_that_collide_with_numpy_arguments_survive(tmp_path):
  replay = Replay(capacity=10, num_envs=1, chunk_size=2)
  for t in range(3):
    replay.add({"file": np.full((1, 2), t, np.float32), "is_first": np.array([t == 0])})
  replay.save(tmp_path)
  assert_same(Replay.load(tmp_path).sample(3, 3), replay.sample(3, 3))


def test_load_without_a_save_fails(tmp_path):
  with pytest.raises(FileNotFoundError, match="no saved replay"):
    Replay.load(tmp_path)
  with pytest.raises(FileNotFoundError, match="no saved replay"):
    Replay.load(tmp_path / "missing")


# Errors.


def bad(step, key, value):
  step = dict(step)
  step[key] = value
  return step


@pytest.mark.parametrize("change, message", [
    (lambda s: {k: v for k, v in s.items() if k != "reward"}, r"key 'reward' is missing"),
    (lambda s: bad(s, "extra", np.zeros(2, np.float32)), r"key 'extra' is unexpected"),
    (lambda s: bad(s, "obs", np.zeros((2, 3), np.float32)),
     r"key 'obs' expected shape \(2, 2\) dtype float32, got shape \(2, 3\) dtype float32"),
    (lambda s: bad(s, "obs", s["obs"].astype(np.float64)),
     r"key 'obs' expected shape \(2, 2\) dtype float32, got shape \(2, 2\) dtype float64"),
    (lambda s: bad(s, "reward", np.zeros(3, np.float32)),
     r"key 'reward' expected leading axis num_envs=2, got shape \(3,\)"),
    (lambda s: bad(s, "reward", np.float32(0)), r"key 'reward' expected leading axis num_envs=2"),
])
def test_add_rejects_a_step_unlike_the_first(change, message):
  replay = Replay(capacity=100, num_envs=2, chunk_size=4)
  fill(replay, 3)
  with pytest.raises(ValueError, match=message):
    replay.add(change(make_step(3)))
  assert replay.steps_added == 6  # nothing half-added
  replay.add(make_step(3))
  windows(replay.sample(20, 4))


def test_first_add_checks_the_leading_axis():
  replay = Replay(capacity=100, num_envs=2)
  with pytest.raises(ValueError, match=r"key 'obs' expected leading axis num_envs=2"):
    replay.add(make_step(0, num_envs=3))
  with pytest.raises(ValueError, match="empty step"):
    replay.add({})
  with pytest.raises(ValueError, match=r"key 'x' has dtype object"):
    replay.add({"x": np.array([None, None])})
  replay.add(make_step(0))  # the failed adds fixed nothing
  assert len(replay) == 2


def test_sample_before_enough_data():
  replay = Replay(capacity=8, num_envs=2, chunk_size=4)
  with pytest.raises(ValueError, match=r"no stream holds 1 steps yet \(each holds 0\)"):
    replay.sample(2, 1)
  fill(replay, 3)
  with pytest.raises(ValueError, match=r"no stream holds 4 steps yet \(each holds 3\)"):
    replay.sample(2, 4)
  with pytest.raises(ValueError, match=r"capacity // num_envs = 4 steps: raise capacity"):
    replay.sample(2, 5)
  with pytest.raises(ValueError, match="batch_size >= 1"):
    replay.sample(0, 2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(capacity=0), "capacity must be a positive integer"),
    (dict(capacity=10, chunk_size=0), "chunk_size must be a positive integer"),
    (dict(capacity=10, num_envs=0), "num_envs must be a positive integer"),
    (dict(capacity=3, num_envs=4), "capacity=3 is less than num_envs=4"),
])
def test_constructor_rejects_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    Replay(**kwargs)


def test_sampling_with_own_rng_leaves_the_replays_draws_unchanged():
  a, b = Replay(capacity=100, num_envs=2, seed=3), Replay(capacity=100, num_envs=2, seed=3)
  fill(a, 30)
  fill(b, 30)
  aside = a.sample(4, 5, rng=np.random.default_rng(99))
  again = a.sample(4, 5, rng=np.random.default_rng(99))
  for key in aside:
    np.testing.assert_array_equal(aside[key], again[key])
  # `a` drew with other generators only, so its own draws match `b`'s.
  mine, theirs = a.sample(4, 5), b.sample(4, 5)
  for key in mine:
    np.testing.assert_array_equal(mine[key], theirs[key])


# Positions, gather and write-back.


def test_positions_and_gather_are_sample():
  a, b = Replay(capacity=100, num_envs=3, chunk_size=4, seed=7), Replay(capacity=100, num_envs=3,
                                                                        chunk_size=4, seed=7)
  fill(a, 20)
  fill(b, 20)
  for _ in range(3):  # the same draws, in the same order, from the replays' own generators
    positions = a.sample_positions(6, 5)
    gathered = a.gather(positions, 5)
    assert_same(gathered, b.sample(6, 5))
    assert [(int(e), int(t)) for e, t in zip(*positions)] == windows(gathered)


def latent_step(t, num_envs=2):
  """make_step with a latent entry: latent = [env, t, 0]."""
  env = np.arange(num_envs)
  latent = np.stack([env, np.full(num_envs, t), np.zeros(num_envs)], 1).astype(np.float32)
  return {**make_step(t, num_envs), "latent/deter": latent}


def test_write_lands_at_the_windows_steps():
  replay = Replay(capacity=100, num_envs=3, chunk_size=4, seed=2)
  for t in range(15):
    replay.add(latent_step(t, 3))
  everything = Positions(np.arange(3), np.zeros(3, int))
  expected = replay.gather(everything, 15)  # [env, t, ...]
  positions = replay.sample_positions(5, 6)
  # Steps 2, 3, 4 of window b get -(100 b + i); some windows cross a chunk edge there.
  values = -(100 * np.arange(5)[:, None] + np.arange(3)[None]).astype(np.float32)
  values = np.repeat(values[..., None], 3, -1)
  replay.write(positions, 2, {"latent/deter": values})
  for b, (env, start) in enumerate(zip(*positions)):  # later windows win where they overlap
    expected["latent/deter"][env, start + 2:start + 5] = values[b]
  assert_same(replay.gather(everything, 15), expected)
  assert any(s // 4 != (s + 4) // 4 for s in positions.starts + 2)


def test_write_skips_steps_evicted_since_the_windows_were_drawn():
  replay = Replay(capacity=16, num_envs=2, chunk_size=3)  # each stream keeps 8 steps
  for t in range(10):
    replay.add(latent_step(t))
  positions = Positions(np.array([0, 1]), np.array([2, 4]))  # steps 2..7 and 4..9
  for t in range(10, 14):  # evicts steps 2 to 5
    replay.add(latent_step(t))
  values = np.full((2, 6, 3), -1, np.float32)
  replay.write(positions, 0, {"latent/deter": values})
  stored = replay.gather(Positions(np.arange(2), np.full(2, 6)), 8)["latent/deter"]
  for env, first in ((0, 2), (1, 4)):
    for t in range(6, 14):
      written = first <= t < first + 6
      np.testing.assert_array_equal(stored[env, t - 6], -1 if written else [env, t, 0])
  replay.write(Positions(np.array([0]), np.array([0])), 0, {"latent/deter": values[:1, :3]})
  assert (replay.gather(Positions(np.array([0]), np.array([6])), 8)["latent/deter"][0, 2:] != -2).all()


@pytest.mark.parametrize("values, message", [
    ({"latent/stoch": np.zeros((2, 2, 3), np.float32)}, r"key 'latent/stoch' is not stored"),
    ({"latent/deter": np.zeros((2, 2, 4), np.float32)}, r"expected shape \(2, n\) \+ \(3,\)"),
    ({"latent/deter": np.zeros((3, 2, 3), np.float32)}, r"expected shape \(2, n\) \+ \(3,\)"),
    ({"latent/deter": np.zeros((2, 2, 3), np.complex64)}, r"stored as float32, got complex64"),
    ({"latent/deter": np.zeros((2, 2, 3), np.float32), "reward": np.zeros((2, 3), np.float32)},
     "different numbers of steps"),
    ({"latent/deter": np.zeros((2, 5, 3), np.float32)}, r"reach past the newest step 9"),
])
def test_write_rejects_values_unlike_the_stored_keys(values, message):
  replay = Replay(capacity=100, num_envs=2, chunk_size=4)
  for t in range(10):
    replay.add(latent_step(t))
  with pytest.raises(ValueError, match=message):
    replay.write(Positions(np.array([0, 1]), np.array([3, 6])), 0, values)


def test_saved_replay_keeps_values_written_into_a_linked_full_chunk(tmp_path):
  replay = Replay(capacity=100, num_envs=2, chunk_size=3)
  for t in range(7):
    replay.add(latent_step(t))
  replay.save(tmp_path)  # chunks 0 and 1 full: later saves would link them
  first, = tmp_path.iterdir()
  inode = (first / "chunk000000001.npz").stat().st_ino
  for t in range(7, 9):
    replay.add(latent_step(t))
  positions = Positions(np.array([1]), np.array([1]))
  replay.write(positions, 0, {"latent/deter": np.full((1, 4, 3), -5, np.float32)})  # steps 1 to 4
  replay.save(tmp_path)
  second, = tmp_path.iterdir()
  assert (second / "chunk000000001.npz").stat().st_ino != inode  # rewritten, not linked
  loaded = Replay.load(tmp_path)
  stored = loaded.gather(Positions(np.arange(2), np.zeros(2, int)), 9)["latent/deter"]
  for env in range(2):
    for t in range(9):
      written = env == 1 and 1 <= t <= 4
      np.testing.assert_array_equal(stored[env, t], -5 if written else [env, t, 0])
  # Loaded full chunks take writes, and the save after that keeps them too.
  loaded.write(Positions(np.array([0]), np.array([0])), 0, {"latent/deter": np.full((1, 2, 3), -7, np.float32)})
  loaded.save(tmp_path)
  again = Replay.load(tmp_path).gather(Positions(np.array([0]), np.array([0])), 3)["latent/deter"]
  np.testing.assert_array_equal(again[0], [[-7] * 3, [-7] * 3, [0, 2, 0]])
  # Chunks nothing wrote to since are linked again.
  third, = tmp_path.iterdir()
  inode = (third / "chunk000000001.npz").stat().st_ino
  loaded.save(tmp_path)
  fourth, = tmp_path.iterdir()
  assert (fourth / "chunk000000001.npz").stat().st_ino == inode
