"""The reference's side of `benchmarks/loop_parity.py`: its own training loop
(`embodied.run.train`: driver, replay, train ratio, streams) with a stub agent.

    REFERENCE_PYTHON benchmarks/loop_parity_reference.py --reference-src DIR \\
        --out record.npz --envs 16 --batch-size 16 --batch-length 64 --ratio 32 --steps 20000

Runs in the reference's Python (its JAX, `elements`, `portal`); imports
nothing of wmrl. The environment (`Ticker`, also imported by the wmrl side)
ignores its actions: each step observes `tick` = (environment, time), so a
batch names exactly which steps it holds. The stub agent is the reference's
`JAXAgent` without networks: its stream prefetches one batch ahead in a
thread (`embodied.streams.Prefetch`, as `JAXAgent.stream`), its policy
stores the observed tick as its replay-context entry `dyn/latent` (the
reference stores the sequence model's entry after observing the step), and
its train step records the batch and returns, one update late as
`JAXAgent.train` does, replay updates that write (-(update + 1), time) over
the trained steps' entries. Each update also sleeps a little, as a real
update takes time, so the prefetch samples during it.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

EPISODE_LENGTHS = (10, 200)  # each episode's length, drawn uniformly from this range
ABANDONED = 0.25  # share of episodes that end without `is_last` (the next step starts one)


def episodes(seed: int, env: int, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Env `env`'s first `steps` steps: `is_first`, `is_last`, `is_terminal` [steps].

  Episodes of random length; an abandoned one's last step has no `is_last`
  (an episode cut without its end, which `_annotate_batch` marks); a kept
  one's last step is terminal half the time."""
  rng = np.random.default_rng([seed, env])
  first, last, terminal = (np.zeros(steps, bool) for _ in range(3))
  t = 0
  while t < steps:
    length = int(rng.integers(*EPISODE_LENGTHS))
    first[t] = True
    end = t + length - 1
    abandoned, ends_terminal = rng.random() < ABANDONED, rng.random() < 0.5
    if end < steps and not abandoned:
      last[end], terminal[end] = True, ends_terminal
    t = end + 1
  return first, last, terminal


class Ticker:
  """One environment of the harness: deterministic episodes (`episodes`),
  actions ignored, `tick` = (environment, time) observed."""

  def __init__(self, seed: int, env: int, steps: int):
    self.env = env
    self.first, self.last, self.terminal = episodes(seed, env, steps)
    self.time = 0

  def observe(self) -> dict:
    t = self.time
    self.time += 1
    return {"tick": np.array([self.env, t], np.float32), "reward": np.float32(0.0),
            "is_first": bool(self.first[t]), "is_last": bool(self.last[t]),
            "is_terminal": bool(self.terminal[t])}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument("--reference-src", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--envs", type=int, default=16)
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument("--batch-length", type=int, default=64)
  parser.add_argument("--context", type=int, default=1)
  parser.add_argument("--ratio", type=float, default=32.0)
  parser.add_argument("--steps", type=int, default=20_000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--update-seconds", type=float, default=0.002)
  args = parser.parse_args(argv)
  sys.path.insert(0, str(pathlib.Path(args.reference_src).resolve()))
  import elements
  import embodied
  from embodied.run.train import train

  B, T, K, N = args.batch_size, args.batch_length, args.context, args.envs
  horizon = args.steps // N + 2 * (B * T) // N + 1000  # more steps than the run takes
  step = elements.Counter()
  samples = []  # (env step when sampled, windows in replay then) per train batch

  class Env(embodied.Env):
    def __init__(self, index):
      self.ticker = Ticker(args.seed, index, horizon)

    @property
    def obs_space(self):
      return {"tick": elements.Space(np.float32, (2,)), "reward": elements.Space(np.float32),
              "is_first": elements.Space(bool), "is_last": elements.Space(bool),
              "is_terminal": elements.Space(bool)}

    @property
    def act_space(self):
      return {"action": elements.Space(np.int32, (), 0, 2), "reset": elements.Space(bool)}

    def step(self, action):
      return self.ticker.observe()

  class StubAgent:
    """`JAXAgent`'s loop-facing behaviour without networks (module doc)."""

    def __init__(self):
      self.records, self.pending = [], None

    def init_policy(self, batch_size):
      return ()

    def init_train(self, batch_size):
      return ()

    def init_report(self, batch_size):
      return ()

    def policy(self, carry, obs, mode="train"):
      acts = {"action": np.zeros(len(obs["is_first"]), np.int32)}
      return carry, acts, {"dyn/latent": obs["tick"].copy()}

    def stream(self, source):
      return embodied.streams.Prefetch(source)

    def train(self, carry, data):
      update = len(self.records)
      self.records.append({
          "train_step": int(step), "sample_step": samples[update][0],
          "sample_windows": samples[update][1], "tick": data["tick"].astype(np.int32),
          "is_first": data["is_first"], "is_last": data["is_last"],
          "latent": data["dyn/latent"].copy(), "consec": data["consec"]})
      written = data["tick"][:, K:].copy()
      written[..., 0] = -(update + 1)
      outs, self.pending = self.pending, {"replay": {"stepid": data["stepid"][:, K:],
                                                     "dyn/latent": written}}
      time.sleep(args.update_seconds)
      return carry, outs or {}, {}

    def report(self, carry, data):
      return carry, {}

    def save(self):
      return {}

    def load(self, data):
      pass

  agent = StubAgent()
  replay = embodied.replay.Replay(length=T + K, capacity=int(5e6), online=True, chunksize=1024)

  def make_stream(replay, mode):  # dreamerv3/main.py's make_stream, its sampling timed
    def sample():
      data = replay.sample(B, mode)  # waits for the first window to be stored
      if mode == "train":
        samples.append((int(step), len(replay)))
      return data
    stream = embodied.streams.Stateless(sample)
    return embodied.streams.Consec(stream, length=T, consec=1, prefix=K, strict=(mode == "train"),
                                   contiguous=True)

  config = elements.Config(
      logdir=str(pathlib.Path(args.out).parent / "reference-logdir"), batch_size=B,
      batch_length=T, train_ratio=args.ratio, log_every=0, report_every=0, save_every=0,
      envs=N, debug=True, steps=args.steps, from_checkpoint="", from_checkpoint_regex="",
      consec_report=1, report_batches=1,
      usage=dict(psutil=False, nvsmi=False, gputil=False, malloc=False, gc=False))
  class Silent:  # a logger output that keeps nothing
    def __call__(self, summaries):
      pass

  logger = elements.Logger(step, [Silent()])
  # Updates made by every environment step: the stub sees the step at each update.
  train(lambda: agent, lambda: replay, lambda index: Env(index), make_stream, lambda: logger,
        config)
  stack = lambda key: np.stack([r[key] for r in agent.records])
  np.savez_compressed(
      args.out, steps=int(step), envs=N, batch_size=B, batch_length=T, context=K, ratio=args.ratio,
      seed=args.seed, **{key: stack(key) for key in agent.records[0]})
  print(f"reference: {len(agent.records)} updates in {int(step)} steps -> {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
