"""What every driver is to a run: the `Driver` protocol, where each seed starts
(`SeedStart`), what a checkpoint takes of it (`Snapshot`), and the pieces both
drivers share: the episode tally, the policy's inputs, the pending step.

A driver owns a run's seeds (their environments, replays, agent states and
policy carries) and moves them on together, one `iterate` at a time, by the
`Schedule` (wmrl/drivers/schedule.py). The run (wmrl/run.py) sees it only
through this protocol: it does not know which driver runs.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import numpy as np

from wmrl.algorithms.contract import Algorithm
from wmrl.drivers.schedule import Counters
from wmrl.replay import Replay
from wmrl.trees import arrays_tree, tree_arrays

OnEpisode = Callable[[int, dict], None]  # (seed index, {"episode/score", "episode/length"})
OnUpdate = Callable[[dict], None]  # one update's metrics (device arrays; [seeds] on a seeds axis)


@dataclasses.dataclass
class SeedStart:
  """Where one seed of a run starts: fresh, or from its checkpoint."""

  seed: int  # the seed its draws come from (in several processes, this process's)
  env: Any  # its training environments (wmrl.envs.Env)
  state: Any  # its agent state
  replay: Replay | None = None  # saved replay; None: an empty one
  counters: Counters | None = None  # saved progress; None: from the start
  episodes: int = 0  # episodes ended before
  pending: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # `Snapshot.pending`


@dataclasses.dataclass
class Snapshot:
  """What a checkpoint keeps of one seed besides its agent state."""

  replay: Replay  # in the host replay's format, which every driver restores
  counters: dict[str, Any]  # the run's `Counters` and this seed's `episodes`
  pending: dict[str, np.ndarray]  # the step not yet acted on and the carry, by tree path


class Driver(Protocol):
  """The loop that collects experience and trains, as a run uses it."""

  algo: Algorithm
  counters: Counters  # the run's progress, shared by its seeds

  @property
  def episodes(self) -> list[int]:
    """Episodes each seed has ended."""

  def iterate(self, on_episode: OnEpisode, on_update: OnUpdate) -> None:
    """Steps every environment at least once and runs the updates the schedule
    owes. Raises `EnvironmentCrash` (keeping nothing of the failed step) if an
    environment raises."""

  def agent_state(self, index: int) -> Any:
    """Seed `index`'s agent state, on this process's devices."""

  def replay_size(self, index: int) -> int:
    """Steps seed `index`'s replay holds."""

  def sample(self, index: int, batch_size: int, length: int,
             rng: np.random.Generator) -> dict | None:
    """Windows [batch_size, length] from seed `index`'s replay, drawn with `rng`
    (not the training draws); None while replay holds none that long."""

  def snapshot(self, index: int) -> Snapshot:
    """What a checkpoint keeps of seed `index` (module doc)."""


class EnvironmentCrash(RuntimeError):
  """An environment raised; nothing of the step it was taking was kept."""

  def __init__(self, index: int, env_steps: int, error: BaseException, message: str = ""):
    self.index, self.env_steps, self.error = index, env_steps, error
    super().__init__(message or f"{type(error).__name__}: {error}")


def policy_inputs(obs_keys, step: dict) -> dict:
  """What a policy reads from an environment step: the observation keys and
  `is_first` (not the reward or the other flags)."""
  return {**{key: step[key] for key in obs_keys}, "is_first": step["is_first"]}


class EpisodeTally:
  """The running score and length of each environment's episode, and how many
  have ended; reports each episode that ends."""

  def __init__(self, num_envs: int, episodes: int = 0):
    self.scores = np.zeros(num_envs)
    self.lengths = np.zeros(num_envs, np.int64)
    self.episodes = episodes

  def add(self, step: dict, on_episode: Callable[[dict], None]) -> None:
    """Counts `step` (reward, is_first, is_last [N])."""
    first = step["is_first"]
    self.scores = np.where(first, 0.0, self.scores + step["reward"])
    self.lengths = np.where(first, 0, self.lengths + 1)
    for i in np.flatnonzero(step["is_last"]):
      self.episodes += 1
      on_episode({"episode/score": float(self.scores[i]), "episode/length": int(self.lengths[i])})


def saved_counters(counters: Counters, episodes: int) -> dict[str, Any]:
  """A seed's counters as its checkpoint keeps them."""
  return {**dataclasses.asdict(counters), "episodes": episodes}


def restored_counters(saved: dict[str, Any]) -> Counters:
  """The run's `Counters` from a checkpoint's (its `episodes` are the seed's own).
  A counter newer than the checkpoint starts at its default (`online_taken`:
  such a run sampled uniformly, and its config.json resumes it so)."""
  defaults = Counters()
  return Counters(**{f.name: saved.get(f.name, getattr(defaults, f.name))
                     for f in dataclasses.fields(Counters)})


def pending_arrays(step: dict, carry, env_state=None) -> dict[str, np.ndarray]:
  """The step not yet acted on, the policy carry and (where the driver can keep
  them) the environments' own state, by tree path, for a checkpoint."""
  arrays = {**{f"step/{k}": np.asarray(v) for k, v in step.items()}, **tree_arrays(carry, "carry")}
  if env_state is not None:
    arrays.update(tree_arrays(env_state, "env"))
  return arrays


def any_pending(saved: list[dict[str, np.ndarray]]) -> bool:
  """Whether the seeds' checkpoints hold a pending step; refuses a mix, which no
  run of them could have saved."""
  if any(saved) and not all(saved):
    raise ValueError("some seeds' checkpoints hold a pending step and others none")
  return any(saved)


def pending_step(saved: dict[str, np.ndarray], carry_template, cut: bool):
  """The step and carry of `pending_arrays`. With `cut` (the environments are new
  and cannot continue its episodes) the step is marked `is_last`, as a time
  limit would end them, so every episode resets on the next step."""
  step = {k[len("step/"):]: v for k, v in saved.items() if k.startswith("step/")}
  if cut:
    step["is_last"] = np.ones_like(step["is_last"])
  return step, arrays_tree(carry_template, saved, "carry")
