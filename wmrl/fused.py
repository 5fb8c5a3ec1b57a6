"""The fused driver: acting, stepping JAX environments, storing and training as
one compiled program per iteration.

Where the environment is written in JAX (wmrl/jaxenvs), nothing needs to
leave the device. One `iteration` runs K steps of all N environments under
`lax.scan` (the policy acting on the device, each step added to the device
replay, wmrl/device_replay.py), then U updates under another `lax.scan`,
each sampling its windows from the device replay and writing its
posteriors back before the next. Only the episodes' rewards and flags
[K, N] and the updates' metrics [U] come back to the host.

The train ratio is kept as the host driver keeps it (wmrl/driver.py): the
host counts, step by step, the updates owed (a fractional debt carried
from one iteration to the next, in the same float64 arithmetic), and runs
them at the end of the iteration. U is a static number of the compiled
program: K is chosen so that each iteration owes a whole number of updates
where the ratio allows (one program then trains; otherwise a second one
for the iterations that owe one more), so the long-run ratio is exact.
Prefill iterations (random actions, no updates) are a third, small program.

The random draws are `KeyedDraws` (wmrl/draws.py), functions of the seed and
the step or update counters; a host driver given the same draws makes the
same run (tests/test_fused.py), the updates falling on the same steps where
an iteration's steps end at an update, as they do when K * N steps owe
exactly one update.
"""
from __future__ import annotations

import dataclasses
import fractions
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from wmrl import draws
from wmrl.algorithm import Algorithm, entry_specs
from wmrl.config import RunConfig
from wmrl.device_replay import DeviceReplay, ReplayState
from wmrl.driver import Counters, EpisodeTally, policy_inputs
from wmrl.jaxenvs import EnvState, JaxEnv
from wmrl.replay import Replay
from wmrl.trees import arrays_tree, tree_arrays


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


class ReplayView:
  """The device replay as a run's lane shows it: its size, saves in the host
  replay's format, and samples for reports (gathered on the device)."""

  def __init__(self, driver: "FusedDriver"):
    self._driver = driver

  @property
  def num_envs(self) -> int:
    return self._driver.num_envs

  def __len__(self) -> int:
    return min(self._driver.replay_time, self._driver.replay.kept) * self.num_envs

  def can_sample(self, length: int) -> bool:
    return length >= 1 and len(self) // self.num_envs >= length

  def sample(self, batch_size: int, length: int, rng: np.random.Generator) -> dict:
    windows = len(self) // self.num_envs - length + 1
    indices = jnp.asarray(rng.integers(self.num_envs * windows, size=batch_size))
    replay, state = self._driver.replay, self._driver.fused.replay
    return jax.device_get(replay.gather(state, replay.positions(state, indices, length), length))

  def host(self) -> Replay:
    return self._driver.replay.to_host(self._driver.fused.replay)

  def save(self, directory) -> None:
    self.host().save(directory)


@dataclasses.dataclass
class FusedLane:
  """What a run reads of the fused driver's one seed: as the host driver's `Lane`."""

  env: JaxEnv
  replay: ReplayView
  rng: np.random.Generator  # saved as a host lane's is; the fused draws are keyed
  counters: Counters


class FusedDriver:
  """Runs a `JaxEnv` and the algorithm as one program per iteration (module doc).

  The interface the run loop uses is the host `Driver`'s: `iterate`,
  `counters`, `lanes`, `lane_state`, `pending` and `restore_pending`.
  """

  seeds_axis = False

  def __init__(self, algo: Algorithm, run: RunConfig, env: JaxEnv, state, seed: int,
               replay: Replay | None = None, counters: Counters | None = None,
               rng: np.random.Generator | None = None):
    self.algo, self.run, self.env = algo, run, env
    self.num_envs = env.num_envs
    self.seed = int(seed)
    self.sequence = run.batch_length + run.replay_context
    self.prefill = max(run.prefill, run.batch_size * self.sequence)
    self.updates_per_step = run.train_ratio / (run.batch_size * run.batch_length)
    self.steps = steps_per_iteration(run, self.num_envs)
    self.root = draws.seed_key(self.seed)
    counters = counters or Counters()
    self.lanes = [FusedLane(env, ReplayView(self), rng or np.random.default_rng(seed), counters)]
    self.tally = EpisodeTally(self.num_envs)
    entries = entry_specs(algo, state) if run.replay_context else {}
    # The most steps per stream the run adds: its last iteration may pass run.steps.
    iterations = -(-run.steps // (self.steps * self.num_envs))
    saved_time = replay.steps_added // self.num_envs if replay is not None else 0
    self.replay = DeviceReplay(_step_specs(env) | entries, self.num_envs, run.replay_capacity,
                               max_time=max(iterations * self.steps, saved_time))
    self.replay.check_fits()
    replay_state = self.replay.from_host(replay) if replay is not None else self.replay.init()
    env_state, step = jax.jit(env.reset)(self.seed)
    self.fused = FusedState(state, env_state, step, algo.initial_carry(state, self.num_envs),
                            replay_state)
    self._programs: dict[int, Callable] = {}

  @property
  def counters(self) -> Counters:
    return self.lanes[0].counters

  @property
  def replay_time(self) -> int:
    """Steps added to each replay stream: one per vector step, as the host driver adds."""
    return self.counters.env_steps // self.num_envs

  def lane_state(self, index: int = 0):
    return self.fused.agent

  # One iteration.

  def owed(self) -> int:
    """The updates the next iteration's steps owe, counted step by step as the
    host driver counts them; moves the debt on."""
    c, n = self.counters, self.num_envs
    count = 0
    for j in range(1, self.steps + 1):
      after = c.env_steps + j * n
      if after >= self.prefill and min(self.replay_time + j, self.replay.kept) >= self.sequence:
        c.update_debt += self.updates_per_step * n
        while c.update_debt >= 1.0:
          c.update_debt -= 1.0
          count += 1
    return count

  def iterate(self, on_episode: Callable[[int, dict], None],
              on_update: Callable[[dict], None]) -> None:
    """K steps of every environment, then the updates they owe, in one program."""
    c = self.counters
    updates = self.owed()
    start_step, start_update = c.env_steps // self.num_envs, c.updates
    self.fused, episodes, metrics = self._program(updates)(self.fused, start_step, start_update)
    episodes, metrics = jax.device_get((episodes, metrics))
    c.env_steps += self.steps * self.num_envs
    c.updates += updates
    for k in range(self.steps):
      c.episodes += self.tally.add({key: v[k] for key, v in episodes.items()},
                                   functools.partial(on_episode, 0))
    for u in range(updates):
      on_update({name: value[u] for name, value in metrics.items()})

  def _program(self, updates: int) -> Callable:
    if updates not in self._programs:
      self._programs[updates] = jax.jit(functools.partial(self._iteration, updates=updates),
                                        donate_argnums=0)
    return self._programs[updates]

  def _iteration(self, fused: FusedState, start_step, start_update, *, updates: int):
    algo, env, replay, run = self.algo, self.env, self.replay, self.run
    n, spec = self.num_envs, env.act_spec

    def act(fused: FusedState, j):
      t = start_step + j  # the vector step, which keys the draws
      obs = policy_inputs(env.obs_spec, fused.step)
      action, carry = algo.policy_step(fused.agent, obs, fused.carry,
                                       draws.keyed_policy_key(self.root, t), "train")
      # Random actions until the prefill is done, remembered by the carry as the
      # host driver does (the policy still observes every step).
      prefill = t * n < self.prefill
      random = draws.keyed_prefill_actions(self.root, t, spec, n)
      action = jnp.where(prefill, random, action)
      carry = jax.tree.map(lambda a, b: jnp.where(prefill, a, b),
                           algo.record_action(carry, random), carry)
      entries = algo.replay_entries(carry) if run.replay_context else {}
      stored = replay.add(fused.replay, {**fused.step, "action": action, **entries})
      env_state, step = env.step(fused.env, action)
      seen = {k: step[k] for k in ("reward", "is_first", "is_last")}
      return FusedState(fused.agent, env_state, step, carry, stored), seen

    fused, episodes = jax.lax.scan(act, fused, jnp.arange(self.steps))

    def update(fused: FusedState, i):
      windows = replay.stored(fused.replay) - self.sequence + 1
      indices = draws.keyed_window_indices(self.root, start_update + i, run.batch_size,
                                           n * windows)
      positions = replay.positions(fused.replay, indices, self.sequence)
      batch = replay.gather(fused.replay, positions, self.sequence)
      agent, metrics, new = algo.train_step(fused.agent, batch)
      stored = replay.write(fused.replay, positions, run.replay_context, new)
      return fused._replace(agent=agent, replay=stored), metrics

    metrics = {}
    if updates:
      fused, metrics = jax.lax.scan(update, fused, jnp.arange(updates))
    return fused, episodes, metrics

  # Checkpoints.

  def pending(self) -> list[dict[str, np.ndarray]]:
    """The step not yet acted on, the policy carry and the environments' own
    state, by tree path: a resume continues the very episodes."""
    step, carry, env = jax.device_get((self.fused.step, self.fused.carry, self.fused.env))
    return [{**{f"step/{k}": np.asarray(v) for k, v in step.items()},
             **tree_arrays(carry, "carry"), **tree_arrays(env, "env")}]

  def restore_pending(self, arrays) -> None:
    """Continues from a checkpoint's pending arrays. Without the environments'
    state (a host driver's checkpoint) the episodes are cut there, as the host
    driver cuts them: the step is marked `is_last` and the next one resets."""
    saved, = arrays
    if not saved:
      return
    step = {k[5:]: jnp.asarray(v) for k, v in saved.items() if k.startswith("step/")}
    carry = arrays_tree(self.fused.carry, saved, "carry")
    if any(k.startswith("env/") for k in saved):
      env_state = arrays_tree(self.fused.env, saved, "env")
    else:
      step["is_last"] = jnp.ones_like(step["is_last"])
      env_state = self.fused.env._replace(done=jnp.ones_like(self.fused.env.done))
    self.fused = self.fused._replace(step=step, carry=jax.tree.map(jnp.asarray, carry),
                                     env=jax.tree.map(jnp.asarray, env_state))


def _step_specs(env: JaxEnv) -> dict[str, jax.ShapeDtypeStruct]:
  """One replayed step's keys: the environment's step and the action."""
  shapes = jax.eval_shape(env.reset, 0)[1]
  specs = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in shapes.items()}
  specs["action"] = jax.ShapeDtypeStruct((env.act_spec.dim,), jnp.float32)
  return specs
