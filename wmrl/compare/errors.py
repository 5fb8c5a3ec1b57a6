"""The error and warnings of `wmrl compare`."""
from __future__ import annotations

import sys


class CompareError(ValueError):
  """A problem with the user's runs or options; the message says the fix."""


def warn(message: str) -> None:
  print(f"wmrl compare: warning: {message}", file=sys.stderr)
