"""Framework-neutral descriptions of observations and actions.

Everything past the environment adapters speaks in these specs, so the agent,
replay and driver never import Gymnasium.

Model-format actions: every action the agent emits or stores is a float32
vector of width ``ActionSpec.dim``. Continuous actions lie in [-1, 1];
discrete and multi-discrete actions are concatenated one-hot vectors, one
block of ``sizes[i]`` entries per sub-action. Adapters translate to and from
the environment's own format.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

# Keys every step carries besides the observation keys.
STEP_KEYS = ("reward", "is_first", "is_last", "is_terminal")


@dataclasses.dataclass(frozen=True)
class ArraySpec:
  """Shape and dtype of one observation key (without batch axes)."""

  shape: tuple[int, ...]
  dtype: str  # numpy dtype name: "uint8" for images, "float32" for vectors

  @property
  def is_image(self) -> bool:
    return self.dtype == "uint8" and len(self.shape) == 3


@dataclasses.dataclass(frozen=True)
class ActionSpec:
  """The action space in model format.

  kind "continuous": ``sizes == (dim,)``, actions in [-1, 1].
  kind "discrete": ``sizes`` holds the number of choices of each sub-action
  (one entry for a plain ``Discrete`` space, several for ``MultiDiscrete``).
  """

  kind: Literal["continuous", "discrete"]
  sizes: tuple[int, ...]

  def __post_init__(self):
    if self.kind not in ("continuous", "discrete"):
      raise ValueError(f"ActionSpec.kind must be 'continuous' or 'discrete', got {self.kind!r}")
    if not self.sizes or any(int(s) < 1 for s in self.sizes):
      raise ValueError(f"ActionSpec.sizes must be positive, got {self.sizes}")
    if self.kind == "continuous" and len(self.sizes) != 1:
      raise ValueError("a continuous ActionSpec has sizes == (dim,)")

  @property
  def dim(self) -> int:
    """Width of the model-format action vector."""
    return int(sum(self.sizes))

  @property
  def discrete(self) -> bool:
    return self.kind == "discrete"

  def to_indices(self, action: np.ndarray) -> np.ndarray:
    """One-hot blocks [..., dim] -> integer choices [..., len(sizes)]."""
    assert self.discrete
    splits = np.cumsum(self.sizes)[:-1]
    return np.stack([b.argmax(-1) for b in np.split(action, splits, -1)], -1)

  def from_indices(self, indices: np.ndarray) -> np.ndarray:
    """Integer choices [..., len(sizes)] -> one-hot blocks [..., dim]."""
    assert self.discrete
    indices = np.asarray(indices)
    blocks = [np.eye(n, dtype=np.float32)[indices[..., i]] for i, n in enumerate(self.sizes)]
    return np.concatenate(blocks, -1)


ObsSpec = dict[str, ArraySpec]


def random_actions(rng: np.random.Generator, spec: ActionSpec, num: int) -> np.ndarray:
  """`num` uniform random actions of `spec` in model format [num, dim]."""
  if spec.discrete:
    choices = np.stack([rng.integers(0, n, num) for n in spec.sizes], -1)
    return spec.from_indices(choices)
  return rng.uniform(-1, 1, (num, spec.dim)).astype(np.float32)
