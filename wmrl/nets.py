"""Network building blocks: linear and block-linear layers, RMS norm, MLPs, CNNs.

Parameters are float32; each layer computes in its `dtype` (the config's
compute dtype), and norms compute in float32 for stability.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


def initializer(outscale: float = 1.0, fan_scale: float = 1.0, **axes):
  """The reference's "trunc_normal_in": a normal truncated at 2 std, std 1/sqrt(fan_in)
  (rescaled for the truncation), times `outscale`.

  `outscale` multiplies the weights, as the reference's `_scaled_winit` does
  (not their variance); `outscale=0` gives zeros, which the reward and
  critic heads use so they predict exactly 0 at the start. `fan_scale`
  multiplies the fan-in the layer would have on its own (block-linear
  layers count every block's inputs). `axes` go to flax's variance_scaling.
  """
  if outscale == 0.0:
    return nnx.initializers.zeros
  return nnx.initializers.variance_scaling(outscale**2 / fan_scale, "fan_in", "truncated_normal",
                                           **axes)


class Linear(nnx.Module):
  def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs, outscale: float = 1.0,
               dtype=jnp.float32):
    self.kernel = nnx.Param(initializer(outscale)(rngs.params(), (din, dout), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((dout,), jnp.float32))
    self.dtype = dtype

  def __call__(self, x):
    # A 2D matmul: its transpose, the weight gradient, then contracts one
    # axis; over [B, T, din] the CPU's forward and weight gradient take 1.18x
    # as long (162 ms against 137 ms for [1024, 16, 2560] -> 256,
    # `benchmarks/layouts.py`).
    rows = x.reshape(-1, x.shape[-1]).astype(self.dtype)
    y = rows @ self.kernel[...].astype(self.dtype) + self.bias[...].astype(self.dtype)
    return y.reshape(*x.shape[:-1], y.shape[-1])


class SplitLinear(nnx.Module):
  """Linears side by side on the same input, outputs concatenated: [..., din] -> [..., sum(douts)].

  The same function as one Linear, kept as the reference's separate tensors
  (the actor's mean and stddev layers, the decoder's layer per observation key),
  because per-tensor maths (adaptive gradient clipping) sees them apart.
  """

  def __init__(self, din: int, douts: tuple[int, ...], *, rngs: nnx.Rngs, outscale: float = 1.0,
               dtype=jnp.float32):
    self.parts = nnx.List([Linear(din, d, rngs=rngs, outscale=outscale, dtype=dtype)
                           for d in douts])

  def __call__(self, x):
    return jnp.concatenate([part(x) for part in self.parts], -1)


class BlockLinear(nnx.Module):
  """A block-diagonal linear layer: `blocks` independent linears side by side.

  The RSSM's GRU uses it so that a large recurrent state costs blocks-times
  fewer weights and FLOPs than a dense layer would. It works on block-major
  tensors [blocks, ..., features per block]: one batched matmul with the
  block axis leading, which on CPU runs 2.3x faster than the same matmul
  over row-major [..., blocks, features] for 1024 rows, 6x for 16
  (`benchmarks/layouts.py`).

  With `shared > 0`, every block also reads `shared` inputs that all blocks
  see: the same as concatenating them to every block's own inputs, computed
  as one dense row-major matmul into all blocks' outputs instead of copying
  the inputs once per block. Its weights are kept as that dense matrix
  [shared, dout], so no call has to rearrange them.
  """

  def __init__(self, din: int, dout: int, blocks: int, *, shared: int = 0, rngs: nnx.Rngs,
               dtype=jnp.float32):
    if din % blocks or dout % blocks:
      raise ValueError(f"BlockLinear sizes {din}->{dout} must divide into {blocks} blocks")
    own, out = din // blocks, dout // blocks
    # The fan-in is the whole kernel's, every block's inputs together (the
    # reference's `compute_fans` of a [blocks, in, out] kernel), not one block's
    # own plus shared inputs: the weights start sqrt(blocks) times smaller.
    init = initializer(fan_scale=blocks, in_axis=-2, out_axis=-1, batch_axis=(0,))
    kernel = init(rngs.params(), (blocks, own + shared, out), jnp.float32)
    self.kernel = nnx.Param(kernel[:, :own])
    # Column b * out + j of the dense matrix is output j of block b.
    self.shared_kernel = (nnx.Param(jnp.moveaxis(kernel[:, own:], 0, 1).reshape(shared, dout))
                          if shared else None)
    self.bias = nnx.Param(jnp.zeros((dout,), jnp.float32))
    self.blocks = blocks
    self.dtype = dtype

  def __call__(self, x, shared=None):
    """[blocks, ..., own] (and [..., shared]) -> [blocks, ..., dout / blocks]."""
    if (shared is None) != (self.shared_kernel is None):
      raise ValueError("BlockLinear: pass shared inputs exactly when built with shared > 0")
    # [blocks, rows, own] @ [blocks, own, out]: a batched matmul.
    rows = x.reshape(self.blocks, -1, x.shape[-1]).astype(self.dtype)
    y = jnp.matmul(rows, self.kernel[...].astype(self.dtype))
    if shared is not None:
      shared = shared.reshape(-1, shared.shape[-1]).astype(self.dtype)
      y = y + to_blocks(shared @ self.shared_kernel[...].astype(self.dtype), self.blocks)
    y = y + self.bias[...].astype(self.dtype).reshape(self.blocks, 1, -1)
    return y.reshape(*x.shape[:-1], y.shape[-1])


def to_blocks(x, blocks: int):
  """[..., blocks * n] -> block-major [blocks, ..., n]."""
  return jnp.moveaxis(x.reshape(*x.shape[:-1], blocks, -1), -2, 0)


def from_blocks(x):
  """Block-major [blocks, ..., n] -> [..., blocks * n]."""
  x = jnp.moveaxis(x, 0, -2)
  return x.reshape(*x.shape[:-2], -1)


class RMSNorm(nnx.Module):
  def __init__(self, features: int, eps: float = 1e-4):
    self.scale = nnx.Param(jnp.ones((features,), jnp.float32))
    self.eps = eps

  def __call__(self, x):
    dtype = x.dtype
    x = x.astype(jnp.float32)
    x = x * jax.lax.rsqrt((x * x).mean(-1, keepdims=True) + self.eps) * self.scale[...]
    return x.astype(dtype)

  def blocks(self, x):
    """The same norm over a block-major [blocks, ..., n]: over all blocks' features together."""
    dtype = x.dtype
    x = x.astype(jnp.float32)
    mean_square = (x * x).mean(-1, keepdims=True).mean(0, keepdims=True)
    scale = self.scale[...].reshape(x.shape[0], *[1] * (x.ndim - 2), -1)
    return (x * jax.lax.rsqrt(mean_square + self.eps) * scale).astype(dtype)


class Dense(nnx.Module):
  """Linear -> RMS norm -> SiLU, the reference's hidden layer."""

  def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
    self.linear = Linear(din, dout, rngs=rngs, dtype=dtype)
    self.norm = RMSNorm(dout)

  def __call__(self, x):
    return jax.nn.silu(self.norm(self.linear(x)))


class MLP(nnx.Module):
  def __init__(self, din: int, units: int, layers: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
    sizes = [din] + [units] * layers
    self.layers = nnx.List([Dense(a, b, rngs=rngs, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])])
    self.out_dim = sizes[-1]

  def __call__(self, x):
    for layer in self.layers:
      x = layer(x)
    return x


class Head(nnx.Module):
  """An MLP followed by an output layer with its own init scale; `dout` a tuple
  gives one output layer per part (`SplitLinear`), outputs concatenated."""

  def __init__(self, din: int, dout: int | tuple[int, ...], units: int, layers: int,
               outscale: float, *, rngs: nnx.Rngs, dtype=jnp.float32):
    self.mlp = MLP(din, units, layers, rngs=rngs, dtype=dtype)
    out = SplitLinear if isinstance(dout, tuple) else Linear
    self.out = out(self.mlp.out_dim, dout, rngs=rngs, outscale=outscale, dtype=dtype)

  def __call__(self, x):
    return self.out(self.mlp(x)).astype(jnp.float32)


class Conv(nnx.Module):
  """Stride-1 'same' convolution over [..., H, W, C]."""

  def __init__(self, cin: int, cout: int, kernel: int, *, rngs: nnx.Rngs, outscale: float = 1.0,
               dtype=jnp.float32):
    init = initializer(outscale)
    self.kernel = nnx.Param(init(rngs.params(), (kernel, kernel, cin, cout), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((cout,), jnp.float32))
    self.dtype = dtype

  def __call__(self, x):
    batch = x.shape[:-3]
    x = x.astype(self.dtype).reshape(-1, *x.shape[-3:])
    y = jax.lax.conv_general_dilated(
        x, self.kernel[...].astype(self.dtype), (1, 1), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = y + self.bias[...].astype(self.dtype)
    return y.reshape(*batch, *y.shape[1:])


class ConvEncoder(nnx.Module):
  """Conv -> 2x2 max-pool -> norm -> SiLU per stage, then flatten (reference "simple" CNN)."""

  def __init__(self, image_shape: tuple[int, int, int], depth: int, mults: tuple[int, ...],
               kernel: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
    height, width, channels = image_shape
    stages = len(mults)
    if height % 2**stages or width % 2**stages:
      raise ValueError(f"image size {height}x{width} must be divisible by 2^{stages} "
                       f"for {stages} CNN stages; resize the images or change model.encoder.mults "
                       f"(images with a side under 2^{stages} go through the MLP)")
    depths = [depth * m for m in mults]
    self.convs = nnx.List([Conv(c, d, kernel, rngs=rngs, dtype=dtype)
                           for c, d in zip([channels] + depths[:-1], depths)])
    self.norms = nnx.List([RMSNorm(d) for d in depths])
    self.out_dim = (height // 2**stages) * (width // 2**stages) * depths[-1]

  def __call__(self, image):
    x = image.astype(jnp.float32) / 255.0 - 0.5
    for conv, norm in zip(self.convs, self.norms):
      x = conv(x)
      *batch, h, w, c = x.shape
      x = x.reshape(*batch, h // 2, 2, w // 2, 2, c).max((-4, -2))
      x = jax.nn.silu(norm(x))
    return x.reshape(*x.shape[:-3], -1)


class ConvDecoder(nnx.Module):
  """Features to a small grid, then (2x nearest upsample -> conv -> norm -> SiLU) per stage.

  The features are [recurrent part (`deter` values) | stochastic part]. With
  `bspace > 0` the grid comes from the reference's block-space projection
  (`dreamerv3/rssm.py`, Decoder `bspace`): the recurrent part through a
  block-linear layer whose block b fills channels [b * C / bspace, (b + 1) * C
  / bspace) of every grid cell, plus the stochastic part through two dense
  layers (2 * `units` wide, then the grid), summed and normed. Far fewer
  weights than one dense layer from all features to the grid (at size12m and
  64x64 images 1.3M against 10.5M). With `bspace = 0`, that dense layer.
  Returns images in [0, 1] (sigmoid), compared with the targets scaled to [0, 1].
  """

  def __init__(self, feat_split: tuple[int, int], image_shape: tuple[int, int, int], depth: int,
               mults: tuple[int, ...], kernel: int, units: int, bspace: int, *,
               rngs: nnx.Rngs, dtype=jnp.float32):
    height, width, channels = image_shape
    stages = len(mults)
    if height % 2**stages or width % 2**stages:
      raise ValueError(f"image size {height}x{width} must be divisible by 2^{stages} "
                       f"for {stages} CNN stages; resize the images or change model.decoder.mults "
                       f"(images with a side under 2^{stages} go through the MLP)")
    depths = [depth * m for m in mults]
    self.grid = (height // 2**stages, width // 2**stages, depths[-1])
    self.deter, stoch = feat_split
    self.bspace = bspace
    cells = math.prod(self.grid)
    if bspace:
      if self.deter % bspace or depths[-1] % bspace:
        raise ValueError(
            f"model.decoder.bspace={bspace} must divide the recurrent state ({self.deter}) and the "
            f"decoder's deepest channels (depth x mults[-1] = {depths[-1]}); choose a divisor or 0")
      self.space = BlockLinear(self.deter, cells, bspace, rngs=rngs, dtype=dtype)
      self.stoch_hidden = Dense(stoch, 2 * units, rngs=rngs, dtype=dtype)
      self.stoch_space = Linear(2 * units, cells, rngs=rngs, dtype=dtype)
    else:
      self.space = Linear(self.deter + stoch, cells, rngs=rngs, dtype=dtype)
    self.space_norm = RMSNorm(depths[-1])
    ins = depths[::-1][:-1]
    outs = depths[::-1][1:]
    self.convs = nnx.List([Conv(a, b, kernel, rngs=rngs, dtype=dtype) for a, b in zip(ins, outs)])
    self.norms = nnx.List([RMSNorm(b) for b in outs])
    self.out = Conv(depths[0], channels, kernel, rngs=rngs, dtype=dtype)

  def __call__(self, feat):
    x = self._grid(feat)
    for conv, norm in zip(self.convs, self.norms):
      x = jax.nn.silu(norm(conv(_upsample(x))))
    return jax.nn.sigmoid(self.out(_upsample(x)).astype(jnp.float32))

  def _grid(self, feat):
    """Features [..., F] -> the first grid [..., h, w, C], normed and activated."""
    batch = feat.shape[:-1]
    if not self.bspace:
      x = self.space(feat).reshape(*batch, *self.grid)
      return jax.nn.silu(self.space_norm(x))
    height, width, channels = self.grid
    deter, stoch = feat[..., :self.deter], feat[..., self.deter:]
    # [blocks, ..., h * w * C / blocks] -> [..., h, w, blocks * C / blocks]: block-major channels.
    x0 = self.space(to_blocks(deter, self.bspace))
    x0 = x0.reshape(self.bspace, *batch, height, width, channels // self.bspace)
    x0 = jnp.moveaxis(x0, 0, -2).reshape(*batch, *self.grid)
    x1 = self.stoch_space(self.stoch_hidden(stoch)).reshape(*batch, *self.grid)
    return jax.nn.silu(self.space_norm(x0 + x1))


def _upsample(x):
  return jnp.repeat(jnp.repeat(x, 2, -3), 2, -2)


def count_params(tree) -> int:
  return int(sum(x.size for x in jax.tree.leaves(tree)))
