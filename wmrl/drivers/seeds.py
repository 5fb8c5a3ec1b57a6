"""How a driver holds its seeds: one seed's trees as they are, or several seeds'
stacked on a leading axis (seed k at index k) with the functions over them
vmapped, so one compiled program acts, or updates, for every seed.

The seeds are independent (the functions are pure), so each computes what it
computes alone, up to the reduction order XLA picks for batched programs.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax

from wmrl.trees import stack_trees, unstack_tree


class Seeds:
  """`count` seeds on a leading axis (`axis`), or one seed without it.
  `batch` seeds are vmapped at a time where a function runs over the axis
  (`run.seeds_batch`; 0: all at once)."""

  def __init__(self, count: int, axis: bool, batch: int = 0):
    if not axis and count != 1:
      raise ValueError(f"without a seeds axis a driver runs one seed, got {count}")
    self.count, self.axis, self.batch = count, axis, batch

  def stack(self, trees: Sequence):
    """The seeds' trees as the driver holds them (`pick`'s inverse)."""
    return stack_trees(trees) if self.axis else trees[0]

  def pick(self, tree, index: int):
    """Seed `index`'s part of a tree the driver holds."""
    return jax.tree.map(lambda x: x[index], tree) if self.axis else tree

  def unstack(self, tree) -> list:
    """Every seed's part of a tree the driver holds, in order."""
    return unstack_tree(tree, self.count) if self.axis else [tree]

  def map(self, fn: Callable) -> Callable:
    """`fn` of one seed's arguments as a function of the driver's trees: on the
    axis, every argument stacked, `batch` seeds vmapped at a time (the groups
    one after another in one program, `jax.lax.map`); `fn` itself without it."""
    if not self.axis:
      return fn
    return over_seeds(fn, self.batch)

  def train_step(self, train_step: Callable) -> Callable:
    """An algorithm's (jitted) train step on the driver's states: one seed's as it
    is, the seeds' on the axis compiled as one program that donates the states."""
    if not self.axis:
      return train_step
    return jax.jit(self.map(train_step), donate_argnums=0)


def over_seeds(fn: Callable, batch: int = 0) -> Callable:
  """`fn` of one seed's arguments as a function of arguments stacked on a leading
  seed axis: all vmapped at once (`batch` 0), or `batch` at a time, one group
  after another (`jax.lax.map`)."""
  if not batch:
    return jax.vmap(fn)
  return lambda *args: jax.lax.map(lambda one: fn(*one), args, batch_size=batch)
