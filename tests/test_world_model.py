"""World-model pieces checked against hand-computed values."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wmrl.dynamics.latents import kl_losses

# Two latents with two classes: the first posterior is sure-ish, the second uniform.
POST = jnp.log(jnp.array([[0.9, 0.1], [0.5, 0.5]]))
PRIOR = jnp.log(jnp.array([[0.5, 0.5], [0.5, 0.5]]))
# KL(post || prior) = 0.9 ln(0.9/0.5) + 0.1 ln(0.1/0.5) + 0 (second latent)
KL = 0.9 * math.log(1.8) + 0.1 * math.log(0.2)  # 0.368064...


def test_kl_is_summed_over_latents():
  _, _, kl = kl_losses(POST, PRIOR, free_nats=0.0)
  assert float(kl) == pytest.approx(KL, rel=1e-5)
  assert KL == pytest.approx(0.368064, abs=1e-6)


def test_free_nats_clip_the_losses_and_their_gradients():
  dyn, rep, kl = kl_losses(POST, PRIOR, free_nats=1.0)
  assert float(dyn) == float(rep) == 1.0 and float(kl) == pytest.approx(KL, rel=1e-5)
  grads = jax.grad(lambda p, q: sum(kl_losses(p, q, 1.0)[:2]), argnums=(0, 1))(POST, PRIOR)
  assert all(float(jnp.abs(g).sum()) == 0.0 for g in grads)


def test_above_free_nats_dyn_trains_prior_and_rep_trains_posterior():
  dyn, rep, _ = kl_losses(POST, PRIOR, free_nats=0.1)
  assert float(dyn) == pytest.approx(KL, rel=1e-5) and float(rep) == pytest.approx(KL, rel=1e-5)
  d_post, d_prior = jax.grad(lambda p, q: kl_losses(p, q, 0.1)[0], argnums=(0, 1))(POST, PRIOR)
  assert float(jnp.abs(d_post).sum()) == 0.0 and float(jnp.abs(d_prior).sum()) > 0.0
  r_post, r_prior = jax.grad(lambda p, q: kl_losses(p, q, 0.1)[1], argnums=(0, 1))(POST, PRIOR)
  assert float(jnp.abs(r_post).sum()) > 0.0 and float(jnp.abs(r_prior).sum()) == 0.0
  # d KL / d prior logits = softmax(prior) - post probs, for the first latent [0.5-0.9, 0.5-0.1].
  np.testing.assert_allclose(np.asarray(d_prior[0]), [-0.4, 0.4], atol=1e-6)
