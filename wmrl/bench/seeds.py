"""The throughput of several seeds in one program (`jax.vmap`) and of data-parallel
train devices: `wmrl bench --seeds 1,2,4,8` and `wmrl bench --devices 1,2`.

Seeds: for each count S, the train step on S stacked states and a stacked batch
(S = 1 by the algorithm's own functions, which a one-seed run uses, so
the baseline is what a run of one seed gets), the policy step on S stacked
states, and optionally the real collect/train loop of a `HostDriver` with S seeds.
The point is the total: S seeds in one program do S updates per call, and on
hardware that a small model leaves idle the call takes less than S times as long.

Devices: the one-seed train step with `run.train_devices` = (0, ..., n-1), the
state replicated and the global batch split over them (`wmrl/mesh.py`).
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import jax
import numpy as np

from wmrl import algorithms, envs
from wmrl import config as cfg
from wmrl.draws import host_key
from wmrl.drivers import SeedStart, Seeds
from wmrl.drivers.host import HostDriver
from wmrl.mesh import Placement, check_run
from wmrl.bench.flops import jaxpr_flops
from wmrl.bench.inputs import entry_specs, policy_obs, random_batch, task_spaces
from wmrl.bench.preset import _log, build_config, time_loop, time_train
from wmrl.bench.timing import summary

FORCE_DEVICES = "XLA_FLAGS=--xla_force_host_platform_device_count"


def parse_counts(text: str, what: str) -> tuple[int, ...]:
  """'1,2,4' as (1, 2, 4): positive integers, each once. Raises ValueError."""
  try:
    counts = tuple(int(part) for part in text.split(","))
  except ValueError:
    raise ValueError(f"--{what} {text!r} does not parse: give positive integers joined by "
                     "commas, e.g. 1,2,4") from None
  if any(n < 1 for n in counts):
    raise ValueError(f"--{what} {text!r}: every count must be at least 1")
  repeated = sorted({n for n in counts if counts.count(n) > 1})
  if repeated:
    raise ValueError(f"--{what} {text!r} repeats {repeated[0]}; give each count once")
  return counts


def check_devices(counts: tuple[int, ...], configs: list[cfg.Config], local: int) -> None:
  """Refuses device counts this process cannot place on (a CPU has one device unless
  XLA is told to pretend more) and batches they do not divide. Raises ValueError."""
  if max(counts) > local:
    raise ValueError(
        f"--devices {','.join(map(str, counts))} asks for {max(counts)} devices, but this "
        f"process has {local} local device{'s' if local != 1 else ''}; on a CPU, set "
        f"{FORCE_DEVICES}={max(counts)} in the environment (forced host devices share the "
        "same cores)")
  for config in configs:
    for count in counts:
      check_run(dataclasses.replace(config.run, train_devices=tuple(range(count))), local)


class SeedCalls:
  """The policy and train steps on `count` seeds as a `HostDriver` runs them: one
  seed the algorithm's own functions (the honest baseline: what a one-seed run
  does), several stacked and vmapped (`Seeds`), `seeds_batch` at a time."""

  def __init__(self, algo, count: int, seeds_batch: int = 0):
    self.seeds = Seeds(count, count > 1, seeds_batch)
    self.stack = self.seeds.stack
    policy = lambda state, obs, carry, key: algo.policy_step(state, obs, carry, key, "train")
    self.policy_step = jax.jit(self.seeds.map(policy)) if count > 1 else policy
    self.train_step = self.seeds.train_step(algo.train_step)
    self._initial_carry = algo.initial_carry

  def initial_carry(self, state, num_envs: int):
    return self.seeds.map(lambda s: self._initial_carry(s, num_envs))(state)


def _path(count: int, seeds_batch: int) -> str:
  if count == 1:
    return "one seed (the algorithm's own functions)"
  if seeds_batch and seeds_batch < count:
    return f"seeds vmapped {seeds_batch} at a time (run.seeds_batch {seeds_batch})"
  return "vmapped seeds"


def _seed_states(algo, config: cfg.Config, obs_spec, act_spec, count: int) -> list:
  """Fresh states of seeds run.seed + k (fresh for each count: the train step donates them)."""
  return [algo.init(jax.random.key(config.run.seed + k), obs_spec, act_spec, config)
          for k in range(count)]


def _host_batches(algo, state, config: cfg.Config, obs_spec, act_spec, count: int) -> list:
  """One random batch per seed (different values; only the shapes matter for speed)."""
  r = config.run
  entries = entry_specs(algo, state) if r.replay_context else {}
  return [random_batch(obs_spec, act_spec, r.batch_size, r.replay_context + r.batch_length,
                       seed=k, entries=entries) for k in range(count)]


def update_flops(algo, state, batch) -> int:
  """Matmul+conv FLOPs of one seed's update (vmapping S seeds does S times this)."""
  flops, _ = jaxpr_flops(algo.train_step.trace(state, batch).jaxpr.jaxpr)
  return flops


def time_policy_seeds(calls, state, obs_spec, count: int, num_envs: int, calls_per_block: int,
                      blocks: int) -> dict:
  """Policy calls/s on `count` stacked seeds, each call with fresh host keys and the
  actions fetched, as `HostDriver.collect` does."""
  rng = np.random.default_rng(0)
  obs = calls.stack([policy_obs(obs_spec, num_envs)] * count)
  carry = calls.initial_carry(state, num_envs)

  def act(carry):
    keys = calls.stack([host_key(rng) for _ in range(count)])
    action, carry = calls.policy_step(state, obs, carry, keys)
    np.asarray(action)
    return carry

  for _ in range(min(calls_per_block, 20)):  # compile and settle caches
    carry = act(carry)
  rates = []
  for _ in range(blocks):
    start = time.perf_counter()
    for _ in range(calls_per_block):
      carry = act(carry)
    rates.append(calls_per_block / (time.perf_counter() - start))
  rate = statistics.median(rates)
  return {"num_envs": num_envs, "calls_per_s": rate, "env_steps_per_s": rate * num_envs * count,
          "calls_per_s_all": rates}


def run_e2e_seeds(algo, calls, config: cfg.Config, state, count: int, steps: int) -> dict:
  """The real loop of a `HostDriver` with `count` seeds (run.seed + k) for `steps`
  env steps of each; `state` stacked when count > 1."""
  r, num_envs = config.run, config.env.num_envs
  envs_made = []
  try:
    for k in range(count):
      envs_made.append(envs.from_config(config.env, seed=r.seed + k, num_envs=num_envs))
    states = calls.seeds.unstack(state)
    loop = HostDriver(algo, r, [SeedStart(r.seed + k, env, s)
                                for k, (env, s) in enumerate(zip(envs_made, states))],
                      seeds_axis=count > 1)
    # The update compiled for the timings above, not a second copy: a run compiles once.
    loop.train_step = calls.train_step
    timed = time_loop(loop, steps)
  finally:
    for env in envs_made:
      env.close()
  # The counters are the run's; the seeds step and update in lockstep.
  return {**timed, "env": config.env.id, "lanes": count,
          "env_steps_per_s": count * timed["env_steps_per_s"],
          "env_steps_per_s_per_seed": timed["env_steps_per_s"],
          "updates_per_s": count * timed["updates_per_s"]}


def bench_seed_count(preset: str, config: cfg.Config, count: int, args: argparse.Namespace,
                     flops: int) -> dict:
  """One row: `count` seeds' train step, policy step and (optionally) real loop."""
  algo = algorithms.get(config.algorithm)
  obs_spec, act_spec = task_spaces(config, args.env)
  calls = SeedCalls(algo, count, config.run.seeds_batch)
  states = _seed_states(algo, config, obs_spec, act_spec, count)
  batch = jax.device_put(calls.stack(_host_batches(algo, states[0], config, obs_spec, act_spec,
                                                   count)))
  state = calls.stack(states)
  del states  # stacked copies replace them (with one seed, the same arrays)
  _log(f"{preset}: {count} seed(s): timing {args.repeats} train programs")
  state, seconds, first_call = time_train(calls, state, batch, args.repeats, args.warmup)
  programs = 1.0 / statistics.median(seconds)
  _log(f"{preset}: {count} seed(s): timing policy_step with {config.env.num_envs} env(s) each")
  policy = time_policy_seeds(calls, state, obs_spec, count, config.env.num_envs,
                             args.policy_calls, args.repeats)
  e2e = None
  if args.e2e_steps:
    _log(f"{preset}: {count} seed(s): end to end, {args.e2e_steps} env steps per seed")
    e2e = run_e2e_seeds(algo, calls, config, state, count, args.e2e_steps)
  r = config.run
  return {"preset": preset, "seeds": count,
          "path": _path(count, config.run.seeds_batch),
          "batch": {"size": r.batch_size, "length": r.batch_length, "context": r.replay_context},
          "first_call_s": first_call,
          "train": {"seconds_per_program": summary(seconds), "programs_per_s": programs,
                    "updates_per_s": count * programs, "updates_per_s_per_seed": programs},
          "flops": {"per_update": flops, "achieved_per_s": flops * count * programs},
          "policy": policy, "e2e": e2e}


def with_ratios(rows: list[dict]) -> list[dict]:
  """Adds each row's total rates over those of one seed (None where 1 was not measured)."""
  base = {row["preset"]: row for row in rows if row["seeds"] == 1}
  for row in rows:
    one = base.get(row["preset"])
    row["train"]["ratio_to_1"] = (row["train"]["updates_per_s"] / one["train"]["updates_per_s"]
                                  if one else None)
    if row["e2e"]:
      row["e2e"]["ratio_to_1"] = (row["e2e"]["env_steps_per_s"] / one["e2e"]["env_steps_per_s"]
                                  if one else None)
  return rows


def bench_devices(preset: str, config: cfg.Config, count: int, args: argparse.Namespace) -> dict:
  """One seed's train step on `count` data-parallel devices, the global batch fixed."""
  config = config.replace(**{"run.train_devices": tuple(range(count))})
  algo = algorithms.get(config.algorithm)
  obs_spec, act_spec = task_spaces(config, args.env)
  placement = Placement.from_run(config.run)  # refuses a batch the devices do not divide
  (state,) = _seed_states(algo, config, obs_spec, act_spec, 1)
  (host,) = _host_batches(algo, state, config, obs_spec, act_spec, 1)
  # Placed once, as the driver places each batch: the timings are the program's own.
  state, batch = placement.state(state), placement.batch(jax.device_put(host))
  _log(f"{preset}: {count} device(s): timing {args.repeats} updates")
  _, seconds, first_call = time_train(algo, state, batch, args.repeats, args.warmup)
  return {"preset": preset, "devices": count, "global_batch": config.run.batch_size,
          "first_call_s": first_call, "seconds_per_update": summary(seconds),
          "updates_per_s": 1.0 / statistics.median(seconds)}


def with_scaling(rows: list[dict]) -> list[dict]:
  """Speed-up over one device and its efficiency (speed-up / devices)."""
  base = {row["preset"]: row for row in rows if row["devices"] == 1}
  for row in rows:
    one = base.get(row["preset"])
    speedup = row["updates_per_s"] / one["updates_per_s"] if one else None
    row["speedup"] = speedup
    row["efficiency"] = speedup / row["devices"] if one else None
  return rows


def bench_rows(rows: list[str], args: argparse.Namespace) -> dict:
  """The seeds and devices rows of every preset row, as the report holds them."""
  seeds, devices = [], []
  for preset in rows:
    config = build_config(preset, args)
    if args.seeds:
      algo = algorithms.get(config.algorithm)
      obs_spec, act_spec = task_spaces(config, args.env)
      (state,) = _seed_states(algo, config, obs_spec, act_spec, 1)
      (host,) = _host_batches(algo, state, config, obs_spec, act_spec, 1)
      flops = update_flops(algo, state, host)
      del state
      for count in args.seeds:
        seeds.append(bench_seed_count(preset, config, count, args, flops))
    for count in args.devices or ():
      devices.append(bench_devices(preset, config, count, args))
  return {"seeds": with_ratios(seeds), "devices": with_scaling(devices)}


def _ratio(value: float | None) -> str:
  return "-" if value is None else f"{value:.2f}"


def _table(columns: list[tuple[str, int]], cells: list[list[str]]) -> list[str]:
  lines = ["  ".join(name.rjust(width) for name, width in columns)]
  lines += ["  ".join(c.rjust(w) for c, (_, w) in zip(row, columns)) for row in cells]
  return lines


def format_seeds_table(report: dict) -> str:
  machine, peak = report["machine"], report["peak"]
  lines = [f"device: {machine['platform']} {machine['device_kind']} x{machine['device_count']}  "
           f"jax {machine['jax_version']}  dtype {report['settings']['dtype']}  {report['date']}",
           f"matmul peak: {peak['flops_per_s'] / 1e9:.1f} GFLOP/s ({peak['n']}^3 {peak['dtype']})"]
  rows = report["seeds"]
  if rows:
    width = max([6] + [len(row["preset"]) for row in rows])
    columns = [("preset", width), ("seeds", 5), ("ms/prog", 8), ("upd/s all", 9),
               ("upd/s seed", 10), ("x1", 5), ("GFLOP/s", 7), ("% peak", 6), ("pol/s", 6),
               ("pol env/s", 9), ("e2e env/s", 9), ("e2e/seed", 8), ("e2e upd/s", 9), ("x1", 5)]
    cells = []
    for row in rows:
      t, e2e = row["train"], row["e2e"]
      cells.append([row["preset"], str(row["seeds"]),
                    f"{t['seconds_per_program']['median'] * 1e3:.1f}", f"{t['updates_per_s']:.2f}",
                    f"{t['updates_per_s_per_seed']:.2f}", _ratio(t["ratio_to_1"]),
                    f"{row['flops']['achieved_per_s'] / 1e9:.0f}",
                    f"{100 * row['flops']['fraction_of_peak']:.1f}",
                    f"{row['policy']['calls_per_s']:.0f}", f"{row['policy']['env_steps_per_s']:.0f}",
                    *((f"{e2e['env_steps_per_s']:.1f}", f"{e2e['env_steps_per_s_per_seed']:.1f}",
                       f"{e2e['updates_per_s']:.2f}", _ratio(e2e["ratio_to_1"])) if e2e
                      else ("-",) * 4)])
    lines += _table(columns, cells)
    lines += ["ms/prog: one train program (S updates); x1: total over 1 seed (S=1 is the plain "
              "one-seed path); pol: policy_step on S seeds x env.num_envs envs; e2e: the "
              "HostDriver's real collect/train loop with S seeds."]
  rows = report["devices"]
  if rows:
    width = max([6] + [len(row["preset"]) for row in rows])
    columns = [("preset", width), ("devices", 7), ("batch", 5), ("ms/update", 9), ("upd/s", 7),
               ("speedup", 7), ("efficiency", 10)]
    lines += _table(columns, [[row["preset"], str(row["devices"]), str(row["global_batch"]),
                               f"{row['seconds_per_update']['median'] * 1e3:.1f}",
                               f"{row['updates_per_s']:.2f}", _ratio(row["speedup"]),
                               _ratio(row["efficiency"])] for row in rows])
    if machine["platform"] == "cpu":
      lines.append(f"devices: forced host devices ({FORCE_DEVICES}) share the same cores, so "
                   "these figures show the overhead of splitting the batch, not a speed-up.")
  return "\n".join(lines)
