"""Initialisation and layouts of wmrl/nets.py against the reference's, worked out by hand.

The reference's "trunc_normal_in" draws a normal truncated at 2 standard
deviations and rescales it by 1.1368 (1 / the truncated normal's std, 0.87963),
so the weights have std exactly 1 / sqrt(fan_in), and multiplies them by
`outscale`. Fan-ins follow its `compute_fans`: [in, out] -> in, and a
[blocks, in, out] block kernel -> blocks * in.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from wmrl import nets


def _std_and_max(x):
  x = np.asarray(x, np.float64)
  return x.std(), np.abs(x).max()


@pytest.mark.parametrize("outscale", [1.0, 0.01])
def test_linear_init_has_std_outscale_over_root_fan_in(outscale):
  layer = nets.Linear(400, 500, rngs=nnx.Rngs(0), outscale=outscale)
  std, top = _std_and_max(layer.kernel[...])
  expected = outscale / math.sqrt(400)  # 0.05, or 5e-4 (a variance factor would give 5e-3)
  # 200,000 draws: the sample std is within 1% of the true one.
  assert abs(std - expected) < 0.01 * expected, (std, expected)
  # Truncated at 2 std of the underlying normal, whose std is 1 / 0.87963 = 1.1368 times larger.
  assert top <= 2 / 0.87962566 * expected * (1 + 1e-6)
  np.testing.assert_array_equal(layer.bias[...], 0.0)


def test_zero_outscale_gives_zero_weights():
  layer = nets.Linear(8, 255, rngs=nnx.Rngs(0), outscale=0.0)
  np.testing.assert_array_equal(layer.kernel[...], 0.0)


def test_block_linear_init_uses_the_whole_kernels_fan_in():
  # 8 blocks, each with 64 own and 192 shared inputs: the reference's kernel is
  # [8, 256, 64], fan-in 8 x 256 = 2048, std 1 / sqrt(2048) = 0.0221 for every
  # weight, own or shared (per block it would be 1 / sqrt(256) = 0.0625).
  layer = nets.BlockLinear(512, 512, 8, shared=192, rngs=nnx.Rngs(0))
  for kernel in (layer.kernel[...], layer.shared_kernel[...]):
    std, _ = _std_and_max(kernel)
    assert abs(std - 1 / math.sqrt(2048)) < 0.01 / math.sqrt(2048), std
  assert layer.kernel[...].shape == (8, 64, 64) and layer.shared_kernel[...].shape == (192, 512)


def test_conv_init_fan_in_is_kernel_area_times_channels():
  conv = nets.Conv(48, 64, 5, rngs=nnx.Rngs(0))
  std, _ = _std_and_max(conv.kernel[...])
  expected = 1 / math.sqrt(5 * 5 * 48)
  assert abs(std - expected) < 0.01 * expected, std


def _tiny_decoder(bspace):
  # Features: 8 recurrent values and 6 stochastic ones; 8x8 images from a 2x2x4 grid.
  return nets.ConvDecoder((8, 6), (8, 8, 3), depth=2, mults=(1, 2), kernel=3, units=5,
                          bspace=bspace, rngs=nnx.Rngs(1))


def test_block_space_projection_by_hand():
  """The first grid of the block-space decoder, computed by hand in NumPy from its weights."""
  decoder = _tiny_decoder(bspace=2)
  feat = np.asarray(jax.random.normal(jax.random.key(2), (3, 14)), np.float64)
  deter, stoch = feat[:, :8], feat[:, 8:]
  kernel = np.asarray(decoder.space.kernel[...], np.float64)  # [2 blocks, 4 in, 8 = 2x2 cells x 2 ch]
  bias = np.asarray(decoder.space.bias[...], np.float64)  # [16], block-major
  x0 = np.zeros((3, 2, 2, 4))
  for b in range(2):
    out = deter[:, 4 * b:4 * b + 4] @ kernel[b] + bias[8 * b:8 * b + 8]  # block b's 8 outputs
    # ... are (h, w, c) of its 2 channels: channels 2b and 2b + 1 of every cell.
    x0[..., 2 * b:2 * b + 2] = out.reshape(3, 2, 2, 2)
  hidden = decoder.stoch_hidden
  h = stoch @ np.asarray(hidden.linear.kernel[...]) + np.asarray(hidden.linear.bias[...])
  h = h / np.sqrt((h * h).mean(-1, keepdims=True) + 1e-4) * np.asarray(hidden.norm.scale[...])
  h = h / (1 + np.exp(-h))  # SiLU
  x1 = h @ np.asarray(decoder.stoch_space.kernel[...]) + np.asarray(decoder.stoch_space.bias[...])
  x = x0 + x1.reshape(3, 2, 2, 4)
  x = x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-4)  # norm scale starts at 1
  expected = x / (1 + np.exp(-x))
  got = decoder._grid(jnp.asarray(feat, jnp.float32))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_block_space_needs_divisible_sizes():
  with pytest.raises(ValueError, match="bspace=3 must divide"):
    _tiny_decoder(bspace=3)
  # bspace 0 is one dense layer from all 14 features to the 2x2x4 grid.
  decoder = _tiny_decoder(bspace=0)
  assert decoder.space.kernel[...].shape == (14, 16)
  assert decoder(jnp.zeros((2, 5, 14))).shape == (2, 5, 8, 8, 3)
