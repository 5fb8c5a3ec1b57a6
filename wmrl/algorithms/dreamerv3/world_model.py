"""Encoder, sequence model, decoder and reward/continue heads, and the world-model loss.

The sequence model is the one `model.dynamics` names (wmrl/dynamics), used only
through the dynamics contract (wmrl/dynamics/contract.py).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from wmrl import dists, dynamics
from wmrl.algorithms.dreamerv3.config import ModelConfig
from wmrl.nets import ConvDecoder, ConvEncoder, Head, MLP, SplitLinear
from wmrl.spaces import ArraySpec

sg = jax.lax.stop_gradient


def split_keys(obs_spec: dict[str, ArraySpec], stages: int) -> tuple[list[str], list[str]]:
  """Sorted CNN keys and MLP keys of an observation spec.

  The MLP reads the vectors and the images smaller than a CNN of `stages`
  stages can take (a side under 2^stages, as MiniGrid's 7x7 symbolic view):
  those flattened, their pixels scaled to [-0.5, 0.5] as the CNN's are. With
  no stages (`mults` empty) every image goes through the MLP.
  """
  for key, spec in obs_spec.items():
    if not spec.is_image and len(spec.shape) != 1:
      raise ValueError(f"observation '{key}' has shape {spec.shape}: vectors must be "
                       "1-D and images uint8 [H, W, C]; flatten it in the environment adapter")
  cnn = sorted(k for k, s in obs_spec.items() if s.is_image and stages
               and min(s.shape[:2]) >= 2**stages)
  mlp = sorted(k for k in obs_spec if k not in cnn)
  return cnn, mlp


def _flat_size(spec: ArraySpec) -> int:
  return math.prod(spec.shape)


def _mlp_input(value, spec: ArraySpec):
  """One MLP key's values [..., n]: a vector as float32, an image's pixels flattened."""
  if spec.is_image:
    return value.reshape(*value.shape[:-3], -1).astype(jnp.float32) / 255.0 - 0.5
  return value.astype(jnp.float32)


def _stacked_image_shape(obs_spec, images):
  shapes = {obs_spec[k].shape[:2] for k in images}
  if len(shapes) > 1:
    raise ValueError(f"image observations {images} have different sizes {shapes}; "
                     "resize them to one size")
  (height, width), = shapes
  return (height, width, sum(obs_spec[k].shape[2] for k in images))


class Encoder(nnx.Module):
  """Vectors (symlog) and small images through an MLP, images through a CNN;
  outputs concatenated."""

  def __init__(self, obs_spec, config: ModelConfig, *, rngs, dtype):
    c = config.encoder
    self.images, self.vectors = split_keys(obs_spec, len(c.mults))
    self.specs = {k: obs_spec[k] for k in self.vectors}
    self.symlog = c.symlog
    # Each branch exists only where its inputs do (None is a static attribute).
    self.mlp = MLP(sum(_flat_size(obs_spec[k]) for k in self.vectors), c.units, c.layers,
                   rngs=rngs, dtype=dtype) if self.vectors else None
    self.cnn = ConvEncoder(_stacked_image_shape(obs_spec, self.images), c.depth, c.mults,
                           c.kernel, rngs=rngs, dtype=dtype) if self.images else None
    self.out_dim = sum(m.out_dim for m in (self.mlp, self.cnn) if m is not None)

  def __call__(self, obs):
    outs = []
    if self.vectors:
      x = jnp.concatenate([_mlp_input(obs[k], self.specs[k]) for k in self.vectors], -1)
      outs.append(self.mlp(dists.symlog(x) if self.symlog else x))
    if self.images:
      outs.append(self.cnn(jnp.concatenate([obs[k] for k in self.images], -1)))
    return jnp.concatenate([o.astype(outs[0].dtype) for o in outs], -1)


class Decoder(nnx.Module):
  """Reconstructs every observation key from the model features."""

  def __init__(self, obs_spec, feat_split: tuple[int, int], config: ModelConfig, *, rngs, dtype):
    c = config.decoder
    feat_dim = sum(feat_split)
    self.images, self.vectors = split_keys(obs_spec, len(c.mults))
    self.specs = {k: obs_spec[k] for k in self.vectors}
    self.sizes = [_flat_size(obs_spec[k]) for k in self.vectors]
    self.channels = [obs_spec[k].shape[2] for k in self.images]
    self.mlp = MLP(feat_dim, c.units, c.layers, rngs=rngs, dtype=dtype) if self.vectors else None
    # One output layer per key, as the reference has.
    self.vec_out = (SplitLinear(c.units, tuple(self.sizes), rngs=rngs, dtype=dtype)
                    if self.vectors else None)
    self.cnn = ConvDecoder(feat_split, _stacked_image_shape(obs_spec, self.images), c.depth,
                           c.mults, c.kernel, c.units, c.bspace, rngs=rngs,
                           dtype=dtype) if self.images else None

  def __call__(self, feat) -> dict[str, jax.Array]:
    """Predictions: symlog vectors and images in [0, 1] (small ones from the MLP)."""
    out = {}
    if self.vectors:
      x = self.vec_out(self.mlp(feat)).astype(jnp.float32)
      for key, part in zip(self.vectors, jnp.split(x, _offsets(self.sizes), -1)):
        spec = self.specs[key]
        out[key] = part.reshape(*part.shape[:-1], *spec.shape) if spec.is_image else part
    if self.images:
      x = self.cnn(feat)
      for key, part in zip(self.images, jnp.split(x, _offsets(self.channels), -1)):
        out[key] = part
    return out

  def loss(self, feat, obs) -> jax.Array:
    """Summed squared error over every key's values: symlog space for vectors."""
    pred = self(feat)
    total = 0.0
    for key in self.vectors:
      if self.specs[key].is_image:  # a small image: its pixels in [0, 1], as the CNN's
        target = obs[key].astype(jnp.float32) / 255.0
        total += ((pred[key] - target) ** 2).sum((-3, -2, -1))
      else:
        target = dists.symlog(obs[key].astype(jnp.float32))
        total += ((pred[key] - target) ** 2).sum(-1)
    for key in self.images:
      target = obs[key].astype(jnp.float32) / 255.0
      total += ((pred[key] - target) ** 2).sum((-3, -2, -1))
    return total


def _offsets(sizes):
  offsets, total = [], 0
  for s in sizes[:-1]:
    total += s
    offsets.append(total)
  return offsets


class WorldModel(nnx.Module):

  def __init__(self, obs_spec, action_dim: int, config: ModelConfig, *, rngs: nnx.Rngs):
    dtype = jnp.dtype(config.compute_dtype)
    self.encoder = Encoder(obs_spec, config, rngs=rngs, dtype=dtype)
    self.dynamics = dynamics.make(config, self.encoder.out_dim, action_dim, rngs=rngs, dtype=dtype)
    self.feat_dim = self.dynamics.feat_dim
    self.decoder = Decoder(obs_spec, self.dynamics.feat_split, config, rngs=rngs, dtype=dtype)
    h = config.reward
    self.reward = Head(self.feat_dim, h.bins, h.units, h.layers, h.outscale, rngs=rngs, dtype=dtype)
    h = config.cont
    self.cont = Head(self.feat_dim, 1, h.units, h.layers, h.outscale, rngs=rngs, dtype=dtype)
    self.bins = config.reward.bins
    # The losses `world_model_loss` returns: the sequence model's own, then the heads'.
    self.loss_names = (*self.dynamics.loss_names, "rec", "rew", "con")

  def predict_reward(self, feat):
    return dists.twohot_mean(self.reward(feat), dists.twohot_bins(self.bins))

  def predict_cont(self, feat):
    return jax.nn.sigmoid(self.cont(feat)[..., 0])


def world_model_loss(wm: WorldModel, start, data: dict, prev_actions, key, cont_target: float):
  """Per-step world-model losses [B, T], the posterior latents [B, T] and metrics.

  `data` holds the observations, reward and flags of T steps; `prev_actions`
  the action taken before each of them; `start` the carry before the first
  step. The continue head learns `(1 - is_terminal) * cont_target`.
  """
  embed = wm.encoder(data)
  _, post, losses, metrics = wm.dynamics.observe(start, prev_actions, embed, data["is_first"], key)
  feat = wm.dynamics.features(post)
  losses["rec"] = wm.decoder.loss(feat, data)
  bins = dists.twohot_bins(wm.bins)
  losses["rew"] = dists.twohot_loss(wm.reward(feat), data["reward"], bins)
  cont = (1.0 - data["is_terminal"].astype(jnp.float32)) * cont_target
  losses["con"] = dists.binary_loss(wm.cont(feat)[..., 0], cont)
  return losses, post, metrics
