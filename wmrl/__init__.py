"""wmrl: DreamerV3 world-model reinforcement learning in JAX.

    import wmrl
    config = wmrl.make_config("gym:CartPole-v1", presets="size1m,debug", overrides={"run.steps": 20000})
    summary = wmrl.train(config, "runs/cartpole")
"""
from wmrl.config import Config
from wmrl.presets import apply_presets


def make_config(env: str | None = None, presets: str = "", overrides: dict | None = None) -> Config:
  """A config from presets (applied in order) and dotted-name overrides; the
  presets apply to the defaults of the algorithm `overrides` names."""
  overrides = dict(overrides or {})
  config = apply_presets(Config(overrides.pop("algorithm", Config.algorithm)), presets)
  if env is not None:
    config = config.replace(**{"env.id": env})
  return config.replace(**overrides)


def train(config: Config, logdir: str, console: bool = True) -> dict:
  """Trains as `config` says, writing to `logdir`; see `wmrl.run.train`."""
  from wmrl import run  # JAX and the agent load only for training
  return run.train(config, logdir, console=console)


__all__ = ["Config", "apply_presets", "make_config", "train"]
