"""DreamerV3's settings, with the reference implementation's defaults (its
configs.yaml, 2024 version, at its default size 200m): the `model`,
`behavior`, `optim` and `loss_scales` groups of a run's config, addressed on
the command line as `--model.rssm.deter` and so on (wmrl/config.py).

Plain frozen dataclasses, importable without JAX.
"""
from __future__ import annotations

import dataclasses

from wmrl.dynamics.config import RSSMConfig, SSMConfig


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
  # The image decoder's first layer: with bspace > 0 the reference's block-space
  # projection (deter through a block-linear layer of `bspace` blocks, stoch
  # through two dense layers, summed); 0 projects all features with one dense layer.
  bspace: int = 8


@dataclasses.dataclass(frozen=True)
class HeadConfig:
  """An MLP head on the model features (deter + stoch)."""

  units: int = 1024
  layers: int = 1
  outscale: float = 1.0  # factor on the output layer's initial weights (0 = zeros)
  bins: int = 255  # two-hot bins, for symexp two-hot heads


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  rssm: RSSMConfig = RSSMConfig()
  ssm: SSMConfig = SSMConfig()
  encoder: EncoderConfig = EncoderConfig()
  decoder: DecoderConfig = DecoderConfig()
  reward: HeadConfig = HeadConfig(layers=1, outscale=0.0)
  cont: HeadConfig = HeadConfig(layers=1, outscale=1.0)
  actor: HeadConfig = HeadConfig(layers=3, outscale=0.01)
  critic: HeadConfig = HeadConfig(layers=3, outscale=0.0)
  actor_min_std: float = 0.1
  actor_max_std: float = 1.0
  # Uniform mix of discrete actors' probabilities. The reference's categorical
  # policy has none: its configs.yaml sets policy.unimix 0.01, but the
  # `categorical` output it uses for discrete actions ignores it.
  actor_unimix: float = 0.0
  # "float32" or "bfloat16"; parameters stay float32 either way.
  compute_dtype: str = "float32"
  # The sequence model of the world model, by its name in wmrl/dynamics (`register`).
  dynamics: str = "rssm"


@dataclasses.dataclass(frozen=True)
class LossScales:
  """A scale for each loss a part declares: the sequence model's (`dyn`, `rep`),
  the world model's heads' (`rec`, `rew`, `con`), the actor-critic's (`policy`,
  `value`, `repval`); `agent.check_losses` refuses a declared loss without one."""

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
  # The learner's rewards are the environment's times this: the reward head's
  # targets and the replayed returns (logged scores stay the environment's).
  # Not in the reference (1 is its behaviour). For tasks whose rewards are far
  # below 1, as POPGym's +-1/(N - k) per step: the reward head's two-hot bins
  # around 0 are 0.16 apart in symlog space, so +-0.02 barely moves its target
  # (docs/memory.md).
  reward_scale: float = 1.0

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
  """The optimiser of wmrl/optim.py (the reference's LaProp with adaptive clipping)."""

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
class DreamerV3Config:
  """DreamerV3's config groups, registered with the algorithm (wmrl/algorithms)."""

  model: ModelConfig = ModelConfig()
  behavior: BehaviorConfig = BehaviorConfig()
  optim: OptimConfig = OptimConfig()
  loss_scales: LossScales = LossScales()


def _whole(value, least: int) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _positive_ints(name: str, values) -> None:
  if not all(_whole(v, 1) for v in values):
    raise ValueError(f"{name} must be positive whole numbers, got {values}")


def _check_networks(model: ModelConfig) -> None:
  """Each layer size named by its field, before a network is built from it."""
  for part in ("encoder", "decoder"):
    c = getattr(model, part)
    for field in ("units", "layers", "depth", "kernel"):
      if not _whole(getattr(c, field), 1):
        raise ValueError(f"model.{part}.{field} must be a positive whole number, got "
                         f"{getattr(c, field)!r}")
    # Empty mults: no CNN; every image goes through the MLP, flattened.
    _positive_ints(f"model.{part}.mults (one channel multiplier per CNN stage, or empty "
                   "for no CNN)", c.mults)
  inputs = model.ssm.policy_inputs
  if not inputs or len(set(inputs)) < len(inputs) or not set(inputs) <= {"deter", "stoch", "hidden"}:
    raise ValueError(f"model.ssm.policy_inputs must name some of deter, stoch and hidden, each "
                     f"once, got {inputs}")
  for head in ("reward", "cont", "actor", "critic"):
    c = getattr(model, head)
    for field, least in (("units", 1), ("layers", 0), ("bins", 1)):
      if not _whole(getattr(c, field), least):
        raise ValueError(f"model.{head}.{field} must be a whole number >= {least}, got "
                         f"{getattr(c, field)!r}")


def validate(config) -> None:
  """Refuses DreamerV3 settings that cannot work (`config` is the whole Config)."""
  _check_networks(config.model)
  b = config.behavior
  if b.imag_horizon <= 0:
    raise ValueError(f"behavior.imag_horizon must be positive, got {b.imag_horizon}")
  if not b.reward_scale > 0:
    raise ValueError(f"behavior.reward_scale must be positive, got {b.reward_scale}")
