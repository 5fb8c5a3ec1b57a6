"""End-to-end learning on classic-control tasks, small enough for a CPU.

Each test trains with the `small` preset and a fixed seed, then runs 10
episodes with the eval policy (the actor's mode) from the final checkpoint
and checks their mean return. On a 2-core CPU each takes a few minutes.
"""
import numpy as np
import pytest

import wmrl
from wmrl.evaluate import evaluate_logdir


def _train_and_evaluate(env_id, steps, logdir):
  config = wmrl.make_config(env_id, presets="small", overrides={"run.steps": steps, "run.seed": 0})
  summary = wmrl.train(config, str(logdir), console=False)
  assert summary["env_steps"] == steps
  result = evaluate_logdir(logdir, episodes=10)
  return summary, result


# Not yet reliable, so kept out of the default suite (run with `pytest -m slow`):
# with the `small` preset the eval policy swings between about 50 and 500
# from one evaluation to the next (seed 0: 500 at 2k steps, 148 at 4k,
# 483 at 6k; 52 at 3k in this test).
@pytest.mark.slow
def test_learns_cartpole(tmp_path):
  summary, result = _train_and_evaluate("gym:CartPole-v1", 3000, tmp_path)
  print("CartPole-v1 eval scores", result["scores"])
  # Random play scores about 22; the task's maximum is 500.
  assert result["episodes"] == 10
  assert result["score_mean"] >= 400, result


def test_learns_pendulum(tmp_path):
  summary, result = _train_and_evaluate("gym:Pendulum-v1", 5000, tmp_path)
  print("Pendulum-v1 eval scores", result["scores"], "last training episodes",
        summary["scores"][-10:])
  # Random play scores about -1200; a swung-up, balanced pendulum about -150.
  assert np.mean(summary["scores"][:3]) < -900  # it did start from scratch
  assert result["score_mean"] >= -300, result
