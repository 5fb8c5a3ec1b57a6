"""The small environments of benchmarks/small_envs.py: each is a valid Gymnasium env, its random
score in the table is what random play scores, a scripted policy reaches its maximum, and the
verdict's threshold and interval are the ones worked out by hand."""
import pathlib
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

# Imported by name, not with conftest.load_script: the module's dataclass needs its module in
# sys.modules, and the env ids (`small_envs:make_maze`) import it by that name.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import small_envs  # noqa: E402

OWN = ("image_bandit", "maze", "chain", "point_reach", "catch")


def test_the_table():
  assert list(small_envs.ENVS) == ["image_bandit", "maze", "chain", "point_reach", "minigrid",
                                   "catch"]
  assert [e.name for e in small_envs.ENVS.values() if e.held_out] == ["catch"]
  for env in small_envs.ENVS.values():
    assert env.maximum > env.random, env.name
    assert 0 < env.steps <= 20_000, env.name  # the benchmark's budget: at most 20k steps


def _fake_seed_run(folder, seed, scores, trained_steps):
  """A run folder as `wmrl train` leaves it, as far as the table reads it: config.json, one
  metrics.jsonl record per episode and a committed checkpoint at `trained_steps`."""
  import json
  folder.mkdir(parents=True)
  (folder / "config.json").write_text(json.dumps(
      {"env": {"id": "small_envs:make_chain", "action_repeat": 1}, "run": {"seed": seed}}))
  with (folder / "metrics.jsonl").open("w") as f:
    for i, score in enumerate(scores):
      f.write(json.dumps({"step": 30 * (i + 1), "episode/score": score}) + "\n")
  checkpoint = folder / "checkpoints" / f"ckpt-{trained_steps:012d}"
  checkpoint.mkdir(parents=True)
  (checkpoint / "COMMITTED").write_text("")


def test_a_row_has_no_verdict_until_every_seed_has_trained_its_budget(tmp_path):
  budget = small_envs.ENVS["chain"].steps
  _fake_seed_run(tmp_path / "chain" / "seed-0", 0, [0.0] * 5 + [1.0] * 10, budget)
  _fake_seed_run(tmp_path / "chain" / "seed-1", 1, [0.0] * 5 + [1.0] * 10, budget - 100)
  row, = small_envs.table_rows(tmp_path, ["chain"])
  assert (row["seeds"], row["steps"], row["mean"]) == (2, budget - 100, 1.0)
  assert row["verdict"] == "UNFINISHED (PASS so far)"
  # A seed that trained on past the budget is scored on the episodes that ended within it.
  episodes = budget // 30
  _fake_seed_run(tmp_path / "done" / "chain" / "seed-0", 0,
                 [1.0] * (episodes - 1) + [0.0] + [-1.0] * 5, budget + 150)
  row, = small_envs.table_rows(tmp_path / "done", ["chain"])
  assert (row["steps"], row["mean"], row["verdict"]) == (budget, 0.9, "PASS")


@pytest.mark.parametrize("name", OWN)
def test_passes_gymnasiums_checker(name):
  env = small_envs.make_env(small_envs.ENVS[name].id)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    # None renders (wmrl films the image observations), so the render checks have nothing to
    # test and only warn that an env made without gymnasium.make has no spec to look in.
    check_env(env, skip_render_check=True)
  assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("name", OWN)
def test_episodes_are_the_same_for_a_seed(name):
  env_id = small_envs.ENVS[name].id
  first = small_envs.episode_returns(env_id, None, episodes=5, seed=3)
  np.testing.assert_array_equal(first, small_envs.episode_returns(env_id, None, 5, seed=3))


@pytest.mark.parametrize("name", list(small_envs.ENVS))
def test_random_play_scores_the_tables_random_score(name):
  env = small_envs.ENVS[name]
  # Seed 1: episodes other than the table's (seed 0), so the table is checked, not replayed.
  returns = small_envs.episode_returns(env.id, None, episodes=50, seed=1)
  # 4 standard errors of a 50-episode mean (the table's own 200-episode mean has half that),
  # plus 5% of the score range: a rare reward (chain: 2 successes in 200) can leave 50
  # episodes with no spread at all, whose standard error says nothing.
  tolerance = 4 * returns.std() / np.sqrt(len(returns)) + 0.05 * (env.maximum - env.random)
  assert abs(returns.mean() - env.random) < tolerance, (returns.mean(), env.random, tolerance)


@pytest.mark.parametrize("name", OWN)
def test_a_scripted_policy_scores_the_maximum(name):
  env = small_envs.ENVS[name]
  returns = small_envs.episode_returns(env.id, small_envs.SCRIPTED[name], episodes=20, seed=1)
  if name == "point_reach":  # the maximum is this controller's mean over 200 episodes
    assert abs(returns.mean() - env.maximum) < 0.1 * (env.maximum - env.random)
  else:
    np.testing.assert_array_equal(returns, env.maximum)


def test_minigrid_shortest_path_scores_its_maximum():
  env = gym.make("minigrid:MiniGrid-Empty-5x5-v0")
  env.reset(seed=0)
  actions = env.unwrapped.actions
  total, ended = 0.0, False
  for action in (actions.forward, actions.forward, actions.right, actions.forward,
                 actions.forward):
    _, reward, ended, _, _ = env.step(action)
    total += reward
  env.close()
  assert ended and total == pytest.approx(small_envs.ENVS["minigrid"].maximum)


def test_catch_pays_per_ball_and_ends_after_five():
  env = small_envs.make_catch()
  obs, _ = env.reset(seed=0)
  rewards = []
  for step in range(35):
    obs, reward, terminated, truncated, _ = env.step(1)  # the paddle stays in column 2
    rewards.append(reward)
    assert terminated == (step == 34) and not truncated
  landed = [r for r in rewards if r]
  assert len(landed) == 5 and set(landed) <= {1.0, -1.0}
  assert [i for i, r in enumerate(rewards) if r] == [6, 13, 20, 27, 34]


def test_chain_goes_back_to_the_start():
  env = small_envs.make_chain()
  obs, _ = env.reset(seed=0)
  for _ in range(5):
    obs, *_ = env.step(1)
  assert obs.argmax() == 5
  obs, reward, terminated, truncated, _ = env.step(0)
  assert obs.argmax() == 0 and reward == 0 and not terminated and not truncated


def test_verdict_passes_when_the_worst_seed_clears_the_threshold():
  # Threshold 10 + 0.25 x (20 - 10) = 12.5. With 3 seeds all three bootstrap draws are the
  # worst seed with chance 1/27 > 2.5%, so the interval's lower end is the worst seed: 13.
  result = small_envs.verdict([13.0, 15.0, 17.0], random=10.0, maximum=20.0)
  assert result["threshold"] == 12.5
  assert result["ci_low"] == 13.0 and result["ci_high"] == 17.0
  assert result["mean"] == 15.0 and result["normalized"] == 0.5
  assert result["verdict"] == "PASS" and result["seeds"] == 3


def test_verdict_fails_on_one_bad_seed_whatever_the_mean():
  # Mean 16.33 is well above 12.5, but the worst seed, 12, is the interval's lower end.
  result = small_envs.verdict([12.0, 18.0, 19.0], random=10.0, maximum=20.0)
  assert result["ci_low"] == 12.0 and result["verdict"] == "FAIL"


def test_verdict_on_negative_returns():
  # point_reach-like: threshold -40 + 0.25 x (-4 - -40) = -31.
  passed = small_envs.verdict([-30.0, -25.0, -20.0], random=-40.0, maximum=-4.0)
  assert passed["threshold"] == -31.0 and passed["verdict"] == "PASS"
  assert small_envs.verdict([-32.0, -10.0, -8.0], -40.0, -4.0)["verdict"] == "FAIL"


def test_verdict_refuses_no_scores_and_an_inverted_range():
  with pytest.raises(ValueError, match="one finite score per seed"):
    small_envs.verdict([], 0.0, 1.0)
  with pytest.raises(ValueError, match="must be above"):
    small_envs.verdict([1.0], 1.0, 1.0)


def test_out_is_a_name_or_a_path():
  assert small_envs.output_path("x") == small_envs.RESULTS / "x.csv"
  assert small_envs.output_path("/tmp/t/x") == pathlib.Path("/tmp/t/x.csv")
  assert small_envs.output_path("/tmp/t/x.csv") == pathlib.Path("/tmp/t/x.csv")
