"""Sequence models of the world, shared by every algorithm: the contract
(contract.py), their settings (config.py) and the models, registered by the
name `model.dynamics` gives.

    from wmrl import dynamics
    dynamics.register("mine", "mypkg.models:Mine", "mine")  # settings: ModelConfig.mine
    model = dynamics.make(config.model, embed_dim, action_dim, rngs=rngs, dtype=dtype)

A model is built as `cls(settings, embed_dim, action_dim, *, rngs, dtype)`,
where `settings` is the field of the algorithm's model config that the
registration names. This module imports no JAX; models registered by import
path load when a run first builds one.

| name | model | settings |
| --- | --- | --- |
| `rssm` | DreamerV3's recurrent state-space model, a block GRU (rssm.py) | `model.rssm` |
| `ssm` | stacked diagonal linear recurrences in one parallel scan, R2I's design (ssm.py) | `model.ssm` |
"""
from __future__ import annotations

import dataclasses
from typing import Any

from wmrl.registry import Registry, load


@dataclasses.dataclass(frozen=True)
class Registered:
  model: Any  # the class, or "module:NAME" to import it from
  settings: str  # the field of the model config that holds its settings


_REGISTRY: Registry[Registered] = Registry("model.dynamics",
                                          "add one with wmrl.dynamics.register")


def register(name: str, model: Any, settings: str) -> None:
  """Makes `name` a `model.dynamics` choice: `model` (a class following the
  contract, or "module:NAME" where one is) built from the model config's
  field `settings`."""
  _REGISTRY.register(name, Registered(model, settings))


def names() -> list[str]:
  return _REGISTRY.names()


def make(model_config, embed_dim: int, action_dim: int, *, rngs, dtype):
  """The sequence model `model_config.dynamics` names, built from its settings."""
  entry = _REGISTRY.get(model_config.dynamics)
  cls = load(entry.model) if isinstance(entry.model, str) else entry.model
  return cls(getattr(model_config, entry.settings), embed_dim, action_dim, rngs=rngs, dtype=dtype)


register("rssm", "wmrl.dynamics.rssm:RSSM", "rssm")
register("ssm", "wmrl.dynamics.ssm:SSM", "ssm")

__all__ = ["make", "names", "register"]
