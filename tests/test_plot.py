"""`wmrl plot` (wmrl/compare/plot.py): curves of any runs, seeds grouped by
environment, the seed mean and a 95% bootstrap interval at each point, as
PNG, Markdown and JSON; against values worked out by hand."""
import json

import numpy as np
import pytest

from test_compare import write_run
from wmrl import cli
from wmrl.compare import plot


def _runs(root):
  # Three CartPole seeds scoring 10, 20 and 30 at every record (steps 100..1000),
  # two of them also evaluated (40 and 60 at steps 500 and 1000); one Pendulum run.
  for seed, score in enumerate((10.0, 20.0, 30.0)):
    write_run(root / "cartpole" / f"seed-{seed}", "gym:CartPole-v1", seed,
              [(s, score) for s in range(100, 1001, 100)], 1000)
  for seed, score in ((0, 40.0), (1, 60.0)):
    with (root / "cartpole" / f"seed-{seed}" / "metrics.jsonl").open("a") as f:
      for step in (500, 1000):
        f.write(json.dumps({"step": step, "frames": step, "eval/score": score}) + "\n")
  write_run(root / "pendulum", "gym:Pendulum-v1", 0, [(s, -900.0 + s / 10) for s in
                                                      range(200, 2001, 200)], 2000)


def test_plot_groups_seeds_and_gives_the_mean_and_interval(tmp_path, capsys):
  _runs(tmp_path / "runs")
  out = tmp_path / "plots"
  assert cli.main(["plot", str(tmp_path / "runs"), "--out", str(out), "--every", "100"]) == 0
  assert sorted(p.name for p in out.iterdir()) == [
      "gym_CartPole-v1.png", "gym_Pendulum-v1.png", "plot.json", "plot.md"]
  result = json.loads((out / "plot.json").read_text())
  cartpole = result["gym:CartPole-v1"]
  assert cartpole["seeds"] == [0, 1, 2] and cartpole["every"] == 100
  train = cartpole["curves"]["episode/score"]
  assert train["frames"] == list(range(100, 1001, 100)) == train["steps"]
  np.testing.assert_allclose(train["mean"], 20.0)
  # The mean of 3 resampled seeds is 10 (all three the first) with probability
  # 1/27 = 3.7%, above 2.5%, and 30 likewise: the interval is [10, 30].
  np.testing.assert_allclose(train["ci_low"], 10.0)
  np.testing.assert_allclose(train["ci_high"], 30.0)
  assert train["seeds"] == {"0": [10.0] * 10, "1": [20.0] * 10, "2": [30.0] * 10}
  evaluation = cartpole["curves"]["eval/score"]  # only the two seeds that evaluated
  assert set(evaluation["seeds"]) == {"0", "1"} and evaluation["mean"][-1] == 50.0
  pendulum = result["gym:Pendulum-v1"]["curves"]["episode/score"]
  # One seed: no interval to speak of, the score itself; its records every 200 steps,
  # so the point at 300 is the record at 200 (wmrl compare's rule), -880.
  at = pendulum["frames"].index(300)  # its first point is 200, where its first record is
  assert pendulum["mean"][at] == pendulum["ci_low"][at] == pendulum["ci_high"][at] == -880.0
  table = (out / "plot.md").read_text()
  assert "| gym:CartPole-v1 | 3 | 1,000 | 20 [10, 30] at 1,000 | 50 [40, 60] at 1,000 |" in table
  assert "| gym:Pendulum-v1 | 1 | 2,000 | -700 [-700, -700] at 2,000 | - |" in table
  assert table in capsys.readouterr().out


def test_points_are_spaced_roundly_without_every():
  assert [plot.nice_every(f) for f in (40, 1000, 15_000, 1_000_000)] == [1, 50, 500, 50_000]


def test_bad_input_is_refused_clearly(tmp_path, capsys):
  assert cli.main(["plot", str(tmp_path / "nothing")]) == 2
  assert "run path" in capsys.readouterr().err
  _runs(tmp_path / "runs")
  (tmp_path / "afile").write_text("")
  assert cli.main(["plot", str(tmp_path / "runs"), "--out", str(tmp_path / "afile")]) == 2
  assert "is a file" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    cli.main(["plot", str(tmp_path / "runs"), "--every", "0"])
