"""The collect/train loop: act in the environments, fill replay, train at a ratio.

`train(config, logdir)` runs a whole experiment. The loop keeps the
reference's train-ratio semantics: `run.train_ratio` replayed steps per
environment step, one update replaying `batch_size x batch_length` steps.
"""
from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any, Callable

import jax
import numpy as np

from wmrl import agent, envs
from wmrl.config import Config
from wmrl.logging import Logger
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


def make_env(config: Config, seed: int, num_envs: int | None = None) -> envs.Env:
  e = config.env
  return envs.make(e.id, seed=seed, num_envs=num_envs or e.num_envs, parallel=e.parallel,
                   action_repeat=e.action_repeat, image_size=tuple(e.image_size),
                   pixels=e.pixels, time_limit=e.time_limit or None)


def validate(config: Config, logdir: str | pathlib.Path) -> None:
  """Refuses settings that cannot work, before anything starts."""
  r = config.run
  logdir = pathlib.Path(logdir)
  if logdir.exists() and not logdir.is_dir():
    raise ValueError(f"logdir '{logdir}' is a file; give a directory (it is created if missing)")
  checks = [
      (r.train_ratio > 0, f"run.train_ratio must be positive, got {r.train_ratio}"),
      (r.steps > 0, f"run.steps must be positive, got {r.steps}"),
      (r.batch_size > 0 and r.batch_length > 1,
       f"run.batch_size must be >= 1 and run.batch_length >= 2, got {r.batch_size}, {r.batch_length}"),
      (r.replay_context >= 0, f"run.replay_context must be >= 0, got {r.replay_context}"),
      (config.env.num_envs > 0, f"env.num_envs must be positive, got {config.env.num_envs}"),
      (r.replay_capacity >= config.env.num_envs * (r.batch_length + r.replay_context),
       f"run.replay_capacity={r.replay_capacity} cannot hold one training sequence per "
       f"environment; raise it"),
      (config.behavior.imag_horizon > 0,
       f"behavior.imag_horizon must be positive, got {config.behavior.imag_horizon}"),
  ]
  for ok, message in checks:
    if not ok:
      raise ValueError(message)


def random_actions(rng: np.random.Generator, spec: ActionSpec, num: int) -> np.ndarray:
  if spec.discrete:
    choices = np.stack([rng.integers(0, n, num) for n in spec.sizes], -1)
    return spec.from_indices(choices)
  return rng.uniform(-1, 1, (num, spec.dim)).astype(np.float32)


class Driver:
  """Owns the environments, agent state and replay of one run."""

  def __init__(self, config: Config, env: envs.Env, state: agent.AgentState, replay: Replay,
               counters: Counters | None = None):
    self.config = config
    self.env = env
    self.state = state
    self.replay = replay
    self.counters = counters or Counters()
    self._rng = np.random.default_rng(config.run.seed)
    self._obs_keys = sorted(env.obs_spec)
    self._step = None  # the last env step, not yet acted on
    self._carry = None
    self._scores = np.zeros(env.num_envs)
    self._lengths = np.zeros(env.num_envs, np.int64)
    r = config.run
    self.sequence = r.batch_length + r.replay_context
    self.prefill = max(r.prefill, r.batch_size * self.sequence)
    self.updates_per_step = r.train_ratio / (r.batch_size * r.batch_length)

  def _key(self) -> np.ndarray:
    # Raw uint32 key data made on the host: no device work per env step.
    return self._rng.integers(0, 2**32, 2, dtype=np.uint32)

  def _policy_inputs(self, step: dict) -> dict:
    return {**{k: step[k] for k in self._obs_keys}, "is_first": step["is_first"]}

  def collect(self, on_episode: Callable[[dict], None]) -> None:
    """One step of every environment with the training policy."""
    if self._step is None:
      self._step = self.env.reset()
      self._carry = agent.initial_carry(self.state, self.env.num_envs)
    step = self._step
    action, self._carry = agent.policy_step(self.state, self._policy_inputs(step), self._carry,
                                            self._key(), "train")
    action = np.asarray(action)
    if self.counters.env_steps < self.prefill:
      action = random_actions(self._rng, self.env.act_spec, self.env.num_envs)
    self.replay.add({**step, "action": action})
    self._step = self.env.step(action)
    self.counters.env_steps += self.env.num_envs
    self._track_episodes(self._step, on_episode)

  def _track_episodes(self, step: dict, on_episode) -> None:
    first = step["is_first"]
    self._scores = np.where(first, 0.0, self._scores + step["reward"])
    self._lengths = np.where(first, 0, self._lengths + 1)
    for i in np.flatnonzero(step["is_last"]):
      self.counters.episodes += 1
      on_episode({"episode/score": float(self._scores[i]), "episode/length": int(self._lengths[i])})

  def train(self, on_metrics: Callable[[dict], None]) -> int:
    """Runs the updates the train ratio owes; returns how many ran."""
    if self.counters.env_steps < self.prefill or not self.replay.can_sample(self.sequence):
      return 0
    self.counters.update_debt += self.updates_per_step * self.env.num_envs
    done = 0
    while self.counters.update_debt >= 1.0:
      batch = self.replay.sample(self.config.run.batch_size, self.sequence)
      self.state, metrics = agent.train_step(self.state, batch)
      self.counters.update_debt -= 1.0
      self.counters.updates += 1
      on_metrics(metrics)
      done += 1
    return done


def evaluate(state: agent.AgentState, env: envs.Env, episodes: int, seed: int = 0) -> list[dict]:
  """Runs `episodes` whole episodes with the eval policy; returns their scores and lengths."""
  rng = np.random.default_rng(seed)
  keys = sorted(env.obs_spec)
  step = env.reset()
  carry = agent.initial_carry(state, env.num_envs)
  scores = np.zeros(env.num_envs)
  lengths = np.zeros(env.num_envs, np.int64)
  results = []
  while len(results) < episodes:
    obs = {**{k: step[k] for k in keys}, "is_first": step["is_first"]}
    action, carry = agent.policy_step(state, obs, carry, rng.integers(0, 2**32, 2, dtype=np.uint32),
                                      "eval")
    step = env.step(np.asarray(action))
    scores = np.where(step["is_first"], 0.0, scores + step["reward"])
    lengths = np.where(step["is_first"], 0, lengths + 1)
    for i in np.flatnonzero(step["is_last"]):
      results.append({"score": float(scores[i]), "length": int(lengths[i])})
  return results[:episodes]


class _Average:
  """Averages metric dicts of device arrays with one host transfer."""

  def __init__(self):
    self._items: list[dict] = []

  def add(self, metrics: dict) -> None:
    self._items.append(metrics)

  def result(self) -> dict[str, float]:
    if not self._items:
      return {}
    items = jax.device_get(self._items)
    self._items = []
    return {k: float(np.mean([m[k] for m in items])) for k in items[0]}


def train(config: Config, logdir: str | pathlib.Path, console: bool = True) -> dict[str, Any]:
  """Trains an agent as `config` says, writing metrics to `logdir`.

  Returns a summary: final counters and the scores of the last episodes.
  """
  validate(config, logdir)
  r = config.run
  # Environments first: a bad id or space fails before anything is written.
  env = make_env(config, seed=r.seed)
  eval_env = make_env(config, seed=r.seed + 10_000, num_envs=1) if r.eval_every else None
  logdir = pathlib.Path(logdir)
  logdir.mkdir(parents=True, exist_ok=True)
  (logdir / "config.json").write_text(config.to_json())
  logger = Logger(logdir, total_steps=r.steps, console=console)
  try:
    state = agent.init(jax.random.key(r.seed), env.obs_spec, env.act_spec, config)
    replay = Replay(r.replay_capacity, env.num_envs, seed=r.seed)
    driver = Driver(config, env, state, replay)
    return _loop(driver, config, logger, eval_env)
  finally:
    logger.close()
    env.close()
    if eval_env is not None:
      eval_env.close()


def _loop(driver: Driver, config: Config, logger: Logger, eval_env) -> dict[str, Any]:
  r = config.run
  c = driver.counters
  averages = _Average()
  scores: list[float] = []

  def on_episode(metrics):
    scores.append(metrics["episode/score"])
    logger.write(c.env_steps, metrics)

  last_log, steps_at_log, updates_at_log = time.time(), c.env_steps, c.updates
  while c.env_steps < r.steps:
    driver.collect(on_episode)
    driver.train(averages.add)
    if r.eval_every and c.env_steps - c.last_eval >= r.eval_every:
      c.last_eval = c.env_steps
      results = evaluate(driver.state, eval_env, r.eval_episodes, seed=r.seed + c.env_steps)
      logger.write(c.env_steps, {"eval/score": np.mean([x["score"] for x in results]),
                                 "eval/length": np.mean([x["length"] for x in results])})
    now = time.time()
    if now - last_log >= r.log_every or c.env_steps >= r.steps:
      elapsed = now - last_log
      metrics = averages.result()
      metrics["fps/env"] = (c.env_steps - steps_at_log) / elapsed
      metrics["fps/train"] = (c.updates - updates_at_log) / elapsed
      metrics["replay/size"] = len(driver.replay)
      metrics["train/updates"] = c.updates
      logger.write(c.env_steps, metrics)
      recent = float(np.mean(scores[-10:])) if scores else float("nan")
      logger.progress(c.env_steps, {"env/s": metrics["fps/env"], "updates/s": metrics["fps/train"],
                                    "score(10)": recent, "episodes": c.episodes})
      last_log, steps_at_log, updates_at_log = now, c.env_steps, c.updates
  return {"env_steps": c.env_steps, "updates": c.updates, "episodes": c.episodes,
          "scores": scores}
