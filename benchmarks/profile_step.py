"""Profiles train steps and prints where their time goes, op by op.

  python benchmarks/profile_step.py size12m                  # trace 2 steps, print the top ops
  python benchmarks/profile_step.py size1m --hlo hlo.txt     # also write the compiled HLO

The trace (jax.profiler, viewable in TensorBoard or Perfetto) goes to --trace-dir.
Reading it here needs the `xprof` package (`pip install xprof`): the table
sums each XLA op's time over the traced steps, per step, and groups ops by
how often they ran in one step: 1 for ops outside loops, the scan lengths
for ops inside the posterior and imagination scans. On a CPU several ops run
at once, so the sums add up to more than the step's wall time; the table also
gives the time no op was running. Op names match the HLO written by --hlo.
"""
import argparse
import collections
import glob
import json
import time

import jax

from wmrl import bench
from wmrl.algorithms.dreamerv3 import agent
from wmrl.config import Config
from wmrl.presets import apply_presets

NOT_OPS = ("ThreadpoolListener", "ThunkExecutor", "$", "SlinkyThreadPool", "PythonRefManager")


def trace_steps(preset: str, steps: int, trace_dir: str, hlo_path: str | None) -> float:
  config = apply_presets(Config(), preset)
  obs_spec, act_spec = bench.task_spaces(config, None)
  state = agent.init(jax.random.key(0), obs_spec, act_spec, config)
  length = config.run.replay_context + config.run.batch_length
  entries = bench.entry_specs(agent.DREAMERV3, state) if config.run.replay_context else {}
  batch = jax.device_put(bench.random_batch(obs_spec, act_spec, config.run.batch_size, length,
                                            entries=entries))
  if hlo_path:
    with open(hlo_path, "w") as f:
      f.write(agent.train_step.lower(state, batch).compile().as_text())
  for _ in range(2):  # compile and warm up outside the trace
    state, _, _ = agent.train_step(state, batch)
  jax.block_until_ready(state)
  with jax.profiler.trace(trace_dir):
    start = time.perf_counter()
    for _ in range(steps):
      state, _, _ = agent.train_step(state, batch)
      jax.block_until_ready(state)
    return (time.perf_counter() - start) / steps


def op_events(trace_dir: str) -> list[dict]:
  from xprof.convert import raw_to_tool_data  # optional: pip install xprof
  path = sorted(glob.glob(f"{trace_dir}/plugins/profile/*/*.xplane.pb"))[-1]
  data, _ = raw_to_tool_data.xspace_to_tool_data([path], "trace_viewer", {})
  events = json.loads(data if isinstance(data, str) else data.decode())["traceEvents"]
  ops = [e for e in events if e.get("ph") == "X" and not e["name"].startswith(NOT_OPS)]
  # Ops the thunk executor runs asynchronously (Eigen dots) show as a launch
  # and a later "end: NAME" marker: their time runs from the one to the other.
  launched = {}
  timed = []
  for e in sorted(ops, key=lambda e: e["ts"]):
    if e["name"].startswith("end: "):
      start = launched.pop(e["name"][5:], None)
      if start is not None:
        start["dur"] = max(start["dur"], e["ts"] + e["dur"] - start["ts"])
    else:
      launched[e["name"]] = e
      timed.append(e)
  return timed


def busy_time(events: list[dict]) -> float:
  """Microseconds in which at least one op was running."""
  total, end = 0.0, -1.0
  for e in sorted(events, key=lambda e: e["ts"]):
    start, stop = e["ts"], e["ts"] + e["dur"]
    if start > end:
      total += stop - start
      end = stop
    elif stop > end:
      total += stop - end
      end = stop
  return total


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("preset", nargs="?", default="size1m")
  parser.add_argument("--steps", type=int, default=2)
  parser.add_argument("--top", type=int, default=25)
  parser.add_argument("--trace-dir", default="/tmp/wmrl-profile")
  parser.add_argument("--hlo", help="write the compiled train step's HLO text here")
  args = parser.parse_args()
  wall = trace_steps(args.preset, args.steps, args.trace_dir, args.hlo)
  print(f"{args.preset}: {wall * 1e3:.0f} ms per step while traced; trace in {args.trace_dir}")
  try:
    events = op_events(args.trace_dir)
  except ImportError:
    print("reading the trace needs xprof: pip install xprof (or open the trace in TensorBoard)")
    return
  per_step = lambda us: us / args.steps / 1e3
  # A while loop (a scan) is timed as a whole besides the ops inside it.
  loops = collections.Counter()
  for e in events:
    if e["name"].startswith("while"):
      loops[e["name"]] += e["dur"]
  events = [e for e in events if not e["name"].startswith("while")]
  print("scans, whole, ms per step: " + ", ".join(
      f"{name} {per_step(us):.0f}" for name, us in loops.most_common()))
  total = collections.Counter()
  runs = collections.Counter()
  for e in events:
    total[e["name"]] += e["dur"]
    runs[e["name"]] += 1
  groups = collections.Counter()
  for name, us in total.items():
    groups[runs[name] // args.steps] += us
  print(f"ops busy {per_step(busy_time(events)):.0f} ms per step, "
        f"sum of op times {per_step(sum(total.values())):.0f} ms (ops overlap)")
  print("by runs per step (1: outside loops; loop lengths inside scans):")
  for count, us in groups.most_common(6):
    print(f"  {count:5d} runs: {per_step(us):8.1f} ms")
  print(f"top {args.top} ops, ms per step:")
  for name, us in total.most_common(args.top):
    print(f"  {per_step(us):8.1f}  x{runs[name] // args.steps:<4d} {name}")


if __name__ == "__main__":
  main()
