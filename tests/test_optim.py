"""Tests for wmrl/optim.py: the reference optimiser's parts, each on hand values."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from wmrl.algorithms.dreamerv3.config import OptimConfig
from wmrl.optim import clip_by_agc, learning_rate, make_optimizer, scale_by_momentum, scale_by_rms


def apply(tx, updates, params):
  return tx.update(updates, tx.init(params), params)[0]


# --- adaptive gradient clipping ----------------------------------------------------------

def test_agc_scales_large_update_to_clip_times_param_norm():
  # |param| = |[1, 1, 1, 1]| = 2; the update [10, 10, 10, 10] has norm 20 = 10x, so it is
  # scaled to norm .3 * 2 = .6: every entry .6 / sqrt(4) = .3.
  params = {"w": jnp.ones(4)}
  out = apply(clip_by_agc(0.3), {"w": jnp.full(4, 10.0)}, params)
  np.testing.assert_allclose(out["w"], [0.3] * 4, rtol=1e-6)
  np.testing.assert_allclose(jnp.linalg.norm(out["w"]), 0.6, rtol=1e-6)


def test_agc_leaves_small_update_unchanged():
  # Norm of [.1, -.2, .2] is .3 < .3 * |[3, 4]| = 1.5.
  params = {"w": jnp.array([3.0, 4.0, 0.0])}
  update = {"w": jnp.array([0.1, -0.2, 0.2])}
  np.testing.assert_array_equal(apply(clip_by_agc(0.3), update, params)["w"], update["w"])


def test_agc_acts_per_tensor():
  # Tensor "a" (a matrix, Frobenius norm 2) gets clipped; tensor "b" in the same
  # tree is left alone, although the tree's global norm is large.
  params = {"a": jnp.ones((2, 2)), "b": jnp.array([3.0, 4.0])}
  updates = {"a": jnp.full((2, 2), 10.0), "b": jnp.array([0.3, 0.4])}
  out = apply(clip_by_agc(0.3), updates, params)
  np.testing.assert_allclose(out["a"], np.full((2, 2), 0.3), rtol=1e-6)  # norm .6
  np.testing.assert_array_equal(out["b"], updates["b"])


def test_agc_clips_a_block_linear_kernel_and_its_shared_part_as_one_tensor():
  # The reference's block kernel is one tensor; wmrl keeps it as kernel + shared_kernel.
  # Together: |param| = |[3, 0, 0, 4]| = 5, limit .3 * 5 = 1.5; |update| = |[6, 0, 0, 1]| =
  # sqrt(37) = 6.083, so both parts scale by 1.5 / sqrt(37) = 0.24660. (Apart, the kernel
  # would scale to .3 * 3 = .9 and the shared part, under its limit 1.2, not at all.)
  params = {"gru": {"kernel": jnp.array([3.0, 0.0]), "shared_kernel": jnp.array([0.0, 4.0]),
                    "bias": jnp.array([1.0, 0.0])}}
  updates = {"gru": {"kernel": jnp.array([6.0, 0.0]), "shared_kernel": jnp.array([0.0, 1.0]),
                     "bias": jnp.array([0.1, 0.0])}}
  out = apply(clip_by_agc(0.3), updates, params)["gru"]
  factor = 1.5 / math.sqrt(37)
  np.testing.assert_allclose(out["kernel"], [6.0 * factor, 0.0], rtol=1e-6)
  np.testing.assert_allclose(out["shared_kernel"], [0.0, factor], rtol=1e-6)
  np.testing.assert_array_equal(out["bias"], updates["gru"]["bias"])  # its own tensor, small


def test_agc_floor_for_zero_params():
  # Zero params: the norm floor 1e-3 allows updates up to .3 * 1e-3 = 3e-4.
  params = {"w": jnp.zeros(3)}
  out = apply(clip_by_agc(0.3), {"w": jnp.array([0.0, 3.0, 4.0])}, params)  # norm 5
  np.testing.assert_allclose(out["w"], [0.0, 3e-4 * 0.6, 3e-4 * 0.8], rtol=1e-5)
  small = {"w": jnp.array([1e-4, 0.0, 0.0])}
  np.testing.assert_array_equal(apply(clip_by_agc(0.3), small, params)["w"], small["w"])


def test_agc_needs_params():
  tx = clip_by_agc(0.3)
  with pytest.raises(ValueError, match="parameters"):
    tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))


# --- RMS scaling and momentum -------------------------------------------------------------

def test_scale_by_rms_first_step_is_sign():
  # Step 1: nu = (1 - b) u^2, bias-corrected nu / (1 - b) = u^2, so u / (|u| + eps) = sign(u).
  u = jnp.array([3.0, -0.5, 2e-3, -1e4, 0.0])
  out = apply(scale_by_rms(0.999, 1e-20), u, jnp.zeros(5))
  np.testing.assert_allclose(out, [1.0, -1.0, 1.0, -1.0, 0.0], rtol=1e-5, atol=0)


def test_scale_by_rms_second_step_by_hand():
  # u1 = 2, u2 = 1, b = .999: nu1 = .001 * 4 = .004; nu2 = .999 * .004 + .001 * 1 = .004996;
  # nu2 / (1 - .999^2) = .004996 / .001999 = 2.49925; 1 / sqrt(2.49925) = .632550.
  tx = scale_by_rms(0.999, 1e-20)
  params = jnp.zeros(1)
  state = tx.init(params)
  _, state = tx.update(jnp.array([2.0]), state, params)
  out, _ = tx.update(jnp.array([1.0]), state, params)
  expected = 1.0 / math.sqrt((0.999 * 0.004 + 0.001) / (1 - 0.999 ** 2))
  np.testing.assert_allclose(expected, 0.632550, rtol=1e-5)
  np.testing.assert_allclose(out, [expected], rtol=1e-4)


def test_scale_by_momentum_first_step_is_the_update():
  # Step 1: mu = (1 - b) u, bias-corrected mu / (1 - b) = u.
  u = {"a": jnp.array([0.3, -2.0]), "b": jnp.array([[5.0]])}
  out = apply(scale_by_momentum(0.9), u, jax.tree.map(jnp.zeros_like, u))
  np.testing.assert_allclose(out["a"], u["a"], rtol=1e-6)
  np.testing.assert_allclose(out["b"], u["b"], rtol=1e-6)


def test_scale_by_momentum_second_step_by_hand():
  # u1 = 1, u2 = 3: mu2 = .9 * .1 * 1 + .1 * 3 = .39; / (1 - .81) = .39 / .19 = 2.0526316.
  tx = scale_by_momentum(0.9)
  params = jnp.zeros(1)
  state = tx.init(params)
  _, state = tx.update(jnp.array([1.0]), state, params)
  out, _ = tx.update(jnp.array([3.0]), state, params)
  np.testing.assert_allclose(out, [0.39 / 0.19], rtol=1e-5)


# --- the full optimiser ----------------------------------------------------------------

def test_learning_rate_warmup_schedule():
  schedule = learning_rate(OptimConfig(lr=4e-5, warmup=10))
  for step, expected in [(0, 0.0), (1, 4e-6), (5, 2e-5), (10, 4e-5), (50, 4e-5)]:
    np.testing.assert_allclose(schedule(step), expected, rtol=1e-6, atol=0)
  assert float(learning_rate(OptimConfig(lr=1e-3, warmup=0))(0)) == pytest.approx(1e-3)


def test_make_optimizer_warmup_first_update_zero_then_linear():
  """With a constant gradient, RMS scaling and momentum both give sign(g) every step
  (bias-corrected EMAs of a constant equal the constant), so update k is
  -lr * min(k / warmup, 1) * sign(g)."""
  config = OptimConfig(warmup=10)  # lr 4e-5
  tx = make_optimizer(config)
  params = {"w": jnp.array([1.0, -2.0])}
  grads = {"w": jnp.array([0.1, -0.05])}
  state = tx.init(params)
  for k in range(13):
    updates, state = tx.update(grads, state, params)
    if k == 0:
      assert (np.asarray(updates["w"]) == 0.0).all(), updates
    expected = -4e-5 * min(k / 10, 1.0) * np.array([1.0, -1.0])
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-4, atol=1e-12)


def test_make_optimizer_step5_is_half_lr():
  tx = make_optimizer(OptimConfig(warmup=10))
  params = {"w": jnp.array([1.0])}
  state = tx.init(params)
  for _ in range(6):
    updates, state = tx.update({"w": jnp.array([0.2])}, state, params)
  np.testing.assert_allclose(updates["w"], [-2e-5], rtol=1e-4)


def test_make_optimizer_without_agc_is_identity_clip():
  # agc = 0 turns clipping off: the chain works without params.
  tx = make_optimizer(OptimConfig(agc=0.0, warmup=0, lr=1.0))
  params = jnp.zeros(2)
  updates, _ = tx.update(jnp.array([2.0, -3.0]), tx.init(params))
  np.testing.assert_allclose(updates, [-1.0, 1.0], rtol=1e-5)


def test_actor_and_critic_learning_rates_scale_their_updates_only():
  # First update of the normalised chain is -lr * sign(g) (no AGC): each part
  # moves by its own rate, on the shared warmup schedule.
  tx = make_optimizer(OptimConfig(agc=0.0, warmup=0, lr=1e-3, actor_lr=1e-4, critic_lr=5e-4))
  params = {name: {"w": jnp.ones(2)} for name in ("wm", "actor", "critic")}
  grads = {name: {"w": jnp.array([0.5, -2.0])} for name in params}
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["wm"]["w"], [-1e-3, 1e-3], rtol=1e-5)
  np.testing.assert_allclose(updates["actor"]["w"], [-1e-4, 1e-4], rtol=1e-5)
  np.testing.assert_allclose(updates["critic"]["w"], [-5e-4, 5e-4], rtol=1e-5)


def test_part_learning_rates_unset_leave_the_chain_as_one_rate():
  plain = make_optimizer(OptimConfig(warmup=0, lr=1e-3))
  params = {"actor": {"w": jnp.ones(3)}}
  grads = {"actor": {"w": jnp.array([1.0, -1.0, 0.1])}}
  updates, _ = plain.update(grads, plain.init(params), params)
  np.testing.assert_allclose(updates["actor"]["w"], [-1e-3, 1e-3, -1e-3], rtol=1e-5)


def test_part_learning_rates_keep_the_optimizer_state_layout():
  # Checkpoints restore into this layout: setting actor_lr must not change it.
  params = {name: {"w": jnp.ones(2)} for name in ("wm", "actor", "critic")}
  plain = make_optimizer(OptimConfig()).init(params)
  split = make_optimizer(OptimConfig(actor_lr=1e-5, critic_lr=2e-5)).init(params)
  assert jax.tree.structure(plain) == jax.tree.structure(split)


@pytest.mark.parametrize("field", ["lr", "actor_lr", "critic_lr"])
def test_negative_learning_rate_is_refused_naming_the_field(field):
  with pytest.raises(ValueError, match=f"optim.{field}"):
    make_optimizer(OptimConfig(**{field: -1e-4}))


def test_make_optimizer_minimises_quadratic():
  """Loss 0.5 |A w - b|^2, whose minimum is 0 at w* = A^-1 b."""
  a = jnp.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.1, 0.0, 3.0]])
  b = jnp.array([1.0, -2.0, 0.5])
  loss = lambda p: 0.5 * jnp.sum((a @ p["w"] - b) ** 2)
  tx = make_optimizer(OptimConfig(lr=1e-2, warmup=0))
  params = {"w": jnp.array([1.0, 1.0, -1.0])}

  @jax.jit
  def train(params):
    def step(carry, _):
      params, state = carry
      updates, state = tx.update(jax.grad(loss)(params), state, params)
      return (optax.apply_updates(params, updates), state), loss(params)
    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), None, length=400)
    return params, losses

  final, losses = train(params)
  start, end = float(losses[0]), float(loss(final))
  assert start > 1.0
  assert end < 0.1 * start, (start, end)
