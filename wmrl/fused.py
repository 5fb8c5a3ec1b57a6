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

Seeds are one more array axis (`run.seeds`): every part of the state is
stacked over them, seed k at index k, and the iteration is vmapped
(`run.seeds_batch` seeds at a time, the groups one after another), its key
root an argument; the seeds share the counters' schedule (the same steps
owe the same updates), each keeps its own episodes, replay and draws.

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
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from wmrl import draws
from wmrl.algorithm import Algorithm, entry_specs
from wmrl.config import RunConfig
from wmrl.device_replay import DeviceReplay, ReplayState
from wmrl.driver import Counters, EpisodeTally, over_seeds, policy_inputs
from wmrl.jaxenvs import EnvState, JaxEnv
from wmrl.replay import Replay
from wmrl.trees import arrays_tree, stack_trees, tree_arrays


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
  """One seed's device replay as a run's lane shows it: its size, saves in the
  host replay's format, and samples for reports (gathered on the device)."""

  def __init__(self, driver: "FusedDriver", index: int):
    self._driver, self._index = driver, index

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
    replay, state = self._driver.replay, self._driver.replay_state(self._index)
    return jax.device_get(replay.gather(state, replay.positions(state, indices, length), length))

  def host(self) -> Replay:
    return self._driver.replay.to_host(self._driver.replay_state(self._index))

  def save(self, directory) -> None:
    self.host().save(directory)


@dataclasses.dataclass
class SeedStart:
  """Where one seed starts: fresh (a seed alone) or from its checkpoint (its
  replay, counters and host RNG)."""

  seed: int
  replay: Replay | None = None
  counters: Counters | None = None
  rng: np.random.Generator | None = None


@dataclasses.dataclass
class FusedLane:
  """What a run reads of one seed of the fused driver: as the host driver's `Lane`."""

  env: JaxEnv
  replay: ReplayView
  rng: np.random.Generator  # saved as a host lane's is; the fused draws are keyed
  counters: Counters
  seed: int
  tally: EpisodeTally


class FusedDriver:
  """Runs a `JaxEnv` and the algorithm as one program per iteration (module doc).

  `seeds_axis` False: one seed and the algorithm's own state. True: `state`
  stacked over `seeds` (seed k at index k), the iteration vmapped.

  The interface the run loop uses is the host `Driver`'s: `iterate`,
  `counters`, `lanes`, `lane_state`, `pending` and `restore_pending`.
  """

  def __init__(self, algo: Algorithm, run: RunConfig, env: JaxEnv, state,
               seeds: Sequence[SeedStart], seeds_axis: bool = False):
    if not seeds_axis and len(seeds) != 1:
      raise ValueError(f"a fused driver without a seeds axis runs one seed, got {len(seeds)}")
    self.algo, self.run, self.env = algo, run, env
    self.seeds_axis = seeds_axis
    self.num_envs = env.num_envs
    self.sequence = run.batch_length + run.replay_context
    self.prefill = max(run.prefill, run.batch_size * self.sequence)
    self.updates_per_step = run.train_ratio / (run.batch_size * run.batch_length)
    self.steps = steps_per_iteration(run, self.num_envs)
    self.lanes = [FusedLane(env, ReplayView(self, i), start.rng or np.random.default_rng(start.seed),
                            start.counters or Counters(), int(start.seed),
                            EpisodeTally(self.num_envs))
                  for i, start in enumerate(seeds)]
    one = self.lane_state(0, state)
    entries = entry_specs(algo, one) if run.replay_context else {}
    # The most steps per stream the run adds: its last iteration may pass run.steps.
    iterations = -(-run.steps // (self.steps * self.num_envs))
    saved_time = max((start.replay.steps_added // self.num_envs for start in seeds
                      if start.replay is not None), default=0)
    self.replay = DeviceReplay(_step_specs(env) | entries, self.num_envs, run.replay_capacity,
                               max_time=max(iterations * self.steps, saved_time))
    self.replay.check_fits(copies=len(seeds))
    replays = [self.replay.from_host(start.replay) if start.replay is not None
               else self.replay.init() for start in seeds]
    reset = jax.jit(env.reset)
    env_states, steps = zip(*(reset(lane.seed) for lane in self.lanes))
    roots = [draws.seed_key(lane.seed) for lane in self.lanes]
    carry = algo.initial_carry(one, self.num_envs)
    self.roots = self._stacked(roots)
    self.fused = FusedState(state, self._stacked(env_states), self._stacked(steps),
                            self._stacked([carry] * len(seeds)), self._stacked(replays))
    self._programs: dict[int, Callable] = {}

  @classmethod
  def single(cls, algo: Algorithm, run: RunConfig, env: JaxEnv, state, seed: int,
             replay: Replay | None = None, counters: Counters | None = None,
             rng: np.random.Generator | None = None) -> "FusedDriver":
    """A fused driver of one seed."""
    return cls(algo, run, env, state, [SeedStart(seed, replay, counters, rng)])

  @property
  def counters(self) -> Counters:
    """The seeds' common counters (steps and updates; `episodes` is seed 0's)."""
    return self.lanes[0].counters

  @property
  def replay_time(self) -> int:
    """Steps added to each replay stream: one per vector step, as the host driver adds."""
    return self.counters.env_steps // self.num_envs

  def _seed(self, index: int, tree):
    """Seed `index`'s part of `tree` (the tree itself without a seeds axis)."""
    return jax.tree.map(lambda x: x[index], tree) if self.seeds_axis else tree

  def _stacked(self, trees: Sequence):
    """The seeds' trees on the seeds axis (the one tree without it): `_seed`'s inverse."""
    return stack_trees(trees) if self.seeds_axis else trees[0]

  def lane_state(self, index: int = 0, state=None):
    """Seed `index`'s agent state (of `state`, by default the driver's)."""
    return self._seed(index, self.fused.agent if state is None else state)

  def replay_state(self, index: int) -> ReplayState:
    return self._seed(index, self.fused.replay)

  # One iteration.

  def owed(self) -> int:
    """The updates the next iteration's steps owe, counted step by step as the
    host driver counts them; moves every seed's debt on (in lockstep)."""
    c, n = self.counters, self.num_envs
    count = 0
    for j in range(1, self.steps + 1):
      after = c.env_steps + j * n
      if after >= self.prefill and min(self.replay_time + j, self.replay.kept) >= self.sequence:
        c.update_debt += self.updates_per_step * n
        while c.update_debt >= 1.0:
          c.update_debt -= 1.0
          count += 1
    for lane in self.lanes[1:]:
      lane.counters.update_debt = c.update_debt
    return count

  def iterate(self, on_episode: Callable[[int, dict], None],
              on_update: Callable[[dict], None]) -> None:
    """K steps of every environment, then the updates they owe, in one program."""
    c = self.counters
    updates = self.owed()
    start_step, start_update = c.env_steps // self.num_envs, c.updates
    self.fused, episodes, metrics = self._program(updates)(self.fused, start_step, start_update,
                                                           self.roots)
    episodes, metrics = jax.device_get((episodes, metrics))
    for i, lane in enumerate(self.lanes):
      lane.counters.env_steps += self.steps * self.num_envs
      lane.counters.updates += updates
      mine = self._seed(i, episodes)
      for k in range(self.steps):
        lane.counters.episodes += lane.tally.add({key: v[k] for key, v in mine.items()},
                                                 functools.partial(on_episode, i))
    for u in range(updates):  # [seeds] per metric with a seeds axis, as the host driver's
      on_update({name: value[:, u] if self.seeds_axis else value[u]
                 for name, value in metrics.items()})

  def _program(self, updates: int) -> Callable:
    if updates not in self._programs:
      iteration = functools.partial(self._iteration, updates=updates)
      if self.seeds_axis:
        iteration = self._over_seeds(iteration)
      self._programs[updates] = jax.jit(iteration, donate_argnums=0)
    return self._programs[updates]

  def _over_seeds(self, iteration: Callable) -> Callable:
    """The iteration on stacked seeds (their states and key roots; the step and
    update counts shared), `run.seeds_batch` of them vmapped at once."""
    def seeds_iteration(fused: FusedState, start_step, start_update, roots):
      one = lambda seed_fused, root: iteration(seed_fused, start_step, start_update, root)
      return over_seeds(one, self.run.seeds_batch)(fused, roots)
    return seeds_iteration

  def _iteration(self, fused: FusedState, start_step, start_update, root, *, updates: int):
    """One seed's iteration: K steps, then `updates` updates."""
    algo, env, replay, run = self.algo, self.env, self.replay, self.run
    n, spec = self.num_envs, env.act_spec

    def act(fused: FusedState, j):
      t = start_step + j  # the vector step, which keys the draws
      obs = policy_inputs(env.obs_spec, fused.step)
      action, carry = algo.policy_step(fused.agent, obs, fused.carry,
                                       draws.keyed_policy_key(root, t), "train")
      # Random actions until the prefill is done, remembered by the carry as the
      # host driver does (the policy still observes every step).
      prefill = t * n < self.prefill
      random = draws.keyed_prefill_actions(root, t, spec, n)
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
      indices = draws.keyed_window_indices(root, start_update + i, run.batch_size,
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
    """Each seed's step not yet acted on, policy carry and environments' own
    state, by tree path: a resume continues the very episodes."""
    step, carry, env = jax.device_get((self.fused.step, self.fused.carry, self.fused.env))
    return [{**{f"step/{k}": np.asarray(v) for k, v in self._seed(i, step).items()},
             **tree_arrays(self._seed(i, carry), "carry"),
             **tree_arrays(self._seed(i, env), "env")} for i in range(len(self.lanes))]

  def restore_pending(self, arrays: Sequence[dict[str, np.ndarray]]) -> None:
    """Continues from checkpoints' pending arrays (one per seed). Without the
    environments' state (a host driver's checkpoint) the episodes are cut
    there, as the host driver cuts them: the step is marked `is_last` and the
    next one resets."""
    if not any(arrays):
      return
    if not all(arrays):
      raise ValueError("some seeds' checkpoints hold a pending step and others none")
    steps, carries, env_states = [], [], []
    for i, saved in enumerate(arrays):
      step = {k[5:]: jnp.asarray(v) for k, v in saved.items() if k.startswith("step/")}
      carries.append(jax.tree.map(jnp.asarray,
                                  arrays_tree(self._seed(i, self.fused.carry), saved, "carry")))
      env_state = self._seed(i, self.fused.env)
      if any(k.startswith("env/") for k in saved):
        env_state = arrays_tree(env_state, saved, "env")
      else:
        step["is_last"] = jnp.ones_like(step["is_last"])
        env_state = env_state._replace(done=jnp.ones_like(env_state.done))
      steps.append(step)
      env_states.append(jax.tree.map(jnp.asarray, env_state))
    self.fused = self.fused._replace(step=self._stacked(steps), carry=self._stacked(carries),
                                     env=self._stacked(env_states))


def _step_specs(env: JaxEnv) -> dict[str, jax.ShapeDtypeStruct]:
  """One replayed step's keys: the environment's step and the action."""
  shapes = jax.eval_shape(env.reset, 0)[1]
  specs = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in shapes.items()}
  specs["action"] = jax.ShapeDtypeStruct((env.act_spec.dim,), jnp.float32)
  return specs
