"""wmrl's own JAX environments (`wmrl:RepeatPreviousEasy`, ...) as `Source`s.

RepeatPrevious is POPGym's memory task (popgym/envs/repeat_previous.py, popgym
1.0.7) written in JAX, so that the fused driver runs it. It gives what the
`popgym:` id of the same name gives through the Gymnasium adapter, step for
step (tests/test_memory_envs.py plays both on one deck), so one agent config
serves both:

- a deck of N = 52 * num_decks cards, shuffled at the reset, is dealt one card
  a step; the reset deals the first. The observation is the dealt card's suit,
  one-hot float32 [4] under "obs" (the adapter's encoding of POPGym's
  Discrete(4)); the action is a suit, Discrete(4);
- each step judges the action, then deals: from the k-th step on, the action
  earns +1/(N - k) where it names the suit of the card dealt k - 1 cards
  before the latest one seen, and -1/(N - k) where not; 0 before. A perfect
  episode returns 1. POPGym's docstring says "k timesteps ago", but its step
  reads `hand[-k]` before dealing, so the span is k - 1: 3, 31 and 63 cards
  for Easy (k=4), Medium (k=32) and Hard (k=64);
- the episode terminates on its N - 1-th step, when one card is left in the
  deck (POPGym checks `len(deck) == 1` before it deals); no time limit.

`wmrl:RepeatPrevious` takes POPGym's constructor arguments after commas,
`wmrl:RepeatPrevious,num_decks=2,k=16` (the defaults are Easy's).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from wmrl.jaxenvs.core import Source, parse_settings, split_settings
from wmrl.spaces import ActionSpec, ArraySpec

CARDS_PER_DECK = 52
SUITS = 4

# POPGym's RepeatPreviousEasy / Medium / Hard: (num_decks, k).
REPEAT_PREVIOUS = {"RepeatPrevious": (1, 4), "RepeatPreviousEasy": (1, 4),
                   "RepeatPreviousMedium": (2, 32), "RepeatPreviousHard": (3, 64)}


class RepeatPreviousState(NamedTuple):
  suits: jax.Array  # int32 [N]: the suit of each card, in the order they are dealt
  dealt: jax.Array  # int32 []: the index of the latest card dealt (0 after the reset)


def repeat_previous(num_decks: int = 1, k: int = 4, name: str = "wmrl:RepeatPrevious") -> Source:
  """POPGym's RepeatPrevious(num_decks, k) as a `Source` (module doc)."""
  n = CARDS_PER_DECK * num_decks
  if num_decks < 1 or not 1 <= k < n:
    # POPGym asserts only n > k; k = 0 would judge against a card not yet dealt.
    raise ValueError(f"{name}: needs num_decks >= 1 and 1 <= k < 52 * num_decks = {n}, "
                     f"got num_decks={num_decks}, k={k}")
  scale = 1.0 / (n - k)

  def observe(state: RepeatPreviousState) -> dict:
    return {"obs": jax.nn.one_hot(state.suits[state.dealt], SUITS, dtype=jnp.float32)}

  def init(key):
    # POPGym shuffles card numbers and reads card c's suit as c % 4: every
    # order of the N / 4 cards of each suit is equally likely.
    suits = (jax.random.permutation(key, n) % SUITS).astype(jnp.int32)
    state = RepeatPreviousState(suits, jnp.int32(0))
    return state, observe(state)

  def transition(key, state: RepeatPreviousState, action):
    del key  # the deck was shuffled at the reset
    held = state.dealt + 1  # cards dealt so far: POPGym's hand size before this step's deal
    target = state.suits[jnp.maximum(held - k, 0)]  # POPGym's hand[-k]
    right = jnp.argmax(action) == target
    reward = jnp.where(held >= k, jnp.where(right, scale, -scale), 0.0).astype(jnp.float32)
    terminated = state.dealt == n - 2  # one card left in the deck
    # JaxEnv also steps an ended episode (and keeps the reset): stay inside the deck.
    state = state._replace(dealt=jnp.minimum(state.dealt + 1, n - 1))
    return state, observe(state), reward, terminated

  return Source(name, {"obs": ArraySpec((SUITS,), "float32")}, ActionSpec("discrete", (SUITS,)),
                init, transition)


def env_ids() -> list[str]:
  return [f"wmrl:{name}" for name in REPEAT_PREVIOUS]


def source(name: str) -> Source:
  env_id = f"wmrl:{name}"
  base, settings = split_settings(name)
  if base not in REPEAT_PREVIOUS:
    from wmrl.names import did_you_mean
    raise ValueError(f"unknown environment 'wmrl:{base}'{did_you_mean(base, REPEAT_PREVIOUS)}; "
                     f"wmrl has {', '.join(REPEAT_PREVIOUS)}")
  num_decks, k = REPEAT_PREVIOUS[base]
  args = parse_settings(env_id, settings, {"num_decks": num_decks, "k": k})
  return repeat_previous(args["num_decks"], args["k"], env_id)
