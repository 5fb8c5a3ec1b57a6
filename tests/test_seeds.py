"""Several seeds in one run: agent states stacked on a seed axis, the policy and
the update under `jax.vmap`, each seed's host side and outputs its own."""
import jax
import numpy as np
import pytest

from conftest import counter_config, load_saved
from wmrl import checkpoint, checks, run
from wmrl.compare.runs import find_runs
from wmrl.drivers import EnvironmentCrash, over_seeds
from wmrl.logging import read_metrics
from wmrl.metrics import MetricBuffer, NonFiniteError


def _config(steps, **overrides):
  return counter_config(steps, log_every=20, **overrides)


def _saved(logdir):
  """The latest checkpoint's state arrays, every replayed step ([env, time]), and run info."""
  state, replay, saved_run, _ = load_saved(logdir)
  return state, replay.streams(), saved_run


def _episodes(logdir):
  return [r for r in read_metrics(logdir / "metrics.jsonl") if "episode/score" in r]


def test_a_seed_trains_alike_beside_any_seeds_and_resumes_exactly(tmp_path):
  # Seed 3 at index 1 beside seed 0, straight; and at index 0 beside seed 5, stopped
  # and resumed. The seeds axis mixes nothing across seeds and every seed's host side
  # (environments, replay sampling, prefill actions, policy keys) is its own, so the
  # two seed-3 runs are bit-identical: parameters, optimiser state, replay, episodes.
  # The stop is right after an episode (20 steps, plus the reset step), so the resumed
  # environments start the episode the straight run starts there.
  run.train(_config(62, **{"run.seeds": (0, 3)}), tmp_path / "straight", console=False)
  run.train(_config(20, **{"run.seeds": (3, 5)}), tmp_path / "resumed", console=False)
  summary = run.train(_config(62, **{"run.seeds": (3, 5)}), tmp_path / "resumed", console=False)
  assert summary["env_steps"] == 62 and summary["updates"] > 40
  assert set(summary["seeds"]) == {3, 5}
  a_state, a_replay, a_run = _saved(tmp_path / "straight" / "seed-3")
  b_state, b_replay, b_run = _saved(tmp_path / "resumed" / "seed-3")
  assert a_run["counters"] == b_run["counters"]
  assert a_run["config"]["run"]["seed"] == 3 and a_run["config"]["run"]["seeds"] == []
  for name in a_state:
    np.testing.assert_array_equal(a_state[name], b_state[name], err_msg=name)
  assert a_replay.keys() == b_replay.keys()
  for name in a_replay:
    np.testing.assert_array_equal(a_replay[name], b_replay[name], err_msg=name)
  assert _episodes(tmp_path / "straight" / "seed-3") == _episodes(tmp_path / "resumed" / "seed-3")
  # Other seeds learn other parameters.
  other, _, _ = _saved(tmp_path / "straight" / "seed-0")
  assert not np.array_equal(other["state/params/actor/head/out/parts/0/kernel"],
                            a_state["state/params/actor/head/out/parts/0/kernel"])
  # Each seed's folder is a run of its own for `wmrl compare`; the parent is no run.
  assert find_runs([str(tmp_path / "straight")]) == [
      (tmp_path / "straight" / f"seed-{k}").resolve() for k in (0, 3)]


@pytest.mark.parametrize("seeds_batch", [0, 1], ids=["vmapped-together", "one-after-another"])
def test_a_vmapped_seed_matches_the_run_of_that_seed_alone(tmp_path, seeds_batch):
  # Up to the first update (at step 18, when replay holds 2 x 6 windows of 7) the
  # vmapped and the single run of seed 3 see the same steps, bit for bit: the same
  # environments, actions and replay draws. The update itself differs in the
  # last bits: vmap hands XLA batched reductions, which it sums in another order (a
  # 12-row sum differs by 2e-6 of its size). Measured after the first update: 1.5e-8 at
  # most, in Adam's second moments. Further on the two runs drift apart: the critic's
  # two-hot bins reach +-4.85e8, so a last-bit change of its probabilities moves its
  # values by ~1e-2, and Adam with the reference's eps of 1e-20 turns a gradient that
  # should be zero into a full step; the bit-exact test above covers the longer run.
  # With run.seeds_batch 1 the seeds' updates run one after the other (jax.lax.map
  # over groups of one), the same tolerances.
  run.train(_config(18, **{"run.seeds": (0, 3), "run.seeds_batch": seeds_batch}),
            tmp_path / "seeds", console=False)
  summary = run.train(_config(18, **{"run.seed": 3}), tmp_path / "alone", console=False)
  assert summary["updates"] == 1
  vmapped, vmapped_replay, vmapped_run = _saved(tmp_path / "seeds" / "seed-3")
  alone, alone_replay, alone_run = _saved(tmp_path / "alone")
  assert vmapped_run["counters"] == alone_run["counters"]
  for name in ("obs", "action", "reward", "is_first", "is_last", "is_terminal"):
    np.testing.assert_array_equal(vmapped_replay[name], alone_replay[name], err_msg=name)
  for name in vmapped_replay:  # the latents the policy stored, then the posteriors written back
    np.testing.assert_allclose(vmapped_replay[name], alone_replay[name], rtol=0, atol=1e-5,
                               err_msg=name)
  for name in vmapped:
    if vmapped[name].dtype.kind == "f":
      np.testing.assert_allclose(vmapped[name], alone[name], rtol=1e-6, atol=1e-7, err_msg=name)
    else:
      np.testing.assert_array_equal(vmapped[name], alone[name], err_msg=name)


def test_bad_seed_settings_are_refused(tmp_path):
  with pytest.raises(ValueError, match=r"run.seeds repeat a seed \(1, 2, 1\)"):
    checks.validate(_config(10, **{"run.seeds": (1, 2, 1)}), tmp_path)
  with pytest.raises(ValueError, match="run.seeds_batch must be >= 0"):
    checks.validate(_config(10, **{"run.seeds": (1, 2), "run.seeds_batch": -1}), tmp_path)
  with pytest.raises(ValueError, match="run.seeds_batch=2 groups the seeds of run.seeds, and none"):
    checks.validate(_config(10, **{"run.seeds_batch": 2}), tmp_path)
  # One seed: fine.
  checks.validate(_config(10, **{"run.seeds": (4,), "run.seeds_batch": 2}), tmp_path)


def test_seeds_in_groups_compute_what_each_seed_computes_alone():
  # Five seeds in groups of two: two groups vmapped one after the other, then the
  # fifth seed alone (lax.map's remainder); every argument and output keeps its
  # seed. Within float32 rounding: a batched sum may add in another order.
  def one(state, batch):
    return state * batch.sum(), {"mean": batch.mean()}
  states = np.arange(5, dtype=np.float32)
  batches = np.random.default_rng(0).normal(size=(5, 3, 4)).astype(np.float32)
  expected = [one(states[k], batches[k]) for k in range(5)]
  for seeds_batch in (0, 1, 2, 5, 8):
    new_states, metrics = jax.jit(over_seeds(one, seeds_batch))(states, batches)
    assert new_states.shape == (5,) and metrics["mean"].shape == (5,)
    for k in range(5):
      np.testing.assert_allclose(new_states[k], expected[k][0], rtol=1e-6, err_msg=seeds_batch)
      np.testing.assert_allclose(metrics["mean"][k], expected[k][1]["mean"], rtol=1e-6)


def test_console_shows_seeds_mean_and_spread_and_a_missing_seed_is_refused(tmp_path, capsys):
  run.train(_config(22, **{"run.seeds": (0, 1)}), tmp_path, console=True)  # an episode each
  err = capsys.readouterr().err
  assert "score(10) " in err and " ± " in err and "(2 seeds)" in err
  assert not (tmp_path / "metrics.jsonl").exists()  # the seeds write their own
  with pytest.raises(checkpoint.CheckpointError, match="seed-2 holds no checkpoint while"):
    run.train(_config(20, **{"run.seeds": (0, 1, 2)}), tmp_path, console=False)
  with pytest.raises(ValueError, match="holds a run of several seeds .seed-0, seed-1."):
    run.train(_config(20), tmp_path, console=False)


def test_nan_names_the_seed():
  metrics = MetricBuffer([4, 7, 9])
  metrics.add(12, {"loss/rec": np.array([1.0, np.nan, 2.0])})
  with pytest.raises(NonFiniteError,
                     match="'loss/rec' became nan at environment step 12 in seed 7"):
    metrics.results()


def test_an_environment_that_raises_stops_the_run_after_saving_what_was_collected(tmp_path):
  # Seed 1's environment raises on its 50th step, after seed 0's has taken it: neither
  # seed keeps that step, both are saved at the last step all took, and the same
  # command continues (in new environments, which count their steps afresh).
  config = _config(60, **{"env.id": "fake_envs:make_crashing_counter", "run.seeds": (0, 1)})
  with pytest.raises(EnvironmentCrash) as crash:
    run.train(config, tmp_path, console=False)
  message = str(crash.value)
  assert ("environment fake_envs:make_crashing_counter of seed 1 raised at environment step 51: "
          "RuntimeError: simulation diverged (bad acceleration)") in message
  assert "saved ckpt-000000000051 with everything collected before it" in message
  assert isinstance(crash.value.__cause__, RuntimeError)
  for k in (0, 1):
    path = checkpoint.latest(tmp_path / f"seed-{k}")
    assert checkpoint.read_run(path)["counters"]["env_steps"] == 51
    _, stored, _ = _saved(tmp_path / f"seed-{k}")
    assert len(stored["reward"][0]) == 51  # 50 actions and the 2 resets: 51 steps acted on
  summary = run.train(config, tmp_path, console=False)
  assert summary["env_steps"] == 60
