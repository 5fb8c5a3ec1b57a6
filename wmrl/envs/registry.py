"""Environment ids -> makers, and the registry of users' own envs.

Ids: ``gym:CartPole-v1`` (any registered Gymnasium id, also bare, and
Gymnasium's own ``gym:module:EnvId`` form), ``dmc:walker-walk`` (domain-task),
``popgym:RepeatPreviousEasy`` (a POPGym class), ``custom:NAME`` (see
``register``) and ``some.module.path:factory``.
"""
from __future__ import annotations

from typing import Callable

import gymnasium

from wmrl.envs import jax_ids
from wmrl.envs.dmc import load_suite
from wmrl.envs.makers import DMCMaker, FactoryMaker, GymMaker, ModuleMaker, PopgymMaker
from wmrl.envs.popgym_ids import gym_ids as popgym_ids
from wmrl.names import close_names
from wmrl.registry import import_missing

_CUSTOM: dict[str, Callable[[], gymnasium.Env]] = {}
_PREFIXES = ("gym", "dmc", "popgym", "custom")
_FORMS = ("gym:CartPole-v1, dmc:walker-walk, popgym:RepeatPreviousEasy, custom:NAME "
          "(see wmrl.envs.register) or some.module:factory")


def register(name: str, factory: Callable[[], gymnasium.Env]) -> None:
  """Makes ``make(f"custom:{name}")`` build envs with ``factory()`` (no arguments).

  Registering a name again replaces its factory. With ``parallel=True`` the
  factory is pickled to the worker processes, so define it at module level.
  """
  if not isinstance(name, str) or not name or ":" in name:
    raise ValueError(f"custom env names are non-empty strings without ':', got {name!r}; "
                     "register('my-env', factory), then make('custom:my-env')")
  if not callable(factory):
    raise TypeError(f"register({name!r}, ...) needs a callable that returns a gymnasium.Env, "
                    f"got {type(factory).__name__}")
  _CUSTOM[name] = factory


def _known_ids() -> list[str]:
  ids = [f"gym:{key}" for key in gymnasium.registry]
  try:
    ids += [f"dmc:{domain}-{task}" for domain, task in load_suite().ALL_TASKS]
  except ImportError:
    pass  # without dm-control there are no dmc: ids to suggest
  try:
    ids += [f"popgym:{name}" for name in popgym_ids()]
  except ImportError:
    pass  # nor popgym: ids without popgym
  return ids + [f"custom:{name}" for name in _CUSTOM] + jax_ids.snapshot_ids()


def unknown_env(env_id: str, reason: str = "") -> ValueError:
  """A ValueError naming the closest known ids."""
  known = _known_ids()
  queries = [env_id] if ":" in env_id else [env_id] + [f"{p}:{env_id}" for p in _PREFIXES]
  matches = []
  for query in queries:
    matches += [m for m in close_names(query, known) if m not in matches]
  message = f"unknown environment {env_id!r}"
  if reason:
    message += f" ({reason})"
  if matches:
    return ValueError(f"{message}; did you mean {', '.join(matches[:3])}?")
  return ValueError(f"{message}; ids look like {_FORMS}")


def check(env_id: str) -> None:
  """Refuses an unknown host environment id with suggestions, before JAX loads.

  A JAX environment's id (gymnax:, navix:, ...) is left to its library, which
  checks it when the environment is built.
  """
  if not jax_ids.is_jax_id(env_id):
    resolve(env_id)


def resolve(env_id: str):
  """Returns the maker for ``env_id``, or raises a ValueError that says why not."""
  if not isinstance(env_id, str) or not env_id:
    raise ValueError(f"env_id must be a non-empty string like {_FORMS}; got {env_id!r}")
  prefix, sep, rest = env_id.partition(":")
  if not sep:
    if env_id in gymnasium.registry:
      return GymMaker(env_id)
    raise unknown_env(env_id)
  if prefix == "gym":
    if rest in gymnasium.registry:
      return GymMaker(rest)
    if ":" in rest:
      return _package_gym_maker(env_id, rest)
    raise unknown_env(env_id)
  if prefix == "dmc":
    domain, _, task = rest.partition("-")
    if (domain, task) in load_suite().ALL_TASKS:
      return DMCMaker(domain, task)
    raise unknown_env(env_id)
  if prefix == "popgym":
    gym_ids = popgym_ids()  # an ImportError naming the extra where popgym is missing
    if rest in gym_ids:
      return PopgymMaker(rest, gym_ids[rest])
    raise unknown_env(env_id)
  if prefix == "custom":
    if rest in _CUSTOM:
      return FactoryMaker(_CUSTOM[rest], env_id)
    raise unknown_env(env_id, f"no custom env {rest!r} is registered; call wmrl.envs.register first")
  return _module_maker(env_id, prefix, rest)


def _package_gym_maker(env_id: str, rest: str) -> GymMaker:
  """``gym:PACKAGE:ID``: Gymnasium's ``module:id`` form, checked here by importing
  the package (which registers its ids) as ``gymnasium.make`` will."""
  package, _, gym_id = rest.partition(":")
  missing = import_missing(package)
  if missing:
    raise ValueError(f"unknown environment {env_id!r}: read as gym:PACKAGE:ID, but package "
                     f"{package!r} could not be imported ({missing}); install the package that "
                     "registers the id, or check its name")
  if gym_id in gymnasium.registry:
    return GymMaker(rest)
  close = close_names(gym_id, list(gymnasium.registry))
  hint = f"; did you mean {', '.join(f'gym:{package}:{c}' for c in close[:3])}?" if close else ""
  raise ValueError(f"unknown environment {env_id!r}: importing {package!r} registered no "
                   f"Gymnasium id {gym_id!r}{hint}")


def _module_maker(env_id: str, module: str, attr: str) -> ModuleMaker:
  """Checks now, in this process, that ``module:attr`` imports and is callable."""
  if not attr:
    raise ValueError(f"env id {env_id!r} names no factory after ':'; write some.module:factory")
  missing = import_missing(module)
  if missing:
    raise unknown_env(env_id, f"read as module:factory, but module {module!r} could not be "
                      f"imported: {missing}; check the module path and sys.path")
  maker = ModuleMaker(module, attr)
  maker.factory()
  return maker
