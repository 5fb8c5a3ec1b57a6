"""A comparison's files: compare.json, compare.md and one plot per task."""
from __future__ import annotations

import json
import math
import pathlib

from wmrl.compare.errors import CompareError
from wmrl.compare.tables import format_markdown


def figure_class():
  try:
    from matplotlib.figure import Figure
  except ImportError:
    raise ImportError("plots need matplotlib: pip install matplotlib "
                      "(or pip install 'wmrl[plot]')") from None
  return Figure


def plot_task(task: str, summary: dict, path: str | pathlib.Path) -> None:
  """One task's published mean and min-max band beside the runs' seed mean and band, over
  environment frames."""
  # The object API, not pyplot: no global figure state, no GUI backend needed.
  figure = figure_class()(figsize=(6, 4), dpi=100)
  ax = figure.subplots()
  published = summary["published_curve"]
  ax.plot(published["frames"], published["mean"], color="0.3",
          label=f"DreamerV3 published ({published['seeds']} seeds)")
  ax.fill_between(published["frames"], published["min"], published["max"], color="0.3",
                  alpha=0.15)
  curve = summary["curve"]
  ax.plot(curve["frames"], curve["mean"], color="C0", label=f"runs ({len(summary['runs'])} seeds)")
  ax.fill_between(curve["frames"], curve["min"], curve["max"], color="C0", alpha=0.25)
  ax.set(title=task, xlabel="environment frames (agent steps x action repeat)", ylabel="score")
  ax.legend(loc="best", fontsize="small")
  ax.grid(alpha=0.3)
  figure.tight_layout()
  figure.savefig(path)


def json_ready(value):
  """NaN and infinities as None, so compare.json is strict JSON."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: json_ready(v) for k, v in value.items()}
  if isinstance(value, list):
    return [json_ready(v) for v in value]
  return value


def write_outputs(result: dict, out: str | pathlib.Path) -> list[pathlib.Path]:
  """compare.json, compare.md and <task>.png in `out`; returns the paths written."""
  figure_class()  # fails before anything is written when matplotlib is missing
  out = pathlib.Path(out)
  if out.exists() and not out.is_dir():
    raise CompareError(f"--out '{out}' is a file; pass a folder for compare.json and the plots")
  out.mkdir(parents=True, exist_ok=True)
  written = [out / "compare.json", out / "compare.md"]
  written[0].write_text(json.dumps(json_ready(result), indent=1, allow_nan=False) + "\n")
  written[1].write_text(format_markdown(result))
  for task, summary in result["tasks"].items():
    written.append(out / f"{task}.png")
    plot_task(task, summary, written[-1])
  return written
