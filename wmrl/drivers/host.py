"""The host driver: any environment (Gymnasium, DMC, your own) stepped in Python,
a host replay per seed, and the policy and updates as jitted calls.

Each vector step: the acting rule (wmrl/drivers/acting.py) in one jitted call
for every seed, the environments stepped on the host, the step stored in
replay with its action and the algorithm's replay entries; then the updates
the schedule owes, each taking windows from every seed's replay as
wmrl/drivers/selection.py selects them (the online queue, then the draws) and
writing the algorithm's replay updates (its posteriors) back before the next.

Devices (wmrl/mesh.py): the train state replicated over the train devices, the
batch split over them; the policy acts on its own devices where it has them,
with a copy of the state made after the updates that changed it.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import numpy as np

from wmrl import draws
from wmrl.algorithms.contract import Algorithm
from wmrl.config import ReplayConfig, RunConfig
from wmrl.drivers import selection as select
from wmrl.drivers.acting import Acting
from wmrl.drivers.base import (EnvironmentCrash, EpisodeTally, OnEpisode, OnUpdate, SeedStart,
                               Snapshot, any_pending, pending_arrays, pending_step,
                               policy_inputs, saved_counters)
from wmrl.drivers.schedule import Counters, Schedule
from wmrl.drivers.seeds import Seeds
from wmrl.mesh import Placement
from wmrl.replay import Positions, Replay


class HostDriver:
  """Steps host environments and trains (module doc); one `SeedStart` per seed,
  stacked on a seeds axis where `seeds_axis`."""

  def __init__(self, algo: Algorithm, run: RunConfig, starts: Sequence[SeedStart],
               seeds_axis: bool = False, placement: Placement | None = None,
               selection: ReplayConfig = ReplayConfig()):
    self.algo, self.run, self.selection = algo, run, selection
    self.seeds = Seeds(len(starts), seeds_axis, run.seeds_batch)
    self.envs = [start.env for start in starts]
    env = self.envs[0]
    self.num_envs = env.num_envs
    # Where arrays live: by default all on one device, moving nothing.
    self.placement = placement or Placement(None, None)
    self.schedule = Schedule.from_run(run, self.num_envs, self.placement.processes)
    self.batch_size = self.placement.local_batch_size(run.batch_size)  # this process's share
    self.replays = [start.replay if start.replay is not None
                    else Replay(run.replay_capacity, self.num_envs, seed=start.seed)
                    for start in starts]
    self.roots = self.seeds.stack([draws.seed_root(start.seed) for start in starts])
    self.counters = dataclasses.replace(starts[0].counters or Counters())
    self.tallies = [EpisodeTally(self.num_envs, start.episodes) for start in starts]
    self.state = self.placement.state(self.seeds.stack([start.state for start in starts]))
    self._policy_state = None  # the state on the policy devices, where they are others
    acting = Acting(algo, self.schedule, tuple(env.obs_spec), env.act_spec,
                    run.replay_context > 0)

    def act(state, obs, carry, roots, vector_step):  # the step counter shared by the seeds
      one = lambda *seed_args: acting(*seed_args, vector_step)
      return self.seeds.map(one)(state, obs, carry, roots)

    def windows(roots, update, count):
      one = lambda root: draws.window_indices(root, update, self.batch_size, count)
      return self.seeds.map(one)(roots)

    def selection_keys(roots, update):
      return self.seeds.map(lambda root: draws.selection_key(root, update))(roots)

    self._act, self._windows = jax.jit(act), jax.jit(windows)
    self._selection_keys = jax.jit(selection_keys)
    self._recency = select.recency_table(selection, run.replay_capacity)
    # Stored with each step where windows are drawn by priority (wmrl/drivers/selection.py).
    self._priority = ({"priority": np.full(self.num_envs, selection.prio.initial, np.float32)}
                      if selection.fracs.priority > 0 else {})
    self.train_step = self.seeds.train_step(algo.train_step)  # the compiled update
    self._steps: list[dict] | None = None  # each seed's last step, not yet acted on
    self._restarted = [False] * len(starts)  # by seed: its steps are cut, its envs new
    self._carry = None
    self._restore_pending([start.pending for start in starts])

  @classmethod
  def single(cls, algo: Algorithm, run: RunConfig, env, state, replay: Replay | None = None,
             counters: Counters | None = None,
             selection: ReplayConfig = ReplayConfig()) -> "HostDriver":
    """A driver of one seed, `run.seed`."""
    return cls(algo, run, [SeedStart(run.seed, env, state, replay, counters)],
               selection=selection)

  @property
  def episodes(self) -> list[int]:
    return [tally.episodes for tally in self.tallies]

  # Collecting.

  def iterate(self, on_episode: OnEpisode, on_update: OnUpdate) -> None:
    """One step of every environment, then the updates the train ratio owes."""
    self.collect(on_episode)
    self.train(on_update)

  def collect(self, on_episode: OnEpisode) -> None:
    """One step of every environment of every seed.

    If an environment raises, nothing of this step is kept (no replay stores
    it, the carry stays as it was), so a checkpoint saved then holds
    everything up to it; the error is `EnvironmentCrash`.
    """
    if self._carry is None:
      self._steps = [env.reset() for env in self.envs]
      # In several processes the train state spans them: this process's replica.
      self._carry = self.seeds.map(lambda s: self.algo.initial_carry(s, self.num_envs))(
          self.placement.local(self.state))
    obs = self.seeds.stack([policy_inputs(env.obs_spec, step)
                            for env, step in zip(self.envs, self._steps)])
    vector_step = self.counters.env_steps // self.num_envs
    action, carry, entries = self._act(self._acting_state(),
                                       self.placement.policy(obs, self.seeds.axis),
                                       self._carry, self.roots, vector_step)
    actions = self.seeds.unstack(np.asarray(action))
    entries = self.seeds.unstack(jax.device_get(entries))
    nexts = []
    for i, (env, act) in enumerate(zip(self.envs, actions)):
      try:
        nexts.append(env.reset() if self._restarted[i] else env.step(act))
      except Exception as e:
        raise EnvironmentCrash(i, self.counters.env_steps, e) from e
    self._carry, self._restarted = carry, [False] * len(self.envs)
    self.counters.env_steps += self.num_envs
    for i, (replay, step, act, entry, following) in enumerate(
        zip(self.replays, self._steps, actions, entries, nexts)):
      replay.add({**step, "action": act, **entry, **self._priority})
      self.tallies[i].add(following, functools.partial(on_episode, i))
    self._steps = nexts

  def _acting_state(self):
    """The state the policy acts with: the train state itself, or where the policy
    has devices of its own, a copy there made after the updates that changed it."""
    if self.placement.separate_policy:
      if self._policy_state is None:
        self._policy_state = self.placement.policy_state(self.state)
      return self._policy_state
    return self.state

  # Training.

  def train(self, on_update: OnUpdate) -> int:
    """Runs the updates the schedule owes; returns how many ran."""
    c = self.counters
    updates, c.update_debt = self.schedule.owe(c.update_debt, c.env_steps)
    for _ in range(updates):
      self.update(on_update)
    return updates

  def update(self, on_update: OnUpdate) -> None:
    """One update from windows of every seed's replay, written back after it."""
    c = self.counters
    stored = len(self.replays[0]) // self.num_envs
    window, count = self.schedule.window, self.num_envs * (stored - self.schedule.window + 1)
    indices = self.seeds.unstack(np.asarray(self._windows(self.roots, c.updates, count)))
    positions = [replay.positions(i, window) for replay, i in zip(self.replays, indices)]
    time, queued = c.env_steps // self.num_envs, 0
    if self.selection.online:  # the seeds' streams share their times: one queue for all
      for k, p in enumerate(positions):
        positions[k], taken, queued = select.take_online(p, time, stored, c.online_taken, window,
                                                         self.num_envs)
      c.online_taken = int(taken)
    if select.mixed(self.selection):
      keys = self.seeds.unstack(self._selection_keys(self.roots, c.updates))
      for k, replay in enumerate(self.replays):
        positions[k] = self._mix(replay, keys[k], positions[k], queued, time, stored)
    batch = self.seeds.stack([replay.gather(p, window)
                              for replay, p in zip(self.replays, positions)])
    batch = self.placement.batch(batch, self.seeds.axis)
    self.state, metrics, written = self.train_step(self.state, batch)
    self._policy_state = None  # stale: copied again when the policy next acts
    # Written before the next sample, which may overlap these windows; the
    # fetch waits for the update (the reference lags it by one update).
    written = self.seeds.unstack(self.placement.host_batch(written, self.seeds.axis))
    for replay, p, values in zip(self.replays, positions, written):
      replay.write(p, self.run.replay_context, values)
    c.updates += 1
    on_update(self.placement.local(metrics))

  def _mix(self, replay: Replay, key, positions, queued: int, time: int, stored: int):
    """The rows the queue left, drawn by the selectors of `replay.fracs`; with
    `zero_on_sample`, the priorities of the windows drawn by priority zeroed in
    `replay` (wmrl/drivers/selection.py)."""
    window, prio = self.schedule.window, self.selection.prio
    priorities = None
    if self._priority:
      held = replay.streams(("priority",))["priority"]
      priorities = np.zeros((self.num_envs, select.padded_columns(stored)), np.float32)
      priorities[:, :stored] = held
    mixed, by_priority, _ = select.mix(key, positions, queued, time, stored, priorities,
                                       self._recency, replay=self.selection, length=window,
                                       num_envs=self.num_envs)
    mixed = Positions(np.asarray(mixed.envs), np.asarray(mixed.starts))
    if self._priority and prio.zero_on_sample:
      zeros = np.zeros((len(mixed.starts), window), np.float32)
      replay.write(select.outside(mixed, np.asarray(by_priority), window), 0, {"priority": zeros})
    return mixed

  # What the run reads.

  def agent_state(self, index: int):
    return self.seeds.pick(self.placement.local(self.state), index)  # this process's replica

  def replay_size(self, index: int) -> int:
    return len(self.replays[index])

  def sample(self, index: int, batch_size: int, length: int, rng: np.random.Generator):
    replay = self.replays[index]
    return replay.sample(batch_size, length, rng=rng) if replay.can_sample(length) else None

  def snapshot(self, index: int) -> Snapshot:
    pending = {}
    if self._carry is not None:
      carry = self.seeds.pick(jax.device_get(self._carry), index)
      pending = pending_arrays(self._steps[index], carry)
    return Snapshot(self.replays[index], saved_counters(self.counters, self.episodes[index]),
                    pending)

  def _restore_pending(self, saved: Sequence[dict[str, np.ndarray]]) -> None:
    """Continues from checkpoints' pending steps in freshly made environments. A
    seed whose pending steps all start episodes (it stopped between episodes)
    starts them in its new environments, reset now, and continues as it would
    have. Otherwise each step is stored and acted on as it would have been, its
    episodes cut there (the environments cannot continue them) and reset on the
    next step."""
    if not any_pending(saved):
      return
    template = self.algo.initial_carry(self.agent_state(0), self.num_envs)
    self._steps, carries, self._restarted = [], [], []
    for env, arrays in zip(self.envs, saved):
      # Cutting a first step would end an episode of no steps and reset once more.
      between = bool(np.all(arrays["step/is_first"]))
      step, carry = pending_step(arrays, template, cut=not between)
      self._steps.append(env.reset() if between else step)
      carries.append(carry)
      self._restarted.append(not between)
    self._carry = self.seeds.stack(carries)
