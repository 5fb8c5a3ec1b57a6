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

from wmrl import (algorithms, checkpoint, distributed, envs, evaluate, jaxenvs, mesh, report,
                  signals, suites, video)
from wmrl.algorithm import Algorithm, entry_specs
from wmrl.config import Config, RunConfig, diff as cfgdiff
from wmrl.driver import Counters, Driver, EnvironmentCrash, Lane
from wmrl.fused import FusedDriver, SeedStart
from wmrl.logging import Console, Logger, Silent, require_wandb
from wmrl.replay import Replay
from wmrl.trees import is_key, path_name, stack_trees, tree_shapes

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
      (len(set(r.seeds)) == len(r.seeds),
       f"run.seeds repeat a seed ({', '.join(map(str, r.seeds))}): each seed trains once"),
      (r.seeds_batch >= 0,
       f"run.seeds_batch must be >= 0 (seeds vmapped at once; 0: all), got {r.seeds_batch}"),
      (r.seeds_batch == 0 or r.seeds,
       f"run.seeds_batch={r.seeds_batch} groups the seeds of run.seeds, and none are given: "
       f"name them (run.seeds 0,1,2,3) or drop run.seeds_batch"),
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
  check_driver(config)
  algorithms.get(config.algorithm)
  mesh.check(config, jax.local_device_count(), jax.process_count())
  if r.wandb:
    require_wandb()  # the run asked for W&B: fail now, not after setting up


def uses_fused_driver(config: Config) -> bool:
  """Whether `config` runs the fused driver (wmrl/fused.py): asked for, or "auto"
  on a JAX environment."""
  return config.run.driver == "fused" or (config.run.driver == "auto"
                                          and jaxenvs.is_jax_id(config.env.id))


def check_driver(config: Config) -> None:
  """Refuses a `run.driver` that cannot run `config`."""
  r = config.run
  if r.driver not in ("auto", "host", "fused"):
    raise ValueError(f"run.driver must be auto, host or fused, got {r.driver!r}")
  if r.fused_steps < 0:
    raise ValueError(f"run.fused_steps must be >= 0 (0: from the train ratio), got {r.fused_steps}")
  if not uses_fused_driver(config):
    return
  if not jaxenvs.is_jax_id(config.env.id):
    raise ValueError(f"run.driver fused steps JAX environments ({', '.join(jaxenvs.PREFIXES)} ids); "
                     f"{config.env.id} is a host environment: use run.driver host or auto")
  unsupported = [(tuple(r.train_devices) != (0,) or tuple(r.policy_devices) != (0,),
                  "run.train_devices and run.policy_devices"),
                 (r.distributed.num_processes > 1 or r.distributed.auto, "run.distributed")]
  for unsupported_here, name in unsupported:
    if unsupported_here:
      raise ValueError(f"the fused driver runs one seed on one device; {name} needs the host "
                       "driver: add --run.driver host")


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
  """Collects per-update metrics (device arrays; [seeds] with a seeds axis) and
  averages them with one host transfer; checks every value is finite on the way."""

  def __init__(self, seeds: list[int] | None = None):
    self.seeds = seeds  # the seed of each entry of a seeds axis; None: no such axis
    self._items: list[tuple[int, dict]] = []

  def add(self, env_steps: int, metrics: dict) -> None:
    self._items.append((env_steps, metrics))

  def check(self) -> list[dict]:
    """Fetches the pending metrics; raises at the first non-finite value."""
    items = jax.device_get([m for _, m in self._items])
    for (step, _), metrics in zip(self._items, items):
      for name in sorted(metrics):
        values = np.asarray(metrics[name]).reshape(-1)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
          seed = f" in seed {self.seeds[bad[0]]}" if self.seeds else ""
          raise NonFiniteError(f"metric '{name}' became {float(values[bad[0]])} at environment "
                               f"step {step}{seed}; the run stops here, and its last checkpoint "
                               "holds the last good state")
    return items

  def results(self) -> list[dict[str, float]]:
    """The pending metrics' means, one dict per seed (one without a seeds axis)."""
    items = self.check()
    self._items = []
    lanes = len(self.seeds) if self.seeds else 1
    if not items:
      return [{} for _ in range(lanes)]
    means = {k: np.mean([np.asarray(m[k]).reshape(-1) for m in items], 0) for k in items[0]}
    return [{k: float(v[i]) for k, v in means.items()} for i in range(lanes)]


def check_state_finite(state, env_steps: int, whose: str = "") -> None:
  """Refuses a state with a NaN or inf in any floating-point array."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    if is_key(leaf):
      continue
    leaf = np.asarray(leaf)
    if leaf.dtype.kind == "f" and not np.isfinite(leaf).all():
      raise NonFiniteError(f"state array '{path_name(path)}'{whose} holds NaN or inf at "
                           f"environment step {env_steps}; not saving it over the last good "
                           "checkpoint")


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


def make_envs(config: Config, seed: int | None = None) -> tuple[envs.Env, envs.Env | None]:
  """The training environments and, where the run evaluates, one more for
  evaluation; seeded by `seed` (default `run.seed`)."""
  r = config.run
  seed = r.seed if seed is None else seed
  env = envs.from_config(config.env, seed=seed)
  try:
    eval_env = envs.from_config(config.env, seed=seed + 10_000, num_envs=1) if r.eval_every else None
  except BaseException:
    env.close()
    raise
  return env, eval_env


@dataclasses.dataclass
class SeedRun:
  """What one seed of a run writes and evaluates with: its config (`run.seed`
  its seed, no `run.seeds`), logdir, logger and evaluation environment."""

  config: Config
  logdir: pathlib.Path
  logger: Logger | None = None
  eval_env: envs.Env | None = None
  scores: list[float] = dataclasses.field(default_factory=list)


def seed_runs(config: Config, logdir: pathlib.Path) -> list[SeedRun]:
  """The run itself, or with `run.seeds` one run per seed in LOGDIR/seed-K: each
  is the run of that seed alone, which `wmrl eval`, `wmrl compare` and
  `wmrl train --logdir LOGDIR/seed-K` read as any other."""
  if not config.run.seeds:
    return [SeedRun(config, logdir)]
  return [SeedRun(config.replace(**{"run.seed": seed, "run.seeds": ()}), logdir / f"seed-{seed}")
          for seed in config.run.seeds]


def _check_layout(logdir: pathlib.Path, seeds_axis: bool) -> None:
  """Refuses a logdir that holds a run of the other kind: one seed's checkpoints
  at its top where seeds are asked, or seed folders where one seed is."""
  if seeds_axis and checkpoint.list_checkpoints(logdir):
    raise ValueError(f"{logdir} holds a run of one seed (its checkpoints are at the top); "
                     "train several seeds in a new logdir, or resume it without run.seeds")
  seeded = sorted(p.name for p in logdir.glob("seed-*") if checkpoint.list_checkpoints(p))
  if not seeds_axis and seeded:
    raise ValueError(f"{logdir} holds a run of several seeds ({', '.join(seeded)}); resume it "
                     "with its run.seeds, or one seed alone with --logdir LOGDIR/seed-K")


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
  validate(config, logdir)
  primary = distributed.is_primary()
  top = pathlib.Path(logdir)
  # Every process keeps its own replay, so each needs a checkpoint folder of its
  # own; the agent is saved in each too, so that a process on another host
  # resumes from its own disk without a shared filesystem.
  logdir = top if primary else top / f"process-{jax.process_index()}"
  runs = seed_runs(config, logdir)
  algo = algorithms.get(config.algorithm)
  seeds_axis = bool(config.run.seeds)
  _check_layout(logdir, seeds_axis)
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
    obs_spec, act_spec = train_envs[0].obs_spec, train_envs[0].act_spec
    fresh = [algo.init(jax.random.key(run.config.run.seed), obs_spec, act_spec, run.config)
             for run in runs]
    notes: list[str] = []

    def template(i: int, saved: Config):  # refuses a saved config this run cannot take
      notes.extend(n for n in check_resume(saved, runs[i].config, obs_spec, act_spec)
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
    logdir.mkdir(parents=True, exist_ok=True)
    if primary:
      (logdir / "config.json").write_text(config.to_json())
    lanes, states, pending = [], [], []
    for i, (run, env) in enumerate(zip(runs, train_envs)):
      r = run.config.run
      seed = distributed.process_seed(r.seed)
      run.logdir.mkdir(parents=True, exist_ok=True)
      if primary:
        (run.logdir / "config.json").write_text(run.config.to_json())
      if restored:
        saved = restored[i]
        check_replay_entries(saved.replay, algo, saved.state, r.replay_context)
        lane = Lane(env, saved.replay, seed, Counters(**saved.run["counters"]))
        checkpoint.set_rng_state(lane.rng, saved.run["rng"])
        states.append(saved.state)
        pending.append(saved.pending)
      else:
        lane = Lane(env, Replay(r.replay_capacity, env.num_envs, seed=seed), seed)
        states.append(fresh[i])
        pending.append({})
      lanes.append(lane)
    fresh = None  # the restored states replace them: free their memory
    if uses_fused_driver(config):
      starts = [SeedStart(lane.seed, lane.replay if restored else None, lane.counters, lane.rng)
                for lane in lanes]
      driver = FusedDriver(algo, config.run, lanes[0].env.jax_env,
                           stack_trees(states) if seeds_axis else states[0], starts, seeds_axis)
    else:
      driver = Driver(algo, config.run, lanes, stack_trees(states) if seeds_axis else states[0],
                      seeds_axis, mesh.Placement.from_run(config.run))
    lanes = None
    driver.restore_pending(pending)
    start = driver.counters.env_steps
    console = console and primary
    for run in runs:
      run.logger = Logger.for_run(run.logdir, run.config, console=console and not seeds_axis,
                                  start_step=start) if primary else Silent()
      closing.callback(run.logger.close)
    screen = runs[0].logger.console if not seeds_axis else Console(
        config.run.steps, suites.frames_per_step(config.env), enabled=console)
    for note in skipped + notes:
      screen.message(note)
    if restored:
      screen.message(f"resuming from {restored[0].path.name}: {start} environment steps, "
                     f"{driver.counters.updates} updates, {len(driver.lanes[0].replay)} steps in replay"
                     + (f", for each of {len(runs)} seeds" if seeds_axis else ""))
    with stop_signals() as stop:
      return _loop(driver, runs, screen, stop)


def save(driver: Driver | FusedDriver, runs: list[SeedRun]) -> pathlib.Path:
  """A checkpoint of every seed at the current step; returns the last one's path."""
  c = driver.counters
  states = [driver.lane_state(i) for i in range(len(runs))]
  for state, run in zip(states, runs):  # all checked before any is saved
    check_state_finite(state, c.env_steps,
                       f" of seed {run.config.run.seed}" if len(runs) > 1 else "")
  pending = driver.pending()
  for state, run, lane, lane_pending in zip(states, runs, driver.lanes, pending):
    saved_run = {"config": run.config.to_dict(), "counters": dataclasses.asdict(lane.counters),
                 "rng": checkpoint.rng_state(lane.rng)}
    path = checkpoint.save(run.logdir, state, lane.replay, saved_run, lane_pending,
                           keep=run.config.run.keep_checkpoints)
  return path


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


class Stopped(KeyboardInterrupt):
  """The run stopped on a signal after saving a checkpoint at the current step.

  A KeyboardInterrupt, so that code calling `train` stops as on Ctrl-C; `wmrl
  train` exits with the shell's code for the signal (130 for SIGINT, 143 for
  SIGTERM), with no traceback: nothing went wrong.
  """

  def __init__(self, signum: int, message: str):
    self.signum = signum
    super().__init__(message)


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


def _loop(driver: Driver | FusedDriver, runs: list[SeedRun], screen: Console,
          stop: StopRequest | None = None) -> dict[str, Any]:
  config = runs[0].config
  r = config.run
  c = driver.counters
  pending = _Metrics([run.config.run.seed for run in runs] if len(runs) > 1 else None)

  def on_episode(lane, metrics):
    runs[lane].scores.append(metrics["episode/score"])
    runs[lane].logger.write(c.env_steps, metrics)

  def on_update(metrics):
    pending.add(c.env_steps, metrics)

  now = time.time()
  screen.start(c.env_steps)
  grid = lambda every: (c.env_steps // every) * every if every else 0
  log_due, report_due = Every(r.log_every, grid(r.log_every)), Every(r.report_every, grid(r.report_every))
  eval_due, save_due = Every(r.eval_every, c.last_eval), Every(r.save_every, c.env_steps)
  console_due, save_time_due = Every(r.console_every, now), Every(60 * r.save_every_minutes, now)
  primary = distributed.is_primary()
  last_log_time, steps_at_log, updates_at_log = now, c.env_steps, c.updates
  last_console, updates_at_console = now, c.updates
  while c.env_steps < r.steps:
    try:
      driver.iterate(on_episode, on_update)
    except EnvironmentCrash as crash:
      _save_after_crash(driver, runs, pending, crash, screen)
    done = c.env_steps >= r.steps
    if eval_due(c.env_steps):
      for i, run in enumerate(runs if primary else []):
        run.logger.write(c.env_steps, _evaluate(driver.algo, driver.lane_state(i), run.eval_env,
                                                run.logger, run.config.run, c.env_steps))
      for lane in driver.lanes:
        lane.counters.last_eval = eval_due.last  # saved: a resumed run evaluates on the same grid
    if report_due(c.env_steps):
      length = r.replay_context + r.batch_length
      for i, (run, lane) in enumerate(zip(runs if primary else [], driver.lanes)):
        videos = report.openloop_video(driver.algo, driver.lane_state(i), lane.replay, length,
                                       seed=run.config.run.seed + c.env_steps)
        for name, frames in videos.items():  # none yet where replay is too short
          run.logger.video(c.env_steps, name, frames)
    if log_due(c.env_steps) or done:
      now = time.time()
      elapsed = max(now - last_log_time, 1e-9)
      for run, lane, metrics in zip(runs, driver.lanes, pending.results()):
        metrics["fps/env"] = (c.env_steps - steps_at_log) / elapsed
        metrics["fps/train"] = (c.updates - updates_at_log) / elapsed
        metrics["replay/size"] = len(lane.replay)
        metrics["train/updates"] = c.updates
        run.logger.write(c.env_steps, metrics)
      last_log_time, steps_at_log, updates_at_log = now, c.env_steps, c.updates
    now = time.time()
    if console_due(now) or done:
      rate = (c.updates - updates_at_console) / max(now - last_console, 1e-9)
      screen.progress(c.env_steps, {"updates/s": rate, "updates": c.updates,
                                    "score(10)": _recent_score(runs),
                                    "episodes": sum(lane.counters.episodes for lane in driver.lanes)})
      last_console, updates_at_console = now, c.updates
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
  summary = {"env_steps": c.env_steps, "updates": c.updates,
             "episodes": sum(lane.counters.episodes for lane in driver.lanes),
             "scores": runs[0].scores if len(runs) == 1 else []}
  if len(runs) > 1:
    summary["seeds"] = {run.config.run.seed: {"episodes": lane.counters.episodes,
                                              "scores": run.scores}
                        for run, lane in zip(runs, driver.lanes)}
  return summary


def _recent_score(runs: list[SeedRun]) -> float | str:
  """The mean score of each seed's last 10 episodes; with seeds, their mean and
  standard deviation over the seeds that have finished one."""
  recent = [float(np.mean(run.scores[-10:])) for run in runs if run.scores]
  if len(runs) == 1 or not recent:
    return recent[0] if recent else float("nan")
  return f"{np.mean(recent):.4g} ± {np.std(recent):.2g} ({len(recent)} seeds)"


def _save_after_crash(driver: Driver, runs: list[SeedRun], pending: "_Metrics",
                      crash: EnvironmentCrash, screen: Console) -> None:
  """Saves everything collected before an environment raised, then stops the run
  with the environment, the seed, the step and the exception named."""
  run = runs[crash.lane]
  where = (f"environment {run.config.env.id}"
           + (f" of seed {run.config.run.seed}" if len(runs) > 1 else "")
           + f" raised at environment step {crash.env_steps}: {crash}")
  try:
    pending.check()
    path = save(driver, runs)
  except Exception as e:  # a NaN or a failed save: say so, and keep the crash as the cause
    raise EnvironmentCrash(crash.lane, crash.env_steps, crash.error,
                           f"{where}; no checkpoint was saved ({e})") from crash.error
  message = (f"{where}; saved {path.name} with everything collected before it: the same "
             "command continues from there")
  screen.message(message)
  raise EnvironmentCrash(crash.lane, crash.env_steps, crash.error, message) from crash.error
