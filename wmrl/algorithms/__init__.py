"""The algorithms a run can train: each registered under a name with its
`Algorithm` (the contract, wmrl/algorithms/contract.py), its config class and
its checks. `Config.algorithm` names one.

    from wmrl import algorithms
    algorithms.register("mine", MINE, MineConfig, validate=check_mine)
    config = wmrl.make_config("gym:CartPole-v1", overrides={"algorithm": "mine"})

The config class is a frozen dataclass of the algorithm's own groups; a
config of that algorithm holds an instance, whose groups are addressed as
the config's own (`--model.units 64`, wmrl/config.py). This module imports
no JAX: configs load without it. An algorithm may be registered by its
import path ("package.module:NAME"), loaded when a run first asks for it,
as DreamerV3 is.

On the command line an algorithm that a module of yours registers is named
`module:NAME` (`wmrl train --algorithm mypkg.algos:mine ...`, as environment
ids name factories): the module is imported, from the working directory or
`sys.path`, and registers NAME. The config keeps that name, so `wmrl eval`
and a resume in a fresh process find the algorithm again.

| name | what | home |
| --- | --- | --- |
| `dreamerv3` | DreamerV3 (the reference's, module by module) | wmrl/algorithms/dreamerv3/ |
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

from wmrl.algorithms.dreamerv3 import config as dreamerv3_config
from wmrl.algorithms.dreamerv3.config import DreamerV3Config
from wmrl.registry import Registry, UnknownName, import_missing, load

if TYPE_CHECKING:
  from wmrl.algorithms.contract import Algorithm

Validate = Callable[[Any], None]  # (the whole Config) -> None; raises ValueError naming the field


@dataclasses.dataclass(frozen=True)
class Registered:
  algorithm: "Algorithm | str"  # the bundle, or "module:NAME" to import it from
  config_class: type
  validate: Validate | None = None


_REGISTRY: Registry[Registered] = Registry("algorithm", "add one with wmrl.algorithms.register")


def register(name: str, algorithm: "Algorithm | str", config_class: type,
             validate: Validate | None = None) -> None:
  """Makes `name` an algorithm runs can train: `algorithm` (an `Algorithm`, or
  "module:NAME" where one is), its settings' frozen dataclass `config_class`
  (each field a group or a value; none named algorithm, env or run), and
  `validate(config)`, which refuses settings that cannot work before a run
  starts. Registering a name again replaces it."""
  if not dataclasses.is_dataclass(config_class):
    raise TypeError(f"algorithm {name!r}: config_class must be a dataclass, got {config_class!r}")
  taken = {"algorithm", "algorithm_config", "env", "run"} & {  # every Config has these
      f.name for f in dataclasses.fields(config_class)}
  if taken:
    raise ValueError(f"algorithm {name!r}: its config class {config_class.__name__} has fields "
                     f"{', '.join(sorted(taken))}, which every config has; rename them")
  _REGISTRY.register(name, Registered(algorithm, config_class, validate))


def names() -> list[str]:
  return _REGISTRY.names()


def _entry(name: str) -> Registered:
  """The registration of `name`; "module:NAME" imports `module`, which registers NAME."""
  if name not in _REGISTRY and ":" in name:
    module, _, registered = name.partition(":")
    missing = import_missing(module)
    if missing:
      raise UnknownName(f"algorithm {name!r} is read as module:NAME, but module {module!r} "
                        f"could not be imported ({missing}); check the module path and sys.path")
    if registered not in _REGISTRY:
      raise UnknownName(f"algorithm {name!r}: importing {module} registered no algorithm "
                        f"{registered!r} (it registers {', '.join(_REGISTRY.names())}); call "
                        f"wmrl.algorithms.register({registered!r}, ...) in it")
    _REGISTRY.register(name, _REGISTRY.get(registered))
  return _REGISTRY.get(name)


def get(name: str) -> "Algorithm":
  """The `Algorithm` registered as `name` (imported where it was registered by path)."""
  entry = _entry(name)
  if isinstance(entry.algorithm, str):
    entry = dataclasses.replace(entry, algorithm=load(entry.algorithm))
    _REGISTRY.register(name, entry)
  return entry.algorithm


def config_class(name: str) -> type:
  return _entry(name).config_class


def validate(config) -> None:
  """The checks of `config.algorithm` (a refused name included)."""
  entry = _entry(config.algorithm)
  if entry.validate is not None:
    entry.validate(config)


register("dreamerv3", "wmrl.algorithms.dreamerv3.agent:DREAMERV3", DreamerV3Config,
         dreamerv3_config.validate)

__all__ = ["Registered", "config_class", "get", "names", "register", "validate"]
