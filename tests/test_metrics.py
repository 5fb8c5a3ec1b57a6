"""Tests for wmrl/metrics.py: the metric buffer averages what it holds and stops
at the first non-finite value; a state with NaN or inf is never saved.
tests/test_run.py shows a run stopping on a NaN loss; tests/test_seeds.py
the seed named on a seeds axis."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wmrl.metrics import MetricBuffer, NonFiniteError, check_state_finite


def test_results_are_the_means_since_the_last_results():
  """Catches a buffer that keeps earlier records in its means, or drops some."""
  buffer = MetricBuffer()
  buffer.add(10, {"loss": jnp.float32(1.0), "norm": jnp.float32(4.0)})
  buffer.add(11, {"loss": jnp.float32(3.0), "norm": jnp.float32(8.0)})
  assert buffer.results() == [{"loss": 2.0, "norm": 6.0}]
  assert buffer.results() == [{}]  # emptied by the last results
  buffer.add(12, {"loss": jnp.float32(5.0), "norm": jnp.float32(0.0)})
  assert buffer.results() == [{"loss": 5.0, "norm": 0.0}]


def test_a_seeds_axis_gives_each_seed_its_own_means():
  """Catches means taken over the seeds (one seed's record mixed into another's)."""
  buffer = MetricBuffer([3, 5])
  buffer.add(10, {"loss": np.array([1.0, 10.0])})
  buffer.add(11, {"loss": np.array([3.0, 30.0])})
  assert buffer.results() == [{"loss": 2.0}, {"loss": 20.0}]
  assert MetricBuffer([3, 5]).results() == [{}, {}]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_value_is_refused_naming_metric_value_and_step(bad):
  """Catches a NaN or inf that would be averaged into the log and the run going on
  to save over its last good checkpoint."""
  buffer = MetricBuffer()
  buffer.add(10, {"loss/rec": jnp.float32(1.0), "loss/rew": jnp.float32(2.0)})
  buffer.add(11, {"loss/rec": jnp.float32(1.0), "loss/rew": jnp.float32(bad)})
  with pytest.raises(NonFiniteError, match=rf"metric 'loss/rew' became {bad} at environment "
                                           r"step 11; the run stops here"):
    buffer.check()
  with pytest.raises(NonFiniteError):  # results check as well
    buffer.results()


def test_state_with_nan_or_inf_is_refused_naming_the_array():
  """Catches a diverged state saved over the last good checkpoint."""
  state = {"params": {"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)},
           "step": np.int32(7), "key": jax.random.key(0)}
  check_state_finite(state, 100)  # keys and integers are no floats to check
  state["params"]["b"] = np.array([0.0, np.inf, 0.0], np.float32)
  with pytest.raises(NonFiniteError, match=r"state array 'params/b' of seed 4 holds NaN or inf "
                                           r"at environment step 100"):
    check_state_finite(state, 100, " of seed 4")


def test_bfloat16_state_with_nan_is_refused():
  """Catches a diverged state kept in bfloat16 (an algorithm's choice) saved
  over the last good checkpoint."""
  with pytest.raises(NonFiniteError, match="'params/w'"):
    check_state_finite({"params": {"w": jnp.full((2, 3), jnp.nan, jnp.bfloat16)}}, 100)
