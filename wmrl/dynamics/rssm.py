"""The recurrent state-space model: a block GRU with categorical latents.

It implements the dynamics contract (wmrl/dynamics/contract.py). Its carry is a
`Latent`: `deter` [..., D] float and `stoch` [..., S, C] one-hot; nothing
outside this module reads their fields. `observe` runs the posterior over a
replayed sequence and returns its KL losses, `imagine` rolls the prior
forward under a policy or a given action sequence; both are `lax.scan`s over
time.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from wmrl import dists
from wmrl.dynamics.config import RSSMConfig
from wmrl.dynamics.latents import kl_losses, kl_metrics, rollout, time_major
from wmrl.nets import BlockLinear, Dense, Linear, MLP, RMSNorm, from_blocks, to_blocks

sg = jax.lax.stop_gradient


class Latent(NamedTuple):
  deter: jax.Array  # [..., D]
  stoch: jax.Array  # [..., S, C]


class RSSM(nnx.Module):
  """DreamerV3's recurrent state-space model (the dynamics contract)."""

  # The losses `observe` returns, each scaled by the loss scale of its name.
  loss_names = ("dyn", "rep")

  def __init__(self, config: RSSMConfig, embed_dim: int, action_dim: int, *,
               rngs: nnx.Rngs, dtype=jnp.float32):
    c = config
    self.config = config
    self.dtype = dtype
    stoch_dim = c.stoch * c.classes
    # Inputs of the GRU: deter, stoch and action, each through its own layer.
    self.in_deter = Dense(c.deter, c.hidden, rngs=rngs, dtype=dtype)
    self.in_stoch = Dense(stoch_dim, c.hidden, rngs=rngs, dtype=dtype)
    self.in_action = Dense(action_dim, c.hidden, rngs=rngs, dtype=dtype)
    # The first block layer reads each block's slice of deter and, shared by
    # all blocks, the three input layers' outputs.
    shared = 3 * c.hidden
    self.hidden_layers = nnx.List()
    for _ in range(c.dyn_layers):
      self.hidden_layers.append(BlockLinear(c.deter, c.deter, c.blocks, shared=shared,
                                            rngs=rngs, dtype=dtype))
      shared = 0
    self.hidden_norms = nnx.List([RMSNorm(c.deter) for _ in range(c.dyn_layers)])
    self.gru = BlockLinear(c.deter, 3 * c.deter, c.blocks, shared=shared, rngs=rngs, dtype=dtype)
    self.prior_mlp = MLP(c.deter, c.hidden, c.img_layers, rngs=rngs, dtype=dtype)
    self.prior_out = Linear(c.hidden, stoch_dim, rngs=rngs, dtype=dtype)
    self.post_mlp = MLP(c.deter + embed_dim, c.hidden, c.obs_layers, rngs=rngs, dtype=dtype)
    self.post_out = Linear(c.hidden, stoch_dim, rngs=rngs, dtype=dtype)
    self.feat_split = (c.deter, stoch_dim)
    self.feat_dim = c.deter + stoch_dim
    self.policy_feat_dim = self.feat_dim

  def features(self, latent: Latent) -> jax.Array:
    """The model features every head reads: deter and flattened stoch."""
    stoch = latent.stoch.reshape(*latent.stoch.shape[:-2], -1)
    return jnp.concatenate([latent.deter, stoch.astype(latent.deter.dtype)], -1)

  def policy_features(self, latent: Latent) -> jax.Array:
    """The actor and critic read what the heads read (the reference's)."""
    return self.features(latent)

  def entries(self, latent: Latent) -> Latent:
    """Replay stores the whole latent with each step (the reference's `dyn_entry`)."""
    return latent

  def truncate(self, entries: Latent) -> Latent:
    return entries

  def starts(self, latents: Latent) -> Latent:
    """Every replayed step [B, T] as a start of imagination [B * T], without gradient."""
    return jax.tree.map(lambda x: sg(x).reshape(-1, *x.shape[2:]), latents)

  # --- single steps -------------------------------------------------------

  def initial(self, batch_shape: tuple[int, ...]) -> Latent:
    c = self.config
    return Latent(jnp.zeros((*batch_shape, c.deter), jnp.float32),
                  jnp.zeros((*batch_shape, c.stoch, c.classes), jnp.float32))

  def core(self, latent: Latent, action) -> jax.Array:
    """One block-GRU update of the deterministic state.

    Every block sees its own slice of deter and the shared inputs (deter,
    stoch and action, each through its own layer). The blocks compute
    block-major ([blocks, ..., n], see `BlockLinear`); deter goes back to
    [..., deter] at the end.
    """
    deter = latent.deter
    stoch = latent.stoch.reshape(*latent.stoch.shape[:-2], -1)
    # Bound the action's scale, so unclipped continuous samples stay in range.
    action = action / sg(jnp.maximum(1.0, jnp.abs(action)))
    shared = jnp.concatenate(
        [self.in_deter(deter), self.in_stoch(stoch), self.in_action(action)], -1)
    deter_blocks = to_blocks(deter, self.config.blocks)
    x, inputs = deter_blocks, shared
    for layer, norm in zip(self.hidden_layers, self.hidden_norms):
      x = jax.nn.silu(norm.blocks(layer(x, inputs)))
      inputs = None  # only the first layer reads the shared inputs
    x = self.gru(x, inputs).astype(jnp.float32)
    reset, cand, update = jnp.split(x, 3, -1)
    reset = jax.nn.sigmoid(reset)
    cand = jnp.tanh(reset * cand)
    # The -1 bias makes the state keep its value by default at the start.
    update = jax.nn.sigmoid(update - 1)
    return from_blocks(update * cand + (1 - update) * deter_blocks)

  def prior_logits(self, deter) -> jax.Array:
    return self._logits(self.prior_out(self.prior_mlp(deter)))

  def posterior_logits(self, deter, embed) -> jax.Array:
    x = jnp.concatenate([deter.astype(self.dtype), embed.astype(self.dtype)], -1)
    return self._logits(self.post_out(self.post_mlp(x)))

  def _logits(self, x):
    c = self.config
    x = x.astype(jnp.float32).reshape(*x.shape[:-1], c.stoch, c.classes)
    return dists.unimix_logits(x, c.unimix)

  def obs_step(self, latent: Latent, prev_action, embed, is_first, key) -> Latent:
    """Posterior step: resets where `is_first`, then conditions on the embedding."""
    return self._posterior_step(latent, prev_action, embed, is_first, key)[0]

  def _posterior_step(self, latent: Latent, prev_action, embed, is_first, key):
    keep = (1.0 - is_first.astype(jnp.float32))[..., None]
    latent = Latent(latent.deter * keep, latent.stoch * keep[..., None])
    prev_action = prev_action * keep
    deter = self.core(latent, prev_action)
    post = self.posterior_logits(deter, embed)
    stoch = dists.onehot_sample_st(key, post)
    return Latent(deter, stoch), post

  def img_step(self, latent: Latent, action, key):
    deter = self.core(latent, action)
    prior = self.prior_logits(deter)
    return Latent(deter, dists.onehot_sample_st(key, prior)), prior

  # --- sequences ----------------------------------------------------------

  def observe(self, latent: Latent, prev_actions, embeds, is_first, key):
    """Posterior over a sequence [B, T] from `latent`, the state before its first step.

    Returns the last latent, the posterior latents [B, T], the KL losses
    `dyn` and `rep` [B, T] (the prior logits come from the same deter as
    the posterior's) and metrics.
    """
    keys = jax.random.split(key, embeds.shape[1])

    def step(latent, inputs):
      action, embed, first, k = inputs
      latent, post = self._posterior_step(latent, action, embed, first, k)
      return latent, (latent, post)

    inputs = (time_major(prev_actions), time_major(embeds), time_major(is_first), keys)
    last, (latents, post) = jax.lax.scan(step, latent, inputs)
    latents, post = jax.tree.map(time_major, (latents, post))
    prior = self.prior_logits(latents.deter)
    dyn, rep, kl = kl_losses(post, prior, self.config.free_nats)
    return last, latents, {"dyn": dyn, "rep": rep}, kl_metrics(post, prior, kl)

  def imagine(self, latent: Latent, policy, horizon: int | None, key):
    """Rolls the prior from `latent` [N], acting with `policy`.

    `policy(latent, key) -> action`, or actions [N, H] to take in turn (then
    `horizon` is None or H). Returns the imagined latents [N, H] and the
    actions [N, H] taken at the states before them.
    """
    return rollout(self.img_step, latent, policy, horizon, key)
