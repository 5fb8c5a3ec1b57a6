"""Trains the tiny agent for a few updates on 1, 2 and 4 forced CPU devices and
prints, as JSON, how the results differ and where the arrays lived.

Run by tests/test_mesh.py in a subprocess: the CPU device count is fixed when
JAX starts (XLA_FLAGS), so the test process itself, with its one device,
cannot do this.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/mesh_check.py
"""
import json
import pathlib
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from wmrl import checkpoint, envs, mesh, run, testing
from wmrl.algorithms.dreamerv3 import agent

DEVICE_COUNTS = (1, 2, 4)
STEPS = 3
BATCH = 4  # the global batch: 4, 2 and 1 sequences per device

# The programs are compiled without XLA's backend optimisations, so the device
# counts differ only in how GSPMD splits the work (and so in the order of the
# sums in the means). At the default level XLA CPU fuses the program for one
# sequence per device otherwise than the one for more: even on ONE device a
# batch of 1 makes the zero-initialised reward and critic heads predict -0.168
# instead of 0, as the two-hot mean's products of up to +-4.9e8 bins no longer
# cancel exactly. The actor's Adam moments follow. Measured at 4 devices (one
# sequence each) with default optimisation: 0.29 in replay/ret, 0.66 in an Adam
# moment, 3e-7 in the parameters; 2 devices agree within 1e-6. Noise of the
# compiler's choices, not of the placement. Without the optimisations (and with
# the legacy CPU emitters, tests/test_mesh.py) the check also compiles 2-3x faster.
jax.config.update("jax_disable_most_optimizations", True)

compiles = [0]


def _count_compile(event: str, duration: float, **_) -> None:
  if event == "/jax/core/compile/backend_compile_duration":
    compiles[0] += 1


def max_abs_diff(a, b) -> float:
  return max((float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
              for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))), default=0.0)


def host(state):
  """The state's arrays as host arrays (typed keys as their key data)."""
  return jax.tree.map(lambda x: np.asarray(jax.random.key_data(x)) if jnp.issubdtype(
      x.dtype, jax.dtypes.prng_key) else np.asarray(x), state)


def replicated_on(tree, devices: set) -> bool:
  return all(x.sharding.is_fully_replicated and x.sharding.device_set == devices
             for x in jax.tree.leaves(tree))


def shard_shape(x) -> list[int]:
  """The shape of one device's part of `x` (all of it for host arrays)."""
  return list(x.sharding.shard_shape(x.shape) if isinstance(x, jax.Array) else x.shape)


def train(config, initial, batch, count: int) -> dict:
  """STEPS updates on the first `count` devices: the results and the shardings seen."""
  config = config.replace(**{"run.train_devices": tuple(range(count))})
  mesh.check(config, jax.local_device_count())
  placement = mesh.Placement.from_run(config.run)
  # A fresh copy: the placed state is donated, and may share buffers with its source.
  state = placement.state(jax.tree.map(jnp.copy, initial))
  placed = placement.batch(batch)
  metrics = []
  for step in range(STEPS):
    if step == 1:
      before = compiles[0]  # the first update compiled; the later ones must not
    state, step_metrics, updates = agent.train_step(state, placed)
    metrics.append(step_metrics)
  devices = set(jax.local_devices()[:count])
  return {
      "state": host(state), "metrics": jax.device_get(metrics),
      "identity": placement.train_mesh is None,
      "recompiles": compiles[0] - before,
      "state_replicated": replicated_on(state, devices),
      "metrics_replicated": replicated_on(metrics, devices),
      "batch_shard": shard_shape(placed["reward"]),
      "updates_shard": shard_shape(updates["latent/deter"]),
  }


def placements(config, batch) -> dict:
  """Where placements without a train step put arrays: a batch [S, B, ...] of 2
  seeds on 2 devices, policy inputs [N] on 2 policy devices, a state on device 1
  alone (a mesh of one device that is not the default)."""
  two = mesh.Placement.from_run(config.replace(**{"run.train_devices": (0, 1),
                                                  "run.policy_devices": (0, 1)}).run)
  stacked = np.stack([batch["reward"]] * 2)
  obs = np.zeros((4, 5), np.float32)
  key = two.policy_state(jax.random.key(0))
  second = mesh.Placement.from_run(config.replace(**{"run.train_devices": (1,)}).run)
  on_second = second.state({"w": np.ones(3, np.float32), "key": jax.random.key(0)})
  return {
      "seeds_shard": shard_shape(two.batch(stacked, seeds_axis=True)),
      "policy_shard": shard_shape(two.policy(obs)),
      "policy_key_replicated": replicated_on(key, set(jax.local_devices()[:2])),
      "device1": replicated_on(on_second, {jax.local_devices()[1]}),
  }


def whole_runs(logdir: pathlib.Path) -> dict:
  """Two seeds trained by `run.train` (the driver, replay, checkpoints) on train
  devices (0, 1) with the policy on device 1 of its own, and on the default
  device: how far seed 1's saved state lies from the default run's."""
  config = testing.tiny_config(**{
      "env.id": "fake_envs:make_counter", "env.num_envs": 2, "run.batch_size": BATCH,
      # Replay holds 4 x 6 windows after step 36 (2 streams of 18 steps): 3 updates by 40.
      "run.steps": 40, "run.train_ratio": 12, "run.seeds": (0, 1), "optim.warmup": 0,
      "run.console_every": 1000.0, "run.save_every_minutes": 1000.0})
  placed = config.replace(**{"run.train_devices": (0, 1), "run.policy_devices": (1,)})
  # The same, the seeds' updates one after the other (jax.lax.map) on the sharded batch.
  grouped = placed.replace(**{"run.seeds_batch": 1})
  summaries = {name: run.train(c, logdir / name, console=False)
               for name, c in (("placed", placed), ("grouped", grouped), ("default", config))}
  states = {}
  for name in summaries:
    path = checkpoint.latest(logdir / name / "seed-1")
    states[name] = checkpoint.load(path, initial_state(config))[0]
  return {"run_updates": summaries["placed"]["updates"],
          "run_state": max_abs_diff(host(states["placed"]), host(states["default"])),
          "grouped_run_state": max_abs_diff(host(states["grouped"]), host(states["default"]))}


def initial_state(config):
  with envs.from_config(config.env, seed=0) as env:
    return agent.init(jax.random.key(0), env.obs_spec, env.act_spec, config)


def main() -> None:
  jax.monitoring.register_event_duration_secs_listener(_count_compile)
  assert jax.local_device_count() >= max(DEVICE_COUNTS), "set XLA_FLAGS before running"
  config = testing.tiny_config(**{"run.batch_size": BATCH})
  obs_spec, act_spec = testing.SPACES["vector-continuous"]
  initial = agent.init(jax.random.key(0), obs_spec, act_spec, config)
  length = config.run.replay_context + config.run.batch_length
  batch = testing.random_batch(obs_spec, act_spec, BATCH, length, 0,
                               testing.entry_specs(agent.DREAMERV3, initial))
  runs = {n: train(config, initial, batch, n) for n in DEVICE_COUNTS}
  one = runs[1]
  report = placements(config, batch)
  for n, trained in runs.items():  # not `run`: the module whole_runs trains with
    report[n] = {
        "params": max_abs_diff(one["state"].params, trained["state"].params),
        "state": max_abs_diff(one["state"], trained["state"]),
        "metrics": max_abs_diff(one["metrics"], trained["metrics"]),
        **{k: v for k, v in trained.items() if k not in ("state", "metrics")},
    }
  with tempfile.TemporaryDirectory() as logdir:
    report.update(whole_runs(pathlib.Path(logdir)))
  json.dump(report, sys.stdout)


if __name__ == "__main__":
  main()
