"""The algorithm contract: what the drivers, evaluation, checkpoints, benchmarks and reports see.

An algorithm is a frozen bundle of pure functions over its own state pytree
and policy carry. Nothing outside the algorithm's module reads their fields:
checkpoints save the state pytree as it is, and the driver saves the carry by
tree path. DreamerV3 (wmrl/algorithms/dreamerv3) is the first implementation;
the registry (wmrl/algorithms/__init__.py) names them for `Config.algorithm`,
and docs/adding-an-algorithm.md walks through adding one.

    state = algo.init(key, obs_spec, act_spec, config)
    carry = algo.initial_carry(state, num_envs)
    action, carry = algo.policy_step(state, obs, carry, key, "train")
    entries = algo.replay_entries(state, carry)            # stored with the step it observed
    state, metrics, updates = algo.train_step(state, batch)    # donates `state`
    replay.write(positions, context, updates)         # the batch's windows, after the context
    videos = algo.report(state, batch, key)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

State = Any  # the algorithm's state pytree (parameters, optimiser state, key, counters)
Carry = Any  # what the policy remembers between environment steps, a pytree [N, ...]


@dataclasses.dataclass(frozen=True)
class Algorithm:
  """The functions one algorithm provides.

  - `init(key, obs_spec, act_spec, config) -> state`: builds the networks and
    optimiser state for the given spaces; pure given the key, so
    `jax.eval_shape` gives the state's shapes without computing it.
  - `initial_carry(state, num_envs) -> carry`: the policy's memory before any step.
  - `policy_step(state, obs, carry, key, mode) -> (action, carry)`: one action
    [N, act_spec.dim] per environment from `obs` (the observation keys and
    `is_first` [N]); `mode` is "train" (sample) or "eval" (the mode).
  - `record_action(carry, action) -> carry`: the carry after the environments
    executed `action` instead of the policy's own (random prefill actions), so
    the carry agrees with what replay stores.
  - `replay_entries(state, carry) -> {name: array [N, ...]}`: what replay keeps with
    each step besides the step itself, where `run.replay_context` > 0: the
    carry's part that training windows start from, by tree path (DreamerV3:
    `latent/deter`, `latent/stoch`). Device arrays; the driver fetches them.
  - `train_step(state, batch) -> (state, metrics, replay_updates)`: one update
    from a replayed batch [B, context + T, ...] (with the replay entries of
    every step where context > 0), a `jax.jit` function that donates the
    input state (`donate_argnums=0`): the fused driver scans it inside its
    program, and `wmrl bench` times it from its `.trace(...)` / `.lower()`
    (compile time, XLA's FLOPs). Metrics are scalars named `part/name`.
    `replay_updates` holds new values [B, T, ...] of replay entries for the T
    trained steps, which the driver writes back over the stored ones at
    window offset `context` ({} where there is nothing to write); where the
    run draws windows by priority (`config.replay`, docs/replay.md), it may
    hold the steps' new priorities [B, T] as `priority`.
  - `report(state, batch, key) -> {name: uint8 frames [B, T, H, W, 3]}`:
    videos of what the model has learned ({} where there is nothing to show).
  - `param_counts(state) -> {part: count}`: parameter counts by part, with "total".
  """

  name: str
  init: Callable[..., State]
  initial_carry: Callable[[State, int], Carry]
  policy_step: Callable[..., tuple[Any, Carry]]
  record_action: Callable[[Carry, Any], Carry]
  replay_entries: Callable[[State, Carry], dict[str, Any]]
  train_step: Callable[..., tuple[State, dict, dict[str, Any]]]
  report: Callable[..., dict]
  param_counts: Callable[[State], dict[str, int]]


def entry_specs(algo: Algorithm, state) -> dict[str, jax.ShapeDtypeStruct]:
  """The shape and dtype of one step of each of `algo`'s replay entries (what
  the driver stores with each step where `run.replay_context` > 0), computed
  without running anything; `state` may be a `jax.eval_shape` of one."""
  shapes = jax.eval_shape(lambda s: algo.replay_entries(s, algo.initial_carry(s, 1)), state)
  return {name: jax.ShapeDtypeStruct(x.shape[1:], x.dtype) for name, x in shapes.items()}
