"""Several processes through jax.distributed (wmrl/distributed.py): two local
processes on loopback, one CPU device each, train one agent and resume it."""
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import load_saved, tiny_config
from wmrl import checkpoint, distributed, mesh, testing
from wmrl.config import DistributedConfig

TESTS = pathlib.Path(__file__).parent
ROOT = TESTS.parent


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env() -> dict:
  env = dict(os.environ)
  # One CPU device per process: forced host devices do not combine with
  # jax.distributed on CPU (openxla/xla#16430).
  env.pop("XLA_FLAGS", None)
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), str(ROOT), env.get("PYTHONPATH"))
                                      if p)
  return env


def _command(logdir, port: int, steps: int, *extra: str) -> list[str]:
  command = [sys.executable, "-m", "wmrl.cli", "train", "--env", "fake_envs:make_counter",
             "--logdir", str(logdir), "--steps", str(steps), "--quiet", *testing.tiny_flags()]
  overrides = {"run.train_ratio": 12, "optim.warmup": 0, "run.log_every": 20,
               "run.distributed.coordinator": f"127.0.0.1:{port}",
               "run.distributed.num_processes": 2, "run.distributed.timeout": 120}
  for key, value in overrides.items():
    command += [f"--{key}", str(value)]
  return command + list(extra)


def _start(logdir, port, steps, *extra, cwd) -> list[subprocess.Popen]:
  return [subprocess.Popen(_command(logdir, port, steps, *extra,
                                    "--run.distributed.process_id", str(i)),
                           env=_env(), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
          for i in range(2)]


def _finish(processes, timeout=240) -> list[str]:
  outputs = []
  for p in processes:
    out, _ = p.communicate(timeout=timeout)
    outputs.append(out)
  for p, out in zip(processes, outputs):
    assert p.returncode == 0, out[-3000:]
  return outputs


def _saved(folder):
  """(params by tree path, counters, replay steps added, stream 0's actions) of
  the newest checkpoint in `folder` (`conftest.load_saved`)."""
  state, replay, saved_run, _ = load_saved(folder)
  params = {name: value for name, value in state.items() if name.startswith("state/params/")}
  return params, saved_run["counters"], replay.steps_added, replay.streams()["action"][0]


def _checksum(params: dict) -> float:
  return float(sum(np.abs(np.asarray(x, np.float64)).sum() for x in params.values()))


def _assert_same_params(first: dict, second: dict) -> None:
  """One agent, replicated: identical parameters in both processes."""
  assert first.keys() == second.keys() and first
  for name in first:
    np.testing.assert_array_equal(first[name], second[name], err_msg=name)


@pytest.mark.slow
def test_two_processes_train_one_agent_and_resume_after_kill(tmp_path):
  logdir = tmp_path / "run"
  # A first run killed (SIGKILL, both) once both processes hold two checkpoints.
  processes = _start(logdir, free_port(), 100_000, "--run.save_every", "20", cwd=tmp_path)
  try:
    deadline = time.time() + 240
    while time.time() < deadline and min(len(checkpoint.list_checkpoints(d)) for d in
                                         (logdir, logdir / "process-1")) < 2:
      assert all(p.poll() is None for p in processes), processes[0].communicate()[0][-3000:]
      time.sleep(0.5)
  finally:
    for p in processes:
      p.send_signal(signal.SIGKILL)
    for p in processes:
      p.communicate()
  common = sorted(set(checkpoint.steps(logdir)) & set(checkpoint.steps(logdir / "process-1")))
  assert common, (checkpoint.steps(logdir), checkpoint.steps(logdir / "process-1"))
  resumed_from = common[-1]
  # The same command, with an end in sight: both continue from the same step.
  outputs = _finish(_start(logdir, free_port(), resumed_from + 20, "--run.save_every", "20",
                           cwd=tmp_path))
  first, second = _saved(logdir), _saved(logdir / "process-1")
  print("checksums", _checksum(first[0]), _checksum(second[0]), "counters", first[1], second[1])
  _assert_same_params(first[0], second[0])
  assert first[1]["env_steps"] == second[1]["env_steps"] == resumed_from + 20
  assert first[1]["updates"] == second[1]["updates"] >= 20
  # Each process's replay: every step it collected before the checkpoint, plus the new ones.
  assert first[2] == second[2] == resumed_from + 20
  assert "resuming" not in outputs[1]  # process 1 is silent; process 0 logs (--quiet here)
  # Process 0 alone writes the run's logs and metadata.
  assert (logdir / "metrics.jsonl").exists() and (logdir / "config.json").exists()
  assert not (logdir / "process-1" / "metrics.jsonl").exists()
  assert not (logdir / "process-1" / "config.json").exists()


@pytest.mark.slow
def test_a_signal_to_one_process_stops_both_at_a_common_checkpointed_step(tmp_path):
  # A scheduler's SIGTERM to process 1 alone, once both train: each process
  # learns of it at the next agreement, so both save the same step and exit as
  # stopped by SIGTERM; the same command continues from that step.
  logdir = tmp_path / "run"
  processes = _start(logdir, free_port(), 100_000, cwd=tmp_path)
  try:
    metrics = logdir / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and "loss/" not in (metrics.read_text() if metrics.exists()
                                                     else ""):
      assert all(p.poll() is None for p in processes), processes[0].communicate()[0][-3000:]
      time.sleep(0.5)
    processes[1].send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=120)[0] for p in processes]
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
  for p, out in zip(processes, outputs):
    assert p.returncode == 128 + signal.SIGTERM, out[-3000:]
  stopped = checkpoint.steps(logdir)[-1]
  assert checkpoint.steps(logdir / "process-1")[-1] == stopped > 0
  _finish(_start(logdir, free_port(), stopped + 20, cwd=tmp_path))
  first, second = _saved(logdir), _saved(logdir / "process-1")
  assert first[1]["env_steps"] == second[1]["env_steps"] == stopped + 20
  _assert_same_params(first[0], second[0])


@pytest.mark.slow
def test_two_processes_train_identical_parameters(tmp_path):
  """40 steps (52 updates), one checkpoint each; about 75 s on 2 busy cores.
  (The default suite's smoke test of two processes is the config check's.)"""
  logdir = tmp_path / "run"
  _finish(_start(logdir, free_port(), 40, cwd=tmp_path))
  first, second = _saved(logdir), _saved(logdir / "process-1")
  print("checksums", _checksum(first[0]), _checksum(second[0]))
  _assert_same_params(first[0], second[0])
  assert first[1]["updates"] == second[1]["updates"] >= 20
  assert first[2] == second[2] == 40
  # Each process its own seeds: other random prefill actions in its replay.
  assert first[3].shape == second[3].shape and not np.array_equal(first[3], second[3])
  assert (logdir / "metrics.jsonl").exists()


def test_unreachable_coordinator_fails_naming_the_address(tmp_path):
  port = free_port()  # bound and closed again: nobody listens there
  command = _command(tmp_path / "run", port, 40, "--run.distributed.process_id", "1",
                     "--run.distributed.timeout", "2")
  started = time.time()
  done = subprocess.run(command, env=_env(), cwd=tmp_path, capture_output=True, text=True,
                        timeout=120)
  assert done.returncode == 2, done.stderr[-3000:]
  assert f"no coordinator answers at 127.0.0.1:{port} after 2 s" in done.stderr
  assert time.time() - started < 60


def test_settings_that_cannot_start_are_refused():
  with pytest.raises(ValueError, match="process_id=2 is not one of the 2"):
    distributed.check(DistributedConfig("h:1", 2, 2))
  with pytest.raises(ValueError, match="needs run.distributed.coordinator"):
    distributed.check(DistributedConfig("", 2, 0))
  with pytest.raises(ValueError, match="is not HOST:PORT"):
    distributed.check(DistributedConfig("nohost", 2, 0))
  assert not distributed.enabled(DistributedConfig())
  # The batch is global: 3 sequences do not split over 2 processes of one device each.
  with pytest.raises(ValueError, match="of the 2 processes"):
    mesh.check(tiny_config(**{"run.batch_size": 3}), 1, 2)


def test_flags_set_the_distributed_config():
  from wmrl import cli
  _, config = cli.parse_train_args(["--logdir", "x", "--run.distributed.coordinator", "h:7",
                                    "--run.distributed.num_processes", "4",
                                    "--run.distributed.process_id", "3"])
  assert config.run.distributed == DistributedConfig("h:7", 4, 3)


def test_processes_with_different_configs_are_refused(tmp_path):
  port = free_port()
  processes = [subprocess.Popen(_command(tmp_path / "run", port, 40, "--run.distributed.process_id",
                                         str(i), "--run.train_ratio", str(12 + i)),
                                env=_env(), cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for i in range(2)]
  for p in processes:
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 2, out[-3000:]
    assert "different configs" in out and "run.train_ratio: 12.0 vs 13.0" in out, out[-3000:]
