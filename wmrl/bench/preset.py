"""The benchmark of one preset: its config, the train step compiled and timed, the policy
step timed at 1 and 16 envs, and optionally the whole collect/train loop."""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import numpy as np

from wmrl import algorithms, envs, make_config
from wmrl import config as cfg
from wmrl.algorithms.contract import Algorithm
from wmrl.draws import host_key
from wmrl.drivers.host import HostDriver
from wmrl.bench.flops import jaxpr_flops, xla_flops, xla_memory
from wmrl.bench.inputs import DEFAULT_ENV, entry_specs, policy_obs, random_batch, task_spaces
from wmrl.bench.timing import peak_memory, summary

POLICY_ENVS = (1, 16)


def _log(message: str) -> None:
  # Progress goes to stderr so stdout holds only the table.
  print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build_config(preset: str, args: argparse.Namespace) -> cfg.Config:
  """The presets (joined by commas), then the benchmark's task settings, then the flags,
  then the config fields given as --FIELD VALUE."""
  algorithm = {k: v for k, v in args.overrides.items() if k == "algorithm"}
  config = make_config(presets=preset, overrides=algorithm)  # on that algorithm's defaults
  # The reference's DMC proprio setting: one env, action repeat 2, train ratio 512.
  settings = {"env.id": args.env or DEFAULT_ENV, "env.num_envs": 1, "env.action_repeat": 2,
              "run.train_ratio": 512}
  if "model.compute_dtype" in cfg.field_names(config):
    settings["model.compute_dtype"] = args.dtype
  elif args.dtype != "float32":
    raise ValueError(f"--dtype {args.dtype}: algorithm {config.algorithm} has no "
                     "model.compute_dtype to set")
  if args.batch_size is not None:
    settings["run.batch_size"] = args.batch_size
  if args.batch_length is not None:
    settings["run.batch_length"] = args.batch_length
  return config.replace(**settings).replace(**args.overrides)


def compile_train_step(algo: Algorithm, state, batch) -> tuple[dict, object]:
  """Traces, lowers and compiles the algorithm's (jitted) train step; the jaxpr is kept
  for FLOPs."""
  if not hasattr(algo.train_step, "trace"):
    raise TypeError(f"algorithm {algo.name}: wmrl bench traces and lowers train_step, which must "
                    "be a jax.jit function (jax.jit(train_step, donate_argnums=0)), as the "
                    "contract says (wmrl/algorithms/contract.py)")
  start = time.perf_counter()
  traced = algo.train_step.trace(state, batch)
  lowered = traced.lower()
  lowered_at = time.perf_counter()
  compiled = lowered.compile()
  end = time.perf_counter()
  times = {"trace_lower_s": lowered_at - start, "compile_s": end - lowered_at,
           "total_s": end - start}
  return times, (traced.jaxpr, compiled)


def time_train(algo: Algorithm, state, batch, repeats: int, warmup: int):
  """Seconds of each timed update, called as the driver calls it (the state it
  replaces donated)."""
  start = time.perf_counter()
  state, _, _ = algo.train_step(state, batch)
  jax.block_until_ready(state)
  first_call = time.perf_counter() - start  # a recompile would show here
  for _ in range(max(warmup - 1, 0)):
    state, _, _ = algo.train_step(state, batch)
  jax.block_until_ready(state)
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    state, _, _ = algo.train_step(state, batch)
    jax.block_until_ready(state)
    seconds.append(time.perf_counter() - start)
  return state, seconds, first_call


def time_policy(algo: Algorithm, state, obs_spec, num_envs: int, calls: int, blocks: int) -> dict:
  """Policy calls per second, each with a fresh host key and the action fetched,
  as `HostDriver.collect` does, so the figure includes dispatch and transfer."""
  rng = np.random.default_rng(0)
  obs = policy_obs(obs_spec, num_envs)
  carry = algo.initial_carry(state, num_envs)
  start = time.perf_counter()
  action, carry = algo.policy_step(state, obs, carry, host_key(rng), "train")
  np.asarray(action)
  first_call = time.perf_counter() - start
  for _ in range(min(calls, 20)):  # settle caches before timing
    action, carry = algo.policy_step(state, obs, carry, host_key(rng), "train")
    np.asarray(action)
  rates = []
  for _ in range(blocks):
    start = time.perf_counter()
    for _ in range(calls):
      action, carry = algo.policy_step(state, obs, carry, host_key(rng), "train")
      np.asarray(action)
    rates.append(calls / (time.perf_counter() - start))
  rate = statistics.median(rates)
  return {"num_envs": num_envs, "calls_per_s": rate, "actions_per_s": rate * num_envs,
          "latency_ms": 1e3 / rate, "calls_per_s_all": rates, "first_call_s": first_call}


def time_loop(loop: HostDriver, steps: int) -> dict:
  """The driver's collect/train loop for `steps` env steps (of each seed) after
  prefill and warm-up; the seeds benchmark times its drivers of several seeds with it."""
  ignore = lambda *args: None
  start = time.perf_counter()
  while loop.counters.env_steps + loop.num_envs < loop.schedule.start:
    loop.collect(ignore)
  prefill_s = time.perf_counter() - start
  # Warm up: the first updates compile (if the shapes differ from the bench batch).
  while loop.counters.updates < 2:
    loop.collect(ignore)
    loop.train(ignore)
  jax.block_until_ready(loop.state)
  steps0, updates0 = loop.counters.env_steps, loop.counters.updates
  start = time.perf_counter()
  while loop.counters.env_steps - steps0 < steps:
    loop.collect(ignore)
    loop.train(ignore)
  jax.block_until_ready(loop.state)
  elapsed = time.perf_counter() - start
  env_steps, updates = loop.counters.env_steps - steps0, loop.counters.updates - updates0
  return {"env_steps": env_steps, "updates": updates, "seconds": elapsed,
          "env_steps_per_s": env_steps / elapsed, "updates_per_s": updates / elapsed,
          "prefill_steps": loop.schedule.start, "prefill_s": prefill_s}


def run_e2e(algo: Algorithm, config: cfg.Config, state, steps: int) -> dict:
  """The real collect/train loop for `steps` env steps after prefill and warm-up."""
  r = config.run
  env = envs.from_config(config.env, seed=r.seed, num_envs=1)
  try:
    timed = time_loop(HostDriver.single(algo, r, env, state), steps)
  finally:
    env.close()
  return {"env": config.env.id, "action_repeat": config.env.action_repeat,
          "train_ratio": r.train_ratio, **timed}


def bench_preset(preset: str, args: argparse.Namespace) -> dict:
  config = build_config(preset, args)
  r = config.run
  obs_spec, act_spec = task_spaces(config, args.env)
  length = r.replay_context + r.batch_length
  _log(f"{preset}: init (batch {r.batch_size} x {r.batch_length} + {r.replay_context})")
  algo = algorithms.get(config.algorithm)
  state = algo.init(jax.random.key(r.seed), obs_spec, act_spec, config)
  params = algo.param_counts(state)["total"]
  # The stored latents a replay context starts from are part of the batch.
  entries = entry_specs(algo, state) if r.replay_context else {}
  # The batch is put on the device once, so the timings are the program's own;
  # `--e2e-steps` adds replay sampling and the transfer.
  batch = jax.device_put(random_batch(obs_spec, act_spec, r.batch_size, length, entries=entries))

  _log(f"{preset}: compiling train_step ({params / 1e6:.2f}M parameters)")
  compile_times, (jaxpr, compiled) = compile_train_step(algo, state, batch)
  flops, whiles = jaxpr_flops(jaxpr.jaxpr)
  cost = xla_flops(compiled)
  memory_plan = xla_memory(compiled)
  del compiled

  _log(f"{preset}: compiled in {compile_times['total_s']:.1f}s; timing {args.repeats} updates")
  state, seconds, first_call = time_train(algo, state, batch, args.repeats, args.warmup)
  compile_times["first_call_s"] = first_call
  median = statistics.median(seconds)
  if first_call - median > 0.5 * compile_times["compile_s"]:
    # DESIGN.md: a recompile during a run is a bug; the first call should hit the cache.
    _log(f"{preset}: warning: the first train_step call took {first_call:.1f}s, as if it "
         "recompiled after lower().compile()")

  policy = {}
  for num_envs in POLICY_ENVS:
    _log(f"{preset}: timing policy_step with {num_envs} env(s)")
    policy[str(num_envs)] = time_policy(algo, state, obs_spec, num_envs, args.policy_calls, args.repeats)

  e2e = None
  if args.e2e_steps:
    _log(f"{preset}: end-to-end, {args.e2e_steps} env steps on {config.env.id} after prefill")
    e2e = run_e2e(algo, config, state, args.e2e_steps)

  return {
      "preset": preset, "params": params,
      "batch": {"size": r.batch_size, "length": r.batch_length, "context": r.replay_context,
                "entries": {name: list(spec.shape) for name, spec in entries.items()}},
      "compile": compile_times,
      "train": {"seconds_per_update": summary(seconds), "updates_per_s": 1.0 / median},
      "flops": {"per_update": flops, "achieved_per_s": flops / median,
                "method": "jaxpr matmul+conv FLOPs, scan bodies x length",
                "while_loops_counted_once": whiles, "xla_cost_analysis": cost,
                "xla_note": "XLA counts each while-loop (scan) body once"},
      "policy": policy, "e2e": e2e,
      "memory": {**peak_memory(), "xla_plan": memory_plan},
      "config": config.to_dict(),
  }
