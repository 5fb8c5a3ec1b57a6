"""End-to-end learning on classic-control tasks, small enough for a CPU.

Each test trains with the `small` preset (CartPole with a few changes, given
beside its test) and a fixed seed, checks the training episodes, then runs 10
episodes with the eval policy (the actor's mode) from the final checkpoint
and checks their mean return. On a 2-core CPU each takes about 5 minutes (312 and 314 s).
Pendulum runs in the default suite; CartPole, whose 15,000 steps would take
the default suite past 15 minutes, runs with `pytest -m slow`.
"""
import numpy as np
import pytest

import wmrl
from wmrl.evaluate import evaluate_logdir

pytestmark = pytest.mark.learning  # `pytest -m "not learning"` skips these


def _train_and_evaluate(env_id, steps, logdir, **overrides):
  config = wmrl.make_config(env_id, presets="small",
                            overrides={"run.steps": steps, "run.seed": 0, **overrides})
  summary = wmrl.train(config, str(logdir), console=False)
  assert summary["env_steps"] == steps
  result = evaluate_logdir(logdir, episodes=10)
  return summary, result


# CartPole ends when the cart leaves the track, hundreds of steps after the
# pole is balanced: the critic must learn long returns (discount 1 - 1/333,
# true values of 200 and more) from a few thousand updates, so it trains at
# 1e-3 while the actor, at 3e-5, follows it without swinging, and a higher
# entropy bonus keeps the policy exploring how to re-centre the cart. With the
# plain `small` preset the policy balances the pole but drifts off the track
# (episodes of 150-300 steps) and its score swings between 50 and 500.
CARTPOLE = {"behavior.horizon": 333, "behavior.entropy": 3e-3, "optim.actor_lr": 3e-5,
            "optim.critic_lr": 1e-3, "run.train_ratio": 64}


# Step counts: CartPole 15,000 and Pendulum 8,000 pass at seeds 0 and 1
# (CartPole last 10 training episodes 414 and 434, eval 446 and 464;
# Pendulum eval -191 and -179); at 10,000 and 5,000 steps seed 0 gave 250
# and -498 with the same code, so the shorter runs sat on the edge.


@pytest.mark.slow
def test_learns_cartpole(tmp_path):
  summary, result = _train_and_evaluate("gym:CartPole-v1", 15_000, tmp_path, **CARTPOLE)
  last10 = float(np.mean(summary["scores"][-10:]))
  print("CartPole-v1 last 10 training episodes", summary["scores"][-10:], "mean", last10,
        "eval scores", result["scores"])
  # Random play scores about 22; the task's maximum is 500.
  assert np.mean(summary["scores"][:5]) < 100  # it did start from scratch
  assert last10 >= 400, summary["scores"][-10:]
  assert result["episodes"] == 10
  assert result["score_mean"] >= 400, result


def test_learns_pendulum(tmp_path):
  summary, result = _train_and_evaluate("gym:Pendulum-v1", 8000, tmp_path)
  print("Pendulum-v1 eval scores", result["scores"], "last training episodes",
        summary["scores"][-10:])
  # Random play scores about -1200; a swung-up, balanced pendulum about -150.
  assert np.mean(summary["scores"][:3]) < -900  # it did start from scratch
  assert result["score_mean"] >= -300, result
