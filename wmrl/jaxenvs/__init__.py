"""Environments written in JAX: ids, sources and the episode contract.

    gymnax:CartPole-v1                   (pip install -e '.[gymnax]')
    craftax:Craftax-Classic-Symbolic-v1  (pip install -e '.[craftax]')
    navix:Navix-Empty-5x5-v0             (pip install -e '.[navix]')
    playground:CartpoleBalance           (pip install -e '.[playground]')
    wmrl:RepeatPreviousEasy              (wmrl's own: POPGym's RepeatPrevious in JAX)

Settings ride in the id after commas: `gymnax:MemoryChain-bsuite,memory_length=63`
(gymnax's EnvParams), `wmrl:RepeatPrevious,num_decks=2,k=16`.

`make(env_id, num_envs=...)` gives a `JaxEnv` (pure functions; the fused
driver runs it inside its compiled iteration), `host(config, seed)` the same
environments behind the host `Env` interface. See `wmrl/jaxenvs/core.py`.
"""
from __future__ import annotations

# Which ids are JAX environments is known without JAX (wmrl/envs/jax_ids.py,
# whose prefixes tests/test_envs.py holds to PREFIXES below).
from wmrl.envs.jax_ids import is_jax_id
from wmrl.jaxenvs.core import EnvState, JaxEnv, Source
from wmrl.jaxenvs.host import HostEnv

# Prefix -> the module that makes its sources (imported when an id asks for it).
PREFIXES = {"gymnax": "wmrl.jaxenvs.gymnax_source", "craftax": "wmrl.jaxenvs.craftax_source",
            "navix": "wmrl.jaxenvs.navix_source", "playground": "wmrl.jaxenvs.playground_source",
            "wmrl": "wmrl.jaxenvs.wmrl_source"}


def module(prefix: str):
  """The module that makes `prefix`'s sources (imports its library)."""
  import importlib
  return importlib.import_module(PREFIXES[prefix])


def source(env_id: str) -> Source:
  """The `Source` an id names; a ValueError names the closest ids where it is unknown."""
  prefix, _, name = env_id.partition(":")
  if prefix not in PREFIXES:
    raise ValueError(f"{env_id!r} is not a JAX environment id (prefixes: {', '.join(PREFIXES)})")
  return module(prefix).source(name)


def make(env_id: str, *, num_envs: int = 1, time_limit: int = 0, action_repeat: int = 1) -> JaxEnv:
  """`num_envs` environments of `env_id`; `time_limit` 0 keeps the library's own."""
  return JaxEnv(source(env_id), num_envs, time_limit or None, action_repeat)


def from_config(config, *, num_envs: int | None = None) -> JaxEnv:
  """The JAX environments an `EnvConfig` describes (refusing what they cannot do)."""
  if config.pixels:
    raise ValueError(f"env.pixels is for host environments that render; {config.id} is a JAX "
                     "environment and renders no frames: drop env.pixels")
  if config.parallel:
    raise ValueError(f"env.parallel runs host environments in subprocesses; {config.id} is a JAX "
                     "environment, stepped as one program: drop env.parallel")
  return make(config.id, num_envs=num_envs or config.num_envs, time_limit=config.time_limit,
              action_repeat=config.action_repeat)


def host(config, seed: int, num_envs: int | None = None) -> HostEnv:
  """`from_config`'s environments behind the host `Env` interface, seeded `seed`."""
  return HostEnv(from_config(config, num_envs=num_envs), seed)


__all__ = ["EnvState", "HostEnv", "JaxEnv", "Source", "from_config", "host",
           "is_jax_id", "make", "source"]
