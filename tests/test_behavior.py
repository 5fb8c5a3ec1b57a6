"""Tests for wmrl/algorithms/dreamerv3/behavior.py: lambda-returns, return normalisation and the
actor's policy distributions.

Expected returns are written out by hand below (with the arithmetic in the
comments) or computed by a plain Python loop over the recursion

  R_t = r_{t+1} + live_{t+1} ((1 - c_{t+1}) boot_{t+1} + c_{t+1} R_{t+1}),
  live = discount (1 - term),  c = lam (1 - last),  R_{T-1} = boot_{T-1}.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from wmrl.algorithms.dreamerv3 import behavior
from wmrl.algorithms.dreamerv3.config import BehaviorConfig, HeadConfig, ModelConfig
from wmrl.spaces import ActionSpec

# A hand-made trajectory of length 5 (reward r[0] is never used).
REWARD = [0.0, 1.0, 2.0, 3.0, 4.0]
BOOT = [10.0, 20.0, 30.0, 40.0, 50.0]
DISCOUNT = 0.9


def returns(reward=REWARD, boot=BOOT, last=None, term=None, discount=DISCOUNT, lam=1.0):
  """Calls lambda_return on one sequence (B = 1) and gives back the row."""
  t = len(reward)
  last = [0.0] * t if last is None else last
  term = [0.0] * t if term is None else term
  arr = lambda x: jnp.asarray([x], jnp.float32)
  value = jnp.full((1, t), 1e6)  # not used: `bootstrap` is what the returns read
  out = behavior.lambda_return(arr(last), arr(term), arr(reward), value, arr(boot),
                               discount, lam)
  assert out.shape == (1, t - 1)
  return np.asarray(out[0])


def loop_returns(last, term, reward, boot, discount, lam):
  """The recursion above, one step at a time, in float64."""
  batch, t = len(reward), len(reward[0])
  out = np.zeros((batch, t - 1))
  for b in range(batch):
    ret = boot[b][t - 1]
    for i in reversed(range(t - 1)):
      live = discount * (1 - term[b][i + 1])
      c = lam * (1 - last[b][i + 1])
      ret = reward[b][i + 1] + live * ((1 - c) * boot[b][i + 1] + c * ret)
      out[b, i] = ret
  return out


# --- lambda-returns ----------------------------------------------------------------

def test_lambda_return_lam1_is_discounted_sum_plus_bootstrap():
  # R_3 = 4 + .9 * 50 = 49; R_2 = 3 + .9 * 49 = 47.1; R_1 = 2 + .9 * 47.1 = 44.39;
  # R_0 = 1 + .9 * 44.39 = 40.951 = 1 + .9 * 2 + .81 * 3 + .729 * 4 + .6561 * 50.
  np.testing.assert_allclose(returns(lam=1.0), [40.951, 44.39, 47.1, 49.0], rtol=1e-6)


def test_lambda_return_lam0_is_one_step_td():
  # R_t = r_{t+1} + .9 boot_{t+1}: 1 + 18, 2 + 27, 3 + 36, 4 + 45.
  np.testing.assert_allclose(returns(lam=0.0), [19.0, 29.0, 39.0, 49.0], rtol=1e-6)


def test_lambda_return_half_lambda_by_hand():
  # lam = .5: R_3 = 4 + .9 * 50 = 49 (the seed is boot_4 either way);
  # R_2 = 3 + .9 (.5 * 40 + .5 * 49) = 43.05;
  # R_1 = 2 + .9 (.5 * 30 + .5 * 43.05) = 34.8725;
  # R_0 = 1 + .9 (.5 * 20 + .5 * 34.8725) = 25.692625.
  np.testing.assert_allclose(returns(lam=0.5), [25.692625, 34.8725, 43.05, 49.0], rtol=1e-6)


def test_lambda_return_stops_at_terminal():
  # term[2] = 1: live_2 = 0, so R_1 = r_2 = 2 and R_0 = 1 + .9 * 2 = 2.8;
  # the steps after the terminal are their own episode: R_2 = 47.1, R_3 = 49.
  term = [0.0, 0.0, 1.0, 0.0, 0.0]
  np.testing.assert_allclose(returns(term=term, lam=1.0), [2.8, 2.0, 47.1, 49.0], rtol=1e-6)
  # With lam = 0 the terminal also removes the bootstrap: R_1 = 2, R_0 = 1 + .9 * 20 = 19.
  np.testing.assert_allclose(returns(term=term, lam=0.0), [19.0, 2.0, 39.0, 49.0], rtol=1e-6)


def test_lambda_return_before_terminal_ignores_later_steps():
  term = [0.0, 0.0, 1.0, 0.0, 0.0]
  base = returns(term=term, lam=0.95)
  # Change everything the episode cannot see: the value at the terminal state
  # and all rewards and values after it.
  other = returns(reward=[0.0, 1.0, 2.0, -70.0, 99.0], boot=[10.0, 20.0, -5e3, 7e3, -9e3],
                  term=term, lam=0.95)
  np.testing.assert_array_equal(other[:2], base[:2])
  assert not np.allclose(other[2:], base[2:])  # the later steps did change


def test_lambda_return_uses_bootstrap_at_last():
  # last[2] = 1 (a time limit, not a terminal): c_2 = 0, so R_1 = r_2 + .9 boot_2 =
  # 2 + 27 = 29 and R_0 = 1 + .9 * 29 = 27.1; later steps are unchanged: 47.1, 49.
  last = [0.0, 0.0, 1.0, 0.0, 0.0]
  np.testing.assert_allclose(returns(last=last, lam=1.0), [27.1, 29.0, 47.1, 49.0], rtol=1e-6)
  # And they do not depend on anything after step 2.
  other = returns(reward=[0.0, 1.0, 2.0, -70.0, 99.0], boot=[10.0, 20.0, 30.0, 7e3, -9e3],
                  last=last, lam=1.0)
  np.testing.assert_allclose(other[:2], [27.1, 29.0], rtol=1e-6)


def test_lambda_return_last_at_final_step_changes_nothing():
  # The final step is seeded with boot_{T-1} anyway: R_3 = 4 + .9 * 50 = 49.
  last = [0.0, 0.0, 0.0, 0.0, 1.0]
  np.testing.assert_allclose(returns(last=last, lam=1.0), [40.951, 44.39, 47.1, 49.0],
                             rtol=1e-6)


def test_lambda_return_matches_loop_on_random_batch():
  rng = np.random.default_rng(0)
  b, t = 3, 7
  reward = rng.normal(size=(b, t))
  boot = rng.normal(size=(b, t)) * 5
  term = (rng.uniform(size=(b, t)) < 0.2).astype(np.float64)
  last = np.maximum(term, (rng.uniform(size=(b, t)) < 0.2)).astype(np.float64)
  f = lambda x: jnp.asarray(x, jnp.float32)
  out = behavior.lambda_return(f(last), f(term), f(reward), f(boot), f(boot), 0.997, 0.95)
  assert out.shape == (b, t - 1)
  np.testing.assert_allclose(out, loop_returns(last, term, reward, boot, 0.997, 0.95),
                             rtol=1e-5, atol=1e-5)


def test_lambda_return_rows_are_independent():
  # Row 0 has a terminal at step 2, row 1 none: each row equals its own hand values.
  f = lambda x: jnp.asarray(x, jnp.float32)
  term = f([[0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
  out = behavior.lambda_return(jnp.zeros((2, 5)), term, f([REWARD, REWARD]),
                               f([BOOT, BOOT]), f([BOOT, BOOT]), DISCOUNT, 1.0)
  np.testing.assert_allclose(out, [[2.8, 2.0, 47.1, 49.0], [40.951, 44.39, 47.1, 49.0]],
                             rtol=1e-6)


# --- return normalisation -------------------------------------------------------------

def test_retnorm_defaults_are_reference():
  c = BehaviorConfig()
  assert (c.retnorm_rate, c.retnorm_limit, c.retnorm_low, c.retnorm_high) == (0.01, 1.0, 5.0, 95.0)


def test_retnorm_one_update_from_zeros():
  # Percentiles 5 and 95 of 0..100 are 5 and 95; EMA from 0 with rate .01: .05, .95.
  config = BehaviorConfig()
  norm = behavior.ReturnNorm.init().update(jnp.arange(101.0), config)
  np.testing.assert_allclose(norm.low, 0.05, rtol=1e-6)
  np.testing.assert_allclose(norm.high, 0.95, rtol=1e-6)
  # scale = max(limit = 1, .95 - .05 = .9) = 1.
  assert float(norm.scale(config)) == 1.0


def test_retnorm_percentiles_of_a_batch_use_all_entries():
  # 0..99 in a [4, 25] batch: the 5th percentile interpolates at index .05 * 99 = 4.95,
  # the 95th at 94.05; after one update: .0495 and .9405.
  norm = behavior.ReturnNorm.init().update(jnp.arange(100.0).reshape(4, 25), BehaviorConfig())
  np.testing.assert_allclose([norm.low, norm.high], [0.0495, 0.9405], rtol=1e-5)


def test_retnorm_converges_to_percentile_range():
  # After n updates on the same data: low = 5 (1 - .99^n), high = 95 (1 - .99^n),
  # so the scale is 90 (1 - .99^n) -> 90.
  config = BehaviorConfig()
  data = jnp.arange(101.0)

  @jax.jit
  def run(n):
    return jax.lax.fori_loop(0, n, lambda _, s: s.update(data, config), behavior.ReturnNorm.init())

  norm = run(1000)
  expected = 90 * (1 - 0.99 ** 1000)
  np.testing.assert_allclose(norm.scale(config), expected, rtol=1e-4)
  assert 89.9 < float(norm.scale(config)) <= 90.0
  np.testing.assert_allclose(run(50).scale(config), 90 * (1 - 0.99 ** 50), rtol=1e-4)


def test_retnorm_scale_never_below_limit():
  config = BehaviorConfig()
  norm = behavior.ReturnNorm.init()
  for _ in range(5):
    norm = norm.update(jnp.full((8,), 3.0), config)  # zero range
    assert float(norm.scale(config)) == 1.0
  assert float(behavior.ReturnNorm.init().scale(config)) == 1.0
  # A larger limit also holds: range .9 after one update, limit 5 -> 5.
  big = BehaviorConfig(retnorm_limit=5.0)
  norm = behavior.ReturnNorm.init().update(jnp.arange(101.0), big)
  assert float(norm.scale(big)) == 5.0


# --- actor / policy ---------------------------------------------------------------------

FEAT = 6


def small_model(**kw):
  return ModelConfig(actor=HeadConfig(units=8, layers=1, outscale=1.0), **kw)


def make_actor(spec, **kw):
  return behavior.Actor(FEAT, spec, small_model(**kw), rngs=nnx.Rngs(0))


def feats(shape=(2, 3)):
  return jax.random.normal(jax.random.PRNGKey(7), (*shape, FEAT))


def np_mixed_probs(raw_block, unimix=0.01):
  """0.99 softmax(raw) + 0.01 / K, in float64."""
  raw = np.asarray(raw_block, np.float64)
  e = np.exp(raw - raw.max(-1, keepdims=True))
  return (1 - unimix) * e / e.sum(-1, keepdims=True) + unimix / raw.shape[-1]


def test_continuous_policy_shapes_and_bounds():
  spec = ActionSpec("continuous", (3,))
  actor = make_actor(spec)
  policy = actor(feats())
  sample = policy.sample(jax.random.PRNGKey(0))
  assert sample.shape == (2, 3, 3)
  assert policy.mode().shape == (2, 3, 3)
  assert policy.logp(sample).shape == (2, 3)
  assert policy.entropy().shape == (2, 3)
  mean, std = (np.asarray(p) for p in policy.params)
  assert (np.abs(mean) <= 1).all()
  assert (std >= 0.1).all() and (std <= 1.0).all()
  np.testing.assert_array_equal(policy.mode(), mean)


def test_continuous_policy_logp_and_entropy_hand_formula():
  spec = ActionSpec("continuous", (2,))
  actor = make_actor(spec)
  feat = feats()
  policy = actor(feat)
  # The head's raw output: first half mean, second half std (before bounding).
  raw = np.asarray(actor.head(feat), np.float64)
  mean = np.tanh(raw[..., :2])
  std = 0.9 / (1 + np.exp(-(raw[..., 2:] + 2))) + 0.1
  action = np.full((2, 3, 2), 0.25)
  logp = (-0.5 * ((action - mean) / std) ** 2 - np.log(std * np.sqrt(2 * np.pi))).sum(-1)
  np.testing.assert_allclose(policy.logp(jnp.asarray(action, jnp.float32)), logp, rtol=1e-4,
                             atol=1e-5)
  entropy = (0.5 * np.log(2 * np.pi * np.e * std ** 2)).sum(-1)
  np.testing.assert_allclose(policy.entropy(), entropy, rtol=1e-4, atol=1e-5)


def check_one_hot_blocks(action, sizes):
  action = np.asarray(action)
  assert action.shape[-1] == sum(sizes)
  start = 0
  for size in sizes:
    block = action[..., start:start + size]
    assert set(np.unique(block)) <= {0.0, 1.0}
    np.testing.assert_array_equal(block.sum(-1), 1.0)
    start += size


def test_discrete_policy_shapes_and_one_hot_samples():
  spec = ActionSpec("discrete", (5,))
  policy = make_actor(spec)(feats())
  sample = policy.sample(jax.random.PRNGKey(1))
  assert sample.shape == (2, 3, 5)
  check_one_hot_blocks(sample, (5,))
  check_one_hot_blocks(policy.mode(), (5,))
  assert policy.logp(sample).shape == (2, 3)
  assert policy.entropy().shape == (2, 3)


def test_discrete_policy_logp_is_log_of_mixed_probability():
  spec = ActionSpec("discrete", (5,))
  actor = make_actor(spec, actor_unimix=0.01)
  feat = feats()
  probs = np_mixed_probs(actor.head(feat))
  policy = actor(feat)
  for k in range(5):
    action = jnp.broadcast_to(jnp.eye(5)[k], (2, 3, 5))
    np.testing.assert_allclose(policy.logp(action), np.log(probs[..., k]), rtol=1e-5,
                               atol=1e-6)
  # The mode is the most likely action.
  np.testing.assert_array_equal(np.asarray(policy.mode()).argmax(-1), probs.argmax(-1))
  entropy = -(probs * np.log(probs)).sum(-1)
  np.testing.assert_allclose(policy.entropy(), entropy, rtol=1e-5, atol=1e-6)


def test_discrete_policy_by_default_is_a_plain_softmax():
  # The reference's categorical policy has no uniform mix.
  spec = ActionSpec("discrete", (4,))
  actor = make_actor(spec)
  feat = feats()
  probs = np_mixed_probs(actor.head(feat), unimix=0.0)
  action = jnp.broadcast_to(jnp.eye(4)[2], (2, 3, 4))
  np.testing.assert_allclose(actor(feat).logp(action), np.log(probs[..., 2]), rtol=1e-5,
                             atol=1e-6)


def test_multi_discrete_policy_concatenates_one_hot_blocks():
  spec = ActionSpec("discrete", (3, 4))
  actor = make_actor(spec, actor_unimix=0.01)
  feat = feats()
  policy = actor(feat)
  assert len(policy.params) == 2
  sample = policy.sample(jax.random.PRNGKey(2))
  assert sample.shape == (2, 3, 7)
  check_one_hot_blocks(sample, (3, 4))
  check_one_hot_blocks(policy.mode(), (3, 4))
  assert policy.entropy().shape == (2, 3)
  # logp of (choice 2 of the first block, choice 1 of the second) is the sum of the
  # log mixed probabilities of each block, the blocks split at 3.
  raw = np.asarray(actor.head(feat))
  p1, p2 = np_mixed_probs(raw[..., :3]), np_mixed_probs(raw[..., 3:])
  action = jnp.broadcast_to(jnp.array([0, 0, 1, 0, 1, 0, 0], jnp.float32), (2, 3, 7))
  np.testing.assert_allclose(policy.logp(action), np.log(p1[..., 2]) + np.log(p2[..., 1]),
                             rtol=1e-5, atol=1e-6)
  entropy = -(p1 * np.log(p1)).sum(-1) - (p2 * np.log(p2)).sum(-1)
  np.testing.assert_allclose(policy.entropy(), entropy, rtol=1e-5, atol=1e-6)


def test_multi_discrete_samples_cover_each_block_independently():
  # Over many draws, every choice of each block shows up (1% unimix makes them all possible
  # and the head's logits are of order 1).
  spec = ActionSpec("discrete", (3, 4))
  policy = make_actor(spec)(feats((1,)))
  keys = jax.random.split(jax.random.PRNGKey(3), 500)
  samples = np.asarray(jax.vmap(policy.sample)(keys))[:, 0]
  check_one_hot_blocks(samples, (3, 4))
  assert (samples[:, :3].sum(0) > 0).all() and (samples[:, 3:].sum(0) > 0).all()


def test_discrete_sample_has_straight_through_gradient():
  spec = ActionSpec("discrete", (4,))
  actor = make_actor(spec)
  feat = feats((1,))
  w = jnp.array([1.0, -2.0, 0.5, 3.0])

  def loss(model):
    return (model(feat).sample(jax.random.PRNGKey(4)) * w).sum()

  grads = nnx.grad(loss)(actor)
  norm = sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads))
  assert norm > 0 and math.isfinite(norm)
