"""Timing helpers that know nothing of the agent: a jitted function's median time, the
machine's matmul peak, and the process's peak memory."""
from __future__ import annotations

import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp


def summary(seconds: list[float]) -> dict:
  return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds),
          "all": seconds}


def median_seconds(fn, args: tuple, repeats: int) -> float:
  """Median seconds of `jax.jit(fn)(*args)` over `repeats` calls, after two
  untimed calls (the compile and a warm-up). The benchmark scripts time their
  parts with it."""
  jitted = jax.jit(fn)
  for _ in range(2):
    jax.block_until_ready(jitted(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(jitted(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def measure_peak(n: int, dtype: str, repeats: int) -> dict:
  """FLOP/s of a large jitted matmul: the ceiling the model's matmuls aim at."""
  key_a, key_b = jax.random.split(jax.random.key(0))
  a = jax.random.normal(key_a, (n, n), dtype)
  b = jax.random.normal(key_b, (n, n), dtype)
  matmul = jax.jit(jnp.matmul)
  matmul(a, b).block_until_ready()
  start = time.perf_counter()
  matmul(a, b).block_until_ready()
  single = time.perf_counter() - start
  # On fast accelerators one matmul is shorter than a dispatch; time a chain of
  # calls (in-order on one stream) so launch overhead does not lower the peak.
  calls = max(1, min(1000, int(0.2 / max(single, 1e-9))))
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      out = matmul(a, b)
    out.block_until_ready()
    seconds.append((time.perf_counter() - start) / calls)
  flops = 2 * n**3
  return {"n": n, "dtype": dtype, "flops": flops, "calls_per_block": calls,
          "seconds": summary(seconds), "flops_per_s": flops / statistics.median(seconds)}


def peak_memory() -> dict:
  """The process's peak so far: device allocator stats where the backend has them."""
  stats = None
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:
    pass
  if stats and "peak_bytes_in_use" in stats:
    return {"kind": "device peak_bytes_in_use", "bytes": int(stats["peak_bytes_in_use"])}
  # ru_maxrss is KiB on Linux, bytes on macOS.
  scale = 1 if sys.platform == "darwin" else 1024
  return {"kind": "process peak RSS",
          "bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale}
