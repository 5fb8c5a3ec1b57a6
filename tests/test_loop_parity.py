"""benchmarks/loop_parity.py against a saved run of the reference's own loop
(tests/data/loop_parity_reference.npz: danijar/dreamerv3 at e3f0224,
`embodied.run.train` with the stub agent on 4 `Ticker` environments, batches
of 4 x 8 after a context step, train ratio 8, 1,500 steps; made by

    REFERENCE_PYTHON benchmarks/loop_parity_reference.py --reference-src DIR \\
        --out tests/data/loop_parity_reference.npz --envs 4 --batch-size 4 \\
        --batch-length 8 --ratio 8 --steps 1500

). wmrl's host driver must pass every comparison, and each error put into
its side must make the comparison that watches it print FAIL: the negative
controls that show the harness can fail."""
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
RECORD = pathlib.Path(__file__).resolve().parent / "data" / "loop_parity_reference.npz"

import loop_parity  # noqa: E402


def _verdict(capsys, *args) -> tuple[int, list[str]]:
  status = loop_parity.main(["--reference-record", str(RECORD), *args])
  lines = capsys.readouterr().out.strip().splitlines()
  rows = {line.split("|")[1].strip(): line.split("|")[4].strip()
          for line in lines if line.startswith("| ") and "comparison" not in line}
  return status, lines[-1], rows


def test_wmrl_loop_matches_the_reference_loop(capsys):
  status, verdict, rows = _verdict(capsys)
  assert status == 0 and verdict.startswith("PASS")
  assert set(rows) == {"updates", "random steps", "online queue", "uniform ages", "annotation",
                       "context latents", "batch drawn ahead"}
  assert rows["batch drawn ahead"] == "NAMED"
  assert all(result == "PASS" for name, result in rows.items() if name != "batch drawn ahead")


@pytest.mark.parametrize("inject, caught", [
    ("ratio", "updates"),  # a train ratio 10% high
    ("online", "online queue"),  # the online queue off
    ("is-last", "annotation"),  # no is_last before an in-window is_first
])
def test_each_negative_control_fails(capsys, inject, caught):
  status, verdict, rows = _verdict(capsys, "--inject", inject)
  assert status == 1 and verdict.startswith("FAIL") and caught in verdict
  assert rows[caught] == "FAIL"
