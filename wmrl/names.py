"""Suggestions for mistyped names: one helper behind every "did you mean".

    raise ValueError(f"unknown preset '{name}'{did_you_mean(name, PRESETS)}")

Config fields, presets, flags, suites, tasks, references and environment ids
all suggest the same way, so a typo reads the same wherever it is made.
"""
from __future__ import annotations

import difflib
from typing import Iterable

# difflib's own default: high enough that unrelated names are not offered.
CUTOFF = 0.6


def close_names(name: str, known: Iterable[str], n: int = 3, cutoff: float = CUTOFF) -> list[str]:
  """Up to `n` of `known` closest to `name`, closest first; cutoff 0 always offers some."""
  return difflib.get_close_matches(name, list(known), n=n, cutoff=cutoff)


def did_you_mean(name: str, known: Iterable[str], n: int = 3, cutoff: float = CUTOFF) -> str:
  """'; did you mean a, b?' for the names close to `name`, or '' when none is."""
  close = close_names(name, known, n, cutoff)
  return f"; did you mean {', '.join(close)}?" if close else ""
