"""One vector step's actions, as both drivers take them: the policy's, or random
ones during the prefill (remembered by the carry, as replay stores them), and
the replay entries to store with the step. The random draws are functions of
the seed's key root and the step counter (wmrl/draws.py), so a run draws the
same numbers whichever driver runs it, and a resumed run continues them."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from wmrl import draws
from wmrl.algorithms.contract import Algorithm
from wmrl.drivers.base import policy_inputs
from wmrl.drivers.schedule import Schedule
from wmrl.spaces import ActionSpec


@dataclasses.dataclass(frozen=True)
class Acting:
  """The acting rule of a run; called on one seed's arrays, it is pure (the
  fused driver scans it, the host driver jits it)."""

  algo: Algorithm
  schedule: Schedule
  obs_keys: tuple[str, ...]
  act_spec: ActionSpec
  store_entries: bool  # whether replay keeps the algorithm's entries (run.replay_context > 0)

  def __call__(self, state, step: dict, carry, root, vector_step) -> tuple[Any, Any, dict]:
    """The actions [N, dim] for `step` (vector step `vector_step` of the run,
    counted from 0), the carry after them, and the replay entries to store
    with `step` ({} where replay keeps none)."""
    algo, n = self.algo, self.schedule.num_envs
    obs = policy_inputs(self.obs_keys, step)
    action, carry = algo.policy_step(state, obs, carry, draws.policy_key(root, vector_step),
                                     "train")
    # Random actions until the prefill is done; the policy still observes every step.
    prefill = self.schedule.random_actions(vector_step)
    random = draws.prefill_actions(root, vector_step, self.act_spec, n)
    action = jnp.where(prefill, random, action)
    carry = jax.tree.map(lambda a, b: jnp.where(prefill, a, b),
                         algo.record_action(carry, random), carry)
    entries = algo.replay_entries(state, carry) if self.store_entries else {}
    return action, carry, entries
