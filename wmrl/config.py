"""Typed, frozen configuration with DreamerV3's reference defaults.

A `Config` is a tree of frozen dataclasses. Presets are named functions of a
config; overrides address any field by its dotted name
(``model.rssm.deter=512``). The defaults equal the reference implementation's
``configs.yaml`` (2024 version) at its default size (200m); ``size1m`` ...
``size400m`` set the sizes as the reference does.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class RSSMConfig:
  deter: int = 8192
  hidden: int = 1024
  stoch: int = 32  # number of categorical latents
  classes: int = 64  # classes per latent
  blocks: int = 8  # block-diagonal GRU groups
  unimix: float = 0.01
  free_nats: float = 1.0
  img_layers: int = 2  # prior MLP depth
  obs_layers: int = 1  # posterior MLP depth
  dyn_layers: int = 1  # block-linear layers before the GRU


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  units: int = 1024
  layers: int = 3
  depth: int = 64  # CNN channels of the first stage
  mults: tuple[int, ...] = (2, 3, 4, 4)
  kernel: int = 5
  symlog: bool = True


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  units: int = 1024
  layers: int = 3
  depth: int = 64
  mults: tuple[int, ...] = (2, 3, 4, 4)
  kernel: int = 5


@dataclasses.dataclass(frozen=True)
class HeadConfig:
  """An MLP head on the model features (deter + stoch)."""

  units: int = 1024
  layers: int = 1
  outscale: float = 1.0  # variance scale of the output layer's init (0 = zeros)
  bins: int = 255  # two-hot bins, for symexp two-hot heads


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  rssm: RSSMConfig = RSSMConfig()
  encoder: EncoderConfig = EncoderConfig()
  decoder: DecoderConfig = DecoderConfig()
  reward: HeadConfig = HeadConfig(layers=1, outscale=0.0)
  cont: HeadConfig = HeadConfig(layers=1, outscale=1.0)
  actor: HeadConfig = HeadConfig(layers=3, outscale=0.01)
  critic: HeadConfig = HeadConfig(layers=3, outscale=0.0)
  actor_min_std: float = 0.1
  actor_max_std: float = 1.0
  actor_unimix: float = 0.01
  # "float32" or "bfloat16"; parameters stay float32 either way.
  compute_dtype: str = "float32"
  # The sequence model of the world model (wmrl/world_model.py, DYNAMICS).
  dynamics: str = "rssm"


@dataclasses.dataclass(frozen=True)
class LossScales:
  rec: float = 1.0
  rew: float = 1.0
  con: float = 1.0
  dyn: float = 1.0
  rep: float = 0.1
  policy: float = 1.0
  value: float = 1.0
  repval: float = 0.3


@dataclasses.dataclass(frozen=True)
class BehaviorConfig:
  imag_horizon: int = 15
  horizon: int = 333  # discount = 1 - 1 / horizon
  lam: float = 0.95
  entropy: float = 3e-4
  # The continue head learns (1 - terminal) * discount, and imagination then
  # discounts with it alone (reference: contdisc=True).
  contdisc: bool = True
  slow_critic_rate: float = 0.02
  slow_reg: float = 1.0
  # Returns are normalised by the EMA of their 5th-95th percentile range.
  retnorm_rate: float = 0.01
  retnorm_limit: float = 1.0
  retnorm_low: float = 5.0
  retnorm_high: float = 95.0
  repval_loss: bool = True
  # The replay value loss also trains the world model's representations
  # (reference: repval_grad=True).
  repval_grad: bool = True

  @property
  def discount(self) -> float:
    """The discount of real and replayed returns."""
    return 1.0 - 1.0 / self.horizon

  @property
  def cont_target(self) -> float:
    """What the continue head learns for a step that does not terminate: with
    `contdisc` the discount itself, so predicted continues discount imagination."""
    return self.discount if self.contdisc else 1.0

  @property
  def imag_discount(self) -> float:
    """The discount applied on top of the predicted continues in imagination."""
    return 1.0 if self.contdisc else self.discount


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  lr: float = 4e-5
  eps: float = 1e-20
  beta1: float = 0.9
  beta2: float = 0.999
  agc: float = 0.3  # adaptive gradient clipping, relative to parameter norm
  agc_min: float = 1e-3
  warmup: int = 1000
  # Learning rates of the actor and the critic; 0 means `lr`. The reference
  # trains all networks at one rate; the DreamerV3 paper's first version used
  # 1e-4 for the world model and 3e-5 for actor and critic.
  actor_lr: float = 0.0
  critic_lr: float = 0.0


@dataclasses.dataclass(frozen=True)
class EnvConfig:
  id: str = "gym:CartPole-v1"
  num_envs: int = 1
  parallel: bool = False
  action_repeat: int = 1
  image_size: tuple[int, int] = (64, 64)
  pixels: bool = False
  time_limit: int = 0  # 0: the environment's own


@dataclasses.dataclass(frozen=True)
class RunConfig:
  seed: int = 0
  steps: int = 100_000  # environment steps (after action repeat)
  train_ratio: float = 512.0  # replayed steps per environment step
  batch_size: int = 16
  batch_length: int = 64
  replay_context: int = 1  # extra leading steps that supply the first action
  replay_capacity: int = 5_000_000
  prefill: int = 0  # random steps before training; 0: one batch worth
  log_every: int = 1000  # environment steps between metric records
  console_every: float = 10.0  # seconds between console progress lines
  eval_every: int = 0  # environment steps between evaluations; 0: never
  eval_episodes: int = 10
  save_every_minutes: float = 10.0  # wall-clock minutes between checkpoints
  save_every: int = 0  # environment steps between checkpoints; 0: by time only
  keep_checkpoints: int = 3
  # Outputs for watching a run (wmrl/logging.py, wmrl/report.py).
  tensorboard: bool = True  # event files in LOGDIR/tb (needs tensorboardX)
  wandb: bool = False  # Weights & Biases (needs wandb)
  wandb_project: str = "wmrl"
  report_every: int = 10_000  # environment steps between open-loop videos; 0: never
  eval_video: bool = True  # film the first episode of each evaluation


@dataclasses.dataclass(frozen=True)
class Config:
  algorithm: str = "dreamerv3"  # wmrl/algorithms.py lists the choices
  model: ModelConfig = ModelConfig()
  behavior: BehaviorConfig = BehaviorConfig()
  optim: OptimConfig = OptimConfig()
  loss_scales: LossScales = LossScales()
  env: EnvConfig = EnvConfig()
  run: RunConfig = RunConfig()

  # --- conversions -------------------------------------------------------

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2)

  @classmethod
  def from_dict(cls, data: dict[str, Any]) -> "Config":
    return _from_dict(cls, data, "")

  def replace(self, **dotted: Any) -> "Config":
    """Returns a copy with fields set by dotted name: ``replace(**{"run.seed": 1})``."""
    config = self
    for name, value in dotted.items():
      config = set_field(config, name, value)
    return config


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


def set_field(config, dotted: str, value: Any, _full: str = ""):
  """Returns `config` with the field at the dotted path replaced (typed)."""
  full = _full or dotted
  head, _, rest = dotted.partition(".")
  if head not in {f.name for f in dataclasses.fields(config)}:
    close = _close_names(full)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown config field '{full}'{hint}")
  current = getattr(config, head)
  if rest:
    if not dataclasses.is_dataclass(current):
      raise ValueError(f"config field '{full}': '{head}' has no sub-fields")
    return dataclasses.replace(config, **{head: set_field(current, rest, value, full)})
  if dataclasses.is_dataclass(current):
    raise ValueError(f"config field '{full}' is a group; set one of its fields")
  kind = typing.get_type_hints(type(config))[head]
  return dataclasses.replace(config, **{head: _coerce(kind, value, full)})


def field_names(config, prefix: str = "") -> list[str]:
  """All dotted leaf field names of a config."""
  names = []
  for f in dataclasses.fields(config):
    value = getattr(config, f.name)
    if dataclasses.is_dataclass(value):
      names += field_names(value, f"{prefix}{f.name}.")
    else:
      names.append(prefix + f.name)
  return names


def _close_names(dotted: str) -> list[str]:
  import difflib
  # Search from the root so a typo anywhere in the path gets a suggestion.
  return difflib.get_close_matches(dotted, field_names(Config()), n=3, cutoff=0.6)


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


# --- presets -----------------------------------------------------------------

def _size(deter: int, hidden: int, classes: int, units: int, depth: int):
  """The reference's size presets set the same numbers in every module."""

  def apply(config: Config) -> Config:
    model = config.model
    heads = {name: dataclasses.replace(getattr(model, name), units=units)
             for name in ("reward", "cont", "actor", "critic")}
    model = dataclasses.replace(
        model,
        rssm=dataclasses.replace(model.rssm, deter=deter, hidden=hidden, classes=classes),
        encoder=dataclasses.replace(model.encoder, units=units, depth=depth),
        decoder=dataclasses.replace(model.decoder, units=units, depth=depth),
        **heads)
    return dataclasses.replace(config, model=model)

  return apply


def _overrides(**dotted: Any) -> Callable[[Config], Config]:
  return lambda config: config.replace(**dotted)


PRESETS: dict[str, Callable[[Config], Config]] = {
    # Model sizes: deter / hidden / classes / units / CNN depth.
    "size1m": _size(512, 64, 4, 64, 4),
    "size12m": _size(2048, 256, 16, 256, 16),
    "size25m": _size(3072, 384, 24, 384, 24),
    "size50m": _size(4096, 512, 32, 512, 32),
    "size100m": _size(6144, 768, 48, 768, 48),
    "size200m": _size(8192, 1024, 64, 1024, 64),
    "size400m": _size(12288, 1536, 96, 1536, 96),
    # Suites, as in the reference configs.
    # The reference trains DMC from proprioception with its 1m model.
    "dmc_proprio": lambda config: _size(512, 64, 4, 64, 4)(config).replace(**{
        "env.action_repeat": 2, "run.steps": 500_000, "run.train_ratio": 512,
        "run.eval_every": 10_000, "run.eval_episodes": 10}),
    "dmc_vision": _overrides(**{
        "env.action_repeat": 2, "env.pixels": True, "run.steps": 1_000_000,
        "run.train_ratio": 512, "run.eval_every": 10_000, "run.eval_episodes": 10}),
    # Gymnasium MuJoCo v5 (no published DreamerV3 curves): the v5 tasks skip
    # frames themselves (HalfCheetah 5, Hopper 4), so no action repeat on top.
    "gym_mujoco": _overrides(**{
        "env.action_repeat": 1, "run.steps": 1_000_000, "run.train_ratio": 512,
        "run.eval_every": 10_000, "run.eval_episodes": 10}),
    # Atari 100k through ALE v5 (gym:ale_py:ALE/Pong-v5), which skips 4 frames
    # itself: 110k agent steps are 440k frames.
    "atari100k": _overrides(**{
        "env.action_repeat": 1, "env.pixels": True, "env.image_size": (64, 64),
        "env.num_envs": 1, "run.steps": 110_000, "run.train_ratio": 256}),
    # Quick checks: a short batch and a low train ratio.
    "debug": _overrides(**{
        "run.batch_size": 8, "run.batch_length": 32, "run.train_ratio": 64,
        "optim.warmup": 0, "run.log_every": 500}),
}
# Learns classic-control tasks in minutes on a CPU: the 1m model on short
# batches, a higher learning rate without warmup, and the 0.99 discount
# usual for these tasks (horizon 100) so the critic settles in fewer updates.
PRESETS["small"] = lambda config: PRESETS["size1m"](config).replace(**{
    "run.batch_size": 8, "run.batch_length": 32, "run.train_ratio": 128, "optim.lr": 3e-4,
    "optim.warmup": 0, "behavior.horizon": 100, "run.log_every": 500})


def register_preset(name: str, preset: Callable[[Config], Config]) -> None:
  if name in PRESETS:
    raise ValueError(f"preset '{name}' exists already")
  PRESETS[name] = preset


def apply_presets(config: Config, names: str | list[str]) -> Config:
  """Applies comma-separated or listed presets in order."""
  if isinstance(names, str):
    names = [n for n in names.split(",") if n.strip()]
  for name in names:
    name = name.strip()
    if name not in PRESETS:
      import difflib
      close = difflib.get_close_matches(name, PRESETS, n=3)
      hint = f"; did you mean {', '.join(close)}?" if close else ""
      raise ValueError(f"unknown preset '{name}'{hint} (known: {', '.join(PRESETS)})")
    config = PRESETS[name](config)
  return config
