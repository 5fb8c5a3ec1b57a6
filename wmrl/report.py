"""Report videos of a run: what the algorithm shows of a few replayed sequences
(DreamerV3: the open loop, wmrl/algorithms/dreamerv3/report.py), tiled into
one video each for the logger."""
from __future__ import annotations

import jax
import numpy as np

from wmrl.drivers.base import Driver

REPORT_SEQUENCES = 4  # replayed sequences per report video, stacked top to bottom


def tile(frames: np.ndarray) -> np.ndarray:
  """Sequences [B, T, H, W, 3] -> one video [T, B * H, W, 3], stacked top to bottom."""
  return np.concatenate(list(np.asarray(frames)), axis=1)


def report_videos(driver: Driver, index: int, length: int, seed: int,
                  sequences: int = REPORT_SEQUENCES) -> dict[str, np.ndarray]:
  """The algorithm's report videos of seed `index` of `driver`, from a few
  sequences of its replay, each tiled into one video [T, H', W', 3]: {name: video}.

  Sequences have the training `length` (replay context included), so a world
  model is asked to predict as far as it learns to. {} where replay cannot
  yet give such a sequence or the algorithm has nothing to show.
  """
  seed = int(seed) % 2**31
  # An RNG of its own: a report must not change which batches training sees.
  batch = driver.sample(index, sequences, length, np.random.default_rng(seed))
  if batch is None:
    return {}
  state = driver.agent_state(index)
  videos = jax.device_get(driver.algo.report(state, batch, jax.random.key(seed)))
  return {name: tile(frames) for name, frames in videos.items()}
