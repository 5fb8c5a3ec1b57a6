"""The fused driver: acting, stepping JAX environments, storing and training as
one compiled program per iteration.

Where the environment is written in JAX (wmrl/jaxenvs), nothing needs to
leave the device. One iteration runs K steps of all N environments under
`lax.scan` (the acting rule of wmrl/drivers/acting.py on the device, each
step added to the device replay, wmrl/device_replay.py), then U updates
under another `lax.scan`, each taking its windows from the device replay as
wmrl/drivers/selection.py selects them and writing its posteriors back
before the next. Only the episodes' rewards
and flags [K, N] and the updates' metrics [U] come back to the host.

The train ratio is the `Schedule` both drivers follow: the host counts, step
by step, the updates the iteration's steps owe, and runs them at its end. U
is a static number of the compiled program: K is chosen so that each
iteration owes a whole number of updates where the ratio allows (one
program then trains; otherwise a second one for the iterations that owe one
more), so the long-run ratio is exact. Prefill iterations (random actions,
no updates) are a third, small program.

Seeds are one more array axis (`run.seeds`, wmrl/drivers/seeds.py): every part
of the state stacked over them and the iteration vmapped, its key roots an
argument; the seeds share the schedule, each keeps its own episodes, replay
and draws. The draws are those of the host driver (wmrl/draws.py), so a host
driver makes the same run where its updates fall on the same steps, as they
do when K * N steps owe exactly one update (tests/test_fused.py).
"""
from __future__ import annotations

import dataclasses
import fractions
import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from wmrl import draws
from wmrl.algorithms.contract import Algorithm, entry_specs
from wmrl.config import ReplayConfig, RunConfig
from wmrl.device_replay import DeviceReplay, ReplayState
from wmrl.drivers import selection as select
from wmrl.drivers.acting import Acting
from wmrl.drivers.base import (EpisodeTally, OnEpisode, OnUpdate, SeedStart, Snapshot,
                               any_pending, pending_arrays, pending_step, saved_counters)
from wmrl.drivers.schedule import Counters, Schedule
from wmrl.drivers.seeds import Seeds
from wmrl.jaxenvs import EnvState, JaxEnv
from wmrl.replay import Replay
from wmrl.trees import arrays_tree


class FusedState(NamedTuple):
  """Everything one iteration reads and writes, on the device."""

  agent: Any  # the algorithm's state
  env: EnvState
  step: dict  # the environments' last step, not yet acted on [N, ...]
  carry: Any  # the policy's carry [N, ...]
  replay: ReplayState


def steps_per_iteration(run: RunConfig, num_envs: int) -> int:
  """The fewest vector steps that owe a whole number (at least one) of updates:
  `run.fused_steps` where set, else from the train ratio (K * N * ratio a
  multiple of batch_size * batch_length)."""
  if run.fused_steps:
    return run.fused_steps
  owed = fractions.Fraction(run.train_ratio).limit_denominator(10**6) * num_envs / (
      run.batch_size * run.batch_length)
  return max(1, owed.denominator)


class FusedDriver:
  """Runs a `JaxEnv` and the algorithm as one program per iteration (module doc);
  one `SeedStart` per seed (their `env` a host view of `env`, as
  `wmrl.envs.from_config` makes for JAX ids), stacked where `seeds_axis`."""

  def __init__(self, algo: Algorithm, run: RunConfig, env: JaxEnv, starts: Sequence[SeedStart],
               seeds_axis: bool = False, selection: ReplayConfig = ReplayConfig()):
    self.algo, self.run, self.env, self.selection = algo, run, env, selection
    self.seeds = Seeds(len(starts), seeds_axis, run.seeds_batch)
    self.num_envs = env.num_envs
    self.schedule = Schedule.from_run(run, self.num_envs)
    self.steps = steps_per_iteration(run, self.num_envs)
    self.counters = dataclasses.replace(starts[0].counters or Counters())
    self.tallies = [EpisodeTally(self.num_envs, start.episodes) for start in starts]
    one = starts[0].state
    entries = entry_specs(algo, one) if run.replay_context else {}
    # The most steps per stream the run adds: its last iteration may pass run.steps.
    iterations = -(-run.steps // (self.steps * self.num_envs))
    saved_time = max((start.replay.steps_added // self.num_envs for start in starts
                      if start.replay is not None), default=0)
    # Stored with each step where windows are drawn by priority (wmrl/drivers/selection.py).
    priority = ({"priority": jax.ShapeDtypeStruct((), jnp.float32)}
                if selection.fracs.priority > 0 else {})
    self._recency = select.recency_table(selection, run.replay_capacity)
    self.replay = DeviceReplay(_step_specs(env) | entries | priority, self.num_envs,
                               run.replay_capacity,
                               max_time=max(iterations * self.steps, saved_time))
    self.replay.check_fits(copies=len(starts))
    replays = [self.replay.from_host(start.replay) if start.replay is not None
               else self.replay.init() for start in starts]
    reset = jax.jit(env.reset)
    env_states, steps = zip(*(reset(start.seed) for start in starts))
    self.roots = self.seeds.stack([draws.seed_root(start.seed) for start in starts])
    carry = algo.initial_carry(one, self.num_envs)
    self.fused = FusedState(self.seeds.stack([start.state for start in starts]),
                            self.seeds.stack(env_states), self.seeds.stack(steps),
                            self.seeds.stack([carry] * len(starts)), self.seeds.stack(replays))
    self._acting = Acting(algo, self.schedule, tuple(env.obs_spec), env.act_spec,
                          run.replay_context > 0)
    self._programs: dict[int, Callable] = {}
    self._restore_pending([start.pending for start in starts])

  @classmethod
  def single(cls, algo: Algorithm, run: RunConfig, env: JaxEnv, state, seed: int,
             replay: Replay | None = None, counters: Counters | None = None,
             selection: ReplayConfig = ReplayConfig()) -> "FusedDriver":
    """A fused driver of one seed."""
    return cls(algo, run, env, [SeedStart(seed, env, state, replay, counters)],
               selection=selection)

  @property
  def episodes(self) -> list[int]:
    return [tally.episodes for tally in self.tallies]

  @property
  def replay_time(self) -> int:
    """Steps added to each replay stream: one per vector step, as the host driver adds."""
    return self.counters.env_steps // self.num_envs

  # One iteration.

  def owed(self) -> int:
    """The updates the next iteration's steps owe, counted step by step by the
    schedule, as the host driver counts them; moves the debt on."""
    c, n = self.counters, self.num_envs
    count = 0
    for j in range(1, self.steps + 1):
      updates, c.update_debt = self.schedule.owe(c.update_debt, c.env_steps + j * n)
      count += updates
    return count

  def iterate(self, on_episode: OnEpisode, on_update: OnUpdate) -> None:
    """K steps of every environment, then the updates they owe, in one program."""
    c = self.counters
    updates = self.owed()
    self.fused, episodes, metrics, taken = self._program(updates)(
        self.fused, self.replay_time, c.updates, c.online_taken, self.roots, self._recency)
    episodes, metrics, taken = jax.device_get((episodes, metrics, taken))
    c.env_steps += self.steps * self.num_envs
    c.updates += updates
    c.online_taken = int(np.ravel(taken)[0])  # the same for every seed
    for i, tally in enumerate(self.tallies):
      mine = self.seeds.pick(episodes, i)
      for k in range(self.steps):
        tally.add({key: v[k] for key, v in mine.items()}, functools.partial(on_episode, i))
    for u in range(updates):  # [seeds] per metric on a seeds axis, as the host driver's
      on_update({name: value[:, u] if self.seeds.axis else value[u]
                 for name, value in metrics.items()})

  def _program(self, updates: int) -> Callable:
    if updates not in self._programs:
      iteration = functools.partial(self._iteration, updates=updates)

      def seeds_iteration(fused: FusedState, start_step, start_update, taken, roots, recency):
        one = lambda seed_fused, root: iteration(seed_fused, start_step, start_update, taken,
                                                 root, recency)
        return self.seeds.map(one)(fused, roots)  # the step, update and queue counts shared

      self._programs[updates] = jax.jit(seeds_iteration, donate_argnums=0)
    return self._programs[updates]

  def _iteration(self, fused: FusedState, start_step, start_update, taken, root, recency, *,
                 updates: int):
    """One seed's iteration: K steps, then `updates` updates."""
    algo, env, replay, run = self.algo, self.env, self.replay, self.run
    window = self.schedule.window

    def act(fused: FusedState, j):
      action, carry, entries = self._acting(fused.agent, fused.step, fused.carry, root,
                                            start_step + j)
      if "priority" in replay.spec:
        entries = {**entries, "priority": jnp.full(self.num_envs, self.selection.prio.initial)}
      stored = replay.add(fused.replay, {**fused.step, "action": action, **entries})
      env_state, step = env.step(fused.env, action)
      seen = {k: step[k] for k in ("reward", "is_first", "is_last")}
      return FusedState(fused.agent, env_state, step, carry, stored), seen

    fused, episodes = jax.lax.scan(act, fused, jnp.arange(self.steps))

    def update(carried, i):
      fused, taken = carried
      stored = replay.stored(fused.replay)
      indices = draws.window_indices(root, start_update + i, run.batch_size,
                                     self.num_envs * (stored - window + 1))
      positions = replay.positions(fused.replay, indices, window)
      queued = 0
      if self.selection.online:
        positions, taken, queued = select.take_online(positions, fused.replay.time, stored, taken,
                                                      window, self.num_envs)
      if select.mixed(self.selection):
        fused, positions = self._mix(fused, draws.selection_key(root, start_update + i),
                                     positions, queued, stored, recency)
      batch = replay.gather(fused.replay, positions, window)
      agent, metrics, written = algo.train_step(fused.agent, batch)
      stored = replay.write(fused.replay, positions, run.replay_context, written)
      return (fused._replace(agent=agent, replay=stored), taken), metrics

    metrics, taken = {}, jnp.asarray(taken, jnp.int32)
    if updates:
      (fused, taken), metrics = jax.lax.scan(update, (fused, taken), jnp.arange(updates))
    return fused, episodes, metrics, taken

  def _mix(self, fused: FusedState, key, positions, queued, stored, recency):
    """The rows the queue left, drawn by the selectors of `replay.fracs`; with
    `zero_on_sample`, the priorities of the windows drawn by priority zeroed in
    the device replay (wmrl/drivers/selection.py)."""
    replay, window, prio = self.replay, self.schedule.window, self.selection.prio
    time, priorities = fused.replay.time, None
    if "priority" in replay.spec:  # the ring in time order from the oldest kept step
      columns = (time - stored + jnp.arange(replay.rows)) % replay.rows
      priorities = fused.replay.data["priority"][:, columns]
    positions, by_priority, _ = select.mix(key, positions, queued, time, stored, priorities,
                                           recency, replay=self.selection, length=window,
                                           num_envs=self.num_envs)
    if priorities is not None and prio.zero_on_sample:
      zeros = jnp.zeros((positions.starts.shape[0], window), jnp.float32)
      stored = replay.write(fused.replay, select.outside(positions, by_priority, window), 0,
                            {"priority": zeros})
      fused = fused._replace(replay=stored)
    return fused, positions

  # What the run reads.

  def agent_state(self, index: int):
    return self.seeds.pick(self.fused.agent, index)

  def replay_state(self, index: int) -> ReplayState:
    return self.seeds.pick(self.fused.replay, index)

  def replay_size(self, index: int) -> int:
    return min(self.replay_time, self.replay.kept) * self.num_envs

  def sample(self, index: int, batch_size: int, length: int, rng: np.random.Generator):
    """Windows gathered on the device: the replay does not leave it for a report."""
    windows = min(self.replay_time, self.replay.kept) - length + 1
    if length < 1 or windows < 1:
      return None
    indices = jnp.asarray(rng.integers(self.num_envs * windows, size=batch_size))
    state = self.replay_state(index)
    positions = self.replay.positions(state, indices, length)
    return jax.device_get(self.replay.gather(state, positions, length))

  def snapshot(self, index: int) -> Snapshot:
    """The replay in the host format (a host-driver run could continue from it),
    and the pending step with the environments' own state, so that a resume
    continues the very episodes."""
    step, carry, env = jax.device_get(
        self.seeds.pick((self.fused.step, self.fused.carry, self.fused.env), index))
    return Snapshot(self.replay.to_host(self.replay_state(index)),
                    saved_counters(self.counters, self.episodes[index]),
                    pending_arrays(step, carry, env))

  def _restore_pending(self, saved: Sequence[dict[str, np.ndarray]]) -> None:
    """Continues from checkpoints' pending arrays. Without the environments' state
    (a host driver's checkpoint) the episodes are cut there, as the host driver
    cuts them: the step is marked `is_last` and the next one resets."""
    if not any_pending(saved):
      return
    steps, carries, env_states = [], [], []
    for i, arrays in enumerate(saved):
      env_state = self.seeds.pick(self.fused.env, i)
      kept = any(k.startswith("env/") for k in arrays)
      step, carry = pending_step(arrays, self.seeds.pick(self.fused.carry, i), cut=not kept)
      if kept:
        env_state = arrays_tree(env_state, arrays, "env")
      else:
        env_state = env_state._replace(done=jnp.ones_like(env_state.done))
      steps.append(jax.tree.map(jnp.asarray, step))
      carries.append(jax.tree.map(jnp.asarray, carry))
      env_states.append(jax.tree.map(jnp.asarray, env_state))
    self.fused = self.fused._replace(step=self.seeds.stack(steps), carry=self.seeds.stack(carries),
                                     env=self.seeds.stack(env_states))


def _step_specs(env: JaxEnv) -> dict[str, jax.ShapeDtypeStruct]:
  """One replayed step's keys: the environment's step and the action."""
  shapes = jax.eval_shape(env.reset, 0)[1]
  specs = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in shapes.items()}
  specs["action"] = jax.ShapeDtypeStruct((env.act_spec.dim,), jnp.float32)
  return specs
