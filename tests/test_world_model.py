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


# ---------------------------------------------------------------- small images through the MLP

def _encoder_decoder(obs_spec, **overrides):
  from flax import nnx
  from wmrl.algorithms.dreamerv3.world_model import Decoder, Encoder
  from wmrl.testing import tiny_config
  model = tiny_config(**overrides).model  # TINY: CNNs of two stages (mults 1, 2)
  rngs = nnx.Rngs(0)
  return (Encoder(obs_spec, model, rngs=rngs, dtype=jnp.float32),
          Decoder(obs_spec, (32, 16), model, rngs=rngs, dtype=jnp.float32))


def test_images_smaller_than_the_cnn_takes_go_through_the_mlp():
  from wmrl.spaces import ArraySpec
  spec = {"grid": ArraySpec((3, 3, 3), "uint8"), "view": ArraySpec((8, 8, 1), "uint8"),
          "pos": ArraySpec((2,), "float32")}
  encoder, decoder = _encoder_decoder(spec)
  # Two stages take sides of 4 and more: the 3x3 grid joins the vectors, flattened.
  assert (encoder.images, encoder.vectors) == (["view"], ["grid", "pos"])
  assert encoder.mlp.layers[0].linear.kernel.shape[0] == 27 + 2
  assert (decoder.images, decoder.vectors, decoder.sizes) == (["view"], ["grid", "pos"], [27, 2])
  feat = jnp.zeros((5, 48))
  pred = decoder(feat)
  assert pred["grid"].shape == (5, 3, 3, 3) and pred["view"].shape == (5, 8, 8, 1)
  assert encoder({"grid": jnp.zeros((5, 3, 3, 3), jnp.uint8), "view": jnp.zeros((5, 8, 8, 1), jnp.uint8),
                  "pos": jnp.zeros((5, 2))}).shape == (5, encoder.out_dim)
  # The grid's target is its pixels in [0, 1], as an image's; the vector's is symlog.
  obs = {"grid": jnp.full((5, 3, 3, 3), 51, jnp.uint8), "view": jnp.zeros((5, 8, 8, 1), jnp.uint8),
         "pos": jnp.full((5, 2), 3.0)}
  expected = (((np.asarray(pred["grid"]) - 0.2) ** 2).sum((1, 2, 3))
              + ((np.asarray(pred["pos"]) - np.log(4.0)) ** 2).sum(-1)
              + (np.asarray(pred["view"]) ** 2).sum((1, 2, 3)))
  np.testing.assert_allclose(decoder.loss(feat, obs), expected, rtol=1e-5)


def test_without_cnn_stages_every_image_goes_through_the_mlp():
  from wmrl.spaces import ArraySpec
  spec = {"view": ArraySpec((8, 8, 1), "uint8")}
  encoder, decoder = _encoder_decoder(spec, **{"model.encoder.mults": (),
                                               "model.decoder.mults": ()})
  assert encoder.cnn is None and encoder.vectors == ["view"]
  assert decoder.cnn is None and decoder(jnp.zeros((2, 48)))["view"].shape == (2, 8, 8, 1)


def test_an_image_the_cnn_cannot_halve_evenly_is_refused_with_the_setting_named():
  from wmrl.spaces import ArraySpec
  with pytest.raises(ValueError, match=r"image size 6x6 must be divisible by 2\^2 .*"
                     "model.encoder.mults.*side under 2\\^2 go through the MLP"):
    _encoder_decoder({"view": ArraySpec((6, 6, 1), "uint8")})
