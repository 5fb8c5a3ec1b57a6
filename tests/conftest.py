"""Shared test helpers: tiny configs and batches that compile in seconds."""
import pytest

from wmrl import bench
from wmrl.config import Config


def tiny_config(**overrides) -> Config:
  """A DreamerV3 config small enough for unit tests on a CPU."""
  config = Config().replace(**{
      "model.rssm.deter": 32, "model.rssm.hidden": 16, "model.rssm.stoch": 4,
      "model.rssm.classes": 4, "model.rssm.blocks": 2,
      "model.encoder.units": 16, "model.encoder.layers": 1, "model.encoder.depth": 2,
      "model.encoder.mults": (1, 2), "model.decoder.units": 16, "model.decoder.layers": 1,
      "model.decoder.depth": 2, "model.decoder.mults": (1, 2),
      "model.reward.units": 16, "model.cont.units": 16, "model.actor.units": 16,
      "model.actor.layers": 1, "model.critic.units": 16, "model.critic.layers": 1,
      "behavior.imag_horizon": 3, "run.batch_size": 2, "run.batch_length": 6,
  })
  return config.replace(**overrides)


def random_batch(obs_spec, act_spec, batch_size, length, seed=0):
  """A replay-shaped batch of random observations and valid actions, with
  an episode that ends (terminally) in the middle of the first sequence."""
  batch = bench.random_batch(obs_spec, act_spec, batch_size, length, seed)
  batch["is_last"][0, length // 2] = batch["is_terminal"][0, length // 2] = True
  batch["is_first"][0, length // 2 + 1] = True
  return batch


@pytest.fixture
def tiny():
  return tiny_config()
