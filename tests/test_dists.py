"""Tests for wmrl/dists.py.

Expected values are worked out by hand (written out in the comments) or with
plain Python/NumPy loops in float64, never by calling the function under test
a second way.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wmrl import dists

SMALL_BINS = jnp.array([-1.0, 0.0, 1.0, 2.0], jnp.float32)


def np_softmax(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


# --- symlog / symexp --------------------------------------------------------------

def test_symlog_known_values():
  # symlog(x) = sign(x) log(1 + |x|): e - 1 -> log e = 1, 9 -> log 10, 0 -> 0.
  x = jnp.array([0.0, math.e - 1, -(math.e - 1), 9.0, -9.0, 99.0])
  expected = [0.0, 1.0, -1.0, math.log(10), -math.log(10), math.log(100)]
  np.testing.assert_allclose(dists.symlog(x), expected, rtol=1e-6, atol=0)


def test_symlog_is_odd_and_identity_near_zero():
  x = jnp.array([1e-3, 0.5, 3.0, 1e4])
  np.testing.assert_array_equal(dists.symlog(-x), -dists.symlog(x))
  # log(1 + x) = x - x^2 / 2 + ...: at 1e-4 that is 1e-4 - 5e-9.
  np.testing.assert_allclose(dists.symlog(jnp.array(1e-4)), 1e-4 - 5e-9, rtol=1e-6)


def test_symexp_known_values():
  # symexp(y) = sign(y) (exp|y| - 1): 1 -> e - 1, -log 10 -> -9, 0 -> 0.
  y = jnp.array([0.0, 1.0, -1.0, -math.log(10), math.log(1001)])
  expected = [0.0, math.e - 1, -(math.e - 1), -9.0, 1000.0]
  np.testing.assert_allclose(dists.symexp(y), expected, rtol=1e-6, atol=0)


def test_symexp_inverts_symlog_over_wide_range():
  mags = np.concatenate([[0.0], np.logspace(-6, 6, 49)])
  x = jnp.asarray(np.concatenate([-mags[::-1], mags]), jnp.float32)
  assert float(x.min()) == -1e6 and float(x.max()) == 1e6
  np.testing.assert_allclose(dists.symexp(dists.symlog(x)), x, rtol=1e-5, atol=1e-7)


# --- two-hot ---------------------------------------------------------------------

def test_twohot_between_two_bins():
  # Bins [-1, 0, 1, 2]: 0.25 lies a quarter of the way from bin 1 to bin 2.
  np.testing.assert_allclose(dists.twohot(jnp.array(0.25), SMALL_BINS), [0, 0.75, 0.25, 0],
                             atol=1e-7)
  np.testing.assert_allclose(dists.twohot(jnp.array(1.5), SMALL_BINS), [0, 0, 0.5, 0.5],
                             atol=1e-7)
  np.testing.assert_allclose(dists.twohot(jnp.array(-0.9), SMALL_BINS), [0.9, 0.1, 0, 0],
                             atol=1e-6)


def test_twohot_uneven_bins_use_local_width():
  # Bins [0, 1, 3]: x = 2.5 is 1.5 / 2 = 0.75 of the way from bin 1 to bin 2.
  bins = jnp.array([0.0, 1.0, 3.0])
  np.testing.assert_allclose(dists.twohot(jnp.array(2.5), bins), [0, 0.25, 0.75], atol=1e-7)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_twohot_exactly_on_a_bin_is_one_hot(index):
  x = SMALL_BINS[index]
  expected = np.eye(4)[index]
  np.testing.assert_array_equal(dists.twohot(x, SMALL_BINS), expected)


def test_twohot_clips_beyond_the_edges():
  x = jnp.array([-5.0, -1.0001, 2.0001, 1e9])
  expected = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]], np.float32)
  np.testing.assert_array_equal(dists.twohot(x, SMALL_BINS), expected)


def _hand_bins():
  """The 255 bins by hand in float64: symexp(-20 + 40 k / 254) for k = 0 ... 254."""
  y = -20.0 + 40.0 * np.arange(255) / 254
  return np.sign(y) * np.expm1(np.abs(y))


def test_twohot_sums_to_one_and_expectation_is_x():
  bins = dists.twohot_bins(255)
  # Raw values over many magnitudes: the bins are dense near 0 and sparse far out.
  mags = jnp.asarray(np.logspace(-4, 6, 60), jnp.float32)
  x = jnp.concatenate([-mags, jnp.zeros(1), mags])
  weights = dists.twohot(x, bins)
  assert weights.shape == (121, 255)
  assert float(weights.min()) >= 0.0
  nonzero = np.asarray(weights) > 0
  assert nonzero.sum(-1).max() <= 2  # at most two bins, and neighbours:
  assert all(np.ptp(np.flatnonzero(row)) <= 1 for row in nonzero)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
  np.testing.assert_allclose(weights @ bins, x, rtol=1e-5, atol=1e-6)


def test_twohot_bins_are_symexp_of_minus_20_to_20():
  bins = np.asarray(dists.twohot_bins(255))
  assert bins.shape == (255,) and bins.dtype == np.float32
  np.testing.assert_allclose(bins, _hand_bins(), rtol=1e-5)
  # The outermost bins: +-(e^20 - 1) = +-4.85e8; the ones next to 0: +-(e^(20/127) - 1) = +-0.17056.
  assert abs(bins[-1] - 4.8516519e8) < 1e3 and abs(bins[128] - 0.170558) < 1e-6


def test_twohot_bins_are_exactly_symmetric_about_zero():
  """The centre bin must be exactly 0 and bin k exactly -bin(254 - k), or the
  symmetric sum in twohot_mean cannot give exactly 0."""
  bins = np.asarray(dists.twohot_bins(255))
  assert bins[127] == 0.0, bins[127]
  np.testing.assert_array_equal(bins, -bins[::-1])
  # An even count, as the reference builds it: two centre bins, -0 and +0.
  even = np.asarray(dists.twohot_bins(6))
  y = np.array([-20.0, -10.0, 0.0])
  np.testing.assert_allclose(even, np.concatenate([-np.expm1(-y), np.expm1(-y[::-1])]),
                             rtol=1e-6)
  np.testing.assert_array_equal(even, -even[::-1])


# --- two-hot head -------------------------------------------------------------------

@pytest.mark.parametrize("count", [255, 256])
def test_twohot_mean_of_uniform_logits_is_exactly_zero(count):
  """A zero-initialised head must predict 0.0 bit-exactly, not a rounding residue."""
  bins = dists.twohot_bins(count)
  out = np.asarray(dists.twohot_mean(jnp.zeros((4, 3, count)), bins))
  assert out.shape == (4, 3)
  assert (out == 0.0).all(), out


@pytest.mark.parametrize("index", [0, 40, 127, 128, 200, 254])
def test_twohot_mean_with_all_mass_on_one_bin(index):
  bins = dists.twohot_bins(255)
  logits = jnp.where(jnp.arange(255) == index, 1e4, 0.0)
  np.testing.assert_allclose(dists.twohot_mean(logits, bins), _hand_bins()[index], rtol=2e-5,
                             atol=1e-6)


def test_twohot_mean_averages_raw_values():
  # A reward of 2 with probability 0.1, else 0: the mean is 0.2. (Averaging in
  # symlog space and applying symexp, the 2023 head's way, gives
  # expm1(0.1 * log 3) = 0.116.) Bins [0, 2] put the probabilities on the values.
  bins = jnp.array([-2.0, 0.0, 2.0])
  logits = jnp.log(jnp.array([1e-30, 0.9, 0.1]))
  np.testing.assert_allclose(dists.twohot_mean(logits, bins), 0.2, rtol=1e-6)
  # Half the mass on bins 1 and 2 of [-1, 0, 1, 2]: E = 0.5.
  logits = jnp.array([-1e4, 0.0, 0.0, -1e4])
  np.testing.assert_allclose(dists.twohot_mean(logits, SMALL_BINS), 0.5, rtol=1e-6)


def test_twohot_loss_is_hand_cross_entropy():
  logits = [0.1, 0.2, -0.3, 0.4]
  lse = math.log(sum(math.exp(v) for v in logits))
  logp = [v - lse for v in logits]
  # 0.25 in raw space -> 0.75 on bin 1 (0.0), 0.25 on bin 2 (1.0).
  expected = -(0.75 * logp[1] + 0.25 * logp[2])
  out = dists.twohot_loss(jnp.array(logits), jnp.array(0.25), SMALL_BINS)
  np.testing.assert_allclose(out, expected, rtol=1e-6)
  # A huge target clips to the top bin: the loss is -log p[3].
  out = dists.twohot_loss(jnp.array(logits), jnp.array(1e6), SMALL_BINS)
  np.testing.assert_allclose(out, -logp[3], rtol=1e-6)


def test_twohot_loss_of_a_reward_between_symexp_bins():
  # Reward 0.1 on the 255 bins: between bin 127 (0) and bin 128 (e^(20/127) - 1 = 0.170558),
  # so weight 0.1 / 0.170558 = 0.58631 on bin 128 and 0.41369 on bin 127.
  bins = dists.twohot_bins(255)
  upper = math.expm1(20 / 127)
  weights = np.asarray(dists.twohot(jnp.array(0.1), bins))
  np.testing.assert_allclose(weights[127:129], [1 - 0.1 / upper, 0.1 / upper], rtol=1e-5)
  assert weights.sum() - weights[127:129].sum() == 0.0


def test_twohot_loss_has_no_gradient_through_target():
  bins = dists.twohot_bins(255)
  grad = jax.grad(lambda t: dists.twohot_loss(jnp.zeros(255), t, bins))(jnp.array(3.0))
  assert float(grad) == 0.0


# --- unimix categoricals -----------------------------------------------------------

def test_unimix_logits_mixes_one_percent_uniform():
  # softmax(log p) = p = [0.1, 0.2, 0.3, 0.4]; 0.99 p + 0.01 / 4 = 0.99 p + 0.0025.
  logits = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
  probs = jnp.exp(dists.unimix_logits(logits, 0.01))
  np.testing.assert_allclose(probs, [0.1015, 0.2005, 0.2995, 0.3985], rtol=1e-5)
  np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-6)


def test_unimix_logits_keeps_every_class_possible():
  # A class with softmax probability ~0 still gets 0.01 / 4.
  logits = jnp.array([1e4, 0.0, -1e4, 0.0])
  probs = jnp.exp(dists.unimix_logits(logits, 0.01))
  np.testing.assert_allclose(probs, [0.9925, 0.0025, 0.0025, 0.0025], rtol=1e-5)


def test_unimix_zero_is_plain_softmax():
  # softmax([1, 2, 3, 4]) = e^k / (e + e^2 + e^3 + e^4).
  z = sum(math.exp(k) for k in (1, 2, 3, 4))
  expected = [math.exp(k) / z for k in (1, 2, 3, 4)]
  logp = dists.unimix_logits(jnp.array([1.0, 2.0, 3.0, 4.0]), 0.0)
  np.testing.assert_allclose(jnp.exp(logp), expected, rtol=1e-6)
  np.testing.assert_allclose(logp, np.log(expected), rtol=1e-6)


# --- categorical KL, entropy, log-probability -----------------------------------------

def np_kl_loop(logits_p, logits_q):
  """KL(p || q) = sum_k p_k (log p_k - log q_k), one row at a time."""
  out = np.zeros(logits_p.shape[:-1])
  for idx in np.ndindex(*logits_p.shape[:-1]):
    p, q = np_softmax(logits_p[idx]), np_softmax(logits_q[idx])
    out[idx] = sum(p[k] * (math.log(p[k]) - math.log(q[k])) for k in range(len(p)))
  return out


def test_categorical_kl_matches_numpy_loop():
  rng = np.random.default_rng(0)
  lp, lq = rng.normal(size=(2, 3, 5)) * 2, rng.normal(size=(2, 3, 5)) * 2
  out = dists.categorical_kl(jnp.asarray(lp, jnp.float32), jnp.asarray(lq, jnp.float32))
  assert out.shape == (2, 3)
  np.testing.assert_allclose(out, np_kl_loop(lp, lq), rtol=1e-4, atol=1e-6)
  assert (np.asarray(out) > 0).all()


def test_categorical_kl_hand_value_and_asymmetry():
  # p = [1/2, 1/2], q = [1/4, 3/4]:
  # KL(p||q) = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3);
  # KL(q||p) = 1/4 ln(1/2) + 3/4 ln(3/2).
  p, q = jnp.log(jnp.array([0.5, 0.5])), jnp.log(jnp.array([0.25, 0.75]))
  np.testing.assert_allclose(dists.categorical_kl(p, q), 0.5 * math.log(4 / 3), rtol=1e-5)
  np.testing.assert_allclose(dists.categorical_kl(q, p),
                             0.25 * math.log(0.5) + 0.75 * math.log(1.5), rtol=1e-5)


def test_categorical_kl_is_zero_for_equal_inputs():
  logits = jax.random.normal(jax.random.PRNGKey(1), (4, 6)) * 3
  np.testing.assert_allclose(dists.categorical_kl(logits, logits), 0.0, atol=1e-6)
  # Logits that differ by a constant are the same distribution.
  np.testing.assert_allclose(dists.categorical_kl(logits, logits + 5.0), 0.0, atol=1e-5)


def test_categorical_entropy_and_logp_hand_values():
  # Uniform over 4: entropy log 4. p = [0.1, 0.2, 0.3, 0.4]: H = -sum p ln p.
  np.testing.assert_allclose(dists.categorical_entropy(jnp.zeros(4)), math.log(4), rtol=1e-6)
  p = [0.1, 0.2, 0.3, 0.4]
  logits = jnp.log(jnp.array(p))
  np.testing.assert_allclose(dists.categorical_entropy(logits),
                             -sum(v * math.log(v) for v in p), rtol=1e-5)
  np.testing.assert_allclose(dists.categorical_logp(logits, jnp.array([0.0, 0.0, 1.0, 0.0])),
                             math.log(0.3), rtol=1e-5)


# --- one-hot samples --------------------------------------------------------------

def test_onehot_sample_st_value_is_one_hot():
  logits = jax.random.normal(jax.random.PRNGKey(2), (8, 5))
  sample = np.asarray(dists.onehot_sample_st(jax.random.PRNGKey(3), logits))
  assert sample.shape == (8, 5)
  # Exactly 0 and 1: the straight-through term p - sg(p) must add exactly 0.
  assert set(np.unique(sample)) <= {0.0, 1.0}
  np.testing.assert_array_equal(sample.sum(-1), 1.0)


def test_onehot_sample_st_frequencies_follow_probs():
  logits = jnp.log(jnp.array([0.1, 0.2, 0.7]))
  keys = jax.random.split(jax.random.PRNGKey(4), 4000)
  samples = jax.vmap(lambda k: dists.onehot_sample_st(k, logits))(keys)
  # Standard error of a frequency over 4000 draws is at most 0.008.
  np.testing.assert_allclose(samples.mean(0), [0.1, 0.2, 0.7], atol=0.03)


def test_categorical_sample_frequencies_follow_probs_over_many_classes():
  probs = jnp.array([0.05, 0.0, 0.3, 0.15, 0.0, 0.4, 0.1])
  draws = np.asarray(dists.categorical_sample(jax.random.PRNGKey(6), jnp.broadcast_to(probs, (20000, 7))))
  counts = np.bincount(draws, minlength=7)
  assert counts[1] == counts[4] == 0  # classes of probability 0 never come up
  expected = 20000 * np.asarray(probs)
  seen = expected > 0
  # Chi-square with 4 degrees of freedom: 18.5 is its 0.999 quantile.
  assert ((counts[seen] - expected[seen]) ** 2 / expected[seen]).sum() < 18.5


def test_categorical_sample_stays_in_range_when_probs_sum_below_one():
  # A CDF that rounds to less than 1 must not let a draw run past the last class,
  # nor onto a last class of probability 0.
  probs = jnp.array([[0.3, 0.3, 0.3, 0.0]])  # sums to 0.9: a tenth of unscaled draws would overrun
  draws = dists.categorical_sample(jax.random.PRNGKey(7), jnp.broadcast_to(probs, (5000, 4)))
  assert int(draws.max()) == 2 and int(draws.min()) == 0


def test_onehot_sample_st_gradient_is_softmax_gradient():
  # d/dlogit_i sum_k p_k w_k = p_i (w_i - sum_k p_k w_k).
  logits = np.array([0.3, -1.0, 0.8, 0.1])
  w = np.array([1.0, -2.0, 0.5, 3.0])
  p = np_softmax(logits)
  expected = p * (w - (p * w).sum())
  grad = jax.grad(lambda l: (dists.onehot_sample_st(jax.random.PRNGKey(5), l) * w).sum())(
      jnp.asarray(logits, jnp.float32))
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_onehot_mode_is_argmax():
  logits = jnp.array([[0.1, 2.0, -1.0], [5.0, 0.0, 4.9]])
  np.testing.assert_array_equal(dists.onehot_mode(logits), [[0, 1, 0], [1, 0, 0]])


# --- normal ------------------------------------------------------------------------

def test_normal_logp_hand_formula():
  # log N(x; m, s) = log(1 / (s sqrt(2 pi)) exp(-(x - m)^2 / (2 s^2))), summed over dims.
  mean, std, x = [0.5, -0.2], [0.3, 1.5], [0.1, 0.4]
  expected = sum(math.log(math.exp(-(xi - m) ** 2 / (2 * s * s)) / (s * math.sqrt(2 * math.pi)))
                 for m, s, xi in zip(mean, std, x))
  out = dists.normal_logp(jnp.array(mean), jnp.array(std), jnp.array(x))
  np.testing.assert_allclose(out, expected, rtol=1e-5)
  # Standard normal at its mean: -log sqrt(2 pi) = -0.9189385.
  np.testing.assert_allclose(dists.normal_logp(jnp.zeros(1), jnp.ones(1), jnp.zeros(1)),
                             -0.9189385, rtol=1e-6)


def test_normal_entropy_hand_formula():
  # H = 1/2 log(2 pi e s^2) per dim: s = 1 -> 1.4189385; s = 2 adds log 2.
  np.testing.assert_allclose(dists.normal_entropy(jnp.ones(1)), 1.4189385, rtol=1e-6)
  np.testing.assert_allclose(dists.normal_entropy(jnp.array([1.0, 2.0])),
                             2 * 1.4189385 + math.log(2), rtol=1e-6)
  np.testing.assert_allclose(dists.normal_entropy(jnp.array([[0.5], [3.0]])),
                             [0.5 * math.log(2 * math.pi * math.e * 0.25),
                              0.5 * math.log(2 * math.pi * math.e * 9.0)], rtol=1e-6)


def test_bounded_normal_params_ranges():
  raw = jnp.array([-1e3, -3.0, -0.5, 0.0, 0.5, 3.0, 1e3])
  mean, std = dists.bounded_normal_params(raw, raw, 0.1, 1.0)
  mean, std = np.asarray(mean), np.asarray(std)
  assert (mean >= -1).all() and (mean <= 1).all()
  assert (std >= 0.1).all() and (std <= 1.0).all()
  np.testing.assert_allclose(mean[[0, -1]], [-1, 1])
  np.testing.assert_allclose(std[[0, -1]], [0.1, 1.0], rtol=1e-6)
  np.testing.assert_allclose(mean[4], math.tanh(0.5), rtol=1e-6)
  # std at raw 0: (max - min) sigmoid(2) + min = 0.9 / (1 + e^-2) + 0.1 = 0.8927174.
  assert mean[3] == 0.0
  np.testing.assert_allclose(std[3], 0.9 / (1 + math.exp(-2)) + 0.1, rtol=1e-6)
  np.testing.assert_allclose(std[3], 0.8927174, rtol=1e-6)
  assert (np.diff(std) > 0).sum() >= 5  # increasing in the raw value


def test_bounded_normal_params_other_std_range():
  _, std = dists.bounded_normal_params(jnp.zeros(1), jnp.zeros(1), 0.5, 2.0)
  np.testing.assert_allclose(std, 1.5 / (1 + math.exp(-2)) + 0.5, rtol=1e-6)


# --- binary ------------------------------------------------------------------------

def test_binary_loss_hand_bce_with_soft_targets():
  logits, target = [0.0, 2.0, -3.0, 1.5], [0.5, 1.0, 0.3, 0.0]
  sig = lambda v: 1 / (1 + math.exp(-v))
  expected = [-(t * math.log(sig(l)) + (1 - t) * math.log(1 - sig(l)))
              for l, t in zip(logits, target)]
  # First entry by hand: ln 2 = 0.6931472.
  np.testing.assert_allclose(expected[0], 0.6931472, rtol=1e-6)
  out = dists.binary_loss(jnp.array(logits), jnp.array(target))
  np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_binary_loss_is_stable_for_large_logits():
  # -log sigmoid(-100) = 100 + log(1 + e^-100) ~= 100; confident and right ~= 0.
  out = np.asarray(dists.binary_loss(jnp.array([-100.0, 100.0]), jnp.array([1.0, 1.0])))
  assert np.isfinite(out).all()
  np.testing.assert_allclose(out, [100.0, 0.0], atol=1e-5)
