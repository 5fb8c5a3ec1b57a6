"""Checkpoint size on disk and save time at a given size (default size12m).

  python benchmarks/checkpoint_size.py [PRESET] [REPLAY_STEPS]

Saves three checkpoints of a state after one train step, with a replay of
REPLAY_STEPS (default 100k) DMC walker-walk proprio steps, and prints the
save time and `du` of the agent, the replay and the whole folder. Later
checkpoints hard-link the replay's full chunks, so they add little beyond
the agent.
"""
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import jax

from wmrl import bench, checkpoint
from wmrl.algorithms.dreamerv3 import agent
from wmrl.config import Config
from wmrl.presets import apply_presets
from wmrl.replay import Replay


def du_mib(path) -> str:
  return subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True).stdout.split()[0]


def main(preset: str = "size12m", replay_steps: int = 100_000) -> None:
  config = apply_presets(Config(), f"dmc_proprio,{preset}")
  obs, act = bench.task_spaces(config, None)
  state = agent.init(jax.random.key(0), obs, act, config)
  # The replay holds the policy latents a replay context stores with every step.
  entries = bench.entry_specs(agent.DREAMERV3, state) if config.run.replay_context else {}
  state, _, _ = agent.train_step(state, bench.random_batch(obs, act, 16, 65, entries=entries))
  jax.block_until_ready(state)  # time the save, not the step
  replay = Replay(config.run.replay_capacity, 1)
  chunk = bench.random_batch(obs, act, 1, replay_steps, entries=entries)
  for t in range(replay_steps):
    replay.add({k: v[:, t] for k, v in chunk.items()})
  root = pathlib.Path(tempfile.mkdtemp())
  try:
    for i in range(3):
      run = {"config": config.to_dict(), "counters": {"env_steps": replay_steps + i}}
      start = time.time()
      path = checkpoint.save(root, state, replay, run, {}, keep=3)
      seconds = time.time() - start
      print(f"{preset} checkpoint {i + 1}: saved in {seconds:.2f} s; "
            f"agent {du_mib(path / 'agent')} MiB, replay {du_mib(path / 'replay')} MiB "
            f"({replay_steps} steps); all checkpoints {du_mib(root)} MiB")
  finally:
    shutil.rmtree(root)


if __name__ == "__main__":
  main(*(sys.argv[1:2] or ["size12m"]), *(int(a) for a in sys.argv[2:3]))
