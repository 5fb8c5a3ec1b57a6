"""When a run acts at random, when it trains, and how many updates it owes: one
schedule that the host and the fused driver both follow.

The reference's train ratio: `run.train_ratio` replayed steps per environment
step, one update replaying `batch_size x batch_length` steps. Each vector step
of N environments adds `ratio / (batch_size * batch_length) * N` updates to a
fractional debt, once the prefill is over and every replay stream holds a
whole window; the whole updates of the debt are then run. The debt is a
float64 carried from step to step (and saved in checkpoints), so over a run
the updates stay within one of what the ratio owes (a ratio that is no
binary fraction can leave the debt a rounding short of a whole update).
"""
from __future__ import annotations

import dataclasses

from wmrl.config import RunConfig


@dataclasses.dataclass
class Counters:
  """A run's progress, shared by its seeds; what a resumed run continues from."""

  env_steps: int = 0
  updates: int = 0
  # Updates owed by the train ratio but not yet done (fractional).
  update_debt: float = 0.0
  last_eval: int = 0  # the environment step of the last evaluation
  # Windows taken from the online queue (wmrl/drivers/selection.py): a function
  # of the schedule alone, so one count serves every seed.
  online_taken: int = 0


@dataclasses.dataclass(frozen=True)
class Schedule:
  """The rules both drivers run by (module doc)."""

  num_envs: int  # environments stepped together: one vector step is this many steps
  window: int  # steps of each replayed window: run.replay_context + run.batch_length
  prefill: int  # environment steps of random actions before training
  updates_per_vector_step: float

  @classmethod
  def from_run(cls, run: RunConfig, num_envs: int, processes: int = 1) -> "Schedule":
    """The schedule of `run` for `num_envs` environments. In several processes
    each steps its own environments and samples its share of every batch
    (`run.batch_size // processes` sequences) from its own replay, so each
    replay sees the ratio."""
    window = run.replay_context + run.batch_length
    batch = run.batch_size // processes
    # The debt per step as the drivers have always added it (ratio / replayed
    # steps per update, times N): the same float64, so fixed-seed runs repeat.
    return cls(num_envs, window, max(run.prefill, run.batch_size * window),
               run.train_ratio / (batch * run.batch_length) * num_envs)

  def random_actions(self, vector_step) -> bool:
    """Whether vector step `vector_step` (counted from 0) acts at random: its
    first environment step falls in the prefill. Works on traced integers too."""
    return vector_step * self.num_envs < self.prefill

  def owe(self, debt: float, env_steps: int, stored: int) -> tuple[int, float]:
    """The updates owed after a vector step that brought the run to `env_steps`
    with `stored` steps in each replay stream, and the debt left after them."""
    if env_steps < self.prefill or stored < self.window:
      return 0, debt
    debt += self.updates_per_vector_step
    updates = 0
    while debt >= 1.0:
      debt -= 1.0
      updates += 1
    return updates, debt
