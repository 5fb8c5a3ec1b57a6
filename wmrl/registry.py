"""A named registry that others extend: `register(name, entry)`, `get(name)` with
a suggestion for a mistyped name, and entries given by import path
("package.module:NAME") that load when first asked for, so that a registry
of JAX modules can be read without importing JAX."""
from __future__ import annotations

import importlib
from typing import Any, Generic, TypeVar

from wmrl.names import did_you_mean

T = TypeVar("T")


class UnknownName(ValueError):
  """A name no entry of a registry has (a ValueError: a bad setting)."""


def import_missing(module: str) -> ModuleNotFoundError | None:
  """Imports `module` (a user's, named on the command line); returns the error
  where the module itself, or a package above it, does not exist. Where it
  exists but something it imports is missing, that is its own error: raised."""
  try:
    importlib.import_module(module)
  except ModuleNotFoundError as e:
    if e.name and (module == e.name or module.startswith(e.name + ".")):
      return e
    raise
  return None


def load(path: str) -> Any:
  """The object at "package.module:NAME"."""
  module, _, name = path.partition(":")
  return getattr(importlib.import_module(module), name)


class Registry(Generic[T]):
  """Entries by name; `what` names them in errors ("algorithm", "model.dynamics"),
  `how` says how to add one."""

  def __init__(self, what: str, how: str):
    self.what, self.how = what, how
    self._entries: dict[str, T] = {}

  def register(self, name: str, entry: T) -> None:
    """Adds `entry` as `name` (replacing one of that name)."""
    self._entries[name] = entry

  def names(self) -> list[str]:
    return list(self._entries)

  def get(self, name: str) -> T:
    if name not in self._entries:
      raise UnknownName(f"unknown {self.what} '{name}'{did_you_mean(name, self._entries)} "
                       f"(known: {', '.join(self._entries)}; {self.how})")
    return self._entries[name]

  def __contains__(self, name: str) -> bool:
    return name in self._entries
