"""A run's lifecycle: check, resume, then collect and train with evaluation,
reports, logging and saves on their schedules, until the last step, a stop
signal or a crash, each ending in a checkpoint.

`train(config, logdir)` runs an experiment. The collect/train loop is the
driver's (wmrl/drivers), the agent the algorithm's (wmrl/algorithms); the run
sees both only through their contracts. The checks it makes first are
wmrl/checks.py.
"""
from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import signal
import sys
import time
from typing import Any

import jax
import numpy as np

from wmrl import (algorithms, checkpoint, checks, distributed, drivers, envs, evaluate, report,
                  suites, video)
from wmrl.algorithms.contract import Algorithm
from wmrl.clocks import Every, Rate
from wmrl.config import Config, RunConfig
from wmrl.drivers import Driver, EnvironmentCrash, SeedStart
from wmrl.logging import Console, Logger, Silent
from wmrl.metrics import MetricBuffer, check_state_finite
from wmrl.signals import StopRequest, Stopped, stop_signals

# Gymnasium renders MuJoCo at 480x480: logged at full size, one 1000-step
# episode would add tens of MB of video to the logdir at every evaluation.
EVAL_VIDEO_SIDE = 256  # largest side of logged eval videos, in pixels


@dataclasses.dataclass
class SeedRun:
  """What one seed of a run writes and evaluates with: its config (`run.seed`
  its seed, no `run.seeds`), logdir, logger and evaluation environment."""

  config: Config
  logdir: pathlib.Path
  logger: Logger | None = None
  eval_env: envs.Env | None = None
  scores: list[float] = dataclasses.field(default_factory=list)
  evaluation: dict[str, float] = dataclasses.field(default_factory=dict)  # the last one


def seed_runs(config: Config, logdir: pathlib.Path) -> list[SeedRun]:
  """The run itself, or with `run.seeds` one run per seed in LOGDIR/seed-K: each
  is the run of that seed alone, which `wmrl eval`, `wmrl compare` and
  `wmrl train --logdir LOGDIR/seed-K` read as any other."""
  if not config.run.seeds:
    return [SeedRun(config, logdir)]
  return [SeedRun(config.replace(**{"run.seed": seed, "run.seeds": ()}), logdir / f"seed-{seed}")
          for seed in config.run.seeds]


def make_envs(config: Config, seed: int | None = None) -> tuple[envs.Env, envs.Env | None]:
  """The training environments and, where the run evaluates, one more for
  evaluation; seeded by `seed` (default `run.seed`)."""
  r = config.run
  seed = r.seed if seed is None else seed
  env = envs.from_config(config.env, seed=seed)
  try:
    evaluates = r.eval_every or r.eval_at_end
    eval_env = envs.from_config(config.env, seed=seed + 10_000, num_envs=1) if evaluates else None
  except BaseException:
    env.close()
    raise
  return env, eval_env


def train(config: Config, logdir: str | pathlib.Path, console: bool = True) -> dict[str, Any]:
  """Trains an agent as `config` says, writing metrics and checkpoints to `logdir`
  (with `run.seeds`, one agent per seed, in LOGDIR/seed-K).

  If `logdir` holds a checkpoint, the run continues from it. Returns a
  summary: final counters and the scores of the episodes this call saw
  (with seeds, under "seeds" by seed).

  With `run.distributed` each process calls this with the same config (but
  its process id): process 0 writes to `logdir` as a run of one process
  would, process I > 0 only its checkpoints, to LOGDIR/process-I.
  """
  distributed.check(config.run.distributed)
  distributed.initialize(config.run.distributed)  # before anything touches a device
  distributed.check_same_config(config)
  checks.validate(config, logdir)
  primary = distributed.is_primary()
  # Every process keeps its own replay, so each needs a checkpoint folder of its
  # own; the agent is saved in each too, so that a process on another host
  # resumes from its own disk without a shared filesystem.
  top = pathlib.Path(logdir)
  logdir = top if primary else top / f"process-{jax.process_index()}"
  runs = seed_runs(config, logdir)
  algo = algorithms.get(config.algorithm)
  seeds_axis = bool(config.run.seeds)
  if console and primary:  # the first progress line comes only after the first compiles
    print(f"building {config.env.id} ({config.env.num_envs} environment"
          f"{'s' if config.env.num_envs > 1 else ''} x {len(runs)} seed"
          f"{'s' if len(runs) > 1 else ''}) and the agent", file=sys.stderr, flush=True)
  checks.check_layout(logdir, seeds_axis)
  with contextlib.ExitStack() as closing:
    # Environments first: a bad id or space fails before anything is written.
    train_envs = []
    for run in runs:
      env, run.eval_env = make_envs(run.config, distributed.process_seed(run.config.run.seed))
      if not primary and run.eval_env is not None:  # process 0 alone evaluates
        run.eval_env.close()
        run.eval_env = None
      closing.callback(env.close)
      if run.eval_env is not None:
        closing.callback(run.eval_env.close)
      train_envs.append(env)
    starts, notes, resumed_from = _starts(algo, runs, train_envs)
    logdir.mkdir(parents=True, exist_ok=True)
    for run in ([SeedRun(config, logdir)] if seeds_axis else []) + runs:
      run.logdir.mkdir(parents=True, exist_ok=True)
      if primary:
        (run.logdir / "config.json").write_text(run.config.to_json())
    driver = drivers.make(algo, config, starts, seeds_axis)
    starts = None  # the driver holds the states now: free the rest
    start = driver.counters.env_steps
    console = console and primary
    for run in runs:
      run.logger = Logger.for_run(run.logdir, run.config, console=console and not seeds_axis,
                                  start_step=start) if primary else Silent()
      closing.callback(run.logger.close)
    screen = runs[0].logger.console if not seeds_axis else Console(
        config.run.steps, suites.frames_per_step(config.env), enabled=console)
    for note in notes:
      screen.message(note)
    # run.driver may say `auto`: the console says which one that chose.
    screen.message(f"driver: {drivers.resolved(config)}; compiling the policy, then the train "
                   "step once replay holds a batch of windows")
    if resumed_from:
      screen.message(f"resuming from {resumed_from}: {start} environment steps, "
                     f"{driver.counters.updates} updates, {driver.replay_size(0)} steps in replay"
                     + (f", for each of {len(runs)} seeds" if seeds_axis else ""))
    with stop_signals() as stop:
      return _loop(driver, runs, screen, stop)


def _starts(algo: Algorithm, runs: list[SeedRun], train_envs
            ) -> tuple[list[SeedStart], list[str], str | None]:
  """Where each seed starts: from the newest checkpoint every seed (and every
  process) has, or fresh. Returns the starts, notes for the console and the
  name of the checkpoint resumed from (None: fresh)."""
  obs_spec, act_spec = train_envs[0].obs_spec, train_envs[0].act_spec
  fresh = [algo.init(jax.random.key(run.config.run.seed), obs_spec, act_spec, run.config)
           for run in runs]
  notes: list[str] = []

  def template(i: int, saved: Config):  # refuses a saved config this run cannot take
    notes.extend(n for n in checks.check_resume(saved, runs[i].config, obs_spec, act_spec)
                 if n not in notes)
    return fresh[i]

  skipped: list[str] = []
  newest = None  # one process: its newest readable step, whatever it is
  if jax.process_count() > 1:  # every process resumes from a step all of them have
    local_steps = set.intersection(*(set(checkpoint.steps(run.logdir)) for run in runs))
    newest = distributed.newest_common_step(sorted(local_steps))
  restored = checkpoint.restore_newest([run.logdir for run in runs], template,
                                       lambda path, why: skipped.append(why), newest)
  distributed.same_step(restored[0].run["counters"]["env_steps"] if restored else -1)
  starts = []
  for i, (run, env) in enumerate(zip(runs, train_envs)):
    seed = distributed.process_seed(run.config.run.seed)
    if not restored:
      starts.append(SeedStart(seed, env, fresh[i]))
      continue
    saved = restored[i]
    checks.check_replay_entries(saved.replay, algo, saved.state, run.config.run.replay_context,
                                run.config.replay.fracs.priority > 0)
    counters = saved.run["counters"]
    starts.append(SeedStart(seed, env, saved.state, saved.replay,
                            drivers.restored_counters(counters), counters["episodes"],
                            saved.pending))
  return starts, skipped + notes, restored[0].path.name if restored else None


def save(driver: Driver, runs: list[SeedRun]) -> pathlib.Path:
  """A checkpoint of every seed at the current step; returns the last one's path."""
  c = driver.counters
  states = [driver.agent_state(i) for i in range(len(runs))]
  for state, run in zip(states, runs):  # all checked before any is saved
    check_state_finite(state, c.env_steps,
                       f" of seed {run.config.run.seed}" if len(runs) > 1 else "")
  for i, (state, run) in enumerate(zip(states, runs)):
    kept = driver.snapshot(i)
    saved_run = {"config": run.config.to_dict(), "counters": kept.counters}
    path = checkpoint.save(run.logdir, state, kept.replay, saved_run, kept.pending,
                           keep=run.config.run.keep_checkpoints)
  return path


def _evaluate(algo: Algorithm, state, env: envs.Env, logger: Logger, run: RunConfig,
              step: int, video_wanted: bool = True) -> dict[str, float]:
  """The run's evaluation episodes, averaged; with run.eval_video (and
  `video_wanted`) the first is filmed (where the env renders or sees images)
  and logged as video "eval"."""
  film = 1 if run.eval_video and video_wanted and evaluate.can_film(env) else 0
  results, videos = evaluate.run_episodes(algo, state, env, run.eval_episodes, run.seed + step,
                                          film)
  if videos:
    logger.video(step, "eval", video.shrink(videos[0], EVAL_VIDEO_SIDE), fps=30)
  return {"eval/score": np.mean([x["score"] for x in results]),
          "eval/length": np.mean([x["length"] for x in results])}


def _loop(driver: Driver, runs: list[SeedRun], screen: Console,
          stop: StopRequest | None = None) -> dict[str, Any]:
  """Iterates the driver to `run.steps`, with everything due between iterations."""
  r = runs[0].config.run
  c = driver.counters
  primary = distributed.is_primary()
  pending = MetricBuffer([run.config.run.seed for run in runs] if len(runs) > 1 else None)

  def on_episode(index, metrics):
    runs[index].scores.append(metrics["episode/score"])
    runs[index].logger.write(c.env_steps, metrics)

  def on_update(metrics):
    pending.add(c.env_steps, metrics)

  now = time.time()
  screen.start(c.env_steps)
  grid = lambda every: (c.env_steps // every) * every if every else 0
  log_due, report_due = Every(r.log_every, grid(r.log_every)), Every(r.report_every, grid(r.report_every))
  eval_due, save_due = Every(r.eval_every, c.last_eval), Every(r.save_every, c.env_steps)
  console_due, save_time_due = Every(r.console_every, now), Every(60 * r.save_every_minutes, now)
  env_rate, train_rate = Rate(now, c.env_steps), Rate(now, c.updates)
  console_rate = Rate(now, c.updates)
  while c.env_steps < r.steps:
    try:
      driver.iterate(on_episode, on_update)
    except EnvironmentCrash as crash:
      _save_after_crash(driver, runs, pending, crash, screen)
    done = c.env_steps >= r.steps
    on_grid = eval_due(c.env_steps)
    if on_grid or (done and r.eval_at_end):  # once where the grid ends at run.steps
      for i, run in enumerate(runs if primary else []):
        # The closing evaluation alone films nothing: rendering costs more than it.
        run.evaluation = _evaluate(driver.algo, driver.agent_state(i), run.eval_env, run.logger,
                                   run.config.run, c.env_steps, video_wanted=on_grid)
        run.logger.write(c.env_steps, run.evaluation)
      if on_grid:
        c.last_eval = eval_due.last  # saved: a resumed run evaluates on the same grid
    if report_due(c.env_steps):
      for i, run in enumerate(runs if primary else []):
        videos = report.report_videos(driver, i, r.replay_context + r.batch_length,
                                      seed=run.config.run.seed + c.env_steps)
        for name, frames in videos.items():  # none yet where replay is too short
          run.logger.video(c.env_steps, name, frames)
    if log_due(c.env_steps) or done:
      now = time.time()
      rates = {"fps/env": env_rate(now, c.env_steps), "fps/train": train_rate(now, c.updates)}
      for i, (run, metrics) in enumerate(zip(runs, pending.results())):
        run.logger.write(c.env_steps, {**metrics, **rates, "replay/size": driver.replay_size(i),
                                       "train/updates": c.updates})
    now = time.time()
    if console_due(now) or done:
      screen.progress(c.env_steps, {"updates/s": console_rate(now, c.updates),
                                    "updates": c.updates, "score(10)": _recent_score(runs),
                                    "episodes": sum(driver.episodes)})
    stopping = stop is not None and stop.signal is not None and not done
    # In several processes, a clock's or a signal's decision in any of them is
    # taken by all: the next update needs every process, and a resume a
    # checkpoint of the same step in each.
    timed, stopping = distributed.agree([save_time_due(now), stopping])
    stopping = stopping and not done
    # `|`, not `or`: both schedules look at the clock; either one saves.
    if timed | save_due(c.env_steps) or done or stopping:
      pending.check()  # a NaN stops the run before it is saved over good state
      path = save(driver, runs)
      save_time_due.last, save_due.last = time.time(), c.env_steps
    if stopping:
      cause = signal.Signals(stop.signal).name if stop.signal else "another process's signal"
      message = (f"stopped by {cause} at {c.env_steps} environment "
                 f"steps; saved {path.name}: the same command continues from there")
      screen.message(message)
      # Stopped by another process's signal, this one leaves as a scheduler's stop.
      raise Stopped(stop.signal or signal.SIGTERM, message)
  return _summary(driver, runs)


def _summary(driver: Driver, runs: list[SeedRun]) -> dict[str, Any]:
  c = driver.counters
  summary = {"env_steps": c.env_steps, "updates": c.updates, "episodes": sum(driver.episodes),
             "driver": drivers.resolved(runs[0].config),
             "scores": runs[0].scores if len(runs) == 1 else [],
             "evaluation": runs[0].evaluation if len(runs) == 1 else {}}
  if len(runs) > 1:
    summary["seeds"] = {run.config.run.seed: {"episodes": episodes, "scores": run.scores,
                                              "evaluation": run.evaluation}
                        for run, episodes in zip(runs, driver.episodes)}
  return summary


def _recent_score(runs: list[SeedRun]) -> float | str:
  """The mean score of each seed's last 10 episodes; with seeds, their mean and
  standard deviation over the seeds that have finished one."""
  recent = [float(np.mean(run.scores[-10:])) for run in runs if run.scores]
  if len(runs) == 1 or not recent:
    return recent[0] if recent else float("nan")
  return f"{np.mean(recent):.4g} ± {np.std(recent):.2g} ({len(recent)} seeds)"


def _save_after_crash(driver: Driver, runs: list[SeedRun], pending: MetricBuffer,
                      crash: EnvironmentCrash, screen: Console) -> None:
  """Saves everything collected before an environment raised, then stops the run
  with the environment, the seed, the step and the exception named."""
  run = runs[crash.index]
  where = (f"environment {run.config.env.id}"
           + (f" of seed {run.config.run.seed}" if len(runs) > 1 else "")
           + f" raised at environment step {crash.env_steps}: {crash}")
  try:
    pending.check()
    path = save(driver, runs)
  except Exception as e:  # a NaN or a failed save: say so, and keep the crash as the cause
    raise EnvironmentCrash(crash.index, crash.env_steps, crash.error,
                           f"{where}; no checkpoint was saved ({e})") from crash.error
  message = (f"{where}; saved {path.name} with everything collected before it: the same "
             "command continues from there")
  screen.message(message)
  raise EnvironmentCrash(crash.index, crash.env_steps, crash.error, message) from crash.error
