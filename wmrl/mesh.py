"""Where arrays live: the devices that train and act, and placing states,
batches and policy inputs on them.

    placement = Placement.from_run(config.run)
    state = placement.state(state)                   # replicated over the train devices
    state, metrics, updates = algo.train_step(state, placement.batch(batch))

The settings are the reference's `jax.train_devices`, `jax.train_mesh` and
`jax.policy_devices` (`run.*` here): local device indices, and the train
mesh's axis sizes "data,fsdp,tensor" (axes d, f, t) with -1 for the rest.
Only data parallelism is supported: the state is replicated on every train
device and the batch split along its batch axis, so the jitted train step
stays ONE XLA program, in which GSPMD inserts the all-reduce of the
gradient mean. `run.batch_size` is the global batch.

With one train device (the default, device 0) every method is the identity:
nothing is moved, so single-device runs compute exactly what they did
before this module existed.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from wmrl.config import Config, RunConfig

AXES = ("d", "f", "t")  # data, fsdp, tensor: the reference's mesh axis names


def parse_mesh(spec: str, count: int) -> tuple[int, int, int]:
  """The (data, fsdp, tensor) sizes of a mesh string for `count` devices, as
  the reference's `internal.mesh` reads it: three integers, at most one -1
  standing for the devices the others leave. Raises ValueError."""
  where = f"run.train_mesh={spec!r}"
  try:
    sizes = [int(part) for part in spec.split(",")]
  except ValueError:
    raise ValueError(f"{where} does not parse: give three comma-separated integers "
                     "'data,fsdp,tensor', -1 for the rest (default '-1,1,1')") from None
  if len(sizes) != len(AXES) or any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"{where} must be three axis sizes 'data,fsdp,tensor', each positive "
                     "or -1 (the rest)")
  if sizes.count(-1) > 1:
    raise ValueError(f"{where} has more than one -1; at most one axis takes the rest")
  fixed = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if count % fixed:
      raise ValueError(f"{where}: the {count} train devices do not divide into axes of {fixed}")
    sizes = [count // fixed if s == -1 else s for s in sizes]
  if math.prod(sizes) != count:
    raise ValueError(f"{where} has {math.prod(sizes)} devices, but run.train_devices names "
                     f"{count}; the product of the axis sizes must equal the device count")
  return tuple(sizes)


def _check_indices(name: str, indices: Sequence[int], local: int) -> None:
  if not indices:
    raise ValueError(f"run.{name} is empty; name at least one local device index (default 0)")
  repeated = sorted({i for i in indices if list(indices).count(i) > 1})
  if repeated:
    raise ValueError(f"run.{name}={tuple(indices)} repeats device {repeated[0]}; each device "
                     "can appear once")
  missing = [i for i in indices if not 0 <= i < local]
  if missing:
    raise ValueError(f"run.{name}={tuple(indices)} names device {missing[0]}, but this process "
                     f"has {local} local device{'s' if local != 1 else ''} "
                     f"(indices 0 to {local - 1})")


def check(config: Config, local_devices: int, processes: int = 1) -> None:
  """Refuses device settings that cannot work on a process with `local_devices`
  devices, one of `processes` (wmrl/run.py `validate` calls it before anything
  starts)."""
  check_run(config.run, local_devices, processes)
  envs = len(config.run.policy_devices)
  if config.env.num_envs % envs:
    raise ValueError(f"env.num_envs={config.env.num_envs} does not split over the {envs} "
                     "policy devices; use a multiple of len(run.policy_devices)")


def check_run(run: RunConfig, local_devices: int, processes: int = 1) -> None:
  """`check`'s part that the run settings alone decide. Each of `processes`
  trains on its own `run.train_devices`, so the data axis spans all of them."""
  _check_indices("train_devices", run.train_devices, local_devices)
  _check_indices("policy_devices", run.policy_devices, local_devices)
  data, fsdp, tensor = parse_mesh(run.train_mesh, len(run.train_devices) * processes)
  if fsdp > 1 or tensor > 1:
    raise ValueError(f"run.train_mesh={run.train_mesh!r} asks for fsdp={fsdp}, tensor={tensor}: "
                     "only data parallelism is supported; use '-1,1,1'")
  if run.batch_size % data:
    across = f" of the {processes} processes" if processes > 1 else ""
    raise ValueError(f"run.batch_size={run.batch_size} does not split over the {data} train "
                     f"devices{across}: it is the global batch, split along the batch axis over "
                     "the data axis; use a multiple of the data-axis size")


def device_mesh(devices: Sequence[jax.Device], sizes: tuple[int, ...]) -> Mesh:
  """A mesh with axes d, f, t over `devices` in their given order.

  Not `jax.make_mesh`: it may reorder devices for the topology and, in this
  JAX, makes Explicit axes (sharding in the types); the reference builds the
  mesh from its device list with Auto axes, where jit's GSPMD propagates the
  input shardings, as here.
  """
  return Mesh(np.array(devices, dtype=object).reshape(sizes), AXES,
              axis_types=(AxisType.Auto,) * len(AXES))


def _mesh_of(devices: list[jax.Device], sizes: tuple[int, ...], default: jax.Device) -> Mesh | None:
  """None (nothing to move) for the one default device, else the mesh."""
  return None if devices == [default] else device_mesh(devices, sizes)


def _put(tree, mesh: Mesh | None, spec: P):
  if mesh is None:
    return tree
  return jax.device_put(tree, NamedSharding(mesh, spec))


def _by_process(devices: Sequence[jax.Device]) -> list[list[jax.Device]]:
  """Every process's devices (process order), each in its local order."""
  count = 1 + max(d.process_index for d in devices)
  return [[d for d in devices if d.process_index == p] for p in range(count)]


def _host(x) -> np.ndarray:
  """A host copy of `x`; of an array spanning processes, this process's replica
  (`np.asarray` of the whole refuses arrays with devices of other processes)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(x.addressable_data(0))
  return np.asarray(x)


def _keyed(fn):
  """`fn` on plain arrays, and on typed PRNG keys through their key data."""
  def apply(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(fn(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    return fn(x)
  return apply


def _local_part(x, axis: int) -> np.ndarray:
  """This process's part of `x`, split along `axis` over the data axis: its
  shards in order (the mesh is process-major, so they are contiguous)."""
  shards = {s.index[axis].start or 0: s.data for s in x.addressable_shards}
  return np.concatenate([np.asarray(shards[k]) for k in sorted(shards)], axis)


@dataclasses.dataclass(frozen=True)
class Placement:
  """The train and policy meshes; None where one default device does the work.

  With `processes` > 1 (`jax.distributed`, wmrl/distributed.py) the train mesh
  spans every process's train devices, process-major, while the policy mesh
  stays this process's own: each process acts in its own environments with
  its replica of the state and feeds its block of each global batch.
  """

  train_mesh: Mesh | None
  policy_mesh: Mesh | None
  processes: int = 1

  @classmethod
  def from_run(cls, run: RunConfig, devices: Sequence[jax.Device] | None = None) -> "Placement":
    """The placement `run` asks for over `devices` (default: this process's local
    devices, whose first is where JAX puts arrays without a placement); refuses
    settings `check_run` refuses."""
    if devices is None and jax.process_count() > 1:
      return cls._across_processes(run)
    devices = list(jax.local_devices() if devices is None else devices)
    check_run(run, len(devices))
    train = [devices[i] for i in run.train_devices]
    policy = [devices[i] for i in run.policy_devices]
    sizes = parse_mesh(run.train_mesh, len(train))
    return cls(_mesh_of(train, sizes, devices[0]),
               _mesh_of(policy, (len(policy), 1, 1), devices[0]))

  @classmethod
  def _across_processes(cls, run: RunConfig) -> "Placement":
    """Every process's `run.train_devices` (local indices) in one train mesh."""
    local = jax.local_devices()
    processes = _by_process(jax.devices())
    check_run(run, len(local), len(processes))
    train = [mine[i] for mine in processes for i in run.train_devices]
    policy = [local[i] for i in run.policy_devices]
    sizes = parse_mesh(run.train_mesh, len(train))
    return cls(device_mesh(train, sizes), _mesh_of(policy, (len(policy), 1, 1), local[0]),
               len(processes))

  def local_batch_size(self, batch_size: int) -> int:
    """The sequences of a global batch this process samples from its replay."""
    return batch_size // self.processes

  @property
  def data_size(self) -> int:
    """How many ways the batch is split."""
    return 1 if self.train_mesh is None else self.train_mesh.shape["d"]

  def state(self, tree: Any) -> Any:
    """`tree` (parameters, optimiser state, typed PRNG keys) replicated on every
    train device.

    Consumes `tree`: the copy on a device that already holds a leaf may be that
    very buffer (even with `may_alias=False`, in this JAX, for meshes of more
    than one device), so the donating train step deletes the original too.
    """
    if self.processes > 1:  # every process holds the same values: each places its replicas
      sharding = NamedSharding(self.train_mesh, P())
      place = lambda x: jax.make_array_from_callback(
          np.shape(x), sharding, lambda index, host=_host(x): host[index])
      return jax.tree.map(_keyed(place), tree)
    return _put(tree, self.train_mesh, P())

  def local(self, tree: Any) -> Any:
    """`tree` (replicated over the train devices) as arrays of this process
    alone, for what it does by itself: act, evaluate, save. The identity in
    one process."""
    if self.processes == 1:
      return tree
    local = lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x
    return jax.tree.map(_keyed(local), tree)

  def host_batch(self, tree: Any, seeds_axis: bool = False) -> Any:
    """Host copies of arrays split like `batch`'s: in several processes, this
    process's own block of them (what it fed, in its order)."""
    if self.processes == 1:
      return jax.device_get(tree)
    return jax.tree.map(lambda x: _local_part(x, 1 if seeds_axis else 0), tree)

  def batch(self, tree: Any, seeds_axis: bool = False) -> Any:
    """A batch of arrays [B, ...] split along B over the data axis; with
    `seeds_axis`, arrays [S, B, ...] for S seeds trained together by `jax.vmap`,
    still split along B. The seeds are not spread over devices: every device
    holds every seed's (replicated) parameters, so each update stays one
    program whose seed axis is vmapped within each device and needs no
    communication; only the gradient mean crosses devices.

    In several processes `tree` is this process's block of the batch
    (`local_batch_size` sequences), and the result the global batch."""
    spec = P(None, "d") if seeds_axis else P("d")
    if self.processes > 1:
      sharding = NamedSharding(self.train_mesh, spec)
      axis = 1 if seeds_axis else 0
      def place(x):
        x = np.asarray(x)
        shape = x.shape[:axis] + (x.shape[axis] * self.processes,) + x.shape[axis + 1:]
        return jax.make_array_from_process_local_data(sharding, x, shape)
      return jax.tree.map(place, tree)
    return _put(tree, self.train_mesh, spec)

  @property
  def separate_policy(self) -> bool:
    """Whether the policy acts on other devices than the train step's, and so
    needs its own copy of the state."""
    return self.processes > 1 or (self.policy_mesh is not None
                                  and self.policy_mesh != self.train_mesh)

  def policy(self, tree: Any, seeds_axis: bool = False) -> Any:
    """Per-environment policy inputs [N, ...] (observations, carry; [S, N, ...]
    with `seeds_axis`) split along N over the policy devices."""
    return _put(tree, self.policy_mesh, P(None, "d") if seeds_axis else P("d"))

  def policy_state(self, tree: Any) -> Any:
    """What every policy device needs whole: the state (or its policy part) and
    the policy's key, replicated on the policy devices. Where they differ from
    the train devices, the driver copies the trained state here after each
    update. On devices the two share, the result may be `tree`'s own buffers
    (on the same placement, `tree` itself): act with it before the donating
    train step replaces the state, as with the train state itself. In several
    processes, this process's replica (`local`) placed so."""
    return _put(self.local(tree), self.policy_mesh, P())
