"""Pytrees as named arrays and back, by tree path: how carries and states are saved.

Saving by tree path, not by field name, means a new field of a state or a
carry is saved without anyone listing it, and a renamed one is refused on
restore with its name.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def path_name(path) -> str:
  """A tree path as `a/b/0`: dict keys, attribute names and sequence indices."""
  parts = []
  for entry in path:
    for attr in ("key", "name", "idx"):
      if hasattr(entry, attr):
        parts.append(str(getattr(entry, attr)))
        break
    else:
      parts.append(str(entry))
  return "/".join(parts)


def is_key(x) -> bool:
  """A typed PRNG key array (saved as its raw key data)."""
  return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def tree_named(tree, prefix: str) -> dict:
  """A pytree's leaves as they are (device arrays stay on the device, traced ones
  traced), named `prefix/<tree path>` as `tree_arrays` names them."""
  return {f"{prefix}/{path_name(path)}": leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def tree_arrays(tree, prefix: str) -> dict[str, np.ndarray]:
  """A pytree's leaves as host arrays named `prefix/<tree path>`; typed keys as key data."""
  return {name: np.asarray(jax.random.key_data(leaf) if is_key(leaf) else leaf)
          for name, leaf in tree_named(tree, prefix).items()}


def arrays_tree(template, arrays: dict, prefix: str):
  """The inverse of `tree_arrays`: `template`'s structure filled from `arrays`
  (typed keys are wrapped again where the template has them)."""
  paths, treedef = jax.tree_util.tree_flatten_with_path(template)
  names = [f"{prefix}/{path_name(path)}" for path, _ in paths]
  missing = [n for n in names if n not in arrays]
  if missing:
    raise KeyError(f"no saved arrays for {', '.join(missing[:5])}"
                   + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
  leaves = [jax.random.wrap_key_data(arrays[n]) if is_key(leaf) else arrays[n]
            for n, (_, leaf) in zip(names, paths)]
  return jax.tree_util.tree_unflatten(treedef, leaves)


def tree_shapes(tree, prefix: str) -> dict[str, jax.ShapeDtypeStruct]:
  """The shapes and dtypes `tree_arrays` gives for `tree` (a state or its eval_shape)."""
  def shape(leaf):
    if is_key(leaf):
      leaf = jax.eval_shape(jax.random.key_data, leaf)
    return jax.ShapeDtypeStruct(np.shape(leaf), leaf.dtype)
  return {f"{prefix}/{path_name(path)}": shape(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def stack_trees(trees):
  """Pytrees of one structure stacked leaf by leaf on a new leading axis: host
  arrays with NumPy (no device work), device arrays and typed keys with JAX."""
  def stack(*leaves):
    if all(isinstance(leaf, (np.ndarray, np.generic)) for leaf in leaves):
      return np.stack(leaves)
    return jnp.stack(leaves)
  return jax.tree.map(stack, *trees)


def unstack_tree(tree, num: int) -> list:
  """The inverse of `stack_trees`: `num` pytrees, the leading axis's entries."""
  return [jax.tree.map(lambda leaf: leaf[i], tree) for i in range(num)]
