"""The metrics of a run's updates between two records: gathered as device arrays,
fetched and averaged with one transfer, and policed on the way: a NaN or
infinite value stops the run before it is saved over the last good state."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from wmrl.trees import is_key, path_name


class NonFiniteError(RuntimeError):
  """A loss or parameter became NaN or infinite."""


class MetricBuffer:
  """Collects per-update metrics (device arrays; [seeds] with a seeds axis) and
  averages them with one host transfer; checks every value is finite on the way."""

  def __init__(self, seeds: list[int] | None = None):
    self.seeds = seeds  # the seed of each entry of a seeds axis; None: no such axis
    self._items: list[tuple[int, dict]] = []

  def add(self, env_steps: int, metrics: dict) -> None:
    self._items.append((env_steps, metrics))

  def check(self) -> list[dict]:
    """Fetches the pending metrics; raises at the first non-finite value."""
    items = jax.device_get([m for _, m in self._items])
    for (step, _), metrics in zip(self._items, items):
      for name in sorted(metrics):
        values = np.asarray(metrics[name]).reshape(-1)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
          seed = f" in seed {self.seeds[bad[0]]}" if self.seeds else ""
          raise NonFiniteError(f"metric '{name}' became {float(values[bad[0]])} at environment "
                               f"step {step}{seed}; the run stops here, and its last checkpoint "
                               "holds the last good state")
    return items

  def results(self) -> list[dict[str, float]]:
    """The pending metrics' means, one dict per seed (one without a seeds axis)."""
    items = self.check()
    self._items = []
    count = len(self.seeds) if self.seeds else 1
    if not items:
      return [{} for _ in range(count)]
    means = {k: np.mean([np.asarray(m[k]).reshape(-1) for m in items], 0) for k in items[0]}
    return [{k: float(v[i]) for k, v in means.items()} for i in range(count)]


def check_state_finite(state, env_steps: int, whose: str = "") -> None:
  """Refuses a state with a NaN or inf in any floating-point array."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    if is_key(leaf):
      continue
    # jnp's floating covers bfloat16, whose numpy dtype kind is "V", not "f".
    if not jnp.issubdtype(leaf.dtype, jnp.floating):
      continue
    values = np.asarray(leaf)
    if values.dtype.kind != "f":  # bfloat16 and kin: numpy's isfinite takes float32
      values = values.astype(np.float32)
    if not np.isfinite(values).all():
      raise NonFiniteError(f"state array '{path_name(path)}'{whose} holds NaN or inf at "
                           f"environment step {env_steps}; not saving it over the last good "
                           "checkpoint")
