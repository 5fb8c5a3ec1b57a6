"""Environments written in JAX, as pure functions in wmrl's step format.

A `Source` is one foreign JAX environment (gymnax, Craftax, Navix, MuJoCo
Playground) reduced to two pure, unbatched functions: `init(key) -> (inner,
obs)` and `transition(key, inner, action) -> (inner, obs, reward,
terminated)`, where `action` is a model-format vector (wmrl/spaces.py) and
`terminated` means the task ended (a fall, a goal), never a time limit.

`JaxEnv` runs `num_envs` copies of a source with episodes of our own making,
the same contract as the host `Env` (wmrl/envs/base.py):

- a step after one with `is_last` ignores its action and returns the first
  step of a new episode (`is_first`, reward 0), so every episode's final
  observation is returned exactly once; the libraries' own auto-resets drop
  it, and so they are never used;
- every new episode starts from a fresh random initial state (`init` with a
  key of its own), not from one cached first state;
- the time limit is ours: the step that reaches it has `is_last` without
  `is_terminal` (a truncation), whatever the library does with its own.

Its state is a pytree (`EnvState`), so the fused driver carries it through
`lax.scan`, and checkpoints save it: a resumed run continues the very
episodes it stopped in.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from wmrl.spaces import ActionSpec, ArraySpec

Key = jax.Array  # raw uint32 [2] key data (legacy keys: they save as plain arrays)


@dataclasses.dataclass(frozen=True)
class Source:
  """One JAX environment as two pure, unbatched functions (see module doc).

  `time_limit` is the library's own episode length (0: none); `JaxEnv` ends
  episodes there as truncations unless told another limit.
  """

  name: str
  obs_spec: dict[str, ArraySpec]
  act_spec: ActionSpec
  init: Callable[[Key], tuple[Any, dict]]
  transition: Callable[[Key, Any, jax.Array], tuple[Any, dict, jax.Array, jax.Array]]
  time_limit: int = 0


class EnvState(NamedTuple):
  """The state of `num_envs` environments, every leaf with leading axis N."""

  inner: Any  # the library's own state
  key: jax.Array  # uint32 [N, 2]: each environment's key for its next draws
  time: jax.Array  # int32 [N]: steps into the current episode
  done: jax.Array  # bool [N]: the last step had is_last, so the next one resets


def _first(obs: dict) -> dict:
  return {**obs, "reward": jnp.float32(0.0), "is_first": jnp.bool_(True),
          "is_last": jnp.bool_(False), "is_terminal": jnp.bool_(False)}


class JaxEnv:
  """`num_envs` copies of a `Source` with wmrl's episode contract (module doc).

      env = JaxEnv(source, num_envs=16)
      state, step = env.reset(seed=0)          # step: dict of [16, ...] arrays
      state, step = env.step(state, actions)   # float32 [16, act_spec.dim]

  Both are pure and jittable (`reset` takes the seed as a traced int too).
  Environment i of seed s draws from `PRNGKey(s + i)`, as the host envs are
  seeded `s + i`. `action_repeat` R > 1 repeats each action R times, summing
  the rewards and stopping at the end of an episode; the time limit counts
  the source's own steps, before the repeat, as the host wrappers do.
  """

  def __init__(self, source: Source, num_envs: int = 1, time_limit: int | None = None,
               action_repeat: int = 1):
    for name, value in (("num_envs", num_envs), ("action_repeat", action_repeat)):
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"JaxEnv {name} must be a positive int, got {value!r}")
    self.source = source
    self.num_envs = num_envs
    self.time_limit = source.time_limit if time_limit is None else int(time_limit)
    if self.time_limit < 0:
      raise ValueError(f"JaxEnv time_limit must be >= 0 (0: none), got {time_limit!r}")
    self.action_repeat = action_repeat
    self.obs_spec = source.obs_spec
    self.act_spec = source.act_spec
    self.name = source.name

  def __repr__(self) -> str:
    return (f"JaxEnv({self.name}, num_envs={self.num_envs}, time_limit={self.time_limit}, "
            f"action_repeat={self.action_repeat})")

  def reset(self, seed) -> tuple[EnvState, dict]:
    """Every environment's first step; environment i draws from `PRNGKey(seed + i)`."""
    seeds = jnp.asarray(seed, jnp.uint32) + jnp.arange(self.num_envs, dtype=jnp.uint32)
    keys = jax.vmap(jax.random.PRNGKey)(seeds)
    keys, init_keys = _split(keys)
    inner, obs = jax.vmap(self.source.init)(init_keys)
    n = self.num_envs
    state = EnvState(inner, keys, jnp.zeros(n, jnp.int32), jnp.zeros(n, bool))
    return state, jax.vmap(_first)(obs)

  def step(self, state: EnvState, action: jax.Array) -> tuple[EnvState, dict]:
    """Each environment's next step (a reset where the last step ended an episode)."""
    return jax.vmap(self._step_one)(state, jnp.asarray(action, jnp.float32))

  def _step_one(self, state: EnvState, action: jax.Array) -> tuple[EnvState, dict]:
    key, init_key = jax.random.split(state.key)
    # Both are computed and one is kept: under vmap a branch is a select anyway.
    key, (inner, obs, reward, terminal, time) = self._repeat(key, state, action)
    last = terminal | ((time >= self.time_limit) if self.time_limit else False)
    stepped = EnvState(inner, key, time, last), {
        **obs, "reward": reward.astype(jnp.float32), "is_first": jnp.bool_(False),
        "is_last": last, "is_terminal": terminal}
    reset_inner, reset_obs = self.source.init(init_key)
    reset = EnvState(reset_inner, key, jnp.int32(0), jnp.bool_(False)), _first(reset_obs)
    return jax.tree.map(lambda a, b: jnp.where(state.done, a, b), reset, stepped)

  def _repeat(self, key, state: EnvState, action):
    """`action_repeat` source steps, each after the first only while the episode runs."""
    def one(carry, _):
      key, inner, obs, reward, terminal, time = carry
      key, step_key = jax.random.split(key)
      inner2, obs2, r, term = self.source.transition(step_key, inner, action)
      ended = terminal | ((time >= self.time_limit) if self.time_limit else False)
      new = (inner2, obs2, reward + r.astype(jnp.float32), term.astype(bool), time + 1)
      old = (inner, obs, reward, terminal, time)
      kept = jax.tree.map(lambda a, b: jnp.where(ended, b, a), new, old)
      return (key, *kept), None

    inner0 = state.inner
    obs0 = jax.eval_shape(self.source.init, state.key)[1]
    obs0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), obs0)
    carry = (key, inner0, obs0, jnp.float32(0.0), jnp.bool_(False), state.time)
    carry, _ = jax.lax.scan(one, carry, None, length=self.action_repeat)
    key, inner, obs, reward, terminal, time = carry
    return key, (inner, obs, reward, terminal, time)


def _split(keys: jax.Array) -> tuple[jax.Array, jax.Array]:
  pairs = jax.vmap(jax.random.split)(keys)
  return pairs[:, 0], pairs[:, 1]


def split_settings(name: str) -> tuple[str, str]:
  """`MemoryChain-bsuite,memory_length=63` -> ("MemoryChain-bsuite", "memory_length=63")."""
  base, _, settings = name.partition(",")
  return base, settings


def parse_settings(env_id: str, settings: str, defaults: dict[str, Any]) -> dict[str, Any]:
  """`key=value,...` from an id over `defaults`, each value read as its default's type.

  Settings ride in the id, after commas, so that they reach every place an id
  goes (the config, the command line, a resumed run) without a field of their
  own; a comma needs no quoting in any shell, where `?` or `[...]` would.
  """
  out = dict(defaults)
  for item in filter(None, settings.split(",")):
    key, sep, text = item.partition("=")
    if not sep or key not in defaults:
      from wmrl.names import did_you_mean
      problem = f"{item!r} is not key=value" if not sep else f"unknown setting {key!r}"
      raise ValueError(f"{env_id}: {problem}{did_you_mean(key, defaults) if sep else ''}; "
                       f"settings are {', '.join(f'{k}={v!r}' for k, v in defaults.items())}")
    kind = type(defaults[key])
    try:
      if kind is bool:
        value = {"true": True, "1": True, "false": False, "0": False}[text.lower()]
      else:
        value = kind(text)
    except (KeyError, ValueError):
      kind_name = {bool: "a bool", int: "an int", float: "a float"}.get(kind, kind.__name__)
      raise ValueError(f"{env_id}: setting {key}={text!r} is not {kind_name} "
                       f"(its default is {defaults[key]!r})") from None
    out[key] = value
  return out


def box_action(low, high) -> Callable[[jax.Array], jax.Array]:
  """Model-format [-1, 1] -> [low, high] per dimension (infinite bounds pass
  through unscaled), as the host adapters' `BoxScaler` does."""
  low, high = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)
  finite = jnp.isfinite(low) & jnp.isfinite(high)
  low0 = jnp.where(finite, low, -1.0)
  half = 0.5 * (jnp.where(finite, high, 1.0) - low0)
  return lambda action: low0 + (jnp.clip(action, -1.0, 1.0) + 1.0) * half
