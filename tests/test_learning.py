"""End-to-end learning on classic-control tasks, small enough for a CPU.

Both tests train with the `classic` preset, the same settings for both tasks,
and a fixed seed, check the training episodes, then run 10 episodes with the
eval policy (the actor's mode) from the final checkpoint and check their mean
return. Pendulum runs in the default suite; CartPole, whose 15,000 steps would
take the default suite past its time budget, runs with `pytest -m slow`.
"""
import numpy as np
import pytest

import wmrl
from wmrl.evaluate import evaluate_logdir

pytestmark = pytest.mark.learning  # `pytest -m "not learning"` skips these


def _train_and_evaluate(env_id, steps, logdir):
  # The run's own closing evaluation is left out: the test evaluates the checkpoint itself.
  config = wmrl.make_config(env_id, presets="classic",
                            overrides={"run.steps": steps, "run.seed": 0, "run.eval_at_end": False})
  summary = wmrl.train(config, str(logdir), console=False)
  assert summary["env_steps"] == steps
  result = evaluate_logdir(logdir, episodes=10)
  return summary, result


def _check_cartpole(env_id, tmp_path):
  summary, result = _train_and_evaluate(env_id, 15_000, tmp_path)
  last10 = float(np.mean(summary["scores"][-10:]))
  print(env_id, "last 10 training episodes", summary["scores"][-10:], "mean", last10,
        "eval scores", result["scores"])
  # Random play scores about 22; the task's maximum is 500.
  assert np.mean(summary["scores"][:5]) < 100  # it did start from scratch
  assert last10 >= 400, summary["scores"][-10:]
  assert result["episodes"] == 10
  assert result["score_mean"] >= 400, result


@pytest.mark.slow
def test_learns_cartpole(tmp_path):
  _check_cartpole("gym:CartPole-v1", tmp_path)


@pytest.mark.slow
def test_learns_gymnax_cartpole_with_the_fused_driver(tmp_path):
  # The same task written in JAX, the same preset and thresholds: every step of
  # acting, stepping, storing and training on the device (run.driver auto).
  _check_cartpole("gymnax:CartPole-v1", tmp_path)


def test_learns_pendulum(tmp_path):
  summary, result = _train_and_evaluate("gym:Pendulum-v1", 8000, tmp_path)
  print("Pendulum-v1 eval scores", result["scores"], "last training episodes",
        summary["scores"][-10:])
  # Random play scores about -1200; a swung-up, balanced pendulum about -150.
  assert np.mean(summary["scores"][:3]) < -900  # it did start from scratch
  assert result["score_mean"] >= -300, result
