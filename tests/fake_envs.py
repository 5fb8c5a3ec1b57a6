"""Small deterministic environments for driver, checkpoint and CLI tests.

Importable as `fake_envs:make_counter` (tests/ is on sys.path in the tests
and in their subprocesses).
"""
import os
import signal

import gymnasium as gym
import numpy as np

EPISODE_LENGTH = 20


class Counter(gym.Env):
  """A point on a line; reward for staying near 0; fixed-length episodes.

  Deterministic for a given seed: every reset starts at the same place, so
  a restarted run sees the same episodes as an uninterrupted one.
  """

  def __init__(self, length: int = EPISODE_LENGTH, terminate: bool = False):
    self.observation_space = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
    self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    self.length = length
    self.terminate = terminate

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self.t = 0
    self.x = 1.0
    return self._obs(), {}

  def _obs(self):
    return np.array([self.x, self.t / self.length], np.float32)

  def step(self, action):
    self.t += 1
    self.x = float(np.clip(self.x + 0.5 * float(action[0]), -10, 10))
    reward = -abs(self.x)
    end = self.t >= self.length
    return self._obs(), reward, end and self.terminate, end and not self.terminate, {}


def make_counter():
  return Counter()


IMAGE_SIZE = 16


class ImageCounter(Counter):
  """Counter seen only as a 16x16 RGB picture, drawn with NumPy: a red column
  where the point is and a green row at the time step."""

  def __init__(self, length: int = EPISODE_LENGTH):
    super().__init__(length)
    self.observation_space = gym.spaces.Box(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)

  def _obs(self):
    image = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    column = int(round((self.x + 10) / 20 * (IMAGE_SIZE - 1)))  # x lies in [-10, 10]
    image[:, column, 0] = 255
    image[self.t % IMAGE_SIZE, :, 1] = 128
    return image


def make_image_counter():
  return ImageCounter()


class SmallGrid(Counter):
  """Counter as MiniGrid shows a world: a 3x3x3 symbolic grid (object ids, too
  small for a CNN of two stages or more), a Discrete heading, and a text
  mission no network reads."""

  def __init__(self, length: int = EPISODE_LENGTH):
    super().__init__(length)
    self.observation_space = gym.spaces.Dict({
        "image": gym.spaces.Box(0, 10, (3, 3, 3), np.uint8),
        "direction": gym.spaces.Discrete(4),
        "mission": gym.spaces.Text(40)})

  def _obs(self):
    grid = np.zeros((3, 3, 3), np.uint8)
    grid[1, int(np.clip(round(self.x / 5) + 1, 0, 2)), 0] = 10  # where the point is
    grid[self.t % 3, :, 1] = 1
    return {"image": grid, "direction": self.t % 4, "mission": "stay near the middle"}


def make_small_grid():
  return SmallGrid()


class SignalledCounter(Counter):
  """A Counter that sends its own process SIGTERM at its 70th step, as a scheduler would."""

  def step(self, action):
    self.sent = getattr(self, "sent", 0) + 1
    if self.sent == 70:
      os.kill(os.getpid(), signal.SIGTERM)
    return super().step(action)


def make_signalled_counter():
  return SignalledCounter()


class CrashingCounter(Counter):
  """Counter whose simulator fails on its 50th step where the run seeded it with 1
  (seed 1 of a run, env 0), as a physics engine that diverges raises."""

  def reset(self, *, seed=None, options=None):
    if seed is not None:
      self.seeded = seed
    return super().reset(seed=seed, options=options)

  def step(self, action):
    self.sent = getattr(self, "sent", 0) + 1
    if self.sent == 50 and getattr(self, "seeded", None) == 1:
      raise RuntimeError("simulation diverged (bad acceleration)")
    return super().step(action)


def make_crashing_counter():
  return CrashingCounter()


class VectorBandit(gym.Env):
  """A contextual bandit: each step a one-hot vector names which of two actions pays 1;
  10 steps an episode. Random play scores 5, the best 10: the shortest learning task."""

  LENGTH = 10

  def __init__(self):
    self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
    self.action_space = gym.spaces.Discrete(2)

  def _obs(self):
    return np.eye(2, dtype=np.float32)[self.paying]

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self.t = 0
    self.paying = int(self.np_random.integers(2))
    return self._obs(), {}

  def step(self, action):
    reward = float(int(action) == self.paying)
    self.t += 1
    self.paying = int(self.np_random.integers(2))
    return self._obs(), reward, False, self.t >= self.LENGTH, {}


def make_vector_bandit():
  return VectorBandit()
