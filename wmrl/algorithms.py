"""The algorithms `Config.algorithm` names, each an `Algorithm` bundle (`wmrl/algorithm.py`)."""
from __future__ import annotations

from wmrl import agent
from wmrl.algorithm import Algorithm
from wmrl.names import did_you_mean

ALGORITHMS: dict[str, Algorithm] = {"dreamerv3": agent.DREAMERV3}


def get(name: str) -> Algorithm:
  if name not in ALGORITHMS:
    raise ValueError(f"unknown algorithm '{name}'{did_you_mean(name, ALGORITHMS)} "
                     f"(known: {', '.join(ALGORITHMS)})")
  return ALGORITHMS[name]
