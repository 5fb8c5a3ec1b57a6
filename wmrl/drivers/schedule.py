"""When a run acts at random, when it trains, and how many updates it owes: one
schedule that the host and the fused driver both follow, the reference's
(`embodied/run/train.py` at e3f0224; benchmarks/loop_parity.py compares the loops).

The reference's train ratio: `run.train_ratio` replayed steps per environment
step, one update replaying `batch_size x batch_length` steps, so each
environment step owes `r = ratio / (batch_size * batch_length)` updates.
Training starts at the environment step after which replay holds
`batch_size x batch_length` windows (the reference's `len(replay) >=
batch_size * batch_length`; the environments of a vector step count one after
another, as its driver calls the train callback after each): that step makes
one update at once (`elements.when.Ratio` owes one on its first call), and
from it on the updates owed by step S are `1 + floor((S - start) * r)`. The
fraction still owed (the debt) is a float64 carried from vector step to
vector step and saved in checkpoints (a ratio that is no binary fraction can
leave it a rounding short of a whole update).

The reference acts with its policy from the first step. `run.prefill` steps
of random actions first are wmrl's option (default 0); training then waits
for them too.
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
  prefill: int  # environment steps of random actions (`run.prefill`; the reference's: none)
  start: int  # the environment step (counted from 1) that makes the first update
  updates_per_vector_step: float

  @classmethod
  def from_run(cls, run: RunConfig, num_envs: int, processes: int = 1) -> "Schedule":
    """The schedule of `run` for `num_envs` environments. In several processes
    each steps its own environments and samples its share of every batch
    (`run.batch_size // processes` sequences) from its own replay, so each
    replay sees the ratio and waits for its share of the windows."""
    window = run.replay_context + run.batch_length
    batch = run.batch_size // processes
    start = training_start(num_envs, window, batch * run.batch_length, run.prefill)
    # The debt per step as the drivers have always added it (ratio / replayed
    # steps per update, times N): the same float64, so fixed-seed runs repeat.
    return cls(num_envs, window, run.prefill, start,
               run.train_ratio / (batch * run.batch_length) * num_envs)

  def random_actions(self, vector_step) -> bool:
    """Whether vector step `vector_step` (counted from 0) acts at random: its
    first environment step falls in the prefill. Works on traced integers too."""
    return vector_step * self.num_envs < self.prefill

  def owe(self, debt: float, env_steps: int) -> tuple[int, float]:
    """The updates owed by the vector step that brought the run to `env_steps`,
    and the debt left after them."""
    if env_steps < self.start:
      return 0, debt
    if env_steps - self.num_envs < self.start:  # the vector step holding the start
      debt = 1.0 + (env_steps - self.start) * (self.updates_per_vector_step / self.num_envs)
    else:
      debt += self.updates_per_vector_step
    updates = 0
    while debt >= 1.0:
      debt -= 1.0
      updates += 1
    return updates, debt


def training_start(num_envs: int, window: int, fill: int, prefill: int = 0) -> int:
  """The first environment step (counted from 1; the environments of a vector
  step one after another) after which the replay streams hold `fill` windows
  of `window` steps together, and not before the vector steps of the prefill
  are done."""
  def windows(steps: int) -> int:
    per_env, extra = divmod(steps, num_envs)  # the first `extra` envs have one step more
    return (extra * max(per_env + 2 - window, 0)
            + (num_envs - extra) * max(per_env + 1 - window, 0))

  # `windows` never falls as steps grow: bisect between 0 (none) and the steps
  # after which every stream holds its share, so that thousands of environments
  # cost a few dozen evaluations at start-up, not one per step.
  low, high = 0, num_envs * (window - 1 + -(-fill // num_envs))
  while high - low > 1:
    middle = (low + high) // 2
    low, high = (low, middle) if windows(middle) >= fill else (middle, high)
  prefill_end = -(-prefill // num_envs) * num_envs
  return max(high, prefill_end)
