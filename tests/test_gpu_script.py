"""benchmarks/gpu.sh, the GPU script: its --dry mode runs every stage on the CPU, so the
script a GPU machine runs cannot rot unnoticed; and the budget rules that decide what runs."""
import csv
import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def _load_gpu_script():
  # Registered in sys.modules before it runs, as an import would: its dataclasses look
  # their module up there (conftest.load_script leaves it out).
  spec = importlib.util.spec_from_file_location("wmrl_gpu_script", BENCHMARKS / "gpu.py")
  module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


gpu = _load_gpu_script()


def positive(value) -> bool:
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _rows(path: pathlib.Path) -> list[dict]:
  with path.open() as f:
    return list(csv.DictReader(f))


def test_dry_run_runs_every_stage_and_writes_its_figures(tmp_path):
  # One test for the whole dry run: the suite's workers would each run it for a test apiece.
  out = tmp_path / "gpudry"
  done = subprocess.run(["bash", str(BENCHMARKS / "gpu.sh"), "--dry", "--out", str(out)],
                        env=dict(os.environ, PYTHON=sys.executable), capture_output=True,
                        text=True, timeout=660)
  assert done.returncode == 0, done.stdout + done.stderr
  files = sorted(p.name for p in out.iterdir())
  assert files == ["gpu.log", "run.csv", "seeds.csv", "speed.csv", "summary.json"]  # <= 8
  summary = json.loads((out / "summary.json").read_text())
  stages = summary["stages"]
  assert summary["mode"] == "dry" and list(stages) == list(gpu.STAGES)
  # stdout: one line per stage, each with its status.
  for name in gpu.STAGES:
    assert sum(f"] {name}: " in line for line in done.stdout.splitlines()) == 1, done.stdout

  setup = stages["setup"]
  assert setup["status"] == "ran" and setup["device"]["platform"] == "cpu"
  assert setup["modules"]["gymnasium"]["ok"] and setup["modules"]["jax"]["ok"]

  speed = stages["speed"]
  assert speed["status"] == "ran" and set(speed["peaks"]) == {"float32", "bfloat16"}
  assert all(positive(peak["flops_per_s"]) for peak in speed["peaks"].values())
  assert [(r["size"], r["dtype"]) for r in speed["rows"]] == [("size1m", "float32"),
                                                              ("size1m", "bfloat16")]
  for row in speed["rows"]:
    assert row["status"] == "ran"
    for name in ("compile_s", "xla_compile_s", "s_per_update", "updates_per_s",
                 "flops_per_update", "flops_per_s", "fraction_of_peak", "policy_calls_per_s_1",
                 "policy_calls_per_s_16", "memory_bytes"):
      assert positive(row[name]), (name, row)
    assert row["peak_flops_per_s"] == speed["peaks"][row["dtype"]]["flops_per_s"]
    assert row["updates_per_s"] == pytest.approx(1 / row["s_per_update"])
  assert [r["status"] for r in _rows(out / "speed.csv")] == ["ran", "ran"]

  seeds = stages["seeds"]
  assert seeds["status"] == "ran" and [r["seeds"] for r in seeds["rows"]] == [1, 2]
  one, two = seeds["rows"]
  assert one["ratio_to_1"] == 1.0 and positive(two["ratio_to_1"])
  assert two["path"] == "vmapped seeds"
  for row in seeds["rows"]:
    assert positive(row["updates_per_s"]) and positive(row["fraction_of_peak"])
    assert row["updates_per_s"] == pytest.approx(row["seeds"] * row["updates_per_s_per_seed"])
  assert [r["seeds"] for r in _rows(out / "seeds.csv")] == ["1", "2"]

  run = stages["run"]
  playground = importlib.util.find_spec("mujoco_playground") is not None
  assert run["status"] == "ran" and run["driver"] == "fused" and run["seeds"] == [0, 1]
  assert run["env"] == ("playground:CartpoleBalance" if playground else "gymnax:CartPole-v1")
  assert run["stand_in"] is not playground
  assert run["ended"] == "run.steps reached" and run["frames"] >= 10_000
  assert positive(run["first_update_record_s"])
  assert positive(run["steady"]["updates_per_s_all"])
  assert positive(run["steady"]["frames_per_s_all"])
  episodes = _rows(out / "run.csv")
  assert {int(r["seed"]) for r in episodes} == {0, 1}
  assert len(episodes) == sum(s["episodes"] for s in run["per_seed"].values()) > 0
  assert all(math.isfinite(float(r["score"])) for r in episodes)

  compare = stages["compare"]
  if not playground:  # the stand-in has no published curve: say so, run nothing
    assert compare["status"] == "SKIPPED" and "stood in" in compare["reason"]
    return
  assert compare["status"] == "ran" and compare["exit_status"] in (0, 3)
  assert compare["verdict"].startswith("inside the published [min, max]: ")
  assert compare["passed"] == (compare["exit_status"] == 0)
  # 10,240 frames reach the published first point, so compare judges it.
  (point,) = compare["points"]
  assert point["frames"] == 10_000 and point["inside"] in (True, False)
  assert math.isfinite(point["runs"]["mean"]) and point["runs"]["n"] == 2
  log = (out / "gpu.log").read_text()
  assert "-m wmrl.cli train" in log and compare["verdict"] in log


def test_stage_budgets_leave_the_later_stages_their_time():
  plan = gpu.make_plan(dry=False, budget_s=None)
  assert plan.budget_s == 290
  assert gpu.stage_budget(plan, "speed", 290) == plan.speed_s
  assert gpu.stage_budget(plan, "seeds", 290 - plan.speed_s) == plan.seeds_s
  # The run takes what is left but compare's share.
  assert gpu.stage_budget(plan, "run", 140) == 140 - plan.compare_s
  # Late, a stage shrinks to leave the run its minimum and compare its share.
  late = gpu.stage_budget(plan, "speed", 200)
  assert late == 200 - plan.seeds_s - gpu.RUN_MIN_S - plan.compare_s < plan.speed_s
  assert gpu.stage_budget(plan, "compare", -5) == 10  # compare still runs (a second or two)


def test_a_row_starts_only_where_the_longest_so_far_would_fit():
  assert gpu.fits(now=100, longest_s=0, deadline=90)  # the first row always runs
  assert gpu.fits(now=100, longest_s=10, deadline=115)
  assert not gpu.fits(now=100, longest_s=10, deadline=114)


def test_unknown_stages_are_refused(capsys):
  with pytest.raises(SystemExit):
    gpu.parse_args(["--stages", "speed,sedes"])
  assert "unknown stage 'sedes'" in capsys.readouterr().err
  assert gpu.parse_args(["--stages", "run, compare"]).stages == {"run", "compare"}
