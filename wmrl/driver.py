"""The collect/train loop: act in the environments, fill replay, train at a ratio.

`train(config, logdir)` runs a whole experiment. The loop keeps the
reference's train-ratio semantics: `run.train_ratio` replayed steps per
environment step, one update replaying `batch_size x batch_length` steps.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from typing import Any, Callable

import jax
import numpy as np

from wmrl import agent, checkpoint, envs, evaluate, report
from wmrl.config import Config, RunConfig, diff as cfgdiff
from wmrl.logging import Logger, require_wandb
from wmrl.replay import Replay
from wmrl.spaces import ActionSpec


# Gymnasium renders MuJoCo at 480x480: logged at full size, one 1000-step
# episode would add tens of MB of video to the logdir at every evaluation.
EVAL_VIDEO_SIDE = 256  # largest side of logged eval videos, in pixels


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
      (r.report_every >= 0, f"run.report_every must be >= 0 (0: never), got {r.report_every}"),
  ]
  for ok, message in checks:
    if not ok:
      raise ValueError(message)
  if r.wandb:
    require_wandb()  # the run asked for W&B: fail now, not after setting up


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
    self.rng = np.random.default_rng(config.run.seed)  # host draws; saved in checkpoints
    self._step = None  # the last env step, not yet acted on
    self._carry = None
    self._restarted = False
    self._scores = np.zeros(env.num_envs)
    self._lengths = np.zeros(env.num_envs, np.int64)
    r = config.run
    self.sequence = r.batch_length + r.replay_context
    self.prefill = max(r.prefill, r.batch_size * self.sequence)
    self.updates_per_step = r.train_ratio / (r.batch_size * r.batch_length)

  def collect(self, on_episode: Callable[[dict], None]) -> None:
    """One step of every environment with the training policy."""
    if self._step is None:
      self._step = self.env.reset()
      self._carry = agent.initial_carry(self.state, self.env.num_envs)
    step = self._step
    action, self._carry = agent.policy_step(self.state, agent.policy_inputs(self.state, step),
                                            self._carry, agent.host_key(self.rng), "train")
    action = np.asarray(action)
    if self.counters.env_steps < self.prefill:
      action = random_actions(self.rng, self.env.act_spec, self.env.num_envs)
    self.replay.add({**step, "action": action})
    if self._restarted:  # the step came from before a restart: these envs are new
      self._restarted = False
      self._step = self.env.reset()
    else:
      self._step = self.env.step(action)
    self.counters.env_steps += self.env.num_envs
    self._track_episodes(self._step, on_episode)

  def pending(self) -> dict[str, np.ndarray]:
    """The step not yet acted on and the policy carry, for checkpoints."""
    if self._step is None:
      return {}
    carry = jax.device_get(self._carry)
    arrays = {f"step/{k}": np.asarray(v) for k, v in self._step.items()}
    arrays.update({"carry/deter": carry.latent.deter, "carry/stoch": carry.latent.stoch,
                   "carry/action": carry.action})
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
    self._carry = agent.PolicyCarry(
        agent.Latent(arrays["carry/deter"], arrays["carry/stoch"]), arrays["carry/action"])
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
      batch = self.replay.sample(self.config.run.batch_size, self.sequence)
      self.state, metrics = agent.train_step(self.state, batch)
      self.counters.update_debt -= 1.0
      self.counters.updates += 1
      on_update(metrics)
      done += 1
    return done


def _evaluate(state: agent.AgentState, env: envs.Env, logger: Logger, run: RunConfig,
              step: int) -> list[dict]:
  """The run's evaluation episodes; with run.eval_video the first is filmed
  (where the env renders or sees images) and logged as video "eval"."""
  film = 1 if run.eval_video and evaluate.can_film(env) else 0
  results, videos = evaluate.run_episodes(state, env, run.eval_episodes, run.seed + step, film)
  if videos:
    logger.video(step, "eval", evaluate.shrink(videos[0], EVAL_VIDEO_SIDE), fps=30)
  return results


class NonFiniteError(RuntimeError):
  """A loss or parameter became NaN or infinite."""


class _Metrics:
  """Collects per-update metrics (device arrays) and averages them with one
  host transfer; checks every value is finite on the way."""

  def __init__(self):
    self._items: list[tuple[int, dict]] = []

  def add(self, env_steps: int, metrics: dict) -> None:
    self._items.append((env_steps, metrics))

  def check(self) -> list[dict]:
    """Fetches the pending metrics; raises at the first non-finite value."""
    items = jax.device_get([m for _, m in self._items])
    for (step, _), metrics in zip(self._items, items):
      for name in sorted(metrics):
        if not np.isfinite(metrics[name]):
          raise NonFiniteError(f"metric '{name}' became {float(metrics[name])} at environment step "
                               f"{step}; the run stops here, and its last checkpoint holds the "
                               "last good state")
    return items

  def result(self) -> dict[str, float]:
    items = self.check()
    self._items = []
    if not items:
      return {}
    return {k: float(np.mean([m[k] for m in items])) for k in items[0]}


def _check_params_finite(state: agent.AgentState, env_steps: int) -> None:
  finite = jax.tree.map(lambda x: bool(np.isfinite(np.asarray(x)).all()), state.params)
  for path, ok in jax.tree_util.tree_leaves_with_path(finite):
    if not ok:
      name = "/".join(str(getattr(p, "key", p)) for p in path)
      raise NonFiniteError(f"parameter '{name}' holds NaN or inf at environment step {env_steps}; "
                           "not saving it over the last good checkpoint")


# Fields whose change breaks a resumed run: the saved arrays or replay would
# not fit. Any other change is reported and then used.
FIXED_ON_RESUME = ("model.", "env.id", "env.num_envs", "env.pixels", "env.image_size",
                   "run.replay_capacity")


def check_resume(saved: Config, config: Config) -> list[str]:
  """Returns notes on changed fields; raises for changes a resume cannot take."""
  changes = cfgdiff(saved, config)
  fixed = [n for n in changes if any(n == f or n.startswith(f) for f in FIXED_ON_RESUME)]
  if fixed:
    details = "; ".join(f"{n}: {changes[n][0]!r} -> {changes[n][1]!r}" for n in fixed)
    raise ValueError(f"cannot resume with a changed {', '.join(fixed)} ({details}); use the saved "
                     "value or start a new logdir")
  return [f"config field {n} changed on resume: {a!r} -> {b!r}" for n, (a, b) in changes.items()]


def _truncate_metrics(path: pathlib.Path, last_step: int) -> None:
  """Drops records written after the checkpoint a run resumes from, so the
  file reads as one uninterrupted run."""
  if not path.exists():
    return
  kept = [line for line in path.read_text().splitlines(keepends=True)
          if _record_step(line) is not None and _record_step(line) <= last_step]
  tmp = path.with_suffix(".tmp")
  tmp.write_text("".join(kept))
  os.replace(tmp, path)


def _record_step(line: str) -> int | None:
  try:
    return int(json.loads(line)["step"])
  except (ValueError, KeyError, TypeError):
    return None


def train(config: Config, logdir: str | pathlib.Path, console: bool = True) -> dict[str, Any]:
  """Trains an agent as `config` says, writing metrics and checkpoints to `logdir`.

  If `logdir` holds a checkpoint, the run continues from it. Returns a
  summary: final counters and the scores of the episodes this call saw.
  """
  validate(config, logdir)
  logdir = pathlib.Path(logdir)
  latest = checkpoint.latest(logdir) if logdir.is_dir() else None
  notes = check_resume(checkpoint.saved_config(latest), config) if latest else []
  r = config.run
  # Environments first: a bad id or space fails before anything is written.
  env = make_env(config, seed=r.seed)
  eval_env = None
  logger = None
  try:
    eval_env = make_env(config, seed=r.seed + 10_000, num_envs=1) if r.eval_every else None
    logdir.mkdir(parents=True, exist_ok=True)
    (logdir / "config.json").write_text(config.to_json())
    state = agent.init(jax.random.key(r.seed), env.obs_spec, env.act_spec, config)
    if latest:
      state, replay, run = checkpoint.load(latest, state)
      driver = Driver(config, env, state, replay, Counters(**run["counters"]))
      checkpoint.set_rng_state(driver.rng, run["rng"])
      driver.restore_pending(checkpoint.load_pending(latest))
      _truncate_metrics(logdir / "metrics.jsonl", driver.counters.env_steps)
    else:
      replay = Replay(r.replay_capacity, env.num_envs, seed=r.seed)
      driver = Driver(config, env, state, replay)
    logger = Logger.for_run(logdir, config, console=console, start_step=driver.counters.env_steps)
    for note in notes:
      logger.message(note)
    if latest:
      logger.message(f"resuming from {latest.name}: {driver.counters.env_steps} environment steps, "
                     f"{driver.counters.updates} updates, {len(driver.replay)} steps in replay")
    return _loop(driver, config, logger, eval_env, logdir)
  finally:
    if logger is not None:
      logger.close()
    env.close()
    if eval_env is not None:
      eval_env.close()


def save(driver: Driver, config: Config, logdir: pathlib.Path) -> pathlib.Path:
  _check_params_finite(driver.state, driver.counters.env_steps)
  run = {"config": config.to_dict(), "counters": dataclasses.asdict(driver.counters),
         "rng": checkpoint.rng_state(driver.rng)}
  return checkpoint.save(logdir, driver.state, driver.replay, run, driver.pending(),
                         keep=config.run.keep_checkpoints)


def _loop(driver: Driver, config: Config, logger: Logger, eval_env, logdir) -> dict[str, Any]:
  r = config.run
  c = driver.counters
  pending = _Metrics()
  scores: list[float] = []

  def on_episode(metrics):
    scores.append(metrics["episode/score"])
    logger.write(c.env_steps, metrics)

  def on_update(metrics):
    pending.add(c.env_steps, metrics)

  now = time.time()
  last_log_time, last_console, last_save_time = now, now, now
  steps_at_log, updates_at_log, updates_at_console = c.env_steps, c.updates, c.updates
  next_log = (c.env_steps // r.log_every + 1) * r.log_every
  last_save_step = c.env_steps
  next_report = (c.env_steps // r.report_every + 1) * r.report_every if r.report_every else None
  while c.env_steps < r.steps:
    driver.collect(on_episode)
    driver.train(on_update)
    done = c.env_steps >= r.steps
    if r.eval_every and c.env_steps - c.last_eval >= r.eval_every:
      c.last_eval = c.env_steps
      results = _evaluate(driver.state, eval_env, logger, r, c.env_steps)
      logger.write(c.env_steps, {"eval/score": np.mean([x["score"] for x in results]),
                                 "eval/length": np.mean([x["length"] for x in results])})
    if next_report is not None and c.env_steps >= next_report:
      next_report = (c.env_steps // r.report_every + 1) * r.report_every
      frames = report.openloop_video(driver.state, driver.replay, seed=r.seed + c.env_steps)
      if frames is not None:  # None: no image observations, or replay still too short
        logger.video(c.env_steps, "openloop", frames)
    if c.env_steps >= next_log or done:
      next_log = (c.env_steps // r.log_every + 1) * r.log_every
      now = time.time()
      elapsed = max(now - last_log_time, 1e-9)
      metrics = pending.result()
      metrics["fps/env"] = (c.env_steps - steps_at_log) / elapsed
      metrics["fps/train"] = (c.updates - updates_at_log) / elapsed
      metrics["replay/size"] = len(driver.replay)
      metrics["train/updates"] = c.updates
      logger.write(c.env_steps, metrics)
      last_log_time, steps_at_log, updates_at_log = now, c.env_steps, c.updates
    now = time.time()
    if now - last_console >= r.console_every or done:
      recent = float(np.mean(scores[-10:])) if scores else float("nan")
      logger.progress(c.env_steps, {"updates/s": (c.updates - updates_at_console) / max(now - last_console, 1e-9),
                                    "updates": c.updates, "score(10)": recent, "episodes": c.episodes})
      last_console, updates_at_console = now, c.updates
    by_time = now - last_save_time >= 60 * r.save_every_minutes
    by_steps = r.save_every and c.env_steps - last_save_step >= r.save_every
    if by_time or by_steps or done:
      pending.check()  # a NaN stops the run before it is saved over good state
      save(driver, config, logdir)
      last_save_time, last_save_step = time.time(), c.env_steps
  return {"env_steps": c.env_steps, "updates": c.updates, "episodes": c.episodes,
          "scores": scores}
