"""FLOPs, and with --time seconds, of the parts of one train step.

  python benchmarks/flops_breakdown.py size12m           # FLOPs from the jaxpr (tracing only)
  python benchmarks/flops_breakdown.py size1m --time     # also compile and time each part

Parts, on DMC walker-walk proprio spaces and a batch of 16 x 64 (+1 context):
the whole loss (forward and backward, no optimiser), the world-model loss
alone (forward and backward), and the imagination rollout alone (forward);
"the rest" is the whole minus the two. With --time each part is jitted on its
own and timed (median of --repeats calls after a warm-up), and a large matmul
in the same run gives the machine's peak, so each part's share of the time
and of the peak can be read side by side.
"""
import argparse

import jax
from flax import nnx

from wmrl import bench, testing
from wmrl.algorithms.dreamerv3 import agent, behavior
from wmrl.config import Config
from wmrl.presets import apply_presets
from wmrl.algorithms.dreamerv3.world_model import world_model_loss


WHOLE = "whole loss (fwd+bwd)"


def parts(state, batch_size: int, length: int):
  batch = testing.random_batch(testing.WALKER_OBS, testing.WALKER_ACT, batch_size, length + 1,
                               entries=testing.entry_specs(agent.DREAMERV3, state))
  data, prev = agent.split_batch(batch, 1)
  wm, _, _ = agent.modules(state.spec, state.params)
  start = agent.start_latent(wm.dynamics, batch, 1)  # the stored latent of the context step

  def whole(params):
    return jax.grad(agent.loss, has_aux=True)(params, state, data, prev, jax.random.key(0), start)

  def world_model(params):
    def f(p):
      wm = nnx.merge(state.spec.graphs[0], p)
      losses, _, _ = world_model_loss(wm, start, data, prev, jax.random.key(0), 1.0)
      return sum(v.mean() for v in losses.values())
    return jax.grad(f)(params["wm"])

  def imagination(params):
    wm, actor, _ = agent.modules(state.spec, params)
    starts = wm.dynamics.initial((batch_size * length,))
    return behavior.imagine(wm, actor, starts, state.spec.behavior.imag_horizon, jax.random.key(0),
                           jax.random.key(1))

  return {WHOLE: whole, "world model (fwd+bwd)": world_model,
          "imagination (fwd)": imagination}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("preset", nargs="?", default="size1m")
  parser.add_argument("--time", action="store_true", help="compile and time each part")
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  config = apply_presets(Config(), args.preset)
  state = agent.init(jax.random.key(0), testing.WALKER_OBS, testing.WALKER_ACT, config)
  peak = bench.measure_peak(4096, "float32", 3)["flops_per_s"] if args.time else None
  rows = {}
  for name, fn in parts(state, 16, 64).items():
    flops, _ = bench.jaxpr_flops(jax.make_jaxpr(fn)(state.params).jaxpr)
    secs = bench.median_seconds(fn, (state.params,), args.repeats) if args.time else None
    rows[name] = (flops, secs)
  whole_flops, whole_s = rows[WHOLE]
  pieces = [row for name, row in rows.items() if name != WHOLE]
  rest_flops = whole_flops - sum(f for f, _ in pieces)
  rest_s = whole_s - sum(s for _, s in pieces) if args.time else None
  rows["the rest: actor-critic on imagined states (fwd+bwd)"] = (rest_flops, rest_s)
  if peak:
    print(f"matmul peak (4096^2 float32): {peak / 1e9:.0f} GFLOP/s")
  for name, (flops, secs) in rows.items():
    line = f"{args.preset} {name}: {flops / 1e9:.1f} GFLOP"
    if secs is not None:
      line += (f", {secs:.3f} s ({100 * secs / whole_s:.0f}% of the whole), "
               f"{flops / secs / 1e9:.0f} GFLOP/s = {100 * flops / secs / peak:.0f}% of peak")
    print(line)


if __name__ == "__main__":
  main()
