"""Speed benchmark: compile time, updates/s, FLOPs and their share of the
machine's matmul peak, policy steps/s, end-to-end env steps/s, peak memory.

    python benchmarks/speed.py                         # size1m,size12m on walker-walk spaces
    python benchmarks/speed.py --presets size12m --dtype bfloat16 --e2e-steps 2000

Each preset is measured on a fixed random batch of the task's spaces, so the
figures are those of the compiled programs alone; `--e2e-steps` adds the
whole collect/train loop (environment, replay, host transfers) on top.

FLOPs. XLA's cost analysis counts the body of a while loop once, whatever its
trip count, and every `lax.scan` lowers to one (the RSSM over the batch length,
imagination over the horizon, and their backward passes). Its figure therefore
undercounts a DreamerV3 update (about 2x for size1m and size12m on walker-walk,
although it also counts elementwise work). The benchmark reports it, but takes
FLOPs per update from the traced jaxpr instead: matmul and convolution FLOPs,
with each scan body counted `length` times. Those are also the FLOPs the
matmul peak measures, so their ratio is a fair utilisation.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import resource
import statistics
import sys
import time

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np

from wmrl import agent, driver
from wmrl import config as cfg
from wmrl.spaces import ActionSpec, ArraySpec

# DMC walker-walk, proprioceptive: the reference's DMC proprio benchmark task.
WALKER_OBS = {"orientations": ArraySpec((14,), "float32"), "height": ArraySpec((1,), "float32"),
              "velocity": ArraySpec((9,), "float32")}
WALKER_ACT = ActionSpec("continuous", (6,))
DEFAULT_ENV = "dmc:walker-walk"
POLICY_ENVS = (1, 16)


def _log(message: str) -> None:
  # Progress goes to stderr so stdout holds only the table.
  print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- settings ---------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="wmrl bench", description="Measure the speed of DreamerV3 train and policy steps.",
      epilog="presets: " + ", ".join(cfg.PRESETS) + " (join with '+' to combine, e.g. "
             "size12m+dmc_vision)")
  parser.add_argument("--presets", default="size1m,size12m",
                      help="comma-separated presets, one table row each (default: size1m,size12m)")
  parser.add_argument("--env", default=None,
                      help=f"take the spaces from this env id (default: {DEFAULT_ENV} proprio "
                           "spaces, built without an env); also the env of --e2e-steps")
  parser.add_argument("--batch-size", type=int, help="run.batch_size (default: the preset's, 16)")
  parser.add_argument("--batch-length", type=int, help="run.batch_length (default: the preset's, 64)")
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                      help="model.compute_dtype, and the dtype of the peak matmul (default float32)")
  parser.add_argument("--repeats", type=int, default=10, help="timed train steps (default 10)")
  parser.add_argument("--warmup", type=int, default=2,
                      help="untimed train steps first, at least 1 (default 2)")
  parser.add_argument("--policy-calls", type=int, default=200,
                      help="policy_step calls per timed block; --repeats blocks (default 200)")
  parser.add_argument("--peak-size", type=int, default=4096,
                      help="n of the n x n @ n x n matmul that measures the peak (default 4096)")
  parser.add_argument("--peak-repeats", type=int, default=5, help="timed peak matmuls (default 5)")
  parser.add_argument("--e2e-steps", type=int, default=0,
                      help="env steps of the real collect/train loop after prefill (default 0: skip)")
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="dotted config override, repeatable: --set model.rssm.deter=64")
  parser.add_argument("--out", default=None,
                      help="JSON path (default: benchmarks/results/speed-<platform>-<date>.json, "
                           "under the working directory)")
  args = parser.parse_args(argv)
  for name in ("repeats", "warmup", "policy_calls", "peak_size", "peak_repeats", "e2e_steps"):
    minimum = 1 if name in ("repeats", "policy_calls", "peak_size", "peak_repeats") else 0
    if getattr(args, name) < minimum:
      parser.error(f"--{name.replace('_', '-')} must be >= {minimum}, got {getattr(args, name)}")
  return args


def parse_overrides(items: list[str]) -> dict[str, str]:
  overrides = {}
  for item in items:
    name, sep, value = item.partition("=")
    if not sep or not name.strip():
      raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
    overrides[name.strip()] = value.strip()
  return overrides


def build_config(preset: str, args: argparse.Namespace) -> cfg.Config:
  """The preset, then the benchmark's task settings, then the flags, then --set."""
  config = cfg.apply_presets(cfg.Config(), preset.split("+"))
  # The reference's DMC proprio setting: one env, action repeat 2, train ratio 512.
  settings = {"env.id": args.env or DEFAULT_ENV, "env.num_envs": 1, "env.action_repeat": 2,
              "run.train_ratio": 512, "model.compute_dtype": args.dtype}
  if args.batch_size is not None:
    settings["run.batch_size"] = args.batch_size
  if args.batch_length is not None:
    settings["run.batch_length"] = args.batch_length
  return config.replace(**settings).replace(**parse_overrides(args.set))


def task_spaces(config: cfg.Config, env_id: str | None):
  """Walker's proprio spaces as constants (no simulator needed), else the env's own."""
  if env_id is None and not config.env.pixels:
    return WALKER_OBS, WALKER_ACT
  env = driver.make_env(config, seed=0, num_envs=1)
  try:
    return env.obs_spec, env.act_spec
  finally:
    env.close()


def random_obs(rng: np.random.Generator, obs_spec, lead: tuple[int, ...]) -> dict:
  obs = {}
  for key, spec in obs_spec.items():
    shape = (*lead, *spec.shape)
    if spec.dtype == "uint8":
      obs[key] = rng.integers(0, 256, shape, dtype=np.uint8)
    else:
      obs[key] = rng.normal(size=shape).astype(spec.dtype)
  return obs


def random_batch(obs_spec, act_spec: ActionSpec, batch_size: int, length: int, seed: int = 0):
  """A replay-shaped batch; its values do not change the speed, only its shapes."""
  rng = np.random.default_rng(seed)
  batch = random_obs(rng, obs_spec, (batch_size, length))
  actions = driver.random_actions(rng, act_spec, batch_size * length)
  batch["action"] = actions.reshape(batch_size, length, act_spec.dim)
  batch["reward"] = rng.normal(size=(batch_size, length)).astype(np.float32)
  batch["is_first"] = np.zeros((batch_size, length), bool)
  batch["is_first"][:, 0] = True
  batch["is_last"] = np.zeros((batch_size, length), bool)
  batch["is_terminal"] = np.zeros((batch_size, length), bool)
  return batch


# --- FLOPs ------------------------------------------------------------------------

def _dot_flops(eqn) -> int:
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  (_, rhs_contract), (_, rhs_batch) = eqn.params["dimension_numbers"]
  free = [d for i, d in enumerate(rhs) if i not in rhs_contract and i not in rhs_batch]
  # One multiply-add per lhs element and rhs free column.
  return 2 * math.prod(lhs) * math.prod(free)


def _conv_flops(eqn) -> int:
  rhs = eqn.invars[1].aval.shape
  out = eqn.outvars[0].aval.shape
  out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
  # Each output element sums over (in-features per group x kernel window).
  return 2 * math.prod(out) * (math.prod(rhs) // out_features)


def jaxpr_flops(jaxpr) -> tuple[int, int]:
  """Matmul + convolution FLOPs of a jaxpr, scan bodies times their length.

  Returns (flops, while_loops); a `while` body is counted once, since its
  trip count is not static, and counted in `while_loops` so a caller can say so.
  """
  flops, whiles = 0, 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      flops += _dot_flops(eqn)
    elif name == "conv_general_dilated":
      flops += _conv_flops(eqn)
    elif name == "scan":
      inner, w = jaxpr_flops(eqn.params["jaxpr"].jaxpr)
      flops, whiles = flops + eqn.params["length"] * inner, whiles + w
    elif name == "cond":
      # One branch runs; the costliest is the honest upper bound.
      counts = [jaxpr_flops(b.jaxpr) for b in eqn.params["branches"]]
      flops += max(c[0] for c in counts)
      whiles += max(c[1] for c in counts)
    else:
      whiles += name == "while"
      for sub in jex.jaxprs_in_params(eqn.params):
        inner, w = jaxpr_flops(sub)
        flops, whiles = flops + inner, whiles + w
  return flops, whiles


def xla_flops(compiled) -> float | None:
  """FLOPs from XLA's cost analysis; a dict or, in some JAX versions, a list of dicts."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # some backends do not implement it
    return None
  if not analysis:
    return None
  if isinstance(analysis, dict):
    analysis = [analysis]
  return float(sum(a.get("flops", 0.0) for a in analysis if a))


def xla_memory(compiled) -> dict[str, int]:
  try:
    stats = compiled.memory_analysis()
  except Exception:
    return {}
  names = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
           "generated_code_size_in_bytes")
  return {n: int(getattr(stats, n)) for n in names if hasattr(stats, n)}


# --- measurements -----------------------------------------------------------------

def _summary(seconds: list[float]) -> dict:
  return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds),
          "all": seconds}


def median_seconds(fn, args: tuple, repeats: int) -> float:
  """Median seconds of `jax.jit(fn)(*args)` over `repeats` calls, after two
  untimed calls (the compile and a warm-up). The benchmark scripts time their
  parts with it."""
  jitted = jax.jit(fn)
  for _ in range(2):
    jax.block_until_ready(jitted(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(jitted(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def compile_train_step(state, batch) -> tuple[dict, object]:
  """Traces, lowers and compiles `agent.train_step`; the jaxpr is kept for FLOPs."""
  start = time.perf_counter()
  traced = agent.train_step.trace(state, batch)
  lowered = traced.lower()
  lowered_at = time.perf_counter()
  compiled = lowered.compile()
  end = time.perf_counter()
  times = {"trace_lower_s": lowered_at - start, "compile_s": end - lowered_at,
           "total_s": end - start}
  return times, (traced.jaxpr, compiled)


def time_train(state, batch, repeats: int, warmup: int):
  """Seconds of each timed update, called as the driver calls it."""
  start = time.perf_counter()
  state, _ = agent.train_step(state, batch)
  jax.block_until_ready(state)
  first_call = time.perf_counter() - start  # a recompile would show here
  for _ in range(max(warmup - 1, 0)):
    state, _ = agent.train_step(state, batch)
  jax.block_until_ready(state)
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    state, _ = agent.train_step(state, batch)
    jax.block_until_ready(state)
    seconds.append(time.perf_counter() - start)
  return state, seconds, first_call


def policy_obs(obs_spec, num_envs: int) -> dict:
  obs = random_obs(np.random.default_rng(0), obs_spec, (num_envs,))
  obs["is_first"] = np.zeros((num_envs,), bool)
  return obs


def time_policy(state, obs_spec, num_envs: int, calls: int, blocks: int) -> dict:
  """Policy calls per second, each with a fresh host key and the action fetched,
  as `Driver.collect` does, so the figure includes dispatch and transfer."""
  rng = np.random.default_rng(0)
  obs = policy_obs(obs_spec, num_envs)
  carry = agent.initial_carry(state, num_envs)
  start = time.perf_counter()
  action, carry = agent.policy_step(state, obs, carry, rng.integers(0, 2**32, 2, np.uint32))
  np.asarray(action)
  first_call = time.perf_counter() - start
  for _ in range(min(calls, 20)):  # settle caches before timing
    action, carry = agent.policy_step(state, obs, carry, rng.integers(0, 2**32, 2, np.uint32))
    np.asarray(action)
  rates = []
  for _ in range(blocks):
    start = time.perf_counter()
    for _ in range(calls):
      action, carry = agent.policy_step(state, obs, carry, rng.integers(0, 2**32, 2, np.uint32))
      np.asarray(action)
    rates.append(calls / (time.perf_counter() - start))
  rate = statistics.median(rates)
  return {"num_envs": num_envs, "calls_per_s": rate, "actions_per_s": rate * num_envs,
          "latency_ms": 1e3 / rate, "calls_per_s_all": rates, "first_call_s": first_call}


def run_e2e(config: cfg.Config, state, steps: int) -> dict:
  """The real collect/train loop for `steps` env steps after prefill and warm-up."""
  from wmrl.replay import Replay
  r = config.run
  env = driver.make_env(config, seed=r.seed, num_envs=1)
  try:
    loop = driver.Driver(config, env, state, Replay(r.replay_capacity, 1, seed=r.seed))
    ignore = lambda _: None
    start = time.perf_counter()
    while loop.counters.env_steps < loop.prefill:
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
  finally:
    env.close()
  env_steps, updates = loop.counters.env_steps - steps0, loop.counters.updates - updates0
  return {"env": config.env.id, "action_repeat": config.env.action_repeat,
          "train_ratio": r.train_ratio, "env_steps": env_steps, "updates": updates,
          "seconds": elapsed, "env_steps_per_s": env_steps / elapsed,
          "updates_per_s": updates / elapsed, "prefill_steps": loop.prefill,
          "prefill_s": prefill_s}


def peak_memory() -> dict:
  """The process's peak so far: device allocator stats where the backend has them."""
  stats = None
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:
    pass
  if stats and "peak_bytes_in_use" in stats:
    return {"kind": "device peak_bytes_in_use", "bytes": int(stats["peak_bytes_in_use"])}
  # ru_maxrss is KiB on Linux, bytes on macOS.
  scale = 1 if sys.platform == "darwin" else 1024
  return {"kind": "process peak RSS",
          "bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale}


def measure_peak(n: int, dtype: str, repeats: int) -> dict:
  """FLOP/s of a large jitted matmul: the ceiling the model's matmuls aim at."""
  key_a, key_b = jax.random.split(jax.random.key(0))
  a = jax.random.normal(key_a, (n, n), dtype)
  b = jax.random.normal(key_b, (n, n), dtype)
  matmul = jax.jit(jnp.matmul)
  matmul(a, b).block_until_ready()
  start = time.perf_counter()
  matmul(a, b).block_until_ready()
  single = time.perf_counter() - start
  # On fast accelerators one matmul is shorter than a dispatch; time a chain of
  # calls (in-order on one stream) so launch overhead does not lower the peak.
  calls = max(1, min(1000, int(0.2 / max(single, 1e-9))))
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      out = matmul(a, b)
    out.block_until_ready()
    seconds.append((time.perf_counter() - start) / calls)
  flops = 2 * n**3
  return {"n": n, "dtype": dtype, "flops": flops, "calls_per_block": calls,
          "seconds": _summary(seconds), "flops_per_s": flops / statistics.median(seconds)}


# --- one preset -------------------------------------------------------------------

def bench_preset(preset: str, args: argparse.Namespace) -> dict:
  config = build_config(preset, args)
  r = config.run
  obs_spec, act_spec = task_spaces(config, args.env)
  length = r.replay_context + r.batch_length
  # The batch is put on the device once, so the timings are the program's own;
  # `--e2e-steps` adds replay sampling and the transfer.
  batch = jax.device_put(random_batch(obs_spec, act_spec, r.batch_size, length))
  _log(f"{preset}: init (batch {r.batch_size} x {r.batch_length} + {r.replay_context})")
  state = agent.init(jax.random.key(r.seed), obs_spec, act_spec, config)
  params = agent.param_counts(state)["total"]

  _log(f"{preset}: compiling train_step ({params / 1e6:.2f}M parameters)")
  compile_times, (jaxpr, compiled) = compile_train_step(state, batch)
  flops, whiles = jaxpr_flops(jaxpr.jaxpr)
  cost = xla_flops(compiled)
  memory_plan = xla_memory(compiled)
  del compiled

  _log(f"{preset}: compiled in {compile_times['total_s']:.1f}s; timing {args.repeats} updates")
  state, seconds, first_call = time_train(state, batch, args.repeats, args.warmup)
  compile_times["first_call_s"] = first_call
  median = statistics.median(seconds)
  if first_call - median > 0.5 * compile_times["compile_s"]:
    # DESIGN.md: a recompile during a run is a bug; the first call should hit the cache.
    _log(f"{preset}: warning: the first train_step call took {first_call:.1f}s, as if it "
         "recompiled after lower().compile()")

  policy = {}
  for num_envs in POLICY_ENVS:
    _log(f"{preset}: timing policy_step with {num_envs} env(s)")
    policy[str(num_envs)] = time_policy(state, obs_spec, num_envs, args.policy_calls, args.repeats)

  e2e = None
  if args.e2e_steps:
    _log(f"{preset}: end-to-end, {args.e2e_steps} env steps on {config.env.id} after prefill")
    e2e = run_e2e(config, state, args.e2e_steps)

  return {
      "preset": preset, "params": params,
      "batch": {"size": r.batch_size, "length": r.batch_length, "context": r.replay_context},
      "compile": compile_times,
      "train": {"seconds_per_update": _summary(seconds), "updates_per_s": 1.0 / median},
      "flops": {"per_update": flops, "achieved_per_s": flops / median,
                "method": "jaxpr matmul+conv FLOPs, scan bodies x length",
                "while_loops_counted_once": whiles, "xla_cost_analysis": cost,
                "xla_note": "XLA counts each while-loop (scan) body once"},
      "policy": policy, "e2e": e2e,
      "memory": {**peak_memory(), "xla_plan": memory_plan},
      "config": config.to_dict(),
  }


# --- output -----------------------------------------------------------------------

def _gflop(flops: float | None) -> str:
  return "-" if flops is None else f"{flops / 1e9:.3g}"


def _mib(num_bytes: float) -> str:
  return f"{num_bytes / 2**20:.0f} MiB"


def format_table(report: dict) -> str:
  machine, peak = report["machine"], report["peak"]
  lines = [
      f"device: {machine['platform']} {machine['device_kind']}  jax {machine['jax_version']}  "
      f"dtype {report['settings']['dtype']}  {report['date']}",
      f"matmul peak: {peak['flops_per_s'] / 1e9:.1f} GFLOP/s ({peak['n']}^3 {peak['dtype']})",
  ]
  name_width = max([6] + [len(row["preset"]) for row in report["presets"]])
  columns = [("preset", name_width), ("params", 8), ("compile s", 9), ("ms/update [min-max]", 21),
             ("upd/s", 7), ("GFLOP/upd", 9), ("XLA GFLOP", 9), ("GFLOP/s", 8), ("% peak", 6),
             ("pol/s 1", 8), ("pol/s 16", 8), ("e2e env/s", 9), ("peak mem", 9)]
  lines.append("  ".join(name.rjust(width) for name, width in columns))
  for row in report["presets"]:
    t = row["train"]["seconds_per_update"]
    e2e = row["e2e"]
    cells = [row["preset"], f"{row['params'] / 1e6:.2f}M", f"{row['compile']['total_s']:.1f}",
             f"{t['median'] * 1e3:.2f} [{t['min'] * 1e3:.2f}-{t['max'] * 1e3:.2f}]",
             f"{row['train']['updates_per_s']:.2f}", f"{row['flops']['per_update'] / 1e9:.3g}",
             _gflop(row["flops"]["xla_cost_analysis"]),
             f"{row['flops']['achieved_per_s'] / 1e9:.3g}",
             f"{100 * row['flops']['fraction_of_peak']:.1f}",
             f"{row['policy']['1']['calls_per_s']:.0f}", f"{row['policy']['16']['calls_per_s']:.0f}",
             f"{e2e['env_steps_per_s']:.1f}" if e2e else "-", _mib(row["memory"]["bytes"])]
    lines.append("  ".join(cell.rjust(width) for cell, (_, width) in zip(cells, columns)))
  kind = report["presets"][0]["memory"]["kind"] if report["presets"] else ""
  lines += [
      "GFLOP/upd: matmul+conv FLOPs from the jaxpr, scans counted x length; XLA GFLOP: XLA's "
      "cost analysis, which counts each scan body once.",
      f"pol/s N: policy_step calls/s with N envs (actions/s = N x that); peak mem: {kind}, "
      "process peak so far."]
  return "\n".join(lines)


def machine_info() -> dict:
  device = jax.devices()[0]
  return {"platform": device.platform, "device_kind": device.device_kind,
          "device_count": jax.device_count(), "jax_version": jax.__version__,
          "python": platform.python_version(), "host": platform.node(),
          "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}


def default_out(platform_name: str, date: str) -> pathlib.Path:
  return pathlib.Path("benchmarks") / "results" / f"speed-{platform_name}-{date}.json"


def main(argv: list[str] | None = None) -> int:
  args = parse_args(list(sys.argv[1:] if argv is None else argv))
  presets = [p.strip() for p in args.presets.split(",") if p.strip()]
  try:  # bad presets or overrides fail before anything is measured
    for preset in presets:
      build_config(preset, args)
  except ValueError as e:
    print(f"wmrl bench: error: {e}", file=sys.stderr)
    return 2
  now = datetime.datetime.now()
  report = {"date": now.isoformat(timespec="seconds"), "machine": machine_info(),
            "settings": {**vars(args), "presets": presets}, "presets": []}
  for preset in presets:
    report["presets"].append(bench_preset(preset, args))
  # The peak matmul runs last so its buffers do not enter the presets' memory peaks.
  _log(f"measuring the matmul peak ({args.peak_size}^3, {args.dtype})")
  report["peak"] = measure_peak(args.peak_size, args.dtype, args.peak_repeats)
  for row in report["presets"]:
    row["flops"]["fraction_of_peak"] = row["flops"]["achieved_per_s"] / report["peak"]["flops_per_s"]
  report["machine"]["load_average_end"] = os.getloadavg()

  out = pathlib.Path(args.out) if args.out else default_out(report["machine"]["platform"],
                                                            now.strftime("%Y-%m-%d"))
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(report, indent=2, default=_json_default))
  print(format_table(report))
  print(f"results: {out}")
  return 0


def _json_default(value):
  if dataclasses.is_dataclass(value):
    return dataclasses.asdict(value)
  if isinstance(value, np.generic):
    return value.item()
  return str(value)


if __name__ == "__main__":
  sys.exit(main())
