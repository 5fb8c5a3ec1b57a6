"""The memory probe (wmrl/memory_probe.py): its data and metric against values
worked out by hand, and a short probe in which the SSM world model learns to
remember 3 steps (the benchmark's smoke version: benchmarks/memory.py)."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from wmrl import dists, memory_probe, testing


def test_memoryless_bits_are_the_entropy_of_a_quarter():
  assert memory_probe.MEMORYLESS_BITS == pytest.approx(0.8113, abs=1e-4)


@pytest.mark.parametrize("span", [0, 3, 15])
def test_episodes_reward_the_suit_span_cards_before_the_latest(span):
  data = memory_probe.episodes(span, count=3, seed=0)
  num_decks, k = memory_probe.deck_for(span)
  assert k == span + 1 and data["reward"].shape == (3, 52 * num_decks)
  cards, actions, reward = data["obs"].argmax(-1), data["action"].argmax(-1), data["reward"]
  # The reward arriving at step t judges the action taken at t - 1 against the
  # card `span` steps before that one; steps before there are unrewarded.
  t = np.arange(k, reward.shape[1])
  match = actions[:, t - 1] == cards[:, t - 1 - span]
  scale = memory_probe.unit_reward_scale(span)
  assert scale == 52 * num_decks - k
  np.testing.assert_allclose(reward[:, t] * scale, np.where(match, 1.0, -1.0), rtol=1e-6)
  np.testing.assert_array_equal(reward[:, :k], 0.0)
  assert data["is_first"][:, 0].all() and data["is_terminal"][:, -1].all()
  assert data["is_first"].sum() == data["is_last"].sum() == 3


def test_positive_probability_weighs_the_mass_above_zero_against_below():
  bins = dists.twohot_bins(255)
  values = np.asarray(bins)
  logits = np.full(255, -1e9, np.float32)
  logits[values > 0] = math.log(3.0 / (values > 0).sum())  # mass 3 above zero
  logits[values < 0] = math.log(1.0 / (values < 0).sum())  # mass 1 below
  logits[values == 0] = math.log(10.0)  # the zero bin counts for neither
  p = memory_probe.positive_probability(jnp.asarray(logits), 255)
  assert float(p) == pytest.approx(0.75, abs=1e-5)


def test_the_ssm_world_model_learns_to_remember_three_steps():
  units = 32
  config = testing.tiny_config(**{
      "model.dynamics": "ssm", "model.ssm.units": units, "model.ssm.deter": 2 * units,
      "model.ssm.hidden": units, "model.encoder.units": units, "model.decoder.units": units,
      "model.reward.units": units, "model.cont.units": units, "optim.lr": 3e-3,
      "optim.warmup": 0, "run.batch_size": 8, "run.batch_length": 32,
      "behavior.reward_scale": memory_probe.unit_reward_scale(3)})
  # Windows of 32 steps are plenty for a 3-step recall and keep this under a minute.
  result = memory_probe.run(config, span=3, updates=3000, train_episodes=200, test_episodes=32)
  # Without memory 0.811 bits at best; measured 0.28 here (0.275 at 2,500 updates, 0.816 at
  # 2,000 on windows of 64: the memory comes in a jump).
  assert result.bits < 0.5, result
