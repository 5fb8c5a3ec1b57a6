"""Tests for wmrl.envs: the environment contract of DESIGN.md.

Small fake Gymnasium envs (defined here, at module level so that worker
processes can unpickle them) check the conversions exactly; a few real
Gymnasium and DeepMind Control tasks check the ids and specs.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from wmrl import envs, jaxenvs
from wmrl.envs.observations import DroppedKey, ObservationConverter
from wmrl.envs.vector import RemoteTraceback
from wmrl.envs.wrappers import resize
from wmrl.spaces import STEP_KEYS, ActionSpec, ArraySpec


# ---------------------------------------------------------------- fake envs

class ImageEnv(gymnasium.Env):
  """Dict obs: a uint8 16x16x3 image drawn with NumPy and a float vector.

  Discrete(3, start=1) actions; the vector holds (step, level, last action),
  so tests read back what the env received. Episodes truncate after
  ``length`` steps; ``level`` and rewards come from the seeded np_random.
  """

  metadata = {"render_modes": ["rgb_array"]}

  def __init__(self, render_mode: str | None = "rgb_array", length: int = 5):
    self.observation_space = spaces.Dict({
        "image": spaces.Box(0, 255, (16, 16, 3), np.uint8),
        "vector": spaces.Box(-np.inf, np.inf, (3,), np.float32),
    })
    self.action_space = spaces.Discrete(3, start=1)
    self.render_mode = render_mode
    self.length = length

  def _obs(self, action: int = 0):
    image = np.zeros((16, 16, 3), np.uint8)
    image[self.t % 16, :, 0] = 255
    image[..., 1] = self.level
    return {"image": image, "vector": np.array([self.t, self.level, action], np.float32)}

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self.t = 0
    self.level = int(self.np_random.integers(0, 256))
    return self._obs(), {}

  def step(self, action):
    assert self.action_space.contains(action), action
    self.t += 1
    reward = float(self.np_random.normal())
    return self._obs(action), reward, False, self.t >= self.length, {}

  def render(self):
    frame = np.zeros((32, 24, 3), np.uint8)
    frame[:16] = self.level  # top half the level, bottom half black
    return frame


class CountEnv(gymnasium.Env):
  """obs = [t], reward = t; terminates or truncates at known steps."""

  def __init__(self, terminate_at: int | None = None, truncate_at: int | None = None):
    self.observation_space = spaces.Box(-np.inf, np.inf, (1,), np.float32)
    self.action_space = spaces.Discrete(2)
    self.terminate_at = terminate_at
    self.truncate_at = truncate_at

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self.t = 0
    return np.array([0.0], np.float32), {}

  def step(self, action):
    self.t += 1
    obs = np.array([self.t], np.float32)
    return obs, float(self.t), self.t == self.terminate_at, self.t == self.truncate_at, {}


class EchoEnv(gymnasium.Env):
  """Observes the last action it received, as float32, to check action conversion."""

  def __init__(self, action_space: gymnasium.Space):
    self.action_space = action_space
    width = int(np.prod(action_space.shape)) if action_space.shape else 1
    self.observation_space = spaces.Box(-np.inf, np.inf, (width,), np.float32)
    self.width = width

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    return np.zeros(self.width, np.float32), {}

  def step(self, action):
    assert self.action_space.contains(action), action
    return np.asarray(action, np.float32).reshape(-1), 0.0, False, False, {}


class SpacesEnv(gymnasium.Env):
  """Discrete, nested Dict, scalar Box and 2-D uint8 observations."""

  def __init__(self):
    self.observation_space = spaces.Dict({
        "pos": spaces.Discrete(3, start=-1),
        "outer": spaces.Dict({"inner": spaces.Box(-1.0, 1.0, (), np.float32)}),
        "gray": spaces.Box(0, 255, (8, 8), np.uint8),
        "cells": spaces.MultiDiscrete([2, 3]),
    })
    self.action_space = spaces.Discrete(2)

  def _obs(self):
    return {"pos": 1, "outer": {"inner": np.array(0.5, np.float32)},
            "gray": np.full((8, 8), 7, np.uint8), "cells": np.array([1, 2])}

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    return self._obs(), {}

  def step(self, action):
    return self._obs(), 0.0, False, False, {}


class BadObsEnv(gymnasium.Env):
  """Returns a bad observation for key ``obs`` (or ``vector``) at step ``at``."""

  def __init__(self, problem: str, at: int = 2, as_dict: bool = False):
    self.problem, self.at, self.as_dict = problem, at, as_dict
    box = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    self.observation_space = spaces.Dict({"vector": box}) if as_dict else box
    self.action_space = spaces.Discrete(2)

  def _obs(self, t: int):
    value = np.zeros(3, np.float32)
    if t == self.at:
      if self.problem == "nan":
        value[1] = np.nan
      elif self.problem == "shape":
        value = np.zeros(4, np.float32)
      elif self.problem == "dtype":
        value = np.zeros(3, np.float64)
    return {"vector": value} if self.as_dict else value

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self.t = 0
    return self._obs(0), {}

  def step(self, action):
    self.t += 1
    return self._obs(self.t), 0.0, False, False, {}


class SpaceEnv(gymnasium.Env):
  """An env with the given spaces, for spaces that must be refused at construction."""

  def __init__(self, observation_space=None, action_space=None):
    self.observation_space = observation_space or spaces.Box(-1.0, 1.0, (2,), np.float32)
    self.action_space = action_space or spaces.Discrete(2)


def make_image_env() -> gymnasium.Env:
  """The factory the module:factory id points at."""
  return ImageEnv()


def make_custom(factory, **kwargs) -> envs.Env:
  envs.register("test", factory)
  return envs.make("custom:test", **kwargs)


def one_hot(spec: ActionSpec, *indices: int) -> np.ndarray:
  return spec.from_indices(np.array([indices]))


# ---------------------------------------------------------------- format

def test_dict_image_obs_keys_shapes_and_dtypes():
  with make_custom(ImageEnv) as env:
    assert env.num_envs == 1
    assert env.obs_spec == {"image": ArraySpec((16, 16, 3), "uint8"),
                            "vector": ArraySpec((3,), "float32")}
    assert env.act_spec == ActionSpec("discrete", (3,))
    for step in (env.reset(), env.step(one_hot(env.act_spec, 0))):
      assert set(step) == {"image", "vector", *STEP_KEYS}
      assert step["image"].shape == (1, 16, 16, 3) and step["image"].dtype == np.uint8
      assert step["vector"].shape == (1, 3) and step["vector"].dtype == np.float32
      assert step["reward"].shape == (1,) and step["reward"].dtype == np.float32
      for key in ("is_first", "is_last", "is_terminal"):
        assert step[key].shape == (1,) and step[key].dtype == bool
    assert step["image"][0, 1, 0, 0] == 255  # the row of step 1 was drawn


def test_discrete_obs_nested_dict_scalar_and_gray_images():
  with make_custom(SpacesEnv) as env:
    assert env.obs_spec == {
        "pos": ArraySpec((3,), "float32"), "outer/inner": ArraySpec((1,), "float32"),
        "gray": ArraySpec((8, 8, 1), "uint8"), "cells": ArraySpec((5,), "float32")}
    step = env.reset()
  np.testing.assert_array_equal(step["pos"], [[0, 0, 1]])  # 1 with start -1 is index 2
  np.testing.assert_array_equal(step["outer/inner"], [[0.5]])
  assert step["gray"].shape == (1, 8, 8, 1) and (step["gray"] == 7).all()
  np.testing.assert_array_equal(step["cells"], [[0, 1, 0, 0, 1]])


def test_discrete_action_with_start():
  with make_custom(ImageEnv) as env:
    env.reset()
    for index in range(3):
      step = env.step(one_hot(env.act_spec, index))
      assert step["vector"][0, 2] == index + 1  # start=1


def test_multidiscrete_action():
  space = spaces.MultiDiscrete([2, 3], start=[0, 5])
  with make_custom(functools.partial(EchoEnv, space)) as env:
    assert env.act_spec == ActionSpec("discrete", (2, 3))
    env.reset()
    np.testing.assert_array_equal(env.step(one_hot(env.act_spec, 1, 2))["obs"], [[1, 7]])
    np.testing.assert_array_equal(env.step(one_hot(env.act_spec, 0, 0))["obs"], [[0, 5]])


def test_box_action_scaling_and_infinite_bounds():
  space = spaces.Box(np.array([0.0, -np.inf], np.float32), np.array([2.0, np.inf], np.float32))
  with make_custom(functools.partial(EchoEnv, space)) as env:
    assert env.act_spec == ActionSpec("continuous", (2,))
    env.reset()
    cases = {(-1.0, 0.5): (0.0, 0.5), (1.0, -0.25): (2.0, -0.25), (0.0, 0.0): (1.0, 0.0),
             (3.0, -7.0): (2.0, -1.0)}  # outside [-1, 1] is clipped first
    for action, expected in cases.items():
      step = env.step(np.array([action], np.float32))
      np.testing.assert_allclose(step["obs"], [expected])


# ---------------------------------------------------------------- episode ends

def run(env: envs.Env, steps: int) -> list[dict]:
  out = [env.reset()]
  for _ in range(steps):
    out.append(env.step(np.zeros((env.num_envs, env.act_spec.dim), np.float32)))
  return out


def column(steps: list[dict], key: str) -> list:
  return [s[key][0].tolist() for s in steps]


def test_termination_returns_final_obs_then_resets():
  with make_custom(functools.partial(CountEnv, terminate_at=3)) as env:
    steps = run(env, 5)
  assert column(steps, "obs") == [[0], [1], [2], [3], [0], [1]]
  assert column(steps, "reward") == [0, 1, 2, 3, 0, 1]
  assert column(steps, "is_first") == [True, False, False, False, True, False]
  assert column(steps, "is_last") == [False, False, False, True, False, False]
  assert column(steps, "is_terminal") == [False, False, False, True, False, False]


def test_truncation_is_last_without_is_terminal():
  with make_custom(functools.partial(CountEnv, truncate_at=2)) as env:
    steps = run(env, 4)
  assert column(steps, "obs") == [[0], [1], [2], [0], [1]]
  assert column(steps, "is_last") == [False, False, True, False, False]
  assert column(steps, "is_terminal") == [False] * 5
  assert column(steps, "is_first") == [True, False, False, True, False]
  assert column(steps, "reward") == [0, 1, 2, 0, 1]


def test_time_limit_truncates():
  with make_custom(CountEnv, time_limit=3) as env:
    steps = run(env, 4)
  assert column(steps, "is_last") == [False, False, False, True, False]
  assert column(steps, "is_terminal") == [False] * 5
  assert column(steps, "obs") == [[0], [1], [2], [3], [0]]


def test_action_repeat_sums_rewards_and_stops_at_episode_end():
  with make_custom(functools.partial(CountEnv, terminate_at=5), action_repeat=2) as env:
    steps = run(env, 4)
  assert column(steps, "obs") == [[0], [2], [4], [5], [0]]
  assert column(steps, "reward") == [0, 1 + 2, 3 + 4, 5, 0]
  assert column(steps, "is_terminal") == [False, False, False, True, False]
  assert column(steps, "is_first") == [True, False, False, False, True]


# ---------------------------------------------------------------- vectorised

def rollout(env: envs.Env, actions: np.ndarray) -> list[dict]:
  return [env.reset()] + [env.step(a) for a in actions]


@pytest.mark.parametrize("parallel", [False, True], ids=["in_process", "subprocess"])
def test_batch_equals_single_envs_with_consecutive_seeds(parallel):
  # 12 steps cover two resets of the 5-step episodes, with seeded rewards.
  spec = ActionSpec("discrete", (3,))
  indices = np.random.default_rng(0).integers(0, 3, size=(12, 2, 1))
  actions = spec.from_indices(indices)
  with make_custom(ImageEnv, seed=7) as first, make_custom(ImageEnv, seed=8) as second:
    singles = [rollout(first, actions[:, :1]), rollout(second, actions[:, 1:])]
  with make_custom(ImageEnv, seed=7, num_envs=2, parallel=parallel) as env:
    assert env.num_envs == 2
    batch = rollout(env, actions)
  assert sum(s["is_first"][1] for s in batch) == 3
  for t, step in enumerate(batch):
    for key, value in step.items():
      np.testing.assert_array_equal(value[0], singles[0][t][key][0], err_msg=f"{key} at {t}")
      np.testing.assert_array_equal(value[1], singles[1][t][key][0], err_msg=f"{key} at {t}")


def test_subprocess_errors_are_reraised_with_the_worker_traceback():
  with make_custom(functools.partial(BadObsEnv, "nan", as_dict=True), num_envs=2,
                   parallel=True) as env:
    env.reset()
    env.step(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"'vector' at step 2") as info:
      env.step(np.zeros((2, 2), np.float32))
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "Traceback" in str(info.value.__cause__)
    with pytest.raises(RuntimeError, match="failed earlier"):
      env.step(np.zeros((2, 2), np.float32))


def test_parallel_refuses_unpicklable_factories():
  with pytest.raises(ValueError, match="cannot be pickled"):
    make_custom(lambda: ImageEnv(), parallel=True)


# ---------------------------------------------------------------- pixels, render

def test_pixels_render_resized_image_only():
  with make_custom(ImageEnv, pixels=True, image_size=(8, 6)) as env:
    assert env.obs_spec == {"image": ArraySpec((8, 6, 3), "uint8")}
    step = env.reset()
    assert set(step) == {"image", *STEP_KEYS}
    image = step["image"][0]
    assert image.shape == (8, 6, 3) and image.dtype == np.uint8
    level = image[0, 0, 0]
    assert (image[:4] == level).all() and (image[4:] == 0).all()
    assert env.render().shape == (1, 32, 24, 3)


def test_pixels_need_rgb_array_rendering():
  with pytest.raises(ValueError, match="render_mode='rgb_array'"):
    make_custom(functools.partial(ImageEnv, render_mode=None), pixels=True)


def test_resize_nearest():
  frame = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)
  np.testing.assert_array_equal(resize(frame, (2, 2))[..., 0], [[5, 7], [13, 15]])
  np.testing.assert_array_equal(resize(frame[:2, :2], (4, 4))[..., 0],
                                [[0, 0, 1, 1], [0, 0, 1, 1], [4, 4, 5, 5], [4, 4, 5, 5]])


# ---------------------------------------------------------------- real envs and ids

def test_gym_cartpole_and_pendulum_specs():
  with envs.make("gym:CartPole-v1") as env:
    assert env.obs_spec == {"obs": ArraySpec((4,), "float32")}
    assert env.act_spec == ActionSpec("discrete", (2,))
    assert run(env, 3)[-1]["obs"].shape == (1, 4)
  with envs.make("Pendulum-v1", num_envs=2) as env:  # bare ids work too
    assert env.obs_spec == {"obs": ArraySpec((3,), "float32")}
    assert env.act_spec == ActionSpec("continuous", (1,))
    assert run(env, 3)[-1]["reward"].shape == (2,)


def test_gym_mujoco_hopper_steps():
  with envs.make("gym:Hopper-v5", seed=1) as env:
    assert env.obs_spec == {"obs": ArraySpec((11,), "float32")}
    assert env.act_spec == ActionSpec("continuous", (3,))
    steps = run(env, 5)
  assert steps[-1]["obs"].dtype == np.float32 and np.isfinite(steps[-1]["obs"]).all()


def test_dmc_walker_specs_and_time_limit_truncation():
  with envs.make("dmc:walker-walk") as env:
    assert env.obs_spec == {"orientations": ArraySpec((14,), "float32"),
                            "height": ArraySpec((1,), "float32"),
                            "velocity": ArraySpec((9,), "float32")}
    assert sum(s.shape[0] for s in env.obs_spec.values()) == 24
    assert env.act_spec == ActionSpec("continuous", (6,))
    steps = run(env, 1001)
  assert [t for t, s in enumerate(steps) if s["is_last"][0]] == [1000]
  assert not any(s["is_terminal"][0] for s in steps)
  assert steps[1001]["is_first"][0] and steps[1001]["reward"][0] == 0


def test_dmc_action_repeat_halves_the_episode():
  with envs.make("dmc:walker-walk", action_repeat=2) as env:
    steps = run(env, 500)
  assert [t for t, s in enumerate(steps) if s["is_last"][0]] == [500]
  assert not steps[500]["is_terminal"][0]


def test_dmc_pixels():
  with envs.make("dmc:cartpole-balance", pixels=True, image_size=(32, 40)) as env:
    assert env.obs_spec == {"image": ArraySpec((32, 40, 3), "uint8")}
    steps = run(env, 1)
  assert steps[1]["image"].shape == (1, 32, 40, 3) and steps[1]["image"].std() > 0


def test_module_factory_ids():
  with envs.make(f"{__name__}:make_image_env") as env:
    assert env.act_spec == ActionSpec("discrete", (3,))
  with pytest.raises(ValueError, match=f"module '{__name__}' has no attribute 'make_imag_env'.*"
                     "did you mean make_image_env"):
    envs.make(f"{__name__}:make_imag_env")
  with pytest.raises(ValueError, match="module 'no_such_module_xyz' could not be imported"):
    envs.make("no_such_module_xyz:factory")


def test_unknown_ids_suggest_close_ones():
  with pytest.raises(ValueError, match=r"unknown environment 'gym:CartPol-v1'; did you mean gym:CartPole-v1"):
    envs.make("gym:CartPol-v1")
  with pytest.raises(ValueError, match="did you mean dmc:walker-walk"):
    envs.make("dmc:walker-walks")
  with pytest.raises(ValueError, match="no custom env 'nope' is registered"):
    envs.make("custom:nope")
  # gym:PACKAGE:ID imports the package; a missing one or an id it does not register is named.
  with pytest.raises(ValueError, match="package 'minigrd' could not be imported"):
    envs.make("gym:minigrd:MiniGrid-Empty-5x5-v0")
  with pytest.raises(ValueError, match="importing 'minigrid' registered no Gymnasium id "
                     "'MiniGrid-Empty-5x6-v0'; did you mean gym:minigrid:MiniGrid-Empty-6x6-v0"):
    envs.make("gym:minigrid:MiniGrid-Empty-5x6-v0")
  # Suggestions cross prefixes, JAX libraries' ids included (from the snapshot).
  with pytest.raises(ValueError, match="did you mean gym:Pendulum-v1, gymnax:Pendulum-v1"):
    envs.make("gym:Pendulm-v1")


def test_the_jax_id_snapshot_lists_what_the_installed_libraries_list():
  # Suggestions read the snapshot so that a typo is refused without importing
  # gymnax, navix, craftax or MuJoCo Playground (seconds); it must stay true.
  from wmrl.envs import jax_ids
  snapshot = json.loads(jax_ids.SNAPSHOT.read_text())
  assert set(snapshot) == set(jax_ids.PACKAGES) == set(jaxenvs.PREFIXES)
  for prefix in snapshot:
    assert snapshot[prefix] == jax_ids.live_ids(prefix), (
        f"{prefix}'s ids changed: python -m wmrl.envs.jax_ids rewrites the snapshot")


def test_an_id_is_checked_without_loading_jax():
  # What makes `wmrl train --env <typo>` answer in well under two seconds.
  code = ("import sys; from wmrl.envs.registry import check\n"
          "try: check('gym:Pendulm-v1')\n"
          "except ValueError as e: print(e)\n"
          "print('jax' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
  assert out.splitlines() == ["unknown environment 'gym:Pendulm-v1'; did you mean gym:Pendulum-v1, "
                              "gymnax:Pendulum-v1, gym:phys2d/Pendulum-v0?", "False"]


# ---------------------------------------------------------------- refused inputs

@pytest.mark.parametrize("space, words", [
    (spaces.MultiBinary(3), "MultiBinary"),
    (spaces.Dict({"move": spaces.Discrete(2), "fire": spaces.Discrete(2)}), "Dict action.*'fire', 'move'"),
    (spaces.Box(0, 3, (2,), np.int64), "float dtype"),
])
def test_unsupported_action_spaces(space, words):
  with pytest.raises(ValueError, match=words):
    make_custom(functools.partial(SpaceEnv, action_space=space))


def test_unsupported_observation_space_names_key_and_type():
  space = spaces.Dict({"ok": spaces.Discrete(2), "cards": spaces.Sequence(spaces.Discrete(3))})
  with pytest.raises(ValueError, match="observation 'cards' has unsupported space Sequence"):
    make_custom(functools.partial(SpaceEnv, observation_space=space))
  with pytest.raises(ValueError, match="clashes with a step key"):
    make_custom(functools.partial(SpaceEnv, observation_space=spaces.Dict({"reward": spaces.Discrete(2)})))


@pytest.mark.parametrize("problem, as_dict, words", [
    ("nan", True, r"'vector' at step 2 .*NaN"),
    ("nan", False, r"'obs' at step 2 .*NaN"),
    ("shape", False, r"'obs' at step 2 .*shape \(4,\).*declares shape \(3,\)"),
    ("dtype", True, r"'vector' at step 2 .*dtype float64.*dtype float32"),
])
def test_bad_observations_name_key_and_step(problem, as_dict, words):
  with make_custom(functools.partial(BadObsEnv, problem, as_dict=as_dict)) as env:
    env.reset()
    env.step(np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match=words):
      env.step(np.zeros((1, 2), np.float32))


def test_bad_reset_observation_is_step_0():
  with make_custom(functools.partial(BadObsEnv, "shape", at=0)) as env:
    with pytest.raises(ValueError, match="'obs' at step 0"):
      env.reset()


def test_bad_calls_and_arguments():
  with make_custom(CountEnv, num_envs=2) as env:
    with pytest.raises(RuntimeError, match="reset"):
      env.step(np.zeros((2, 2), np.float32))
    env.reset()
    with pytest.raises(ValueError, match=r"expected \(num_envs, act_spec.dim\) = \(2, 2\)"):
      env.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"env\(s\) \[1\]"):
      env.step(np.array([[0, 1], [np.nan, 0]], np.float32))
  with pytest.raises(ValueError, match="num_envs"):
    envs.make("gym:CartPole-v1", num_envs=0)
  with pytest.raises(ValueError, match="image_size"):
    envs.make("gym:CartPole-v1", image_size=(64,))
  with pytest.raises(TypeError, match="callable"):
    envs.register("x", "not a factory")


def test_headless_rendering_needs_no_display_or_sound_card(monkeypatch):
  """Catches the renderer's backends left to their defaults on a machine without a
  display: GLFW fails at the first MuJoCo render, and SDL (pygame, classic
  control's frames) prints ALSA and XDG_RUNTIME_DIR complaints. A user's own
  choice is kept."""
  from wmrl.envs.gl import default_headless_backend
  for name in ("DISPLAY", "WAYLAND_DISPLAY", "MUJOCO_GL", "SDL_VIDEODRIVER", "SDL_AUDIODRIVER"):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setattr("sys.platform", "linux")
  default_headless_backend()
  assert [os.environ[n] for n in ("MUJOCO_GL", "SDL_VIDEODRIVER", "SDL_AUDIODRIVER")] == [
      "egl", "dummy", "dummy"]
  monkeypatch.setenv("MUJOCO_GL", "osmesa")
  default_headless_backend()
  assert os.environ["MUJOCO_GL"] == "osmesa"


# ---------------------------------------------------------------- choosing observation keys

def test_text_keys_are_dropped_with_a_note_and_keys_chosen_by_pattern():
  with pytest.warns(DroppedKey, match="'mission' is text.*dropped"):
    with envs.make("fake_envs:make_small_grid") as env:
      assert env.obs_spec == {"direction": ArraySpec((4,), "float32"),
                              "image": ArraySpec((3, 3, 3), "uint8")}
      assert run(env, 1)[1]["image"].shape == (1, 3, 3, 3)
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # a pattern that leaves the text out: no note
    with envs.make("fake_envs:make_small_grid", obs_keys="image") as env:
      assert list(env.obs_spec) == ["image"]
      assert set(run(env, 1)[1]) == {"image", *STEP_KEYS}
  with pytest.raises(ValueError, match="obs_keys='imag' matches none of the observation keys "
                     "direction, image, mission"):
    envs.make("fake_envs:make_small_grid", obs_keys="imag")
  with pytest.raises(ValueError, match="env.obs_keys must be a regular expression"):
    envs.make("fake_envs:make_small_grid", obs_keys="(")
  with pytest.raises(ValueError, match="leaves only text observations"):
    envs.make("fake_envs:make_small_grid", obs_keys="mission")
  with pytest.raises(ValueError, match="gymnax:CartPole-v1 is a JAX environment"):
    envs.make("gymnax:CartPole-v1", obs_keys="obs")


def test_a_pattern_leaves_out_a_space_wmrl_cannot_read():
  env = gymnasium.make("CartPole-v1")
  env.observation_space = spaces.Dict({"obs": env.observation_space,
                                       "graph": spaces.Graph(spaces.Box(0, 1, (2,)), None)})
  with pytest.raises(ValueError, match="'graph' has unsupported space Graph.*--env.obs_keys"):
    ObservationConverter(env.observation_space, "t")
  convert = ObservationConverter(env.observation_space, "t", "obs")
  assert list(convert.spec) == ["obs"]
  assert convert({"obs": np.zeros(4, np.float32), "graph": None}, 0)["obs"].shape == (4,)


def test_dmc_keys_by_pattern():
  with envs.make("dmc:cartpole-balance", obs_keys="position") as env:
    assert env.obs_spec == {"position": ArraySpec((3,), "float32")}
    assert set(run(env, 1)[1]) == {"position", *STEP_KEYS}
