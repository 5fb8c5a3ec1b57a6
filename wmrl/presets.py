"""Named presets: functions of a config, applied in order.

    config = apply_presets(Config(), "dmc_proprio,size1m")

Presets are joined one way everywhere (`wmrl train --preset`, `wmrl bench
--preset`, `experiments/run_suite.py --preset`, a suite's `presets`): names
separated by commas, each applied to the result of the one before, so a
later preset wins where two set the same field. The benchmark suites
(wmrl/suites.py) name these presets rather than copy their settings.

The sizes are the reference's (its configs.yaml, 2024 version); the default
config is `size200m`.
"""
from __future__ import annotations

from typing import Any, Callable

from wmrl.config import Config
from wmrl.names import did_you_mean

Preset = Callable[[Config], Config]


def _size(deter: int, hidden: int, classes: int, units: int, depth: int) -> Preset:
  """The reference's size presets set the same numbers in every module."""

  def apply(config: Config) -> Config:
    return config.replace(**{
        "model.rssm.deter": deter, "model.rssm.hidden": hidden, "model.rssm.classes": classes,
        "model.ssm.deter": deter, "model.ssm.hidden": hidden, "model.ssm.classes": classes,
        "model.ssm.units": deter // 8, "model.ssm.state": deter // 8,
        "model.encoder.units": units, "model.encoder.depth": depth,
        "model.decoder.units": units, "model.decoder.depth": depth,
        **{f"model.{head}.units": units for head in ("reward", "cont", "actor", "critic")}})

  return apply


def _overrides(**dotted: Any) -> Preset:
  return lambda config: config.replace(**dotted)


def _dmc(config, size: str, repeat: int, ratio: float, steps: int, pixels: bool = False,
         envs: int = 16):
  """A DeepMind Control recipe of the reference: a model size, its environments,
  action repeat, train ratio and run length, evaluated every 10k steps."""
  return PRESETS[size](config).replace(**{
      "env.action_repeat": repeat, "env.pixels": pixels, "env.num_envs": envs,
      "run.steps": steps, "run.train_ratio": ratio, "run.eval_every": 10_000,
      "run.eval_episodes": 10})


PRESETS: dict[str, Preset] = {
    # Model sizes: deter / hidden / classes / units / CNN depth.
    "size1m": _size(512, 64, 4, 64, 4),
    "size12m": _size(2048, 256, 16, 256, 16),
    "size25m": _size(3072, 384, 24, 384, 24),
    "size50m": _size(4096, 512, 32, 512, 32),
    "size100m": _size(6144, 768, 48, 768, 48),
    "size200m": _size(8192, 1024, 64, 1024, 64),
    "size400m": _size(12288, 1536, 96, 1536, 96),
    # Suites. `dmc_proprio` and `dmc_vision` are the recipe that made the published DMC
    # curves, the reference's configs.yaml at commit 2411f7d (April 2024, when the score
    # files were added): the 12m model, action repeat 2 (its env.dmc.repeat), train
    # ratio 512, with the 8 environments the published runs had where those configs
    # say 16 (run.num_envs). The score files settle it: in all 197 vision runs the
    # episodes end in groups of exactly 8, 2 frames apart, every 8,016 frames (8 x 501
    # transitions x repeat 2; first at 8,002-8,016), where 16 environments would end
    # their first at 16,002-16,032; the proprio file is binned, but its 10k point
    # allows at most 9 (docs/results.md). The runs end where the published curves
    # do: 250k agent steps from proprioception (500k frames; the curve ends at 490k)
    # and 500k from pixels (1M frames). The reference ran on (3e5 and 6e5 agent
    # steps), past any point there is to compare with.
    "dmc_proprio": lambda config: _dmc(config, "size12m", repeat=2, ratio=512, steps=250_000,
                                       envs=8),
    "dmc_vision": lambda config: _dmc(config, "size12m", repeat=2, ratio=512, steps=500_000,
                                      pixels=True, envs=8),
    # The reference's current configs.yaml (its HEAD): another recipe, with no published
    # curves to compare with. No action repeat (env.dmc.repeat 1), 16 environments,
    # 1.1e6 agent steps; from proprioception the 1m model at train ratio 1024, from
    # pixels the default size (200m) at ratio 256.
    "dmc_proprio_2025": lambda config: _dmc(config, "size1m", repeat=1, ratio=1024,
                                            steps=1_100_000),
    "dmc_vision_2025": lambda config: _dmc(config, "size200m", repeat=1, ratio=256,
                                           steps=1_100_000, pixels=True),
    # Gymnasium MuJoCo v5 (no published DreamerV3 curves): the v5 tasks skip
    # frames themselves (HalfCheetah 5, Hopper 4), so no action repeat on top.
    "gym_mujoco": _overrides(**{
        "env.action_repeat": 1, "run.steps": 1_000_000, "run.train_ratio": 512,
        "run.eval_every": 10_000, "run.eval_episodes": 10}),
    # Atari 100k through ALE v5 (gym:ale_py:ALE/Pong-v5), which skips 4 frames
    # itself. 100k agent steps (400k frames): the benchmark's budget, where the published
    # curves end (the reference's configs run on to 1.1e5).
    "atari100k": _overrides(**{
        "env.action_repeat": 1, "env.pixels": True, "env.image_size": (64, 64),
        "env.num_envs": 1, "run.steps": 100_000, "run.train_ratio": 256}),
    # Quick checks: a short batch and a low train ratio.
    "debug": _overrides(**{
        "run.batch_size": 8, "run.batch_length": 32, "run.train_ratio": 64,
        "optim.warmup": 0, "run.log_every": 500}),
}
# Learns classic-control tasks (CartPole-v1, Pendulum-v1) in minutes on a CPU,
# one set of settings for both: the 1m model on short batches (8 x 32) at train
# ratio 64, one environment, no warmup. CartPole ends when the cart leaves the
# track, hundreds of steps after the pole is balanced, so the critic must learn
# long returns (the default discount 1 - 1/333, values of 200 and more) from a few thousand
# updates: it trains at 1e-3 and the world model at 3e-4, while the actor, at
# 3e-5, follows without swinging, and a 10x entropy bonus (3e-3) keeps it
# exploring how to re-centre the cart.
PRESETS["classic"] = lambda config: PRESETS["size1m"](config).replace(**{
    "env.num_envs": 1, "run.batch_size": 8, "run.batch_length": 32, "run.train_ratio": 64,
    "optim.lr": 3e-4, "optim.critic_lr": 1e-3, "optim.actor_lr": 3e-5, "optim.warmup": 0,
    "behavior.entropy": 3e-3, "run.log_every": 500})

# A candidate for your own small environment, checked on six small tasks of different kinds
# (benchmarks/small_envs.py; docs/results.md): the 1m model on short batches (8 x 32) at train
# ratio 128, one environment, no warmup, every network at 3e-4 and the 0.99 discount (horizon
# 100). Not recommended yet: five of the six pass; the held-out one (catch) fails at its 6k
# budget and learns only after 11k steps.
PRESETS["small"] = lambda config: PRESETS["size1m"](config).replace(**{
    "env.num_envs": 1, "run.batch_size": 8, "run.batch_length": 32, "run.train_ratio": 128,
    "optim.lr": 3e-4, "optim.warmup": 0, "behavior.horizon": 100, "run.log_every": 500})

# Memory tasks (POPGym, docs/memory.md): the classic settings with the SSM world
# model on windows of 64 steps and its world model at 3e-3 (memory appears in
# a jump after thousands of updates, the later the slower the rate), without the
# replay value loss's gradient into the world model (`behavior.repval_grad`, the
# reference's True: with it no memory appeared on RepeatPreviousEasy in 4,000
# updates, without it in under 1,000). POPGym's rewards, +-1/(N - k) a step, also
# want `behavior.reward_scale` N - k, which depends on the task. The actor and
# critic read the SSM's latent and its layers' states, as R2I's POPGym settings do.
PRESETS["memory"] = lambda config: PRESETS["classic"](config).replace(**{
    "model.dynamics": "ssm", "run.batch_length": 64, "optim.lr": 3e-3,
    "behavior.repval_grad": False, "model.ssm.policy_inputs": ("stoch", "hidden")})


def register_preset(name: str, preset: Preset) -> None:
  if name in PRESETS:
    raise ValueError(f"preset '{name}' exists already")
  PRESETS[name] = preset


def split(names: str | list[str] | tuple[str, ...]) -> list[str]:
  """'a, b' or ['a', 'b'] -> ['a', 'b']: the one way presets are joined."""
  if isinstance(names, str):
    names = names.split(",")
  return [n.strip() for n in names if n.strip()]


def join(*parts: str) -> str:
  """Comma-joins preset strings, leaving out empty ones: join('a,b', '', 'c') -> 'a,b,c'."""
  return ",".join(name for part in parts for name in split(part))


def check(names: str | list[str] | tuple[str, ...]) -> list[str]:
  """The names, split; raises a ValueError naming the first unknown one and its close names."""
  names = split(names)
  for name in names:
    if name not in PRESETS:
      raise ValueError(f"unknown preset '{name}'{did_you_mean(name, PRESETS)} "
                       f"(known: {', '.join(PRESETS)})")
  return names


def apply_presets(config: Config, names: str | list[str] | tuple[str, ...]) -> Config:
  """Applies comma-separated or listed presets in order."""
  for name in check(names):
    config = PRESETS[name](config)
  return config
