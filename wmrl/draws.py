"""Where a run's random draws come from: the policy's keys, the random prefill
actions and the replayed windows, each a pure function of the seed's key root
and a counter (the vector step for the first two, the update for the windows).

Both drivers draw these: the fused driver inside its compiled iteration with
nothing carried, the host driver from its counters; so the same seed makes
the same run under either driver (tests/test_fused.py), and a resumed run
continues the very draws from its saved counters.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from wmrl.spaces import ActionSpec

_STREAMS = {"policy": 0, "prefill": 1, "windows": 2, "selection": 3}


def seed_root(seed: int) -> np.ndarray:
  """The root of a seed's draws (apart from the agent's own `key(seed)`), as raw
  uint32 key data on the host, so it goes to whichever devices act."""
  return np.asarray(jax.random.fold_in(jax.random.PRNGKey(seed), 0x5EED))


def _key(root, stream: str, counter) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(root, _STREAMS[stream]), counter)


def policy_key(root, vector_step) -> jax.Array:
  """The policy's key (raw uint32 [2]) at vector step `vector_step` of the run."""
  return _key(root, "policy", vector_step)


def prefill_actions(root, vector_step, spec: ActionSpec, num: int) -> jax.Array:
  """Uniform random model-format actions [num, dim] at vector step `vector_step`."""
  key = _key(root, "prefill", vector_step)
  if not spec.discrete:
    return jax.random.uniform(key, (num, spec.dim), jnp.float32, -1.0, 1.0)
  keys = jax.random.split(key, len(spec.sizes))
  return jnp.concatenate([jax.nn.one_hot(jax.random.randint(k, (num,), 0, n), n, dtype=jnp.float32)
                          for k, n in zip(keys, spec.sizes)], -1)


def window_indices(root, update, batch_size: int, count) -> jax.Array:
  """`batch_size` flat window indices uniform in [0, count) for update `update`
  (`Replay.positions` says which window an index names)."""
  return jax.random.randint(_key(root, "windows", update), (batch_size,), 0, count)


def selection_key(root, update) -> jax.Array:
  """The key of update `update`'s draws beyond the uniform ones: which selector
  draws each window, and the recency and priority selectors' own draws
  (wmrl/drivers/selection.py)."""
  return _key(root, "selection", update)


def host_key(rng: np.random.Generator) -> np.ndarray:
  """Raw uint32 key data drawn from a numpy generator on the host (evaluation
  episodes, benchmarks): no device work per step."""
  return rng.integers(0, 2**32, 2, dtype=np.uint32)
