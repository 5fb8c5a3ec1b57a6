"""A whole run: train ratio, metrics, checkpoints, resume and determinism."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import dataclasses

import jax
import numpy as np
import pytest

from conftest import counter_config
from wmrl import algorithms, checkpoint, cli, envs, run, testing
from wmrl.logging import read_metrics
from wmrl.replay import Positions, Replay

TESTS = pathlib.Path(__file__).parent


def test_train_writes_metrics_and_checkpoint(tmp_path):
  config = counter_config(100)
  summary = run.train(config, tmp_path, console=False)
  assert summary["env_steps"] == 100
  records = read_metrics(tmp_path / "metrics.jsonl")
  # The counter env skips no frames and the run repeats no action: frames are steps.
  assert all(r["frames"] == r["step"] for r in records)
  episodes = [r for r in records if "episode/score" in r]
  assert len(episodes) == summary["episodes"] >= 4
  assert all(r["episode/length"] == 20 for r in episodes)
  train = [r for r in records if "loss/rec" in r]
  assert train and all(np.isfinite(r["loss/rec"]) for r in train)
  assert {"fps/env", "fps/train", "replay/size"} <= set(records[-1])
  # Train ratio 12 over batches of 2 x 6 = one update per environment step once training starts.
  prefill = 2 * 7
  assert summary["updates"] == 100 - prefill + 1
  ckpt = checkpoint.latest(tmp_path)
  assert ckpt is not None and ckpt.name == "ckpt-000000000100"


def _params(logdir):
  config = checkpoint.saved_config(checkpoint.latest(logdir))
  env = envs.from_config(config.env, seed=0)
  algo = algorithms.get(config.algorithm)
  template = algo.init(jax.random.key(0), env.obs_spec, env.act_spec, config)
  env.close()
  return checkpoint.load(checkpoint.latest(logdir), template)


def test_resumed_run_equals_uninterrupted_run(tmp_path):
  # 80 steps end right after an episode (episodes of 20 steps, plus the reset step).
  run.train(counter_config(83), tmp_path / "resumed", console=False)
  run.train(counter_config(166), tmp_path / "resumed", console=False)
  run.train(counter_config(166), tmp_path / "straight", console=False)
  resumed, replay_a, run_a = _params(tmp_path / "resumed")
  straight, replay_b, run_b = _params(tmp_path / "straight")
  assert run_a["counters"] == run_b["counters"]
  for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert replay_a.steps_added == replay_b.steps_added == 166
  # The default replay context stores the policy latents with every step and writes the
  # training posteriors back over them: the resumed replay holds the same values.
  assert {"latent/deter", "latent/stoch"} <= set(replay_a.keys)
  everything = Positions(np.zeros(1, int), np.zeros(1, int))
  stored_a, stored_b = replay_a.gather(everything, 166), replay_b.gather(everything, 166)
  assert stored_a.keys() == stored_b.keys()
  for key in stored_a:
    np.testing.assert_array_equal(stored_a[key], stored_b[key], err_msg=key)
  episodes = lambda d: [r for r in read_metrics(d / "metrics.jsonl") if "episode/score" in r]
  assert episodes(tmp_path / "resumed") == episodes(tmp_path / "straight")
  # Train records average over log intervals; those before the restart match.
  train = lambda d: [{k: v for k, v in r.items() if not k.startswith("fps")}
                     for r in read_metrics(d / "metrics.jsonl") if "loss/rec" in r and r["step"] <= 80]
  assert len(train(tmp_path / "resumed")) == 2
  assert train(tmp_path / "resumed") == train(tmp_path / "straight")


def test_same_seed_gives_identical_metrics(tmp_path):
  for name in ("a", "b"):
    run.train(counter_config(120), tmp_path / name, console=False)
  strip = lambda d: [{k: v for k, v in r.items() if not k.startswith("fps")}
                     for r in read_metrics(tmp_path / d / "metrics.jsonl")]
  a, b = strip("a"), strip("b")
  assert len(a) > 5 and a == b


def test_resume_after_sigkill_continues_without_losing_or_doubling_replay(tmp_path):
  logdir = tmp_path / "run"
  command = [sys.executable, "-m", "wmrl.cli", "train", "--env", "fake_envs:make_counter",
             "--logdir", str(logdir), "--steps", "100000", "--quiet"]
  overrides = {"run.save_every": 60, "run.train_ratio": 12, "optim.warmup": 0, "run.log_every": 40}
  command += testing.tiny_flags()
  for key, value in overrides.items():
    command += [f"--{key}", str(value)]
  env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
  process = subprocess.Popen(command, env=env, cwd=tmp_path)
  try:
    deadline = time.time() + 240
    while time.time() < deadline and len(checkpoint.list_checkpoints(logdir)) < 2:
      assert process.poll() is None, "training exited early"
      time.sleep(0.5)
    assert len(checkpoint.list_checkpoints(logdir)) >= 2, "no checkpoint within the deadline"
  finally:
    process.send_signal(signal.SIGKILL)
    process.wait()
  saved = checkpoint.latest(logdir)
  saved_steps = checkpoint.read_run(saved)["counters"]["env_steps"]
  assert saved_steps % 60 == 0
  # The same command again, now with an end in sight.
  command[command.index("100000")] = str(saved_steps + 50)
  subprocess.run(command, env=env, cwd=tmp_path, check=True, timeout=240)
  state, replay, saved_run = _params(logdir)
  assert saved_run["counters"]["env_steps"] == saved_steps + 50
  # Every step collected before the checkpoint, plus exactly the new ones.
  assert replay.steps_added == saved_steps + 50
  assert saved_run["counters"]["updates"] > checkpoint.read_run(saved)["counters"]["updates"]
  steps = [r["step"] for r in read_metrics(logdir / "metrics.jsonl")]
  assert steps == sorted(steps) and steps[-1] == saved_steps + 50


def test_changed_model_field_is_refused_on_resume(tmp_path):
  run.train(counter_config(30), tmp_path, console=False)
  with pytest.raises(ValueError, match="model.rssm.deter"):
    run.train(counter_config(60, **{"model.rssm.deter": 64}), tmp_path, console=False)


def test_replay_context_switched_on_or_off_is_refused_on_resume(tmp_path):
  run.train(counter_config(30), tmp_path, console=False)
  with pytest.raises(ValueError, match=r"changed run.replay_context \(1 -> 0\).*holds the policy latents"):
    run.train(counter_config(45, **{"run.replay_context": 0}), tmp_path, console=False)
  obs_spec, act_spec = testing.SPACES["vector-continuous"]
  with pytest.raises(ValueError, match=r"changed run.replay_context \(0 -> 1\).*lacks"):
    run.check_resume(counter_config(30, **{"run.replay_context": 0}), counter_config(30), obs_spec, act_spec)
  # A longer context reads the same latents.
  notes = run.check_resume(counter_config(30), counter_config(30, **{"run.replay_context": 2}), obs_spec, act_spec)
  assert notes == ["config field run.replay_context changed on resume: 1 -> 2"]


def test_saved_replay_without_the_latents_is_refused_for_a_context():
  config = counter_config(30)
  obs_spec, act_spec = testing.SPACES["vector-continuous"]
  state = jax.eval_shape(lambda k: algorithms.get("dreamerv3").init(k, obs_spec, act_spec, config),
                         jax.random.key(0))
  bare, with_latents = Replay(100), Replay(100)
  step = {"obs": np.zeros((1, 5), np.float32), "is_first": np.ones(1, bool)}
  bare.add(step)
  with_latents.add({**step, "latent/deter": np.zeros((1, 32), np.float32),
                    "latent/stoch": np.zeros((1, 4, 4), np.float32)})
  algo = algorithms.get("dreamerv3")
  with pytest.raises(ValueError, match=r"run.replay_context=1: the saved replay has no latent/deter"):
    run.check_replay_entries(bare, algo, state, 1)
  with pytest.raises(ValueError, match=r"run.replay_context=0: the saved replay holds latent/deter"):
    run.check_replay_entries(with_latents, algo, state, 0)
  for replay, context in ((bare, 0), (with_latents, 1), (with_latents, 3), (Replay(100), 1)):
    run.check_replay_entries(replay, algo, state, context)


def test_changed_run_field_is_reported_and_used(tmp_path, capsys):
  run.train(counter_config(30), tmp_path, console=False)
  summary = run.train(counter_config(50, **{"run.train_ratio": 24}), tmp_path, console=True)
  assert summary["env_steps"] == 50
  err = capsys.readouterr().err
  assert "run.train_ratio changed on resume: 12.0 -> 24.0" in err


def test_kill_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
  run.train(counter_config(30), tmp_path, console=False)
  before = checkpoint.latest(tmp_path)

  def crash(path):
    raise KeyboardInterrupt("killed while saving")

  monkeypatch.setattr(checkpoint, "_commit", crash)
  with pytest.raises(KeyboardInterrupt):
    run.train(counter_config(45), tmp_path, console=False)
  monkeypatch.undo()
  assert checkpoint.latest(tmp_path) == before
  summary = run.train(counter_config(45), tmp_path, console=False)
  assert summary["env_steps"] == 45


def test_unreadable_newest_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(
    tmp_path, capsys):
  run.train(counter_config(20), tmp_path, console=False)
  run.train(counter_config(30), tmp_path, console=False)
  newest = checkpoint.latest(tmp_path)
  # One file of the agent cut to half its size, as a full disk or a killed copy leaves it.
  agent_file = max((f for f in (newest / "agent").rglob("*") if f.is_file()),
                   key=lambda f: f.stat().st_size)
  agent_file.write_bytes(agent_file.read_bytes()[:agent_file.stat().st_size // 2])
  summary = run.train(counter_config(40), tmp_path, console=True)
  assert summary["env_steps"] == 40
  err = capsys.readouterr().err
  assert f"{newest.name} is unreadable (" in err
  assert "moved to checkpoints/unreadable/; resuming from ckpt-000000000020" in err
  assert "resuming from ckpt-000000000020: 20 environment steps" in err
  assert (checkpoint.checkpoint_dir(tmp_path) / "unreadable" / newest.name).is_dir()
  assert checkpoint.latest(tmp_path).name == "ckpt-000000000040"


def test_corrupt_only_checkpoint_gets_clear_error(tmp_path):
  run.train(counter_config(30), tmp_path, console=False)
  latest = checkpoint.latest(tmp_path)
  (latest / "run.json").write_text("{not json")
  with pytest.raises(checkpoint.CheckpointError,
                     match="can be read: ckpt-000000000030 .run.json differs from what was saved"):
    run.train(counter_config(40), tmp_path, console=False)


def test_foreign_checkpoint_gets_clear_error(tmp_path):
  run.train(counter_config(30), tmp_path, console=False)
  latest = checkpoint.latest(tmp_path)
  (latest / "run.json").write_text(json.dumps({"hello": 1}))
  (latest / checkpoint.CHECKSUMS).unlink()  # another program writes none
  with pytest.raises(checkpoint.CheckpointError, match="not a wmrl checkpoint"):
    run.train(counter_config(40), tmp_path, console=False)


def test_non_finite_loss_stops_run_naming_metric(tmp_path, monkeypatch):
  run.train(counter_config(30), tmp_path, console=False)
  good = checkpoint.latest(tmp_path)
  real = algorithms.get("dreamerv3")

  def poisoned(state, batch):
    state, metrics, updates = real.train_step(state, batch)
    metrics = dict(metrics)
    metrics["loss/rew"] = metrics["loss/rew"] * np.nan
    return state, metrics, updates

  monkeypatch.setitem(algorithms.ALGORITHMS, "dreamerv3",
                      dataclasses.replace(real, train_step=poisoned))
  with pytest.raises(run.NonFiniteError, match="metric 'loss/rew' became nan at environment step"):
    run.train(counter_config(80), tmp_path, console=False)
  assert checkpoint.latest(tmp_path) == good


@pytest.mark.parametrize("overrides, message", [
    ({"run.train_ratio": 0}, "train_ratio must be positive"),
    ({"run.train_ratio": -3}, "train_ratio must be positive"),
    ({"env.id": "gym:CartPol-v1"}, "did you mean gym:CartPole-v1"),
])
def test_bad_settings_are_refused_before_training(tmp_path, overrides, message):
  with pytest.raises(ValueError, match=message):
    run.train(counter_config(10, **overrides), tmp_path / "run", console=False)
  assert not (tmp_path / "run").exists()


def test_logdir_that_is_a_file_is_refused(tmp_path):
  path = tmp_path / "file"
  path.write_text("x")
  with pytest.raises(ValueError, match="is a file"):
    run.train(counter_config(10), path, console=False)


def test_short_run_compiles_train_and_policy_step_once(tmp_path):
  from wmrl.algorithms.dreamerv3 import agent
  # A setting no other test uses, so the run's programs have cache entries of their own.
  config = counter_config(60, **{"behavior.lam": 0.9503})
  train_before, policy_before = agent.train_step._cache_size(), agent._policy_step._cache_size()
  summary = run.train(config, tmp_path, console=False)
  assert summary["updates"] > 10
  assert agent.train_step._cache_size() == train_before + 1
  assert agent._policy_step._cache_size() == policy_before + 1


def test_prefill_carry_holds_the_executed_random_action():
  from wmrl.algorithms.dreamerv3 import agent
  from wmrl.driver import Driver
  config = counter_config(10)
  added = []

  class Recorder:  # stands in for replay: keeps what the driver stores
    def add(self, step):
      added.append(step)

  with envs.from_config(config.env, seed=0) as env:
    state = agent.init(jax.random.key(0), env.obs_spec, env.act_spec, config)
    driver = Driver.single(agent.DREAMERV3, config.run, env, state, Recorder())
    for _ in range(3):  # inside the prefill: random actions
      driver.collect(lambda lane, metrics: None)
      np.testing.assert_array_equal(np.asarray(driver._carry.action), added[-1]["action"])


def test_changed_model_setting_without_new_arrays_is_reported_and_used(tmp_path, capsys):
  run.train(counter_config(30), tmp_path, console=False)
  summary = run.train(counter_config(45, **{"model.rssm.free_nats": 0.5, "model.rssm.unimix": 0.02}),
                      tmp_path, console=True)
  assert summary["env_steps"] == 45
  err = capsys.readouterr().err
  assert "model.rssm.free_nats changed on resume: 1.0 -> 0.5" in err
  assert "model.rssm.unimix changed on resume: 0.01 -> 0.02" in err
  assert checkpoint.saved_config(checkpoint.latest(tmp_path)).model.rssm.free_nats == 0.5


def test_sigterm_saves_a_checkpoint_at_the_current_step_and_the_run_continues(tmp_path, capsys):
  # The env signals its own process at its 70th step; the run stops after that step,
  # saves there (not at its last periodic save, of which there is none), says so and
  # exits as a process stopped by SIGTERM does, without a traceback; the same command
  # continues to the end.
  config = counter_config(120, **{"env.id": "fake_envs:make_signalled_counter"})
  settings = {"env.id": config.env.id, "logdir": tmp_path, "steps": 120, "run.train_ratio": 12,
              "run.log_every": 40, "run.console_every": 1000.0,
              "run.save_every_minutes": 1000.0, "optim.warmup": 0}
  flags = [f"--{name}={value}" for name, value in settings.items()]
  code = cli.main(["train", *flags, *testing.tiny_flags()])
  err = capsys.readouterr().err
  assert code == 128 + signal.SIGTERM, err
  assert "stopped by SIGTERM at 73 environment steps; saved ckpt-" in err
  assert "Traceback" not in err
  saved = checkpoint.latest(tmp_path)
  # 70 actions over 20-step episodes begin 4 episodes: 74 steps observed, of which the
  # driver has acted on and stored 73 (the newest is the pending step, saved with them).
  assert checkpoint.read_run(saved)["counters"]["env_steps"] == 73
  summary = run.train(config, tmp_path, console=False)
  assert summary["env_steps"] == 120
