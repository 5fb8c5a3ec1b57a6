"""POPGym's environments by class name: ``popgym:RepeatPreviousEasy`` and the rest.

Importing ``popgym.envs`` registers each of its classes with Gymnasium as
``popgym-<Class>-v0`` (one spelling differs: ``VelocityOnlyCartPoleEasy`` is
``popgym-VelocityOnlyCartpoleEasy-v0``), so wmrl names them by class and looks
the Gymnasium id up in ``popgym.envs.ALL``, the table POPGym registers from.

Their observations are Gymnasium Discrete, MultiDiscrete or Tuple spaces (a
card's suit, Autoencode's ``(mode, card)``), which the adapter one-hot encodes
(wmrl/envs/observations.py); their actions are Discrete or MultiDiscrete.
"""
from __future__ import annotations

INSTALL = 'pip install -e ".[popgym]"'


def load_popgym():
  """Imports ``popgym.envs`` (which registers its Gymnasium ids), or says how to install it."""
  try:
    import popgym.envs
  except ImportError as exc:
    raise ImportError(f"popgym: environments need the popgym package ({exc}); {INSTALL}") from exc
  return popgym.envs


def gym_ids() -> dict[str, str]:
  """Class name -> its Gymnasium id, for every environment POPGym registers."""
  return {cls.__name__: spec["id"] for cls, spec in load_popgym().ALL.items()}
