"""Tiny configs, fake spaces and random batches: the one source for tests and benchmarks.

    config = testing.tiny_config(**{"run.batch_size": 4})
    obs_spec, act_spec = testing.SPACES["image-discrete"]
    batch = testing.random_batch(obs_spec, act_spec, batch_size=2, length=7,
                                 entries=testing.entry_specs(algo, state))

Data only: nothing here builds an agent.
"""
from __future__ import annotations

import numpy as np

from wmrl.algorithms.contract import entry_specs  # noqa: F401 (for tests and benchmarks)
from wmrl.config import Config
from wmrl.spaces import ActionSpec, ArraySpec, random_actions

# DMC walker-walk, proprioceptive: the reference's DMC proprio benchmark task.
WALKER_OBS = {"orientations": ArraySpec((14,), "float32"), "height": ArraySpec((1,), "float32"),
              "velocity": ArraySpec((9,), "float32")}
WALKER_ACT = ActionSpec("continuous", (6,))

# One of each kind of space the agent takes.
SPACES = {
    "vector-continuous": ({"obs": ArraySpec((5,), "float32")}, ActionSpec("continuous", (2,))),
    "image-discrete": ({"image": ArraySpec((16, 16, 3), "uint8")}, ActionSpec("discrete", (4,))),
    "dict-multidiscrete": ({"image": ArraySpec((16, 16, 1), "uint8"), "pos": ArraySpec((3,), "float32"),
                            "vel": ArraySpec((2,), "float32")}, ActionSpec("discrete", (3, 2))),
}

# A DreamerV3 small enough for unit tests on a CPU: each network a layer or
# two of 16 units, batches of 2 x 6 steps.
TINY = {
    "model.rssm.deter": 32, "model.rssm.hidden": 16, "model.rssm.stoch": 4,
    "model.rssm.classes": 4, "model.rssm.blocks": 2,
    "model.ssm.deter": 32, "model.ssm.units": 16, "model.ssm.state": 8, "model.ssm.hidden": 16,
    "model.ssm.stoch": 4, "model.ssm.classes": 4,
    "model.encoder.units": 16, "model.encoder.layers": 1, "model.encoder.depth": 2,
    "model.encoder.mults": (1, 2), "model.decoder.units": 16, "model.decoder.layers": 1,
    "model.decoder.depth": 2, "model.decoder.mults": (1, 2), "model.decoder.bspace": 2,
    "model.reward.units": 16, "model.cont.units": 16, "model.actor.units": 16,
    "model.actor.layers": 1, "model.critic.units": 16, "model.critic.layers": 1,
    "behavior.imag_horizon": 3, "run.batch_size": 2, "run.batch_length": 6, "env.num_envs": 1,
    # A run's closing evaluation costs its episodes; the tests that check it ask for it.
    "run.eval_at_end": False,
}


def tiny_config(**overrides) -> Config:
  """The `TINY` settings on the reference defaults, then `overrides` (dotted names)."""
  return Config().replace(**TINY).replace(**overrides)


def tiny_flags() -> list[str]:
  """`TINY` as command-line flags for `wmrl train`."""
  flags = []
  for name, value in TINY.items():
    flags += [f"--{name}", ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
  return flags


def random_obs(rng: np.random.Generator, obs_spec, lead: tuple[int, ...]) -> dict:
  """Random observations of `obs_spec` with leading shape `lead`."""
  obs = {}
  for key, spec in obs_spec.items():
    shape = (*lead, *spec.shape)
    if spec.dtype == "uint8":
      obs[key] = rng.integers(0, 256, shape, dtype=np.uint8)
    else:
      obs[key] = rng.normal(size=shape).astype(spec.dtype)
  return obs


def random_batch(obs_spec, act_spec: ActionSpec, batch_size: int, length: int, seed: int = 0,
                 entries: dict | None = None):
  """A replay-shaped batch [batch_size, length] of random observations and valid
  actions, each sequence starting an episode; with `entries` ({name: shape and
  dtype of one step}, see `entry_specs`) also random replay entries."""
  rng = np.random.default_rng(seed)
  batch = random_obs(rng, obs_spec, (batch_size, length))
  actions = random_actions(rng, act_spec, batch_size * length)
  batch["action"] = actions.reshape(batch_size, length, act_spec.dim)
  batch["reward"] = rng.normal(size=(batch_size, length)).astype(np.float32)
  batch["is_first"] = np.zeros((batch_size, length), bool)
  batch["is_first"][:, 0] = True
  batch["is_last"] = np.zeros((batch_size, length), bool)
  batch["is_terminal"] = np.zeros((batch_size, length), bool)
  for name, spec in (entries or {}).items():
    batch[name] = rng.normal(size=(batch_size, length, *spec.shape)).astype(spec.dtype)
  return batch


def policy_obs(obs_spec, num_envs: int, seed: int = 0) -> dict:
  """One environment step's policy inputs for `num_envs` environments, mid-episode."""
  obs = random_obs(np.random.default_rng(seed), obs_spec, (num_envs,))
  obs["is_first"] = np.zeros(num_envs, bool)
  return obs
