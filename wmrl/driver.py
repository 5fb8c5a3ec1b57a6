"""The host collect/train loop: act in the environments, fill replay, train at a ratio.

`Driver` keeps the reference's train-ratio semantics: `run.train_ratio`
replayed steps per environment step, one update replaying `batch_size x
batch_length` steps. With `run.replay_context` K > 0 it stores the policy's
replay entries (its latent after observing the step) with every step,
samples windows of K + batch_length steps and writes each update's new
entries back over the trained steps, as the reference does. It sees the
agent only through the algorithm contract (`wmrl/algorithm.py`). A whole run
(resume, evaluation, logging, saves) is `wmrl/run.py`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np

from wmrl import envs
from wmrl.trees import arrays_tree, tree_arrays
from wmrl.algorithm import Algorithm
from wmrl.config import RunConfig
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


def random_actions(rng: np.random.Generator, spec: ActionSpec, num: int) -> np.ndarray:
  if spec.discrete:
    choices = np.stack([rng.integers(0, n, num) for n in spec.sizes], -1)
    return spec.from_indices(choices)
  return rng.uniform(-1, 1, (num, spec.dim)).astype(np.float32)


def policy_inputs(obs_keys, step: dict) -> dict:
  """What a policy reads from an environment step: the observation keys and
  `is_first` (not the reward or the other flags)."""
  return {**{key: step[key] for key in obs_keys}, "is_first": step["is_first"]}


def host_key(rng: np.random.Generator) -> np.ndarray:
  """Raw uint32 key data drawn on the host: no device work per env step."""
  return rng.integers(0, 2**32, 2, dtype=np.uint32)


class Driver:
  """Owns the environments, agent state and replay of one run."""

  def __init__(self, algo: Algorithm, run: RunConfig, env: envs.Env, state, replay: Replay,
               counters: Counters | None = None):
    self.algo = algo
    self.run = run
    self.env = env
    self.state = state
    self.replay = replay
    self.counters = counters or Counters()
    self.rng = np.random.default_rng(run.seed)  # host draws; saved in checkpoints
    self._step = None  # the last env step, not yet acted on
    self._carry = None
    self._restarted = False
    self._scores = np.zeros(env.num_envs)
    self._lengths = np.zeros(env.num_envs, np.int64)
    self.sequence = run.batch_length + run.replay_context
    self.prefill = max(run.prefill, run.batch_size * self.sequence)
    self.updates_per_step = run.train_ratio / (run.batch_size * run.batch_length)

  def collect(self, on_episode: Callable[[dict], None]) -> None:
    """One step of every environment with the training policy."""
    if self._step is None:
      self._step = self.env.reset()
      self._carry = self.algo.initial_carry(self.state, self.env.num_envs)
    step = self._step
    action, self._carry = self.algo.policy_step(
        self.state, policy_inputs(self.env.obs_spec, step), self._carry, host_key(self.rng),
        "train")
    action = np.asarray(action)
    if self.counters.env_steps < self.prefill:
      action = random_actions(self.rng, self.env.act_spec, self.env.num_envs)
      # The carry remembers the executed action, as replay does.
      self._carry = self.algo.record_action(self._carry, action)
    self.replay.add({**step, "action": action, **self._entries()})
    if self._restarted:  # the step came from before a restart: these envs are new
      self._restarted = False
      self._step = self.env.reset()
    else:
      self._step = self.env.step(action)
    self.counters.env_steps += self.env.num_envs
    self._track_episodes(self._step, on_episode)

  def _entries(self) -> dict[str, np.ndarray]:
    """The replay entries of the carry that has just observed the step, on the host."""
    if not self.run.replay_context:
      return {}
    return jax.device_get(self.algo.replay_entries(self._carry))

  def pending(self) -> dict[str, np.ndarray]:
    """The step not yet acted on and the policy carry (by tree path), for checkpoints."""
    if self._step is None:
      return {}
    arrays = {f"step/{k}": np.asarray(v) for k, v in self._step.items()}
    arrays.update(tree_arrays(self._carry, "carry"))
    return arrays

  def restore_pending(self, arrays: dict[str, np.ndarray]) -> None:
    """Continues from a checkpoint's pending step in freshly made environments.

    The step is stored and acted on as it would have been; since the
    environments cannot continue its episodes, they are marked as ended
    there (a truncation, as by a time limit) and reset on the next step.
    """
    if not arrays:
      return
    step = {k[5:]: v for k, v in arrays.items() if k.startswith("step/")}
    step["is_last"] = np.ones_like(step["is_last"])
    self._step = step
    template = self.algo.initial_carry(self.state, self.env.num_envs)
    self._carry = arrays_tree(template, arrays, "carry")
    self._restarted = True

  def _track_episodes(self, step: dict, on_episode) -> None:
    first = step["is_first"]
    self._scores = np.where(first, 0.0, self._scores + step["reward"])
    self._lengths = np.where(first, 0, self._lengths + 1)
    for i in np.flatnonzero(step["is_last"]):
      self.counters.episodes += 1
      on_episode({"episode/score": float(self._scores[i]), "episode/length": int(self._lengths[i])})

  def train(self, on_update: Callable[[dict], None]) -> int:
    """Runs the updates the train ratio owes; returns how many ran."""
    if self.counters.env_steps < self.prefill or not self.replay.can_sample(self.sequence):
      return 0
    self.counters.update_debt += self.updates_per_step * self.env.num_envs
    done = 0
    while self.counters.update_debt >= 1.0:
      positions = self.replay.sample_positions(self.run.batch_size, self.sequence)
      batch = self.replay.gather(positions, self.sequence)
      self.state, metrics, updates = self.algo.train_step(self.state, batch)
      # Written before the next sample, which may overlap these windows; the
      # fetch waits for the update (the reference lags it by one update).
      self.replay.write(positions, self.run.replay_context, jax.device_get(updates))
      self.counters.update_debt -= 1.0
      self.counters.updates += 1
      on_update(metrics)
      done += 1
    return done
