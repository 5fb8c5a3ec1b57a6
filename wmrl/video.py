"""Video frames to files: checked, shrunk, encoded as .mp4 (with imageio-ffmpeg) or .gif.

A leaf module (NumPy and imageio only) that evaluation, logging and reports share.
"""
from __future__ import annotations

import importlib.util
import math
import pathlib

import numpy as np


def check_frames(name: str, frames) -> np.ndarray:
  """uint8 frames [T, H, W, 1 or 3] as RGB [T, H, W, 3]; a clear error otherwise."""
  frames = np.asarray(frames)
  ok = frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] in (1, 3)
  if not ok or not len(frames):
    raise ValueError(f"video '{name}' must be uint8 frames [T, H, W, 3], got {frames.dtype} "
                     f"{frames.shape}; convert float frames in [0, 1] with "
                     "np.clip(x * 255, 0, 255).astype(np.uint8)")
  return np.repeat(frames, 3, -1) if frames.shape[-1] == 1 else frames


def shrink(frames: np.ndarray, side: int) -> np.ndarray:
  """Every n-th pixel, so the larger side is at most `side`."""
  stride = math.ceil(max(frames.shape[1:3]) / side)
  return frames[:, ::stride, ::stride] if stride > 1 else frames


def default_suffix() -> str:
  """.mp4 where imageio-ffmpeg is installed, else .gif."""
  return ".mp4" if importlib.util.find_spec("imageio_ffmpeg") else ".gif"


def gif_bytes(frames: np.ndarray, fps: int) -> bytes:
  import imageio.v3 as iio
  return iio.imwrite("<bytes>", frames, extension=".gif", duration=1000 / fps, loop=0)


def write_video(path: str | pathlib.Path, videos: list[np.ndarray], fps: int = 30) -> None:
  """Writes episodes one after another as .mp4 (needs imageio-ffmpeg) or .gif."""
  import imageio.v2 as imageio
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  shapes = {v.shape[1:] for v in videos}
  if len(shapes) > 1:
    raise ValueError(f"episodes have different frame sizes {shapes}")
  frames = np.concatenate(videos)
  if path.suffix == ".gif":
    imageio.mimsave(path, list(frames), duration=1000 / fps, loop=0)
  elif path.suffix == ".mp4":
    try:
      imageio.mimsave(path, list(frames), fps=fps, macro_block_size=1)
    except (ImportError, ValueError, RuntimeError) as e:
      raise RuntimeError(f"writing {path} needs imageio-ffmpeg (pip install 'wmrl[video]'), or "
                         f"write a .gif: {e}") from None
  else:
    raise ValueError(f"video path {path} must end in .mp4 or .gif")
