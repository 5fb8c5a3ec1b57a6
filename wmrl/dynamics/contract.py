"""The dynamics contract: what a world model, an agent and the reports ask of a sequence model.

A sequence model has three views of its state, which need not be the same:

- the carry: what it keeps from one step to the next (the RSSM: its
  deterministic and stochastic state; the SSM: every layer's linear state,
  the last stochastic state and the output the heads read);
- the entries: what replay stores with each step so a training window can
  start where the policy's belief was (`entries`, and `truncate` back to a
  carry): the RSSM stores its whole carry, as the reference's `dyn_entry`
  does; a model with a long state stores what continuing needs;
- the features: what every head reads (`features`), and what the actor and
  critic read (`policy_features`): the same for the RSSM; the SSM can give
  the policy its layers' states too, as R2I does.

Nothing outside the model's own module knows what a carry holds: callers
create carries with `initial`, advance them with `obs_step`, `observe` or
`imagine`, store them through `entries` and read them through `features`.
The model owns its world-model losses: `observe` returns them by the names
`loss_names` declares, and the world model sums them with the loss scale of
each name.

Shapes: a carry or a sequence of latents is a pytree whose leaves lead with
the batch shape ([N] for single steps, [B, T] for sequences).
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, Union

import jax

Carry = Any  # a pytree of arrays with a leading batch shape
Policy = Callable[[Carry, jax.Array], jax.Array]  # (latent [N], key) -> action [N, A]


class Dynamics(Protocol):
  """A sequence model of the world: filtered on observations, rolled out in imagination."""

  feat_dim: int  # size of the last axis of `features`
  policy_feat_dim: int  # size of the last axis of `policy_features`
  # The names of the losses `observe` returns; each is scaled by the loss scale
  # of its name (the RSSM: "dyn" and "rep").
  loss_names: tuple[str, ...]
  # The features are [recurrent part | stochastic part] of these sizes (summing to
  # feat_dim): the image decoder projects the two differently.
  feat_split: tuple[int, int]

  def initial(self, batch_shape: tuple[int, ...]) -> Carry:
    """The carry before the first step of an episode."""

  def obs_step(self, carry: Carry, prev_action, embed, is_first, key) -> Carry:
    """One posterior step [N]: resets where `is_first`, then conditions on `embed`."""

  def observe(self, carry: Carry, prev_actions, embeds, is_first, key
              ) -> tuple[Carry, Carry, dict[str, jax.Array], dict[str, jax.Array]]:
    """The posterior over sequences [B, T].

    Returns the carry after the last step, the latents of every step [B, T],
    the model's own losses (each [B, T], named as their loss scales) and
    metrics.
    """

  def imagine(self, carry: Carry, policy: Union[Policy, jax.Array], horizon: int | None,
              key) -> tuple[Carry, jax.Array]:
    """Rolls the model forward from `carry` [N] without observations.

    `policy` is a function `(latent, key) -> action` or a sequence of actions
    [N, H] (then `horizon` is None or H). Returns the imagined latents [N, H]
    and the actions [N, H] taken at the states before them.
    """

  def entries(self, carry: Carry) -> Carry:
    """What replay stores with a step (leading batch shape kept): a pytree of arrays."""

  def truncate(self, entries: Carry) -> Carry:
    """The carry to continue from, given the stored entries of a step [N] (the
    reference's `truncate`): training windows start from their last context step's."""

  def starts(self, latents: Carry) -> Carry:
    """Every step of latents [B, T] as a start of imagination, flattened to [B * T]."""

  def features(self, latents: Carry) -> jax.Array:
    """The features [..., feat_dim] the world model's heads read."""

  def policy_features(self, latents: Carry) -> jax.Array:
    """The features [..., policy_feat_dim] the actor and critic read (a model
    with no reason to differ returns `features`)."""
