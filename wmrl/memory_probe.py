"""A probe of a world model's memory: the world model alone, trained on
random-policy RepeatPrevious episodes, asked whether each rewarded step's
reward is positive.

In RepeatPrevious (wmrl/jaxenvs/wmrl_source.py) the step after the agent
names a suit earns +1/(N - k) where the suit is that of the card `span`
cards before the latest one seen, -1/(N - k) where not. Under a random
policy a model that remembers nothing can say only that a match has chance
1/4: its binary cross-entropy on the reward's sign is H(0.25) = 0.811
bits. A model that remembers the card and reads the action knows the sign:
0 bits. So the bits on rewarded steps of held-out episodes measure memory
over `span` steps and nothing else.

The rewards are small (+-1/48 at span 3): at +-1/48 a sign is a sliver of
the reward loss (most of the two-hot target's mass sits on the 0 bin either
way). The probe trains on the rewards times the config's
`behavior.reward_scale`, as the agent does; `unit_reward_scale(span)`, N - k,
makes them +-1, and the benchmark uses it: the sign is the question.

The reward head predicts a two-hot distribution over bins (wmrl/dists.py); the probability that the reward is
positive is the mass above 0 against the mass below, P(r > 0) /
(P(r > 0) + P(r < 0)).

    result = memory_probe.run(config, span=31, updates=2000)

`benchmarks/memory.py probe` runs it over models, window lengths and spans;
tests/test_memory_probe.py runs a short one.
"""
from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from wmrl import dists
from wmrl.algorithms.dreamerv3 import agent
from wmrl.algorithms.dreamerv3.world_model import world_model_loss
from wmrl.config import Config
from wmrl.jaxenvs.wmrl_source import CARDS_PER_DECK, SUITS, repeat_previous
from wmrl.optim import make_optimizer
from wmrl.spaces import ActionSpec, ArraySpec

MEMORYLESS_BITS = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))  # H(0.25) = 0.811


def deck_for(span: int) -> tuple[int, int]:
  """(num_decks, k) of a RepeatPrevious with recall span `span` (k - 1, see
  docs/memory.md): POPGym's own where it has one (3, 31, 63), else the
  smallest deck with room for twice the span."""
  popgym = {3: (1, 4), 31: (2, 32), 63: (3, 64)}
  if span in popgym:
    return popgym[span]
  k = span + 1
  return -(-2 * k // CARDS_PER_DECK), k


def unit_reward_scale(span: int) -> float:
  """N - k: the `behavior.reward_scale` that makes span `span`'s rewards +-1."""
  num_decks, k = deck_for(span)
  return float(CARDS_PER_DECK * num_decks - k)


def episodes(span: int, count: int, seed: int) -> dict[str, np.ndarray]:
  """`count` random-policy episodes [count, N] in replay's step format: the
  observation, the action taken there (uniform random), the reward that
  arrived with the observation (+-1/(N - k), as the environment gives it), and
  the flags."""
  num_decks, k = deck_for(span)
  source = repeat_previous(num_decks, k)
  length = CARDS_PER_DECK * num_decks  # the reset's card and N - 1 steps

  def episode(key):
    init_key, act_key = jax.random.split(key)
    state, obs = source.init(init_key)
    actions = jax.nn.one_hot(jax.random.randint(act_key, (length,), 0, SUITS), SUITS)

    def step(carry, action):
      state, obs = carry
      state, next_obs, reward, _ = source.transition(None, state, action)
      return (state, next_obs), (next_obs["obs"], reward)

    _, (obs_rest, rewards) = jax.lax.scan(step, (state, obs), actions[:-1])
    return (jnp.concatenate([obs["obs"][None], obs_rest]), actions,
            jnp.concatenate([jnp.zeros(1), rewards]))

  obs, actions, rewards = jax.jit(jax.vmap(episode))(
      jax.random.split(jax.random.key(seed), count))
  steps = np.arange(length)
  flags = lambda at: np.broadcast_to(steps == at, (count, length)).copy()
  return {"obs": np.asarray(obs, np.float32), "action": np.asarray(actions, np.float32),
          "reward": np.asarray(rewards, np.float32), "is_first": flags(0),
          "is_last": flags(length - 1), "is_terminal": flags(length - 1)}


def windows(data: dict, batch: int, length: int, rng: np.random.Generator) -> dict:
  """Windows [batch, length] from the episodes laid end to end (episode starts
  inside a window are marked by `is_first`)."""
  stream = {k: v.reshape(-1, *v.shape[2:]) for k, v in data.items()}
  starts = rng.integers(0, len(stream["reward"]) - length, batch)
  index = starts[:, None] + np.arange(length)
  return {k: v[index] for k, v in stream.items()}


@dataclasses.dataclass
class ProbeResult:
  span: int
  dynamics: str
  length: int  # training window
  updates: int
  bits: float  # binary cross-entropy of the reward's sign on rewarded held-out steps
  seconds: float

  @property
  def fraction_of_memoryless(self) -> float:
    return self.bits / MEMORYLESS_BITS


def positive_probability(reward_logits, bins: int):
  """P(r > 0) / (P(r > 0) + P(r < 0)) of a two-hot reward head's logits [..., bins]."""
  probs = jax.nn.softmax(reward_logits.astype(jnp.float32), -1)
  values = dists.twohot_bins(bins)
  above, below = (probs * (values > 0)).sum(-1), (probs * (values < 0)).sum(-1)
  return above / jnp.maximum(above + below, 1e-12)


def sign_bits(state, data: dict) -> float:
  """The reward-sign cross-entropy in bits over the rewarded steps of whole episodes [E, N]."""
  return float(_sign_bits(state, {k: jnp.asarray(v) for k, v in data.items()}))


@jax.jit
def _sign_bits(state, batch: dict):
  wm, _, _ = agent.modules(state.spec, state.params)
  prev = jnp.concatenate([jnp.zeros_like(batch["action"][:, :1]), batch["action"][:, :-1]], 1)
  _, post, _, _ = wm.dynamics.observe(wm.dynamics.initial(prev.shape[:1]), prev,
                                      wm.encoder(batch), batch["is_first"], jax.random.key(0))
  p = jnp.clip(positive_probability(wm.reward(wm.dynamics.features(post)), wm.bins), 1e-6, 1 - 1e-6)
  reward = batch["reward"]
  bits = -jnp.where(reward > 0, jnp.log2(p), jnp.log2(1 - p))
  rewarded = reward != 0
  return (bits * rewarded).sum() / rewarded.sum()


def run(config: Config, span: int, updates: int, train_episodes: int = 400,
        test_episodes: int = 64, seed: int = 0, progress=None) -> ProbeResult:
  """Trains `config`'s world model alone on random-policy episodes of span
  `span` for `updates` updates of `config.run.batch_size` windows of
  `config.run.batch_length` steps (each from the initial state, no replay
  context), and measures the reward-sign bits on held-out episodes."""
  train, test = episodes(span, train_episodes, seed), episodes(span, test_episodes, seed + 1)
  obs_spec = {"obs": ArraySpec((SUITS,), "float32")}
  config = config.replace(**{"run.replay_context": 0})
  state = agent.init(jax.random.key(seed), obs_spec, ActionSpec("discrete", (SUITS,)), config)
  optimizer = make_optimizer(config.optim)
  scales = dataclasses.asdict(config.loss_scales)

  @jax.jit
  def update(state, batch):
    key, loss_key = jax.random.split(state.key)
    data, prev = agent.split_batch(batch, 0)
    data = agent.learner_rewards(data, config.behavior)

    def loss(wm_params):
      wm = nnx.merge(state.spec.graphs[0], wm_params)
      start = wm.dynamics.initial(prev.shape[:1])
      losses, _, _ = world_model_loss(wm, start, data, prev, loss_key, config.behavior.cont_target)
      return sum(scales[name] * value.mean() for name, value in losses.items())

    value, grads = jax.value_and_grad(loss)(state.params["wm"])
    grads = {**jax.tree.map(jnp.zeros_like, state.params), "wm": grads}
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    state = state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state,
                          key=key, step=state.step + 1)
    return state, value

  rng = np.random.default_rng(seed)
  start = time.perf_counter()
  for i in range(updates):
    batch = windows(train, config.run.batch_size, config.run.batch_length, rng)
    state, value = update(state, batch)
    if progress and (i + 1) % max(1, updates // 10) == 0:
      progress(i + 1, float(value), sign_bits(state, test))
  bits = sign_bits(state, test)
  return ProbeResult(span, config.model.dynamics, config.run.batch_length, updates, bits,
                     time.perf_counter() - start)
