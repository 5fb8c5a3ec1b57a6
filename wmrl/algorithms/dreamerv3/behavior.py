"""Actor and critic, lambda-returns, return normalisation and their losses."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from wmrl import dists
from wmrl.algorithms.dreamerv3.config import BehaviorConfig, ModelConfig
from wmrl.nets import Head
from wmrl.spaces import ActionSpec

sg = jax.lax.stop_gradient


class Actor(nnx.Module):
  """Bounded normal for continuous actions; categoricals (optionally unimix) for discrete ones."""

  def __init__(self, feat_dim: int, act_spec: ActionSpec, config: ModelConfig, *, rngs):
    h = config.actor
    self.act_spec = act_spec
    # Continuous: the reference's two output layers, mean and stddev.
    out = (act_spec.dim, act_spec.dim) if act_spec.kind == "continuous" else act_spec.dim
    self.head = Head(feat_dim, out, h.units, h.layers, h.outscale, rngs=rngs,
                     dtype=jnp.dtype(config.compute_dtype))
    self.min_std, self.max_std = config.actor_min_std, config.actor_max_std
    self.unimix = config.actor_unimix

  def __call__(self, feat) -> "Policy":
    x = self.head(feat)
    if self.act_spec.kind == "continuous":
      mean, std = dists.bounded_normal_params(*jnp.split(x, 2, -1), self.min_std, self.max_std)
      return Policy(self.act_spec, (mean, std))
    blocks = jnp.split(x, _offsets(self.act_spec.sizes), -1)
    return Policy(self.act_spec, tuple(dists.unimix_logits(b, self.unimix) for b in blocks))


class Policy(NamedTuple):
  """An action distribution over model-format actions [..., act_spec.dim]."""

  spec: ActionSpec
  params: tuple  # (mean, std), or one log-probability block per sub-action

  def sample(self, key):
    if self.spec.kind == "continuous":
      mean, std = self.params
      return mean + std * jax.random.normal(key, mean.shape)
    keys = jax.random.split(key, len(self.params))
    return jnp.concatenate([dists.onehot_sample_st(k, p) for k, p in zip(keys, self.params)], -1)

  def mode(self):
    if self.spec.kind == "continuous":
      return self.params[0]
    return jnp.concatenate([dists.onehot_mode(p) for p in self.params], -1)

  def logp(self, action):
    if self.spec.kind == "continuous":
      return dists.normal_logp(*self.params, action)
    parts = jnp.split(action, _offsets(self.spec.sizes), -1)
    return sum(dists.categorical_logp(p, a) for p, a in zip(self.params, parts))

  def entropy(self):
    if self.spec.kind == "continuous":
      return dists.normal_entropy(self.params[1])
    return sum(dists.categorical_entropy(p) for p in self.params)


class Critic(nnx.Module):
  """A symexp two-hot value head: `critic(feat)` gives logits, `value` and
  `loss` read them, so one forward pass serves both."""

  def __init__(self, feat_dim: int, config: ModelConfig, *, rngs):
    h = config.critic
    self.head = Head(feat_dim, h.bins, h.units, h.layers, h.outscale, rngs=rngs,
                     dtype=jnp.dtype(config.compute_dtype))
    self.bins = h.bins

  def __call__(self, feat):
    return self.head(feat)

  def value(self, logits):
    return dists.twohot_mean(logits, dists.twohot_bins(self.bins))

  def loss(self, logits, target):
    return dists.twohot_loss(logits, target, dists.twohot_bins(self.bins))


def _offsets(sizes):
  return [int(sum(sizes[:i + 1])) for i in range(len(sizes) - 1)]


# --- returns -------------------------------------------------------------------

def lambda_return(last, term, reward, value, bootstrap, discount: float, lam: float):
  """TD(lambda) returns of steps 0..T-2 of sequences [B, T].

  Step t's return is r[t+1] + live[t+1] * ((1 - c) * boot[t+1] + c * R[t+1]),
  where live = discount * (1 - term) and c = lam * (1 - last): at the end of
  an episode (`last`) the return stops following the sequence and uses the
  bootstrap alone; at a terminal it ends. The final step is seeded with
  bootstrap[T-1]. `value` is accepted for symmetry with the reference and
  equals `bootstrap` inside imagination.
  """
  del value
  live = (1.0 - term[:, 1:].astype(jnp.float32)) * discount
  cont = (1.0 - last[:, 1:].astype(jnp.float32)) * lam
  interm = reward[:, 1:] + (1 - cont) * live * bootstrap[:, 1:]

  def step(ret, inputs):
    interm_t, live_t, cont_t = inputs
    ret = interm_t + live_t * cont_t * ret
    return ret, ret

  time_major = lambda x: jnp.swapaxes(x, 0, 1)
  _, rets = jax.lax.scan(step, bootstrap[:, -1], (time_major(interm), time_major(live),
                                                  time_major(cont)), reverse=True)
  return time_major(rets)


class ReturnNorm(NamedTuple):
  """EMA of the 5th and 95th return percentiles."""

  low: jax.Array
  high: jax.Array

  @staticmethod
  def init() -> "ReturnNorm":
    return ReturnNorm(jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))

  def update(self, returns, config: BehaviorConfig) -> "ReturnNorm":
    returns = sg(returns.astype(jnp.float32))
    low = jnp.percentile(returns, config.retnorm_low)
    high = jnp.percentile(returns, config.retnorm_high)
    rate = config.retnorm_rate
    return ReturnNorm((1 - rate) * self.low + rate * low, (1 - rate) * self.high + rate * high)

  def scale(self, config: BehaviorConfig):
    """Divides advantages: the percentile range, but never below `limit`, so
    small returns are not blown up into noise (paper, "Return normalization")."""
    return jnp.maximum(config.retnorm_limit, self.high - self.low)


# --- imagination -----------------------------------------------------------------

class Trajectory(NamedTuple):
  """Imagined trajectories [N, H + 1]: the start state and H imagined states."""

  feat: jax.Array  # [N, H + 1, F] the states' policy features, without gradient
  action: jax.Array  # [N, H + 1, A] the action the actor took at each state
  reward: jax.Array  # [N, H + 1] the world model's predicted reward
  cont: jax.Array  # [N, H + 1] its predicted continue probability


def imagine(wm, actor: Actor, starts, horizon: int, rollout_key, last_key):
  """Rolls the world model `horizon` steps from `starts` [N] with the actor.

  `rollout_key` draws the rollout, `last_key` the action at its last state.
  `wm` and `actor` are frozen copies (their parameters stopped), so nothing
  learns through imagination except the actor's log-probabilities, which
  `actor_critic_loss` evaluates again. Returns `({}, trajectory, metrics)`:
  the shape of the loss stages, with no loss of its own.
  """
  policy = lambda latent, k: sg(actor(wm.dynamics.policy_features(latent)).sample(k))
  imagined, actions = wm.dynamics.imagine(starts, policy, horizon, rollout_key)
  states = jax.tree.map(lambda s, x: jnp.concatenate([s[:, None], x], 1), starts, imagined)
  feat = sg(wm.dynamics.features(states))
  last_action = policy(jax.tree.map(lambda x: x[:, -1], states), last_key)
  actions = jnp.concatenate([actions, last_action[:, None]], 1)
  reward, cont = wm.predict_reward(feat), wm.predict_cont(feat)
  policy_feat = sg(wm.dynamics.policy_features(states))
  return {}, Trajectory(policy_feat, actions, reward, cont), {"reward": reward.mean(),
                                                            "cont": cont.mean()}


# --- losses --------------------------------------------------------------------

# The losses of `actor_critic_loss`, and of `replay_value_loss` where it is on.
ACTOR_CRITIC_LOSSES = ("policy", "value")
REPLAY_VALUE_LOSSES = ("repval",)

def actor_critic_loss(actor: Actor, critic: Critic, slow_critic: Critic, trajectory: Trajectory,
                      retnorm: ReturnNorm, config: BehaviorConfig):
  """Actor and critic losses on imagined trajectories [N, H + 1].

  Returns `(losses, out, metrics)`: the losses `policy` and `value` [N] (a
  mean over the horizon per start state), and in `out` the lambda-returns
  `ret` [N, H] and the updated return normaliser `retnorm`.
  """
  feat, actions, reward, cont = trajectory
  discount = config.imag_discount
  # Trajectories fade out after a predicted termination: the weight of step t
  # is the chance the episode is still running there.
  weight = sg(jnp.cumprod(discount * cont, 1) / discount)
  logits = critic(feat)
  value = critic.value(logits)
  slow_value = slow_critic.value(slow_critic(feat))
  ret = lambda_return(jnp.zeros_like(cont), 1.0 - cont, reward, value, value, discount, config.lam)
  retnorm = retnorm.update(ret, config)
  advantage = sg((ret - value[:, :-1]) / retnorm.scale(config))
  policy = actor(feat)
  logp = policy.logp(sg(actions))[:, :-1]
  entropy = policy.entropy()[:, :-1]
  policy_loss = -weight[:, :-1] * (logp * advantage + config.entropy * entropy)
  # The slow critic regularises the critic towards its own slow average.
  value_loss = weight[:, :-1] * (critic.loss(logits[:, :-1], sg(ret))
                                 + config.slow_reg * critic.loss(logits[:, :-1], sg(slow_value[:, :-1])))
  metrics = {"ret": ret.mean(), "advantage": advantage.mean(), "entropy": entropy.mean(),
             "retnorm_scale": retnorm.scale(config), "value": value.mean(),
             "weight": weight.mean()}
  losses = {"policy": policy_loss.mean(1), "value": value_loss.mean(1)}
  return losses, {"ret": ret, "retnorm": retnorm}, metrics


def replay_value_loss(critic: Critic, slow_critic: Critic, feat, data, bootstrap,
                      config: BehaviorConfig):
  """The critic's loss on replayed sequences [B, T], bootstrapped from imagination.

  Returns follow the real rewards and terminations of the data and bootstrap
  from `bootstrap`, the imagined lambda-return of each replayed state.
  Returns `(losses, out, metrics)`: the loss `repval` [B, T - 1] (the last
  step has no next step to form a return from) and in `out` the returns.
  """
  logits = critic(feat)
  value = critic.value(logits)
  ret = lambda_return(data["is_last"], data["is_terminal"], data["reward"], value,
                      bootstrap, config.discount, config.lam)
  slow_value = slow_critic.value(slow_critic(feat[:, :-1]))
  weight = 1.0 - data["is_last"][:, :-1].astype(jnp.float32)
  loss = weight * (critic.loss(logits[:, :-1], sg(ret))
                   + config.slow_reg * critic.loss(logits[:, :-1], sg(slow_value)))
  return {"repval": loss}, {"ret": ret}, {"ret": ret.mean()}
