"""Logger outputs: JSONL, TensorBoard event files, W&B (faked, no network) and videos."""
import pathlib
import struct
import sys
import types

import numpy as np
import pytest

from conftest import tiny_config
from wmrl import logging as wmrl_logging
from wmrl import run
from wmrl.logging import Console, Logger, MissingPackageError, read_metrics


def read_events(directory: pathlib.Path) -> list:
  """Every Event of the TensorBoard files in `directory`, checking the TFRecord
  framing: 8-byte length, 4-byte masked CRC of it, payload, masked CRC of it."""
  pytest.importorskip("tensorboardX")
  from tensorboardX.proto.event_pb2 import Event
  from tensorboardX.record_writer import masked_crc32c
  files = sorted(directory.glob("events.out.tfevents.*"))
  assert files, f"no event files in {directory}"
  events = []
  for path in files:
    data, offset = path.read_bytes(), 0
    while offset < len(data):
      header = data[offset:offset + 8]
      (length,) = struct.unpack("<Q", header)
      (header_crc,) = struct.unpack("<I", data[offset + 8:offset + 12])
      payload = data[offset + 12:offset + 12 + length]
      (payload_crc,) = struct.unpack("<I", data[offset + 12 + length:offset + 16 + length])
      assert header_crc == masked_crc32c(header) and payload_crc == masked_crc32c(payload)
      events.append(Event.FromString(payload))
      offset += 16 + length
  return events


def scalars(events) -> dict[str, list[tuple[int, float]]]:
  out = {}
  for event in events:
    for value in event.summary.value:
      if value.HasField("simple_value"):
        out.setdefault(value.tag, []).append((event.step, value.simple_value))
  return out


FRAMES = np.random.default_rng(0).integers(0, 256, (4, 8, 10, 3), dtype=np.uint8)


def test_tensorboard_files_hold_every_scalar_record(tmp_path):
  pytest.importorskip("tensorboardX")
  logger = Logger(tmp_path, console=False, tensorboard=True)
  logger.write(10, {"loss/rec": 1.5, "episode/score": np.float32(3.0)})
  logger.write(20, {"loss/rec": 0.5, "train/updates": 7})
  logger.close()
  found = scalars(read_events(tmp_path / "tb"))
  assert found == {"loss/rec": [(10, 1.5), (20, 0.5)], "episode/score": [(10, 3.0)],
                   "train/updates": [(20, 7.0)]}
  assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [10, 20]


def test_video_goes_to_file_and_tensorboard(tmp_path):
  pytest.importorskip("tensorboardX")
  logger = Logger(tmp_path, console=False, tensorboard=True)
  path = logger.video(30, "openloop", FRAMES)
  logger.close()
  assert path.parent == tmp_path / "videos" and path.name.startswith("openloop-30.")
  images = [(e.step, v) for e in read_events(tmp_path / "tb") for v in e.summary.value
            if v.HasField("image")]
  (step, value), = images
  assert step == 30 and value.tag == "openloop"
  assert (value.image.height, value.image.width, value.image.colorspace) == (8, 10, 3)
  assert value.image.encoded_image_string.startswith(b"GIF8")


def test_resumed_logger_tells_tensorboard_to_drop_later_steps(tmp_path):
  pytest.importorskip("tensorboardX")
  Logger(tmp_path, console=False, tensorboard=True, start_step=100).close()
  starts = [e.step for e in read_events(tmp_path / "tb") if e.HasField("session_log")]
  assert starts == [101]  # records at the checkpoint's own step stay


def test_records_carry_agent_steps_and_frames(tmp_path):
  logger = Logger(tmp_path, console=False, frames_per_step=2)
  logger.write(10, {"episode/score": 3.0})
  logger.close()
  assert read_metrics(tmp_path / "metrics.jsonl") == [
      {"step": 10, "frames": 20, "episode/score": 3.0}]


@pytest.mark.parametrize("env_id, repeat, frames", [
    ("fake_envs:make_counter", 1, 30), ("dmc:walker-walk", 2, 60),
    ("gym:ale_py:ALE/Pong-v5", 1, 120)])  # ALE v5 skips 4 frames itself
def test_run_logger_counts_frames_from_the_env_config(tmp_path, env_id, repeat, frames):
  config = tiny_config(**{"env.id": env_id, "env.action_repeat": repeat,
                          "run.tensorboard": False})
  logger = Logger.for_run(tmp_path, config, console=False)
  logger.write(30, {"loss/rec": 1.0})
  logger.close()
  assert read_metrics(tmp_path / "metrics.jsonl")[0]["frames"] == frames


def test_progress_line_shows_frames_where_they_differ_from_steps(tmp_path, capsys):
  Logger(tmp_path, total_steps=100, frames_per_step=2).progress(40, {"score(10)": 1.5})
  Logger(tmp_path / "b", total_steps=100).progress(40, {})
  first, second = capsys.readouterr().err.splitlines()
  assert first.startswith("step 40/100 | frames 80 | env/s") and "score(10) 1.5" in first
  assert "frames" not in second


def test_first_progress_line_counts_its_rate_from_the_start(capsys, monkeypatch):
  console = Console(total_steps=100)
  clock = iter([100.0, 104.0, 108.0])
  monkeypatch.setattr(wmrl_logging, "time", types.SimpleNamespace(time=lambda: next(clock)))
  console.start(10)  # at t=100
  console.progress(30, {})  # 20 steps in 4 s
  console.progress(50, {})  # 40 steps in 8 s
  first, second = capsys.readouterr().err.splitlines()
  assert "env/s 5.0" in first and "left 0m14s" in first
  assert "env/s 5.0" in second and "left 0m10s" in second


def test_time_left_follows_the_recent_rate_not_the_fast_prefill(capsys, monkeypatch):
  # 1,000 prefill steps in 10 s, then training at 0.1 steps/s. Averaged since the
  # start, the third line would say 1,024 steps in 220 s (4.7/s) and 32 minutes
  # left; over the last 120 s it is 12 steps in 120 s, and 8,976 steps take 24.9 h.
  console = Console(total_steps=10_000, rate_window=120.0)
  clock = iter([0.0, 10.0, 100.0, 220.0])
  monkeypatch.setattr(wmrl_logging, "time", types.SimpleNamespace(time=lambda: next(clock)))
  console.start(0)
  console.progress(1_000, {})
  console.progress(1_012, {})
  console.progress(1_024, {})
  first, second, third = capsys.readouterr().err.splitlines()
  assert "env/s 100.0" in first  # 1,000 steps in 10 s
  assert "env/s 10.1" in second  # 1,012 steps in 100 s: the start is still in the window
  assert "env/s 0.1" in third and "left 24h56m" in third


def test_metrics_may_not_take_the_names_of_the_axes(tmp_path):
  logger = Logger(tmp_path, console=False)
  with pytest.raises(ValueError, match="'step' or 'frames'"):
    logger.write(1, {"frames": 3})
  logger.close()
  with pytest.raises(ValueError, match="frames_per_step must be a positive int"):
    Logger(tmp_path, console=False, frames_per_step=0)


@pytest.mark.parametrize("frames", [np.zeros((4, 8, 8, 3), np.float32),
                                    np.zeros((8, 8, 3), np.uint8)], ids=["float", "no-time-axis"])
def test_bad_video_is_refused_naming_the_fix(tmp_path, frames):
  logger = Logger(tmp_path, console=False)
  with pytest.raises(ValueError, match=r"uint8 frames \[T, H, W, 3\]"):
    logger.video(0, "eval", frames)
  logger.close()


def test_missing_tensorboardx_warns_once_and_keeps_jsonl(tmp_path, monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, "tensorboardX", None)  # makes `import tensorboardX` fail
  logger = Logger(tmp_path, console=False, tensorboard=True)
  logger.write(1, {"loss/rec": 1.0})
  logger.write(2, {"loss/rec": 2.0})
  logger.video(2, "eval", FRAMES)
  logger.close()
  err = capsys.readouterr().err
  assert err.count("pip install tensorboardX") == 1 and "warning" in err
  assert [r["loss/rec"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1.0, 2.0]
  assert not (tmp_path / "tb").exists()
  assert list((tmp_path / "videos").iterdir())


class FakeWandB:
  """Records what a Logger asks of wandb."""

  def __init__(self):
    self.inits, self.logs, self.finished = [], [], 0
    self.module = types.ModuleType("wandb")
    self.module.init = self.init
    self.module.Video = lambda path, **kwargs: ("Video", path)

  def init(self, **kwargs):
    self.inits.append(kwargs)
    return types.SimpleNamespace(log=lambda data, step: self.logs.append((step, data)),
                                 finish=self.finish)

  def finish(self):
    self.finished += 1


def test_wandb_gets_scalars_and_videos(tmp_path, monkeypatch):
  fake = FakeWandB()
  monkeypatch.setitem(sys.modules, "wandb", fake.module)
  config = tiny_config(**{"run.wandb": True, "run.wandb_project": "proj", "run.tensorboard": False})
  logger = Logger.for_run(tmp_path / "run", config, console=False)
  logger.write(5, {"loss/rec": 1.5})
  path = logger.video(5, "eval", FRAMES)
  logger.close()
  (init,) = fake.inits
  assert init["project"] == "proj" and init["name"] == "run" and init["resume"] == "allow"
  assert init["config"]["run"]["wandb_project"] == "proj"
  assert fake.logs == [(5, {"loss/rec": 1.5}), (5, {"eval": ("Video", str(path))})]
  assert fake.finished == 1
  # A resumed run continues the same W&B run.
  Logger.for_run(tmp_path / "run", config, console=False).close()
  assert fake.inits[1]["id"] == init["id"]


def test_missing_wandb_is_an_error_before_the_run_starts(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)
  with pytest.raises(MissingPackageError, match="pip install wandb"):
    Logger(tmp_path / "a", console=False, wandb_project="proj")
  config = tiny_config(**{"env.id": "fake_envs:make_counter", "run.wandb": True})
  with pytest.raises(ValueError, match="pip install wandb"):
    run.train(config, tmp_path / "run", console=False)
  assert not (tmp_path / "run").exists()
