"""The DreamerV3 agent: `init`, `policy_step` and `train_step`.

All three are pure functions over an `AgentState` pytree; `policy_step` and
`train_step` are jit-compiled, and one train step is one XLA program: world
model, imagination and actor-critic in a single forward and backward pass.
Static facts (config, spaces, network graph definitions) travel in the
state's non-pytree fields, so they key the compile cache instead of being
traced.
"""
from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

from wmrl import behavior
from wmrl.behavior import Actor, Critic, ReturnNorm
from wmrl.config import Config
from wmrl.nets import count_params
from wmrl.optim import learning_rate, make_optimizer
from wmrl.rssm import Latent, features
from wmrl.spaces import ActionSpec, ArraySpec, STEP_KEYS
from wmrl.world_model import WorldModel, world_model_loss

sg = jax.lax.stop_gradient


@dataclasses.dataclass(frozen=True)
class AgentSpec:
  """What the jitted functions need besides arrays; hashable."""

  config: Config
  obs_spec: tuple[tuple[str, ArraySpec], ...]
  act_spec: ActionSpec
  graphs: tuple[Any, Any, Any]  # nnx graph definitions: world model, actor, critic


@struct.dataclass
class AgentState:
  params: dict  # {"wm": ..., "actor": ..., "critic": ...}
  slow_critic: dict  # an EMA of the critic's parameters
  opt_state: Any
  retnorm: ReturnNorm
  key: jax.Array
  step: jax.Array  # train updates done
  spec: AgentSpec = struct.field(pytree_node=False)


class PolicyCarry(NamedTuple):
  """What the policy remembers between environment steps."""

  latent: Latent
  action: jax.Array  # the previous action, model format


def _networks(obs_spec, act_spec: ActionSpec, config: Config, key):
  rngs = nnx.Rngs(params=key)
  wm = WorldModel(obs_spec, act_spec.dim, config.model, rngs=rngs)
  actor = Actor(wm.feat_dim, act_spec, config.model, rngs=rngs)
  critic = Critic(wm.feat_dim, config.model, rngs=rngs)
  return wm, actor, critic


def init(key, obs_spec: dict[str, ArraySpec], act_spec: ActionSpec, config: Config) -> AgentState:
  """Builds the networks and the optimiser state for the given spaces."""
  _check_spaces(obs_spec, act_spec)
  key, net_key = jax.random.split(key)
  graphs, params = [], {}
  for name, module in zip(("wm", "actor", "critic"), _networks(obs_spec, act_spec, config, net_key)):
    graph, state = nnx.split(module)
    graphs.append(graph)
    params[name] = nnx.to_pure_dict(state)
  spec = AgentSpec(config, tuple(sorted(obs_spec.items())), act_spec, tuple(graphs))
  return AgentState(
      params=params,
      slow_critic=jax.tree.map(jnp.copy, params["critic"]),
      opt_state=make_optimizer(config.optim).init(params),
      retnorm=ReturnNorm.init(),
      key=key,
      step=jnp.zeros((), jnp.int32),
      spec=spec)


def _check_spaces(obs_spec, act_spec):
  if not isinstance(act_spec, ActionSpec):
    raise TypeError(f"act_spec must be a wmrl.spaces.ActionSpec, got {type(act_spec).__name__}; "
                    "environments from wmrl.envs.make provide one as env.act_spec")
  if not obs_spec:
    raise ValueError("obs_spec is empty: the agent needs at least one observation key")
  for key, spec in obs_spec.items():
    if key in STEP_KEYS or key == "action":
      raise ValueError(f"observation key '{key}' is reserved; rename it in the environment")
    if not isinstance(spec, ArraySpec):
      raise TypeError(f"obs_spec['{key}'] must be an ArraySpec, got {type(spec).__name__}")


def modules(state: AgentState):
  """The live modules of a state: (world model, actor, critic)."""
  wm_graph, actor_graph, critic_graph = state.spec.graphs
  return (nnx.merge(wm_graph, state.params["wm"]), nnx.merge(actor_graph, state.params["actor"]),
          nnx.merge(critic_graph, state.params["critic"]))


def param_counts(state: AgentState) -> dict[str, int]:
  """Parameter counts by part, named as in the reference's report."""
  wm = state.params["wm"]
  return {"encoder": count_params(wm["encoder"]), "dynamics": count_params(wm["rssm"]),
          "decoder": count_params(wm["decoder"]), "reward": count_params(wm["reward"]),
          "continue": count_params(wm["cont"]), "actor": count_params(state.params["actor"]),
          "critic": count_params(state.params["critic"]),
          "total": count_params(state.params)}


# --- acting ---------------------------------------------------------------------

def initial_carry(state: AgentState, batch_size: int) -> PolicyCarry:
  c = state.spec.config.model.rssm
  return PolicyCarry(
      Latent(jnp.zeros((batch_size, c.deter), jnp.float32),
             jnp.zeros((batch_size, c.stoch, c.classes), jnp.float32)),
      jnp.zeros((batch_size, state.spec.act_spec.dim), jnp.float32))


def policy_inputs(state: AgentState, step: dict) -> dict:
  """What `policy_step` reads from an environment step: the observation keys
  and `is_first` (not the reward or the other flags)."""
  return {**{key: step[key] for key, _ in state.spec.obs_spec}, "is_first": step["is_first"]}


def host_key(rng: np.random.Generator) -> np.ndarray:
  """Raw uint32 key data drawn on the host: no device work per env step."""
  return rng.integers(0, 2**32, 2, dtype=np.uint32)


@partial(jax.jit, static_argnames=("mode",))
def policy_step(state: AgentState, obs: dict, carry: PolicyCarry, key, mode: str = "train"):
  """One action for each of N environments.

  `obs` holds the observation keys and `is_first` [N]; where `is_first`, the
  carry is reset. `mode` "train" samples, "eval" takes the mode. Returns the
  model-format action [N, dim] and the next carry.
  """
  wm, actor, _ = modules(state)
  obs_key, act_key = jax.random.split(key)
  embed = wm.encoder(obs)
  latent, _ = wm.rssm.obs_step(carry.latent, carry.action, embed, obs["is_first"], obs_key)
  policy = actor(features(latent))
  if mode == "train":
    action = policy.sample(act_key)
  elif mode == "eval":
    action = policy.mode()
  else:
    raise ValueError(f"policy_step mode must be 'train' or 'eval', got {mode!r}")
  if state.spec.act_spec.kind == "continuous":
    action = jnp.clip(action, -1.0, 1.0)
  action = sg(action)
  return action, PolicyCarry(latent, action)


# --- learning -------------------------------------------------------------------

def split_batch(batch: dict, context: int):
  """Splits replayed sequences [B, context + T] into the T training steps and
  the action taken before each of them."""
  data = {k: v[:, context:] for k, v in batch.items()}
  if context:
    prev_actions = batch["action"][:, context - 1:-1]
  else:
    action = batch["action"]
    prev_actions = jnp.concatenate([jnp.zeros_like(action[:, :1]), action[:, :-1]], 1)
  return data, prev_actions


def loss(params: dict, state: AgentState, data: dict, prev_actions, key):
  """The total loss of one train step and its parts.

  Stop-gradients make each term train only its own networks: imagination
  runs on frozen copies of the world model and actor, so the actor-critic
  losses never reach the world model, and the world-model losses never
  reach the actor or critic. The replay value loss alone reaches both the
  critic and, by the reference's choice (`behavior.repval_grad`), the
  world model's representations.
  """
  config = state.spec.config
  b = config.behavior
  wm_graph, actor_graph, critic_graph = state.spec.graphs
  wm = nnx.merge(wm_graph, params["wm"])
  critic = nnx.merge(critic_graph, params["critic"])
  actor = nnx.merge(actor_graph, params["actor"])
  slow_critic = nnx.merge(critic_graph, state.slow_critic)
  frozen_wm = nnx.merge(wm_graph, sg(params["wm"]))
  frozen_actor = nnx.merge(actor_graph, sg(params["actor"]))
  obs_key, img_key, last_key = jax.random.split(key, 3)

  batch_size, length = data["reward"].shape
  cont_scale = 1.0 - 1.0 / b.horizon if b.contdisc else 1.0
  start = wm.rssm.initial((batch_size,))
  losses, post, metrics = world_model_loss(
      wm, start, data, prev_actions, obs_key, config.model.rssm.free_nats, cont_scale)

  # Imagine from every replayed posterior state.
  starts = jax.tree.map(lambda x: sg(x).reshape(batch_size * length, *x.shape[2:]), post)
  policy = lambda latent, k: sg(frozen_actor(features(latent)).sample(k))
  imagined, actions = frozen_wm.rssm.imagine(starts, policy, b.imag_horizon, img_key)
  trajectory = jax.tree.map(lambda s, x: jnp.concatenate([s[:, None], x], 1), starts, imagined)
  feat = sg(features(trajectory))
  last_action = policy(jax.tree.map(lambda x: x[:, -1], trajectory), last_key)
  actions = jnp.concatenate([actions, last_action[:, None]], 1)
  reward = frozen_wm.predict_reward(feat)
  cont = frozen_wm.predict_cont(feat)
  ac_losses, returns, retnorm, ac_metrics = behavior.actor_critic_loss(
      actor, critic, slow_critic, feat, actions, reward, cont, state.retnorm, b)
  losses.update(ac_losses)
  metrics.update(ac_metrics)

  if b.repval_loss:
    rep_feat = features(post)
    rep_feat = rep_feat if b.repval_grad else sg(rep_feat)
    bootstrap = sg(returns[:, 0].reshape(batch_size, length))
    losses["repval"], repval_metrics = behavior.replay_value_loss(
        critic, slow_critic, rep_feat, data, bootstrap, b)
    metrics.update(repval_metrics)

  scales = dataclasses.asdict(config.loss_scales)
  means = {name: value.mean() for name, value in losses.items()}
  total = sum(scales[name] * value for name, value in means.items())
  metrics.update({f"loss/{name}": value for name, value in means.items()})
  return total, (metrics, retnorm)


@jax.jit
def train_step(state: AgentState, batch: dict):
  """One update of all networks from a replayed batch [B, context + T, ...]."""
  config = state.spec.config
  key, loss_key = jax.random.split(state.key)
  data, prev_actions = split_batch(batch, config.run.replay_context)
  grads, (metrics, retnorm) = jax.grad(loss, has_aux=True)(
      state.params, state, data, prev_actions, loss_key)
  optimizer = make_optimizer(config.optim)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  rate = config.behavior.slow_critic_rate
  slow_critic = jax.tree.map(lambda s, p: (1 - rate) * s + rate * p, state.slow_critic,
                             params["critic"])
  metrics["opt/grad_norm"] = optax.tree.norm(grads)
  metrics["opt/update_norm"] = optax.tree.norm(updates)
  metrics["opt/lr"] = learning_rate(config.optim)(state.step)
  new_state = state.replace(params=params, slow_critic=slow_critic, opt_state=opt_state,
                            retnorm=retnorm, key=key, step=state.step + 1)
  return new_state, metrics

