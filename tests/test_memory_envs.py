"""Memory environments: POPGym ids, the JAX RepeatPrevious against POPGym's own,
bsuite's MemoryChain (gymnax) with its memory length set in the id, and the
adapter's Tuple observations that POPGym's Autoencode needs."""
from __future__ import annotations

import sys

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium import spaces

from wmrl import envs, jaxenvs
from wmrl.envs.gym_adapter import GymAdapter
from wmrl.envs.observations import ObservationConverter, ObservationError
from wmrl.envs.registry import resolve
from wmrl.jaxenvs.wmrl_source import RepeatPreviousState
from wmrl.spaces import ActionSpec, ArraySpec

# POPGym's RepeatPrevious levels: (num_decks, k).
LEVELS = {"Easy": (1, 4), "Medium": (2, 32), "Hard": (3, 64)}


# ------------------------------------------------------------ Tuple observations

def test_tuple_observation_is_its_parts_concatenated():
  space = spaces.Tuple((spaces.Discrete(2), spaces.MultiDiscrete([2, 3]),
                        spaces.Box(-1.0, 1.0, (2,), np.float32),
                        spaces.Tuple((spaces.MultiBinary(2),))))
  convert = ObservationConverter(space, "t")
  assert convert.spec == {"obs": ArraySpec((11,), "float32")}
  value = (1, np.array([0, 2]), np.array([0.5, -0.25], np.float32), (np.array([1, 0], np.int8),))
  expected = [0, 1, 1, 0, 0, 0, 1, 0.5, -0.25, 1, 0]  # one-hot 2 | one-hots 2, 3 | box | binary
  np.testing.assert_array_equal(convert(value, 0)["obs"], np.float32(expected))
  with pytest.raises(ObservationError, match=r"'obs' at step 3 .* length 1, but its Tuple space "
                     "has 4 parts"):
    convert((1,), 3)
  with pytest.raises(ObservationError, match=r"'obs/0' at step 1 .*is 2, outside"):
    convert((2,) + value[1:], 1)


def test_tuple_with_an_image_is_refused_by_name():
  space = spaces.Dict({"pair": spaces.Tuple((spaces.Discrete(2),
                                              spaces.Box(0, 255, (8, 8, 3), np.uint8)))})
  with pytest.raises(ValueError, match="'pair' is a Tuple whose part 1 is an image Box"):
    ObservationConverter(space, "t")


# ---------------------------------------------------------------------- popgym ids

@pytest.mark.parametrize("name, obs_dim, parts, actions, steps, terminal", [
    ("RepeatPreviousEasy", 4, 1, 4, 51, True), ("RepeatPreviousMedium", 4, 1, 4, 103, True),
    ("RepeatPreviousHard", 4, 1, 4, 155, True),
    ("RepeatFirstEasy", 4, 1, 4, 51, True), ("RepeatFirstMedium", 4, 1, 4, 415, True),
    ("RepeatFirstHard", 4, 1, 4, 831, True),
    # Autoencode's (mode, card) Tuple: one-hot 2 and one-hot 4.
    ("AutoencodeEasy", 6, 2, 4, 103, True), ("AutoencodeMedium", 6, 2, 4, 207, True),
    ("AutoencodeHard", 6, 2, 4, 311, True),
    # Each card one-hot over its values and face-down; always flipping card 0
    # never matches a pair, so POPGym's time limit (a truncation) ends it.
    ("ConcentrationEasy", 52 * 3, 52, 52, 104, False),
    ("ConcentrationMedium", 104 * 3, 104, 104, 208, False),
    ("ConcentrationHard", 52 * 14, 52, 52, 104, False),
])
def test_popgym_ids_make_episodes(name, obs_dim, parts, actions, steps, terminal):
  with envs.make(f"popgym:{name}", seed=1) as env:
    assert env.obs_spec == {"obs": ArraySpec((obs_dim,), "float32")}
    assert env.act_spec == ActionSpec("discrete", (actions,))
    step = env.reset()
    action = np.eye(actions, dtype=np.float32)[None, 0]
    for t in range(1, steps + 1):
      step = env.step(action)
      assert step["obs"].sum() == parts  # one one-hot per discrete part
      assert bool(step["is_last"][0]) == (t == steps), t
    assert bool(step["is_terminal"][0]) == terminal
    assert env.step(action)["is_first"][0]


def test_popgym_unknown_and_missing():
  with pytest.raises(ValueError, match="did you mean popgym:RepeatPreviousEasy"):
    envs.make("popgym:RepeatPreviousEsay")
  with pytest.raises(ValueError, match="did you mean popgym:RepeatFirstHard"):
    envs.make("RepeatFirstHard")  # a bare name is tried with each prefix
  with pytest.MonkeyPatch.context() as patch:
    patch.setitem(sys.modules, "popgym", None)  # as if it were not installed
    patch.setitem(sys.modules, "popgym.envs", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[popgym\]"'):
      envs.make("popgym:RepeatPreviousEasy")


def _suit(obs) -> int:
  return int(np.argmax(obs))


@pytest.mark.parametrize("level", LEVELS)
def test_popgym_repeat_previous_judges_the_card_k_minus_1_before_the_latest(level):
  """POPGym's docstring says "the card from k timesteps ago"; its step compares with
  `hand[-k]` before dealing, k - 1 cards before the latest one seen."""
  _, k = LEVELS[level]

  def episode_return(back: int) -> float:
    with envs.make(f"popgym:RepeatPrevious{level}", seed=2) as env:
      seen = [_suit(env.reset()["obs"][0])]
      total = 0.0
      while True:
        answer = seen[-1 - back] if len(seen) > back else 0
        step = env.step(np.eye(4, dtype=np.float32)[None, answer])
        total += float(step["reward"][0])
        seen.append(_suit(step["obs"][0]))
        if step["is_last"][0]:
          return total

  assert episode_return(k - 1) == pytest.approx(1.0, abs=1e-5)  # every judged step right
  assert episode_return(k) < 0.5


# ------------------------------------------------- the JAX RepeatPrevious vs POPGym

@pytest.mark.parametrize("level", LEVELS)
def test_jax_repeat_previous_plays_popgym_s_deck_the_same(level):
  """One deck, one action sequence: the same observations (as the adapter encodes
  POPGym's), the same rewards, the same terminal step."""
  num_decks, k = LEVELS[level]
  n = 52 * num_decks
  maker = resolve(f"popgym:RepeatPrevious{level}")
  raw = gymnasium.make(maker.gym_id)
  popgym = GymAdapter(raw, seed=3, name=f"popgym:RepeatPrevious{level}")
  first = popgym.reset()
  deck = raw.unwrapped.deck
  # POPGym deals from the end of its shuffled card numbers; a card's suit is suits_idx.
  suits = deck.suits_idx[deck.idx[::-1]].astype(np.int32)

  # Half the actions right, half random, so both rewards occur.
  rng = np.random.default_rng(0)
  actions = rng.integers(0, 4, n - 1)
  right = rng.random(n - 1) < 0.5
  for t in np.flatnonzero(right):  # step t + 1 holds t + 1 cards, judged against hand[-k]
    actions[t] = suits[max(t + 1 - k, 0)]
  actions = np.eye(4, dtype=np.float32)[actions]

  source = jaxenvs.source(f"wmrl:RepeatPrevious{level}")
  assert source.obs_spec == popgym.obs_spec and source.act_spec == popgym.act_spec
  state = RepeatPreviousState(jnp.asarray(suits), jnp.int32(0))

  def play(state, action):
    state, obs, reward, terminated = source.transition(jax.random.PRNGKey(0), state, action)
    return state, (obs["obs"], reward, terminated)

  _, (obs, rewards, terminated) = jax.jit(lambda s, a: jax.lax.scan(play, s, a))(state, actions)
  steps = [popgym.step(a) for a in actions]

  np.testing.assert_array_equal(first["obs"], np.eye(4, dtype=np.float32)[suits[0]])
  np.testing.assert_array_equal(np.asarray(obs), np.stack([s["obs"] for s in steps]))
  np.testing.assert_array_equal(np.asarray(rewards), np.float32([s["reward"] for s in steps]))
  assert np.flatnonzero(np.asarray(terminated)).tolist() == [n - 2]  # the N - 1-th step
  assert [t for t, s in enumerate(steps) if s["is_terminal"]] == [n - 2]
  assert {round(float(r) * (n - k), 4) for r in np.asarray(rewards)[k - 1:]} == {1.0, -1.0}


def test_jax_repeat_previous_episodes_through_jaxenv():
  """The `wmrl:` id under JaxEnv's contract: a perfect player returns 1 over 51
  steps, the last terminal, then a fresh deck; the host view has popgym's specs."""
  env = jaxenvs.make("wmrl:RepeatPreviousEasy", num_envs=2)
  step = jax.jit(env.step)
  state, out = env.reset(0)
  first_suits = np.asarray(state.inner.suits)
  assert not np.array_equal(first_suits[0], first_suits[1])  # environment i draws its own deck
  total = np.zeros(2)
  for t in range(1, 52):
    suits, held = np.asarray(state.inner.suits), np.asarray(state.inner.dealt) + 1
    answer = suits[np.arange(2), np.maximum(held - 4, 0)]
    state, out = step(state, jnp.eye(4)[answer])
    total += np.asarray(out["reward"])
    assert np.asarray(out["is_terminal"]).tolist() == [t == 51] * 2, t
  np.testing.assert_allclose(total, 1.0, atol=1e-5)
  state, out = step(state, jnp.zeros((2, 4)))
  assert np.asarray(out["is_first"]).all()
  assert not np.array_equal(np.asarray(state.inner.suits), first_suits)
  with envs.make("wmrl:RepeatPreviousHard") as jax_env:
    with envs.make("popgym:RepeatPreviousHard") as pop:
      assert (jax_env.obs_spec, jax_env.act_spec) == (pop.obs_spec, pop.act_spec)


def test_jax_repeat_previous_settings():
  source = jaxenvs.source("wmrl:RepeatPrevious,num_decks=2,k=16")
  assert source.name == "wmrl:RepeatPrevious,num_decks=2,k=16"
  with pytest.raises(ValueError, match="1 <= k < 52"):
    jaxenvs.source("wmrl:RepeatPrevious,k=52")
  with pytest.raises(ValueError, match="unknown setting 'decks'; did you mean num_decks"):
    jaxenvs.source("wmrl:RepeatPreviousEasy,decks=2")
  with pytest.raises(ValueError, match="did you mean RepeatPrevious"):
    jaxenvs.source("wmrl:RepeatPrevius")


# --------------------------------------------------------------- gymnax MemoryChain

@pytest.mark.parametrize("settings, memory_length", [("", 5), (",memory_length=63", 63)])
def test_memory_chain_length_is_set_in_the_id(settings, memory_length):
  """bsuite's MemoryChain ends (a termination) after memory_length + 1 steps,
  where only the last step is rewarded: +-1 for naming the context bit. gymnax's
  step returns the observation from before the step, so the context (+-1 in
  obs[2]) shows at the reset and again after step 1: the judged action comes
  memory_length - 1 observations after the last sight of it."""
  env = jaxenvs.make(f"gymnax:MemoryChain-bsuite{settings}")
  assert env.name == f"gymnax:MemoryChain-bsuite{settings}"
  step = jax.jit(env.step)
  state, out = env.reset(0)
  context = int(np.asarray(out["obs"])[0, 2] > 0)  # +1 or -1 at the start
  answer = jnp.eye(2)[None, context]
  for t in range(1, memory_length + 2):
    state, out = step(state, answer)
    assert (np.asarray(out["obs"])[0, 2] != 0) == (t == 1), t
    assert bool(out["is_last"][0]) == (t == memory_length + 1), t
    assert float(out["reward"][0]) == (1.0 if t == memory_length + 1 else 0.0), t
  assert out["is_terminal"][0]


def test_gymnax_settings_are_checked():
  assert jaxenvs.make("gymnax:MemoryChain-bsuite,max_steps_in_episode=50").time_limit == 50
  with pytest.raises(ValueError, match="'memory_lenght'; did you mean memory_length"):
    jaxenvs.source("gymnax:MemoryChain-bsuite,memory_lenght=63")
  with pytest.raises(ValueError, match="memory_length='long' is not an int"):
    jaxenvs.source("gymnax:MemoryChain-bsuite,memory_length=long")
  with pytest.raises(ValueError, match="'63' is not key=value"):
    jaxenvs.source("gymnax:MemoryChain-bsuite,63")
