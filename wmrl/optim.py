"""The reference optimiser as optax transformations.

chain(adaptive gradient clipping, RMS scaling, momentum, warmup learning rate):
normalising by the second moment *before* momentum is LaProp's order, which
stays stable with an epsilon as small as 1e-20.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from wmrl.algorithms.dreamerv3.config import OptimConfig
from wmrl.trees import path_name


def clip_by_agc(clip: float, min_norm: float = 1e-3) -> optax.GradientTransformation:
  """Scales each tensor's update down to at most `clip` times its parameter norm.

  A tensor is one of the reference's: a block-linear layer keeps its kernel as
  two arrays (`kernel` for each block's own inputs, `shared_kernel` for the
  inputs all blocks read, `wmrl/nets.py` BlockLinear), and the two are one
  tensor here, clipped by their joint norms.
  """

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("clip_by_agc needs the parameters: call update(grads, state, params)")
    paths = [_tensor_name(path) for path, _ in jax.tree_util.tree_leaves_with_path(params)]
    squares = lambda tree: [jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)]
    update_norms = _joint_norms(paths, squares(updates))
    param_norms = _joint_norms(paths, squares(params))
    factors = [1.0 / jnp.maximum(1.0, u / (clip * jnp.maximum(min_norm, p)))
               for u, p in zip(update_norms, param_norms)]
    leaves, treedef = jax.tree.flatten(updates)
    return jax.tree.unflatten(treedef, [x * f for x, f in zip(leaves, factors)]), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _tensor_name(path) -> str:
  """The reference tensor a parameter belongs to: its own path, with a
  block-linear layer's `shared_kernel` counted as part of its `kernel`."""
  name = path_name(path)
  return name.removesuffix("shared_kernel") + "kernel" if name.endswith("/shared_kernel") else name


def _joint_norms(names: list, squares: list) -> list:
  """The L2 norm of each leaf's tensor group (leaves with equal names, summed squares)."""
  totals = {}
  for name, square in zip(names, squares):
    totals[name] = totals[name] + square if name in totals else square
  return [jnp.sqrt(totals[name]) for name in names]


def scale_by_rms(beta: float, eps: float) -> optax.GradientTransformation:
  """Divides by the root of a bias-corrected EMA of squared gradients."""

  def init(params):
    return (jnp.zeros((), jnp.int32), jax.tree.map(lambda p: jnp.zeros_like(p, jnp.float32), params))

  def update(updates, state, params=None):
    step, nu = state
    step = optax.safe_int32_increment(step)
    nu = jax.tree.map(lambda v, u: beta * v + (1 - beta) * u * u, nu, updates)
    correction = 1 - beta ** step.astype(jnp.float32)
    updates = jax.tree.map(lambda u, v: u / (jnp.sqrt(v / correction) + eps), updates, nu)
    return updates, (step, nu)

  return optax.GradientTransformation(init, update)


def scale_by_momentum(beta: float) -> optax.GradientTransformation:
  """A bias-corrected EMA of the (already normalised) updates."""

  def init(params):
    return (jnp.zeros((), jnp.int32), jax.tree.map(lambda p: jnp.zeros_like(p, jnp.float32), params))

  def update(updates, state, params=None):
    step, mu = state
    step = optax.safe_int32_increment(step)
    mu = jax.tree.map(lambda m, u: beta * m + (1 - beta) * u, mu, updates)
    correction = 1 - beta ** step.astype(jnp.float32)
    return jax.tree.map(lambda m: m / correction, mu), (step, mu)

  return optax.GradientTransformation(init, update)


def learning_rate(config: OptimConfig) -> optax.Schedule:
  """Linear warmup from 0 over `warmup` updates, then constant."""
  if not config.warmup:
    return optax.constant_schedule(config.lr)
  return optax.linear_schedule(0.0, config.lr, config.warmup)


def scale_by_learning_rates(schedule: optax.Schedule,
                            factors: dict[str, float]) -> optax.GradientTransformation:
  """The learning-rate step, with the updates of named top-level parts (e.g.
  "actor") multiplied by a constant: per-network rates on one schedule. Its
  state is that of optax.scale_by_learning_rate, so checkpoints stay loadable
  whatever the factors."""
  base = optax.scale_by_learning_rate(schedule)

  def update(updates, state, params=None):
    updates, state = base.update(updates, state, params)
    if factors:
      updates = {name: jax.tree.map(lambda u, f=factors.get(name, 1.0): u * f, part)
                 for name, part in updates.items()}
    return updates, state

  return optax.GradientTransformation(base.init, update)


def make_optimizer(config: OptimConfig) -> optax.GradientTransformation:
  for name in ("lr", "actor_lr", "critic_lr"):
    if getattr(config, name) < 0:
      raise ValueError(f"optim.{name} must not be negative, got {getattr(config, name)}")
  factors = {name: lr / config.lr for name, lr in (("actor", config.actor_lr),
                                                   ("critic", config.critic_lr)) if lr and config.lr}
  return optax.chain(
      clip_by_agc(config.agc, config.agc_min) if config.agc else optax.identity(),
      scale_by_rms(config.beta2, config.eps),
      scale_by_momentum(config.beta1),
      scale_by_learning_rates(learning_rate(config), factors),
  )
