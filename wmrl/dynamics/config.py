"""The settings of the sequence models in wmrl/dynamics: plain frozen dataclasses,
importable without JAX, so that configs load anywhere."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class RSSMConfig:
  """The RSSM of wmrl/dynamics/rssm.py (the reference's `rssm` settings)."""

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
class SSMConfig:
  """The state-space model of wmrl/dynamics/ssm.py (`model.dynamics ssm`).

  The size presets set `deter`, `hidden` and `classes` as they do the RSSM's,
  and `units` and `state` to an eighth of `deter`: at size1m its 151k
  parameters are 40% of the RSSM's, and one step costs about half the GRU's
  multiply-adds (wider layers made it slower than the GRU on a CPU).
  """

  deter: int = 8192  # the sequence model's output, read by the prior and the heads
  units: int = 1024  # width of the recurrence layers
  state: int = 1024  # complex state size of each layer's diagonal recurrence
  layers: int = 2  # stacked recurrence layers
  hidden: int = 1024  # the prior's and posterior's MLP width
  stoch: int = 32
  classes: int = 64
  unimix: float = 0.01
  free_nats: float = 1.0
  img_layers: int = 2  # prior MLP depth
  obs_layers: int = 1  # posterior MLP depth (it reads the embedding alone)
  # The recurrence's eigenvalues start on a ring: magnitudes in [r_min, r_max]
  # set how many steps the memory spans at the start (0.999 ** 1000 = 0.37),
  # phases in [0, max_phase] (the LRU paper's initialisation).
  r_min: float = 0.9
  r_max: float = 0.999
  max_phase: float = 6.283
  # What the actor and critic read, of deter (the output the heads read), stoch
  # and hidden (every layer's complex state, real and imaginary parts): R2I's
  # default `actor.inputs` (its configs.yaml); its POPGym settings read
  # stoch and hidden (the `memory` preset does too).
  policy_inputs: tuple[str, ...] = ("deter", "stoch", "hidden")
