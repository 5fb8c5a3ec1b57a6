"""Tests for wmrl/clocks.py: `Every` fires on the grid of its interval, once per
call however far the clock moved; `Rate` is the count per second since the
last reading. Both read a clock the test gives them."""
import pytest

from wmrl.clocks import Every, Rate


def test_every_fires_once_per_interval_on_its_grid():
  """Catches a schedule that drifts off its grid (logs at 0, 1003, 2006, ...) or
  fires more than once in one interval."""
  due = Every(1000)
  fired = [step for step in range(0, 5000, 7) if due(step)]
  # The first step at or past each multiple of 1000, measured from the grid point.
  assert fired == [1001, 2002, 3003, 4004]
  assert due.last == 4000


def test_every_fires_once_after_skipping_several_intervals_and_stays_on_the_grid():
  """Catches a catch-up burst (one firing per skipped interval) after a long step."""
  due = Every(100, last=200)
  assert not due(250)
  assert due(590)  # four intervals late: one firing
  assert not due(590) and due.last == 500
  assert not due(599) and due(600)


def test_every_zero_never_fires():
  """Catches interval 0 (the config's 'never') read as 'always'."""
  due = Every(0)
  assert not any(due(t) for t in range(0, 10_000, 100))


def test_every_counts_from_a_resumed_step():
  """Catches a resumed run that evaluates off the grid its checkpoint was on."""
  due = Every(1000, last=3000)
  assert not due(3999) and due(4000)


def test_rate_is_the_count_per_second_since_the_last_reading():
  """Catches a rate over the whole run (not the last interval) or one that never
  moves its reading on."""
  rate = Rate(100.0, count=50)
  assert rate(102.0, 70) == pytest.approx(10.0)  # 20 in 2 s
  assert rate(106.0, 74) == pytest.approx(1.0)  # 4 in the 4 s since the last reading
  assert (rate.time, rate.count) == (106.0, 74)
  assert rate(106.0, 74) == 0.0  # no time and no count: no division by zero
