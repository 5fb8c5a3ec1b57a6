"""DreamerV3 as an algorithm (wmrl/algorithms/contract.py): its state, `init`, `policy_step`,
`train_step` and `report`, bundled as `DREAMERV3`.

All are pure functions over an `AgentState` pytree; `policy_step` and
`train_step` are jit-compiled, and one train step is one XLA program: world
model, imagination and actor-critic in a single forward and backward pass.
What the compiled code reads besides arrays (model, behaviour, optimiser and
loss settings, spaces, network graph definitions) is the state's static
`AgentSpec`; it holds no run settings, so states that differ only in seed
have the same tree structure and stack for `jax.vmap`.
"""
from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from wmrl.algorithms.contract import Algorithm
from wmrl.algorithms.dreamerv3 import behavior, report as reports
from wmrl.algorithms.dreamerv3.behavior import Actor, Critic, ReturnNorm
from wmrl.algorithms.dreamerv3.config import (BehaviorConfig, LossScales, ModelConfig,
                                              OptimConfig)
from wmrl.algorithms.dreamerv3.world_model import WorldModel, world_model_loss
from wmrl.config import Config
from wmrl.nets import count_params
from wmrl.optim import learning_rate, make_optimizer
from wmrl.spaces import ActionSpec, ArraySpec, STEP_KEYS
from wmrl.trees import arrays_tree, tree_named

sg = jax.lax.stop_gradient

# Replay stores the dynamics carry under latent/<its tree path> (latent/deter,
# latent/stoch for the RSSM), so nothing outside the sequence model reads its fields.
LATENT = "latent"


@dataclasses.dataclass(frozen=True)
class AgentSpec:
  """What the jitted functions read besides arrays; hashable."""

  model: ModelConfig
  behavior: BehaviorConfig
  optim: OptimConfig
  loss_scales: LossScales
  context: int  # replayed steps before each training window (run.replay_context)
  obs_spec: tuple[tuple[str, ArraySpec], ...]
  act_spec: ActionSpec
  graphs: tuple[Any, Any, Any]  # nnx graph definitions: world model, actor, critic
  # Whether train steps return each trained step's replay priority (config.replay:
  # windows drawn by priority, with the "model" signal).
  priority: bool = False


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

  latent: Any  # the dynamics model's carry
  action: jax.Array  # the previous action, model format


def init(key, obs_spec: dict[str, ArraySpec], act_spec: ActionSpec, config: Config) -> AgentState:
  """Builds the networks and the optimiser state for the given spaces."""
  _check_spaces(obs_spec, act_spec)
  key, net_key = jax.random.split(key)
  rngs = nnx.Rngs(params=net_key)
  wm = WorldModel(obs_spec, act_spec.dim, config.model, rngs=rngs)
  actor = Actor(wm.dynamics.policy_feat_dim, act_spec, config.model, rngs=rngs)
  critic = Critic(wm.dynamics.policy_feat_dim, config.model, rngs=rngs)
  graphs, params = [], {}
  for name, module in (("wm", wm), ("actor", actor), ("critic", critic)):
    graph, state = nnx.split(module)
    graphs.append(graph)
    params[name] = nnx.to_pure_dict(state)
  replay = config.replay
  spec = AgentSpec(config.model, config.behavior, config.optim, config.loss_scales,
                   config.run.replay_context, tuple(sorted(obs_spec.items())), act_spec,
                   tuple(graphs), replay.fracs.priority > 0 and replay.priosignal == "model")
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
    if key in STEP_KEYS or key == "action" or key.startswith(LATENT + "/"):
      raise ValueError(f"observation key '{key}' is reserved (as are step keys, 'action' and "
                       f"the replayed latents '{LATENT}/...'); rename it in the environment")
    if not isinstance(spec, ArraySpec):
      raise TypeError(f"obs_spec['{key}'] must be an ArraySpec, got {type(spec).__name__}")


def modules(spec: AgentSpec, params: dict):
  """The live modules of some parameters: (world model, actor, critic)."""
  wm_graph, actor_graph, critic_graph = spec.graphs
  return (nnx.merge(wm_graph, params["wm"]), nnx.merge(actor_graph, params["actor"]),
          nnx.merge(critic_graph, params["critic"]))


def param_counts(state: AgentState) -> dict[str, int]:
  """Parameter counts by part, named as in the reference's report."""
  wm = state.params["wm"]
  return {"encoder": count_params(wm["encoder"]), "dynamics": count_params(wm["dynamics"]),
          "decoder": count_params(wm["decoder"]), "reward": count_params(wm["reward"]),
          "continue": count_params(wm["cont"]), "actor": count_params(state.params["actor"]),
          "critic": count_params(state.params["critic"]),
          "total": count_params(state.params)}


# --- acting ---------------------------------------------------------------------

def initial_carry(state: AgentState, num_envs: int) -> PolicyCarry:
  wm, _, _ = modules(state.spec, state.params)
  return PolicyCarry(wm.dynamics.initial((num_envs,)),
                     jnp.zeros((num_envs, state.spec.act_spec.dim), jnp.float32))


def record_action(carry: PolicyCarry, action) -> PolicyCarry:
  return carry._replace(action=jnp.asarray(action, jnp.float32))


def replay_entries(state: AgentState, carry: PolicyCarry) -> dict[str, jax.Array]:
  """What replay keeps with a step besides the step itself: the sequence model's
  entries for the carry after the policy observed it (the RSSM's: the whole
  latent, the reference's `dyn_entry`), by tree path under `latent/`. Training
  windows start from the ones of their last context step."""
  wm_graph = state.spec.graphs[0]
  dynamics = nnx.merge(wm_graph, state.params["wm"]).dynamics
  return tree_named(dynamics.entries(carry.latent), LATENT)


def policy_step(state: AgentState, obs: dict, carry: PolicyCarry, key, mode: str = "train"):
  """One action for each of N environments.

  `obs` holds the observation keys and `is_first` [N]; where `is_first`, the
  carry is reset. `mode` "train" samples, "eval" takes the mode. Returns the
  model-format action [N, dim] and the next carry. Only the world model's and
  the actor's parameters cross the jit boundary.
  """
  params = PolicyParams(state.params["wm"], state.params["actor"], state.spec)
  return _policy_step(params, obs, carry, key, mode)


@struct.dataclass
class PolicyParams:
  """What the policy reads: the world model's and the actor's parameters."""

  wm: dict
  actor: dict
  spec: AgentSpec = struct.field(pytree_node=False)


@partial(jax.jit, static_argnames=("mode",))
def _policy_step(params: PolicyParams, obs, carry: PolicyCarry, key, mode):
  if mode not in ("train", "eval"):
    raise ValueError(f"policy_step mode must be 'train' or 'eval', got {mode!r}")
  spec = params.spec
  wm_graph, actor_graph, _ = spec.graphs
  wm, actor = nnx.merge(wm_graph, params.wm), nnx.merge(actor_graph, params.actor)
  obs_key, act_key = jax.random.split(key)
  latent = wm.dynamics.obs_step(carry.latent, carry.action, wm.encoder(obs), obs["is_first"],
                                obs_key)
  policy = actor(wm.dynamics.policy_features(latent))
  action = policy.sample(act_key) if mode == "train" else policy.mode()
  if spec.act_spec.kind == "continuous":
    action = jnp.clip(action, -1.0, 1.0)
  action = sg(action)
  return action, PolicyCarry(latent, action)


# --- learning -------------------------------------------------------------------

def split_batch(batch: dict, context: int):
  """Splits replayed sequences [B, context + T] into the T training steps and
  the action taken before each of them.

  A step followed by an episode start inside the window is marked `is_last`,
  so an episode abandoned without one (the reference's `_annotate_batch`)
  ends there for the returns; on windows of well-formed episodes this changes
  nothing.
  """
  first = jnp.asarray(batch["is_first"])
  next_first = jnp.concatenate([first[:, 1:], jnp.zeros_like(first[:, :1])], 1)
  batch = {**batch, "is_last": jnp.asarray(batch["is_last"]) | next_first}
  data = {k: v[:, context:] for k, v in batch.items()}
  if context:
    prev_actions = batch["action"][:, context - 1:-1]
  else:
    action = batch["action"]
    prev_actions = jnp.concatenate([jnp.zeros_like(action[:, :1]), action[:, :-1]], 1)
  return data, prev_actions


def start_latent(dynamics, batch: dict, context: int):
  """The dynamics carry [B] a replayed window's training steps start from.

  With a replay context it is the carry of the entries the policy stored with
  the last context step (the reference's `RSSM.truncate`), so training
  continues the policy's belief; without one the initial carry, as if each
  window began an episode. Checked at trace time: the batch must hold the
  entries.
  """
  initial = dynamics.initial(batch["is_first"].shape[:1])
  if not context:
    return initial
  template = dynamics.entries(initial)
  names = tree_named(template, LATENT)
  missing = [n for n in names if n not in batch]
  if missing:
    raise ValueError(
        f"the batch has no {', '.join(missing)}: with run.replay_context={context} training "
        "starts from the latents the policy stored with each step. Store "
        "algo.replay_entries(state, carry) with every step (the Driver does), build test batches with "
        "wmrl.testing.random_batch(..., entries=wmrl.testing.entry_specs(algo, state)), or set "
        "run.replay_context 0")
  for name, leaf in names.items():
    if tuple(batch[name].shape[2:]) != tuple(leaf.shape[1:]):
      raise ValueError(f"the batch's {name} has step shape {tuple(batch[name].shape[2:])}, the "
                       f"model's latent {tuple(leaf.shape[1:])}; the replay was filled by "
                       "another model")
  stored = {n: jnp.asarray(batch[n][:, context - 1], leaf.dtype) for n, leaf in names.items()}
  return dynamics.truncate(arrays_tree(template, stored, LATENT))


def learner_rewards(data: dict, behavior: BehaviorConfig) -> dict:
  """`data` with the rewards the learner trains on: the environment's times
  `behavior.reward_scale`."""
  if behavior.reward_scale == 1.0:
    return data
  return {**data, "reward": data["reward"] * behavior.reward_scale}


def loss(params: dict, state: AgentState, data: dict, prev_actions, key, start=None):
  """The total loss of one train step, in four stages, its metrics, the
  posteriors of the replayed steps and, where `spec.priority`, their replay
  priorities [B, T] (else None).

  `start` is the dynamics carry [B] before the first step (default: the
  initial carry).

  Stop-gradients make each term train only its own networks: imagination
  runs on frozen copies of the world model and actor from stopped starts,
  so the actor-critic losses never reach the world model, and the
  world-model losses never reach the actor or critic. The replay value loss
  alone reaches both the critic and, by the reference's choice
  (`behavior.repval_grad`), the world model's representations.
  """
  spec, b = state.spec, state.spec.behavior
  wm, actor, critic = modules(spec, params)
  frozen_wm, frozen_actor, _ = modules(spec, sg(params))
  slow_critic = nnx.merge(spec.graphs[2], state.slow_critic)
  # One key per random use, in the order the earlier versions drew them, so
  # fixed-seed runs (the learning tests) reproduce their figures exactly.
  wm_key, rollout_key, last_key = jax.random.split(key, 3)
  batch_size, length = data["reward"].shape
  data = learner_rewards(data, spec.behavior)

  # 1. World model: posterior over the replayed steps, reconstruction, reward, continue, KL.
  if start is None:
    start = wm.dynamics.initial((batch_size,))
  wm_losses, post, wm_metrics = world_model_loss(wm, start, data, prev_actions, wm_key,
                                                 b.cont_target)
  # 2. Imagination from every replayed posterior state.
  _, trajectory, imag_metrics = behavior.imagine(frozen_wm, frozen_actor,
                                                 frozen_wm.dynamics.starts(post), b.imag_horizon,
                                                 rollout_key, last_key)
  # 3. Actor and critic on the imagined trajectories.
  ac_losses, ac_out, ac_metrics = behavior.actor_critic_loss(
      actor, critic, slow_critic, trajectory, state.retnorm, b)
  losses = {**wm_losses, **{k: v.reshape(batch_size, length) for k, v in ac_losses.items()}}
  # 4. The critic on the replayed steps, bootstrapped from the imagined returns.
  replay_metrics = {}
  if b.repval_loss:
    feat = wm.dynamics.policy_features(post)
    bootstrap = sg(ac_out["ret"][:, 0].reshape(batch_size, length))
    replay_losses, _, replay_metrics = behavior.replay_value_loss(
        critic, slow_critic, feat if b.repval_grad else sg(feat), data, bootstrap, b)
    losses.update(replay_losses)

  declared = (*wm.loss_names, *behavior.ACTOR_CRITIC_LOSSES,
              *(behavior.REPLAY_VALUE_LOSSES if b.repval_loss else ()))
  means = check_losses(losses, declared, spec.loss_scales, batch_size, length)
  scales = dataclasses.asdict(spec.loss_scales)
  total = sum(scales[name] * value for name, value in means.items())
  metrics = {**_prefixed("wm", wm_metrics), **_prefixed("ac", {**imag_metrics, **ac_metrics}),
             **_prefixed("replay", replay_metrics), **_prefixed("loss", means)}
  return total, (metrics, ac_out["retnorm"], post, replay_priority(wm_losses) if spec.priority
                 else None)


def replay_priority(wm_losses: dict) -> jax.Array:
  """Each replayed step's priority [B, T]: the sum of its sequence-model and
  decoder losses, unscaled (the reference's `priosignal: model`: the rep, dyn
  and decoder losses, as its agent at 2411f7d summed them); the reward and
  continue heads' losses are not in it."""
  return sum(value for name, value in wm_losses.items() if name not in ("rew", "con"))


def check_losses(losses: dict, declared: tuple[str, ...], scales: LossScales, batch_size: int,
                 length: int) -> dict[str, jax.Array]:
  """Means of the losses, after checking (at trace time) that their names are
  the ones the parts that make them declare (the sequence model's, the world
  model's heads', the actor-critic's), each has a scale in `loss_scales`, and
  each has one value per replayed step [B, T].

  The replay value loss is [B, T - 1]: the last replayed step has no next
  step to form its return from (as in the reference's `repl_loss`).
  """
  if set(losses) != set(declared):
    raise ValueError(f"the losses {sorted(losses)} are not the declared losses {sorted(declared)}")
  unscaled = sorted(set(declared) - set(dataclasses.asdict(scales)))
  if unscaled:
    raise ValueError(f"the losses {unscaled} have no scale in loss_scales "
                     f"({', '.join(dataclasses.asdict(scales))}); give them one")
  for name, value in losses.items():
    shape = (batch_size, length - 1) if name == "repval" else (batch_size, length)
    if value.shape != shape:
      raise ValueError(f"loss '{name}' has shape {value.shape}, expected {shape}")
  return {name: value.mean() for name, value in losses.items()}


def _prefixed(part: str, metrics: dict) -> dict:
  return {f"{part}/{name}": value for name, value in metrics.items()}


@partial(jax.jit, donate_argnums=0)
def train_step(state: AgentState, batch: dict):
  """One update of all networks from a replayed batch [B, context + T, ...].

  Returns the new state, metrics, and the replay updates: with a replay
  context, the sequence model's entries of the posteriors of the T trained
  steps [B, T, ...] by their replay names, to be written back over the stored latents at window offset
  `context` (the reference's `outs['replay']`), and where `spec.priority` the
  steps' priorities [B, T] as `priority`; {} without either.
  """
  spec = state.spec
  wm, _, _ = modules(spec, state.params)
  data, prev_actions = split_batch(batch, spec.context)
  start = start_latent(wm.dynamics, batch, spec.context)
  state, metrics, post, priority = update(state, start, data, prev_actions)
  written = tree_named(wm.dynamics.entries(post), LATENT) if spec.context else {}
  if priority is not None:
    written["priority"] = priority
  return state, metrics, written


def update(state: AgentState, start, data: dict, prev_actions):
  """The update of `train_step` from its training steps [B, T] and start carry
  [B] (None: the initial carry): (new state, metrics, posteriors [B, T], and the
  steps' replay priorities [B, T] where `spec.priority`, else None)."""
  spec = state.spec
  key, loss_key = jax.random.split(state.key)
  grads, (metrics, retnorm, post, priority) = jax.grad(loss, has_aux=True)(
      state.params, state, data, prev_actions, loss_key, start)
  optimizer = make_optimizer(spec.optim)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  rate = spec.behavior.slow_critic_rate
  slow_critic = jax.tree.map(lambda s, p: (1 - rate) * s + rate * p, state.slow_critic,
                             params["critic"])
  metrics["opt/grad_norm"] = optax.tree.norm(grads)
  metrics["opt/update_norm"] = optax.tree.norm(updates)
  metrics["opt/lr"] = learning_rate(spec.optim)(state.step)
  new_state = state.replace(params=params, slow_critic=slow_critic, opt_state=opt_state,
                            retnorm=retnorm, key=key, step=state.step + 1)
  return new_state, metrics, post, priority


# --- reports --------------------------------------------------------------------

@partial(jax.jit, static_argnames=("context", "horizon"))
def report(state: AgentState, batch: dict, key, context: int | None = None,
           horizon: int | None = None) -> dict[str, jax.Array]:
  """The open-loop video of replayed sequences (report.py beside this); {} without image keys.

  The model observes `context` steps (default: 5, or all but one of shorter
  sequences) and imagines `horizon` (default: the rest), starting, as
  training does, from the latent stored with the last replay-context step.
  """
  images = [k for k, s in state.spec.obs_spec if s.is_image]
  if not images:
    return {}
  wm, _, _ = modules(state.spec, state.params)
  data, prev_actions = split_batch(batch, state.spec.context)
  start = start_latent(wm.dynamics, batch, state.spec.context)
  if context is None:
    context = min(reports.OPENLOOP_CONTEXT, data["is_first"].shape[1] - 1)
  return {"openloop": reports.open_loop(wm, data, prev_actions, images, key, context, horizon,
                                        start)}


DREAMERV3 = Algorithm(name="dreamerv3", init=init, initial_carry=initial_carry,
                      policy_step=policy_step, record_action=record_action,
                      replay_entries=replay_entries, train_step=train_step, report=report,
                      param_counts=param_counts)
