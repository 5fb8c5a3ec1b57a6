"""Runs a benchmark suite: one `wmrl train` per task and seed, some at once.

  python experiments/run_suite.py dmc_proprio --logdir runs/dmc_proprio
  python experiments/run_suite.py gym_mujoco --logdir runs/gym_mujoco --seeds 0,1 --parallel 2
  python experiments/run_suite.py dmc_vision --tasks dmc_walker_walk --preset size12m --dry-run
  python experiments/run_suite.py dmc_proprio --logdir runs/smoke --steps 5000 --run.train_ratio 64

Config fields go to every run as `wmrl train` takes them, `--FIELD VALUE`
or `--FIELD=VALUE` (wmrl/overrides.py); presets join with commas. Each run
logs to LOGDIR/TASK/seedN/ (config.json, metrics.jsonl, checkpoints/, and
train.log with its console output). Run the same command again to continue a
suite: finished runs are skipped, interrupted ones resume from
their latest checkpoint (`wmrl train` does that by itself), missing ones
start. Exit status: 0 when every run finished, 1 when any failed, 2 for a
usage error or a suite this machine cannot run, 130 after Ctrl-C.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time
from typing import TextIO

import suites
from wmrl import overrides, signals

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
# A stopped run gets this long to exit by itself (KeyboardInterrupt closes
# its environments and their worker processes) before it is killed.
GRACE_SECONDS = 30.0
POLL_SECONDS = 0.25
LOG_TAIL_LINES = 5


# --- arguments -------------------------------------------------------------------------

def _int_list(text: str) -> list[int]:
  try:
    values = [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated ints like 0,1,2, got {text!r}")
  if not values or min(values) < 0:
    raise argparse.ArgumentTypeError(f"expected non-negative seeds like 0,1,2, got {text!r}")
  return values


def _name_list(text: str) -> list[str]:
  return [v.strip() for v in text.split(",") if v.strip()]


def _positive_int(text: str) -> int:
  try:
    number = float(text)  # 1e6 and 1000000 both work, as in `wmrl train`
  except ValueError:
    number = 0.0
  if not number.is_integer() or number < 1:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
  return int(number)


def _suites_help() -> str:
  lines = [f"  {name:<12} {suite.description}" for name, suite in suites.SUITES.items()]
  return "suites:\n" + "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="run_suite.py", formatter_class=argparse.RawDescriptionHelpFormatter,
      usage="run_suite.py SUITE [--logdir DIR] [--seeds S,T] [--tasks A,B] [--parallel N] "
            "[--steps N] [--preset P,Q] [--FIELD VALUE ...] [--dry-run]",
      description="Train every task of a benchmark suite over seeds with `wmrl train`; run "
                  "again to resume.\nAny config field is a flag of every run, as in `wmrl "
                  "train`: --run.train_ratio 64\nor --run.train_ratio=64 (`wmrl train --help` "
                  "lists them).", epilog=_suites_help())
  parser.add_argument("suite", help="suite name (listed below)")
  parser.add_argument("--logdir", help="root folder of the suite's runs (default: runs/SUITE)")
  parser.add_argument("--seeds", type=_int_list, help="comma-separated seeds (default: the suite's)")
  parser.add_argument("--tasks", type=_name_list, help="comma-separated task names (default: all)")
  parser.add_argument("--parallel", type=_positive_int, default=1, metavar="N",
                      help="runs at once (default 1)")
  parser.add_argument("--steps", type=_positive_int, help="environment steps of every run")
  parser.add_argument("--preset", default="",
                      help="extra presets after the suite's, joined by commas, e.g. size12m")
  parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
  # Config fields of every run, as `wmrl train` takes them: --run.train_ratio 64.
  args, fields = overrides.parse_args(parser, argv)
  args.overrides = fields
  return args


# --- output ----------------------------------------------------------------------------

def say(message: str, out: TextIO | None = None) -> None:
  out = out or sys.stdout
  print(f"[{time.strftime('%H:%M:%S')}] {message}", file=out, flush=True)


def duration(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def describe(run: suites.Run) -> str:
  return f"{run.task} seed {run.seed}"


def log_tail(path: pathlib.Path, lines: int = LOG_TAIL_LINES) -> list[str]:
  try:
    return path.read_text(errors="replace").splitlines()[-lines:]
  except OSError:
    return []


# --- one run ---------------------------------------------------------------------------

@dataclasses.dataclass
class Result:
  run: suites.Run
  outcome: str  # finished | failed | skipped | interrupted | not started
  code: int | None = None
  seconds: float = 0.0
  steps: int = 0


@dataclasses.dataclass
class Active:
  run: suites.Run
  process: subprocess.Popen
  log: TextIO
  started: float


def child_environment(parallel: int) -> dict[str, str]:
  env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # train.log shows progress as it happens
  if parallel > 1:
    # JAX takes 75% of a GPU's memory up front: the second run on one GPU
    # would fail to start. An explicit setting by the user wins.
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  return env


def start(run: suites.Run, env: dict[str, str]) -> Active:
  run.logdir.mkdir(parents=True, exist_ok=True)
  log = open(run.logdir / "train.log", "a")  # appended: a resumed run keeps its history
  log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(run.command)}\n")
  log.flush()
  try:
    # A session of its own, so a terminal's Ctrl-C reaches only this runner,
    # which then stops every run (and its env workers) as one process group.
    process = subprocess.Popen(run.command, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, env=env, start_new_session=True)
  except BaseException:
    log.close()
    raise
  return Active(run, process, log, time.time())


def signal_group(process: subprocess.Popen, sig: int) -> None:
  try:
    os.killpg(process.pid, sig)  # the run's own group: it and its env workers
  except (ProcessLookupError, PermissionError):
    pass  # already gone


def steps_of(run: suites.Run) -> int:
  try:
    return suites.progress(run.logdir) or 0
  except ValueError:
    return 0


class StopRequests:
  """Counts Ctrl-C (SIGINT) and SIGTERM presses instead of raising.

  The loop checks the count between steps, so a signal never lands between
  starting a run and recording it (which would leave that run unstopped).
  """

  def __init__(self):
    self.count = 0

  def __call__(self, signum, frame) -> None:
    self.count += 1


@contextlib.contextmanager
def stop_requests():
  """Catches SIGINT and SIGTERM (a batch system's stop) while the runs go on."""
  requests = StopRequests()
  with signals.handling(requests):
    yield requests


def stop(active: dict[int, Active], requests: StopRequests, out: TextIO) -> None:
  """Asks every run to stop (SIGINT), waits up to GRACE_SECONDS, then kills the rest.

  On SIGINT `wmrl train` saves a checkpoint at its current step, closes its
  environments and exits with 130; that checkpoint is where it resumes next time.
  """
  for a in active.values():
    signal_group(a.process, signal.SIGINT)
  say(f"stopping {len(active)} run(s), waiting up to {GRACE_SECONDS:.0f}s "
      "(Ctrl-C again kills them now)", out)
  presses = requests.count
  deadline = time.time() + GRACE_SECONDS
  while (time.time() < deadline and requests.count == presses
         and any(a.process.poll() is None for a in active.values())):
    time.sleep(POLL_SECONDS)
  for a in active.values():
    if a.process.poll() is None:
      signal_group(a.process, signal.SIGKILL)
      a.process.wait()
    a.log.close()


# --- the suite -------------------------------------------------------------------------

def execute(plan: list[tuple[suites.Run, str, int]], parallel: int,
            out: TextIO | None = None) -> tuple[list[Result], bool]:
  """Runs the unfinished runs of `plan`, up to `parallel` at once.

  Returns a result per run, in plan order, and whether Ctrl-C stopped it.
  A failed run does not stop the others.
  """
  out = out or sys.stdout
  results: dict[int, Result] = {}
  todo = collections.deque()
  for i, (run, state, steps) in enumerate(plan):
    if state == suites.FINISHED:
      results[i] = Result(run, "skipped", steps=steps)
    else:
      todo.append((i, run, state, steps))
  total, done = len(todo), 0
  env = child_environment(parallel)
  active: dict[int, Active] = {}
  with stop_requests() as requests:
    while (todo or active) and not requests.count:
      while todo and len(active) < parallel:
        i, run, state, steps = todo.popleft()
        try:
          active[i] = start(run, env)
        except OSError as e:  # e.g. the run's logdir is a file
          done += 1
          results[i] = Result(run, "failed")
          say(f"FAILED {describe(run)}: cannot start ({e})", out)
          continue
        where = f"resume at {steps:,}/{run.steps:,} steps" if state == suites.RESUME else "new run"
        say(f"start  {describe(run)} ({where}), pid {active[i].process.pid}, "
            f"log {run.logdir / 'train.log'}", out)
      done = reap(active, results, done, total, out)
      time.sleep(POLL_SECONDS)
    interrupted = bool(requests.count)
    if interrupted:
      reap(active, results, done, total, out)  # runs that ended by themselves are not stopped ones
      stop(active, requests, out)
  for i, a in active.items():
    results[i] = Result(a.run, "interrupted", a.process.returncode, time.time() - a.started,
                        steps_of(a.run))
  for i, run, _, steps in todo:
    results[i] = Result(run, "not started", steps=steps)
  return [results[i] for i in sorted(results)], interrupted


def reap(active: dict[int, Active], results: dict[int, Result], done: int, total: int,
         out: TextIO) -> int:
  """Records the runs that have exited; returns the new count of ended runs."""
  for i in [i for i, a in active.items() if a.process.poll() is not None]:
    done += 1
    results[i] = finish(active.pop(i), f"{done}/{total}", out)
  return done


def finish(a: Active, count: str, out: TextIO) -> Result:
  a.log.close()
  code = a.process.returncode
  seconds = time.time() - a.started
  outcome = "finished" if code == 0 else "failed"
  if code == 0:
    say(f"done   {describe(a.run)}: exit 0 after {duration(seconds)} ({count})", out)
  else:
    log = a.run.logdir / "train.log"
    say(f"FAILED {describe(a.run)}: exit {code} after {duration(seconds)} ({count}); "
        f"last lines of {log}:", out)
    for line in log_tail(log):
      print(f"    {line}", file=out, flush=True)
  return Result(a.run, outcome, code, seconds, steps_of(a.run))


def summary(results: list[Result]) -> str:
  """A table of every run, then the counts of each outcome."""
  width = max([len(r.run.task) for r in results] + [4])
  rows = [f"{'task':<{width}}  seed  {'result':<11}  exit  {'time':>8}  {'env steps':>11}"]
  for r in results:
    code = "-" if r.code is None else str(r.code)
    seconds = duration(r.seconds) if r.seconds else "-"
    rows.append(f"{r.run.task:<{width}}  {r.run.seed:>4}  {r.outcome:<11}  {code:>4}  "
                f"{seconds:>8}  {r.steps:>11,}")
  counts = collections.Counter(r.outcome for r in results)
  order = ("finished", "failed", "skipped", "interrupted", "not started")
  # finished, failed and skipped always; the outcomes of Ctrl-C only when it came.
  rows.append(", ".join(f"{counts[k]} {k}" for k in order if counts[k] or k in order[:3]))
  return "\n".join(rows)


def dry_run(plan: list[tuple[suites.Run, str, int]], out: TextIO) -> None:
  for run, state, steps in plan:
    if state == suites.FINISHED:
      print(f"# {describe(run)}: finished ({steps:,}/{run.steps:,} steps), skipped", file=out)
      continue
    where = f"resume at {steps:,}/{run.steps:,} steps" if state == suites.RESUME else "start"
    print(f"# {describe(run)}: {where}", file=out)
    print(shlex.join(run.command), file=out)


def usage_error(message: object) -> int:
  print(f"run_suite.py: error: {message}", file=sys.stderr)
  return EXIT_USAGE


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  out = out or sys.stdout
  try:
    suite = suites.get(args.suite)
  except suites.SuiteError as e:
    return usage_error(e)
  missing = suite.missing()
  if missing:
    return usage_error(f"suite '{suite.name}' cannot run here: it needs "
                       + "; ".join(missing))
  logdir = args.logdir or f"runs/{suite.name}"
  try:
    runs = suites.commands(suite, logdir, args.seeds, args.tasks, args.steps,
                           args.overrides, args.preset)
  except suites.SuiteError as e:
    return usage_error(e)
  plan = [(run, *suites.status(run)) for run in runs]
  states = collections.Counter(state for _, state, _ in plan)
  print(f"suite {suite.name}: {len(plan)} runs in {logdir}: {states[suites.START]} to start, "
        f"{states[suites.RESUME]} to resume, {states[suites.FINISHED]} finished (skipped)"
        + ("" if args.dry_run else f"; up to {args.parallel} at once"), file=out, flush=True)
  if args.dry_run:
    dry_run(plan, out)
    return 0
  results, interrupted = execute(plan, args.parallel, out)
  print(summary(results), file=out, flush=True)
  if interrupted:
    return EXIT_INTERRUPTED
  return EXIT_FAILED if any(r.outcome == "failed" for r in results) else 0


if __name__ == "__main__":
  sys.exit(main())
