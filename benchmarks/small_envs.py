"""Small environments for the recommended preset: does one preset learn six small tasks of
different kinds (pixels, a maze, a delayed reward, continuous control, MiniGrid and a held-out
vector task)?

  python benchmarks/small_envs.py random                 # each env's random score, remeasured
  python benchmarks/small_envs.py random --scripted      # the scripted policies' scores
  python benchmarks/small_envs.py run --logdir runs/small --preset small
  python benchmarks/small_envs.py table --logdir runs/small --out small_envs_classic

`run` trains every env with `wmrl train --run.seeds` (one logdir per env, LOGDIR/NAME/seed-K;
one seed's update at a time, `--run.seeds_batch 1`: on the 2-core CPU three image-bandit seeds
vmapped together made 0.5 updates/s, 1.5 seed updates/s in all, against 4.5 for one seed alone;
convolutions over stacked weights are that much slower there),
skipping an env whose seeds all hold a checkpoint at its budget; config flags after
the options go to `wmrl train` as they are (`... run --logdir D --preset P --run.train_ratio 32`).
`table` scores each seed by the mean return of its last 10 training episodes within the env's
budget and calls an env
PASS where the 95% bootstrap interval of the seed mean lies above random + 0.25 x (maximum -
random), writing benchmarks/results/NAME.csv (or the path `--out` names) and a Markdown table.

The envs resolve as `small_envs:make_*` ids from this folder: `run` starts `wmrl train` here,
and wmrl's command line puts the working directory on sys.path.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib
import pathlib
import subprocess
import sys

import gymnasium as gym
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
LAST_EPISODES = 10  # a seed's score: the mean return of its last this many training episodes
THRESHOLD_FRACTION = 0.25  # PASS: the interval's lower end above random + this x (max - random)


# ---------------------------------------------------------------------------------------------
# The environments


class ImageBandit(gym.Env):
  """A 20-step contextual bandit read from pixels: each step the lit half of a 16x16 image
  (left or right, drawn from the env's RNG) names the action that pays 1."""

  metadata = {"render_modes": []}
  LENGTH = 20

  def __init__(self):
    self.observation_space = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)
    self.action_space = gym.spaces.Discrete(2)
    self.paying = 0
    self.steps = 0

  def _obs(self):
    image = np.zeros((16, 16, 3), np.uint8)
    image[:, 8 * self.paying:8 * self.paying + 8] = 255
    return image

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self.steps = 0
    self.paying = int(self.np_random.integers(2))
    return self._obs(), {}

  def step(self, action):
    reward = float(int(action) == self.paying)
    self.steps += 1
    self.paying = int(self.np_random.integers(2))
    return self._obs(), reward, False, self.steps >= self.LENGTH, {}


# The maze of docs/environments.md ("Your own environment"), copied as it is there.
class Maze(gym.Env):
  """Walk to the goal on a 5x5 grid; observations are an image and a vector."""

  def __init__(self):
    self.observation_space = gym.spaces.Dict({
        "image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8),
        "position": gym.spaces.Box(0.0, 4.0, (2,), np.float32),
    })
    self.action_space = gym.spaces.Discrete(4)
    self.pos = np.zeros(2, np.int64)

  def _obs(self):
    image = np.zeros((16, 16, 3), np.uint8)
    image[12:16, 12:16, 1] = 255  # the goal
    y, x = self.pos * 3
    image[y:y + 4, x:x + 4, 0] = 255  # the agent
    return {"image": image, "position": self.pos.astype(np.float32)}

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self.pos = np.zeros(2, np.int64)
    self.steps = 0
    return self._obs(), {}

  def step(self, action):
    move = [(0, 1), (1, 0), (0, -1), (-1, 0)][int(action)]
    self.pos = np.clip(self.pos + move, 0, 4)
    self.steps += 1
    at_goal = bool((self.pos == 4).all())
    return self._obs(), float(at_goal), at_goal, self.steps >= 50, {}


class Chain(gym.Env):
  """A delayed reward: 12 states in a row, action 1 steps right, action 0 back to the start;
  1 on reaching the end (which terminates), nothing before. Eleven rights in a row are needed,
  which random play almost never does within the 30 steps."""

  metadata = {"render_modes": []}
  STATES = 12
  LENGTH = 30

  def __init__(self):
    self.observation_space = gym.spaces.Box(0.0, 1.0, (self.STATES,), np.float32)
    self.action_space = gym.spaces.Discrete(2)
    self.pos = 0
    self.steps = 0

  def _obs(self):
    return np.eye(self.STATES, dtype=np.float32)[self.pos]

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self.pos = self.steps = 0
    return self._obs(), {}

  def step(self, action):
    self.pos = self.pos + 1 if int(action) == 1 else 0
    self.steps += 1
    at_end = self.pos == self.STATES - 1
    return self._obs(), float(at_end), at_end, self.steps >= self.LENGTH and not at_end, {}


class PointReach(gym.Env):
  """A point mass in [-1, 1]^2, starting at rest at the origin, pushed by a force in
  [-1, 1]^2 towards a goal drawn at reset; reward -distance to the goal each step, 50 steps.

  Velocity decays by 0.9 a step and gains 0.02 x force, so full force tops out at 0.2 a step:
  crossing the arena takes about 15 steps and stopping on the goal needs braking. Walls stop the
  mass. Observation: position, velocity / 0.2 and goal, all in [-1, 1]."""

  metadata = {"render_modes": []}
  LENGTH = 50
  DECAY, GAIN = 0.9, 0.02
  TOP_SPEED = GAIN / (1 - DECAY)

  def __init__(self):
    self.observation_space = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)
    self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    self.pos, self.vel, self.goal = np.zeros(2), np.zeros(2), np.zeros(2)
    self.steps = 0

  def _obs(self):
    obs = np.concatenate([self.pos, self.vel / self.TOP_SPEED, self.goal])
    return np.clip(obs, -1.0, 1.0).astype(np.float32)  # float rounding at top speed

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self.pos, self.vel = np.zeros(2), np.zeros(2)
    self.goal = self.np_random.uniform(-1.0, 1.0, 2)
    self.steps = 0
    return self._obs(), {}

  def step(self, action):
    force = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
    self.vel = self.DECAY * self.vel + self.GAIN * force
    moved = self.pos + self.vel
    self.pos = np.clip(moved, -1.0, 1.0)
    self.vel[moved != self.pos] = 0.0  # a wall stops the mass
    self.steps += 1
    reward = -float(np.linalg.norm(self.pos - self.goal))
    return self._obs(), reward, False, self.steps >= self.LENGTH, {}


class Catch(gym.Env):
  """Catch five balls, one after another: each falls from a random column of the top row of an
  8-row, 5-column board, a row a step, and a paddle in the bottom row moves left, stays or
  moves right; +1 for a catch, -1 for a miss. Observation: the ball's cell one-hot over the
  40 cells, then the paddle's column one-hot over 5. 5 balls x 7 steps, then it terminates."""

  metadata = {"render_modes": []}
  ROWS, COLUMNS, BALLS = 8, 5, 5

  def __init__(self):
    self.observation_space = gym.spaces.Box(0.0, 1.0, (self.ROWS * self.COLUMNS + self.COLUMNS,),
                                            np.float32)
    self.action_space = gym.spaces.Discrete(3)
    self.ball = (0, 0)
    self.paddle = self.COLUMNS // 2
    self.balls = 0

  def _obs(self):
    obs = np.zeros(self.observation_space.shape, np.float32)
    obs[self.ball[0] * self.COLUMNS + self.ball[1]] = 1.0
    obs[self.ROWS * self.COLUMNS + self.paddle] = 1.0
    return obs

  def _new_ball(self):
    self.ball = (0, int(self.np_random.integers(self.COLUMNS)))

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self.paddle = self.COLUMNS // 2
    self.balls = 0
    self._new_ball()
    return self._obs(), {}

  def step(self, action):
    self.paddle = int(np.clip(self.paddle + int(action) - 1, 0, self.COLUMNS - 1))
    row, column = self.ball[0] + 1, self.ball[1]
    self.ball = (row, column)
    reward, done = 0.0, False
    if row == self.ROWS - 1:  # landed in the paddle's row
      reward = 1.0 if column == self.paddle else -1.0
      self.balls += 1
      done = self.balls == self.BALLS
      if not done:
        self._new_ball()
    return self._obs(), reward, done, False, {}


def make_image_bandit():
  return ImageBandit()


def make_maze():
  return Maze()


def make_chain():
  return Chain()


def make_point_reach():
  return PointReach()


def make_catch():
  return Catch()


# ---------------------------------------------------------------------------------------------
# Scripted policies: a good policy for each env shows the task can be done and the maximum is
# honest (tests/test_small_envs.py runs them).


def reach_controller(obs, gain: float = 16.0, damping: float = 32.0):
  """Pushes towards the goal and brakes by the velocity (a PD controller, clipped). The gains
  scored best of two grids (gain 1-16 x damping 0-16, then 4-32 x 12-48), the mean return over
  200 episodes (seed 0): -4.233, against -4.247 for (24, 48) and -4.449 for (8, 16): the
  optimum is flat here."""
  pos, vel, goal = obs[:2], obs[2:4] * PointReach.TOP_SPEED, obs[4:]
  return np.clip(gain * (goal - pos) - damping * vel, -1.0, 1.0).astype(np.float32)


def catch_follower(obs):
  ball = int(np.argmax(obs[:Catch.ROWS * Catch.COLUMNS])) % Catch.COLUMNS
  paddle = int(np.argmax(obs[Catch.ROWS * Catch.COLUMNS:]))
  return int(np.sign(ball - paddle)) + 1


SCRIPTED = {
    "image_bandit": lambda obs: int(obs[:, 8:].sum() > obs[:, :8].sum()),  # the lit half
    "maze": lambda obs: 1 if obs["position"][0] < 4 else 0,  # down the left side, then right
    "chain": lambda obs: 1,
    "point_reach": reach_controller,
    "catch": catch_follower,
}


# ---------------------------------------------------------------------------------------------
# The table


@dataclasses.dataclass(frozen=True)
class SmallEnv:
  name: str
  id: str  # a `wmrl train --env` id
  random: float  # a uniformly random policy's mean return (random_score, 200 episodes, seed 0)
  maximum: float  # the best mean return possible, or a realistic upper bound where said
  steps: int  # the environment steps each seed trains for (at most 20,000)
  held_out: bool = False  # written last; the preset is checked on it, never tuned on it


# Random scores: `python benchmarks/small_envs.py random` (random_score, 200 episodes, seed 0),
# to 3 significant digits; the maxima are exact (worked out in the comments) but point_reach's.
# The step budgets, set from seed 0 of the `small` preset: image_bandit at the 6,000 steps it ran
# (at the maximum from about 3,000), maze and chain at 4,000 (both at the maximum before 3,000),
# point_reach and minigrid at 6,000 (past the threshold by 4,000); catch's set before it ran.
ENVS = {env.name: env for env in (
    # The maximum: the paying action every step.
    SmallEnv("image_bandit", "small_envs:make_image_bandit", random=10.3, maximum=20.0,
             steps=6000),
    # The maximum: the goal pays 1 once (8 steps away at best).
    SmallEnv("maze", "small_envs:make_maze", random=0.305, maximum=1.0, steps=4000),
    # The maximum: the end pays 1 once (11 steps away at best).
    SmallEnv("chain", "small_envs:make_chain", random=0.01, maximum=1.0, steps=4000),
    # No closed form: reach_controller's mean return over 200 episodes (seed 0) is -4.233
    # (`python benchmarks/small_envs.py random --scripted`), rounded up; the best of the PD
    # gains tried and of a per-axis bang-bang controller (-4.77 at best).
    SmallEnv("point_reach", "small_envs:make_point_reach", random=-45.7, maximum=-4.2,
             steps=6000),
    # MiniGrid pays 1 - 0.9 x steps / max_steps on reaching the goal; Empty-5x5 has max_steps
    # 100 and a shortest path of 5 steps (forward, forward, turn right, forward, forward).
    SmallEnv("minigrid", "gym:minigrid:MiniGrid-Empty-5x5-v0", random=0.176, maximum=0.955,
             steps=6000),
    # The maximum: every ball caught (the paddle is at most 4 moves from any column, and each
    # ball falls for 7 steps).
    SmallEnv("catch", "small_envs:make_catch", random=-2.92, maximum=5.0, steps=6000,
             held_out=True),
)}


def make_env(env_id: str) -> gym.Env:
  """The env of a table id through plain Gymnasium: `gym:ID` by gymnasium.make (ID may be
  `package:id`, which imports the package first), `module:factory` by calling the factory."""
  prefix, _, rest = env_id.partition(":")
  if prefix == "gym":
    return gym.make(rest)
  return getattr(importlib.import_module(prefix), rest)()


def episode_returns(env_id: str, policy=None, episodes: int = 200, seed: int = 0) -> np.ndarray:
  """The returns of `episodes` episodes of `policy(obs) -> action` (None: uniformly random),
  the first reset seeded by `seed` and the rest continuing its RNG."""
  env = make_env(env_id)
  env.action_space.seed(seed)
  returns = np.zeros(episodes)
  try:
    for i in range(episodes):
      obs, _ = env.reset(seed=seed if i == 0 else None)
      done = False
      while not done:
        action = env.action_space.sample() if policy is None else policy(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        returns[i] += reward
        done = terminated or truncated
  finally:
    env.close()
  return returns


def random_score(env_id: str, episodes: int = 200, seed: int = 0) -> float:
  """The mean return of a uniformly random policy over `episodes` episodes."""
  return float(episode_returns(env_id, None, episodes, seed).mean())


def verdict(scores, random: float, maximum: float) -> dict:
  """One env's result from its seeds' scores: the mean, a 95% percentile-bootstrap interval
  of it (seeds resampled; with 3 seeds its lower end is the worst seed, as all three draws
  land on it more than 2.5% of the time), and PASS where that lower end is above the threshold
  random + 0.25 x (maximum - random)."""
  from wmrl.compare.plot import interval  # the interval `wmrl plot` draws
  scores = np.asarray(scores, np.float64)
  if not scores.size or not np.isfinite(scores).all():
    raise ValueError(f"verdict needs one finite score per seed, got {scores.tolist()}")
  if maximum <= random:
    raise ValueError(f"maximum {maximum} must be above the random score {random}")
  low, high = interval(scores)
  threshold = random + THRESHOLD_FRACTION * (maximum - random)
  mean = float(scores.mean())
  return {"seeds": int(scores.size), "mean": mean, "ci_low": low, "ci_high": high,
          "random": random, "maximum": maximum, "threshold": threshold,
          "normalized": (mean - random) / (maximum - random),
          "verdict": "PASS" if low > threshold else "FAIL"}


def seed_scores(logdir: pathlib.Path, budget: int) -> list[dict]:
  """Each seed run under `logdir`: its seed, agent steps, training episodes read and score, the
  score from the last episodes that ended within `budget` steps (a seed may train on)."""
  from wmrl import checkpoint
  from wmrl.compare.runs import find_runs, load_run
  seeds = []
  for path in find_runs([str(logdir)]):
    run = load_run(path, "episode/score")
    last = run.values[run.frames <= budget * run.frames_per_step][-LAST_EPISODES:]
    trained = max(checkpoint.steps(path), default=run.last_step)
    seeds.append({"seed": run.seed, "steps": trained, "episodes": len(last),
                  "score": float(last.mean()) if len(last) else float("nan")})
  return seeds


# ---------------------------------------------------------------------------------------------
# The command line


def _names(text: str) -> list[str]:
  names = [n for n in text.split(",") if n] if text else list(ENVS)
  unknown = [n for n in names if n not in ENVS]
  if unknown:
    raise SystemExit(f"unknown env(s) {', '.join(unknown)}; known: {', '.join(ENVS)}")
  return names


def random_main(args) -> int:
  kind = "scripted" if args.scripted else "random"
  print(f"| env | {kind} (measured, {args.episodes} episodes, seed {args.seed}) | "
        f"{'maximum' if args.scripted else 'random'} in ENVS |\n| --- | --- | --- |")
  for name in _names(args.envs):
    env = ENVS[name]
    if args.scripted and name not in SCRIPTED:
      continue
    returns = episode_returns(env.id, SCRIPTED[name] if args.scripted else None,
                              args.episodes, args.seed)
    print(f"| {name} | {returns.mean():.4g} (sd {returns.std():.3g}) | "
          f"{env.maximum if args.scripted else env.random:g} |", flush=True)
  return 0


def finished(logdir: pathlib.Path, seeds: list[int], steps: int) -> bool:
  """Whether every seed's folder holds a committed checkpoint at `steps` or later: what a
  finished `wmrl train --run.seeds` leaves (its last save is at the end)."""
  from wmrl import checkpoint
  return all(max(checkpoint.steps(logdir / f"seed-{s}"), default=-1) >= steps for s in seeds)


def run_main(args, extra: list[str]) -> int:
  seeds = [int(s) for s in args.seeds.split(",") if s]
  logdir = pathlib.Path(args.logdir).resolve()  # the training runs start in HERE
  failed = []
  for name in _names(args.envs):
    env = ENVS[name]
    target = logdir / name
    steps = args.steps or env.steps
    if finished(target, seeds, steps):
      print(f"{name}: skipped, {target} holds a finished run of {steps} steps for seeds "
            f"{args.seeds} (remove it to rerun)", flush=True)
      continue
    command = [sys.executable, "-m", "wmrl.cli", "train", "--env", env.id,
               "--logdir", str(target), "--preset", args.preset, "--steps", str(steps),
               "--run.seeds", ",".join(map(str, seeds)), "--run.seeds_batch", "1",
               *extra]
    print(f"{name}: {' '.join(command[1:])}", flush=True)
    if subprocess.run(command, cwd=HERE).returncode:
      failed.append(name)
  if failed:
    print(f"failed: {', '.join(failed)}", file=sys.stderr)
  return 1 if failed else 0


def output_path(out: str) -> pathlib.Path:
  """`--out`: a bare name is benchmarks/results/NAME.csv; anything with a '/' is a path."""
  path = pathlib.Path(out) if "/" in out else RESULTS / out
  return path if path.suffix == ".csv" else path.with_name(path.name + ".csv")


def table_rows(logdir: pathlib.Path, names: list[str]) -> list[dict]:
  rows = []
  for name in names:
    env = ENVS[name]
    row = {"env": name, "held_out": env.held_out, "id": env.id, "budget": env.steps}
    seeds = seed_scores(logdir / name, env.steps) if (logdir / name).is_dir() else []
    scores = [s["score"] for s in seeds if np.isfinite(s["score"])]
    if not scores:
      rows.append(row | {"seeds": 0, "random": env.random, "maximum": env.maximum,
                         "verdict": "NOT RUN" if not seeds else "NO EPISODES"})
      continue
    row |= {"steps": min(min(s["steps"] for s in seeds), env.steps),
            "episodes": min(s["episodes"] for s in seeds)}
    row |= verdict(scores, env.random, env.maximum)
    if row["steps"] < env.steps:  # a seed stopped short of the budget: no verdict yet
      row["verdict"] = f"UNFINISHED ({row['verdict']} so far)"
    row["scores"] = " ".join(f"{s['seed']}:{s['score']:.4g}" for s in seeds)
    rows.append(row)
  return rows


COLUMNS = ("env", "held_out", "id", "budget", "seeds", "steps", "episodes", "scores", "mean",
           "ci_low", "ci_high", "random", "maximum", "threshold", "normalized", "verdict")


def _cell(value) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return "" if value is None else str(value)


def table_main(args) -> int:
  logdir = pathlib.Path(args.logdir)
  if not logdir.is_dir():
    raise SystemExit(f"no logdir {logdir}; train with `python benchmarks/small_envs.py run "
                     f"--logdir {logdir} --preset PRESET` first")
  rows = table_rows(logdir, _names(args.envs))
  path = output_path(args.out)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows({k: _cell(row.get(k)) for k in COLUMNS} for row in rows)
  shown = [c for c in COLUMNS if c != "id"]
  print("| " + " | ".join(shown) + " |\n|" + " --- |" * len(shown))
  for row in rows:
    print("| " + " | ".join(_cell(row.get(c)) for c in shown) + " |")
  print(f"\nscore: the mean return of each seed's last {LAST_EPISODES} training episodes "
        f"within the env's step budget; "
        f"PASS: the 95% interval's lower end above random + {THRESHOLD_FRACTION} x (maximum - "
        f"random). Wrote {path}")
  return 0


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  commands = parser.add_subparsers(dest="command", required=True)
  p = commands.add_parser("random", help="measure each env's random (or scripted) score")
  p.add_argument("--episodes", type=int, default=200)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--envs", default="", help="names joined by commas (default: all)")
  p.add_argument("--scripted", action="store_true",
                 help="the scripted policies of SCRIPTED instead of random play")
  # No abbreviations: a `wmrl train` flag such as --seed must not be read as --seeds.
  p = commands.add_parser("run", allow_abbrev=False, help="train every env with `wmrl train` "
                          "(config flags go on to it as they are)")
  p.add_argument("--logdir", required=True)
  p.add_argument("--preset", required=True)
  p.add_argument("--steps", type=int, default=0,
                 help="environment steps for every env (default: each env's own budget)")
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--envs", default="", help="names joined by commas (default: all)")
  p = commands.add_parser("table", help="score the runs and write the table")
  p.add_argument("--logdir", required=True)
  p.add_argument("--out", required=True,
                 help="NAME writes benchmarks/results/NAME.csv; a value with '/' is a path")
  p.add_argument("--envs", default="", help="names joined by commas (default: all)")
  args, extra = parser.parse_known_args(argv)
  if extra and args.command != "run":
    parser.error(f"unrecognized arguments: {' '.join(extra)}")
  if args.command == "random":
    return random_main(args)
  if args.command == "run":
    return run_main(args, extra)
  return table_main(args)


if __name__ == "__main__":
  sys.exit(main())
