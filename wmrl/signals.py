"""Stop signals (SIGINT from Ctrl-C, SIGTERM from a scheduler) caught as requests.

Loops that must not be interrupted half-way (a training step, a save, the
suite runner's bookkeeping) install a handler that records the request and
read it between their steps. Imports nothing heavy, so the suite runner can
use it without loading JAX.
"""
from __future__ import annotations

import contextlib
import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def handling(handler):
  """Calls `handler(signum, frame)` on SIGINT and SIGTERM while inside, then
  restores the previous handlers. Outside the main thread, where Python sets
  no handlers, the signals stay as they are."""
  try:
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
  except ValueError:  # not the main thread
    yield
    return
  try:
    yield
  finally:
    for s, old in previous.items():
      signal.signal(s, old)
