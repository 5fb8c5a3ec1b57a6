"""A second algorithm through the whole runtime: "tiny" (tests/tiny_algorithm.py),
which shares nothing with DreamerV3 but the contract, trained by `run.train`
on both drivers, resumed, evaluated, benchmarked, run as seeds and configured
from the command line. A runtime that reaches into DreamerV3's state, config
or replay entries fails here."""
import ast
import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

import tiny_algorithm  # noqa: F401  (registers "tiny")
from conftest import load_saved
from wmrl import algorithms, bench, cli, drivers, evaluate, run
from wmrl import config as cfg
from wmrl.logging import read_metrics

TESTS = pathlib.Path(__file__).parent
COUNTER, CARTPOLE = "fake_envs:make_counter", "gymnax:CartPole-v1"


def tiny_config(env_id: str, steps: int, **overrides) -> cfg.Config:
  """A short run of tiny: windows of 4 x 8 steps (after the default replay context
  of 1), a record every 40 steps, no console lines or timed saves."""
  return cfg.Config(algorithm="tiny").replace(**{
      "env.id": env_id, "env.num_envs": 1, "run.steps": steps, "run.batch_size": 4,
      "run.batch_length": 8, "run.train_ratio": 32, "run.log_every": 40,
      "run.console_every": 1000.0, "run.save_every_minutes": 1000.0, **overrides})


def _trained(logdir) -> list[dict]:
  return [r for r in read_metrics(pathlib.Path(logdir) / "metrics.jsonl") if "loss/model" in r]


# (driver, env, environments, steps of the whole run; the half is where the resumed run
# stopped). The counter's episodes are 20 steps and a reset: at 83 the host driver stops
# right after an episode's last step, which its resume would otherwise cut. The fused
# driver keeps the environments' state, so it resumes mid-episode.
RUNS = [("host", COUNTER, 1, 166, 83), ("fused", CARTPOLE, 4, 200, 100)]


@pytest.mark.parametrize("driver, env_id, num_envs, steps, half", RUNS,
                         ids=[r[0] for r in RUNS])
def test_tiny_learns_resumes_and_evaluates(tmp_path, capsys, driver, env_id, num_envs, steps,
                                           half):
  """Catches a runtime that trains, saves, resumes or evaluates only DreamerV3: its
  metric names, state fields or replay entries assumed anywhere in run.train, either
  driver, checkpoints or `wmrl eval`. Tiny's loss must fall (its train step really
  changes its parameters from replayed windows), a run stopped half-way and resumed
  must save what the straight run saves, and evaluations must be logged and rerun
  from the checkpoint."""
  config = lambda n: tiny_config(env_id, n, **{
      "env.num_envs": num_envs, "run.eval_every": half, "run.eval_episodes": 1,
      "run.report_every": half})  # the report path runs too; tiny's shows nothing ({})
  assert drivers.uses_fused(config(steps)) == (driver == "fused")
  straight = run.train(config(steps), tmp_path / "straight", console=False)
  run.train(config(half), tmp_path / "resumed", console=False)
  resumed = run.train(config(steps), tmp_path / "resumed", console=False)
  assert straight["env_steps"] == resumed["env_steps"] == steps

  trained = _trained(tmp_path / "straight")
  assert len(trained) >= 4 and all(np.isfinite(r["loss/model"]) for r in trained)
  assert trained[-1]["loss/model"] < 0.5 * trained[0]["loss/model"], trained
  assert trained[-1]["train/updates"] == straight["updates"] > 0

  state, replay, saved_run, pending = load_saved(tmp_path / "straight")
  assert int(state["state/step"]) == straight["updates"]
  with run.make_envs(config(steps))[0] as env:  # the parameters it started from
    fresh = algorithms.get("tiny").init(jax.random.key(0), env.obs_spec, env.act_spec,
                                        config(steps))
  assert not np.allclose(state["state/params/model/w1"], fresh.params["model"]["w1"])
  assert not np.allclose(state["state/params/policy/w"], fresh.params["policy"]["w"])
  # Tiny stores no replay entries: replay holds the steps and actions alone.
  assert set(replay.keys) == {"obs", "action", "reward", "is_first", "is_last", "is_terminal"}

  again = load_saved(tmp_path / "resumed")
  assert saved_run["counters"] == again[2]["counters"]
  for a, b in ((state, again[0]), (replay.streams(), again[1].streams()), (pending, again[3])):
    assert a.keys() == b.keys()
    for name in a:
      np.testing.assert_array_equal(a[name], b[name], err_msg=name)

  evals = [r for r in read_metrics(tmp_path / "straight" / "metrics.jsonl") if "eval/score" in r]
  assert [r["step"] for r in evals] == [half, steps]
  summary = evaluate.evaluate_logdir(tmp_path / "straight", episodes=2)
  assert summary["episodes"] == 2 and np.isfinite(summary["score_mean"])
  # `wmrl eval` itself, in this process: a fresh one would not know "tiny" (no plugin flag).
  capsys.readouterr()
  assert cli.main(["eval", "--logdir", str(tmp_path / "resumed"), "--episodes", "1"]) == 0
  line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert line["episodes"] == 1 and line["checkpoint"] == f"ckpt-{steps:012d}"


def test_tiny_runs_as_seeds_on_the_host_driver(tmp_path):
  """Catches seeds on an axis that assume DreamerV3's state (stacking, vmapped train
  and policy steps, per-seed checkpoints): each seed of a tiny run trains and saves
  its own agent."""
  summary = run.train(tiny_config(COUNTER, 60, **{"run.seeds": (0, 1)}), tmp_path,
                      console=False)
  assert sorted(summary["seeds"]) == [0, 1] and summary["updates"] > 0
  states = [load_saved(tmp_path / f"seed-{seed}")[0] for seed in (0, 1)]
  for seed, state in zip((0, 1), states):
    assert int(state["state/step"]) == summary["updates"]
    assert _trained(tmp_path / f"seed-{seed}"), seed
  assert not np.array_equal(states[0]["state/params/model/w1"], states[1]["state/params/model/w1"])


def test_tiny_runs_without_a_replay_context(tmp_path):
  """Catches a driver that needs replay entries or a context step: tiny stores none,
  and runs with run.replay_context 0 as with the default 1."""
  summary = run.train(tiny_config(COUNTER, 50, **{"run.replay_context": 0}), tmp_path,
                      console=False)
  assert summary["updates"] > 0 and _trained(tmp_path)


def test_tiny_resumes_with_another_replay_context(tmp_path):
  """Catches a resume check that assumes every algorithm stores entries with a replay
  context: tiny stores none, so its replay serves any context."""
  run.train(tiny_config(COUNTER, 40), tmp_path, console=False)
  summary = run.train(tiny_config(COUNTER, 50, **{"run.replay_context": 0}), tmp_path,
                      console=False)
  assert summary["env_steps"] == 50


def test_an_algorithm_of_a_module_runs_from_the_command_line_in_a_fresh_process(tmp_path):
  """Catches a user's algorithm that only a Python script can run: named `module:NAME`,
  the module that registers it is imported, and the name in config.json finds it
  again in a fresh process, where `wmrl eval` of the run works."""
  config = tiny_config(COUNTER, 30).replace(algorithm="tiny_algorithm:tiny")
  assert isinstance(config.algorithm_config, tiny_algorithm.TinyConfig)
  run.train(config, tmp_path, console=False)
  evaluate_in_a_fresh_process = [
      sys.executable, "-c", "import sys; from wmrl import cli; sys.exit(cli.main(sys.argv[1:]))",
      "eval", "--logdir", str(tmp_path), "--episodes", "1"]
  done = subprocess.run(evaluate_in_a_fresh_process, cwd=TESTS, capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr
  with pytest.raises(ValueError, match="module 'no_such_module' could not be imported"):
    cfg.Config(algorithm="no_such_module:tiny")
  with pytest.raises(ValueError, match="registered no algorithm 'tinny'"):
    cfg.Config(algorithm="tiny_algorithm:tinny")


def test_bench_measures_tiny(tmp_path):
  """Catches a benchmark that builds or times DreamerV3 whatever --algorithm says: the
  row is tiny's (its config, its parameter count), with tiny's field flags."""
  out = tmp_path / "speed.json"
  argv = ["--algorithm", "tiny", "--model.units", "8",
          "--env", COUNTER, "--batch-size", "2", "--batch-length", "8", "--repeats", "2",
          "--warmup", "1", "--policy-calls", "5", "--peak-size", "64", "--peak-repeats", "1",
          "--e2e-steps", "2", "--out", str(out)]
  assert bench.main(argv) == 0
  (row,) = json.loads(out.read_text())["presets"]
  assert row["config"]["algorithm"] == "tiny" and row["config"]["model"] == {"units": 8}
  # obs 2 + action 1 -> 8 hidden -> obs 2 + reward 1; the policy (2 + 1) -> 1.
  assert row["params"] == (3 * 8 + 8 + 8 * 3 + 3) + (3 * 1 + 1)
  assert row["batch"]["entries"] == {}
  assert row["train"]["updates_per_s"] > 0 and row["policy"]["16"]["calls_per_s"] > 0
  assert row["e2e"]["env_steps"] >= 2


def test_tinys_settings_are_flags_and_a_typo_gets_a_suggestion(capsys):
  """Catches flags checked against DreamerV3's fields whatever --algorithm says: tiny's
  own fields (model.units, policy.noise) parse, a misspelt one is refused naming
  tiny's field, and DreamerV3's are refused for tiny."""
  _, config = cli.parse_train_args(["--logdir", "x", "--algorithm", "tiny", "--model.units", "8",
                                    "--policy.noise=0.1", "--optim.lr", "0.01"])
  assert config.algorithm == "tiny"
  assert (config.model.units, config.policy.noise, config.optim.lr) == (8, 0.1, 0.01)
  for flag, message in (("--model.unit", "did you mean model.units"),
                        ("--model.rssm.deter", "unknown config field 'model.rssm.deter'")):
    with pytest.raises(SystemExit):
      cli.parse_train_args(["--logdir", "x", "--algorithm", "tiny", flag, "8"])
    assert message in capsys.readouterr().err


def test_a_preset_for_another_algorithm_is_refused(capsys):
  """Catches presets applied to DreamerV3 and then thrown away: --preset size1m sets
  DreamerV3's model fields, which tiny lacks, so it must be refused, not ignored."""
  with pytest.raises(SystemExit):
    cli.parse_train_args(["--logdir", "x", "--algorithm", "tiny", "--preset", "size1m"])


def test_tinys_validate_refuses_a_bad_setting_before_the_run_starts(tmp_path):
  """Catches a run that skips the algorithm's own checks: tiny's validate refuses
  model.units 0 before any file is written."""
  with pytest.raises(ValueError, match="model.units must be >= 1, got 0"):
    run.train(tiny_config(COUNTER, 10, **{"model.units": 0}), tmp_path / "run", console=False)
  assert not (tmp_path / "run").exists()


def _imports(path: pathlib.Path) -> set[str]:
  tree = ast.parse(path.read_text())
  names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
           for alias in node.names}
  return names | {node.module for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module}


def test_tiny_shares_nothing_with_dreamerv3_and_the_run_has_no_branch_on_either():
  """Catches a second algorithm that only works by borrowing DreamerV3's modules,
  and a run.py that special-cases an algorithm or a driver."""
  borrowed = ("wmrl.algorithms.dreamerv3", "wmrl.dynamics", "wmrl.nets", "wmrl.dists",
              "wmrl.optim", "flax")
  assert not [m for m in _imports(TESTS / "tiny_algorithm.py") if m.startswith(borrowed)]
  source = (TESTS.parent / "wmrl" / "run.py").read_text()
  for name in ("dreamerv3", "DreamerV3", "HostDriver", "FusedDriver", "uses_fused", "fused"):
    assert name not in source, name
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, (ast.If, ast.IfExp, ast.While)):
      test = ast.unparse(node.test)
      assert "algorithm" not in test and "driver" not in test.replace("driver.counters", ""), test
