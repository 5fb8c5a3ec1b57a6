"""Choosing MuJoCo's OpenGL backend, and keeping SDL quiet, before dm_control or a
renderer (MuJoCo's, or pygame's for Gymnasium's classic control) loads."""
from __future__ import annotations

import os
import sys


def default_headless_backend() -> None:
  """Uses EGL when nothing was chosen and there is no display.

  Left alone, dm_control picks GLFW, which imports fine but fails at the first
  render without a display; EGL renders headless (Mesa's software EGL on a
  CPU machine, the GPU elsewhere). An explicit MUJOCO_GL always wins. This
  must run before dm_control is first imported: it reads MUJOCO_GL once.
  """
  headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
  if sys.platform.startswith("linux") and headless:
    os.environ.setdefault("MUJOCO_GL", "egl")
    # pygame (classic control's rgb_array frames) opens no window, but SDL still
    # looks for a sound card and a runtime folder and prints ALSA and
    # XDG_RUNTIME_DIR complaints: no audio and no video device are needed.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
  os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
