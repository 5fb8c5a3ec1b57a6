"""One update against the training window's length T, for each sequence model,
side by side in one run.

  python benchmarks/sequence_speed.py                       # size1m, T = 64, 256, 1024
  python benchmarks/sequence_speed.py --preset size12m --lengths 64,1024 --out r.json

Every window shape replays the same 1024 steps per update (16 x 64, 4 x 256,
1 x 1024, plus the replay-context step), on DMC walker-walk proprio spaces.
For each model (`model.dynamics`: the GRU RSSM, the SSM) and shape it times
the whole update (forward, backward, optimiser: `agent.update`) and the world
model's loss alone (forward and backward), each jitted on its own: the
median of --repeats calls after a compile and a warm-up. Prints a table and
the SSM's speed-up over the GRU per shape; --out writes the rows as JSON.
"""
import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
from flax import nnx  # noqa: E402

from wmrl import testing  # noqa: E402
from wmrl.algorithms.dreamerv3 import agent  # noqa: E402
from wmrl.algorithms.dreamerv3.world_model import world_model_loss  # noqa: E402
from wmrl.bench.timing import median_seconds  # noqa: E402
from wmrl.config import Config  # noqa: E402
from wmrl.presets import apply_presets  # noqa: E402

STEPS_PER_UPDATE = 1024
MODELS = ("rssm", "ssm")


def parts(dynamics: str, preset: str, length: int):
  """The two timed functions and their argument, for one model and window length."""
  batch_size = STEPS_PER_UPDATE // length
  config = apply_presets(Config(), preset).replace(**{
      "model.dynamics": dynamics, "run.batch_size": batch_size, "run.batch_length": length})
  state = agent.init(jax.random.key(0), testing.WALKER_OBS, testing.WALKER_ACT, config)
  batch = testing.random_batch(testing.WALKER_OBS, testing.WALKER_ACT, batch_size, length + 1,
                               entries=testing.entry_specs(agent.DREAMERV3, state))
  data, prev = agent.split_batch(batch, 1)
  wm, _, _ = agent.modules(state.spec, state.params)
  start = agent.start_latent(wm.dynamics, batch, 1)

  def update(state):
    return agent.update(state, start, data, prev)[1]

  def world_model(state):
    def loss(params):
      model = nnx.merge(state.spec.graphs[0], params)
      losses, _, _ = world_model_loss(model, start, data, prev, jax.random.key(0), 1.0)
      return sum(v.mean() for v in losses.values())
    return jax.grad(loss)(state.params["wm"])

  return {"update": update, "world model (fwd+bwd)": world_model}, state


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--preset", default="size1m")
  parser.add_argument("--lengths", default="64,256,1024")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", help="write the rows as JSON here")
  args = parser.parse_args()
  rows = []
  for length in map(int, args.lengths.split(",")):
    for dynamics in MODELS:
      fns, state = parts(dynamics, args.preset, length)
      for part, fn in fns.items():
        seconds = median_seconds(fn, (state,), args.repeats)
        rows.append({"model": dynamics, "preset": args.preset, "batch": STEPS_PER_UPDATE // length,
                     "length": length, "part": part, "ms": round(seconds * 1000, 1)})
        print(f"{dynamics:5s} {STEPS_PER_UPDATE // length:3d} x {length:5d}  {part:22s} "
              f"{seconds * 1000:8.1f} ms", flush=True)
  print(f"\n{args.preset} on {jax.devices()[0].device_kind}: the SSM's speed-up over the GRU")
  ms = {(r["model"], r["length"], r["part"]): r["ms"] for r in rows}
  for length in map(int, args.lengths.split(",")):
    for part in ("update", "world model (fwd+bwd)"):
      print(f"  T={length:5d} {part:22s} {ms['rssm', length, part] / ms['ssm', length, part]:5.2f}x")
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps({"device": jax.devices()[0].device_kind,
                                                  "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
  main()
