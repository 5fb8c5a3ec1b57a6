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
from wmrl.drivers.fused import FusedDriver
from wmrl.drivers.host import HostDriver

# The reference's defaults: train ratio 32, batches of 16 x 64 after a context of 1.
REFERENCE = RunConfig(train_ratio=32, batch_size=16, batch_length=64, replay_context=1)


def test_from_run_on_the_reference_defaults():
  """Catches a window without its context step, a prefill shorter than one batch of
  windows, and a debt per step that is not ratio / (batch x length) x N."""
  schedule = Schedule.from_run(REFERENCE, num_envs=16)
  assert schedule.num_envs == 16
  assert schedule.window == 65  # 1 + 64
  assert schedule.prefill == 1040  # run.prefill 0: one batch of windows, 16 x 65
  assert schedule.updates_per_vector_step == 0.5  # 32 / (16 x 64) x 16
  # One environment owes 1/32 of an update a step.
  assert Schedule.from_run(REFERENCE, num_envs=1).updates_per_vector_step == 1 / 32


def test_from_run_keeps_a_longer_prefill_and_no_context():
  """Catches a `run.prefill` ignored where it exceeds one batch, or obeyed where it
  falls short of one, and a context counted where there is none."""
  longer = dataclasses.replace(REFERENCE, prefill=5000)
  assert Schedule.from_run(longer, 16).prefill == 5000
  shorter = dataclasses.replace(REFERENCE, prefill=100)
  assert Schedule.from_run(shorter, 16).prefill == 1040
  none = dataclasses.replace(REFERENCE, replay_context=0)
  schedule = Schedule.from_run(none, 16)
  assert (schedule.window, schedule.prefill) == (64, 1024)


def test_in_two_processes_each_owes_twice_the_updates_of_half_the_batch():
  """Catches a debt computed from the global batch in several processes: each
  samples 16 / 2 = 8 sequences from its own replay, so to replay each of its
  steps `ratio` times it owes twice the updates per step. The window and the
  prefill (one global batch of windows) stay as they are."""
  one, two = Schedule.from_run(REFERENCE, 16), Schedule.from_run(REFERENCE, 16, processes=2)
  assert two.updates_per_vector_step == 1.0  # 32 / (8 x 64) x 16
  assert two.updates_per_vector_step == 2 * one.updates_per_vector_step
  assert (two.window, two.prefill, two.num_envs) == (one.window, one.prefill, one.num_envs)


def test_random_actions_while_a_vector_steps_first_step_is_in_the_prefill():
  """Catches an off-by-one at the prefill's end and a count of vector steps taken
  for environment steps: with 16 environments and a prefill of 1040 steps,
  vector step 64 starts at step 1024 (random), vector step 65 at step 1040 (not)."""
  schedule = Schedule.from_run(REFERENCE, 16)
  assert [schedule.random_actions(v) for v in (0, 1, 63, 64, 65, 66, 1000)] == [
      True, True, True, True, False, False, False]
  # On traced integers too, as the fused driver's scan asks.
  traced = jax.jit(schedule.random_actions)(jnp.arange(62, 68))
  np.testing.assert_array_equal(traced, [True, True, True, False, False, False])
  # One environment: the first 1040 steps.
  one = Schedule.from_run(REFERENCE, 1)
  assert one.random_actions(1039) and not one.random_actions(1040)


# One environment, windows of 7, a prefill of 14 steps, a quarter update a step.
QUARTER = Schedule(num_envs=1, window=7, prefill=14, updates_per_vector_step=0.25)


def test_nothing_is_owed_before_the_prefill_or_before_a_window_is_stored():
  """Catches a debt that grows during the prefill, or while some replay stream holds
  less than one window (more environments than a batch has sequences: the
  prefill ends before each stream holds a window)."""
  assert QUARTER.owe(0.0, 13, 13) == (0, 0.0)  # step 13 of a prefill of 14
  assert QUARTER.owe(0.75, 13, 13) == (0, 0.75)  # a debt kept, not grown or dropped
  assert QUARTER.owe(0.0, 20, 6) == (0, 0.0)  # past the prefill, 6 steps stored of 7
  assert QUARTER.owe(0.0, 14, 14) == (0, 0.25)  # the prefill's last step owes
  assert QUARTER.owe(0.0, 14, 7) == (0, 0.25)  # one whole window stored is enough


def test_a_fractional_debt_is_carried_from_step_to_step():
  """Catches a debt rounded, reset or forgotten between steps: a quarter update a
  step owes one update every fourth step, exactly, from the prefill's last step."""
  debt, owed = 0.0, []
  for env_steps in range(10, 26):
    updates, debt = QUARTER.owe(debt, env_steps, env_steps)
    owed.append(updates)
  #                 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25
  assert owed == [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]
  assert debt == 0.0
  # A third of an update a step (not a binary fraction): over 3,000 steps the
  # updates fall short of 1,000 by less than one, the rest still owed.
  third = Schedule(num_envs=1, window=1, prefill=0, updates_per_vector_step=1 / 3)
  debt, total = 0.0, 0
  for env_steps in range(1, 3001):
    updates, debt = third.owe(debt, env_steps, env_steps)
    assert updates <= 1 and 0.0 <= debt < 1.0
    total += updates
  assert 999 <= total <= 1000 and total + debt == pytest.approx(1000, abs=1e-9)


def test_a_high_ratio_owes_several_updates_at_once():
  """Catches a schedule that runs at most one update per step: 2.5 updates a
  vector step owe 2, then 3 (the half carried), then 2 again."""
  high = Schedule(num_envs=4, window=7, prefill=28, updates_per_vector_step=2.5)
  assert high.owe(0.0, 28, 7) == (2, 0.5)
  assert high.owe(0.5, 32, 8) == (3, 0.0)
  assert high.owe(0.0, 36, 9) == (2, 0.5)
  # From the run's settings: ratio 512 on one environment and 16 x 64 windows.
  recipe = Schedule.from_run(dataclasses.replace(REFERENCE, train_ratio=512), 1)
  assert recipe.updates_per_vector_step == 0.5
  recipe16 = Schedule.from_run(dataclasses.replace(REFERENCE, train_ratio=512), 16)
  assert recipe16.owe(0.0, 2000, 200) == (8, 0.0)  # 512 / 1024 x 16


def test_host_and_fused_drivers_owe_the_same_updates_on_the_same_steps():
  """Catches a fused driver whose count of the updates an iteration owes differs
  from the host driver's step-by-step count (tests/test_fused.py compares whole
  runs only where an update falls every 4 steps, a binary fraction, and only at
  the end). Here 4 environments with batches of 2 x 7 owe 4/3 updates a vector
  step, not a binary fraction, so the float debt rounds; the prefill (14 steps)
  ends inside an iteration, and each stream holds a window only after it. The
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
  # Vector step 4 passes the prefill (16 steps), vector step 7 stores the first
  # window: from there 4/3 updates a step, 18 x 4/3 = 24 by step 24. In float64,
  # 1/3 + 4/3 - 1 + 4/3 is 2 - 2e-16: step 9 owes 1 (not 2) and every later
  # iteration 4, the last update still owed; both drivers round alike.
  assert seen == [0, 0, 3, 7, 11, 15, 19, 23]
  assert fused.counters.env_steps == 96 and 1 - 1e-12 < fused.counters.update_debt < 1
  host_env.close()
