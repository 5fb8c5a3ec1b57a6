"""Typed, frozen configuration: the run's own groups and the machinery of dotted names.

A `Config` is a tree of frozen dataclasses; overrides address any field by
its dotted name (``run.train_ratio=64``, ``model.rssm.deter=512``). The
algorithm's own groups come from the config class it registered
(DreamerV3's, with the reference's defaults: wmrl/algorithms/dreamerv3/
config.py); the run's defaults are the reference's ``configs.yaml`` (2024
version). Named presets (``size1m`` ... ``size400m``, the suites' recipes)
are in wmrl/presets.py.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from wmrl.names import did_you_mean


@dataclasses.dataclass(frozen=True)
class EnvConfig:
  id: str = "gym:CartPole-v1"
  num_envs: int = 16  # the reference's run.envs
  parallel: bool = False
  action_repeat: int = 1
  image_size: tuple[int, int] = (64, 64)
  pixels: bool = False
  time_limit: int = 0  # 0: the environment's own
  # A regular expression: the agent sees the observation keys it matches whole
  # (nested Dict keys as outer/inner), e.g. 'image|direction'. Host environments.
  obs_keys: str = ".*"


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
  """Several processes (on one or several hosts) training one agent through
  `jax.distributed` (wmrl/distributed.py). The defaults: one process, no
  `jax.distributed` at all."""

  # HOST:PORT of process 0, which serves there; empty: one process (or `auto`).
  coordinator: str = ""
  num_processes: int = 1
  process_id: int = 0
  # Let JAX read the cluster from the scheduler's environment (SLURM, Open MPI,
  # Kubernetes, TPU pods): `jax.distributed.initialize()` without arguments.
  auto: bool = False
  # Seconds to wait for every process to reach the coordinator before failing.
  timeout: int = 300


@dataclasses.dataclass(frozen=True)
class RunConfig:
  seed: int = 0
  # Several seeds trained together in one program (`jax.vmap` over stacked
  # agent states), each in LOGDIR/seed-K as a run of its own; empty: one run
  # of `seed` in LOGDIR.
  seeds: tuple[int, ...] = ()
  # How many of those seeds' updates run vmapped at once: the train step loops
  # over groups of this many (`jax.lax.map`'s batch_size), still one program.
  # 0: all of them at once. Fewer bound the memory of seeds that do not fit
  # vmapped together, and on a 2-core CPU, where one seed's update already keeps
  # both cores busy, 4 seeds at size1m in groups of 2 gave 1.11x one seed's
  # updates/s against 0.83x for all 4 at once (benchmarks/README.md).
  seeds_batch: int = 0
  steps: int = 100_000  # environment steps (after action repeat)
  train_ratio: float = 32.0  # replayed steps per environment step (the reference's default)
  batch_size: int = 16
  batch_length: int = 64
  # Leading steps of each replayed window before the trained ones: training
  # starts from the latent the policy stored with the last of them (and its
  # action), and writes its posteriors back (the reference's replay_context).
  # 0: windows start from zeros with no previous action.
  replay_context: int = 1
  replay_capacity: int = 5_000_000
  # Environment steps of random actions before the policy acts; 0: none, as the
  # reference. Training starts once replay holds batch_size x batch_length
  # windows (the reference's rule, wmrl/drivers/schedule.py) and these are done.
  prefill: int = 0
  log_every: int = 1000  # environment steps between metric records
  console_every: float = 10.0  # seconds between console progress lines
  eval_every: int = 0  # environment steps between evaluations; 0: never
  eval_episodes: int = 10
  # A greedy evaluation of eval_episodes episodes when the run reaches run.steps
  # (written as eval/* and printed); false: none unless eval_every asks.
  eval_at_end: bool = True
  save_every_minutes: float = 10.0  # wall-clock minutes between checkpoints
  save_every: int = 0  # environment steps between checkpoints; 0: by time only
  keep_checkpoints: int = 3
  # Outputs for watching a run (wmrl/logging.py, wmrl/report.py).
  tensorboard: bool = True  # event files in LOGDIR/tb (needs tensorboardX)
  wandb: bool = False  # Weights & Biases (needs wandb)
  wandb_project: str = "wmrl"
  report_every: int = 10_000  # environment steps between open-loop videos; 0: never
  eval_video: bool = True  # film the first episode of each evaluation
  # Devices (wmrl/mesh.py), named as the reference's jax.* flags. Local device
  # indices that train: one update is one program over all of them, the batch
  # split along its batch axis (run.batch_size is the global batch).
  train_devices: tuple[int, ...] = (0,)
  # Axis sizes "data,fsdp,tensor" of the train devices, -1 for the rest (as the
  # reference parses it); only the data axis is supported, so fsdp = tensor = 1.
  train_mesh: str = "-1,1,1"
  # Local device indices that act, the environments split over them.
  policy_devices: tuple[int, ...] = (0,)
  # Which loop collects and trains: "host" (wmrl/drivers/host.py: any environment),
  # "fused" (wmrl/drivers/fused.py: JAX environments, the whole iteration one program on
  # the device), "auto" (fused for JAX environments, host for the others).
  driver: str = "auto"
  # Vector steps per fused iteration; 0: the fewest that owe a whole number of updates.
  fused_steps: int = 0
  # Processes and hosts (wmrl/distributed.py): each steps its own environments
  # into its own replay and feeds run.batch_size / num_processes of every batch.
  distributed: DistributedConfig = DistributedConfig()


@dataclasses.dataclass(frozen=True)
class SelectionFractions:
  """The shares of a batch's windows (after the online queue's) each selector
  draws, summing to 1 (the reference's `replay.fracs`)."""

  uniform: float = 1.0
  priority: float = 0.0  # in proportion to the windows' priorities (`replay.prio`)
  recency: float = 0.0  # the newer the likelier (`replay.recexp`)


@dataclasses.dataclass(frozen=True)
class PriorityConfig:
  """Prioritized selection, the reference's `replay.prio`: a window's weight is
  `maxfrac` x the largest plus (1 - `maxfrac`) x the mean of its steps'
  priorities raised to `exponent`; new steps start at `initial` (inf: drawn
  before any step with a finite priority), and a drawn window's steps drop to
  0 when `zero_on_sample`, until the update writes their new priorities."""

  exponent: float = 0.8
  maxfrac: float = 0.5
  initial: float = float("inf")
  zero_on_sample: bool = True


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
  """Which replayed windows the updates train on (wmrl/drivers/selection.py,
  docs/replay.md); the defaults are the reference's."""

  # The reference's online queue (its `replay.online`, on in the recipe of the
  # published curves): each stream's fresh non-overlapping windows go into the
  # next batches, in order, before any draw. False: draws only (what wmrl did
  # before this setting, and what a config.json written then reads as:
  # `Config.from_dict`).
  online: bool = True
  fracs: SelectionFractions = SelectionFractions()
  prio: PriorityConfig = PriorityConfig()
  # The priorities the updates write back: "model", the sum of each trained
  # step's sequence-model and decoder losses (the reference's `priosignal:
  # model` as its agent computed it at 2411f7d, the commit of the published
  # curves), or "none": never written, so priorities stay at `initial` and the
  # zeros of `zero_on_sample` (the reference's agent at e3f0224, where the line
  # that sends them is commented out).
  priosignal: str = "model"
  recexp: float = 1.0  # recency weights 1 / (age + 1) ** recexp over the capacity's ages


@dataclasses.dataclass(frozen=True)
class Config:
  """A run's whole configuration: the algorithm and its settings, the environment
  and the run.

  `algorithm_config` is an instance of the config class the algorithm
  registered (wmrl/algorithms; DreamerV3's: `model`, `behavior`, `optim`,
  `loss_scales`). Its groups read as the config's own: in code
  (`config.model` is `config.algorithm_config.model`), in dotted names
  (`model.rssm.deter`, so `--model.rssm.deter` on the command line) and in
  config.json, so that neither flags nor saved configs depend on the nesting.
  """

  algorithm: str = "dreamerv3"  # a name registered in wmrl/algorithms
  algorithm_config: Any = None  # the algorithm's settings; None: its defaults
  env: EnvConfig = EnvConfig()
  run: RunConfig = RunConfig()
  replay: ReplayConfig = ReplayConfig()

  def __post_init__(self):
    if self.algorithm_config is None:
      object.__setattr__(self, "algorithm_config", algorithm_config_class(self.algorithm)())

  def __getattr__(self, name: str) -> Any:
    # Called only for names that are not fields: the algorithm's groups.
    settings = self.__dict__.get("algorithm_config")
    if settings is not None and name in _field_set(settings):
      return getattr(settings, name)
    raise AttributeError(f"Config has no field '{name}' (algorithm {self.algorithm!r})")

  # --- conversions -------------------------------------------------------

  def to_dict(self) -> dict[str, Any]:
    """Plain data, the algorithm's groups at the top (as config.json holds them)."""
    return {"algorithm": self.algorithm, **dataclasses.asdict(self.algorithm_config),
            **{name: dataclasses.asdict(getattr(self, name)) for name in _groups()}}

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2)

  @classmethod
  def from_dict(cls, data: dict[str, Any]) -> "Config":
    algorithm = str(data.get("algorithm", cls.algorithm))
    own = {k: v for k, v in data.items() if k not in ("algorithm", *_groups())}
    kinds = typing.get_type_hints(cls)
    groups = {name: _from_dict(kinds[name], data.get(name, {}), f"{name}.") for name in _groups()}
    if "replay" not in data and "run" in data:
      # A run's config.json from before the replay group: its run sampled
      # uniformly, so a resume with the queue on reports the change.
      groups["replay"] = dataclasses.replace(groups["replay"], online=False)
    return cls(algorithm, _from_dict(algorithm_config_class(algorithm), own, ""), **groups)

  def replace(self, **dotted: Any) -> "Config":
    """Returns a copy with fields set by dotted name: ``replace(**{"run.seed": 1})``.
    `algorithm` is set first: a new algorithm starts from its own defaults."""
    config = self
    if "algorithm" in dotted:
      name = _coerce(str, dotted["algorithm"], "algorithm")
      if name != config.algorithm:
        config = dataclasses.replace(config, algorithm=name, algorithm_config=None)
    for name, value in dotted.items():
      if name != "algorithm":
        config = set_field(config, name, value)
    return config


def _groups() -> tuple[str, ...]:
  """The groups every config has (`env`, `run`, `replay`); the others are the algorithm's."""
  return tuple(f.name for f in dataclasses.fields(Config)
               if f.name not in ("algorithm", "algorithm_config"))


def algorithm_config_class(name: str) -> type:
  """The config class algorithm `name` registered; refuses an unknown name."""
  from wmrl import algorithms  # the registry imports the algorithms' configs, which import this
  return algorithms.config_class(name)


def _field_set(config) -> frozenset[str]:
  return frozenset(f.name for f in dataclasses.fields(config))


def _from_dict(cls, data: dict[str, Any], prefix: str):
  hints = typing.get_type_hints(cls)
  kwargs = {}
  for key, value in data.items():
    if key not in hints:
      raise ValueError(f"unknown config field '{prefix}{key}'")
    kind = hints[key]
    if dataclasses.is_dataclass(kind):
      kwargs[key] = _from_dict(kind, value, f"{prefix}{key}.")
    else:
      kwargs[key] = _coerce(kind, value, f"{prefix}{key}")
  return cls(**kwargs)


def _coerce(kind, value, name: str):
  """Converts `value` (possibly a command-line string) to the field's type."""
  origin = typing.get_origin(kind)
  if origin is tuple:
    if isinstance(value, str):
      value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
    (item, *_) = typing.get_args(kind)
    return tuple(_coerce(item, v, name) for v in value)
  try:
    if kind is bool:
      if isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
          return True
        if value.lower() in ("0", "false", "no", "off"):
          return False
        raise ValueError(value)
      return bool(value)
    if kind is int:
      number = float(value) if isinstance(value, str) else value
      if isinstance(number, float) and not number.is_integer():
        raise ValueError(value)
      return int(number)
    if kind is float:
      return float(value)
    if kind is str:
      return str(value)
  except ValueError:
    raise ValueError(f"config field '{name}' expects {kind.__name__}, got {value!r}") from None
  return value


def set_field(config, dotted: str, value: Any, _full: str = "", _root=None):
  """Returns `config` with the field at the dotted path replaced (typed). On a
  `Config`, a path that is not `algorithm`, `env.*`, `run.*` or `replay.*` names a field
  of the algorithm's settings (`Config`'s doc)."""
  full, root = _full or dotted, config if _root is None else _root
  head, _, rest = dotted.partition(".")
  if isinstance(config, Config) and head not in ("algorithm", "algorithm_config", *_groups()):
    settings = set_field(config.algorithm_config, dotted, value, full, root)
    return dataclasses.replace(config, algorithm_config=settings)
  if isinstance(config, Config) and head == "algorithm":
    return config.replace(algorithm=value)
  if head not in _field_set(config):
    # Suggest from the root, so a typo anywhere in the path gets a suggestion.
    raise ValueError(f"unknown config field '{full}'{did_you_mean(full, field_names(root))}")
  current = getattr(config, head)
  if rest:
    if not dataclasses.is_dataclass(current):
      raise ValueError(f"config field '{full}': '{head}' has no sub-fields")
    return dataclasses.replace(config, **{head: set_field(current, rest, value, full, root)})
  if dataclasses.is_dataclass(current):
    raise ValueError(f"config field '{full}' is a group; set one of its fields")
  kind = typing.get_type_hints(type(config))[head]
  return dataclasses.replace(config, **{head: _coerce(kind, value, full)})


def field_names(config, prefix: str = "") -> list[str]:
  """All dotted leaf field names of a config (a `Config`'s algorithm settings
  at the top, as they are addressed)."""
  if isinstance(config, Config):
    return ["algorithm", *field_names(config.algorithm_config),
            *(n for group in _groups() for n in field_names(getattr(config, group), f"{group}."))]
  names = []
  for f in dataclasses.fields(config):
    value = getattr(config, f.name)
    if dataclasses.is_dataclass(value):
      names += field_names(value, f"{prefix}{f.name}.")
    else:
      names.append(prefix + f.name)
  return names


def diff(old: "Config", new: "Config") -> dict[str, tuple[Any, Any]]:
  """Fields that differ between two configs: name -> (old, new)."""
  a, b = _flatten(old.to_dict()), _flatten(new.to_dict())
  return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = tuple(value) if isinstance(value, list) else value
  return out
