"""`wmrl eval`: run a trained agent's eval policy for whole episodes."""
from __future__ import annotations

import argparse
import json
import sys

import jax
import numpy as np

from wmrl import algorithms, checkpoint, envs
from wmrl.algorithms.contract import Algorithm
from wmrl.draws import host_key
from wmrl.drivers.base import policy_inputs
from wmrl.video import shrink, write_video

# Eval videos' larger side, in pixels: Gymnasium's classic-control frames are
# 600x400 or 500x500, and a GIF's time to write grows with its pixels.
VIDEO_SIDE = 256


def _episode_line(episodes: int):
  def line(done: int, result: dict) -> None:
    print(f"episode {done}/{episodes}: score {result['score']:.4g}, {result['length']} steps",
          file=sys.stderr, flush=True)
  return line


def can_film(env) -> bool:
  return env.renders or any(spec.is_image for spec in env.obs_spec.values())


def run_episodes(algo: Algorithm, state, env, episodes: int, seed: int = 0,
                 film: int = 0, progress=None) -> tuple[list[dict], list[np.ndarray]]:
  """Runs `episodes` whole episodes of env 0 with the eval policy.

  Returns each episode's score and length, and the frames uint8 [T, H, W, 3]
  of the first `film` episodes: rendered where the environment renders
  rgb_array frames, else its (first) image observation. `progress(i, result)`
  is called after each episode.
  """
  if film and not can_film(env):
    raise ValueError("cannot record a video: the environment neither renders rgb_array frames "
                     "nor has an image observation")
  rng = np.random.default_rng(seed)
  step = env.reset()
  carry = algo.initial_carry(state, env.num_envs)
  score, length, results, videos, frames = 0.0, 0, [], [], []
  while len(results) < episodes:
    filming = len(results) < film
    if filming:
      frames.append(_frame(env, step))
    action, carry = algo.policy_step(state, policy_inputs(env.obs_spec, step), carry,
                                     host_key(rng), "eval")
    step = env.step(np.asarray(action))
    score += float(step["reward"][0])
    length += 1
    if step["is_last"][0]:
      results.append({"score": score, "length": length})
      if progress is not None:
        progress(len(results), results[-1])
      if filming:
        frames.append(_frame(env, step))
        videos.append(np.stack(frames))
      score, length, frames = 0.0, 0, []
      step = env.step(np.asarray(action))  # the reset step
  return results, videos


def _frame(env, step) -> np.ndarray:
  if env.renders:
    return np.asarray(env.render()[0])
  image = next(k for k, s in sorted(env.obs_spec.items()) if s.is_image)
  frame = step[image][0]
  return np.repeat(frame, 3, -1) if frame.shape[-1] == 1 else frame[..., :3]


def evaluate_logdir(logdir, episodes: int, name: str | None = None, video: str | None = None,
                    seed: int = 0, video_side: int = VIDEO_SIDE, progress: bool = False) -> dict:
  """Loads a checkpoint of `logdir` and evaluates it; returns the summary.

  With `video`, every episode is filmed into it, frames shrunk so that their
  larger side is at most `video_side` (0: as rendered); with `progress`, a
  line per episode and one before the video is written go to stderr.
  """
  if episodes < 1:
    raise ValueError(f"--episodes must be at least 1, got {episodes}")
  path = checkpoint.find(logdir, name)
  config = checkpoint.saved_config(path)
  algo = algorithms.get(config.algorithm)
  env = envs.from_config(config.env, seed=config.run.seed + 20_000 + seed, num_envs=1)
  try:
    template = jax.eval_shape(lambda k: algo.init(k, env.obs_spec, env.act_spec, config),
                              jax.random.key(0))
    state = checkpoint.load_agent(path, template)
    results, videos = run_episodes(algo, state, env, episodes, seed, film=episodes if video else 0,
                                   progress=_episode_line(episodes) if progress else None)
  finally:
    env.close()
  if video is not None:
    if video_side:
      videos = [shrink(v, video_side) for v in videos]
    if progress:
      frames = sum(len(v) for v in videos)
      height, width = videos[0].shape[1:3]
      print(f"writing {frames:,} frames of {height}x{width} to {video}", file=sys.stderr, flush=True)
    write_video(video, videos)
  scores = np.array([r["score"] for r in results])
  return {"checkpoint": path.name, "episodes": len(results), "score_mean": float(scores.mean()),
          "score_std": float(scores.std()),
          "length_mean": float(np.mean([r["length"] for r in results])),
          "scores": scores.tolist()}


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="wmrl eval", description="Evaluate a trained agent.")
  parser.add_argument("--logdir", required=True)
  parser.add_argument("--episodes", type=int, default=10)
  parser.add_argument("--checkpoint", help="checkpoint name (ckpt-...) or step; default: latest")
  parser.add_argument("--video", help="write the episodes to this .mp4 or .gif")
  parser.add_argument("--video-side", type=int, default=VIDEO_SIDE,
                      help=f"shrink video frames to this larger side in pixels (default "
                           f"{VIDEO_SIDE}; 0: as rendered)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if args.video_side < 0:
    parser.error(f"--video-side must be >= 0, got {args.video_side}")
  try:
    summary = evaluate_logdir(args.logdir, args.episodes, args.checkpoint, args.video, args.seed,
                              args.video_side, progress=True)
  except (ValueError, RuntimeError) as e:
    print(f"wmrl eval: error: {e}", file=sys.stderr)
    return 2
  if args.video:
    print(f"video: {args.video}")
  line = {k: summary[k] for k in ("episodes", "score_mean", "score_std", "length_mean")}
  line["checkpoint"] = summary["checkpoint"]
  print(json.dumps(line))
  return 0
