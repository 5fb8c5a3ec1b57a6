"""Stop signals (SIGINT from Ctrl-C, SIGTERM from a scheduler) caught as requests.

Loops that must not be interrupted half-way (a training step, a save, the
suite runner's bookkeeping) install a handler that records the request and
read it between their steps (`stop_signals`); a run that stopped so raises
`Stopped`. Imports nothing heavy, so the suite runner can use it without
loading JAX.
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


class Stopped(KeyboardInterrupt):
  """The run stopped on a signal after saving a checkpoint at the current step.

  A KeyboardInterrupt, so that code calling `train` stops as on Ctrl-C; `wmrl
  train` exits with the shell's code for the signal (130 for SIGINT, 143 for
  SIGTERM), with no traceback: nothing went wrong.
  """

  def __init__(self, signum: int, message: str):
    self.signum = signum
    super().__init__(message)


class StopRequest:
  """Which stop signal arrived, if any (set by the handler of `stop_signals`)."""

  def __init__(self):
    self.signal: int | None = None

  def __call__(self, signum, frame) -> None:
    if self.signal is not None:  # a second Ctrl-C: stop at once
      raise KeyboardInterrupt
    self.signal = signum


@contextlib.contextmanager
def stop_signals():
  """Turns SIGINT (Ctrl-C) and SIGTERM (a scheduler's stop) into a request the loop
  reads between steps, so neither interrupts JAX mid-dispatch or a save half-way."""
  request = StopRequest()
  with handling(request):
    yield request
