"""When something is due and how fast something goes, in environment steps or
seconds: `Every` (the reference's `when.Every`) and `Rate`."""
from __future__ import annotations


class Every:
  """True once every `interval` (environment steps or seconds; 0: never), on the
  grid of multiples of `interval` counted from `last`."""

  def __init__(self, interval: float, last: float = 0.0):
    self.interval = interval
    self.last = last

  def __call__(self, now: float) -> bool:
    if not self.interval or now - self.last < self.interval:
      return False
    self.last = now - (now - self.last) % self.interval
    return True


class Rate:
  """Counts per second between one reading and the next (`__call__`)."""

  def __init__(self, now: float, count: float = 0):
    self.time, self.count = now, count

  def __call__(self, now: float, count: float) -> float:
    """The rate since the last reading (or the start), which this reading replaces."""
    rate = (count - self.count) / max(now - self.time, 1e-9)
    self.time, self.count = now, count
    return rate
