"""Which replayed windows an update trains on, as the reference's replay
chooses them: the online queue first, then for each other window a selector
drawn by `replay.fracs`: uniform (wmrl/draws.py's window indices), recency or
priority. Both drivers select through these functions, so given the same
draws they train on the same windows.

The online queue (the reference's `Replay(online=True)`, `replay.online` in
its configs and in the recipe of its published curves): as each stream's
steps arrive they are cut into non-overlapping windows of the replayed length
L, and each fresh window is put into the next batches, in order, before any
draw, so every one is trained on once as soon as it is whole. Where the cuts
fall, read in the reference's `Replay.add`: a stream's window ending at its
step t (counted from 0) is queued when t is a multiple of L and t >= L - 1
(`self.lengths[worker] % self.length == 0`, checked before the count moves
on), so the queued windows start at steps 1, L + 1, 2L + 1, ... (every step
for L = 1). The reference's environments add their steps one after another,
stream 0 first; here all streams advance together, so the queue is a pure
function of the time: its window j is stream j % N, starting at
s0 + (j // N) L. A run keeps only how many it has taken
(`Counters.online_taken`, in checkpoints). A queued window whose first step
was evicted before its turn is passed over, as the reference's `KeyError`
passes it over. Draws for reports never take from the queue, as the
reference's `mode='report'` does not.

Recency (the reference's `selectors.Recency`): an age a in [0, C) is drawn
with weight 1 / (a + 1) ** recexp, C the replay capacity; where fewer than C
windows are stored, the age is scaled onto them (`int(a / C * n)`), and age
0 is the newest window (the last stream's, as the reference inserts them).

Priority (the reference's `selectors.Prioritized`): each step has a priority
(the replay key `priority`, `initial` when added, written back by the
updates); a window's weight is `maxfrac` x the largest plus (1 - `maxfrac`) x
the mean of its steps' priorities ** `exponent`, and windows are drawn in
proportion to it. Windows holding a step of infinite priority (never
trained on, at the default `initial`) come first, drawn uniformly among
themselves; the reference's sum tree draws among them uniformly level by
level of its tree instead, which depends on its shape (docs/replay.md).
With `zero_on_sample` a drawn window's steps drop to 0 before the next draw,
in the batch too. All weights are recomputed for each draw: the cost grows
with the replay (docs/replay.md), where the reference's tree is logarithmic.

The queue runs on numpy arrays in the host driver and on traced arrays in
the fused driver's program (`_xp` picks the array module); the mixture is one
jitted function for both.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from wmrl.config import ReplayConfig
from wmrl.replay import Positions

PRIORITY_SIGNALS = ("model", "none")
SELECTORS = ("priority", "recency", "uniform")  # the reference's Mixture sorts them so


def _xp(*arrays):
  return np if all(isinstance(a, (np.ndarray, np.generic, int)) for a in arrays) else jnp


def _first_start(length: int) -> int:
  """The step the first queued window starts at."""
  return min(1, length - 1)


def queued(time, length: int):
  """Windows each stream has queued once it holds `time` steps."""
  xp = _xp(time)
  return xp.maximum((time - length - _first_start(length)) // length + 1, 0)


def take_online(positions: Positions, time, stored, taken, length: int, num_envs: int):
  """`positions` (the draws) with the batch's first rows replaced by the queued
  windows not yet taken, in order (module doc). `time`: steps added to each
  stream; `stored`: steps each still holds; `taken`: windows taken from the
  queue so far. Returns the positions, the new count taken and the number of
  rows the queue filled."""
  xp = _xp(positions.envs, positions.starts, time, stored, taken)
  s0 = _first_start(length)
  oldest = time - stored
  # The first queued window still whole in replay: its start >= oldest.
  kept_from = xp.maximum(-((s0 - oldest) // length), 0)
  taken = xp.maximum(taken, kept_from * num_envs)
  batch = positions.envs.shape[0]
  count = xp.clip(queued(time, length) * num_envs - taken, 0, batch)
  rows = xp.arange(batch)
  index = taken + rows
  online = rows < count
  envs = xp.where(online, index % num_envs, positions.envs).astype(positions.envs.dtype)
  starts = xp.where(online, s0 + (index // num_envs) * length, positions.starts)
  return Positions(envs, starts.astype(positions.starts.dtype)), taken + count, count


def mixed(replay: ReplayConfig) -> bool:
  """Whether any window is drawn by a selector other than the uniform one."""
  return replay.fracs.uniform < 1


def recency_table(replay: ReplayConfig, capacity: int):
  """The drivers' recency table (`recency_cdf` on the device), None without the
  recency selector."""
  return jnp.asarray(recency_cdf(capacity, replay.recexp)) if replay.fracs.recency > 0 else None


def recency_cdf(capacity: int, exponent: float) -> np.ndarray:
  """The cumulative recency weights 1 / (age + 1) ** exponent over ages [0,
  capacity), normalised (float32 [capacity]; summed in float64)."""
  weights = 1.0 / np.arange(1, capacity + 1, dtype=np.float64) ** exponent
  total = np.cumsum(weights)
  return (total / total[-1]).astype(np.float32)


def recency_positions(key, cdf, time, stored, length: int, num_envs: int, batch: int) -> Positions:
  """`batch` windows drawn by recency (module doc)."""
  capacity = cdf.shape[0]
  age = jnp.minimum(jnp.searchsorted(cdf, jax.random.uniform(key, (batch,)), side="right"),
                    capacity - 1)
  windows = num_envs * (stored - length + 1)
  scaled = jnp.floor(age.astype(jnp.float32) / capacity * windows).astype(age.dtype)
  age = jnp.minimum(jnp.where(windows < capacity, scaled, age), windows - 1)
  back, env = jnp.divmod(age, num_envs)  # the newest window is the last stream's
  return Positions(num_envs - 1 - env, time - length - back)


def window_weights(priorities, stored, length: int, exponent: float, maxfrac: float):
  """Each window's weight [N, R - length + 1] from its steps' priorities [N, R]
  in time order (column j: the stream's j-th oldest step kept; columns from
  `stored` on are padding); windows not whole in replay weigh 0. Infinite
  where a step's priority is."""
  powered = priorities ** exponent
  infinite = jnp.isinf(powered)
  window = lambda x, init, op: jax.lax.reduce_window(x, init, op, (1, length), (1, 1), "VALID")
  total = window(jnp.where(infinite, 0.0, powered), 0.0, jax.lax.add)
  largest = window(jnp.where(infinite, 0.0, powered), -jnp.inf, jax.lax.max)
  weight = maxfrac * largest + (1 - maxfrac) * total / length
  weight = jnp.where(window(infinite, False, jax.lax.bitwise_or), jnp.inf, weight)
  whole = jnp.arange(weight.shape[1]) <= stored - length
  return jnp.where(whole, weight, 0.0), whole


def priority_draw(key, priorities, stored, length: int, exponent: float, maxfrac: float):
  """One window drawn in proportion to its weight (infinite weights first,
  uniformly among them; all zero: uniformly): (stream, column of its start)."""
  weight, whole = window_weights(priorities, stored, length, exponent, maxfrac)
  infinite, positive = jnp.isinf(weight), weight > 0
  never = -jnp.inf
  logits = jnp.where(
      infinite.any(), jnp.where(infinite, 0.0, never),
      jnp.where(positive.any(), jnp.where(positive, jnp.log(jnp.where(positive, weight, 1.0)),
                                          never),
                jnp.where(whole, 0.0, never)))
  flat = jax.random.categorical(key, logits.ravel())
  return jnp.divmod(flat, weight.shape[1])


@functools.partial(jax.jit, static_argnames=("replay", "length", "num_envs"))
def mix(key, positions: Positions, first_row, time, stored, priorities, cdf, *,
        replay: ReplayConfig, length: int, num_envs: int):
  """The rows from `first_row` on (those the queue left), each drawn by a
  selector chosen with `replay.fracs`: uniform keeps its row of `positions`.
  `priorities` [N, R]: the steps' priorities in time order from the oldest
  kept (padded past `stored`; None without the priority selector); `cdf`:
  `recency_cdf` (None without the recency selector). Returns the positions,
  the rows the priority selector drew [B] bool, and the priorities after
  `zero_on_sample`."""
  fracs = replay.fracs
  names = [name for name in SELECTORS if getattr(fracs, name) > 0]
  batch = positions.envs.shape[0]
  choice_key, recency_key, priority_key = jax.random.split(key, 3)
  choice = jax.random.choice(choice_key, len(names), (batch,),
                             p=jnp.array([getattr(fracs, name) for name in names]))
  drawn = {name: (choice == i) & (jnp.arange(batch) >= first_row) for i, name in enumerate(names)}
  envs, starts = positions
  if "recency" in drawn:
    recent = recency_positions(recency_key, cdf, time, stored, length, num_envs, batch)
    envs = jnp.where(drawn["recency"], recent.envs, envs)
    starts = jnp.where(drawn["recency"], recent.starts, starts)
  by_priority = drawn.get("priority", jnp.zeros(batch, bool))
  if "priority" in drawn:
    prio = replay.prio

    def row(r, carried):
      envs, starts, priorities = carried

      def draw(carried):
        envs, starts, priorities = carried
        env, column = priority_draw(jax.random.fold_in(priority_key, r), priorities, stored,
                                    length, prio.exponent, prio.maxfrac)
        if prio.zero_on_sample:
          zeros = jnp.zeros((1, length), priorities.dtype)
          priorities = jax.lax.dynamic_update_slice(priorities, zeros, (env, column))
        start = time - stored + column
        return envs.at[r].set(env.astype(envs.dtype)), starts.at[r].set(
            start.astype(starts.dtype)), priorities

      return jax.lax.cond(by_priority[r], draw, lambda c: c, carried)

    envs, starts, priorities = jax.lax.fori_loop(0, batch, row, (envs, starts, priorities))
  return Positions(envs, starts), by_priority, priorities


def padded_columns(stored: int) -> int:
  """Columns the host driver pads its time-ordered priorities to: a power of two
  (at least 64), so `mix` compiles once per doubling of the replay, not per step."""
  return max(64, 1 << (int(stored) - 1).bit_length())


def outside(positions: Positions, rows, length: int) -> Positions:
  """`positions` with the rows not in `rows` moved before any stored step, so
  that a replay write at them leaves those rows' windows alone."""
  return Positions(positions.envs, _xp(rows).where(rows, positions.starts, -length - 1))
