"""The memory benchmark: what the sequence model remembers.

  python benchmarks/memory.py probe                     # every span and model, 10,000 updates each
  python benchmarks/memory.py probe --spans 31 --updates 20000   # 37 min on a 2-core CPU
  python benchmarks/memory.py probe --spans 3 --updates 3000 --preset memory --models ssm
  python benchmarks/memory.py rl --logdir runs/memory    # the RL runs' last returns, as CSV
  python benchmarks/memory.py plot --probe memory_probe_span3,memory_probe_span31

`probe` trains the world model alone on random-policy RepeatPrevious
episodes (wmrl/memory_probe.py) at recall spans 3, 15, 31 and 63 and
measures, on held-out episodes, the binary cross-entropy in bits of the
reward head's belief that each rewarded step's reward is positive: a model
without memory cannot beat H(0.25) = 0.811 bits, perfect memory is 0. The
models: the SSM on windows of 256 steps, the GRU RSSM on 64 (the reference's
length) and on 256 (the control: the gap is not only the window). Every
model gets the same updates of 512 replayed steps and the same settings
(`PROBE`: 64-unit networks, learning rate 3e-3 for every model, no warmup)
and rewards of +-1 (`behavior.reward_scale` N - k; --reward-scale 1 trains
on the environment's +-1/(N - k)).
Writes benchmarks/results/memory_probe.csv (the bits at the end) and
memory_probe_curves.csv (the bits every tenth of the updates).

`rl` reads the runs of a logdir (one per subdirectory, as `wmrl train`
writes them) and writes each one's mean return over its last 10 episodes,
with its config, to benchmarks/results/memory_rl.csv, and its curve (the mean
return of each 10 episodes) to memory_rl_curves.csv; the commands that made
them are in docs/memory.md. `plot` draws the probe's and the runs' curves
from those CSVs into docs/images/ (needs matplotlib: the `plot` extra).
"""
from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wmrl import memory_probe, testing  # noqa: E402
from wmrl.config import Config  # noqa: E402
from wmrl.logging import read_metrics  # noqa: E402
from wmrl.presets import apply_presets  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SPANS = (3, 15, 31, 63)
MODELS = (("ssm", 256), ("rssm", 64), ("rssm", 256))
STEPS_PER_UPDATE = 512
CURVE_EPISODES = 10
MODEL_NAMES = {"ssm": "SSM", "rssm": "GRU"}
UNITS = 64
# One set of settings for every model: small networks (the task's observation
# is one card) and a learning rate that lets memory appear in thousands of
# updates rather than tens of thousands.
PROBE = {
    "model.ssm.units": UNITS, "model.ssm.state": UNITS, "model.ssm.deter": 2 * UNITS,
    "model.ssm.hidden": UNITS, "model.rssm.deter": 2 * UNITS, "model.rssm.hidden": UNITS,
    "model.encoder.units": UNITS, "model.decoder.units": UNITS, "model.reward.units": UNITS,
    "model.cont.units": UNITS, "optim.lr": 3e-3, "optim.warmup": 0,
}


def probe_config(dynamics: str, length: int, span: int, reward_scale: float | None,
                 preset: str | None = None):
  """The PROBE settings, or with `preset` that preset's world model, batch
  and learning rate (its window when `length` is 0)."""
  scale = memory_probe.unit_reward_scale(span) if reward_scale is None else reward_scale
  if preset:
    config = apply_presets(Config(), preset).replace(**{
        "model.dynamics": dynamics, "behavior.reward_scale": scale})
    return config.replace(**{"run.batch_length": length}) if length else config
  return testing.tiny_config(**PROBE, **{
      "model.dynamics": dynamics, "run.batch_size": STEPS_PER_UPDATE // length,
      "run.batch_length": length, "behavior.reward_scale": scale})


def probe(args) -> None:
  rows, curves = [], []
  wanted = args.models.split(",")
  # With a preset, its own window (length 0 = keep the preset's).
  models = [(name, 0) for name in wanted] if args.preset else MODELS
  for span in args.spans:
    for dynamics, length in models:
      if dynamics not in wanted:
        continue
      config = probe_config(dynamics, length, span, args.reward_scale, args.preset)
      length = config.run.batch_length
      name = f"{dynamics} T={length} span={span}"

      def progress(update, loss, bits):
        curves.append({"span": span, "model": dynamics, "length": length, "update": update,
                       "bits": round(bits, 4)})
        print(f"  {name}: update {update}, loss {loss:.3f}, {bits:.3f} bits", flush=True)

      result = memory_probe.run(config, span, args.updates, seed=args.seed, progress=progress)
      rows.append({"span": span, "model": dynamics, "length": length, "updates": args.updates,
                   "seed": args.seed, "bits": round(result.bits, 4),
                   "inside_window": span + 1 < length, "seconds": round(result.seconds)})
      print(f"{name}: {result.bits:.3f} bits ({result.fraction_of_memoryless:.0%} of "
            f"memoryless), {result.seconds:.0f} s", flush=True)
  write(RESULTS / f"{args.out}.csv", rows)
  write(RESULTS / f"{args.out}_curves.csv", curves)


def rl(args) -> None:
  rows, curves = [], []
  for run_dir in sorted(p for p in pathlib.Path(args.logdir).iterdir() if p.is_dir()):
    metrics = run_dir / "metrics.jsonl"
    if not metrics.exists():
      continue
    config = json.loads((run_dir / "config.json").read_text())
    records = read_metrics(metrics)
    episodes = [r for r in records if "episode/score" in r]
    last = [r["episode/score"] for r in episodes[-10:]]
    run, behavior = config["run"], config["behavior"]
    rows.append({"run": run_dir.name, "env": config["env"]["id"],
                 "dynamics": config["model"]["dynamics"],
                 # What the SSM's actor and critic read; runs from before the setting read
                 # what the heads read, [deter, stoch].
                 "policy_inputs": (",".join(config["model"]["ssm"].get("policy_inputs",
                                                                       ("deter", "stoch")))
                                   if config["model"]["dynamics"] == "ssm" else ""),
                 "batch_length": run["batch_length"],
                 "lr": config["optim"]["lr"], "actor_lr": config["optim"]["actor_lr"],
                 "reward_scale": behavior.get("reward_scale", 1.0),
                 "replay_context": run["replay_context"], "repval_grad": behavior["repval_grad"],
                 "seed": run["seed"], "steps": episodes[-1]["step"] if episodes else 0,
                 "updates": max((r["train/updates"] for r in records if "train/updates" in r),
                                default=0),
                 "episodes": len(episodes),
                 "last10_return": round(sum(last) / len(last), 3) if last else None,
                 # One reward an episode (MemoryChain) makes 10 episodes a noisy mean.
                 "last100_return": round(sum(r["episode/score"] for r in episodes[-100:]) /
                                         len(episodes[-100:]), 3) if episodes else None})
    for i in range(0, len(episodes) - CURVE_EPISODES + 1, CURVE_EPISODES):
      chunk = episodes[i:i + CURVE_EPISODES]
      curves.append({"run": run_dir.name, "step": chunk[-1]["step"],
                     "return": round(sum(r["episode/score"] for r in chunk) / len(chunk), 3)})
    print(rows[-1])
  write(RESULTS / f"{args.out_rl}.csv", rows)
  write(RESULTS / f"{args.out_rl}_curves.csv", curves)


def plot(args) -> None:
  from matplotlib.figure import Figure
  images = ROOT / "docs" / "images"
  images.mkdir(exist_ok=True)
  for name, sources, x, y, group, xlabel, ylabel in (
      ("memory_probe", args.probe.split(","), "update", "bits", ("span", "model", "length"),
       "world-model updates", "bits (0.811: no memory)"),
      (args.out_rl, [args.out_rl], "step", "return", ("run",), "environment steps",
       "mean return of 10 episodes")):
    rows = []
    for source in sources:
      path = RESULTS / f"{source}_curves.csv"
      if path.exists():
        with path.open() as f:
          rows += list(csv.DictReader(f))
    if not rows:
      continue
    fig = Figure(figsize=(6.4, 4))
    ax = fig.add_subplot()
    for key in dict.fromkeys(tuple(r[g] for g in group) for r in rows):
      sel = [r for r in rows if tuple(r[g] for g in group) == key]
      label = key[0] if len(key) == 1 else f"{MODEL_NAMES[key[1]]} T={key[2]}, span {key[0]}"
      ax.plot([float(r[x]) for r in sel], [float(r[y]) for r in sel], label=label)
    if y == "bits":
      ax.axhline(memory_probe.MEMORYLESS_BITS, color="grey", linestyle=":")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(images / f"{name}.png", dpi=100)
    print(f"wrote {(images / f'{name}.png').relative_to(ROOT)}")


def write(path: pathlib.Path, rows: list[dict]) -> None:
  if not rows:
    return
  with path.open("w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  print(f"wrote {path.relative_to(ROOT)}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  commands = parser.add_subparsers(dest="command", required=True)
  p = commands.add_parser("probe", help="the world-model memory probe")
  p.add_argument("--spans", type=lambda s: [int(x) for x in s.split(",")], default=list(SPANS))
  p.add_argument("--models", default="ssm,rssm")
  p.add_argument("--updates", type=int, default=10_000)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--reward-scale", type=float, help="behavior.reward_scale (default: N - k, "
                 "rewards of +-1)")
  p.add_argument("--preset", help="probe this preset's world model, batch and learning rate "
                 "(e.g. memory) instead of the PROBE settings")
  p.add_argument("--out", default="memory_probe")
  r = commands.add_parser("rl", help="collect the RL runs' returns")
  r.add_argument("--logdir", required=True)
  r.add_argument("--out-rl", default="memory_rl")
  f = commands.add_parser("plot", help="draw the results' curves into docs/images/")
  f.add_argument("--probe", default="memory_probe",
                 help="the probe results to draw together, comma-separated")
  f.add_argument("--out-rl", default="memory_rl")
  args = parser.parse_args()
  {"probe": probe, "rl": rl, "plot": plot}[args.command](args)


if __name__ == "__main__":
  main()
