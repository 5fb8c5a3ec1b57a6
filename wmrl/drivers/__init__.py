"""The loops that collect experience and train: the `Driver` protocol a run uses,
the `Schedule` every driver follows, and the drivers.

| driver | steps | chosen by `run.driver` |
| --- | --- | --- |
| `HostDriver` (host.py) | any environment, in Python; replay in host memory | `host`, or `auto` for host ids |
| `FusedDriver` (fused.py) | JAX environments, K steps and the updates they owe as one program | `fused`, or `auto` for JAX ids |

`make` builds the one a config asks for; a run sees it only as a `Driver`.
"""
from __future__ import annotations

from typing import Sequence

from wmrl import jaxenvs
from wmrl.algorithms.contract import Algorithm
from wmrl.config import Config
from wmrl.drivers.base import (Driver, EnvironmentCrash, EpisodeTally, SeedStart, Snapshot,
                               policy_inputs, restored_counters)
from wmrl.drivers.schedule import Counters, Schedule
from wmrl.drivers.seeds import Seeds, over_seeds

DRIVERS = ("auto", "host", "fused")


def uses_fused(config: Config) -> bool:
  """Whether `config` runs the fused driver: asked for, or `auto` on a JAX environment."""
  return config.run.driver == "fused" or (config.run.driver == "auto"
                                          and jaxenvs.is_jax_id(config.env.id))


def check(config: Config) -> None:
  """Refuses a `run.driver` that cannot run `config`."""
  r = config.run
  if r.driver not in DRIVERS:
    raise ValueError(f"run.driver must be {', '.join(DRIVERS[:-1])} or {DRIVERS[-1]}, "
                     f"got {r.driver!r}")
  if r.fused_steps < 0:
    raise ValueError(f"run.fused_steps must be >= 0 (0: from the train ratio), got {r.fused_steps}")
  if not uses_fused(config):
    return
  if not jaxenvs.is_jax_id(config.env.id):
    raise ValueError(f"run.driver fused steps JAX environments ({', '.join(jaxenvs.PREFIXES)} ids); "
                     f"{config.env.id} is a host environment: use run.driver host or auto")
  unsupported = [(tuple(r.train_devices) != (0,) or tuple(r.policy_devices) != (0,),
                  "run.train_devices and run.policy_devices"),
                 (r.distributed.num_processes > 1 or r.distributed.auto, "run.distributed")]
  for unsupported_here, name in unsupported:
    if unsupported_here:
      raise ValueError(f"the fused driver runs one seed on one device; {name} needs the host "
                       "driver: add --run.driver host")


def resolved(config: Config) -> str:
  """The driver `config` runs, by name: `run.driver` with `auto` resolved by the env id."""
  return "fused" if uses_fused(config) else "host"


def make(algo: Algorithm, config: Config, starts: Sequence[SeedStart],
         seeds_axis: bool = False) -> Driver:
  """The driver `config` asks for, over `starts` (one per seed; stacked on a seeds
  axis where `seeds_axis`)."""
  if uses_fused(config):
    from wmrl.drivers.fused import FusedDriver
    return FusedDriver(algo, config.run, starts[0].env.jax_env, starts, seeds_axis,
                       config.replay)
  from wmrl import mesh
  from wmrl.drivers.host import HostDriver
  return HostDriver(algo, config.run, starts, seeds_axis, mesh.Placement.from_run(config.run),
                    config.replay)


__all__ = ["Counters", "Driver", "EnvironmentCrash", "EpisodeTally", "SeedStart", "Schedule",
           "Seeds", "Snapshot", "check", "make", "over_seeds", "policy_inputs", "resolved",
           "restored_counters", "uses_fused"]
