"""Tests for wmrl/drivers/acting.py, the acting rule both drivers follow: random
actions through the prefill, remembered by the policy's carry as replay stores
them, then the policy's own; drawn from the seed's root and the step."""
import jax
import numpy as np

from conftest import tiny_config
from wmrl import draws, testing
from wmrl.algorithms.dreamerv3 import agent
from wmrl.drivers import Schedule
from wmrl.drivers.acting import Acting

NUM_ENVS = 3


def _acting(store_entries=True):
  # A prefill of random actions is wmrl's option (the reference acts with its
  # policy from the first step): 30 steps, 10 vector steps.
  config = tiny_config(**{"env.num_envs": NUM_ENVS, "run.prefill": 30})
  obs_spec, act_spec = testing.SPACES["vector-continuous"]
  state = agent.init(jax.random.key(0), obs_spec, act_spec, config)
  schedule = Schedule.from_run(config.run, NUM_ENVS)
  acting = Acting(agent.DREAMERV3, schedule, tuple(obs_spec), act_spec, store_entries)
  step = {"obs": np.linspace(-1, 1, NUM_ENVS * 5, dtype=np.float32).reshape(NUM_ENVS, 5),
          "is_first": np.ones(NUM_ENVS, bool), "reward": np.zeros(NUM_ENVS, np.float32)}
  return acting, state, step, schedule


def test_prefill_acts_at_random_and_the_carry_holds_the_action_taken():
  """Catches a carry that remembers the policy's sample while the environment got
  (and replay stores) the random action: the next step's model input would
  differ from the replayed one."""
  acting, state, step, schedule = _acting()
  root = draws.seed_root(0)
  carry = agent.initial_carry(state, NUM_ENVS)
  assert schedule.random_actions(0) and not schedule.random_actions(schedule.prefill)
  action, after, entries = acting(state, step, carry, root, 0)
  random = draws.prefill_actions(root, 0, acting.act_spec, NUM_ENVS)
  np.testing.assert_array_equal(np.asarray(action), np.asarray(random))
  np.testing.assert_array_equal(np.asarray(after.action), np.asarray(action))
  # The policy observed the step all the same: its latent is the policy's.
  own, own_carry = agent.policy_step(state, {"obs": step["obs"], "is_first": step["is_first"]},
                                     carry, draws.policy_key(root, 0), "train")
  assert not np.allclose(np.asarray(own), np.asarray(action))
  np.testing.assert_array_equal(np.asarray(after.latent.deter), np.asarray(own_carry.latent.deter))
  np.testing.assert_array_equal(entries["latent/deter"], np.asarray(own_carry.latent.deter))


def test_after_the_prefill_the_policy_acts_with_the_key_of_the_step():
  """Catches random actions past the prefill, or a policy key that is not the
  step's (a resumed run would draw other actions than an uninterrupted one)."""
  acting, state, step, schedule = _acting(store_entries=False)
  root, vector_step = draws.seed_root(5), schedule.prefill // NUM_ENVS + 1
  carry = agent.initial_carry(state, NUM_ENVS)
  action, after, entries = acting(state, step, carry, root, vector_step)
  own, own_carry = agent.policy_step(state, {"obs": step["obs"], "is_first": step["is_first"]},
                                     carry, draws.policy_key(root, vector_step), "train")
  np.testing.assert_array_equal(np.asarray(action), np.asarray(own))
  np.testing.assert_array_equal(np.asarray(after.action), np.asarray(own_carry.action))
  assert entries == {}
  again, _, _ = acting(state, step, carry, root, vector_step + 1)
  assert not np.allclose(np.asarray(again), np.asarray(action))
