"""The schedule both drivers follow (wmrl/drivers/schedule.py): its numbers from a
run's settings, when a run acts at random, and the updates the train ratio owes,
against values worked out by hand; and the two drivers owing the same updates
on the same steps."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tiny_algorithm
from wmrl import config as cfg
from wmrl import envs, jaxenvs
from wmrl.config import RunConfig
from wmrl.drivers import Schedule
from wmrl.drivers.schedule import training_start
from wmrl.drivers.fused import FusedDriver
from wmrl.drivers.host import HostDriver

# The reference's defaults: train ratio 32, batches of 16 x 64 after a context of 1.
REFERENCE = RunConfig(train_ratio=32, batch_size=16, batch_length=64, replay_context=1)


def test_from_run_on_the_reference_defaults():
  """Catches a window without its context step, a start that is not the
  reference's (replay holding 16 x 64 windows: 16 streams of 128 steps, each
  holding 128 - 65 + 1 = 64 windows, at step 2,048; one stream at step 1,088),
  random actions where the reference has none, and a debt per step that is
  not ratio / (batch x length) x N."""
  schedule = Schedule.from_run(REFERENCE, num_envs=16)
  assert schedule.num_envs == 16
  assert schedule.window == 65  # 1 + 64
  assert schedule.prefill == 0 and not schedule.random_actions(0)
  assert schedule.start == 2048
  assert schedule.updates_per_vector_step == 0.5  # 32 / (16 x 64) x 16
  one = Schedule.from_run(REFERENCE, num_envs=1)
  assert one.start == 1088 and one.updates_per_vector_step == 1 / 32


def test_from_run_with_a_prefill_no_context_and_two_processes():
  """Catches a prefill that does not hold training back (its vector steps,
  5,000 steps rounded up to 5,008), a context counted where there is none
  (16 x (127 - 64 + 1) = 1,024 windows at step 2,032), and in two processes
  a start or a debt from the global batch: each samples 8 of 16 sequences
  from its own replay (8 x 64 windows: 16 x (96 - 64) = 512 at step 1,536)
  and owes twice the updates per step."""
  prefill = Schedule.from_run(dataclasses.replace(REFERENCE, prefill=5000), 16)
  assert (prefill.prefill, prefill.start) == (5000, 5008)
  assert prefill.random_actions(312) and not prefill.random_actions(313)  # steps 4,993, 5,009
  none = Schedule.from_run(dataclasses.replace(REFERENCE, replay_context=0), 16)
  assert (none.window, none.start) == (64, 2032)
  one, two = Schedule.from_run(REFERENCE, 16), Schedule.from_run(REFERENCE, 16, processes=2)
  assert two.updates_per_vector_step == 1.0 == 2 * one.updates_per_vector_step
  assert (two.window, two.start, two.num_envs) == (65, 1536, 16)


def test_random_actions_while_a_vector_steps_first_step_is_in_the_prefill():
  """Catches an off-by-one at the prefill's end and a count of vector steps taken
  for environment steps: with 16 environments and a prefill of 1040 steps,
  vector step 64 starts at step 1024 (random), vector step 65 at step 1040 (not)."""
  schedule = Schedule.from_run(dataclasses.replace(REFERENCE, prefill=1040), 16)
  assert [schedule.random_actions(v) for v in (0, 1, 63, 64, 65, 66, 1000)] == [
      True, True, True, True, False, False, False]
  # On traced integers too, as the fused driver's scan asks.
  traced = jax.jit(schedule.random_actions)(jnp.arange(62, 68))
  np.testing.assert_array_equal(traced, [True, True, True, False, False, False])
  # One environment: the first 1040 steps.
  one = Schedule.from_run(dataclasses.replace(REFERENCE, prefill=1040), 1)
  assert one.random_actions(1039) and not one.random_actions(1040)


def test_a_start_inside_a_vector_step_owes_what_the_reference_owes_by_its_end():
  """Catches a start rounded to vector steps, or a first step that does not
  owe its one update. 3 environments, windows of 2, 4 windows to hold: after
  step 7 the first stream holds 3 steps (2 windows), the others 2 (1 each).
  The reference's ratio (r = 0.5 a step) owes 1 at step 7, 0 at 8, 1 at 9:
  2 by vector step 3's end; then 1 by step 12 (at 11) and 2 by 15 (13, 15)."""
  assert training_start(3, window=2, fill=4) == 7
  schedule = Schedule(num_envs=3, window=2, prefill=0, start=7, updates_per_vector_step=1.5)
  assert schedule.owe(0.0, 6) == (0, 0.0)
  assert schedule.owe(0.0, 9) == (2, 0.0)
  assert schedule.owe(0.0, 12) == (1, 0.5)
  assert schedule.owe(0.5, 15) == (2, 0.0)


def test_a_fractional_debt_is_carried_from_step_to_step():
  """Catches a debt rounded, reset or forgotten between steps: from the first
  update at the start, a quarter update a step owes one every fourth step."""
  quarter = Schedule(num_envs=1, window=7, prefill=0, start=14, updates_per_vector_step=0.25)
  debt, owed = 0.75, []  # a debt before the start is not the schedule's: replaced there
  for env_steps in range(10, 26):
    updates, debt = quarter.owe(debt, env_steps)
    owed.append(updates)
  #                 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25
  assert owed == [0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]
  assert debt == 0.75
  # A third of an update a step (not a binary fraction): over 3,000 steps the
  # updates fall short of 1 + 2,999 / 3 by less than one, the rest still owed.
  third = Schedule(num_envs=1, window=1, prefill=0, start=1, updates_per_vector_step=1 / 3)
  debt, total = 0.0, 0
  for env_steps in range(1, 3001):
    updates, debt = third.owe(debt, env_steps)
    assert updates <= 1 and 0.0 <= debt < 1.0
    total += updates
  assert 999 <= total <= 1000 and total + debt == pytest.approx(1 + 2999 / 3, abs=1e-9)


def test_a_high_ratio_owes_several_updates_at_once():
  """Catches a schedule that runs at most one update per step: 2.5 updates a
  vector step owe 1 at the start, then 2, then 3 (the half carried)."""
  high = Schedule(num_envs=4, window=7, prefill=0, start=28, updates_per_vector_step=2.5)
  assert high.owe(0.0, 28) == (1, 0.0)
  assert high.owe(0.0, 32) == (2, 0.5)
  assert high.owe(0.5, 36) == (3, 0.0)
  # From the run's settings: ratio 512 on 16 environments and 16 x 64 windows.
  recipe16 = Schedule.from_run(dataclasses.replace(REFERENCE, train_ratio=512), 16)
  assert recipe16.owe(0.0, 2048) == (1, 0.0) and recipe16.owe(0.0, 2064) == (8, 0.0)


def reference_updates(num_envs: int, window: int, batch: int, length: int, ratio: float,
                      vector_steps: int) -> list[int]:
  """The reference's loop transcribed (embodied/run/train.py at e3f0224): after
  each environment's step, if replay holds batch x length windows (each stream
  one per step from its `window`-th on), `elements.when.Ratio` owes 1 on its
  first call, then int((step - prev) * r), prev moved by repeats / r. The
  updates made by the end of each vector step."""
  r = ratio / (batch * length)
  prev, total, items, step, out = None, 0, 0, 0, []
  for v in range(vector_steps):
    for _ in range(num_envs):
      step += 1
      items += v + 1 >= window  # this stream's steps reach a whole window
      if items < batch * length:
        continue
      if prev is None:
        prev, repeats = step, 1
      else:
        repeats = int((step - prev) * r)
        prev += repeats / r
      total += repeats
    out.append(total)
  return out


@pytest.mark.parametrize("num_envs, window, batch, length, ratio", [
    (16, 65, 16, 64, 32), (16, 65, 16, 64, 512), (1, 33, 8, 32, 64), (5, 9, 3, 8, 48),
    (5, 9, 3, 8, 24), (7, 4, 2, 3, 5)])
def test_the_updates_of_every_vector_step_are_the_reference_loops(num_envs, window, batch,
                                                                  length, ratio):
  """Catches any difference from the reference loop's counts, step by step:
  the start, its first update, and the ratio after it, on binary ratios and
  starts inside a vector step, exactly. Where r is no binary fraction (the
  last two) both round: the reference's `prev += repeats / r` drifts below
  the whole steps and misses an update where (S - start) r is whole, making
  it up a step later; wmrl's float debt rounds elsewhere. There the counts
  stay within one."""
  run = RunConfig(train_ratio=ratio, batch_size=batch, batch_length=length,
                  replay_context=window - length)
  schedule = Schedule.from_run(run, num_envs)
  expected = reference_updates(num_envs, window, batch, length, ratio, 400)
  debt, total, ours = 0.0, 0, []
  for v in range(1, 401):
    updates, debt = schedule.owe(debt, v * num_envs)
    total += updates
    ours.append(total)
  r = ratio / (batch * length)
  if r == 2.0 ** round(np.log2(r)):
    assert ours == expected
  else:
    assert max(abs(a - b) for a, b in zip(ours, expected)) == 1  # the rounding, not worse


def test_host_and_fused_drivers_owe_the_same_updates_on_the_same_steps():
  """Catches a fused driver whose count of the updates an iteration owes differs
  from the host driver's step-by-step count (tests/test_fused.py compares whole
  runs only where an update falls every 4 steps, a binary fraction, and only at
  the end). Here 4 environments with batches of 2 x 7 owe 4/3 updates a vector
  step, not a binary fraction, so the float debt rounds. The
  counters, the float debt included, must agree after every fused iteration.
  The small "tiny" algorithm (tests/tiny_algorithm.py) keeps it fast."""
  config = cfg.Config(algorithm="tiny").replace(**{
      "env.id": "gymnax:CartPole-v1", "env.num_envs": 4, "run.batch_size": 2,
      "run.batch_length": 6, "run.train_ratio": 4, "run.replay_capacity": 4000})
  algo = tiny_algorithm.TINY
  host_env = envs.from_config(config.env, seed=0)
  init = lambda: algo.init(jax.random.key(0), host_env.obs_spec, host_env.act_spec, config)
  host = HostDriver.single(algo, config.run, host_env, init())
  fused = FusedDriver.single(algo, config.run, jaxenvs.from_config(config.env), init(), seed=0)
  assert host.schedule == fused.schedule
  assert host.schedule.updates_per_vector_step == 4 / (2 * 6) * 4
  assert fused.steps == 3  # 3 vector steps owe 4 updates
  ignore = lambda *args: None
  seen = []
  for _ in range(8):
    fused.iterate(ignore, ignore)
    for _ in range(fused.steps):
      host.iterate(ignore, ignore)
    # All but the online queue's count: the fused driver's updates run after its
    # 3 steps, the host driver's after each, so they find different queues.
    same = lambda counters: dataclasses.replace(counters, online_taken=0)
    assert same(host.counters) == same(fused.counters)
    seen.append(fused.counters.updates)
  # Replay holds 2 x 6 windows after step 36 (4 streams of 9 steps, 3 windows
  # each): the third iteration's last step makes the first update. Then 4/3
  # updates a vector step, 4 an iteration; in float64 1/3 + 4/3 - 1 + 4/3 is
  # 2 - 2e-16, so the fourth iteration owes 3 and every later one 4, the last
  # update still owed; both drivers round alike.
  assert seen == [0, 0, 1, 4, 8, 12, 16, 20]
  assert fused.counters.env_steps == 96 and 1 - 1e-12 < fused.counters.update_debt < 1
  host_env.close()
