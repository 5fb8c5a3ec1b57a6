"""The algorithms `Config.algorithm` names, each an `Algorithm` bundle (`wmrl/algorithm.py`)."""
from __future__ import annotations

from wmrl import agent
from wmrl.algorithm import Algorithm

ALGORITHMS: dict[str, Algorithm] = {"dreamerv3": agent.DREAMERV3}


def get(name: str) -> Algorithm:
  if name not in ALGORITHMS:
    raise ValueError(f"unknown algorithm '{name}'; known: {', '.join(ALGORITHMS)}")
  return ALGORITHMS[name]
