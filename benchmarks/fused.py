"""Environment steps per second of the fused driver against the host driver.

    python benchmarks/fused.py                                  # gymnax CartPole, the full grid
    python benchmarks/fused.py --ratios 512 --envs 16 --seconds 60 --out mine.json
    python benchmarks/fused.py --seconds 5 --rounds 1 --model.rssm.deter 64

For each cell of the grid (train ratio x number of environments) both
drivers are built on the same config and the same JAX environment: the
`HostDriver` steps it through `HostEnv` (one jitted step per vector step, host
replay; wmrl/drivers/host.py), the `FusedDriver` runs K steps and the U
updates they owe as one program (wmrl/drivers/fused.py); both follow one
schedule and draw alike (wmrl/draws.py). Each driver first runs past the
prefill (one batch worth, the least a driver allows) and compiles, untimed;
then the two are measured in turn, R rounds of S seconds each, every
measurement running whole iterations (the last one in progress always
finishes, so a measurement can run past S where one iteration takes long).
The table gives the medians over the rounds.

Each cell also measures the two drivers stepping alone: the same config with
a prefill no run reaches, so every iteration acts (the policy runs, as in the
prefill), steps and stores, and nothing trains. That is all the fused driver
changes besides the cost around each update (sampling on the host, moving
the batch, dispatching the call). And it times the updates alone: the jitted
train step on one batch, again and again, called from Python with nothing
else running. "updates alone" in env steps/s is that rate over the updates
an env step owes, `train_ratio / (batch_size * batch_length)`. Where an
update takes far longer than its dispatch (size1m on this 2-core CPU: about
half a second against well under a millisecond), no driver running these updates
gets past it, so a host driver near it leaves the fused one little to gain;
with a tiny model the fused driver can pass it, its scan of updates saving
the dispatches too.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import pathlib
import statistics
import sys
import time

# Run from a checkout without installing: the repo root holds the package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import wmrl  # noqa: E402
from wmrl import algorithms, envs, jaxenvs, overrides  # noqa: E402
from wmrl.bench.report import json_default, machine_info  # noqa: E402
from wmrl.drivers.fused import FusedDriver  # noqa: E402
from wmrl.drivers.host import HostDriver  # noqa: E402

DRIVERS = ("host", "fused")


def _log(message: str) -> None:
  # Progress goes to stderr so stdout holds only the table.
  print(f"[fused {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _counts(text: str, flag: str) -> list:
  try:
    values = [float(v) if "." in v else int(v) for v in text.split(",")]
  except ValueError:
    raise argparse.ArgumentTypeError(f"{flag} takes numbers joined by commas, got {text!r}")
  if not values or min(values) <= 0:
    raise argparse.ArgumentTypeError(f"{flag} takes positive numbers, got {text!r}")
  return values


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="benchmarks/fused.py", description=__doc__.split("\n\n")[0],
      usage="benchmarks/fused.py [--env ID] [--ratios 32,512] [--envs 1,16] [--FIELD VALUE ...]")
  parser.add_argument("--env", default="gymnax:CartPole-v1", help="a JAX environment id")
  parser.add_argument("--ratios", default=[32, 512], type=lambda s: _counts(s, "--ratios"),
                      help="train ratios, joined by commas (default 32,512)")
  parser.add_argument("--envs", default=[1, 16], type=lambda s: _counts(s, "--envs"),
                      help="numbers of environments, joined by commas (default 1,16)")
  parser.add_argument("--preset", default="size1m",
                      help="presets joined by commas (default size1m)")
  parser.add_argument("--seconds", type=float, default=30.0,
                      help="seconds per measurement; whole iterations (default 30)")
  parser.add_argument("--rounds", type=int, default=3,
                      help="measurements of each driver, alternating (default 3)")
  parser.add_argument("--out", default=None,
                      help="JSON path (default benchmarks/results/fused-<platform>-<date>.json)")
  args, fields = overrides.parse_args(parser, argv)
  if args.rounds < 1 or args.seconds < 0:
    parser.error("--rounds must be >= 1 and --seconds >= 0")
  if any(not isinstance(n, int) for n in args.envs):
    parser.error(f"--envs takes whole numbers, got {args.envs}")
  args.overrides = fields
  return args


def make_config(args: argparse.Namespace, ratio, num_envs: int) -> wmrl.Config:
  # A modest replay keeps both drivers' memory small (the fused one holds it on
  # the device); the grid's own values win over any field flag.
  fields = {"run.replay_capacity": 100_000, "model.compute_dtype": "float32",
            **args.overrides, "run.train_ratio": ratio, "env.num_envs": num_envs}
  return wmrl.make_config(args.env, presets=args.preset, overrides=fields)


def build(config: wmrl.Config) -> dict:
  """Both drivers on `config` for seed `run.seed`, each from the same initial
  agent state and drawing by that seed (wmrl/draws.py)."""
  algo = algorithms.get(config.algorithm)
  r = config.run
  host_env = envs.from_config(config.env, seed=r.seed)
  init = lambda: algo.init(jax.random.key(r.seed), host_env.obs_spec, host_env.act_spec, config)
  return {"host": HostDriver.single(algo, r, host_env, init()),
          "fused": FusedDriver.single(algo, r, jaxenvs.from_config(config.env), init(),
                                      seed=r.seed)}


def stepping_config(config: wmrl.Config) -> wmrl.Config:
  """`config` with a prefill no run reaches: the drivers act, step and store, and never train."""
  return config.replace(**{"run.prefill": 2**30})


def _iterate(driver) -> None:
  driver.iterate(lambda index, episode: None, lambda metrics: None)


def _sync(driver) -> None:
  # Whatever an iteration left running is counted in that iteration's time.
  jax.block_until_ready(driver.fused if isinstance(driver, FusedDriver) else driver.state)


def warm_up(driver, train: bool = True) -> float:
  """Runs past the prefill and until an iteration with updates compiled nothing
  new; returns the seconds. The fused driver compiles one program per update
  count, and the first training iteration may owe fewer updates than the rest
  (it starts partway through the prefill), so one trained iteration is not enough.
  Without `train`: two iterations, which compile all a driver that never trains runs."""
  start = time.perf_counter()
  if not train:
    _iterate(driver)
    _iterate(driver)
    _sync(driver)
    return time.perf_counter() - start
  while True:
    programs = len(getattr(driver, "_programs", ()))
    updates = driver.counters.updates
    _iterate(driver)
    trained = driver.counters.updates > updates
    if trained and (isinstance(driver, HostDriver) or len(driver._programs) == programs):
      break
  _sync(driver)
  return time.perf_counter() - start


def measure(driver, seconds: float) -> dict:
  """Whole iterations until `seconds` have passed: env steps and updates per second."""
  c = driver.counters
  steps, updates, iterations = c.env_steps, c.updates, 0
  start = time.perf_counter()
  while iterations == 0 or time.perf_counter() - start < seconds:
    _iterate(driver)
    iterations += 1
  _sync(driver)
  elapsed = time.perf_counter() - start
  steps, updates = c.env_steps - steps, c.updates - updates
  return {"seconds": elapsed, "iterations": iterations, "env_steps": steps, "updates": updates,
          "env_steps_per_s": steps / elapsed, "updates_per_s": updates / elapsed}


def _rounds(args: argparse.Namespace, drivers: dict, row: dict, name: str) -> None:
  """Alternating rounds of both drivers into `row[kind]`, and their medians."""
  # Alternating the drivers spreads a change in the machine's load over both.
  for i in range(args.rounds):
    for kind in DRIVERS:
      result = measure(drivers[kind], args.seconds)
      row[kind]["rounds"].append(result)
      _log(f"{name}: round {i + 1}/{args.rounds} {kind}: {result['env_steps_per_s']:.1f} env "
           f"steps/s, {result['updates_per_s']:.2f} upd/s ({result['env_steps']} steps, "
           f"{result['updates']} updates, {result['seconds']:.1f} s)")
  for kind in DRIVERS:
    rounds = row[kind]["rounds"]
    for key in ("env_steps_per_s", "updates_per_s"):
      row[kind][key] = statistics.median(r[key] for r in rounds)


def updates_alone(driver: HostDriver, config: wmrl.Config, seconds: float,
                  rounds: int) -> float:
  """Updates/s of the train step alone on one batch from the host driver's replay,
  each update on the state the last one gave (the median of `rounds`)."""
  r = config.run
  batch = jax.device_put(driver.replays[0].sample(
      r.batch_size, r.batch_length + r.replay_context, np.random.default_rng(0)))
  step = driver.algo.train_step  # jitted, donating its state: the program the driver ran
  state = step(jax.tree.map(jnp.copy, driver.state), batch)[0]
  rates = []
  for _ in range(rounds):
    count, start = 0, time.perf_counter()
    while count == 0 or time.perf_counter() - start < seconds:
      state = step(state, batch)[0]
      count += 1
    jax.block_until_ready(state)
    rates.append(count / (time.perf_counter() - start))
  return statistics.median(rates)


def bench_cell(args: argparse.Namespace, ratio, num_envs: int) -> dict:
  config = make_config(args, ratio, num_envs)
  name = f"ratio {ratio}, {num_envs} env{'s' if num_envs > 1 else ''}"
  row = {"train_ratio": ratio, "num_envs": num_envs,
         "batch": [config.run.batch_size, config.run.batch_length]}
  for part, part_config, train in (("stepping", stepping_config(config), False),
                                   ("run", config, True)):
    drivers = build(part_config)
    measured = row if part == "run" else row.setdefault("stepping", {})
    for kind, driver in drivers.items():
      measured[kind] = {"warm_up_s": warm_up(driver, train), "rounds": []}
      _log(f"{name}, {part}: {kind} warmed up in {measured[kind]['warm_up_s']:.1f} s "
           f"({driver.counters.env_steps} env steps, {driver.counters.updates} updates)")
    _rounds(args, drivers, measured, f"{name}, {part}")
    if train:
      row["fused_steps_per_iteration"] = drivers["fused"].steps
      row["updates_alone_per_s"] = updates_alone(drivers["host"], config, args.seconds,
                                                 args.rounds)
      _log(f"{name}: updates alone {row['updates_alone_per_s']:.2f} upd/s")
    del drivers
    gc.collect()  # one part's drivers and replays go before the next are built
  stepping = row["stepping"]
  stepping["fused_over_host"] = (stepping["fused"]["env_steps_per_s"]
                                 / stepping["host"]["env_steps_per_s"])
  row["fused_over_host"] = row["fused"]["env_steps_per_s"] / row["host"]["env_steps_per_s"]
  updates_per_step = ratio / (config.run.batch_size * config.run.batch_length)
  row["updates_alone_env_steps_per_s"] = row["updates_alone_per_s"] / updates_per_step
  return row


def format_table(report: dict) -> str:
  lines = ["| train ratio | envs | K | host env steps/s | fused env steps/s | fused / host "
           "| host upd/s | fused upd/s | updates alone, upd/s; env steps/s "
           "| stepping alone, host; fused | warm-up s host; fused |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for row in report["cells"]:
    host, fused, stepping = row["host"], row["fused"], row["stepping"]
    lines.append(f"| {row['train_ratio']} | {row['num_envs']} | {row['fused_steps_per_iteration']} "
                 f"| {host['env_steps_per_s']:.1f} | {fused['env_steps_per_s']:.1f} "
                 f"| {row['fused_over_host']:.2f}x | {host['updates_per_s']:.2f} "
                 f"| {fused['updates_per_s']:.2f} | {row['updates_alone_per_s']:.2f}; "
                 f"{row['updates_alone_env_steps_per_s']:.1f} "
                 f"| {stepping['host']['env_steps_per_s']:.0f}; "
                 f"{stepping['fused']['env_steps_per_s']:.0f} "
                 f"({stepping['fused_over_host']:.1f}x) "
                 f"| {host['warm_up_s']:.1f}; {fused['warm_up_s']:.1f} |")
  s = report["settings"]
  lines.append(f"\n{s['env']}, preset {s['preset']}, medians of {s['rounds']} rounds of "
               f"{s['seconds']:g} s per driver; K: the fused driver's env steps per iteration; "
               "updates alone: the train step called again and again, and the env steps/s that "
               "allows; stepping alone: env steps/s "
               "acting and storing without training.")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  args = parse_args(list(sys.argv[1:] if argv is None else argv))
  try:  # a bad preset, field value or env fails before anything is built
    for ratio in args.ratios:
      for num_envs in args.envs:
        jaxenvs.from_config(make_config(args, ratio, num_envs).env)
  except ValueError as e:
    print(f"benchmarks/fused.py: error: {e}", file=sys.stderr)
    return 2
  now = datetime.datetime.now()
  settings = {"env": args.env, "preset": args.preset, "ratios": args.ratios, "envs": args.envs,
              "seconds": args.seconds, "rounds": args.rounds, "overrides": args.overrides}
  report = {"date": now.isoformat(timespec="seconds"), "machine": machine_info(),
            "settings": settings, "cells": []}
  for ratio in args.ratios:
    for num_envs in args.envs:
      report["cells"].append(bench_cell(args, ratio, num_envs))
  report["machine"]["load_average_end"] = os.getloadavg()
  out = pathlib.Path(args.out) if args.out else (
      pathlib.Path("benchmarks") / "results"
      / f"fused-{report['machine']['platform']}-{now.strftime('%Y-%m-%d')}.json")
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(report, indent=2, default=json_default))
  print(format_table(report))
  print(f"results: {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
