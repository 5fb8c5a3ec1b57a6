"""End-to-end learning, small enough for a CPU.

The default suite learns a contextual bandit with a small world model in about a
minute. The classic-control tests train with the `classic` preset, the same settings
for both tasks, and a fixed seed, check the training episodes, then run 10 episodes with
the eval policy (the actor's mode) from the final checkpoint and check their mean
return; they take 5 (Pendulum) and 11 minutes (CartPole) and run with `pytest -m slow`.
"""
import numpy as np
import pytest

import wmrl
from wmrl import testing
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


@pytest.mark.slow
def test_learns_pendulum(tmp_path):
  summary, result = _train_and_evaluate("gym:Pendulum-v1", 8000, tmp_path)
  print("Pendulum-v1 eval scores", result["scores"], "last training episodes",
        summary["scores"][-10:])
  # Random play scores about -1200; a swung-up, balanced pendulum about -150.
  assert np.mean(summary["scores"][:3]) < -900  # it did start from scratch
  assert result["score_mean"] >= -300, result


# A world model of 32-unit layers (the tiny test networks, twice as wide; a 64-unit
# recurrent state) on windows of 8 x 16 steps: one update per environment step at the
# `small` preset's train ratio of 128.
SMALL_NETWORKS = {
    **{k: v for k, v in testing.TINY.items() if k.startswith("model.")},
    "model.rssm.deter": 64, "model.rssm.hidden": 32, "model.rssm.stoch": 8,
    "model.rssm.classes": 8, **{f"model.{net}.units": 32 for net in (
        "encoder", "decoder", "reward", "cont", "actor", "critic")},
    "run.batch_size": 8, "run.batch_length": 16}


def test_learns_a_contextual_bandit(tmp_path):
  # fake_envs.VectorBandit: the observation names which of two actions pays 1, 10 steps
  # an episode; random play scores 5, the best 10. The reward follows the action at once,
  # so this is the shortest path through the whole loop: replay, the world model's
  # reward head, imagination, the critic and the actor.
  config = wmrl.make_config("fake_envs:make_vector_bandit", presets="small", overrides={
      **SMALL_NETWORKS, "run.steps": 2000, "run.seed": 0, "run.eval_at_end": True,
      "run.eval_episodes": 10})
  summary = wmrl.train(config, str(tmp_path), console=False)
  scores = summary["scores"]
  print("first 10 episodes", scores[:10], "last 10", scores[-10:], summary["evaluation"])
  assert np.mean(scores[:10]) < 7  # it did start from scratch
  assert np.mean(scores[-10:]) >= 8.5, scores[-10:]
  assert summary["evaluation"]["eval/score"] >= 9, summary["evaluation"]
