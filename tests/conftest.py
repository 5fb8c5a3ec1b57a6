"""Shared test helpers: the tiny configs and batches of wmrl.testing, and a fixture."""
import pytest

from wmrl import testing
from wmrl.testing import tiny_config  # noqa: F401  (the tests import it from here)


def random_batch(obs_spec, act_spec, batch_size, length, seed=0, entries=None):
  """A replay-shaped batch of random observations and valid actions, with
  an episode that ends (terminally) in the middle of the first sequence."""
  batch = testing.random_batch(obs_spec, act_spec, batch_size, length, seed, entries)
  batch["is_last"][0, length // 2] = batch["is_terminal"][0, length // 2] = True
  batch["is_first"][0, length // 2 + 1] = True
  return batch


@pytest.fixture
def tiny():
  return tiny_config()
