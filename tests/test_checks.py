"""Tests for wmrl/checks.py: the settings a run refuses before it starts, and the
changes a resume refuses or reports. Each check is called directly, on configs
and spaces alone (no run, no training); tests/test_run.py shows a run making
them before it writes anything."""
import jax
import numpy as np
import pytest

from conftest import counter_config
from wmrl import algorithms, checkpoint, checks, testing
from wmrl.replay import Replay

SPACES = testing.SPACES["vector-continuous"]


@pytest.mark.parametrize("overrides, message", [
    ({"run.train_ratio": 0}, "run.train_ratio must be positive, got 0"),
    ({"run.train_ratio": -3}, "run.train_ratio must be positive, got -3"),
    ({"run.steps": 0}, "run.steps must be positive"),
    ({"run.batch_length": 1}, "run.batch_length >= 2"),
    ({"run.replay_context": -1}, "run.replay_context must be >= 0"),
    ({"env.num_envs": 0}, "env.num_envs must be positive"),
    ({"run.replay_capacity": 6}, "run.replay_capacity=6 cannot hold one training sequence"),
    ({"run.report_every": -1}, "run.report_every must be >= 0"),
    ({"run.driver": "gpu"}, "run.driver must be auto, host or fused, got .gpu."),
    ({"algorithm": "dreamerv4"}, "unknown algorithm 'dreamerv4'"),
    ({"model.encoder.mults": (2, 0)}, r"model.encoder.mults .* must be positive whole numbers, got \(2, 0\)"),
    ({"model.decoder.units": 0}, "model.decoder.units must be a positive whole number, got 0"),
    ({"model.encoder.kernel": -5}, "model.encoder.kernel must be a positive whole number"),
    ({"model.actor.layers": -1}, "model.actor.layers must be a whole number >= 0, got -1"),
    ({"model.reward.bins": 0}, "model.reward.bins must be a whole number >= 1"),
    ({"model.ssm.policy_inputs": ("stoch", "state")}, "model.ssm.policy_inputs must name some of"),
    ({"model.ssm.policy_inputs": ()}, "model.ssm.policy_inputs must name some of"),
])
def test_settings_that_cannot_work_are_refused_naming_the_field(tmp_path, overrides, message):
  """Catches a check that is dropped or lets a bad value through (the run would
  fail later, or silently train on nonsense)."""
  with pytest.raises(ValueError, match=message):
    checks.validate(counter_config(10, **overrides), tmp_path)


def test_the_default_and_the_tiny_settings_pass(tmp_path):
  """Catches a check that refuses settings that work (every run would stop)."""
  checks.validate(counter_config(10), tmp_path)
  checks.validate(counter_config(10), tmp_path / "not-yet-made")


def test_logdir_that_is_a_file_is_refused(tmp_path):
  """Catches a run that would write its folders over (or into) a file."""
  path = tmp_path / "file"
  path.write_text("x")
  with pytest.raises(ValueError, match="logdir '.*file' is a file; give a directory"):
    checks.validate(counter_config(10), path)


def test_a_fixed_field_changed_on_resume_is_refused_naming_old_and_new():
  """Catches a resume whose saved replay or environments no longer fit the run."""
  saved = counter_config(30)
  for name, value in (("env.id", "fake_envs:make_image_counter"), ("run.replay_capacity", 999),
                      ("env.num_envs", 2)):
    assert name in checks.FIXED_ON_RESUME
    with pytest.raises(ValueError, match=rf"cannot resume with a changed {name} \({name}: "
                                         rf".* -> {value!r}\)"):
      checks.check_resume(saved, saved.replace(**{name: value}), *SPACES)


def test_a_model_field_that_changes_the_arrays_is_refused_naming_them():
  """Catches a resume that would load a checkpoint into a state of other shapes."""
  with pytest.raises(ValueError, match=r"changed model.rssm.deter \(model.rssm.deter: 32 -> 64\)"
                                       r": the state would have other arrays \(state/.*float32"):
    checks.check_resume(counter_config(30), counter_config(30, **{"model.rssm.deter": 64}),
                        *SPACES)


def test_settings_that_change_no_array_are_reported_and_allowed():
  """Catches a resume refused for a change the saved state can take (the
  shapes compared wrongly), or one made without saying so."""
  changed = {"model.rssm.free_nats": 0.5, "model.rssm.unimix": 0.02, "run.train_ratio": 24}
  notes = checks.check_resume(counter_config(30), counter_config(30, **changed), *SPACES)
  assert notes == ["config field model.rssm.free_nats changed on resume: 1.0 -> 0.5",
                   "config field model.rssm.unimix changed on resume: 0.01 -> 0.02",
                   "config field run.train_ratio changed on resume: 12.0 -> 24.0"]
  assert checks.check_resume(counter_config(30), counter_config(30), *SPACES) == []


def test_a_changed_replay_context_is_reported_leaving_the_replay_to_its_own_check():
  """Catches check_resume refusing a context change by the config alone: whether
  it can resume depends on what the saved replay holds (check_replay_entries)."""
  for old, new in ((1, 2), (1, 0), (0, 1)):
    notes = checks.check_resume(counter_config(30, **{"run.replay_context": old}),
                                counter_config(30, **{"run.replay_context": new}), *SPACES)
    assert notes == [f"config field run.replay_context changed on resume: {old} -> {new}"]


def test_saved_replay_without_the_latents_is_refused_for_a_context():
  """Catches a resume that would train from latents a replay never stored (or
  store latents a run without context never writes back)."""
  config = counter_config(30)
  algo = algorithms.get("dreamerv3")
  state = jax.eval_shape(lambda k: algo.init(k, *SPACES, config), jax.random.key(0))
  bare, with_latents = Replay(100), Replay(100)
  step = {"obs": np.zeros((1, 5), np.float32), "is_first": np.ones(1, bool)}
  bare.add(step)
  with_latents.add({**step, "latent/deter": np.zeros((1, 32), np.float32),
                    "latent/stoch": np.zeros((1, 4, 4), np.float32)})
  with pytest.raises(ValueError, match=r"run.replay_context=1: the saved replay has no "
                                       r"latent/deter, latent/stoch"):
    checks.check_replay_entries(bare, algo, state, 1)
  with pytest.raises(ValueError, match=r"run.replay_context=0: the saved replay holds "
                                       r"latent/deter, latent/stoch"):
    checks.check_replay_entries(with_latents, algo, state, 0)
  for replay, context in ((bare, 0), (with_latents, 1), (with_latents, 3), (Replay(100), 1)):
    checks.check_replay_entries(replay, algo, state, context)


def test_state_shapes_are_the_arrays_of_a_fresh_state_by_tree_path():
  """Catches shapes computed from another config than the one given (a resume
  check comparing the wrong states)."""
  small = checks.state_shapes(counter_config(30), *SPACES)
  big = checks.state_shapes(counter_config(30, **{"model.rssm.deter": 64}), *SPACES)
  assert small.keys() == big.keys() and small != big
  assert all(isinstance(s, jax.ShapeDtypeStruct) for s in small.values())
  assert {s.shape for s in small.values()} != {s.shape for s in big.values()}


def _save_one(logdir):
  """A committed checkpoint of a one-array state in `logdir`."""
  checkpoint.save(logdir, {"w": np.zeros(2, np.float32)}, Replay(10),
                  {"config": counter_config(10).to_dict(), "counters": {"env_steps": 10}})


def test_logdir_of_the_other_kind_of_run_is_refused(tmp_path):
  """Catches a run of several seeds resuming over a one-seed run's checkpoints (or
  the reverse), which would train fresh beside them instead of resuming."""
  one, several = tmp_path / "one", tmp_path / "several"
  _save_one(one)
  _save_one(several / "seed-0")
  _save_one(several / "seed-1")
  checks.check_layout(one, seeds_axis=False)
  checks.check_layout(several, seeds_axis=True)
  checks.check_layout(tmp_path / "new", seeds_axis=True)
  with pytest.raises(ValueError, match="holds a run of one seed"):
    checks.check_layout(one, seeds_axis=True)
  with pytest.raises(ValueError, match=r"holds a run of several seeds \(seed-0, seed-1\)"):
    checks.check_layout(several, seeds_axis=False)
