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

| name | what | home |
| --- | --- | --- |
| `dreamerv3` | DreamerV3 (the reference's, module by module) | wmrl/algorithms/dreamerv3/ |
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

from wmrl.algorithms.dreamerv3 import config as dreamerv3_config
from wmrl.algorithms.dreamerv3.config import DreamerV3Config
from wmrl.registry import Registry, load

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
  taken = {"algorithm", "algorithm_config", "env", "run"} & {
      f.name for f in dataclasses.fields(config_class)}
  if taken:
    raise ValueError(f"algorithm {name!r}: its config class {config_class.__name__} has fields "
                     f"{', '.join(sorted(taken))}, which every config has; rename them")
  _REGISTRY.register(name, Registered(algorithm, config_class, validate))


def names() -> list[str]:
  return _REGISTRY.names()


def get(name: str) -> "Algorithm":
  """The `Algorithm` registered as `name` (imported where it was registered by path)."""
  entry = _REGISTRY.get(name)
  if isinstance(entry.algorithm, str):
    entry = dataclasses.replace(entry, algorithm=load(entry.algorithm))
    _REGISTRY.register(name, entry)
  return entry.algorithm


def config_class(name: str) -> type:
  return _REGISTRY.get(name).config_class


def validate(config) -> None:
  """The checks of `config.algorithm` (a refused name included)."""
  entry = _REGISTRY.get(config.algorithm)
  if entry.validate is not None:
    entry.validate(config)


register("dreamerv3", "wmrl.algorithms.dreamerv3.agent:DREAMERV3", DreamerV3Config,
         dreamerv3_config.validate)

__all__ = ["Registered", "config_class", "get", "names", "register", "validate"]
