"""The speed benchmark: FLOP counting by hand, and one tiny end-to-end run."""
import importlib.util
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import pytest

from conftest import load_script
from wmrl import bench, testing

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"

# A model small enough to compile in seconds (the sizes of conftest.tiny_config).
TINY = {
    "model.rssm.deter": 32, "model.rssm.hidden": 16, "model.rssm.stoch": 4,
    "model.rssm.classes": 4, "model.rssm.blocks": 2, "model.encoder.units": 16,
    "model.encoder.layers": 1, "model.decoder.units": 16, "model.decoder.layers": 1,
    "model.reward.units": 16, "model.cont.units": 16, "model.actor.units": 16,
    "model.actor.layers": 1, "model.critic.units": 16, "model.critic.layers": 1,
    "behavior.imag_horizon": 3,
}


def test_jaxpr_flops_counts_scan_bodies_times_length():
  def rollout(x, w):
    y, _ = jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), x, None, length=10)
    return y.sum()

  x, w = jnp.ones((4, 8)), jnp.ones((8, 8))
  flops, whiles = bench.jaxpr_flops(jax.jit(rollout).trace(x, w).jaxpr.jaxpr)
  # 10 steps of a [4, 8] @ [8, 8] matmul: 2 * 4 * 8 * 8 each.
  assert (flops, whiles) == (10 * 2 * 4 * 8 * 8, 0)
  # The gradient adds the backward scan: one matmul per step for d/dc
  # ([4, 8] @ [8, 8]^T) and one for d/dw ([8, 4] @ [4, 8]).
  grad_flops, _ = bench.jaxpr_flops(jax.jit(jax.grad(rollout, 1)).trace(x, w).jaxpr.jaxpr)
  assert grad_flops == 3 * 10 * 2 * 4 * 8 * 8


def test_bad_override_fails_before_measuring(capsys):
  with pytest.raises(SystemExit) as exit_info:
    bench.main(["--preset", "debug", "--model.rssm.detr", "8"])
  assert exit_info.value.code == 2
  assert "did you mean model.rssm.deter" in capsys.readouterr().err
  # A bad value or preset is found before anything is measured, too.
  assert bench.main(["--preset", "debug", "--model.rssm.deter", "big"]) == 2
  assert bench.main(["--preset", "debg"]) == 2
  assert "did you mean debug" in capsys.readouterr().err


@pytest.mark.parametrize("field", [["--run.train_ratio", "64"], ["--run.train_ratio=64"]])
def test_rows_and_fields_are_given_as_in_wmrl_train(field):
  # One row per --preset; inside a row presets join with commas and apply in order.
  args = bench.parse_args(["--preset", "size1m,debug", "--preset", " size12m", *field])
  assert args.preset == ["size1m,debug", "size12m"]
  config = bench.build_config(args.preset[0], args)
  assert config.run.train_ratio == 64  # the field wins over the benchmark's own 512
  assert config.model.rssm.deter == 512 and config.run.batch_size == 8
  assert bench.build_config(args.preset[1], args).model.rssm.deter == 2048
  assert bench.parse_args([]).preset == ["size1m", "size12m"]


def test_tiny_benchmark_writes_json_and_table(tmp_path, capsys):
  out = tmp_path / "speed.json"
  argv = ["--preset", "debug", "--batch-size", "2", "--batch-length", "8", "--repeats", "2",
          "--warmup", "1", "--policy-calls", "5", "--peak-size", "256", "--peak-repeats", "2",
          "--out", str(out)]
  for name, value in TINY.items():
    argv += [f"--{name}", str(value)]
  e2e = importlib.util.find_spec("dm_control") is not None
  if e2e:
    argv += ["--e2e-steps", "2"]
  assert bench.main(argv) == 0

  report = json.loads(out.read_text())
  (row,) = report["presets"]
  positive = lambda x: math.isfinite(x) and x > 0
  # The batch holds the policy latents the replay context starts from (deter 32, stoch 4 x 4).
  assert row["batch"] == {"size": 2, "length": 8, "context": 1,
                          "entries": {"latent/deter": [32], "latent/stoch": [4, 4]}}
  assert positive(row["compile"]["total_s"])
  assert positive(row["flops"]["per_update"]) and positive(row["flops"]["xla_cost_analysis"])
  assert positive(row["train"]["updates_per_s"])
  assert positive(report["peak"]["flops_per_s"])
  assert 0 < row["flops"]["fraction_of_peak"] < 1.5
  for num_envs in ("1", "16"):
    assert positive(row["policy"][num_envs]["calls_per_s"])
  assert positive(row["memory"]["bytes"])
  assert report["machine"]["platform"] == jax.devices()[0].platform
  if e2e:
    assert row["e2e"]["env_steps"] >= 2 and positive(row["e2e"]["env_steps_per_s"])

  table = capsys.readouterr().out
  assert "upd/s" in table and "debug" in table and str(out) in table


def test_median_seconds_calls_the_function_with_its_arguments():
  calls = []

  def fn(x, y):
    calls.append(1)  # traced once: jit compiles on the first call only
    return x * y

  secs = bench.median_seconds(fn, (jnp.ones(3), jnp.full(3, 2.0)), repeats=3)
  assert 0 < secs < 5 and calls == [1]


def _tiny_argv(out) -> list[str]:
  argv = ["--preset", "debug", "--batch-size", "2", "--batch-length", "8", "--repeats", "2",
          "--warmup", "1", "--policy-calls", "5", "--peak-size", "256", "--peak-repeats", "2",
          "--out", str(out)]
  for name, value in TINY.items():
    argv += [f"--{name}", str(value)]
  return argv


def test_seeds_benchmark_writes_rows_with_ratios(tmp_path, capsys):
  out = tmp_path / "seeds.json"
  argv = _tiny_argv(out) + ["--seeds", "1,2", "--devices", "1"]
  e2e = importlib.util.find_spec("dm_control") is not None
  if e2e:
    argv += ["--e2e-steps", "2"]
  assert bench.main(argv) == 0

  report = json.loads(out.read_text())
  positive = lambda x: math.isfinite(x) and x > 0
  one, two = report["seeds"]
  assert (one["seeds"], two["seeds"]) == (1, 2) and one["path"].startswith("one seed")
  for row in (one, two):
    t = row["train"]
    assert positive(t["updates_per_s"]) and positive(row["flops"]["fraction_of_peak"])
    assert t["updates_per_s"] == pytest.approx(row["seeds"] * t["updates_per_s_per_seed"])
    assert positive(row["policy"]["calls_per_s"])
    assert row["policy"]["env_steps_per_s"] == pytest.approx(row["seeds"] * row["policy"]["calls_per_s"])
    if e2e:
      assert row["e2e"]["lanes"] == row["seeds"] and positive(row["e2e"]["env_steps_per_s"])
  assert one["train"]["ratio_to_1"] == 1.0 and positive(two["train"]["ratio_to_1"])
  if e2e:
    assert one["e2e"]["ratio_to_1"] == 1.0
  (device,) = report["devices"]
  assert device["devices"] == 1 and device["speedup"] == 1.0 and positive(device["updates_per_s"])
  table = capsys.readouterr().out
  assert "upd/s all" in table and "efficiency" in table and str(out) in table


@pytest.mark.parametrize("flag", [["--seeds", "0,1"], ["--seeds", "1,2,2"], ["--seeds", "1,x"],
                                  ["--devices", "2,2"]])
def test_seeds_and_devices_lists_are_checked(flag, capsys):
  with pytest.raises(SystemExit) as exit_info:
    bench.parse_args(flag)
  assert exit_info.value.code == 2
  assert flag[0] in capsys.readouterr().err


def test_devices_beyond_the_local_count_are_refused(tmp_path, capsys):
  too_many = jax.local_device_count() + 1
  assert bench.main(_tiny_argv(tmp_path / "x.json") + ["--devices", f"1,{too_many}"]) == 2
  err = capsys.readouterr().err
  assert "xla_force_host_platform_device_count" in err and f"{too_many} devices" in err
  assert not (tmp_path / "x.json").exists()


def test_seeds_mode_runs_one_row_unless_asked():
  assert bench.parse_args(["--seeds", "1,2"]).preset == ["size1m"]
  assert bench.parse_args(["--devices", "1"]).seeds is None


def test_seeds_batch_benchmark_times_each_grouping_beside_one_seed(tmp_path, capsys):
  script = load_script(BENCHMARKS / "seeds_batch.py", "seeds_batch_benchmark")
  out = tmp_path / "groups.json"
  script.main(["--seeds", "2", "--batches", "1", "--rounds", "1", "--out", str(out),
               *testing.tiny_flags()])
  report = json.loads(out.read_text())
  assert [row["form"] for row in report["rows"]] == ["one seed", "seeds_batch 1"]
  assert all(row["median_s"] > 0 for row in report["rows"])
  assert report["rows"][0]["x1"] == 1.0
  assert "seeds_batch 1  median" in capsys.readouterr().out
  with pytest.raises(SystemExit):
    script.parse_args(["--seeds", "1"])
