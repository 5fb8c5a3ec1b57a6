"""The RSSM: its block-GRU step against a NumPy computation of the formula, and its sequences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from wmrl.dynamics.config import RSSMConfig
from wmrl.nets import BlockLinear, from_blocks, to_blocks
from wmrl.dynamics.rssm import RSSM, Latent


def block_diagonal(kernel):
  """[g, i, o] -> the dense [g*i, g*o] matrix the blocks stand for."""
  g, i, o = kernel.shape
  dense = np.zeros((g * i, g * o))
  for b in range(g):
    dense[b * i:(b + 1) * i, b * o:(b + 1) * o] = kernel[b]
  return dense


def full_kernel(layer):
  """A block layer's kernel [g, own + shared, o]: each block's own weights
  followed by its columns of the dense shared-input matrix."""
  kernel = np.asarray(layer.kernel[...])
  if layer.shared_kernel is None:
    return kernel
  g, _, o = kernel.shape
  shared = np.asarray(layer.shared_kernel[...])
  return np.concatenate([kernel, np.stack([shared[:, b * o:(b + 1) * o] for b in range(g)])], 1)


def silu(x):
  return x / (1 + np.exp(-x))


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def rms_norm(x, scale, eps):
  return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * scale


def dense(layer, x):
  """Linear -> RMS norm -> SiLU in NumPy."""
  y = x @ np.asarray(layer.linear.kernel[...]) + np.asarray(layer.linear.bias[...])
  return silu(rms_norm(y, np.asarray(layer.norm.scale[...]), layer.norm.eps))


def numpy_core(rssm, deter, stoch, action):
  """The reference's block GRU, written flat: every block's inputs are its
  slice of deter followed by the shared inputs, then a block-diagonal layer."""
  g = rssm.config.blocks
  action = action / np.maximum(1.0, np.abs(action))
  shared = np.concatenate([dense(rssm.in_deter, deter), dense(rssm.in_stoch, stoch.reshape(len(stoch), -1)),
                           dense(rssm.in_action, action)], -1)
  x = np.concatenate([np.concatenate([d, shared], -1) for d in np.split(deter, g, -1)], -1)
  for layer, norm in zip(rssm.hidden_layers, rssm.hidden_norms):
    y = x @ block_diagonal(full_kernel(layer)) + np.asarray(layer.bias[...])
    x = silu(rms_norm(y, np.asarray(norm.scale[...]), norm.eps))
  x = x @ block_diagonal(full_kernel(rssm.gru)) + np.asarray(rssm.gru.bias[...])
  # Each block's outputs are its reset, candidate and update parts, in that order.
  parts = [np.split(block, 3, -1) for block in np.split(x, g, -1)]
  reset, cand, update = [np.concatenate([p[i] for p in parts], -1) for i in range(3)]
  cand = np.tanh(sigmoid(reset) * cand)
  update = sigmoid(update - 1)
  return update * cand + (1 - update) * deter


def test_block_gru_step_matches_the_flat_formula():
  config = RSSMConfig(deter=24, hidden=8, stoch=3, classes=4, blocks=4, dyn_layers=2)
  rssm = RSSM(config, embed_dim=5, action_dim=2, rngs=nnx.Rngs(0))
  # Non-zero biases and norm scales, so a mix-up of their block layout shows.
  for module in (rssm.hidden_layers[0], rssm.hidden_layers[1], rssm.gru):
    module.bias[...] = jax.random.normal(jax.random.key(1), module.bias.shape)
  for norm in rssm.hidden_norms:
    norm.scale[...] = jax.random.uniform(jax.random.key(2), norm.scale.shape, minval=0.5, maxval=1.5)
  rng = np.random.default_rng(0)
  deter = rng.normal(size=(5, 24)).astype(np.float32)
  stoch = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (5, 3))]
  action = rng.normal(scale=2.0, size=(5, 2)).astype(np.float32)
  got = rssm.core(Latent(jnp.asarray(deter), jnp.asarray(stoch)), jnp.asarray(action))
  want = numpy_core(rssm, deter.astype(np.float64), stoch, action.astype(np.float64))
  assert got.shape == (5, 24)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dyn_layers", [0, 1])
def test_shared_inputs_go_to_the_first_block_layer(dyn_layers):
  config = RSSMConfig(deter=8, hidden=4, stoch=2, classes=3, blocks=2, dyn_layers=dyn_layers)
  rssm = RSSM(config, embed_dim=3, action_dim=1, rngs=nnx.Rngs(0))
  first = rssm.hidden_layers[0] if dyn_layers else rssm.gru
  assert first.shared_kernel[...].shape == (3 * 4, first.bias.shape[0])
  assert rssm.gru.shared_kernel is None or not dyn_layers
  rng = np.random.default_rng(1)
  deter = rng.normal(size=(3, 8)).astype(np.float32)
  stoch = np.eye(3, dtype=np.float32)[rng.integers(0, 3, (3, 2))]
  action = rng.normal(size=(3, 1)).astype(np.float32)
  got = rssm.core(Latent(jnp.asarray(deter), jnp.asarray(stoch)), jnp.asarray(action))
  want = numpy_core(rssm, deter.astype(np.float64), stoch, action.astype(np.float64))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)


def test_block_linear_keeps_extra_batch_axes_and_refuses_uneven_blocks():
  layer = BlockLinear(6, 4, 2, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (3, 5, 6))
  y = from_blocks(layer(to_blocks(x, 2)))
  want = np.asarray(x) @ block_diagonal(np.asarray(layer.kernel[...]))
  assert y.shape == (3, 5, 4)
  np.testing.assert_allclose(np.asarray(y), want, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="divide into 2 blocks"):
    BlockLinear(6, 5, 2, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="shared inputs"):
    layer(to_blocks(x, 2), shared=x)


def test_observe_resets_at_is_first_mid_sequence():
  """From an `is_first` step on, observe gives the same latents whatever came
  before it (other observations, actions and start state): the reset erases the past."""
  config = RSSMConfig(deter=16, hidden=8, stoch=3, classes=4, blocks=2)
  rssm = RSSM(config, embed_dim=5, action_dim=2, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  batch, length, reset = 2, 6, 3
  embeds = rng.normal(size=(batch, length, 5)).astype(np.float32)
  actions = rng.normal(size=(batch, length, 2)).astype(np.float32)
  is_first = np.zeros((batch, length), bool)
  is_first[:, reset] = True
  other_embeds, other_actions = embeds.copy(), actions.copy()
  other_embeds[:, :reset] = rng.normal(size=(batch, reset, 5))
  other_actions[:, :reset + 1] = rng.normal(size=(batch, reset + 1, 2))  # the action before the reset too
  start = rssm.initial((batch,))
  other_start = Latent(jnp.ones_like(start.deter), jnp.full_like(start.stoch, 0.25))
  key = jax.random.key(7)
  _, latents, losses, _ = rssm.observe(start, jnp.asarray(actions), jnp.asarray(embeds),
                                       jnp.asarray(is_first), key)
  _, other, other_losses, _ = rssm.observe(other_start, jnp.asarray(other_actions),
                                           jnp.asarray(other_embeds), jnp.asarray(is_first), key)
  for a, b in zip(latents, other):
    np.testing.assert_array_equal(np.asarray(a[:, reset:]), np.asarray(b[:, reset:]))
    assert not np.array_equal(np.asarray(a[:, :reset]), np.asarray(b[:, :reset]))
  for name in ("dyn", "rep"):
    assert losses[name].shape == (batch, length)
    np.testing.assert_array_equal(np.asarray(losses[name][:, reset:]),
                                  np.asarray(other_losses[name][:, reset:]))
  # At the reset step itself the deterministic state is that of a fresh start:
  # one core step from the initial latent and a zero action.
  fresh = rssm.core(rssm.initial((batch,)), jnp.zeros((batch, 2)))
  np.testing.assert_allclose(np.asarray(latents.deter[:, reset]), np.asarray(fresh), rtol=1e-6)


def test_imagine_takes_a_policy_or_an_action_sequence():
  config = RSSMConfig(deter=16, hidden=8, stoch=3, classes=4, blocks=2)
  rssm = RSSM(config, embed_dim=5, action_dim=2, rngs=nnx.Rngs(0))
  start = rssm.initial((3,))
  actions = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (3, 4, 2)), jnp.float32)
  given, taken = rssm.imagine(start, actions, None, jax.random.key(0))
  np.testing.assert_array_equal(np.asarray(taken), np.asarray(actions))
  # A policy that plays the first of those actions imagines the same first latent.
  policy_latents, _ = rssm.imagine(start, lambda latent, k: actions[:, 0], 1, jax.random.key(0))
  assert policy_latents.deter.shape == (3, 1, 16) and given.deter.shape == (3, 4, 16)
  np.testing.assert_allclose(np.asarray(policy_latents.deter[:, 0]), np.asarray(given.deter[:, 0]),
                             rtol=1e-6)
  with pytest.raises(ValueError, match="horizon"):
    rssm.imagine(start, actions, 3, jax.random.key(0))
  with pytest.raises(ValueError, match="needs a horizon"):
    rssm.imagine(start, lambda latent, k: actions[:, 0], None, jax.random.key(0))
  assert rssm.starts(given).deter.shape == (12, 16)
  assert rssm.features(given).shape == (3, 4, rssm.feat_dim)
