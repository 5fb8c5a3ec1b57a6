"""The fused driver (wmrl/drivers/fused.py) and the device replay
(wmrl/device_replay.py): the same run as the host driver (both draw from
wmrl/draws.py), exact resume, the iteration's schedule, and what they refuse."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_saved, tiny_config
from wmrl import algorithms, envs, jaxenvs, run
from wmrl.device_replay import DeviceReplay
from wmrl.drivers import SeedStart
from wmrl.drivers.fused import FusedDriver, steps_per_iteration
from wmrl.drivers.host import HostDriver
from wmrl.logging import read_metrics
from wmrl.replay import Replay
from wmrl.trees import tree_arrays

CARTPOLE = "gymnax:CartPole-v1"


def _config(**overrides):
  return tiny_config(**{"env.id": CARTPOLE, "run.train_ratio": 4, "optim.warmup": 0,
                        "run.log_every": 50, "run.console_every": 1000.0,
                        "run.save_every_minutes": 1000.0, **overrides})


def _drivers(config):
  """A host and a fused driver of seed 0 on `config`, from the same initial state.
  No draws are injected: both drivers draw from wmrl/draws.py by the seed."""
  algo = algorithms.get(config.algorithm)
  host_env = envs.from_config(config.env, seed=0)
  init = lambda: algo.init(jax.random.key(0), host_env.obs_spec, host_env.act_spec, config)
  host = HostDriver.single(algo, config.run, host_env, init(), selection=config.replay)
  fused = FusedDriver.single(algo, config.run, jaxenvs.from_config(config.env), init(), seed=0,
                             selection=config.replay)
  return host, fused


def _run(driver, steps):
  episodes = []
  while driver.counters.env_steps < steps:
    driver.iterate(lambda index, m: episodes.append(m), lambda m: None)
  return episodes


def _host_replay(fused: FusedDriver, index: int = 0) -> Replay:
  """Seed `index`'s device replay in the host replay's format."""
  return fused.replay.to_host(fused.replay_state(index))


def test_fused_and_host_drivers_make_the_same_run_on_gymnax_cartpole():
  # Train ratio 3 on 2 x 6 windows: an update every 4 steps, so each fused
  # iteration is 4 steps and one update, and with a prefill of 24 random steps
  # (replay holds its 2 x 6 windows from step 18; the first update at step 24,
  # an iteration's end) the host driver's updates fall on the same steps.
  # Both draw from wmrl/draws.py: no draws are injected into the host driver (it
  # once needed KeyedDraws for this; now the two drivers draw alike).
  # Measured over 2,000 steps (495 updates): actions, flags, rewards, episodes and
  # counters identical; observations within 4.1e-6, latents 2.4e-7, parameters and
  # Adam moments 1.8e-6. Not bit-exact because XLA compiles the same arithmetic
  # into one larger program: the policy's latents differ in the last bit from
  # the first step, and CartPole's physics from step 12 (alone under lax.scan the
  # environment is bit-exact with its separate jitted step), well before any update.
  # Windows by the online queue and all three selectors (the default takes the queue
  # and uniform draws only, a part of this): the steps' priorities, written back from
  # the world model's losses, agree as the latents do.
  config = _config(**{"run.train_ratio": 3, "run.prefill": 24,
                      "replay.fracs.uniform": 0.4, "replay.fracs.priority": 0.3,
                      "replay.fracs.recency": 0.3})
  host, fused = _drivers(config)
  assert fused.steps == 4 and host.schedule.updates_per_vector_step == 0.25
  assert host.schedule == fused.schedule
  host_episodes, fused_episodes = _run(host, 2000), _run(fused, 2000)
  assert host.counters == fused.counters
  assert host.counters.updates == 495 and host.episodes == fused.episodes and host.episodes[0] > 20
  assert host_episodes == fused_episodes
  host_steps, fused_steps = host.replays[0].streams(), _host_replay(fused).streams()
  assert host_steps.keys() == fused_steps.keys()
  for key in ("action", "reward", "is_first", "is_last", "is_terminal", "latent/stoch"):
    np.testing.assert_array_equal(host_steps[key], fused_steps[key], err_msg=key)
  np.testing.assert_allclose(host_steps["obs"], fused_steps["obs"], rtol=0, atol=5e-5)
  np.testing.assert_allclose(host_steps["latent/deter"], fused_steps["latent/deter"], atol=5e-6)
  priorities = host_steps["priority"]
  assert host.counters.online_taken > 0 and (priorities == 0).any() and np.isfinite(priorities).any()
  np.testing.assert_array_equal(np.isinf(priorities), np.isinf(fused_steps["priority"]))
  np.testing.assert_allclose(priorities, fused_steps["priority"], rtol=1e-4, atol=1e-5)
  a, b = tree_arrays(host.state, "state"), tree_arrays(fused.fused.agent, "state")
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=2e-5, err_msg=name)


def _seeded(config, seeds):
  """A fused driver of `seeds`: stacked on a seeds axis, or alone for one seed."""
  algo = algorithms.get(config.algorithm)
  env = jaxenvs.from_config(config.env)
  host_env = envs.from_config(config.env, seed=0)
  states = [algo.init(jax.random.key(seed), host_env.obs_spec, host_env.act_spec, config)
            for seed in seeds]
  if len(seeds) == 1:
    return FusedDriver.single(algo, config.run, env, states[0], seeds[0])
  return FusedDriver(algo, config.run, env, [SeedStart(seed, env, state)
                                             for seed, state in zip(seeds, states)],
                     seeds_axis=True)


@pytest.mark.parametrize("seeds_batch", [0, 1], ids=["vmapped-together", "one-after-another"])
def test_seeds_on_an_axis_run_as_each_seed_alone(seeds_batch):
  # Two seeds in one program against the second seed's own fused run (index 1 of
  # every stacked array): the same episodes and replay flags; parameters within
  # float noise (vmap batches the same arithmetic differently, as fusing does,
  # tested above). Both vmapped at once, and with run.seeds_batch 1 one after the
  # other (jax.lax.map), each seed still with its own key root and state.
  config = _config(**{"run.train_ratio": 3, "run.prefill": 24})
  both = _seeded(config.replace(**{"run.seeds_batch": seeds_batch}), (0, 1))
  both_episodes = {0: [], 1: []}
  metrics = []
  while both.counters.env_steps < 300:
    both.iterate(lambda index, m: both_episodes[index].append(m), metrics.append)
  assert metrics and all(np.shape(v) == (2,) for v in metrics[0].values())
  assert both.counters.updates == 70  # the seeds share the schedule
  alone = _seeded(config, (1,))
  episodes = _run(alone, 300)
  assert alone.counters == both.counters and alone.episodes[0] == both.episodes[1]
  assert episodes == both_episodes[1] and len(episodes) > 5
  mine, theirs = _host_replay(alone).streams(), _host_replay(both, 1).streams()
  for key in ("action", "reward", "is_first", "is_last", "is_terminal"):
    np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)
  a, b = tree_arrays(alone.fused.agent, "state"), tree_arrays(both.agent_state(1), "state")
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=2e-5, err_msg=name)
  # The two seeds made different runs: their own draws and initial states.
  assert both_episodes[0] != both_episodes[1]


def test_a_fused_run_of_seeds_writes_each_seed_and_resumes_exactly(tmp_path):
  seeds = {"run.seeds": (3, 4)}
  straight = run.train(_config(**{"run.steps": 150, **seeds}), tmp_path / "straight",
                       console=False)
  run.train(_config(**{"run.steps": 75, **seeds}), tmp_path / "resumed", console=False)
  run.train(_config(**{"run.steps": 150, **seeds}), tmp_path / "resumed", console=False)
  assert sorted(straight["seeds"]) == [3, 4]
  for seed in (3, 4):
    a, b = (_saved(tmp_path / name / f"seed-{seed}") for name in ("straight", "resumed"))
    assert a[2]["counters"] == b[2]["counters"] and a[2]["counters"]["env_steps"] == 150
    assert a[2]["config"]["run"]["seed"] == seed
    for saved_a, saved_b in zip((a[0], a[1], a[3]), (b[0], b[1], b[3])):  # state, replay, pending
      assert saved_a.keys() == saved_b.keys()
      for name in saved_a:
        np.testing.assert_array_equal(saved_a[name], saved_b[name], err_msg=f"{seed} {name}")
    assert any("episode/score" in r for r in _metrics(tmp_path / "straight" / f"seed-{seed}"))


def _saved(logdir):
  """`conftest.load_saved` with the replay as its streams, to compare whole."""
  state, replay, saved_run, pending = load_saved(logdir)
  return state, replay.streams(), saved_run, pending


def test_a_fused_run_resumes_exactly_mid_episode(tmp_path):
  # Stopped at step 102, inside an episode: the checkpoint holds the environments'
  # own state, so the resumed run continues that very episode, bit for bit.
  straight = run.train(_config(**{"run.steps": 201}), tmp_path / "straight", console=False)
  run.train(_config(**{"run.steps": 100}), tmp_path / "resumed", console=False)
  resumed = run.train(_config(**{"run.steps": 201}), tmp_path / "resumed", console=False)
  assert straight["env_steps"] == resumed["env_steps"] == 201  # 3 steps per iteration
  a, b = _saved(tmp_path / "straight"), _saved(tmp_path / "resumed")
  assert a[2]["counters"] == b[2]["counters"] and a[2]["counters"]["updates"] == 62
  assert not a[3]["env/done"].all()  # mid-episode at 102 and at 201
  for saved_a, saved_b in zip((a[0], a[1], a[3]), (b[0], b[1], b[3])):
    assert saved_a.keys() == saved_b.keys()
    for name in saved_a:
      np.testing.assert_array_equal(saved_a[name], saved_b[name], err_msg=name)
  scores = [r for r in _metrics(tmp_path / "straight") if "episode/score" in r]
  # CartPole rewards 1 a step.
  assert scores and all(r["episode/score"] == r["episode/length"] for r in scores)


def _metrics(logdir):
  return read_metrics(logdir / "metrics.jsonl")


def test_a_fused_run_trains_evaluates_and_logs_as_a_host_run(tmp_path):
  """The fused run's logged training episodes (score, length, in order) and its
  evaluations (steps and scores) are the host run's on the same config. Catches
  a fused driver that tallies episodes wrongly (a reordered, dropped or shifted
  step), one whose updates fall on other steps than the host driver's, and an
  evaluation of another state than the one trained to that step. (What it
  replaced asserted `eval/score > 0`, which every CartPole episode passes.)"""
  # The first test's schedule (an update every 4 steps, the prefill ending on an
  # iteration's end), so the two drivers make the same run; evaluated at 44 and 88.
  overrides = {"run.train_ratio": 3, "run.prefill": 24, "run.steps": 88, "run.eval_every": 44,
               "run.eval_episodes": 2}
  summaries = {name: run.train(_config(**{"run.driver": name, **overrides}), tmp_path / name,
                               console=False) for name in ("host", "fused")}
  assert summaries["host"]["updates"] == summaries["fused"]["updates"] == 17
  records = {name: _metrics(tmp_path / name) for name in summaries}
  episodes = {name: [r for r in records[name] if "episode/score" in r] for name in records}
  assert len(episodes["host"]) >= 3
  assert ([(r["episode/score"], r["episode/length"]) for r in episodes["fused"]]
          == [(r["episode/score"], r["episode/length"]) for r in episodes["host"]])
  # The fused driver reports an iteration's episodes at its end (4 steps an iteration).
  assert [r["step"] for r in episodes["fused"]] == [-(-r["step"] // 4) * 4
                                                    for r in episodes["host"]]
  evals = {name: [(r["step"], r["eval/score"], r["eval/length"]) for r in records[name]
                  if "eval/score" in r] for name in records}
  assert [step for step, _, _ in evals["fused"]] == [44, 88]
  assert evals["fused"] == evals["host"]
  trained = [r for r in records["fused"] if "loss/rec" in r]
  assert trained and np.isfinite(trained[-1]["loss/rec"]) and trained[-1]["train/updates"] > 0
  assert summaries["fused"]["env_steps"] == 88


@pytest.mark.parametrize("ratio, num_envs, length, expected", [
    (32, 16, 64, 2),    # the reference's default: 16 envs, 16 x 64 windows
    (512, 1, 64, 2),    # the published DMC recipe on one env
    (1024, 16, 64, 1),  # 16 updates an iteration
    (4, 1, 6, 24),      # 4 / 96 updates a step
    (3.5, 1, 64, 2048),  # 7 / 2048 updates a step: 2048 steps owe 7
])
def test_an_iteration_is_the_fewest_steps_that_owe_whole_updates(ratio, num_envs, length, expected):
  config = tiny_config(**{"run.train_ratio": ratio, "run.batch_size": 16,
                          "run.batch_length": length})
  steps = steps_per_iteration(config.run, num_envs)
  assert steps == expected
  owed = steps * num_envs * ratio / (16 * length)
  assert owed == int(owed) >= 1
  assert steps_per_iteration(config.replace(**{"run.fused_steps": 5}).run, num_envs) == 5


def test_the_device_replay_hands_out_the_host_replays_windows():
  # Three streams of 10 steps (capacity 30) after 37 adds: evicted, wrapped around.
  rng = np.random.default_rng(0)
  host = Replay(30, 3, chunk_size=4)
  spec = {"obs": jax.ShapeDtypeStruct((2,), np.float32), "a": jax.ShapeDtypeStruct((), np.int32)}
  device = DeviceReplay(spec, 3, 30)
  state = device.init()
  for t in range(37):
    step = {"obs": rng.normal(size=(3, 2)).astype(np.float32), "a": np.full(3, t, np.int32)}
    host.add(step)
    state = device.add(state, step)
  assert int(device.stored(state)) == 10 and len(host) == 30
  indices = np.array([0, 5, 17, 20, 1])  # 7 windows of 4 steps per stream
  positions = host.positions(indices, 4)
  np.testing.assert_array_equal(positions.envs, [0, 0, 2, 2, 0])
  np.testing.assert_array_equal(positions.starts, [27, 32, 30, 33, 28])
  on_device = device.positions(state, jnp.asarray(indices), 4)
  np.testing.assert_array_equal(on_device.starts, positions.starts)
  windows = device.gather(state, on_device, 4)
  np.testing.assert_array_equal(windows["a"][:, 0], positions.starts)  # step t holds a = t
  for key, value in host.gather(positions, 4).items():
    np.testing.assert_array_equal(windows[key], value)
  values = {"a": np.arange(10, dtype=np.int32).reshape(5, 2) + 1000}
  host.write(positions, 1, values)
  state = device.write(state, on_device, 1, {"a": jnp.asarray(values["a"])})
  for key, value in host.streams().items():
    np.testing.assert_array_equal(device.to_host(state).streams()[key], value)
  again = device.from_host(device.to_host(state))
  assert int(again.time) == 37
  for key in spec:
    np.testing.assert_array_equal(again.data[key], state.data[key])


def test_the_device_replay_skips_steps_evicted_before_a_write():
  device = DeviceReplay({"a": jax.ShapeDtypeStruct((), np.int32)}, 1, 4)
  state = device.init()
  for t in range(4):
    state = device.add(state, {"a": np.array([t], np.int32)})
  positions = device.positions(state, jnp.array([0]), 3)  # steps 0, 1, 2
  for t in range(4, 6):  # evicts steps 0 and 1
    state = device.add(state, {"a": np.array([t], np.int32)})
  state = device.write(state, positions, 0, {"a": jnp.array([[-1, -2, -3]], jnp.int32)})
  np.testing.assert_array_equal(device.to_host(state).streams()["a"], [[-3, 3, 4, 5]])


def test_the_device_replay_refuses_a_capacity_the_device_cannot_hold():
  spec = {"image": jax.ShapeDtypeStruct((64, 64, 3), np.uint8)}
  device = DeviceReplay(spec, 16, 10**9)
  assert device.memory_bytes() == 16 * (10**9 // 16) * 64 * 64 * 3
  with pytest.raises(ValueError, match=r"device replay needs 11444\.09 GiB.*lower "
                                       r"run.replay_capacity to at most"):
    device.check_fits()
  DeviceReplay(spec, 16, 1000).check_fits()  # 12 MB fits
  # A run that adds at most 100 steps per stream holds 100 rows of the 10^9 / 16.
  short = DeviceReplay(spec, 16, 10**9, max_time=100)
  assert short.rows == 100 and short.kept == 10**9 // 16
  assert short.memory_bytes() == 16 * 100 * 64 * 64 * 3
  short.check_fits()


@pytest.mark.parametrize("overrides, message", [
    ({"run.driver": "fused", "env.id": "gym:CartPole-v1"}, "gym:CartPole-v1 is a host environment"),
    ({"run.train_devices": (0, 1)}, "run.train_devices and run.policy_devices needs the host"),
    ({"run.driver": "sideways"}, "run.driver must be auto, host,? (or )?fused, got 'sideways'"),
    ({"run.fused_steps": -1}, "run.fused_steps must be >= 0"),
    ({"env.parallel": True}, "JAX environment, stepped as one program: parallel"),
])
def test_refusals(tmp_path, overrides, message):
  with pytest.raises(ValueError, match=message):
    run.train(_config(**{"run.steps": 10, **overrides}), tmp_path, console=False)
  assert not (tmp_path / "checkpoints").exists()
