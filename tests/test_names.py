"""Tests for wmrl/names.py: the one "did you mean" helper."""
from wmrl.names import close_names, did_you_mean

KNOWN = ["dmc_proprio", "dmc_vision", "gym_mujoco", "atari100k"]


def test_did_you_mean_names_the_close_ones_closest_first():
  assert did_you_mean("gym_mujuco", KNOWN) == "; did you mean gym_mujoco?"
  assert did_you_mean("dmc_prop", KNOWN + ["dmc_props"]) == "; did you mean dmc_props, dmc_proprio?"


def test_did_you_mean_is_empty_when_nothing_is_close():
  assert did_you_mean("pong", KNOWN) == ""
  assert did_you_mean("x", []) == ""


def test_close_names_with_cutoff_zero_always_offers_some():
  assert close_names("pong", KNOWN, cutoff=0.0)
  assert len(close_names("dmc", KNOWN, n=2, cutoff=0.0)) == 2
