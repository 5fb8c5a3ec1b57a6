"""The host collect/train loop: act in the environments, fill replay, train at a ratio.

`Driver` keeps the reference's train-ratio semantics: `run.train_ratio`
replayed steps per environment step, one update replaying `batch_size x
batch_length` steps. With `run.replay_context` K > 0 it stores the policy's
replay entries (its latent after observing the step) with every step,
samples windows of K + batch_length steps and writes each update's new
entries back over the trained steps, as the reference does.

A driver runs one or several seeds in lockstep. Each seed is a `Lane`: its
own environments, replay, host RNG and counters, exactly those a run of that
seed alone has. With several seeds the agent states are stacked on a leading
axis and the algorithm's functions run under `jax.vmap`, so one compiled
program acts (and one updates) for every seed. The driver sees the agent
only through the algorithm contract (`wmrl/algorithm.py`). A whole run
(resume, evaluation, logging, saves) is `wmrl/run.py`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import numpy as np

from wmrl import envs
from wmrl.trees import arrays_tree, stack_trees, tree_arrays, unstack_tree
from wmrl.algorithm import Algorithm
from wmrl.config import RunConfig
from wmrl.draws import HostDraws, host_key, random_actions  # noqa: F401 (re-exported)
from wmrl.mesh import Placement
from wmrl.replay import Replay
from wmrl.spaces import ActionSpec


@dataclasses.dataclass
class Counters:
  """Progress of a run; what a resumed run continues from."""

  env_steps: int = 0
  updates: int = 0
  episodes: int = 0
  # Updates owed by the train ratio but not yet done (fractional).
  update_debt: float = 0.0
  last_eval: int = 0


class EnvironmentCrash(RuntimeError):
  """An environment raised; nothing of the step it was taking was kept."""

  def __init__(self, lane: int, env_steps: int, error: BaseException, message: str = ""):
    self.lane, self.env_steps, self.error = lane, env_steps, error
    super().__init__(message or f"{type(error).__name__}: {error}")


def policy_inputs(obs_keys, step: dict) -> dict:
  """What a policy reads from an environment step: the observation keys and
  `is_first` (not the reward or the other flags)."""
  return {**{key: step[key] for key in obs_keys}, "is_first": step["is_first"]}


class EpisodeTally:
  """The running score and length of each environment's episode; reports each
  episode that ends (`episode/score`, `episode/length`)."""

  def __init__(self, num_envs: int):
    self.scores = np.zeros(num_envs)
    self.lengths = np.zeros(num_envs, np.int64)

  def add(self, step: dict, on_episode: Callable[[dict], None]) -> int:
    """Counts `step` (reward, is_first, is_last [N]); returns how many episodes ended."""
    first = step["is_first"]
    self.scores = np.where(first, 0.0, self.scores + step["reward"])
    self.lengths = np.where(first, 0, self.lengths + 1)
    ended = np.flatnonzero(step["is_last"])
    for i in ended:
      on_episode({"episode/score": float(self.scores[i]), "episode/length": int(self.lengths[i])})
    return len(ended)


class Lane:
  """One seed's host side: its environments, replay, host RNG (saved in
  checkpoints), counters, the step not yet acted on, and the running episodes."""

  def __init__(self, env: envs.Env, replay: Replay, seed: int, counters: Counters | None = None,
               draws=None):
    self.env = env
    self.replay = replay
    self.seed = seed
    self.rng = np.random.default_rng(seed)
    # Where the policy keys, prefill actions and windows come from (wmrl/draws.py).
    self.draws = draws or HostDraws()
    self.counters = counters or Counters()
    self.step: dict | None = None  # the last env step, not yet acted on
    self.restarted = False  # `step` came from before a restart: the envs are new
    self.tally = EpisodeTally(env.num_envs)

  def next_step(self, action: np.ndarray) -> dict:
    """The environments' step after `step` and `action` (a reset after a restart)."""
    return self.env.reset() if self.restarted else self.env.step(action)

  def advance(self, stored: dict, step: dict, on_episode: Callable[[dict], None]) -> None:
    """Keeps `stored` (the acted-on step with its action and entries) and moves to `step`."""
    self.replay.add(stored)
    self.step, self.restarted = step, False
    self.counters.env_steps += self.env.num_envs
    self.counters.episodes += self.tally.add(step, on_episode)


class OneSeed:
  """The algorithm's functions as they are, on one seed's state."""

  def __init__(self, algo: Algorithm):
    self.policy_step, self.train_step = algo.policy_step, algo.train_step
    self.initial_carry, self.record_action = algo.initial_carry, algo.record_action
    self.replay_entries = algo.replay_entries

  @staticmethod
  def stack(trees: Sequence) -> object:
    return trees[0]

  @staticmethod
  def unstack(tree, num: int) -> list:
    return [tree]


def over_seeds(fn: Callable, seeds_batch: int = 0) -> Callable:
  """`fn` of one seed's arguments as a function of arguments stacked on a leading
  seed axis: all seeds vmapped at once (`seeds_batch` 0), or groups of
  `seeds_batch` vmapped, one group after another (`jax.lax.map`)."""
  if not seeds_batch:
    return jax.vmap(fn)
  return lambda *args: jax.lax.map(lambda one: fn(*one), args, batch_size=seeds_batch)


class SeedAxis:
  """The algorithm's functions under `jax.vmap`, on states stacked on a leading
  seed axis: one compiled program for every seed. The seeds are independent
  (the functions are pure), so each seed computes what it computes alone, up
  to the reduction order XLA picks for the batched programs. The train step
  vmaps `seeds_batch` seeds at a time (0: all); the policy step, small, all."""

  def __init__(self, algo: Algorithm, seeds_batch: int = 0):
    self._policy_steps = {mode: jax.jit(jax.vmap(functools.partial(algo.policy_step, mode=mode)))
                          for mode in ("train", "eval")}
    self.train_step = jax.jit(over_seeds(algo.train_step, seeds_batch), donate_argnums=0)
    self._initial_carry = algo.initial_carry
    self.record_action = jax.jit(jax.vmap(algo.record_action))
    self.replay_entries = jax.jit(jax.vmap(algo.replay_entries))

  def policy_step(self, state, obs, carry, key, mode="train"):
    return self._policy_steps[mode](state, obs, carry, key)

  def initial_carry(self, state, num_envs: int):
    return jax.vmap(lambda s: self._initial_carry(s, num_envs))(state)

  stack = staticmethod(stack_trees)
  unstack = staticmethod(unstack_tree)


class Driver:
  """Owns the lanes (one per seed), the agent state and the policy carry of a run.

  `seeds_axis` False: one lane and the algorithm's own state. True: the state
  stacked over the lanes (seed k at index k), the functions vmapped.
  """

  def __init__(self, algo: Algorithm, run: RunConfig, lanes: Sequence[Lane], state,
               seeds_axis: bool = False, placement: Placement | None = None):
    if not seeds_axis and len(lanes) != 1:
      raise ValueError(f"a driver without a seeds axis runs one lane, got {len(lanes)}")
    self.algo = algo
    self.run = run
    self.lanes = list(lanes)
    self.seeds_axis = seeds_axis
    # Where arrays live (wmrl/mesh.py): by default all on one device, moving nothing.
    self.placement = placement or Placement(None, None)
    self.state = self.placement.state(state)  # consumes `state`
    self._policy_state = None  # the state on the policy devices, where they are others
    self.calls = SeedAxis(algo, run.seeds_batch) if seeds_axis else OneSeed(algo)
    self._carry = None
    self.num_envs = self.lanes[0].env.num_envs
    self.sequence = run.batch_length + run.replay_context
    self.prefill = max(run.prefill, run.batch_size * self.sequence)
    # The sequences this process samples per update: all of the batch, or in
    # several processes its share; each process's replay then sees the ratio.
    self.batch_size = self.placement.local_batch_size(run.batch_size)
    self.updates_per_step = run.train_ratio / (self.batch_size * run.batch_length)

  @classmethod
  def single(cls, algo: Algorithm, run: RunConfig, env: envs.Env, state, replay: Replay,
             counters: Counters | None = None) -> "Driver":
    """A driver of one seed (`run.seed`)."""
    return cls(algo, run, [Lane(env, replay, run.seed, counters)], state)

  @property
  def counters(self) -> Counters:
    """The lanes' common counters (steps and updates; `episodes` is lane 0's)."""
    return self.lanes[0].counters

  def collect(self, on_episode: Callable[[int, dict], None]) -> None:
    """One step of every environment of every lane with the training policy.

    If an environment raises, nothing of this step is kept (no lane stores
    it, the carry and host RNGs stay as they were), so a checkpoint saved
    then holds everything up to it; the error is `EnvironmentCrash`.
    """
    lanes, calls = self.lanes, self.calls
    if self._carry is None:
      for lane in lanes:
        if lane.step is None:
          lane.step = lane.env.reset()
      # In several processes the train state spans them: this process's replica.
      self._carry = calls.initial_carry(self.placement.local(self.state), self.num_envs)
    rng_states = [lane.rng.bit_generator.state for lane in lanes]
    keys = calls.stack([lane.draws.policy_key(lane) for lane in lanes])
    obs = calls.stack([policy_inputs(lane.env.obs_spec, lane.step) for lane in lanes])
    action, carry = calls.policy_step(self.acting_state(), self.placement.policy(obs, self.seeds_axis),
                                      self._carry, keys, "train")
    actions = calls.unstack(np.asarray(action), len(lanes))
    if self.counters.env_steps < self.prefill:
      actions = [lane.draws.random_actions(lane, lane.env.act_spec, self.num_envs) for lane in lanes]
      # The carry remembers the executed action, as replay does.
      carry = calls.record_action(carry, calls.stack(actions))
    entries = calls.unstack(jax.device_get(calls.replay_entries(carry)), len(lanes)) \
        if self.run.replay_context else [{}] * len(lanes)
    steps = []
    for i, (lane, act) in enumerate(zip(lanes, actions)):
      try:
        steps.append(lane.next_step(act))
      except Exception as e:
        for lane, rng_state in zip(lanes, rng_states):
          lane.rng.bit_generator.state = rng_state
        raise EnvironmentCrash(i, self.counters.env_steps, e) from e
    self._carry = carry
    for i, (lane, act, entry, step) in enumerate(zip(lanes, actions, entries, steps)):
      lane.advance({**lane.step, "action": act, **entry}, step,
                   functools.partial(on_episode, i))

  def iterate(self, on_episode: Callable[[int, dict], None],
              on_update: Callable[[dict], None]) -> None:
    """One step of every environment, then the updates the train ratio owes."""
    self.collect(on_episode)
    self.train(on_update)

  def pending(self) -> list[dict[str, np.ndarray]]:
    """Each lane's step not yet acted on and policy carry (by tree path), for checkpoints."""
    if self._carry is None:
      return [{} for _ in self.lanes]
    carries = self.calls.unstack(jax.device_get(self._carry), len(self.lanes))
    return [{**{f"step/{k}": np.asarray(v) for k, v in lane.step.items()},
             **tree_arrays(carry, "carry")} for lane, carry in zip(self.lanes, carries)]

  def restore_pending(self, arrays: Sequence[dict[str, np.ndarray]]) -> None:
    """Continues from checkpoints' pending steps (one per lane) in freshly made environments.

    Each step is stored and acted on as it would have been; since the
    environments cannot continue its episodes, they are marked as ended
    there (a truncation, as by a time limit) and reset on the next step.
    """
    if not any(arrays):
      return
    if not all(arrays):
      raise ValueError("some lanes' checkpoints hold a pending step and others none")
    template = self.algo.initial_carry(self.lane_state(0), self.num_envs)
    carries = []
    for lane, saved in zip(self.lanes, arrays):
      step = {k[5:]: v for k, v in saved.items() if k.startswith("step/")}
      step["is_last"] = np.ones_like(step["is_last"])
      lane.step, lane.restarted = step, True
      carries.append(arrays_tree(template, saved, "carry"))
    self._carry = self.calls.stack(carries)

  def acting_state(self):
    """The state the policy acts with: the train state itself, or where the policy
    has devices of its own, a copy there made after the updates that changed it."""
    if self.placement.separate_policy:
      if self._policy_state is None:
        self._policy_state = self.placement.policy_state(self.state)
      return self._policy_state
    return self.state

  def lane_state(self, index: int):
    """Lane `index`'s agent state (the state itself without a seeds axis)."""
    state = self.placement.local(self.state)  # this process's replica
    if not self.seeds_axis:
      return state
    return jax.tree.map(lambda x: x[index], state)

  def train(self, on_update: Callable[[dict], None]) -> int:
    """Runs the updates the train ratio owes; returns how many ran. `on_update`
    gets each update's metrics (device arrays; [seeds] with a seeds axis)."""
    if self.counters.env_steps < self.prefill or not all(
        lane.replay.can_sample(self.sequence) for lane in self.lanes):
      return 0
    for lane in self.lanes:  # in lockstep: every lane owes the same
      lane.counters.update_debt += self.updates_per_step * self.num_envs
    done = 0
    while self.counters.update_debt >= 1.0:
      positions = [lane.draws.positions(lane, self.batch_size, self.sequence) for lane in self.lanes]
      batch = self.calls.stack([lane.replay.gather(p, self.sequence)
                                for lane, p in zip(self.lanes, positions)])
      batch = self.placement.batch(batch, self.seeds_axis)
      self.state, metrics, updates = self.calls.train_step(self.state, batch)
      self._policy_state = None  # stale: copied again when the policy next acts
      # Written before the next sample, which may overlap these windows; the
      # fetch waits for the update (the reference lags it by one update).
      updates = self.calls.unstack(self.placement.host_batch(updates, self.seeds_axis),
                                   len(self.lanes))
      for lane, p, u in zip(self.lanes, positions, updates):
        lane.replay.write(p, self.run.replay_context, u)
        lane.counters.update_debt -= 1.0
        lane.counters.updates += 1
      on_update(self.placement.local(metrics))
      done += 1
    return done
