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
