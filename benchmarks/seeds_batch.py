"""Times S seeds' updates in groups of each `run.seeds_batch`, beside S updates of one seed.

  python benchmarks/seeds_batch.py                        # 4 seeds of size1m, groups 1, 2, 4
  python benchmarks/seeds_batch.py --seeds 8 --batches 2,4,8 --preset size12m
  python benchmarks/seeds_batch.py --run.batch_size 32      # any config field, as for wmrl bench

Each form is the train step a run uses (`wmrl.bench.seeds.SeedCalls`, as the
host driver builds it, wmrl/drivers/seeds.py): one seed's (the algorithm's
own, called S times) and the stacked seeds' with that seeds_batch (groups of
that many vmapped, one group after another, in one program; S is all at
once, what `run.seeds_batch 0` does). The forms are timed in turn, round
after round, so that a shared machine's load falls on all of them alike; the
table gives each form's median seconds per S updates and its total updates/s
over one seed's ("x1").
"""
import argparse
import json
import pathlib
import statistics
import sys
import time

import jax

from wmrl import algorithms, overrides
from wmrl.bench.inputs import task_spaces
from wmrl.bench.preset import build_config
from wmrl.bench.seeds import SeedCalls, _host_batches, _seed_states, parse_counts


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="size1m")
  parser.add_argument("--seeds", type=int, default=4, help="S, the seeds of every stacked form")
  parser.add_argument("--batches", default="1,2,4", help="run.seeds_batch values, joined by commas")
  parser.add_argument("--rounds", type=int, default=7, help="timed rounds (after 2 untimed)")
  parser.add_argument("--out", help="JSON path (default: print only)")
  args, args.overrides = overrides.parse_args(parser, sys.argv[1:] if argv is None else argv)
  if args.seeds < 2:
    parser.error(f"--seeds must be at least 2, got {args.seeds}")
  try:
    args.batches = parse_counts(args.batches, "batches")
  except ValueError as e:
    parser.error(str(e))
  return args


def forms(preset: str, count: int, sizes: tuple[int, ...], fields: dict) -> dict[str, list]:
  """{name: [state, batch, train step, calls per round]}: one seed's update, called
  `count` times a round, and the stacked seeds' in groups of each of `sizes`."""
  # The speed benchmark's task (dmc:walker-walk proprio spaces, batch 16 x 64),
  # then the config fields given.
  config = build_config(preset, argparse.Namespace(env=None, dtype="float32", batch_size=None,
                                                   batch_length=None, overrides=fields))
  algo = algorithms.get(config.algorithm)
  obs_spec, act_spec = task_spaces(config, None)
  states = _seed_states(algo, config, obs_spec, act_spec, count)
  batches = _host_batches(algo, states[0], config, obs_spec, act_spec, count)
  one = SeedCalls(algo, 1)
  result = {"one seed": [states[0], jax.device_put(batches[0]), one.train_step, count]}
  for size in sizes:
    calls = SeedCalls(algo, count, size)
    stacked = calls.stack(_seed_states(algo, config, obs_spec, act_spec, count))
    result[f"seeds_batch {size}"] = [stacked, jax.device_put(calls.stack(batches)),
                                     calls.train_step, 1]
  return result


def main(argv=None) -> None:
  args = parse_args(argv)
  timed = forms(args.preset, args.seeds, args.batches, args.overrides)
  seconds = {name: [] for name in timed}
  for round_ in range(args.rounds + 2):  # the first two compile and settle caches
    for name, form in timed.items():
      state, batch, train_step, calls = form
      start = time.perf_counter()
      for _ in range(calls):
        state, _, _ = train_step(state, batch)  # the replaced state is donated
      jax.block_until_ready(state)
      form[0] = state
      if round_ >= 2:
        seconds[name].append(time.perf_counter() - start)
  base = statistics.median(seconds["one seed"])
  rows = [{"form": name, "median_s": statistics.median(s), "min_s": min(s), "max_s": max(s),
           "x1": base / statistics.median(s)} for name, s in seconds.items()]
  print(f"{args.preset}, {args.seeds} seeds, {args.rounds} rounds; seconds per {args.seeds} "
        f"updates (one seed: {args.seeds} calls)")
  for row in rows:
    print(f"{row['form']:>15}  median {row['median_s']:.3f}  [{row['min_s']:.3f}-"
          f"{row['max_s']:.3f}]  x1 {row['x1']:.2f}")
  if args.out:
    report = {"preset": args.preset, "fields": args.overrides, "seeds": args.seeds,
              "rounds": args.rounds,
              "jax": jax.__version__, "platform": jax.default_backend(),
              "date": time.strftime("%Y-%m-%d"), "rows": rows}
    pathlib.Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
  main()
