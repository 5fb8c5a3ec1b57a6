"""benchmarks/fused.py, the fused driver against the host driver: one tiny cell."""
import json
import math
import pathlib

import pytest

from conftest import load_script

from wmrl import testing

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "fused.py"


def test_one_tiny_cell_measures_both_drivers(tmp_path, capsys):
  out = tmp_path / "fused.json"
  # The TINY model on top of size1m (field flags win over the preset).
  argv = ["--ratios", "4", "--envs", "1", "--seconds", "0.5", "--rounds", "1",
          "--out", str(out), *testing.tiny_flags()]
  assert load_script(SCRIPT, "wmrl_fused_bench").main(argv) == 0
  report = json.loads(out.read_text())
  (cell,) = report["cells"]
  assert (cell["train_ratio"], cell["num_envs"], cell["batch"]) == (4, 1, [2, 6])
  for kind in ("host", "fused"):
    row = cell[kind]
    assert math.isfinite(row["env_steps_per_s"]) and row["env_steps_per_s"] > 0
    assert row["updates_per_s"] > 0 and row["warm_up_s"] > 0
    (measured,) = row["rounds"]  # whole iterations, at least one
    assert measured["iterations"] >= 1 and measured["env_steps"] > 0
    # Stepping alone: the same steps, and not one update.
    (stepped,) = cell["stepping"][kind]["rounds"]
    assert stepped["env_steps"] > 0 and stepped["updates"] == 0
    assert cell["stepping"][kind]["env_steps_per_s"] > 0
  assert cell["fused_over_host"] == pytest.approx(
      cell["fused"]["env_steps_per_s"] / cell["host"]["env_steps_per_s"])
  # Ratio 4 with batch 2 x 6 owes 1/3 update per env step.
  assert cell["updates_alone_per_s"] > 0
  assert cell["updates_alone_env_steps_per_s"] == pytest.approx(cell["updates_alone_per_s"] * 3)
  assert report["machine"]["cpu_count"] > 0
  table = capsys.readouterr().out
  assert "fused / host" in table and "stepping alone" in table and str(out) in table


def test_stepping_config_never_trains():
  bench = load_script(SCRIPT, "wmrl_fused_bench")
  args = bench.parse_args(["--ratios", "32", "--envs", "1", *testing.tiny_flags()])
  config = bench.stepping_config(bench.make_config(args, 32, 1))
  assert config.run.prefill >= 2**30 and config.run.train_ratio == 32
