"""A benchmark report: the machine it ran on, the table for the terminal, the JSON file."""
from __future__ import annotations

import dataclasses
import os
import pathlib
import platform

import jax
import numpy as np


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
    cells = [row["preset"] or "defaults", f"{row['params'] / 1e6:.2f}M",
             f"{row['compile']['total_s']:.1f}",
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


def default_out(platform_name: str, date: str, kind: str = "speed") -> pathlib.Path:
  return pathlib.Path("benchmarks") / "results" / f"{kind}-{platform_name}-{date}.json"


def json_default(value):
  if dataclasses.is_dataclass(value):
    return dataclasses.asdict(value)
  if isinstance(value, np.generic):
    return value.item()
  return str(value)
