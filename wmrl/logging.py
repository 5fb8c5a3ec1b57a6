"""Metrics to JSONL and a live console line.

Every record is one JSON object per line in ``LOGDIR/metrics.jsonl`` with
``step`` (environment steps) and metric names such as ``episode/score``,
``loss/rec`` or ``fps/env``.
"""
from __future__ import annotations

import json
import math
import pathlib
import sys
import time
from typing import Any

import numpy as np


def _scalar(value) -> float | int:
  value = np.asarray(value)
  if value.dtype.kind in "iub":
    return int(value)
  return float(value)


class Logger:
  """Writes metric records and keeps the console informed."""

  def __init__(self, logdir: str | pathlib.Path, total_steps: int = 0, console: bool = True):
    self.logdir = pathlib.Path(logdir)
    self.logdir.mkdir(parents=True, exist_ok=True)
    self._file = open(self.logdir / "metrics.jsonl", "a", buffering=1)
    self.total_steps = total_steps
    self.console = console
    self._start = time.time()
    self._start_step: int | None = None

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    record = {"step": int(step)}
    record.update({k: _scalar(v) for k, v in metrics.items()})
    self._file.write(json.dumps(record) + "\n")

  def progress(self, step: int, fields: dict[str, Any]) -> None:
    """One console line: steps, rates, latest scores and the time left."""
    if not self.console:
      return
    if self._start_step is None:
      self._start_step = step
      self._start = time.time()
    elapsed = time.time() - self._start
    rate = (step - self._start_step) / elapsed if elapsed > 0 else 0.0
    parts = [f"step {step:,}" + (f"/{self.total_steps:,}" if self.total_steps else ""),
             f"env/s {rate:.1f}"]
    for name, value in fields.items():
      if isinstance(value, float) and not math.isnan(value):
        parts.append(f"{name} {value:.4g}")
      elif value is not None and not isinstance(value, float):
        parts.append(f"{name} {value}")
    if self.total_steps and rate > 0:
      parts.append(f"left {_duration((self.total_steps - step) / rate)}")
    print(" | ".join(parts), file=sys.stderr, flush=True)

  def message(self, text: str) -> None:
    if self.console:
      print(text, file=sys.stderr, flush=True)

  def close(self) -> None:
    self._file.close()


def _duration(seconds: float) -> str:
  seconds = int(max(0, seconds))
  hours, rest = divmod(seconds, 3600)
  return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def read_metrics(path: str | pathlib.Path) -> list[dict[str, Any]]:
  """All records of a metrics.jsonl file (a partly written last line is skipped)."""
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return records
