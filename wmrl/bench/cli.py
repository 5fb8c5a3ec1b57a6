"""`wmrl bench`'s command line: settings, the rows, the matmul peak, the report."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys

import jax

from wmrl import config as cfg, overrides, presets
from wmrl.bench import seeds
from wmrl.bench.inputs import DEFAULT_ENV
from wmrl.bench.preset import _log, bench_preset, build_config
from wmrl.bench.report import default_out, format_table, json_default, machine_info
from wmrl.bench.timing import measure_peak

DEFAULT_ROWS = ("size1m", "size12m")
SEEDS_ROWS = ("size1m",)


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="wmrl bench", formatter_class=argparse.RawDescriptionHelpFormatter,
      usage="wmrl bench [--preset P,Q ...] [--env ID] [--dtype D] [--FIELD VALUE ...] [...]",
      description="Measure the speed of an algorithm's train and policy steps (DreamerV3 by "
                  "default; --algorithm names another).",
      epilog="presets: " + ", ".join(presets.PRESETS) + "\n\nEach --preset is one table row; "
             "inside a row presets join with commas and apply\nin order, as in `wmrl train`: "
             "--preset size1m --preset size12m,dmc_vision.\nAny config field is a flag of every "
             "row, as in `wmrl train`: --model.rssm.deter 64\nor --model.rssm.deter=64 "
             "(`wmrl train --help` lists them).")
  parser.add_argument("--preset", action="append", metavar="P,Q",
                      help="presets of one row, joined by commas; repeat for more rows "
                           f"(default: {' and '.join(DEFAULT_ROWS)}, one row each)")
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
  parser.add_argument("--seeds", default=None, metavar="1,2,4",
                      help="instead: the throughput of S seeds vmapped in one program, for each "
                           "S (train step, policy step, with --e2e-steps the real loop); "
                           "default row size1m")
  parser.add_argument("--devices", default=None, metavar="1,2",
                      help="instead (or too): the train step's updates/s on n data-parallel "
                           "devices, the global batch fixed; default row size1m")
  parser.add_argument("--out", default=None,
                      help="JSON path (default: benchmarks/results/speed-<platform>-<date>.json, "
                           "under the working directory)")
  args, fields = overrides.parse_args(parser, argv)
  args.overrides = fields
  try:
    args.seeds = seeds.parse_counts(args.seeds, "seeds") if args.seeds else None
    args.devices = seeds.parse_counts(args.devices, "devices") if args.devices else None
  except ValueError as e:
    parser.error(str(e))
  # The seeds/devices tables multiply the work per row: one row unless asked. The
  # size presets are DreamerV3's: another algorithm's default row is its own defaults.
  default_rows = SEEDS_ROWS if args.seeds or args.devices else DEFAULT_ROWS
  if fields.get("algorithm", cfg.Config.algorithm) != cfg.Config.algorithm:
    default_rows = ("",)
  args.preset = [presets.join(row) for row in args.preset or default_rows]
  for name in ("repeats", "warmup", "policy_calls", "peak_size", "peak_repeats", "e2e_steps"):
    minimum = 1 if name in ("repeats", "policy_calls", "peak_size", "peak_repeats") else 0
    if getattr(args, name) < minimum:
      parser.error(f"--{name.replace('_', '-')} must be >= {minimum}, got {getattr(args, name)}")
  return args


def main(argv: list[str] | None = None) -> int:
  args = parse_args(list(sys.argv[1:] if argv is None else argv))
  rows = args.preset
  try:  # bad presets or field values fail before anything is measured
    for row in rows:
      build_config(row, args)
    if args.devices:
      seeds.check_devices(args.devices, [build_config(row, args) for row in rows],
                          jax.local_device_count())
  except ValueError as e:
    print(f"wmrl bench: error: {e}", file=sys.stderr)
    return 2
  now = datetime.datetime.now()
  settings = {k: v for k, v in vars(args).items() if k != "preset"}
  if args.seeds or args.devices:
    return main_seeds(rows, args, now, settings)
  report = {"date": now.isoformat(timespec="seconds"), "machine": machine_info(),
            "settings": {**settings, "presets": rows}, "presets": []}
  for row in rows:
    report["presets"].append(bench_preset(row, args))
  # The peak matmul runs last so its buffers do not enter the presets' memory peaks.
  _log(f"measuring the matmul peak ({args.peak_size}^3, {args.dtype})")
  report["peak"] = measure_peak(args.peak_size, args.dtype, args.peak_repeats)
  for row in report["presets"]:
    row["flops"]["fraction_of_peak"] = row["flops"]["achieved_per_s"] / report["peak"]["flops_per_s"]
  report["machine"]["load_average_end"] = os.getloadavg()

  out = pathlib.Path(args.out) if args.out else default_out(report["machine"]["platform"],
                                                            now.strftime("%Y-%m-%d"))
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(report, indent=2, default=json_default))
  print(format_table(report))
  print(f"results: {out}")
  return 0


def main_seeds(rows: list[str], args: argparse.Namespace, now: datetime.datetime,
               settings: dict) -> int:
  """`--seeds` / `--devices`: their rows, the matmul peak, the table and the JSON."""
  report = {"date": now.isoformat(timespec="seconds"), "machine": machine_info(),
            "settings": {**settings, "presets": rows}, **seeds.bench_rows(rows, args)}
  _log(f"measuring the matmul peak ({args.peak_size}^3, {args.dtype})")
  report["peak"] = measure_peak(args.peak_size, args.dtype, args.peak_repeats)
  for row in report["seeds"]:
    row["flops"]["fraction_of_peak"] = row["flops"]["achieved_per_s"] / report["peak"]["flops_per_s"]
  report["machine"]["load_average_end"] = os.getloadavg()
  out = pathlib.Path(args.out) if args.out else default_out(
      report["machine"]["platform"], now.strftime("%Y-%m-%d"), "seeds")
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(report, indent=2, default=json_default))
  print(seeds.format_seeds_table(report))
  print(f"results: {out}")
  return 0
