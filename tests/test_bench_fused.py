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
  assert cell["fused_over_host"] == pytest.approx(
      cell["fused"]["env_steps_per_s"] / cell["host"]["env_steps_per_s"])
  assert report["machine"]["cpu_count"] > 0
  table = capsys.readouterr().out
  assert "fused / host" in table and str(out) in table
