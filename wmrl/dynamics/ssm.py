"""A state-space world model: stacked diagonal linear recurrences, run over a
whole training window in one `jax.lax.associative_scan`.

The design follows R2I (Samsonov et al., "Mastering Memory Tasks with World
Models", ICLR 2024; chandar-lab/Recall2Imagine, its `S3M`):

- The posterior reads the embedding of o_t alone (R2I's non-recurrent
  representation), so every posterior of a window is drawn at once.
- The sequence model reads [z_{t-1}, a_{t-1}] and its output at t, `deter`,
  is what the prior and the heads read with z_t, as the RSSM's deter is.
- Episode resets happen inside the scan: a step that starts an episode
  continues from the learned initial state (R2I's `initial: learned`) and
  reads zeros for the previous latent and action, as the RSSM does.
- The layers are residual: RMS norm, the recurrence, GELU, a gated linear
  unit (R2I's `SequenceBlock` with `glu`).

Where wmrl departs from R2I: the recurrence is the LRU's (Orvieto et al.,
2023) rather than S5's. Its eigenvalues are exp(-exp(nu) + i exp(theta)),
inside the unit circle for every parameter value, so the model is stable
by construction with no clipping or discretisation step, and their ring
initialisation sets the memory's time scales directly; the input is scaled
by sqrt(1 - |lambda|^2) so every state keeps unit variance. S5's HiPPO
initialisation serves continuous signals; the memory tasks here are
discrete recall.

The carry holds every layer's state (complex, stored as real and imaginary
parts [..., layers, state, 2]), the output `deter` and the latent `stoch`.
Replay stores `hidden` and `stoch` (the entries): what the next step reads.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from wmrl import dists
from wmrl.dynamics.config import SSMConfig
from wmrl.dynamics.latents import kl_losses, kl_metrics, rollout, time_major
from wmrl.nets import Dense, Linear, MLP, RMSNorm

sg = jax.lax.stop_gradient


class SSMState(NamedTuple):
  hidden: jax.Array  # [..., layers, state, 2] each layer's state, real and imaginary parts
  deter: jax.Array  # [..., deter] the sequence model's output at this step
  stoch: jax.Array  # [..., S, C] the latent drawn at this step


class SSMEntries(NamedTuple):
  """What replay stores with a step: all the next step reads."""

  hidden: jax.Array
  stoch: jax.Array


def _complex(x):
  return jax.lax.complex(x[..., 0], x[..., 1])


def _real(z):
  return jnp.stack([jnp.real(z), jnp.imag(z)], -1)


def _combine(earlier, later):
  """The scan operator of h_t = a_t * h_{t-1} + b_t: two steps composed."""
  a1, b1 = earlier
  a2, b2 = later
  return a2 * a1, a2 * b1 + b2


class LinearRecurrence(nnx.Module):
  """h_t = lambda * h_{t-1} + gamma * B x_t, y_t = Re(C h_t) + D * x_t, with a
  complex diagonal lambda (the LRU's parameterisation)."""

  def __init__(self, units: int, state: int, c: SSMConfig, *, rngs: nnx.Rngs):
    key = rngs.params
    u1, u2 = jax.random.uniform(key(), (state,)), jax.random.uniform(key(), (state,))
    radius_sq = u1 * (c.r_max ** 2 - c.r_min ** 2) + c.r_min ** 2
    self.nu_log = nnx.Param(jnp.log(-0.5 * jnp.log(radius_sq)))
    self.theta_log = nnx.Param(jnp.log(c.max_phase * u2 + 1e-8))
    self.gamma_log = nnx.Param(0.5 * jnp.log(1 - radius_sq))
    self.b = nnx.Param(jax.random.normal(key(), (units, state, 2)) / math.sqrt(2 * units))
    self.c = nnx.Param(jax.random.normal(key(), (state, 2, units)) / math.sqrt(state))
    self.d = nnx.Param(jax.random.normal(key(), (units,)))
    # The state a step that starts an episode continues from (R2I's learned initial).
    self.initial = nnx.Param(jnp.zeros((state, 2)))

  def decay(self):
    """lambda [state], complex, |lambda| < 1."""
    return jnp.exp(jax.lax.complex(-jnp.exp(self.nu_log[...]), jnp.exp(self.theta_log[...])))

  def drive(self, x):
    """gamma * B x [..., state], complex. Complex matmuls are slow on CPUs, so
    B's real and imaginary parts are one real matmul [units, 2 * state]."""
    b = self.b[...] * jnp.exp(self.gamma_log[...])[:, None]
    both = x.astype(jnp.float32) @ b.reshape(b.shape[0], -1)  # [..., state * 2], interleaved
    both = both.reshape(*both.shape[:-1], -1, 2)
    return jax.lax.complex(both[..., 0], both[..., 1])

  def read(self, h, x):
    """y = Re(C h) + D x [..., units]: Re(C h) = Re(h) Re(C) - Im(h) Im(C), one real matmul."""
    parts = jnp.stack([jnp.real(h), jnp.imag(h)], -1).reshape(*h.shape[:-1], -1)
    c = self.c[...] * jnp.array([1.0, -1.0])[:, None]  # [state, 2, units]: Re(C), -Im(C)
    return parts @ c.reshape(-1, c.shape[-1]) + self.d[...] * x.astype(jnp.float32)

  def step(self, h, x, first):
    """One step [N]: h [N, state] complex, x [N, units], first [N] bool."""
    decay = self.decay()
    h = jnp.where(first[..., None], _complex(self.initial[...]), h)
    h = decay * h + self.drive(x)
    return h, self.read(h, x)

  def sequence(self, h, x, first):
    """A window [B, T] from the state h [B, state] before it, in one parallel scan."""
    decay = self.decay()
    f = first[..., None]
    a = jnp.where(f, 0, decay).astype(jnp.complex64)
    b = self.drive(x) + jnp.where(f, decay * _complex(self.initial[...]), 0)
    b = b.at[:, 0].add(a[:, 0] * h)  # the state before the window enters at its first step
    _, hs = jax.lax.associative_scan(_combine, (a, b), axis=1)
    return hs, self.read(hs, x)


class SSMLayer(nnx.Module):
  """x + GLU(GELU(recurrence(norm(x)))): a residual recurrence layer."""

  def __init__(self, c: SSMConfig, *, rngs: nnx.Rngs, dtype):
    self.norm = RMSNorm(c.units)
    self.recurrence = LinearRecurrence(c.units, c.state, c, rngs=rngs)
    self.gate = Linear(c.units, 2 * c.units, rngs=rngs, dtype=dtype)

  def _mix(self, x, y):
    value, gate = jnp.split(self.gate(jax.nn.gelu(y)).astype(jnp.float32), 2, -1)
    return x + value * jax.nn.sigmoid(gate)

  def step(self, x, h, first):
    h, y = self.recurrence.step(h, self.norm(x), first)
    return self._mix(x, y), h

  def sequence(self, x, h, first):
    hs, y = self.recurrence.sequence(h, self.norm(x), first)
    return self._mix(x, y), hs


class SSM(nnx.Module):
  """A state-space sequence model with a non-recurrent posterior (the dynamics contract)."""

  loss_names = ("dyn", "rep")

  def __init__(self, config: SSMConfig, embed_dim: int, action_dim: int, *,
               rngs: nnx.Rngs, dtype=jnp.float32):
    c = config
    self.config = config
    self.dtype = dtype
    stoch_dim = c.stoch * c.classes
    self.inputs = Dense(stoch_dim + action_dim, c.units, rngs=rngs, dtype=dtype)
    self.layers = nnx.List([SSMLayer(c, rngs=rngs, dtype=dtype) for _ in range(c.layers)])
    self.out_norm = RMSNorm(c.units)
    self.outputs = Dense(c.units, c.deter, rngs=rngs, dtype=dtype)
    self.prior_mlp = MLP(c.deter, c.hidden, c.img_layers, rngs=rngs, dtype=dtype)
    self.prior_out = Linear(c.hidden, stoch_dim, rngs=rngs, dtype=dtype)
    self.post_mlp = MLP(embed_dim, c.hidden, c.obs_layers, rngs=rngs, dtype=dtype)
    self.post_out = Linear(c.hidden, stoch_dim, rngs=rngs, dtype=dtype)
    self.feat_split = (c.deter, stoch_dim)
    self.feat_dim = c.deter + stoch_dim
    sizes = {"deter": c.deter, "stoch": stoch_dim, "hidden": c.layers * c.state * 2}
    self.policy_feat_dim = sum(sizes[name] for name in c.policy_inputs)

  # --- the contract's views of the state ---------------------------------------

  def initial(self, batch_shape: tuple[int, ...]) -> SSMState:
    c = self.config
    hidden = jnp.stack([layer.recurrence.initial[...] for layer in self.layers])
    return SSMState(jnp.broadcast_to(hidden, (*batch_shape, *hidden.shape)),
                    jnp.zeros((*batch_shape, c.deter), jnp.float32),
                    jnp.zeros((*batch_shape, c.stoch, c.classes), jnp.float32))

  def entries(self, carry: SSMState) -> SSMEntries:
    return SSMEntries(carry.hidden, carry.stoch)

  def truncate(self, entries: SSMEntries) -> SSMState:
    # The output of the stored step is not needed to continue: the next step
    # reads the layers' states and the latent.
    deter = jnp.zeros((*entries.stoch.shape[:-2], self.config.deter), jnp.float32)
    return SSMState(entries.hidden, deter, entries.stoch)

  def features(self, carry: SSMState) -> jax.Array:
    stoch = carry.stoch.reshape(*carry.stoch.shape[:-2], -1)
    return jnp.concatenate([carry.deter, stoch.astype(carry.deter.dtype)], -1)

  def policy_features(self, carry: SSMState) -> jax.Array:
    """`policy_inputs` of the carry, concatenated: `hidden` is every layer's
    state, real and imaginary parts, as R2I's actor reads it."""
    parts = {"deter": carry.deter,
             "stoch": carry.stoch.reshape(*carry.stoch.shape[:-2], -1),
             "hidden": carry.hidden.reshape(*carry.hidden.shape[:-3], -1)}
    return jnp.concatenate([parts[name].astype(carry.deter.dtype)
                            for name in self.config.policy_inputs], -1)

  def starts(self, latents: SSMState) -> SSMState:
    """Every replayed step [B, T] as a start of imagination [B * T], without gradient."""
    return jax.tree.map(lambda x: sg(x).reshape(-1, *x.shape[2:]), latents)

  # --- pieces ------------------------------------------------------------------

  def _inputs(self, prev_stoch, prev_action, first):
    """The recurrence's input from [z_{t-1}, a_{t-1}], zeros where an episode starts."""
    keep = (1.0 - first.astype(jnp.float32))[..., None]
    stoch = prev_stoch.reshape(*prev_stoch.shape[:-2], -1) * keep
    # Bound the action's scale, so unclipped continuous samples stay in range (as the RSSM).
    action = prev_action / sg(jnp.maximum(1.0, jnp.abs(prev_action))) * keep
    return self.inputs(jnp.concatenate([stoch, action], -1).astype(self.dtype))

  def _logits(self, x):
    c = self.config
    x = x.astype(jnp.float32).reshape(*x.shape[:-1], c.stoch, c.classes)
    return dists.unimix_logits(x, c.unimix)

  def prior_logits(self, deter):
    return self._logits(self.prior_out(self.prior_mlp(deter)))

  def posterior_logits(self, embed):
    return self._logits(self.post_out(self.post_mlp(embed.astype(self.dtype))))

  def _step(self, carry: SSMState, prev_action, first):
    """The sequence model's output and states after one step [N]."""
    x = self._inputs(carry.stoch, prev_action, first).astype(jnp.float32)
    hidden = _complex(carry.hidden)
    states = []
    for i, layer in enumerate(self.layers):
      x, h = layer.step(x, hidden[..., i, :], first)
      states.append(h)
    deter = self.outputs(self.out_norm(x)).astype(jnp.float32)
    return _real(jnp.stack(states, -2)), deter

  # --- single steps ------------------------------------------------------------

  def obs_step(self, carry: SSMState, prev_action, embed, is_first, key) -> SSMState:
    hidden, deter = self._step(carry, prev_action, is_first)
    stoch = dists.onehot_sample_st(key, self.posterior_logits(embed))
    return SSMState(hidden, deter, stoch)

  def img_step(self, carry: SSMState, action, key):
    first = jnp.zeros(carry.stoch.shape[:-2], bool)
    hidden, deter = self._step(carry, action, first)
    prior = self.prior_logits(deter)
    return SSMState(hidden, deter, dists.onehot_sample_st(key, prior)), prior

  # --- sequences ---------------------------------------------------------------

  def observe(self, carry: SSMState, prev_actions, embeds, is_first, key):
    """The posterior over a window [B, T] from `carry`, the state before it, in
    parallel over time: the latents first (they read the embeddings alone),
    then every layer in one associative scan. Draws the same latents as T
    `obs_step`s given the keys `split(key, T)` in turn."""
    keys = jax.random.split(key, embeds.shape[1])
    post = self.posterior_logits(embeds)
    stoch = jax.vmap(dists.onehot_sample_st, in_axes=(0, 1), out_axes=1)(keys, post)
    prev_stoch = jnp.concatenate([carry.stoch[:, None], stoch[:, :-1]], 1)
    x = self._inputs(prev_stoch, prev_actions, is_first).astype(jnp.float32)
    hidden = _complex(carry.hidden)
    states = []
    for i, layer in enumerate(self.layers):
      x, hs = layer.sequence(x, hidden[:, i], is_first)
      states.append(hs)
    deter = self.outputs(self.out_norm(x)).astype(jnp.float32)
    latents = SSMState(_real(jnp.stack(states, -2)), deter, stoch)
    prior = self.prior_logits(deter)
    dyn, rep, kl = kl_losses(post, prior, self.config.free_nats)
    last = jax.tree.map(lambda v: v[:, -1], latents)
    return last, latents, {"dyn": dyn, "rep": rep}, kl_metrics(post, prior, kl)

  def imagine(self, carry: SSMState, policy, horizon: int | None, key):
    """Rolls the prior from `carry` [N], one step at a time (the policy acts on
    each state), with a policy function or given actions [N, H]."""
    return rollout(self.img_step, carry, policy, horizon, key)
