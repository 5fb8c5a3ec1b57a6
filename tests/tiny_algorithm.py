"""A second algorithm, small enough to read in one sitting: the proof that the
runtime sees algorithms only through their contract (wmrl/algorithms/contract.py).

"tiny" is model-based in the plainest way. Its world model is an MLP of one
hidden layer that predicts the next observation (as a change) and the next
reward from an observation and the action taken there, trained by Adam on
every transition of the replayed windows. Its policy is a linear map of the
observation and the previous action, trained to maximise the reward the
model predicts one step ahead (the model's parameters held fixed there).
Plain JAX and optax: it imports nothing of DreamerV3, wmrl.dynamics or the
networks built for DreamerV3.

It stores no replay entries: every step of a window is a real step it learns
from, so it ignores `run.replay_context` and writes nothing back.

Importing this module registers it as "tiny" (`--algorithm tiny`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wmrl import algorithms
from wmrl.algorithms.contract import Algorithm
from wmrl.spaces import ActionSpec, ArraySpec, STEP_KEYS

sg = jax.lax.stop_gradient


# --- settings: the algorithm's own groups, read as --model.units and so on --------------

@dataclasses.dataclass(frozen=True)
class TinyModelConfig:
  units: int = 32  # hidden units of the world model's one layer


@dataclasses.dataclass(frozen=True)
class TinyPolicyConfig:
  noise: float = 0.3  # std of the Gaussian added to continuous actions when training
  entropy: float = 1e-2  # bonus on the entropy of discrete policies


@dataclasses.dataclass(frozen=True)
class TinyOptimConfig:
  lr: float = 3e-3


@dataclasses.dataclass(frozen=True)
class TinyConfig:
  model: TinyModelConfig = TinyModelConfig()
  policy: TinyPolicyConfig = TinyPolicyConfig()
  optim: TinyOptimConfig = TinyOptimConfig()


def validate(config) -> None:
  """Refuses settings that cannot work (`config` is the whole Config), naming the field."""
  c = config.algorithm_config
  checks = [(c.model.units >= 1, f"model.units must be >= 1, got {c.model.units}"),
            (c.policy.noise >= 0, f"policy.noise must be >= 0, got {c.policy.noise}"),
            (c.policy.entropy >= 0, f"policy.entropy must be >= 0, got {c.policy.entropy}"),
            (c.optim.lr > 0, f"optim.lr must be positive, got {c.optim.lr}")]
  for ok, message in checks:
    if not ok:
      raise ValueError(message)


# --- state: a pytree whose static part is hashable, so the jitted functions read it ------

@dataclasses.dataclass(frozen=True)
class TinySpec:
  """What the compiled functions read besides arrays. No run settings (no seed),
  so the states of several seeds have one tree structure and stack."""

  settings: TinyConfig
  obs: tuple[tuple[str, ArraySpec], ...]  # sorted by key
  act: ActionSpec


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["params", "opt_state", "key", "step"], meta_fields=["spec"])
@dataclasses.dataclass(frozen=True)
class TinyState:
  params: dict  # {"model": {...}, "policy": {...}}
  opt_state: Any
  key: jax.Array  # typed; saved by checkpoints as its key data
  step: jax.Array  # updates done
  spec: TinySpec


def _optimizer(spec: TinySpec) -> optax.GradientTransformation:
  return optax.adam(spec.settings.optim.lr)


def _obs_dim(spec: TinySpec) -> int:
  return sum(int(np.prod(s.shape)) for _, s in spec.obs)


def init(key, obs_spec: dict[str, ArraySpec], act_spec: ActionSpec, config) -> TinyState:
  reserved = [k for k in obs_spec if k in STEP_KEYS or k == "action"]
  if reserved:
    raise ValueError(f"observation keys {reserved} are reserved for the step; rename them")
  spec = TinySpec(config.algorithm_config, tuple(sorted(obs_spec.items())), act_spec)
  obs, act, units = _obs_dim(spec), act_spec.dim, spec.settings.model.units
  key, k1, k2 = jax.random.split(key, 3)
  normal = lambda k, shape: jax.random.normal(k, shape) / np.sqrt(shape[0])
  params = {
      # Inputs (observation, action) -> hidden -> (change of observation, reward).
      "model": {"w1": normal(k1, (obs + act, units)), "b1": jnp.zeros(units),
                "w2": 0.1 * normal(k2, (units, obs + 1)), "b2": jnp.zeros(obs + 1)},
      # Inputs (observation, previous action) -> action (means, or logits of each block).
      "policy": {"w": jnp.zeros((obs + act, act)), "b": jnp.zeros(act)},
  }
  return TinyState(params, _optimizer(spec).init(params), key, jnp.zeros((), jnp.int32), spec)


def param_counts(state: TinyState) -> dict[str, int]:
  count = lambda tree: sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(tree))
  return {"model": count(state.params["model"]), "policy": count(state.params["policy"]),
          "total": count(state.params)}


# --- the networks ---------------------------------------------------------------------

def _features(spec: TinySpec, data: dict) -> jax.Array:
  """The observation keys flattened into one float vector [..., obs_dim]."""
  parts = []
  for key, s in spec.obs:
    x = jnp.asarray(data[key])
    x = x.astype(jnp.float32) / 255.0 if s.dtype == "uint8" else x.astype(jnp.float32)
    parts.append(x.reshape(x.shape[:x.ndim - len(s.shape)] + (-1,)))
  return jnp.concatenate(parts, -1)


def _predict(model: dict, obs, action):
  """The next observation and reward the model expects after `action` in `obs`."""
  hidden = jnp.tanh(jnp.concatenate([obs, action], -1) @ model["w1"] + model["b1"])
  out = hidden @ model["w2"] + model["b2"]
  return obs + out[..., :-1], out[..., -1]


def _blocks(spec: TinySpec, x):
  """`x` [..., dim] split into the action space's one-hot blocks."""
  return jnp.split(x, np.cumsum(spec.act.sizes)[:-1], -1)


def _policy(spec: TinySpec, policy: dict, obs, prev_action):
  """Continuous: the action's mean in [-1, 1]. Discrete: each block's probabilities.
  Either way a model-format vector [..., dim], and the entropy of discrete blocks."""
  out = jnp.concatenate([obs, prev_action], -1) @ policy["w"] + policy["b"]
  if not spec.act.discrete:
    return jnp.tanh(out), jnp.zeros(out.shape[:-1])
  logps = [jax.nn.log_softmax(block) for block in _blocks(spec, out)]
  entropy = sum(-(jnp.exp(lp) * lp).sum(-1) for lp in logps)
  return jnp.concatenate([jnp.exp(lp) for lp in logps], -1), entropy


# --- acting ---------------------------------------------------------------------------

def initial_carry(state: TinyState, num_envs: int) -> dict:
  return {"action": jnp.zeros((num_envs, state.spec.act.dim), jnp.float32)}


def record_action(carry: dict, action) -> dict:
  return {"action": jnp.asarray(action, jnp.float32)}


def replay_entries(state, carry: dict) -> dict:
  return {}  # nothing: windows of real steps are all tiny trains on


@functools.partial(jax.jit, static_argnames=("mode",))
def _policy_step(state: TinyState, obs: dict, carry: dict, key, mode: str):
  if mode not in ("train", "eval"):
    raise ValueError(f"policy_step mode must be 'train' or 'eval', got {mode!r}")
  spec = state.spec
  prev = jnp.where(obs["is_first"][:, None], 0.0, carry["action"])  # a new episode forgets it
  mean, _ = _policy(spec, state.params["policy"], _features(spec, obs), prev)
  if not spec.act.discrete:
    noise = spec.settings.policy.noise * jax.random.normal(key, mean.shape)
    action = mean if mode == "eval" else jnp.clip(mean + noise, -1.0, 1.0)
  else:
    keys = jax.random.split(key, len(spec.act.sizes))
    choose = ((lambda k, p: jnp.argmax(p, -1)) if mode == "eval"
              else (lambda k, p: jax.random.categorical(k, jnp.log(p + 1e-8))))
    action = jnp.concatenate([jax.nn.one_hot(choose(k, p), n) for k, p, n in
                              zip(keys, _blocks(spec, mean), spec.act.sizes)], -1)
  return action, {"action": action}


def policy_step(state: TinyState, obs: dict, carry: dict, key, mode: str = "train"):
  return _policy_step(state, obs, carry, key, mode)


# --- learning -------------------------------------------------------------------------

def _loss(params: dict, spec: TinySpec, batch: dict):
  obs = _features(spec, batch)  # [B, L, D]
  action = jnp.asarray(batch["action"], jnp.float32)  # stored with the step it was taken in
  reward = jnp.asarray(batch["reward"], jnp.float32)
  first = jnp.asarray(batch["is_first"])
  # Transitions t -> t + 1 inside the window, but not into the start of a new episode.
  valid = (~first[:, 1:]).astype(jnp.float32)
  next_obs, next_reward = _predict(params["model"], obs[:, :-1], action[:, :-1])
  weight = jnp.maximum(valid.sum(), 1.0)
  obs_loss = (((next_obs - obs[:, 1:]) ** 2).mean(-1) * valid).sum() / weight
  reward_loss = (((next_reward - reward[:, 1:]) ** 2) * valid).sum() / weight
  # The policy from step 1 on, where the window holds the previous action.
  prev = jnp.where(first[:, 1:, None], 0.0, action[:, :-1])
  chosen, entropy = _policy(spec, params["policy"], obs[:, 1:], prev)
  _, predicted = _predict(sg(params["model"]), obs[:, 1:], chosen)
  policy_loss = -(predicted + spec.settings.policy.entropy * entropy).mean()
  model_loss = obs_loss + reward_loss
  metrics = {"loss/model": model_loss, "loss/obs": obs_loss, "loss/reward": reward_loss,
             "loss/policy": policy_loss, "policy/predicted_reward": predicted.mean()}
  return model_loss + policy_loss, metrics


@functools.partial(jax.jit, donate_argnums=0)
def train_step(state: TinyState, batch: dict):
  """One Adam step on the whole window [B, context + T]: tiny needs no context."""
  grads, metrics = jax.grad(_loss, has_aux=True)(state.params, state.spec, batch)
  updates, opt_state = _optimizer(state.spec).update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics["opt/grad_norm"] = optax.tree.norm(grads)
  key, _ = jax.random.split(state.key)  # nothing random in an update yet; the key moves on
  new = TinyState(params, opt_state, key, state.step + 1, state.spec)
  return new, metrics, {}


def report(state: TinyState, batch: dict, key) -> dict:
  return {}  # no pictures to show


TINY = Algorithm(name="tiny", init=init, initial_carry=initial_carry, policy_step=policy_step,
                 record_action=record_action, replay_entries=replay_entries,
                 train_step=train_step, report=report, param_counts=param_counts)

algorithms.register("tiny", TINY, TinyConfig, validate)
