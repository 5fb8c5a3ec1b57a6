"""Data parallelism over local devices (wmrl/mesh.py): the same updates on 1, 2
and 4 devices, arrays where they belong, and device settings that cannot work
refused before a run starts."""
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import tiny_config
from wmrl import checks, mesh
from wmrl.config import Config, RunConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def multi_device():
  """tests/mesh_check.py's report: JAX fixes the CPU device count when it starts,
  so 4 forced CPU devices need a process of their own."""
  env = dict(os.environ)
  # The legacy CPU emitters compile the three train steps in about half the time.
  flags = "--xla_force_host_platform_device_count=4 --xla_cpu_use_fusion_emitters=false"
  env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
  env["JAX_PLATFORMS"] = "cpu"  # forced host devices, even where an accelerator exists
  env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
  done = subprocess.run([sys.executable, str(ROOT / "tests" / "mesh_check.py")], env=env,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout)


def test_updates_on_2_and_4_devices_match_one(multi_device):
  one = multi_device["1"]
  assert one["identity"] and one["params"] == 0.0  # the default moved nothing
  for n in ("2", "4"):
    got = multi_device[n]
    # After 3 updates, measured: parameters differ by 3.4e-13 at most, the rest
    # of the state (Adam moments) by 1.3e-6, the metrics (wm/post_entropy) by
    # 3.3e-6. The cause: the gradient mean and the batch means sum in another
    # order when each device sums its part and the all-reduce adds the parts.
    # (mesh_check.py says why the XLA backend optimisations are off.)
    assert got["params"] < 1e-11, (n, got["params"])
    assert got["state"] < 1e-5, (n, got["state"])
    assert got["metrics"] < 1e-5, (n, got["metrics"])
    assert got["recompiles"] == 0, n  # the new state keeps the placement it came in with


def test_state_stays_replicated_and_batch_is_split(multi_device):
  for n, per_device in (("2", 2), ("4", 1)):
    got = multi_device[n]
    assert not got["identity"]
    assert got["state_replicated"] and got["metrics_replicated"], n
    assert got["batch_shard"] == [per_device, 7], n  # of [4, replay_context + 6]
    assert got["updates_shard"] == [per_device, 6, 32], n  # posteriors [B, T, deter]


def test_seeds_policy_and_one_other_device(multi_device):
  assert multi_device["seeds_shard"] == [2, 2, 7]  # [S, B, L]: every seed, half the batch
  assert multi_device["policy_shard"] == [2, 5]  # 4 environments on 2 policy devices
  assert multi_device["policy_key_replicated"]
  assert multi_device["device1"]  # train_devices (1,): state and key on device 1


def test_a_run_of_two_seeds_on_two_train_devices_and_a_policy_device_of_its_own(multi_device):
  # run.train with the batch split over devices 0 and 1 and the policy acting on
  # device 1 with its own copy of the state, against the same run on the default
  # device: seed 1's saved state after its first 2 updates. Measured: 1.1e-6 at most.
  # Also with run.seeds_batch 1, the seeds' updates one after the other: 1.1e-6 too.
  assert multi_device["run_updates"] >= 1
  assert multi_device["run_state"] < 1e-5, multi_device["run_state"]
  assert multi_device["grouped_run_state"] < 1e-5, multi_device["grouped_run_state"]


def test_default_placement_moves_nothing():
  placement = mesh.Placement.from_run(RunConfig())
  assert placement.train_mesh is None and placement.policy_mesh is None
  assert placement.data_size == 1
  tree = {"w": np.ones(3), "key": jax.random.key(0)}
  for place in (placement.state, placement.batch, placement.policy, placement.policy_state):
    assert place(tree) is tree


def test_device_flags_parse_as_the_reference_writes_them():
  config = Config().replace(**{"run.train_devices": "0,1,2,3", "run.policy_devices": "1",
                               "run.train_mesh": "4,1,1"})
  assert config.run.train_devices == (0, 1, 2, 3) and config.run.policy_devices == (1,)
  assert mesh.parse_mesh("-1,1,1", 4) == (4, 1, 1)
  assert mesh.parse_mesh("2,-1,1", 4) == (2, 2, 1)
  assert mesh.parse_mesh(config.run.train_mesh, 4) == (4, 1, 1)


BAD = [
    ({"run.train_devices": (0, 4)}, "names device 4, but this process has 4 local devices"),
    ({"run.policy_devices": (-1,)}, "names device -1"),
    ({"run.train_devices": (0, 1, 1)}, "repeats device 1"),
    ({"run.train_devices": ()}, "run.train_devices is empty"),
    ({"run.train_devices": (0, 1, 2), "run.batch_size": 16},
     "batch_size=16 does not split over the 3 train devices: it is the global batch"),
    ({"run.train_mesh": "-1,1"}, "three axis sizes"),
    ({"run.train_mesh": "a,1,1"}, "does not parse"),
    ({"run.train_mesh": "-1,-1,1"}, "more than one -1"),
    ({"run.train_mesh": "0,1,1"}, "each positive or -1"),
    ({"run.train_devices": (0, 1), "run.train_mesh": "4,1,1"},
     "has 4 devices, but run.train_devices names 2"),
    ({"run.train_devices": (0, 1, 2), "run.train_mesh": "-1,2,1"}, "do not divide into axes of 2"),
    ({"run.train_devices": (0, 1), "run.train_mesh": "1,2,1"},
     "fsdp=2, tensor=1: only data parallelism is supported"),
    ({"run.train_devices": (0, 1, 2, 3), "run.train_mesh": "2,1,2"}, "fsdp=1, tensor=2"),
    ({"run.policy_devices": (0, 1, 2), "env.num_envs": 4},
     "num_envs=4 does not split over the 3 policy devices"),
]


@pytest.mark.parametrize("overrides, message", BAD)
def test_check_refuses_devices_that_cannot_work(overrides, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    mesh.check(tiny_config(**overrides), local_devices=4)


def test_check_passes_good_devices():
  mesh.check(tiny_config(**{"run.train_devices": (0, 1, 2, 3), "run.batch_size": 8,
                            "run.policy_devices": (3,)}), local_devices=4)
  mesh.check(tiny_config(), local_devices=1)


def test_validate_refuses_a_device_this_process_lacks(tmp_path):
  count = jax.local_device_count()
  config = tiny_config(**{"run.train_devices": tuple(range(count + 1))})
  with pytest.raises(ValueError, match=f"names device {count}, but this process has {count} "
                                       "local device"):
    checks.validate(config, tmp_path)
  checks.validate(tiny_config(), tmp_path)  # the default passes


def test_placement_refuses_what_check_refuses():
  with pytest.raises(ValueError, match="only data parallelism is supported"):
    two = jax.local_devices() * 2  # refused before any mesh is built of them
    mesh.Placement.from_run(RunConfig(train_devices=(0, 1), train_mesh="1,1,2"), two)
  with pytest.raises(ValueError, match=f"has {jax.local_device_count()} local device"):
    mesh.Placement.from_run(RunConfig(train_devices=tuple(range(jax.local_device_count() + 1))))
