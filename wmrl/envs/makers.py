"""Where a single host environment comes from: each maker creates one adapter.

Makers are small frozen dataclasses so that they pickle: with
``parallel=True`` each subprocess creates its own env from them.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

import gymnasium

from wmrl.envs.core import SingleEnv
from wmrl.names import did_you_mean
from wmrl.envs.dmc import DMCAdapter
from wmrl.envs.gl import default_headless_backend
from wmrl.envs.gym_adapter import GymAdapter
from wmrl.envs.popgym_ids import load_popgym


def _render_kwargs(gym_id: str, pixels: bool, size: tuple[int, int]) -> dict:
  """render_mode='rgb_array' where the env supports it, so render() can make videos.

  MuJoCo envs also get the image size, so pixel runs render small frames
  directly instead of 480x480 ones resized afterwards.
  """
  if ":" in gym_id:  # Gymnasium's own "module:EnvId" form registers on import
    module, gym_id = gym_id.split(":", 1)
    importlib.import_module(module)
  spec = gymnasium.spec(gym_id)
  creator = spec.entry_point
  if isinstance(creator, str):
    creator = gymnasium.envs.registration.load_env_creator(creator)
  metadata = getattr(creator, "metadata", None)
  if not isinstance(metadata, dict) or "rgb_array" not in (metadata.get("render_modes") or ()):
    return {}
  kwargs = {"render_mode": "rgb_array"}
  if pixels and _is_mujoco(creator):
    kwargs.update(height=size[0], width=size[1])
  return kwargs


def _is_mujoco(creator) -> bool:
  try:
    from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
  except ImportError:  # no MuJoCo or no imageio: then it is no MuJoCo env we can make
    return False
  return isinstance(creator, type) and issubclass(creator, MujocoEnv)


@dataclasses.dataclass(frozen=True)
class GymMaker:
  """A registered Gymnasium id, made with ``gymnasium.make``."""

  gym_id: str

  def create(self, seed: int, image_size: tuple[int, int], pixels: bool,
             obs_keys: str = ".*") -> SingleEnv:
    default_headless_backend()  # Gymnasium's MuJoCo renderer reads MUJOCO_GL too
    env = gymnasium.make(self.gym_id, **_render_kwargs(self.gym_id, pixels, image_size))
    return _adapt(env, seed, f"gym:{self.gym_id}", obs_keys)


@dataclasses.dataclass(frozen=True)
class DMCMaker:
  """A DeepMind Control Suite task."""

  domain: str
  task: str

  def create(self, seed: int, image_size: tuple[int, int], pixels: bool,
             obs_keys: str = ".*") -> SingleEnv:
    return DMCAdapter(self.domain, self.task, seed, image_size, obs_keys)


@dataclasses.dataclass(frozen=True)
class PopgymMaker:
  """A POPGym environment, ``popgym:<name>``, made from its Gymnasium id."""

  name: str  # POPGym's class name, e.g. RepeatPreviousEasy
  gym_id: str  # what POPGym registers it as, e.g. popgym-RepeatPreviousEasy-v0

  def create(self, seed: int, image_size: tuple[int, int], pixels: bool,
             obs_keys: str = ".*") -> SingleEnv:
    load_popgym()  # registers the ids in this process, also in a parallel worker
    # POPGym's environments declare no render modes, so no render kwargs.
    return _adapt(gymnasium.make(self.gym_id), seed, f"popgym:{self.name}", obs_keys)


@dataclasses.dataclass(frozen=True)
class FactoryMaker:
  """A callable returning a ``gymnasium.Env``, called with no arguments."""

  factory: Callable[[], gymnasium.Env]
  name: str

  def create(self, seed: int, image_size: tuple[int, int], pixels: bool,
             obs_keys: str = ".*") -> SingleEnv:
    env = self.factory()
    return _adapt(env, seed, self.name, obs_keys)


@dataclasses.dataclass(frozen=True)
class ModuleMaker:
  """``some.module.path:factory``; imported again in each worker process."""

  module: str
  attr: str

  @property
  def name(self) -> str:
    return f"{self.module}:{self.attr}"

  def factory(self) -> Callable[[], gymnasium.Env]:
    """Imports the module and finds the factory, saying what was tried when it fails."""
    obj = importlib.import_module(self.module)
    for part in self.attr.split("."):
      if not hasattr(obj, part):
        names = [n for n in dir(obj) if not n.startswith("_")]
        hint = did_you_mean(part, names)
        raise ValueError(f"env id {self.name!r} was read as module:factory, but module "
                         f"{self.module!r} has no attribute {self.attr!r} (looked up {part!r}){hint}")
      obj = getattr(obj, part)
    if not callable(obj):
      raise ValueError(f"env id {self.name!r}: {self.attr!r} is a {type(obj).__name__}, not a "
                       "callable that returns a gymnasium.Env")
    return obj

  def create(self, seed: int, image_size: tuple[int, int], pixels: bool,
             obs_keys: str = ".*") -> SingleEnv:
    return _adapt(self.factory()(), seed, self.name, obs_keys)


def _adapt(env, seed: int, name: str, obs_keys: str) -> SingleEnv:
  """Adapts ``env``, closing it if its spaces are refused."""
  try:
    return GymAdapter(env, seed, name, obs_keys)
  except BaseException:
    if hasattr(env, "close"):
      env.close()
    raise
