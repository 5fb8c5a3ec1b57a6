"""What the sequence models share: the KL balancing of categorical latents, and
the time-major swaps of their scans."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from wmrl import dists

sg = jax.lax.stop_gradient


def kl_losses(post, prior, free_nats: float):
  """KL balancing with free nats, for latent logits [..., S, C].

  The dynamics loss trains the prior towards the posterior, the
  representation loss (scaled down by its loss scale) the reverse; each is
  the KL summed over the S latents, clipped from below at `free_nats`, so
  below that neither has a gradient. Returns (dyn, rep, the KL itself).
  """
  dyn = dists.categorical_kl(sg(post), prior).sum(-1)
  rep = dists.categorical_kl(post, sg(prior)).sum(-1)
  return jnp.maximum(dyn, free_nats), jnp.maximum(rep, free_nats), dyn


def kl_metrics(post, prior, kl) -> dict[str, jax.Array]:
  return {"kl": kl.mean(), "post_entropy": dists.categorical_entropy(post).sum(-1).mean(),
          "prior_entropy": dists.categorical_entropy(prior).sum(-1).mean()}


def time_major(x):
  return jnp.swapaxes(x, 0, 1)


def rollout(img_step, carry, policy, horizon: int | None, key):
  """The `imagine` of the contract for a model whose prior moves one step at a
  time: `img_step(carry, action, key) -> (carry, prior logits)`.

  `policy(carry, key) -> action`, or actions [N, H] to take in turn (then
  `horizon` is None or H). Returns the imagined carries [N, H] and the
  actions [N, H] taken at the states before them.
  """
  if callable(policy):
    if horizon is None:
      raise ValueError("imagine with a policy function needs a horizon")
    xs = (jax.random.split(key, horizon), None)
  else:
    if horizon not in (None, policy.shape[1]):
      raise ValueError(f"imagine got actions for {policy.shape[1]} steps and horizon={horizon}")
    xs = (jax.random.split(key, policy.shape[1]), time_major(policy))

  def step(carry, inputs):
    k, action = inputs  # action: None where the policy chooses
    k_act, k_img = jax.random.split(k)
    if action is None:
      action = policy(carry, k_act)
    carry, _ = img_step(carry, action, k_img)
    return carry, (carry, action)

  _, (carries, actions) = jax.lax.scan(step, carry, xs)
  return jax.tree.map(time_major, (carries, actions))
