"""Which windows an update trains on (wmrl/drivers/selection.py): the online
queue against the reference's own rule, worked out step by step here, and in
a run; the selectors' draws against the reference's weights worked out here;
the `replay` config group. The host and fused drivers select alike:
tests/test_fused.py (with every selector); a run with them resumes bit for
bit: tests/test_run.py."""
import collections
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tiny_algorithm
from wmrl import config as cfg
from wmrl import envs
from wmrl.drivers.host import HostDriver
from wmrl.drivers import selection
from wmrl.drivers.selection import queued, take_online
from wmrl.replay import Positions

UNIFORM = -1  # the stand-in uniform draws: any row still -1 was not taken from the queue


def _reference_queue(num_envs: int, length: int, time: int):
  """The windows the reference's `Replay(online=True).add` queues when each of
  `num_envs` workers adds `time` steps, worker 0 first at every step, as
  (worker, start step): its code, with chunk ids replaced by step numbers."""
  streams = collections.defaultdict(collections.deque)
  lengths = collections.defaultdict(int)
  queue = []
  for t in range(time):
    for worker in range(num_envs):
      stream = streams[worker]
      stream.append(t)
      if len(stream) >= length:
        start = stream.popleft()
        if lengths[worker] % length == 0:
          queue.append((worker, start))
      lengths[worker] += 1
  return queue


def _take(batch, time, stored, taken, length, num_envs, xp=np):
  uniform = Positions(xp.full(batch, UNIFORM), xp.full(batch, UNIFORM))
  return take_online(uniform, time, stored, taken, length, num_envs)


@pytest.mark.parametrize("num_envs,length", [(1, 1), (1, 4), (3, 4), (2, 65), (16, 65)])
def test_the_queue_hands_out_the_references_windows_in_its_order(num_envs, length):
  # A batch of 3 every 5 steps over 300 steps: the queued windows come out in
  # the reference's order, each once, as many as are whole and the batches hold;
  # the rows after them are left to the uniform draws.
  taken, handed, owed = 0, [], 0
  for time in range(5, 301, 5):
    positions, new, _ = _take(3, time, time, taken, length, num_envs)
    rows = int(new - taken)
    owed = min(owed + 3, int(queued(time, length)) * num_envs)  # what the batches can take
    assert new == owed
    assert (positions.envs[rows:] == UNIFORM).all() and (positions.starts[rows:] == UNIFORM).all()
    assert (positions.starts[:rows] + length <= time).all()  # whole in replay when taken
    handed += list(zip(positions.envs[:rows].tolist(), positions.starts[:rows].tolist()))
    taken = new
  expected = _reference_queue(num_envs, length, 300)
  assert int(queued(300, length)) * num_envs == len(expected)
  assert handed == expected[:len(handed)] and len(handed) > 0


def test_the_queue_fills_whole_batches_first_and_keeps_the_rest_for_the_next():
  # Windows of 4 on 2 streams after 12 steps (0 to 11): the windows at 1 and 5
  # of each stream are queued (the one at 9 ends at step 12, not yet added), so
  # a batch of 3 takes three, the next batch the fourth.
  positions, taken, _ = _take(3, 12, 12, 0, 4, 2)
  assert taken == 3
  assert positions.envs.tolist() == [0, 1, 0] and positions.starts.tolist() == [1, 1, 5]
  positions, taken, _ = _take(3, 12, 12, taken, 4, 2)
  assert taken == 4
  assert positions.envs.tolist() == [1, UNIFORM, UNIFORM]
  assert positions.starts.tolist() == [5, UNIFORM, UNIFORM]
  _, again, _ = _take(3, 12, 12, taken, 4, 2)
  assert again == 4  # nothing new until step 12 arrives
  positions, taken, _ = _take(3, 13, 13, taken, 4, 2)
  assert taken == 6 and positions.starts.tolist() == [9, 9, UNIFORM]


def test_queued_windows_evicted_before_their_turn_are_passed_over():
  # 1 stream keeping 10 steps, windows of 4: by time 30 the windows at 1, 5,
  # ..., 25 are queued; steps before 20 are gone, so the first still whole is
  # the one at 21 (queue index 5).
  positions, taken, _ = _take(2, 30, 10, 0, 4, 1)
  assert positions.starts.tolist() == [21, 25] and taken == 7
  # A window that starts exactly at the oldest step kept is still taken.
  positions, taken, _ = _take(1, 31, 10, 5, 4, 1)  # oldest 21
  assert positions.starts.tolist() == [21] and taken == 6


def test_the_host_and_device_selections_agree():
  for time, stored, taken in [(13, 13, 0), (50, 20, 3), (200, 64, 0), (7, 7, 0)]:
    host, host_taken, _ = _take(5, time, stored, taken, 4, 3)
    device, device_taken, _ = jax.jit(
        lambda t, s, k: _take(5, t, s, k, 4, 3, xp=jnp))(time, stored, taken)
    np.testing.assert_array_equal(host.envs, device.envs)
    np.testing.assert_array_equal(host.starts, device.starts)
    assert host_taken == int(device_taken)


def _tiny_host_driver(online: bool, steps: int):
  config = cfg.Config(algorithm="tiny").replace(**{
      "env.id": "gymnax:CartPole-v1", "env.num_envs": 2, "run.batch_size": 4,
      "run.batch_length": 5, "run.train_ratio": 20, "run.replay_capacity": 4000,
      "replay.online": online})
  algo = tiny_algorithm.TINY
  env = envs.from_config(config.env, seed=0)
  state = algo.init(jax.random.key(0), env.obs_spec, env.act_spec, config)
  driver = HostDriver.single(algo, config.run, env, state, selection=config.replay)
  while driver.counters.env_steps < steps:
    driver.iterate(lambda *a: None, lambda m: None)
  env.close()
  return driver


def test_a_host_run_trains_on_every_queued_window_once():
  # Ratio 20 on batches of 4 x 6 steps (5 + 1 of context) over 2 streams: more
  # than a batch is drawn per queued window, so the queue never lags.
  driver = _tiny_host_driver(True, 400)
  time = driver.counters.env_steps // 2
  assert driver.counters.updates > 50
  assert driver.counters.online_taken == queued(time, 6) * 2 > 0
  uniform = _tiny_host_driver(False, 400)
  assert uniform.counters.online_taken == 0 and uniform.counters.updates == driver.counters.updates


def test_the_replay_group_is_on_by_default_and_off_for_configs_written_before_it():
  assert cfg.Config().replay.online is True
  assert cfg.Config().replace(**{"replay.online": "false"}).replay.online is False
  saved = cfg.Config().to_dict()
  assert cfg.Config.from_dict(json.loads(json.dumps(saved))).replay.online is True
  del saved["replay"]  # a run's config.json from before the group
  assert cfg.Config.from_dict(saved).replay.online is False
  with pytest.raises(ValueError, match="replay.onlin"):
    cfg.Config().replace(**{"replay.onlin": True})


def _mix(replay, positions, first_row=0, time=40, stored=20, priorities=None, cdf=None,
         length=4, num_envs=2, key=0):
  return selection.mix(jax.random.key(key), positions, first_row, time, stored, priorities, cdf,
                       replay=replay, length=length, num_envs=num_envs)


def _fracs(uniform=0.0, priority=0.0, recency=0.0, **prio):
  return cfg.ReplayConfig(fracs=cfg.SelectionFractions(uniform, priority, recency),
                          prio=cfg.PriorityConfig(**prio))


def _frequencies(draws: np.ndarray, size: int) -> np.ndarray:
  return np.bincount(draws, minlength=size) / len(draws)


def test_recency_draws_the_references_ages():
  # The reference's Recency over a capacity of 40 with 2 streams holding 12 steps
  # in windows of 4 (18 windows, fewer than 40): an age a of weight 1 / (a + 1),
  # scaled onto the windows as int(a / 40 * 18); age 0 is stream 1's window at 8.
  weights = 1 / np.arange(1, 41)
  expected = np.zeros(18)
  for age, weight in enumerate(weights / weights.sum()):
    expected[int(age / 40 * 18)] += weight
  cdf = jnp.asarray(selection.recency_cdf(40, 1.0))
  draws = 40_000
  positions = Positions(jnp.zeros(draws, jnp.int32), jnp.zeros(draws, jnp.int32))
  drawn, by_priority, _ = _mix(_fracs(recency=1.0), positions, time=12, stored=12, cdf=cdf)
  assert not np.asarray(by_priority).any()
  starts, envs = np.asarray(drawn.starts), np.asarray(drawn.envs)
  assert starts.min() >= 0 and starts.max() == 8
  age = (8 - starts) * 2 + (1 - envs)  # the newest first, stream 1 before stream 0
  np.testing.assert_allclose(_frequencies(age, 18), expected, atol=0.01)


def test_priority_weights_are_the_references_aggregate():
  # Steps 1, 2, 3, inf, 4 in windows of 2, exponent 1, maxfrac 0.5: the weight is
  # 0.5 x max + 0.5 x mean (the reference's Prioritized._aggregate), infinite
  # where a step is; the columns past `stored` (5) are padding.
  priorities = jnp.array([[1.0, 2.0, 3.0, jnp.inf, 4.0, 9.0, 9.0]])
  weights, whole = selection.window_weights(priorities, 5, 2, 1.0, 0.5)
  np.testing.assert_allclose(weights[0], [1.75, 2.75, np.inf, np.inf, 0.0, 0.0])
  assert np.asarray(whole).tolist() == [True] * 4 + [False] * 2
  # Exponent 0.8 on one window [1, 16]: 0.5 x 16^0.8 + 0.5 x (1 + 16^0.8) / 2.
  weights, _ = selection.window_weights(jnp.array([[1.0, 16.0]]), 2, 2, 0.8, 0.5)
  np.testing.assert_allclose(weights[0, 0], 0.5 * 16**0.8 + 0.25 * (1 + 16**0.8), rtol=1e-6)


def test_priority_draws_in_proportion_to_the_weights_and_infinite_first():
  # One stream, 6 steps, windows of 2 (5 windows), no zeroing: drawn in
  # proportion to the weights; then with an infinite step, only the two windows
  # holding it.
  priorities = jnp.array([[1.0, 3.0, 1.0, 1.0, 5.0, 1.0, 0.0, 0.0]])
  weights = np.array([2.5, 2.5, 1.0, 4.0, 4.0])  # 0.5 max + 0.5 mean
  keys = jax.random.split(jax.random.key(0), 20_000)
  draw = jax.vmap(lambda k: selection.priority_draw(k, priorities, 6, 2, 1.0, 0.5))
  env, column = draw(keys)
  assert (np.asarray(env) == 0).all()
  np.testing.assert_allclose(_frequencies(np.asarray(column), 5), weights / weights.sum(),
                             atol=0.01)
  infinite = priorities.at[0, 2].set(jnp.inf)
  _, column = jax.vmap(lambda k: selection.priority_draw(k, infinite, 6, 2, 1.0, 0.5))(keys[:2000])
  np.testing.assert_allclose(_frequencies(np.asarray(column), 5), [0, 0.5, 0.5, 0, 0], atol=0.05)


def test_zero_on_sample_keeps_a_batch_from_drawing_a_window_twice():
  # 16 steps at their initial infinite priority, windows of 2: each draw zeroes
  # its window's steps, so the 6 rows of one batch (12 steps at most) name 6
  # different windows while windows with an infinite step remain, and exactly
  # their steps are zeroed. Without zeroing, 20 rows over 15 windows repeat one.
  priorities = jnp.full((1, 16), jnp.inf)
  positions = Positions(jnp.zeros(6, jnp.int32), jnp.zeros(6, jnp.int32))
  drawn, by_priority, after = _mix(_fracs(priority=1.0), positions, time=16, stored=16,
                                   priorities=priorities, length=2, num_envs=1)
  starts = np.asarray(drawn.starts)
  assert np.asarray(by_priority).all() and len(set(starts.tolist())) == 6
  zeroed = np.zeros(16, bool)
  for start in starts:
    zeroed[start:start + 2] = True
  np.testing.assert_array_equal(np.asarray(after[0]) == 0, zeroed)
  many = Positions(jnp.zeros(20, jnp.int32), jnp.zeros(20, jnp.int32))
  repeated, _, kept = _mix(_fracs(priority=1.0, zero_on_sample=False), many, time=16, stored=16,
                           priorities=priorities, length=2, num_envs=1)
  assert len(set(np.asarray(repeated.starts).tolist())) < 20 and np.isinf(kept).all()


def test_the_selectors_share_the_rows_the_queue_leaves_by_their_fractions():
  batch = 20_000
  positions = Positions(jnp.full(batch, UNIFORM), jnp.full(batch, UNIFORM))
  cdf = jnp.asarray(selection.recency_cdf(40, 1.0))
  priorities = jnp.ones((2, 32))
  drawn, by_priority, _ = _mix(_fracs(0.5, 0.2, 0.3, zero_on_sample=False), positions,
                               first_row=100, priorities=priorities, cdf=cdf)
  starts, by_priority = np.asarray(drawn.starts), np.asarray(by_priority)
  assert (starts[:100] == UNIFORM).all() and not by_priority[:100].any()  # the queue's rows
  rest = slice(100, None)
  assert abs((starts[rest] == UNIFORM).mean() - 0.5) < 0.02
  assert abs(by_priority[rest].mean() - 0.2) < 0.02
  assert abs(((starts[rest] != UNIFORM) & ~by_priority[rest]).mean() - 0.3) < 0.02


def test_the_selection_settings_are_checked():
  from wmrl import checks
  base = cfg.Config()
  for overrides, message in [({"replay.fracs.uniform": 0.5}, "sum to 1"),
                             ({"replay.fracs.uniform": 1.5, "replay.fracs.recency": -0.5},
                              "must be >= 0"),
                             ({"replay.priosignal": "td"}, "priosignal must be one of"),
                             ({"replay.prio.maxfrac": 2.0}, "maxfrac"),
                             ({"replay.recexp": -1.0}, "recexp")]:
    with pytest.raises(ValueError, match=message):
      checks.validate(base.replace(**overrides), "/tmp/wmrl-selection-check")
