"""Pytrees to named arrays and back: how checkpoints save states and carries."""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from wmrl.trees import arrays_tree, path_name, tree_arrays, tree_shapes


class Pair(NamedTuple):
  low: jax.Array
  high: jax.Array


@struct.dataclass
class State:
  params: dict
  norm: Pair
  key: jax.Array
  note: str = struct.field(pytree_node=False, default="static")


def _state(**extra):
  return State(params={"net": {"layers": [jnp.ones((2, 3)), jnp.zeros(3)]}, **extra},
               norm=Pair(jnp.float32(1.5), jnp.float32(2.5)), key=jax.random.key(4))


def test_arrays_are_named_by_tree_path_and_come_back():
  state = _state()
  arrays = tree_arrays(state, "state")
  assert sorted(arrays) == ["state/key", "state/norm/high", "state/norm/low",
                            "state/params/net/layers/0", "state/params/net/layers/1"]
  assert arrays["state/key"].dtype == np.uint32  # a typed key is saved as its key data
  back = arrays_tree(jax.eval_shape(lambda: state), arrays, "state")
  assert back.note == "static" and jax.tree.structure(back) == jax.tree.structure(state)
  np.testing.assert_array_equal(jax.random.key_data(back.key), jax.random.key_data(state.key))
  np.testing.assert_array_equal(back.params["net"]["layers"][0], np.ones((2, 3)))
  assert {n: (s.shape, s.dtype) for n, s in tree_shapes(state, "state").items()} == {
      n: (a.shape, a.dtype) for n, a in arrays.items()}


def test_a_new_field_is_saved_without_listing_it_and_missing_ones_are_named():
  grown = _state(extra=jnp.arange(4.0))  # a field nobody told the checkpoint about
  assert "state/params/extra" in tree_arrays(grown, "state")
  with pytest.raises(KeyError, match="state/params/extra"):
    arrays_tree(grown, tree_arrays(_state(), "state"), "state")


def test_path_names():
  paths = [p for p, _ in jax.tree_util.tree_leaves_with_path({"a": [1, Pair(2, 3)]})]
  assert [path_name(p) for p in paths] == ["a/0", "a/1/low", "a/1/high"]
