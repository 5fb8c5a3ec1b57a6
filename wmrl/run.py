"""A whole run: validate, resume, then collect and train with evaluation, reports,
logging and saves on their schedules.

`train(config, logdir)` runs an experiment; the collect/train loop itself is
`wmrl/driver.py`, the agent the algorithm `config.algorithm` names.
"""
from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import signal
import time
from typing import Any

import jax
import numpy as np

from wmrl import algorithms, checkpoint, envs, evaluate, mesh, report, signals, video
from wmrl.algorithm import Algorithm, entry_specs
from wmrl.config import Config, RunConfig, diff as cfgdiff
from wmrl.driver import Counters, Driver
from wmrl.logging import Logger, require_wandb
from wmrl.replay import Replay
from wmrl.trees import is_key, path_name, tree_shapes

# Gymnasium renders MuJoCo at 480x480: logged at full size, one 1000-step
# episode would add tens of MB of video to the logdir at every evaluation.
EVAL_VIDEO_SIDE = 256  # largest side of logged eval videos, in pixels

# Fields whose change breaks a resumed run: the saved replay or environments
# would not fit. A change of the model's settings is checked by the shapes of
# the state it makes (`check_resume`); any other change is reported and used.
FIXED_ON_RESUME = ("env.id", "env.num_envs", "env.pixels", "env.image_size",
                   "run.replay_capacity")


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
      (r.replay_context >= 0,
       f"run.replay_context must be >= 0 (steps before each training window whose stored "
       f"latent starts it; 0: start from zeros), got {r.replay_context}"),
      (config.env.num_envs > 0, f"env.num_envs must be positive, got {config.env.num_envs}"),
      (r.replay_capacity >= config.env.num_envs * (r.batch_length + r.replay_context),
       f"run.replay_capacity={r.replay_capacity} cannot hold one training sequence "
       f"(run.replay_context + run.batch_length = {r.replay_context + r.batch_length} steps) per "
       f"environment; raise it"),
      (config.behavior.imag_horizon > 0,
       f"behavior.imag_horizon must be positive, got {config.behavior.imag_horizon}"),
      (r.report_every >= 0, f"run.report_every must be >= 0 (0: never), got {r.report_every}"),
  ]
  for ok, message in checks:
    if not ok:
      raise ValueError(message)
  algorithms.get(config.algorithm)
  mesh.check(config, jax.local_device_count())
  if r.wandb:
    require_wandb()  # the run asked for W&B: fail now, not after setting up


def state_shapes(config: Config, obs_spec, act_spec) -> dict[str, jax.ShapeDtypeStruct]:
  """The arrays of a freshly initialised state under `config`, by tree path, computed
  without allocating them."""
  algo = algorithms.get(config.algorithm)
  state = jax.eval_shape(lambda k: algo.init(k, obs_spec, act_spec, config), jax.random.key(0))
  return tree_shapes(state, "state")


def check_resume(saved: Config, config: Config, obs_spec, act_spec) -> list[str]:
  """Returns notes on changed fields; raises for changes a resume cannot take.

  A changed setting of the model or the optimiser is refused only where the
  state it makes has other arrays than the saved one (changing `free_nats`
  or `unimix` changes no array and is allowed).
  """
  changes = cfgdiff(saved, config)
  fixed = [n for n in changes if n in FIXED_ON_RESUME]
  if fixed:
    details = "; ".join(f"{n}: {changes[n][0]!r} -> {changes[n][1]!r}" for n in fixed)
    raise ValueError(f"cannot resume with a changed {', '.join(fixed)} ({details}); use the saved "
                     "value or start a new logdir")
  old_context, new_context = saved.run.replay_context, config.run.replay_context
  if (old_context > 0) != (new_context > 0):
    raise ValueError(
        f"cannot resume with a changed run.replay_context ({old_context} -> {new_context}): the "
        f"saved replay {'holds' if old_context else 'lacks'} the policy latents that a replay "
        f"context above 0 stores with every step; use a run.replay_context "
        f"{'above 0' if old_context else 'of 0'} or start a new logdir")
  shaping = [n for n in changes if not n.startswith(("run.", "env."))]
  if shaping:
    old, new = state_shapes(saved, obs_spec, act_spec), state_shapes(config, obs_spec, act_spec)
    differ = sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n))
    if differ:
      details = "; ".join(f"{n}: {changes[n][0]!r} -> {changes[n][1]!r}" for n in shaping)
      arrays = ", ".join(f"{n} {_shape(old.get(n))} -> {_shape(new.get(n))}" for n in differ[:3])
      raise ValueError(f"cannot resume with a changed {', '.join(shaping)} ({details}): the state "
                       f"would have other arrays ({arrays}{', ...' if len(differ) > 3 else ''}); "
                       "use the saved values or start a new logdir")
  return [f"config field {n} changed on resume: {a!r} -> {b!r}" for n, (a, b) in changes.items()]


def check_replay_entries(replay: Replay, algo: Algorithm, state, context: int) -> None:
  """Refuses a saved replay whose steps lack the replay entries that `context`
  needs (filled with run.replay_context 0, or by a wmrl that stored none), or
  hold ones a run without context would not add."""
  if not replay.keys:
    return
  names = set(entry_specs(algo, state))
  held = names & set(replay.keys)
  if context and held != names:
    raise ValueError(f"cannot resume with run.replay_context={context}: the saved replay has no "
                     f"{', '.join(sorted(names - held))} (it was filled with run.replay_context 0 "
                     "or by an older wmrl); resume with run.replay_context 0 or start a new logdir")
  if not context and held:
    raise ValueError(f"cannot resume with run.replay_context=0: the saved replay holds "
                     f"{', '.join(sorted(held))}, stored for a replay context above 0; resume with "
                     "run.replay_context above 0 or start a new logdir")


def _shape(spec) -> str:
  return "none" if spec is None else f"{spec.dtype}{list(spec.shape)}"


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


def check_state_finite(state, env_steps: int) -> None:
  """Refuses a state with a NaN or inf in any floating-point array."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    if is_key(leaf):
      continue
    leaf = np.asarray(leaf)
    if leaf.dtype.kind == "f" and not np.isfinite(leaf).all():
      raise NonFiniteError(f"state array '{path_name(path)}' holds NaN or inf at environment step "
                           f"{env_steps}; not saving it over the last good checkpoint")


class Every:
  """True once every `interval` (environment steps or seconds; 0: never), on the
  grid of multiples of `interval` counted from `last`."""

  def __init__(self, interval: float, last: float = 0.0):
    self.interval = interval
    self.last = last

  def __call__(self, now: float) -> bool:
    if not self.interval or now - self.last < self.interval:
      return False
    self.last = now - (now - self.last) % self.interval
    return True


def make_envs(config: Config) -> tuple[envs.Env, envs.Env | None]:
  """The training environments and, where the run evaluates, one more for evaluation."""
  r = config.run
  env = envs.from_config(config.env, seed=r.seed)
  try:
    eval_env = envs.from_config(config.env, seed=r.seed + 10_000, num_envs=1) if r.eval_every else None
  except BaseException:
    env.close()
    raise
  return env, eval_env


def train(config: Config, logdir: str | pathlib.Path, console: bool = True) -> dict[str, Any]:
  """Trains an agent as `config` says, writing metrics and checkpoints to `logdir`.

  If `logdir` holds a checkpoint, the run continues from it. Returns a
  summary: final counters and the scores of the episodes this call saw.
  """
  validate(config, logdir)
  logdir = pathlib.Path(logdir)
  latest = checkpoint.latest(logdir) if logdir.is_dir() else None
  saved = checkpoint.saved_config(latest) if latest else None
  r = config.run
  algo = algorithms.get(config.algorithm)
  # Environments first: a bad id or space fails before anything is written.
  env, eval_env = make_envs(config)
  logger = None
  try:
    notes = check_resume(saved, config, env.obs_spec, env.act_spec) if latest else []
    logdir.mkdir(parents=True, exist_ok=True)
    (logdir / "config.json").write_text(config.to_json())
    state = algo.init(jax.random.key(r.seed), env.obs_spec, env.act_spec, config)
    if latest:
      state, replay, saved_run = checkpoint.load(latest, state)
      check_replay_entries(replay, algo, state, r.replay_context)
      driver = Driver(algo, r, env, state, replay, Counters(**saved_run["counters"]))
      checkpoint.set_rng_state(driver.rng, saved_run["rng"])
      driver.restore_pending(checkpoint.load_pending(latest))
    else:
      driver = Driver(algo, r, env, state, Replay(r.replay_capacity, env.num_envs, seed=r.seed))
    logger = Logger.for_run(logdir, config, console=console, start_step=driver.counters.env_steps)
    for note in notes:
      logger.message(note)
    if latest:
      logger.message(f"resuming from {latest.name}: {driver.counters.env_steps} environment steps, "
                     f"{driver.counters.updates} updates, {len(driver.replay)} steps in replay")
    with stop_signals() as stop:
      return _loop(driver, config, logger, eval_env, logdir, stop)
  finally:
    if logger is not None:
      logger.close()
    env.close()
    if eval_env is not None:
      eval_env.close()


def save(driver: Driver, config: Config, logdir: pathlib.Path) -> pathlib.Path:
  check_state_finite(driver.state, driver.counters.env_steps)
  run = {"config": config.to_dict(), "counters": dataclasses.asdict(driver.counters),
         "rng": checkpoint.rng_state(driver.rng)}
  return checkpoint.save(logdir, driver.state, driver.replay, run, driver.pending(),
                         keep=config.run.keep_checkpoints)


def _evaluate(algo: Algorithm, state, env: envs.Env, logger: Logger, run: RunConfig,
              step: int) -> dict[str, float]:
  """The run's evaluation episodes, averaged; with run.eval_video the first is
  filmed (where the env renders or sees images) and logged as video "eval"."""
  film = 1 if run.eval_video and evaluate.can_film(env) else 0
  results, videos = evaluate.run_episodes(algo, state, env, run.eval_episodes, run.seed + step,
                                          film)
  if videos:
    logger.video(step, "eval", video.shrink(videos[0], EVAL_VIDEO_SIDE), fps=30)
  return {"eval/score": np.mean([x["score"] for x in results]),
          "eval/length": np.mean([x["length"] for x in results])}


class StopRequest:
  """Which stop signal arrived, if any (set by the handler of `stop_signals`)."""

  def __init__(self):
    self.signal: int | None = None

  def __call__(self, signum, frame) -> None:
    if self.signal is not None:  # a second Ctrl-C: stop at once
      raise KeyboardInterrupt
    self.signal = signum


@contextlib.contextmanager
def stop_signals():
  """Turns SIGINT (Ctrl-C) and SIGTERM (a scheduler's stop) into a request the loop
  reads between steps, so neither interrupts JAX mid-dispatch or a save half-way."""
  request = StopRequest()
  with signals.handling(request):
    yield request


def _loop(driver: Driver, config: Config, logger: Logger, eval_env, logdir,
          stop: StopRequest | None = None) -> dict[str, Any]:
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
  grid = lambda every: (c.env_steps // every) * every if every else 0
  log_due, report_due = Every(r.log_every, grid(r.log_every)), Every(r.report_every, grid(r.report_every))
  eval_due, save_due = Every(r.eval_every, c.last_eval), Every(r.save_every, c.env_steps)
  console_due, save_time_due = Every(r.console_every, now), Every(60 * r.save_every_minutes, now)
  last_log_time, steps_at_log, updates_at_log = now, c.env_steps, c.updates
  last_console, updates_at_console = now, c.updates
  while c.env_steps < r.steps:
    driver.collect(on_episode)
    driver.train(on_update)
    done = c.env_steps >= r.steps
    if eval_due(c.env_steps):
      c.last_eval = eval_due.last  # saved: a resumed run evaluates on the same grid
      logger.write(c.env_steps, _evaluate(driver.algo, driver.state, eval_env, logger, r,
                                          c.env_steps))
    if report_due(c.env_steps):
      length = r.replay_context + r.batch_length
      videos = report.openloop_video(driver.algo, driver.state, driver.replay, length,
                                     seed=r.seed + c.env_steps)
      for name, frames in videos.items():  # none yet where replay is too short
        logger.video(c.env_steps, name, frames)
    if log_due(c.env_steps) or done:
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
    if console_due(now) or done:
      recent = float(np.mean(scores[-10:])) if scores else float("nan")
      rate = (c.updates - updates_at_console) / max(now - last_console, 1e-9)
      logger.progress(c.env_steps, {"updates/s": rate, "updates": c.updates, "score(10)": recent,
                                    "episodes": c.episodes})
      last_console, updates_at_console = now, c.updates
    stopping = stop is not None and stop.signal is not None and not done
    # `|`, not `or`: both schedules look at the clock; either one saves.
    if save_time_due(now) | save_due(c.env_steps) or done or stopping:
      pending.check()  # a NaN stops the run before it is saved over good state
      path = save(driver, config, logdir)
      save_time_due.last, save_due.last = time.time(), c.env_steps
    if stopping:
      logger.message(f"stopped by {signal.Signals(stop.signal).name} at {c.env_steps} environment "
                     f"steps; saved {path.name}: the same command continues from there")
      raise KeyboardInterrupt
  return {"env_steps": c.env_steps, "updates": c.updates, "episodes": c.episodes,
          "scores": scores}
