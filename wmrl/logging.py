"""Metrics to JSONL, TensorBoard, Weights & Biases and a live console line; videos.

Every record is one JSON object per line in ``LOGDIR/metrics.jsonl`` with
``step`` (agent steps: the steps the agent acts, after action repeat),
``frames`` (environment frames: steps x action repeat x the emulator's own
frame skip, the axis of the published curves; `wmrl.suites.frames_per_step`)
and metric names such as ``episode/score``, ``loss/rec`` or ``fps/env``. The
same metrics go, as scalars named by those names at the agent step, to
TensorBoard event files in ``LOGDIR/tb`` (with tensorboardX) and to Weights &
Biases when asked for. Videos land in ``LOGDIR/videos`` and in both.

The JSONL file is the record of a run: the other outputs are optional
extras, imported only when switched on, so a missing one never stops a run
(except W&B, which the user asked for by name).
"""
from __future__ import annotations

import collections
import json
import math
import os
import pathlib
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from wmrl import suites, video

if TYPE_CHECKING:
  from wmrl.config import Config


class MissingPackageError(ImportError, ValueError):
  """An output the config switched on needs a package that is not installed.

  Also a ValueError, so `wmrl train` reports it as a bad setting.
  """


def _scalar(value) -> float | int:
  value = np.asarray(value)
  if value.dtype.kind in "iub":
    return int(value)
  return float(value)


class Console:
  """The console lines of a run: progress (steps, and frames where they differ,
  rates, latest scores, the time left) and messages; silent when not `enabled`.

  The rate and the time left count over the last `rate_window` seconds, not
  since the start: a run's prefill steps the environments many times faster
  than training does, and a rate averaged over both promised a 10,000-step
  run's end in 42 minutes when it had five hours to go.
  """

  def __init__(self, total_steps: int = 0, frames_per_step: int = 1, enabled: bool = True,
               rate_window: float = 120.0):
    self.total_steps = total_steps
    self.frames_per_step = frames_per_step
    self.enabled = enabled
    self.rate_window = rate_window
    self._points: collections.deque[tuple[float, int]] = collections.deque()

  def start(self, step: int) -> None:
    """Rates count from `step`, now: the run loop's start, so that the first line
    has one (without it they count from the first line)."""
    self._points = collections.deque([(time.time(), step)])

  def _rate(self, step: int) -> float:
    """Steps per second since the newest point at least `rate_window` old (or the
    oldest there is), and the point (now, step) kept for later lines."""
    now = time.time()
    while len(self._points) > 1 and self._points[1][0] <= now - self.rate_window:
      self._points.popleft()
    then, step_then = self._points[0]
    self._points.append((now, step))
    return (step - step_then) / (now - then) if now > then else 0.0

  def progress(self, step: int, fields: dict[str, Any]) -> None:
    """One console line: steps (and frames, where they differ), rates, latest scores and
    the time left."""
    if not self.enabled:
      return
    if not self._points:
      self.start(step)
    rate = self._rate(step)
    parts = [f"step {step:,}" + (f"/{self.total_steps:,}" if self.total_steps else "")]
    if self.frames_per_step != 1:
      # The published curves count frames: a score read off this line compares there.
      parts.append(f"frames {step * self.frames_per_step:,}")
    parts.append(f"env/s {rate:.1f}")
    for name, value in fields.items():
      if isinstance(value, float) and not math.isnan(value):
        parts.append(f"{name} {value:.4g}")
      elif value is not None and not isinstance(value, float):
        parts.append(f"{name} {value}")
    if self.total_steps and rate > 0:
      parts.append(f"left {_duration((self.total_steps - step) / rate)}")
    print(" | ".join(parts), file=sys.stderr, flush=True)

  def message(self, text: str) -> None:
    if self.enabled:
      print(text, file=sys.stderr, flush=True)


class Logger:
  """Writes metric records and videos, and keeps the console informed.

  `tensorboard` writes event files to LOGDIR/tb; `wandb_project` logs to that
  Weights & Biases project, with `config` as the run's config. `start_step`
  is where a resumed run continues: what an earlier, interrupted process
  logged after it is dropped from metrics.jsonl and hidden in TensorBoard,
  so both read as one uninterrupted run. `frames_per_step` turns a record's
  agent step into its `frames`.
  """

  def __init__(self, logdir: str | pathlib.Path, total_steps: int = 0, console: bool = True,
               tensorboard: bool = False, wandb_project: str | None = None,
               config: dict | None = None, start_step: int = 0, frames_per_step: int = 1):
    if isinstance(frames_per_step, bool) or not isinstance(frames_per_step, int) or frames_per_step < 1:
      raise ValueError(f"frames_per_step must be a positive int, got {frames_per_step!r}")
    self.logdir = pathlib.Path(logdir)
    self.logdir.mkdir(parents=True, exist_ok=True)
    self.frames_per_step = frames_per_step
    self.console = Console(total_steps, frames_per_step, enabled=console)
    # W&B first: it may raise, and then no file handle is left open.
    self._sinks: list[Any] = []
    if wandb_project:
      self._sinks.append(_WandB(require_wandb(), self.logdir, wandb_project, config))
    if tensorboard:
      tensorboard_sink = _TensorBoard.create(self.logdir / "tb", start_step)
      if tensorboard_sink is None:
        _warn("run.tensorboard is on but tensorboardX is not installed, so metrics go to "
              "metrics.jsonl only; install it with `pip install tensorboardX` (or "
              "`pip install 'wmrl[log]'`), or set run.tensorboard=false to silence this")
      else:
        self._sinks.append(tensorboard_sink)
    if start_step:
      _truncate_records(self.logdir / "metrics.jsonl", start_step)
    self._file = open(self.logdir / "metrics.jsonl", "a", buffering=1)

  @classmethod
  def for_run(cls, logdir: str | pathlib.Path, config: "Config", console: bool = True,
              start_step: int = 0) -> "Logger":
    """The logger that `config.run` asks for."""
    r = config.run
    return cls(logdir, total_steps=r.steps, console=console, tensorboard=r.tensorboard,
               wandb_project=r.wandb_project if r.wandb else None, config=config.to_dict(),
               start_step=start_step, frames_per_step=suites.frames_per_step(config.env))

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    """One record: the metrics at agent step `step` and at its environment frames."""
    values = {k: _scalar(v) for k, v in metrics.items()}
    if "step" in values or "frames" in values:
      raise ValueError("metrics named 'step' or 'frames' would hide the record's own axes; "
                       "rename them")
    record = {"step": int(step), "frames": int(step) * self.frames_per_step, **values}
    self._file.write(json.dumps(record) + "\n")
    for sink in self._sinks:
      sink.scalars(int(step), values)

  def video(self, step: int, name: str, frames: np.ndarray, fps: int = 20) -> pathlib.Path:
    """Writes uint8 frames [T, H, W, 3] to LOGDIR/videos/<name>-<step>.mp4 (with
    imageio-ffmpeg; else .gif) and to TensorBoard and W&B; returns the file."""
    frames = video.check_frames(name, frames)
    path = self.logdir / "videos" / f"{name}-{int(step)}{video.default_suffix()}"
    video.write_video(path, [frames], fps)
    for sink in self._sinks:
      sink.video(int(step), name, frames, path, fps)
    return path

  def progress(self, step: int, fields: dict[str, Any]) -> None:
    self.console.progress(step, fields)

  def message(self, text: str) -> None:
    self.console.message(text)

  def close(self) -> None:
    self._file.close()
    for sink in self._sinks:
      sink.close()
    self._sinks = []


def _warn(text: str) -> None:
  # Printed even with console=False: --quiet silences progress, not problems.
  print(f"wmrl: warning: {text}", file=sys.stderr, flush=True)


def _truncate_records(path: pathlib.Path, last_step: int) -> None:
  """Drops records written after `last_step`, where a resumed run continues."""
  if not path.exists():
    return
  kept = [line for line in path.read_text().splitlines(keepends=True)
          if _record_step(line) is not None and _record_step(line) <= last_step]
  tmp = path.with_suffix(".tmp")
  tmp.write_text("".join(kept))
  os.replace(tmp, path)


def _record_step(line: str) -> int | None:
  try:
    return int(json.loads(line)["step"])
  except (ValueError, KeyError, TypeError):
    return None


class _TensorBoard:
  """Scalars and videos as TensorBoard event files, written with tensorboardX."""

  def __init__(self, directory: pathlib.Path, start_step: int, tbx):
    self._summary = tbx.proto.summary_pb2.Summary
    # Flushed every 30 s, so TensorBoard follows a long run closely. A purge
    # step makes TensorBoard drop the events an earlier process wrote from
    # there on.
    self._writer = tbx.SummaryWriter(str(directory), flush_secs=30,
                                     purge_step=int(start_step) + 1 if start_step else None)

  @classmethod
  def create(cls, directory: pathlib.Path, start_step: int) -> "_TensorBoard | None":
    """The writer, or None where tensorboardX is not installed."""
    try:
      import tensorboardX
      import tensorboardX.proto.summary_pb2  # noqa: F401  (makes tensorboardX.proto.* reachable)
    except ImportError:
      return None
    return cls(directory, start_step, tensorboardX)

  def scalars(self, step: int, values: dict[str, float | int]) -> None:
    # One event per record: a summary holds many values.
    summary = self._summary(value=[self._summary.Value(tag=k, simple_value=float(v))
                                   for k, v in values.items()])
    self._writer.file_writer.add_summary(summary, step)

  def video(self, step: int, name: str, frames: np.ndarray, path: pathlib.Path, fps: int) -> None:
    # TensorBoard plays animated GIFs in its image tab (what tensorboardX's
    # add_video makes, there with moviepy); reuse the file when it is one.
    gif = path.read_bytes() if path.suffix == ".gif" else video.gif_bytes(frames, fps)
    _, height, width, channels = frames.shape
    image = self._summary.Image(height=height, width=width, colorspace=channels,
                                encoded_image_string=gif)
    summary = self._summary(value=[self._summary.Value(tag=name, image=image)])
    self._writer.file_writer.add_summary(summary, step)

  def close(self) -> None:
    self._writer.close()


def require_wandb():
  """The wandb module, or a clear error: a run that asks for W&B must not
  quietly go without it."""
  try:
    import wandb
  except ImportError:
    raise MissingPackageError(
        "run.wandb=true needs the wandb package: pip install wandb (then `wandb login`, or set "
        "WANDB_MODE=offline); or set run.wandb=false") from None
  return wandb


class _WandB:
  """Scalars and videos to one Weights & Biases run per logdir."""

  def __init__(self, wandb, logdir: pathlib.Path, project: str, config: dict | None):
    self._wandb = wandb
    # resume="allow" with an id kept in the logdir: a resumed run continues
    # the same W&B run instead of starting a new one.
    self._run = wandb.init(project=project, name=logdir.name, dir=str(logdir), config=config,
                           id=_wandb_id(logdir), resume="allow")

  def scalars(self, step: int, values: dict[str, float | int]) -> None:
    self._run.log(values, step=step)

  def video(self, step: int, name: str, frames: np.ndarray, path: pathlib.Path, fps: int) -> None:
    self._run.log({name: self._wandb.Video(str(path))}, step=step)

  def close(self) -> None:
    self._run.finish()


def _wandb_id(logdir: pathlib.Path) -> str:
  path = logdir / "wandb-id"
  if not path.exists():
    path.write_text(uuid.uuid4().hex[:16])
  return path.read_text().strip()


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


class Silent:
  """A `Logger` that writes nothing: the processes of a distributed run but
  process 0, which alone writes the run's logs and videos."""

  def __init__(self):
    self.console = Console(enabled=False)

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    pass

  def video(self, step: int, name: str, frames: np.ndarray, fps: int = 20) -> None:
    pass

  def progress(self, step: int, fields: dict[str, Any]) -> None:
    pass

  def message(self, text: str) -> None:
    pass

  def close(self) -> None:
    pass
