"""Tests for wmrl/compare/: the frames axis (from records, or computed for older runs),
window scores, per-task and aggregate numbers worked out by hand on synthetic runs, the
inside/outside verdict and its exit status, bootstrap intervals, the shipped reference
figures, the outputs (table, JSON, Markdown, PNG) and every user error."""
import json
import subprocess
import sys

import numpy as np
import pytest

from wmrl import compare as cmp
from wmrl.config import EnvConfig

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# A small reference with round published means, so normalised scores are easy to check.
# cheetah's published mean of 0 at 30k makes a ratio meaningless: it must be left out.
REFERENCE_CSV = """task,frames,seeds,mean,min,max
dmc_walker_walk,10000,5,100,60,140
dmc_walker_walk,20000,5,200,150,250
dmc_walker_walk,30000,5,300,250,350
dmc_cheetah_run,10000,5,50,40,60
dmc_cheetah_run,20000,5,100,80,120
dmc_cheetah_run,30000,5,0,0,0
"""

# Per run: (env id, seed, [(step, score), ...], last step of any record); with action
# repeat 1 (write_run's default) a step is a frame.
# Window means at 10k average the records at 5k and 10k; at 20k those at 15k and 20k;
# at 30k no score lies in (20k, 30k], so the last score at or before 30k counts.
RUNS = {
    "walker/s0": ("dmc:walker-walk", 0, [(5000, 80), (10000, 120), (15000, 150), (20000, 250)], 30000),
    "walker/s1": ("dmc:walker-walk", 1, [(5000, 40), (10000, 60), (15000, 300), (20000, 300)], 30000),
    "walker/s2": ("dmc:walker-walk", 2, [(5000, 150), (10000, 150), (15000, 100), (20000, 100)], 30000),
    "cheetah/s0": ("dmc:cheetah-run", 0, [(5000, 20), (10000, 40), (15000, 100), (20000, 100)], 30000),
    "cheetah/s1": ("dmc:cheetah-run", 1, [(5000, 50), (10000, 50), (15000, 60), (20000, 80)], 30000),
    # This seed stopped at 10k: it is missing at 20k and 30k.
    "cheetah/s2": ("dmc:cheetah-run", 2, [(5000, 100), (10000, 100)], 10000),
}
# Scores by hand (window means):      10k           20k              30k
WALKER = {10000: [100, 50, 150], 20000: [200, 300, 100], 30000: [250, 300, 100]}
CHEETAH = {10000: [30, 50, 100], 20000: [100, 70, None], 30000: [100, 80, None]}
# Seed means against the published [min, max]:
#   walker  100 in [60, 140], 200 in [150, 250], 216.7 out of [250, 350]: 2 of 3 inside
#   cheetah  60 in [40, 60] (the end counts), 85 in [80, 120], 90 out of [0, 0]: 2 of 3
INSIDE = {"dmc_walker_walk": [True, True, False], "dmc_cheetah_run": [True, True, False]}


def write_run(folder, env_id, seed, points, last_step, metric="episode/score", repeat=1,
              frames=True):
  """A run folder as `wmrl train` writes it: records at agent steps with their frames.

  frames=False writes records as wmrl did before it logged frames; repeat=None leaves
  env.action_repeat out of config.json.
  """
  folder.mkdir(parents=True)
  env = {"id": env_id} if repeat is None else {"id": env_id, "action_repeat": repeat}
  (folder / "config.json").write_text(json.dumps({"env": env, "run": {"seed": seed}}))
  per_step = cmp.frames_per_step(EnvConfig(id=env_id, action_repeat=repeat or 1))
  axes = lambda step: {"step": step, "frames": step * per_step} if frames else {"step": step}
  lines = [json.dumps(axes(s) | {metric: v, "episode/length": 500}) for s, v in points]
  # Training summaries carry other metrics; they mark how far the run got.
  lines.append(json.dumps(axes(last_step) | {"loss/rec": 0.5}))
  (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture
def runs_dir(tmp_path):
  for name, (env_id, seed, points, last) in RUNS.items():
    write_run(tmp_path / "runs" / name, env_id, seed, points, last)
  return tmp_path / "runs"


@pytest.fixture
def small_reference(monkeypatch):
  reference = cmp.parse_reference(REFERENCE_CSV, "dmc_proprio")
  # The comparison looks its reference up in wmrl/compare/references.py.
  monkeypatch.setattr(cmp.references, "load_reference", lambda name: reference)
  return reference


def make_run(frames, values, last_frame, task="dmc_walker_walk"):
  return cmp.Run("run", "dmc:walker-walk", task, 0, last_frame, np.array(frames, np.int64),
                 np.array(values, np.float64), frozenset(["episode/score"]))


def approx_list(values):
  return [None if v is None else pytest.approx(v) for v in values]


# --- task names ------------------------------------------------------------------------

@pytest.mark.parametrize("env_id, task", [
    ("dmc:walker-walk", "dmc_walker_walk"),
    ("dmc:ball_in_cup-catch", "dmc_ball_in_cup_catch"),
    ("dmc:cartpole-swingup_sparse", "dmc_cartpole_swingup_sparse"),
    ("atari:pong", "atari_pong"),
    ("atari:ms_pacman", "atari_ms_pacman"),
    ("gym:ALE/Pong-v5", "atari_pong"),
    ("gym:ale_py:ALE/MsPacman-v5", "atari_ms_pacman"),
    ("gym:ALE/UpNDown-v5", "atari_up_n_down"),
    ("gym:BreakoutNoFrameskip-v4", "atari_breakout"),
    ("gym:Hopper-v5", "gym_hopper_v5"),
    ("custom:my-maze", "custom_my_maze"),
    ("playground:CartpoleBalance", "dmc_cartpole_balance"),
    ("playground:BallInCup", "dmc_ball_in_cup_catch"),
    ("playground:SwimmerSwimmer6", "dmc_swimmer_swimmer6"),
    ("playground:FingerTurnEasy", "dmc_finger_turn_easy"),
])
def test_task_name(env_id, task):
  assert cmp.task_name(env_id) == task


def test_mapped_names_exist_in_the_shipped_references():
  assert cmp.task_name("dmc:ball_in_cup-catch") in cmp.load_reference("dmc_proprio").tasks
  assert cmp.task_name("gym:ALE/KungFuMaster-v5") in cmp.load_reference("atari100k").tasks


# --- the shipped reference figures -----------------------------------------------------

def test_shipped_references_load_from_package_data():
  proprio = cmp.load_reference("dmc_proprio")
  assert len(proprio.tasks) == 18 and proprio.window == 10000
  # First walker_walk row of dreamerv3_dmc_proprio.csv.
  assert proprio.at("dmc_walker_walk", 10000) == {"mean": 43.02, "min": 37.14, "max": 51.81,
                                                  "seeds": 5}
  assert cmp.load_reference("dmc_vision").frames(["dmc_quadruped_run"])[-1] == 1_000_000
  atari = cmp.load_reference("atari100k")
  assert atari.at("atari_pong", 10000)["mean"] == -20.1
  # The Atari 100k curves cover all 400k frames (100k agent steps at ALE v5's skip of 4).
  assert atari.frames(atari.tasks)[-1] == 400_000 and len(atari.tasks) == 26
  # private_eye has no point at 10k: the figure is missing there, not zero.
  assert atari.at("atari_private_eye", 10000)["mean"] is None


def test_reference_without_a_frames_column_is_refused():
  with pytest.raises(cmp.CompareError, match=r"lacks the columns \['frames'\]"):
    cmp.parse_reference("task,env_step,seeds,mean,min,max\na,10000,1,1,1,1\n", "old")


# --- the frames axis -------------------------------------------------------------------

def test_records_frames_are_the_axis(tmp_path, small_reference, capsys):
  # Action repeat 2: the records at agent steps 2.5k and 5k are at 5k and 10k frames.
  write_run(tmp_path / "w", "dmc:walker-walk", 0, [(2500, 80), (5000, 120), (10000, 200)], 15000,
            repeat=2)
  result = cmp.compare([str(tmp_path / "w")], "dmc_proprio", bootstrap=0)
  assert result["frames"] == [10000, 20000, 30000]
  scores = [p["runs"]["mean"] for p in result["tasks"]["dmc_walker_walk"]["points"]]
  assert scores == [100.0, 200.0, 200.0]
  (run,) = result["runs"]
  assert (run["last_step"], run["last_frame"], run["frames_per_step"]) == (15000, 30000, 2)
  assert run["frames_computed"] == 0 and "warning" not in capsys.readouterr().err


def test_older_runs_get_frames_from_their_config_with_one_warning(tmp_path, small_reference,
                                                                 capsys):
  points = [(2500, 80), (5000, 120), (10000, 200)]
  write_run(tmp_path / "runs" / "new", "dmc:walker-walk", 0, points, 15000, repeat=2)
  write_run(tmp_path / "runs" / "old", "dmc:walker-walk", 1, points, 15000, repeat=2, frames=False)
  write_run(tmp_path / "runs" / "older", "dmc:walker-walk", 2, points, 15000, repeat=2,
            frames=False)
  result = cmp.compare([str(tmp_path / "runs")], "dmc_proprio", bootstrap=0)
  # The same records with and without `frames` land on the same frames.
  for point in result["tasks"]["dmc_walker_walk"]["points"]:
    assert len(set(point["runs"]["scores"])) == 1
  assert [r["frames_computed"] for r in result["runs"]] == [0, 4, 4]
  err = capsys.readouterr().err
  assert err.count("warning") == 1
  assert "2 runs have records without 'frames'" in err and "x2 for " in err and "1 more" in err


def test_older_ale_runs_count_the_emulators_frame_skip(tmp_path):
  write_run(tmp_path / "pong", "gym:ale_py:ALE/Pong-v5", 0, [(1000, -21.0), (2500, -20.0)], 2500,
            frames=False)
  run = cmp.load_run(tmp_path / "pong", "episode/score")
  assert run.frames.tolist() == [4000, 10000] and run.last_frame == 10000
  assert (run.frames_per_step, run.frames_computed, run.last_step) == (4, 3, 2500)


def test_a_config_without_action_repeat_counts_one_and_says_so(tmp_path, small_reference, capsys):
  write_run(tmp_path / "w", "dmc:walker-walk", 0, [(10000, 100)], 10000, repeat=None,
            frames=False)
  result = cmp.compare([str(tmp_path / "w")], "dmc_proprio", bootstrap=0)
  assert result["runs"][0]["last_frame"] == 10000
  assert "no env.action_repeat: taken as 1" in capsys.readouterr().err


def test_a_bad_action_repeat_in_config_is_an_error(tmp_path):
  write_run(tmp_path / "w", "dmc:walker-walk", 0, [(10000, 100)], 10000, repeat=0)
  with pytest.raises(cmp.CompareError, match="env.action_repeat 0; it must be a positive int"):
    cmp.load_run(tmp_path / "w", "episode/score")


# --- scores at points ------------------------------------------------------------------

def test_window_scores_mean_fallback_and_missing():
  run = make_run([1000, 5000, 10000, 30000], [1.0, 3.0, 5.0, 7.0], last_frame=30000)
  scores = cmp.window_scores(run, [500, 10000, 12000, 25000, 30000, 40000], window=10000)
  # 500: nothing logged yet; 10k: mean of (0, 10k]; 12k: mean of (2k, 12k];
  # 25k: (15k, 25k] is empty, so the last value before it; 40k: not reached.
  assert np.isnan(scores[0]) and np.isnan(scores[-1])
  np.testing.assert_allclose(scores[1:5], [3.0, 4.0, 5.0, 7.0])


def test_window_scores_of_a_run_without_the_metric_are_missing():
  run = make_run([], [], last_frame=20000)
  assert np.isnan(cmp.window_scores(run, [10000, 20000], 10000)).all()


@pytest.mark.parametrize("furthest, frames", [
    (30000, [10000, 20000, 30000]),
    (125000, [20000, 40000, 60000, 80000, 100000, 120000]),
    (200000, [50000, 100000, 150000, 200000]),
    (495000, [100000, 200000, 300000, 400000, 490000]),  # the last reached point always shows
])
def test_default_frames_are_round_reached_and_at_most_six(furthest, frames):
  reference = cmp.load_reference("dmc_proprio")
  runs = [make_run([], [], last_frame=furthest), make_run([], [], last_frame=furthest // 2)]
  assert cmp.default_frames(runs, reference) == frames


# --- per task, by hand -----------------------------------------------------------------

def test_per_task_mean_min_max_over_seeds(runs_dir, small_reference):
  result = cmp.compare([str(runs_dir)], "dmc_proprio", bootstrap=0)
  assert result["frames"] == [10000, 20000, 30000] and result["window"] == 10000
  for task, expected in (("dmc_walker_walk", WALKER), ("dmc_cheetah_run", CHEETAH)):
    summary = result["tasks"][task]
    assert summary["seeds"] == [0, 1, 2]
    for entry in summary["points"]:
      scores = expected[entry["frames"]]
      assert entry["runs"]["scores"] == approx_list(scores), (task, entry["frames"])
      finite = [s for s in scores if s is not None]
      assert entry["runs"]["mean"] == pytest.approx(sum(finite) / len(finite))
      assert (entry["runs"]["min"], entry["runs"]["max"], entry["runs"]["n"]) == (
          min(finite), max(finite), len(finite))
  walker_20k = result["tasks"]["dmc_walker_walk"]["points"][1]
  assert walker_20k["published"] == {"mean": 200.0, "min": 150.0, "max": 250.0, "seeds": 5}
  assert walker_20k["normalised"]["scores"] == approx_list([1.0, 1.5, 0.5])


def test_a_published_mean_of_zero_leaves_the_task_out_of_normalised_aggregates(
    runs_dir, small_reference):
  result = cmp.compare([str(runs_dir)], "dmc_proprio", bootstrap=0)
  assert result["tasks"]["dmc_cheetah_run"]["points"][2]["normalised"] is None
  assert result["aggregate"]["normalised"][2]["tasks"] == ["dmc_walker_walk"]
  assert result["aggregate"]["raw"][2]["tasks"] == ["dmc_cheetah_run", "dmc_walker_walk"]


# --- inside or outside the published band, by hand ------------------------------------

# Against REFERENCE_CSV's walker [60, 140] and [150, 250], cheetah [40, 60] and [80, 120]:
# walker's seed means 100 and 150 lie inside (150 on the end; its seed at 100 lies below,
# but the mean is what counts); cheetah's single seed at 70 and 130 lies above both.
BAND_RUNS = {
    "walker/s0": ("dmc:walker-walk", 0, [(10000, 80), (20000, 100)], 20000),
    "walker/s1": ("dmc:walker-walk", 1, [(10000, 120), (20000, 200)], 20000),
    "cheetah/s0": ("dmc:cheetah-run", 0, [(10000, 70), (20000, 130)], 20000),
}


@pytest.fixture
def band_runs(tmp_path):
  for name, (env_id, seed, points, last) in BAND_RUNS.items():
    write_run(tmp_path / "band" / name, env_id, seed, points, last)
  return str(tmp_path / "band")


def test_the_verdict_per_point_per_task_and_overall(band_runs, small_reference):
  result = cmp.compare([band_runs], "dmc_proprio", bootstrap=0)
  assert result["frames"] == [10000, 20000]
  walker, cheetah = result["tasks"]["dmc_walker_walk"], result["tasks"]["dmc_cheetah_run"]
  assert [p["runs"]["mean"] for p in walker["points"]] == [100.0, 150.0]
  assert [p["inside"] for p in walker["points"]] == [True, True]
  assert [p["inside"] for p in cheetah["points"]] == [False, False]
  assert walker["verdict"] == {"points": 2, "inside": 2, "share": 1.0}
  assert cheetah["verdict"] == {"points": 2, "inside": 0, "share": 0.0}
  assert result["verdict"] == {"points": 4, "inside": 2, "share": 0.5, "require_inside": None,
                               "passed": None}


def test_the_verdict_of_the_hand_worked_runs(runs_dir, small_reference):
  result = cmp.compare([str(runs_dir)], "dmc_proprio", bootstrap=0)
  for task, expected in INSIDE.items():
    assert [p["inside"] for p in result["tasks"][task]["points"]] == expected, task
  assert (result["verdict"]["inside"], result["verdict"]["points"]) == (4, 6)


def test_inside_counts_the_ends_and_judges_no_missing_figure():
  published = {"mean": 5.0, "min": 2.0, "max": 8.0, "seeds": 5}
  assert cmp.inside({"mean": 2.0}, published) and cmp.inside({"mean": 8.0}, published)
  assert cmp.inside({"mean": 8.5}, published) is False
  assert cmp.inside({"mean": None}, published) is None
  assert cmp.inside({"mean": 3.0}, {"mean": None, "min": None, "max": None, "seeds": None}) is None
  assert cmp.share_inside([True, None, False, True]) == {"points": 3, "inside": 2,
                                                         "share": pytest.approx(2 / 3)}
  assert cmp.share_inside([None]) == {"points": 0, "inside": 0, "share": None}


def test_the_table_marks_each_point_and_the_shares(band_runs, small_reference, capsys):
  assert cmp.main([band_runs, "--reference", "dmc_proprio", "--bootstrap", "0"]) == 0
  lines = capsys.readouterr().out.splitlines()
  walker = next(line for line in lines if line.startswith("dmc_walker_walk"))
  assert "100.0 [80.0, 120.0] in" in walker and "150.0 [100.0, 200.0] in" in walker
  assert walker.endswith("2/2 (100%)")
  cheetah = next(line for line in lines if line.startswith("dmc_cheetah_run"))
  assert "70.0 [70.0, 70.0] out" in cheetah and cheetah.endswith("0/2 (0%)")
  assert "inside the published [min, max]: 2/4 (50%) of task points" in lines


@pytest.mark.parametrize("required, status", [(None, 0), ("0", 0), ("0.5", 0), ("0.75", 3),
                                              ("1", 3)])
def test_require_inside_sets_the_exit_status(band_runs, small_reference, capsys, required,
                                             status):
  flag = [] if required is None else ["--require-inside", required]
  assert cmp.main([band_runs, "--reference", "dmc_proprio", "--bootstrap", "0"] + flag) == status
  captured = capsys.readouterr()
  assert "dmc_walker_walk" in captured.out  # the table is printed either way
  if status == 3:
    assert ("wmrl compare: inside the published [min, max]: 2/4 (50%) of task points; "
            f"required {float(required):.0%}: NOT met (--require-inside {required})"
            in captured.err)
  else:
    assert "NOT met" not in captured.err + captured.out


def test_require_inside_is_recorded_in_the_result(band_runs, small_reference):
  result = cmp.compare([band_runs], "dmc_proprio", bootstrap=0, require_inside=0.75)
  assert result["verdict"]["require_inside"] == 0.75 and result["verdict"]["passed"] is False
  assert cmp.compare([band_runs], "dmc_proprio", bootstrap=0,
                     require_inside=0.5)["verdict"]["passed"] is True


def test_no_judged_point_does_not_meet_a_requirement(tmp_path, small_reference, capsys):
  # The run's first score comes after both compared points: nothing is judged.
  write_run(tmp_path / "w", "dmc:walker-walk", 0, [(25000, 100)], 30000)
  result = cmp.compare([str(tmp_path / "w")], "dmc_proprio", frames=[10000, 20000], bootstrap=0,
                       require_inside=0.0)
  assert result["verdict"]["share"] is None and result["verdict"]["passed"] is False
  assert cmp.main([str(tmp_path / "w"), "--reference", "dmc_proprio", "--frames", "10k,20k",
                   "--require-inside", "0"]) == 3
  assert "none judged" in capsys.readouterr().err


@pytest.mark.parametrize("fraction", ["1.5", "-0.1", "half", "nan", "inf"])
def test_a_bad_fraction_is_refused_with_status_2(band_runs, small_reference, capsys, fraction):
  assert cmp.main([band_runs, "--reference", "dmc_proprio", "--require-inside", fraction]) == 2
  err = capsys.readouterr().err
  assert "--require-inside takes a fraction from 0 to 1" in err and fraction in err


@pytest.mark.parametrize("fraction", [1.5, -1, True, "0.5"])
def test_compare_refuses_a_bad_fraction(band_runs, small_reference, fraction):
  with pytest.raises(cmp.CompareError, match="--require-inside takes a fraction from 0 to 1"):
    cmp.compare([band_runs], "dmc_proprio", bootstrap=0, require_inside=fraction)


def test_help_names_the_exit_statuses(capsys):
  with pytest.raises(SystemExit):
    cmp.main(["--help"])
  out = " ".join(capsys.readouterr().out.split())
  assert "--require-inside FRACTION" in out and "3 fewer points inside the published band" in out


# --- aggregates, by hand ---------------------------------------------------------------

def test_aggregate_mean_median_iqm_on_hand_values():
  # Task means 2, 10, 4: mean 16/3, median 4. Pooled sorted 1 2 3 4 4 10: the IQM drops
  # one value from each end (trim 25% of 6, floored) -> (2 + 3 + 4 + 4) / 4.
  groups = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([10.0]), "c": np.array([4.0, 4.0])}
  result = cmp.aggregate(groups, bootstrap=0)
  assert result["tasks"] == ["a", "b", "c"]
  assert result["mean"]["value"] == pytest.approx(16 / 3)
  assert result["median"]["value"] == pytest.approx(4.0)
  assert result["iqm"]["value"] == pytest.approx(3.25)
  assert result["mean"]["ci"] is None


def test_iqm_matches_the_trimmed_mean_definition():
  assert cmp.iqm(np.array([5.0, 1.0, 2.0, 3.0, 4.0, 100.0, 6.0, 7.0])) == pytest.approx(4.5)
  assert cmp.iqm(np.array([[1.0, 2.0, 9.0], [3.0, 3.0, 3.0]])).tolist() == [4.0, 3.0]


def test_normalised_and_raw_aggregates_of_the_runs(runs_dir, small_reference):
  result = cmp.compare([str(runs_dir)], "dmc_proprio", bootstrap=0)
  norm, raw = result["aggregate"]["normalised"], result["aggregate"]["raw"]
  # 10k: walker ratios 1.0 0.5 1.5 (mean 1.0), cheetah 0.6 1.0 2.0 (mean 1.2).
  assert norm[0]["mean"]["value"] == pytest.approx(1.1)
  assert norm[0]["median"]["value"] == pytest.approx(1.1)
  assert norm[0]["iqm"]["value"] == pytest.approx((0.6 + 1.0 + 1.0 + 1.5) / 4)
  # 20k: walker 1.0 1.5 0.5 (mean 1.0), cheetah 1.0 0.7 (mean 0.85); pooled 5 values, trim 1.
  assert norm[1]["mean"]["value"] == pytest.approx(0.925)
  assert norm[1]["iqm"]["value"] == pytest.approx((0.7 + 1.0 + 1.0) / 3)
  # Raw 10k: task means 100 and 60; pooled 30 50 50 100 100 150.
  assert raw[0]["mean"]["value"] == pytest.approx(80.0)
  assert raw[0]["iqm"]["value"] == pytest.approx(75.0)
  assert raw[0]["published_mean"] == pytest.approx(75.0)


def test_bootstrap_intervals_contain_the_estimate_and_are_seeded(runs_dir, small_reference):
  first = cmp.compare([str(runs_dir)], "dmc_proprio", bootstrap=500, seed=3)
  again = cmp.compare([str(runs_dir)], "dmc_proprio", bootstrap=500, seed=3)
  other = cmp.compare([str(runs_dir)], "dmc_proprio", bootstrap=500, seed=4)
  assert first["aggregate"] == again["aggregate"]
  assert first["aggregate"] != other["aggregate"]
  for kind in ("normalised", "raw"):
    for entry in first["aggregate"][kind]:
      for name in ("mean", "median", "iqm"):
        low, high = entry[name]["ci"]
        assert low <= entry[name]["value"] <= high, (kind, entry["frames"], name)
        assert low < high or len(entry["tasks"]) == 1


def test_bootstrap_is_stratified_by_task():
  # One seed per task leaves nothing to resample: the interval is the point itself.
  groups = {"a": np.array([1.0]), "b": np.array([3.0])}
  result = cmp.aggregate(groups, bootstrap=200, rng=np.random.default_rng(0))
  assert result["mean"]["ci"] == [pytest.approx(2.0), pytest.approx(2.0)]


# --- outputs ---------------------------------------------------------------------------

def test_cli_prints_the_table(runs_dir, small_reference, capsys):
  assert cmp.main([str(runs_dir), "--reference", "dmc_proprio", "--frames", "10k,20000",
                   "--bootstrap", "100"]) == 0
  out = capsys.readouterr().out
  lines = out.splitlines()
  assert lines[0].startswith("6 runs on 2 tasks vs DreamerV3 'dmc_proprio'")
  assert "columns are environment frames" in lines[0]
  header = next(line for line in lines if line.startswith("task "))
  assert header.split() == ["task", "source", "10k", "20k", "inside"]
  walker = next(line for line in lines if line.startswith("dmc_walker_walk"))
  assert walker.split("  ")[0] == "dmc_walker_walk"
  assert "100.0 [50.0, 150.0] in" in walker and "200.0 [100.0, 300.0] in" in walker
  assert walker.endswith("2/2 (100%)")
  cheetah = next(line for line in lines if line.startswith("dmc_cheetah_run"))
  assert "85.0 [70.0, 100.0] (2) in" in cheetah  # two of three seeds reached 20k
  assert "inside the published [min, max]: 4/4 (100%) of task points" in lines
  mean_row = next(line for line in lines if line.strip().startswith("mean "))
  assert mean_row.split()[1] == "1.10"


def test_out_writes_json_markdown_and_pngs(runs_dir, small_reference, tmp_path):
  pytest.importorskip("matplotlib")
  out = tmp_path / "cmp"
  result = cmp.compare([str(runs_dir)], "dmc_proprio", out=str(out), bootstrap=50)
  assert json.loads((out / "compare.json").read_text()) == result
  markdown = (out / "compare.md").read_text()
  assert ("| dmc_walker_walk | runs (3) | 100.0 [50.0, 150.0] in | 200.0 [100.0, 300.0] in "
          "| 216.7 [100.0, 300.0] out | 2/3 (67%) |") in markdown
  assert "| --- | --- | --- | --- | --- | --- |" in markdown
  assert "inside the published [min, max]: 4/6 (67%) of task points" in markdown
  for task in ("dmc_walker_walk", "dmc_cheetah_run"):
    data = (out / f"{task}.png").read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE)
  curve = result["tasks"]["dmc_cheetah_run"]["curve"]
  assert curve["frames"] == [10000, 20000, 30000] and curve["n"] == [3, 2, 2]
  assert result["verdict"] == {"points": 6, "inside": 4, "share": pytest.approx(4 / 6),
                               "require_inside": None, "passed": None}


def test_json_has_no_nan(runs_dir, small_reference, tmp_path):
  pytest.importorskip("matplotlib")
  cmp.compare([str(runs_dir)], "dmc_proprio", out=str(tmp_path / "cmp"), bootstrap=0)
  text = (tmp_path / "cmp" / "compare.json").read_text()
  assert "NaN" not in text and "Infinity" not in text
  assert json.loads(text)["tasks"]["dmc_cheetah_run"]["points"][1]["runs"]["scores"][2] is None


def test_missing_matplotlib_says_how_to_install(runs_dir, small_reference, tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail
  with pytest.raises(ImportError, match="pip install matplotlib"):
    cmp.compare([str(runs_dir)], "dmc_proprio", out=str(tmp_path / "cmp"), bootstrap=0)
  assert not (tmp_path / "cmp").exists()


# --- errors ----------------------------------------------------------------------------

def test_error_for_a_path_that_does_not_exist(tmp_path):
  with pytest.raises(cmp.CompareError, match="nowhere' does not exist"):
    cmp.compare([str(tmp_path / "nowhere")], "dmc_proprio")


def test_error_for_a_folder_without_runs(tmp_path):
  (tmp_path / "empty" / "sub").mkdir(parents=True)
  (tmp_path / "empty" / "sub" / "metrics.jsonl").write_text("")  # no config.json beside it
  with pytest.raises(cmp.CompareError, match="no run folders under .*config.json.*metrics.jsonl"):
    cmp.compare([str(tmp_path / "empty")], "dmc_proprio")


def test_error_for_a_config_without_env_id(tmp_path):
  write_run(tmp_path / "run", "dmc:walker-walk", 0, [(10000, 1.0)], 10000)
  (tmp_path / "run" / "config.json").write_text(json.dumps({"run": {"seed": 0}}))
  with pytest.raises(cmp.CompareError, match="config.json has no field env.id"):
    cmp.compare([str(tmp_path / "run")], "dmc_proprio")


def test_unknown_reference_lists_the_known_ones(runs_dir):
  with pytest.raises(cmp.CompareError, match="unknown reference 'dmc'.*dmc_proprio, dmc_vision, atari100k"):
    cmp.compare([str(runs_dir)], "dmc")


def test_a_mistyped_reference_gets_the_closest_name(runs_dir):
  with pytest.raises(cmp.CompareError, match=r"unknown reference 'dmc_propio'; did you mean dmc_proprio"):
    cmp.compare([str(runs_dir)], "dmc_propio")


def test_the_references_are_the_suites_with_figures():
  from wmrl import suites
  assert list(suites.references()) == ["dmc_proprio", "dmc_vision", "atari100k"]
  reference = cmp.load_reference("atari100k")
  assert sorted(reference.tasks) == suites.figures_tasks(suites.SUITES["atari100k"].figures)


def test_compare_imports_no_jax():
  # `wmrl compare` runs where JAX is slow to import or absent: NumPy only.
  code = "import sys, wmrl.compare; print('jax' in sys.modules)"
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
  assert result.stdout.strip() == "False", result.stderr


def test_run_of_another_task_is_skipped_with_the_closest_names(runs_dir, capsys):
  write_run(runs_dir / "hopper", "dmc:hopper-hopp", 0, [(10000, 5.0)], 10000)
  result = cmp.compare([str(runs_dir)], "dmc_proprio", bootstrap=0)
  err = capsys.readouterr().err
  assert "task 'dmc_hopper_hopp'" in err and "closest tasks there: dmc_hopper_hop" in err
  assert [s["task"] for s in result["skipped"]] == ["dmc_hopper_hopp"]
  assert sorted(result["tasks"]) == ["dmc_cheetah_run", "dmc_walker_walk"]


def test_error_when_no_run_matches_the_reference(runs_dir):
  with pytest.raises(cmp.CompareError, match="no run has a task of reference 'atari100k'.*atari_pong"):
    cmp.compare([str(runs_dir)], "atari100k")


def test_metric_absent_from_every_run_lists_the_metrics(runs_dir, small_reference):
  with pytest.raises(cmp.CompareError, match="'eval/score'.*episode/length, episode/score, loss/rec"):
    cmp.compare([str(runs_dir)], "dmc_proprio", metric="eval/score")


def test_frames_outside_the_reference_are_an_error(runs_dir, small_reference):
  with pytest.raises(cmp.CompareError,
                     match="frames 15000 not in reference.*10000 to 30000 frames every 10000"):
    cmp.compare([str(runs_dir)], "dmc_proprio", frames=[10000, 15000])


def test_cli_reports_errors_with_status_2(tmp_path, capsys):
  assert cmp.main([str(tmp_path / "nowhere"), "--reference", "dmc_proprio"]) == 2
  assert "wmrl compare: error:" in capsys.readouterr().err
  assert cmp.main([str(tmp_path), "--reference", "dmc_proprio", "--frames", "ten"]) == 2
  assert "--frames item 'ten'" in capsys.readouterr().err


def test_the_old_steps_option_names_the_new_one(runs_dir, capsys):
  assert cmp.main([str(runs_dir), "--reference", "dmc_proprio", "--steps", "100k"]) == 2
  assert "--steps is now --frames" in capsys.readouterr().err


def test_parse_frames_accepts_k_and_m():
  assert cmp.parse_frames("50000, 100k,1.5M") == [50000, 100000, 1500000]
