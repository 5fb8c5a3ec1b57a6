"""The host driver's collect/train loop (wmrl/drivers/host.py) with a replay
context: latents stored at collection, posteriors written back after each update."""
import dataclasses

import jax
import numpy as np

from conftest import tiny_config
from wmrl import envs
from wmrl.algorithms.dreamerv3 import agent
from wmrl.drivers.host import HostDriver
from wmrl.replay import Positions, Replay


class RecordingReplay(Replay):
  """A replay that remembers the windows the driver gathered from it last (the
  ones trained on: drawn, then some replaced by the online queue)."""

  def gather(self, positions, length, keys=None):
    self.last = positions
    return super().gather(positions, length, keys)


def _newest(replay: Replay) -> dict:
  """The newest step of every stream."""
  last = replay.steps_added // replay.num_envs - 1
  return {k: v[:, 0] for k, v in Replay.gather(replay, 
      Positions(np.arange(replay.num_envs), np.full(replay.num_envs, last)), 1).items()}


def _stream_steps(replay: Replay, name: str) -> np.ndarray:
  """Every step of `name` in every stream, [env, time] (nothing evicted yet)."""
  steps = replay.steps_added // replay.num_envs
  return Replay.gather(replay, Positions(np.arange(replay.num_envs),
                                         np.zeros(replay.num_envs, int)), steps)[name]


def test_latents_are_stored_with_each_step_and_posteriors_written_back():
  # Train ratio 12 over batches of 2 x 6: one update per env step (two per vector
  # step) once replay holds 12 windows (2 streams of 12 steps: vector step 12).
  config = tiny_config(**{"env.id": "fake_envs:make_counter", "env.num_envs": 2,
                          "run.train_ratio": 12, "optim.warmup": 0})
  returned = []

  def train_step(state, batch):
    state, metrics, updates = agent.train_step(state, batch)
    returned.append(jax.device_get(updates))
    return state, metrics, updates

  algo = dataclasses.replace(agent.DREAMERV3, train_step=train_step)
  with envs.from_config(config.env, seed=0) as env:
    state = agent.init(jax.random.key(0), env.obs_spec, env.act_spec, config)
    replay = RecordingReplay(1000, env.num_envs)
    driver = HostDriver.single(algo, config.run, env, state, replay)
    ignore = lambda *args: None
    for step in range(15):  # filling replay, then training
      driver.collect(ignore)
      newest = _newest(replay)
      for name, value in agent.replay_entries(driver.agent_state(0), driver._carry).items():
        np.testing.assert_array_equal(newest[name], np.asarray(value), err_msg=f"{name} at {step}")
      if driver.train(ignore):
        for name, value in returned[-1].items():  # the trained steps, after the context step
          stored = _stream_steps(replay, name)
          expected = stored.copy()
          # Where windows overlap, the later one's values.
          for b, (stream, start) in enumerate(zip(*replay.last)):
            expected[stream, start + 1:start + driver.schedule.window] = value[b]
          np.testing.assert_array_equal(stored, expected, err_msg=name)
          assert not np.array_equal(value, np.zeros_like(value))
  assert driver.counters.updates >= 3 and len(returned) == driver.counters.updates


def test_without_context_nothing_is_stored_or_written():
  config = tiny_config(**{"env.id": "fake_envs:make_counter", "run.train_ratio": 12,
                          "run.replay_context": 0, "run.batch_length": 7})
  with envs.from_config(config.env, seed=0) as env:
    state = agent.init(jax.random.key(0), env.obs_spec, env.act_spec, config)
    driver = HostDriver.single(agent.DREAMERV3, config.run, env, state,
                               Replay(1000, env.num_envs))
    while not driver.train(lambda metrics: None):
      driver.collect(lambda index, metrics: None)
  assert not any(key.startswith("latent/") for key in driver.replays[0].keys)
