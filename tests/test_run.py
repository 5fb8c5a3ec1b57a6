"""A whole run (wmrl/run.py): train ratio, metrics, checkpoints, resume, stop
signals, determinism, and the checks it makes before it writes (the checks
themselves: tests/test_checks.py)."""
import collections
import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import warnings

import jax
import numpy as np
import pytest

from conftest import counter_config, load_saved
from wmrl import algorithms, checkpoint, cli, run, testing
from wmrl.logging import read_metrics
from wmrl.metrics import NonFiniteError
from wmrl.replay import Positions

TESTS = pathlib.Path(__file__).parent


def test_train_writes_metrics_and_checkpoint(tmp_path):
  config = counter_config(100)
  summary = run.train(config, tmp_path, console=False)
  assert summary["env_steps"] == 100 and summary["driver"] == "host"
  records = read_metrics(tmp_path / "metrics.jsonl")
  # The counter env skips no frames and the run repeats no action: frames are steps.
  assert all(r["frames"] == r["step"] for r in records)
  episodes = [r for r in records if "episode/score" in r]
  assert len(episodes) == summary["episodes"] >= 4
  assert all(r["episode/length"] == 20 for r in episodes)
  train = [r for r in records if "loss/rec" in r]
  assert train and all(np.isfinite(r["loss/rec"]) for r in train)
  assert {"fps/env", "fps/train", "replay/size"} <= set(records[-1])
  # Train ratio 12 over batches of 2 x 6 = one update per environment step once
  # training starts: at step 18, when replay holds 2 x 6 windows of 7 (18 - 7 + 1).
  assert summary["updates"] == 100 - 18 + 1
  ckpt = checkpoint.latest(tmp_path)
  assert ckpt is not None and ckpt.name == "ckpt-000000000100"


# The counter's episodes are 20 steps and a reset step: after 42 steps the run stops
# between episodes (step 41 ended one, the pending step 42 starts the next), after 83
# right after an episode's last step (the pending step 83).
# The third stops between episodes too, with windows drawn by all three
# selectors: the steps' priorities and the online queue's count resume.
MIXTURE = {"replay.fracs.uniform": 0.4, "replay.fracs.priority": 0.3,
           "replay.fracs.recency": 0.3}


@pytest.mark.parametrize("stop, steps, overrides", [(83, 166, {}), (42, 84, {}),
                                                    (42, 84, MIXTURE)],
                         ids=["after-last", "between", "selectors"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, stop, steps, overrides):
  """Catches a resume that loses or changes anything a run carries: a counter, a
  draw, the optimiser's moments, a replayed latent or priority, the pending step
  (or cuts the episode that the pending step starts)."""
  run.train(counter_config(stop, **overrides), tmp_path / "resumed", console=False)
  run.train(counter_config(steps, **overrides), tmp_path / "resumed", console=False)
  run.train(counter_config(steps, **overrides), tmp_path / "straight", console=False)
  resumed, replay_a, run_a, pending_a = load_saved(tmp_path / "resumed")
  straight, replay_b, run_b, pending_b = load_saved(tmp_path / "straight")
  assert run_a["counters"] == run_b["counters"]
  # The whole state (parameters, optimiser moments, return norm, key, step).
  assert resumed.keys() == straight.keys() and any("params" in name for name in resumed)
  for name in resumed:
    np.testing.assert_array_equal(resumed[name], straight[name], err_msg=name)
  assert pending_a.keys() == pending_b.keys()
  for name in pending_a:
    np.testing.assert_array_equal(pending_a[name], pending_b[name], err_msg=name)
  assert replay_a.steps_added == replay_b.steps_added == steps
  # The default replay context stores the policy latents with every step and writes the
  # training posteriors back over them: the resumed replay holds the same values.
  assert {"latent/deter", "latent/stoch"} <= set(replay_a.keys)
  assert ("priority" in replay_a.keys) == bool(overrides) and run_a["counters"]["online_taken"]
  everything = Positions(np.zeros(1, int), np.zeros(1, int))
  stored_a, stored_b = replay_a.gather(everything, steps), replay_b.gather(everything, steps)
  assert stored_a.keys() == stored_b.keys()
  for key in stored_a:
    np.testing.assert_array_equal(stored_a[key], stored_b[key], err_msg=key)
  episodes = lambda d: [r for r in read_metrics(d / "metrics.jsonl") if "episode/score" in r]
  assert episodes(tmp_path / "resumed") == episodes(tmp_path / "straight")
  # Train records average over log intervals; those before the restart match.
  train = lambda d: [{k: v for k, v in r.items() if not k.startswith("fps")}
                     for r in read_metrics(d / "metrics.jsonl")
                     if "loss/rec" in r and r["step"] < stop]
  assert len(train(tmp_path / "resumed")) == stop // 40  # log_every 40
  assert train(tmp_path / "resumed") == train(tmp_path / "straight")


def test_same_seed_gives_identical_metrics(tmp_path):
  for name in ("a", "b"):
    run.train(counter_config(120), tmp_path / name, console=False)
  strip = lambda d: [{k: v for k, v in r.items() if not k.startswith("fps")}
                     for r in read_metrics(tmp_path / d / "metrics.jsonl")]
  a, b = strip("a"), strip("b")
  assert len(a) > 5 and a == b


def test_resume_after_sigkill_continues_without_losing_or_doubling_replay(tmp_path):
  """Catches a checkpoint whose replay and counters disagree after a kill (steps
  collected twice or lost), or a run that cannot take its own last save."""
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
  _, replay, saved_run, _ = load_saved(logdir)
  assert saved_run["counters"]["env_steps"] == saved_steps + 50
  # Every step collected before the checkpoint, plus exactly the new ones.
  assert replay.steps_added == saved_steps + 50
  assert saved_run["counters"]["updates"] > checkpoint.read_run(saved)["counters"]["updates"]
  steps = [r["step"] for r in read_metrics(logdir / "metrics.jsonl")]
  assert steps == sorted(steps) and steps[-1] == saved_steps + 50


def test_a_refused_resume_stops_before_anything_changes(tmp_path):
  """Catches a run that skips the resume checks (a config change the saved state
  cannot take, or a replay without the latents the context needs) or makes them
  after writing to the logdir."""
  run.train(counter_config(30), tmp_path, console=False)
  saved, metrics = checkpoint.latest(tmp_path), (tmp_path / "metrics.jsonl").read_text()
  with pytest.raises(ValueError, match="cannot resume with a changed model.rssm.deter"):
    run.train(counter_config(60, **{"model.rssm.deter": 64}), tmp_path, console=False)
  with pytest.raises(ValueError, match=r"cannot resume with run.replay_context=0: the saved "
                                       r"replay holds latent/deter, latent/stoch"):
    run.train(counter_config(45, **{"run.replay_context": 0}), tmp_path, console=False)
  with pytest.raises(ValueError, match=r"cannot resume with replay.fracs.priority above 0: the "
                                       r"saved replay holds no priorities"):
    run.train(counter_config(45, **MIXTURE), tmp_path, console=False)
  assert checkpoint.list_checkpoints(tmp_path) == [saved]
  assert (tmp_path / "metrics.jsonl").read_text() == metrics
  assert checkpoint.saved_config(saved) == counter_config(30)


def test_changed_run_field_is_reported_and_used(tmp_path, capsys):
  """Catches a resume that takes the saved settings over the given ones, or
  changes them without a word."""
  run.train(counter_config(30), tmp_path, console=False)
  summary = run.train(counter_config(50, **{"run.train_ratio": 24}), tmp_path, console=True)
  assert summary["env_steps"] == 50
  err = capsys.readouterr().err
  assert "run.train_ratio changed on resume: 12.0 -> 24.0" in err
  assert checkpoint.saved_config(checkpoint.latest(tmp_path)).run.train_ratio == 24


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
  """Catches a run that saves a diverged state over its last good checkpoint, or
  stops without naming what diverged."""
  run.train(counter_config(30), tmp_path, console=False)
  good = checkpoint.latest(tmp_path)
  real = algorithms.get("dreamerv3")

  def poisoned(state, batch):
    state, metrics, updates = real.train_step(state, batch)
    metrics = dict(metrics)
    metrics["loss/rew"] = metrics["loss/rew"] * np.nan
    return state, metrics, updates

  poisoned_algo = dataclasses.replace(real, train_step=poisoned)
  monkeypatch.setattr(algorithms, "get", lambda name: poisoned_algo)
  with pytest.raises(NonFiniteError, match="metric 'loss/rew' became nan at environment step"):
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


def _counting_traces(counts: collections.Counter):
  """DreamerV3 with a counter on each trace of its policy and train step: their
  Python bodies run when a program that calls them is traced (compiled), not
  when it runs. The driver calls the policy inside its own jitted acting step;
  the train step is jitted afresh, so no other test's compile is reused."""
  from wmrl.algorithms.dreamerv3 import agent
  real = algorithms.get("dreamerv3")

  def counted(name, fn):
    def traced(*args, **kwargs):
      counts[name] += 1
      return fn(*args, **kwargs)
    return traced

  return dataclasses.replace(
      real, policy_step=counted("policy", real.policy_step),
      train_step=jax.jit(counted("train", agent.train_step.__wrapped__), donate_argnums=0))


def test_a_run_compiles_its_policy_and_train_step_once(tmp_path, monkeypatch):
  """Catches a recompile during a run: an argument that is static (or changes
  shape, dtype or tree) from step to step, such as the step counter, a batch of
  another size, or a state or carry the update returns in another form than it
  took. Each compile traces the functions again, which the counts show."""
  counts = collections.Counter()
  algo = _counting_traces(counts)
  monkeypatch.setattr(algorithms, "get", lambda name: algo)
  config = counter_config(60)
  assert not config.run.eval_every  # evaluation would call the policy outside the driver
  summary = run.train(config, tmp_path, console=False)
  assert summary["updates"] > 10
  assert counts == {"policy": 1, "train": 1}


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


def test_the_driver_auto_chooses_is_named():
  """Catches `run.driver auto` reported as `auto`: a JAX id runs the fused driver."""
  import wmrl
  from wmrl import drivers
  assert drivers.resolved(wmrl.make_config("gymnax:CartPole-v1")) == "fused"
  assert drivers.resolved(wmrl.make_config("gym:CartPole-v1")) == "host"
  assert drivers.resolved(wmrl.make_config("gymnax:CartPole-v1",
                                          overrides={"run.driver": "host"})) == "host"


def test_a_run_ends_with_a_greedy_evaluation_by_default(tmp_path, capsys):
  """Catches a run that ends without the evaluation the Quick start promises, or
  one evaluated twice where the eval grid already ends at run.steps."""
  config = counter_config(60, **{"run.eval_at_end": True, "run.eval_episodes": 2})
  summary = run.train(config, tmp_path / "end", console=False)
  evals = [r for r in read_metrics(tmp_path / "end" / "metrics.jsonl") if "eval/score" in r]
  assert [r["step"] for r in evals] == [60] and summary["evaluation"]["eval/score"] == evals[0][
      "eval/score"]
  on_grid = counter_config(60, **{"run.eval_at_end": True, "run.eval_every": 30,
                                  "run.eval_episodes": 2})
  run.train(on_grid, tmp_path / "grid", console=False)
  evals = [r for r in read_metrics(tmp_path / "grid" / "metrics.jsonl") if "eval/score" in r]
  assert [r["step"] for r in evals] == [30, 60]
  off = counter_config(60, **{"run.eval_at_end": False})
  assert run.train(off, tmp_path / "off", console=False)["evaluation"] == {}


def test_a_minigrid_like_env_trains_with_no_wrapper(tmp_path, monkeypatch):
  # A grid too small for the CNN (through the MLP), a heading, and a text mission
  # (dropped with a note): what MiniGrid gives, plugged in as it is.
  from wmrl.envs.observations import DroppedKey
  with pytest.warns(DroppedKey, match="'mission' is text"):
    summary = run.train(counter_config(40, **{"env.id": "fake_envs:make_small_grid"}), tmp_path,
                        console=False)
  assert summary["updates"] > 0
  losses = [r["loss/rec"] for r in read_metrics(tmp_path / "metrics.jsonl") if "loss/rec" in r]
  assert losses and all(np.isfinite(losses))
  # On the command line the note is one line, not Python's warning with its source line.
  monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after
  cli._brief_notes()
  assert warnings.formatwarning(DroppedKey("x: dropped"), DroppedKey, "f.py", 1) == "note: x: dropped\n"
