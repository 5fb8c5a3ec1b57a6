"""Speed benchmark: compile time, updates/s, FLOPs and their share of the
machine's matmul peak, policy steps/s, end-to-end env steps/s, peak memory.

    wmrl bench                                       # size1m and size12m on walker-walk spaces
    wmrl bench --preset size12m --dtype bfloat16 --e2e-steps 2000
    wmrl bench --seeds 1,2,4,8 --preset size1m       # S vmapped seeds' total updates/s
    python benchmarks/speed.py --preset size1m --preset size12m,dmc_vision --run.train_ratio 64

Each `--preset` is one row (presets inside a row joined by commas, as in
`wmrl train`), measured on a fixed random batch of the task's spaces, so the
figures are those of the compiled programs alone; `--e2e-steps` adds the
whole collect/train loop (environment, replay, host transfers) on top.

One module per job: `inputs` (spaces and random batches), `flops` (FLOPs
from jaxprs and XLA; why the jaxpr count is the one used), `timing` (a
jitted function's median time, the matmul peak, peak memory), `preset` (the
benchmark of one row), `seeds` (`--seeds 1,2,4`: vmapped seeds against one;
`--devices 1,2`: data-parallel train devices), `report` (table and JSON) and
`cli`. The benchmark
scripts in benchmarks/ use the helpers through this package.
"""
from wmrl.bench.cli import main, parse_args
from wmrl.bench.flops import jaxpr_flops, xla_flops, xla_memory
from wmrl.bench.inputs import (DEFAULT_ENV, entry_specs, policy_obs, random_batch, random_obs,
                               task_spaces)
from wmrl.bench.preset import bench_preset, build_config
from wmrl.bench.report import format_table, machine_info
from wmrl.bench.timing import measure_peak, median_seconds, peak_memory

__all__ = ["DEFAULT_ENV", "bench_preset", "build_config", "entry_specs", "format_table",
           "jaxpr_flops", "machine_info", "main", "measure_peak", "median_seconds", "parse_args",
           "peak_memory", "policy_obs", "random_batch", "random_obs", "task_spaces", "xla_flops",
           "xla_memory"]
