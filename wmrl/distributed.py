"""Several processes training one agent through `jax.distributed`.

    wmrl train ... --run.distributed.coordinator host0:7777 \\
        --run.distributed.num_processes 2 --run.distributed.process_id 0   # on host0
    wmrl train ... --run.distributed.coordinator host0:7777 \\
        --run.distributed.num_processes 2 --run.distributed.process_id 1   # on host1

`initialize` joins the processes before anything touches a device; from then
on `jax.devices()` lists every process's devices and the train mesh spans
them (wmrl/mesh.py). Each process steps its own environments into its own
replay (its seeds offset by `process_seed`), feeds its share of each global
batch and holds a replica of the agent state. Counters (environment steps,
updates) are each process's own: `run.steps` is the steps of every process.

With the defaults (one process, no coordinator, not `auto`) nothing here
calls `jax.distributed`, and every function is the identity of one process.
"""
from __future__ import annotations

import json
import socket
import time
import zlib

import jax
import numpy as np

from wmrl.config import Config, DistributedConfig, diff

# Seeds of process I are the run's seeds plus I * PROCESS_SEED_STRIDE: far
# above the evaluation environment's offset (10_000, wmrl/run.py), so no two
# processes' training or evaluation environments share a seed.
PROCESS_SEED_STRIDE = 1_000_000

# Fields that differ between the processes of one run by design.
PER_PROCESS = ("run.distributed.process_id",)


class DistributedError(ValueError):
  """Processes that cannot run together: no coordinator, or other configs."""


def enabled(d: DistributedConfig) -> bool:
  """Whether `d` asks for `jax.distributed` at all."""
  return bool(d.coordinator) or d.auto or d.num_processes > 1


def check(d: DistributedConfig) -> None:
  """Refuses settings that cannot start, before JAX is touched."""
  if d.auto:
    return  # the scheduler's environment says the rest
  if d.num_processes < 1:
    raise DistributedError(f"run.distributed.num_processes must be >= 1, got {d.num_processes}")
  if not 0 <= d.process_id < d.num_processes:
    raise DistributedError(f"run.distributed.process_id={d.process_id} is not one of the "
                           f"{d.num_processes} processes (0 to {d.num_processes - 1})")
  if d.num_processes > 1 and not d.coordinator:
    raise DistributedError("run.distributed.num_processes > 1 needs run.distributed.coordinator "
                           "HOST:PORT (process 0's address), or run.distributed.auto true under "
                           "a cluster scheduler")
  if d.coordinator:
    parse_address(d.coordinator)
  if d.timeout <= 0:
    raise DistributedError(f"run.distributed.timeout must be positive seconds, got {d.timeout}")


def parse_address(address: str) -> tuple[str, int]:
  """(host, port) of 'HOST:PORT'; raises DistributedError."""
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise DistributedError(f"run.distributed.coordinator={address!r} is not HOST:PORT")
  return host.strip("[]"), int(port)


def wait_for_coordinator(address: str, timeout: float) -> None:
  """Returns once something accepts connections at `address`; raises
  DistributedError naming it after `timeout` seconds.

  Why not leave this to JAX: its client aborts the whole process (a C++
  fatal error, no Python exception) when the coordinator does not answer in
  time, so a wrong address would end with a stack dump instead of a message.
  """
  host, port = parse_address(address)
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host, port), timeout=min(5.0, timeout)):
        return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise DistributedError(
            f"no coordinator answers at {address} after {timeout:g} s ({e}): start process 0 "
            "with the same run.distributed.coordinator, or check the address and that the port "
            "is open between the hosts") from None
      time.sleep(0.2)


def initialize(d: DistributedConfig) -> None:
  """Joins the run's processes (once per Python process; later calls do
  nothing). Must run before anything touches a device."""
  if not enabled(d) or jax.distributed.is_initialized():
    return
  check(d)
  if d.auto:
    jax.distributed.initialize(initialization_timeout=d.timeout)
    return
  started = time.monotonic()
  if d.process_id != 0:  # process 0 serves at the address itself
    wait_for_coordinator(d.coordinator, d.timeout)
  left = max(1, int(d.timeout - (time.monotonic() - started)))
  jax.distributed.initialize(d.coordinator, d.num_processes, d.process_id,
                             initialization_timeout=left)


def process_seed(seed: int) -> int:
  """This process's seed for its environments, replay and host RNG: `seed`
  itself on process 0 (so one process computes what it always did)."""
  return seed + PROCESS_SEED_STRIDE * jax.process_index()


def is_primary() -> bool:
  """Whether this process writes the run's logs, videos and metadata."""
  return jax.process_index() == 0


def _shared_json(config: Config) -> str:
  """The config as every process of the run must have it."""
  return config.replace(**{name: 0 for name in PER_PROCESS}).to_json()


def _gather_bytes(data: bytes) -> list[bytes]:
  """Every process's `data`, in process order (a collective: all must call it)."""
  from jax.experimental import multihost_utils
  sizes = multihost_utils.process_allgather(np.array([len(data)], np.int32)).reshape(-1)
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:len(data)] = np.frombuffer(data, np.uint8)
  rows = multihost_utils.process_allgather(padded).reshape(len(sizes), -1)
  return [bytes(row[:n]) for row, n in zip(np.asarray(rows), sizes)]


def check_same_config(config: Config) -> None:
  """Refuses processes started with different configs (other than their
  process ids), naming the fields that differ from process 0's. Every
  process must call it; all of them raise the same error."""
  if jax.process_count() == 1:
    return
  mine = _shared_json(config).encode()
  from jax.experimental import multihost_utils
  digest = np.array([zlib.crc32(mine) & 0x7FFFFFFF], np.int32)
  digests = np.asarray(multihost_utils.process_allgather(digest)).reshape(-1)
  if (digests == digests[0]).all():
    return
  texts = _gather_bytes(mine)  # only on a mismatch: the whole configs, to name the fields
  first = Config.from_dict(json.loads(texts[0]))
  problems = []
  for i, text in enumerate(texts[1:], 1):
    changes = diff(first, Config.from_dict(json.loads(text)))
    if changes:
      fields = ", ".join(f"{n}: {a!r} vs {b!r}" for n, (a, b) in list(changes.items())[:3])
      problems.append(f"process {i} ({fields}{', ...' if len(changes) > 3 else ''})")
  raise DistributedError("the processes were started with different configs; process 0 has "
                         f"other values than {'; '.join(problems)}: start every process with "
                         "the same flags but run.distributed.process_id")


def agree(flags: list[bool]) -> list[bool]:
  """Each flag true where it is true in any process (a collective: all must
  call it): decisions one process's clock or signals make, such as saving or
  stopping, taken by all together so they stay in lockstep."""
  if jax.process_count() == 1:
    return list(flags)
  from jax.experimental import multihost_utils
  gathered = np.asarray(multihost_utils.process_allgather(np.array(flags, np.int32)))
  return [bool(x) for x in gathered.reshape(-1, len(flags)).max(0)]


def newest_common_step(steps: list[int]) -> int | None:
  """The newest checkpoint step every process has (`steps`: this process's),
  None where some process has none. A collective: all must call it."""
  if jax.process_count() == 1:
    return max(steps) if steps else None
  from jax.experimental import multihost_utils
  newest = np.array([max(steps) if steps else -1], np.int64).astype(np.int32)
  lowest = int(np.asarray(multihost_utils.process_allgather(newest)).min())
  return None if lowest < 0 else lowest


def same_step(step: int) -> None:
  """Refuses a resume whose processes restored different steps."""
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils
  steps = np.asarray(multihost_utils.process_allgather(np.array([step], np.int32))).reshape(-1)
  if (steps != steps[0]).any():
    raise DistributedError(f"the processes restored different steps ({', '.join(map(str, steps))} "
                           "by process): a checkpoint of one of them is missing or unreadable; "
                           "move the newer ones aside so every process has the same newest step")
