"""Hand-worked values for the behaviour losses of wmrl/algorithms/dreamerv3/behavior.py:
`actor_critic_loss` (imagination) and `replay_value_loss` (replayed data).

Why stand-ins: both functions only combine what the actor and critic output
(values, log-probabilities, entropies, a per-step critic loss), so the
networks are replaced by tiny objects that read their outputs off the
features. The test controls every quantity through `feat`:

  feat[..., 0]  the critic's value        feat[..., 2]  the actor's log-probability
  feat[..., 1]  the slow critic's value   feat[..., 3]  the actor's entropy

and the stand-in critic's loss is the squared error (value - target)^2, so
each loss is arithmetic on small numbers. The real critic's symexp two-hot
value and loss have their own tests in tests/test_dists.py.

Expected numbers are written out below, with the arithmetic in comments,
following the recursion of `lambda_return`

  R_t = r_{t+1} + live_{t+1} ((1 - c_{t+1}) boot_{t+1} + c_{t+1} R_{t+1}),
  live = discount (1 - term),  c = lam (1 - last),  R_{T-1} = boot_{T-1};

inside imagination term = 1 - cont, last = 0 and boot = the critic's value.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wmrl.algorithms.dreamerv3 import behavior
from wmrl.algorithms.dreamerv3.config import BehaviorConfig

RTOL = 1e-5  # float32 arithmetic on numbers of order 1-30


# --- stand-ins -------------------------------------------------------------------------

class StandInCritic:
  """`critic(feat)` -> logits [..., 1] = w * feat[..., column]; value = logits[..., 0];
  loss = squared error. `w` is a parameter to differentiate through."""

  def __init__(self, column: int, w=1.0):
    self.column, self.w = column, w

  def __call__(self, feat):
    return self.w * feat[..., self.column:self.column + 1]

  def value(self, logits):
    return logits[..., 0]

  def loss(self, logits, target):
    assert logits.shape[:-1] == target.shape
    return (self.value(logits) - target) ** 2


class StandInPolicy:
  def __init__(self, feat, a):
    self.feat, self.a = feat, a

  def logp(self, actions):
    # Depends on the actions (all ones below, so the value is a * feat[..., 2]),
    # so the test can see that the loss stops their gradient.
    return self.a * self.feat[..., 2] * actions[..., 0]

  def entropy(self):
    return self.feat[..., 3]


class StandInActor:
  def __init__(self, a=1.0):
    self.a = a

  def __call__(self, feat):
    return StandInPolicy(feat, self.a)


def trajectory(value, slow, logp, entropy, reward, cont):
  """A Trajectory [N, H + 1] whose features carry the four given quantities."""
  f = lambda x: jnp.asarray(x, jnp.float32)
  feat = jnp.stack([f(value), f(slow), f(logp), f(entropy)], -1)
  action = jnp.ones((*feat.shape[:2], 1), jnp.float32)
  return behavior.Trajectory(feat, action, f(reward), f(cont))


# --- the imagined trajectory: N = 2 rows, H + 1 = 4 states (3 imagined steps) -----------
# The final state's log-probability, entropy and slow value are never used (no step
# follows it): they are set huge so that a misuse would show.

VALUE = [[2.0, 4.0, 6.0, 8.0],
         [1.0, 0.0, -2.0, 2.0]]
SLOW = [[3.0, 3.0, 3.0, 100.0],
        [0.0, 0.0, 0.0, 100.0]]
LOGP = [[-1.0, -2.0, -0.5, -99.0],
        [-0.5, -1.0, -2.0, -99.0]]
ENTROPY = [[1.0, 0.5, 2.0, 99.0],
           [0.25, 1.0, 0.5, 99.0]]
REWARD = [[0.0, 1.0, 2.0, 3.0],  # reward[:, 0] (the start state's) is never used
          [0.0, -1.0, 0.0, 1.0]]
CONT = [[1.0, 1.0, 0.5, 1.0],  # row 0 may end at step 2: its weight halves from there
        [1.0, 1.0, 1.0, 1.0]]

LAM, ENT_COEF, SLOW_REG = 0.5, 0.1, 0.5


def config(**kw):
  return BehaviorConfig(lam=LAM, entropy=ENT_COEF, slow_reg=SLOW_REG, **kw)


def ac_loss(cfg, value=VALUE, slow=SLOW, logp=LOGP, entropy=ENTROPY, reward=REWARD,
            cont=CONT):
  return behavior.actor_critic_loss(StandInActor(), StandInCritic(0), StandInCritic(1),
                                    trajectory(value, slow, logp, entropy, reward, cont),
                                    behavior.ReturnNorm.init(), cfg)


# contdisc=True: imag_discount = 1, the predicted continues alone discount.
# weight = cumprod(1 * cont) / 1: row 0 [1, 1, .5, .5], row 1 [1, 1, 1, 1]; steps 0..2 used.
WEIGHT_1 = np.array([[1.0, 1.0, 0.5], [1.0, 1.0, 1.0]])
# live_t = cont_t; c = lam = .5; R_2 is seeded with boot_3 = value_3.
# row 0: R_2 = 3 + 1 (.5 * 8 + .5 * 8) = 11
#        R_1 = 2 + .5 (.5 * 6 + .5 * 11) = 2 + .5 * 8.5 = 6.25
#        R_0 = 1 + 1 (.5 * 4 + .5 * 6.25) = 1 + 2 + 3.125 = 6.125
# row 1: R_2 = 1 + 1 (.5 * 2 + .5 * 2) = 3
#        R_1 = 0 + (.5 * -2 + .5 * 3) = .5
#        R_0 = -1 + (.5 * 0 + .5 * .5) = -.75
RET_1 = np.array([[6.125, 6.25, 11.0], [-0.75, 0.5, 3.0]])
# Percentiles of the six returns, sorted [-.75, .5, 3, 6.125, 6.25, 11], linear
# interpolation at index p / 100 * 5:
#   5th at .25:  -.75 + .25 (.5 + .75) = -.4375
#   95th at 4.75: 6.25 + .75 (11 - 6.25) = 9.8125      (range 10.25)
LOW_1, HIGH_1 = -0.4375, 9.8125
# ret - value[:, :-1]: row 0 [6.125 - 2, 6.25 - 4, 11 - 6], row 1 [-.75 - 1, .5 - 0, 3 + 2].
ADV_NUM_1 = np.array([[4.125, 2.25, 5.0], [-1.75, 0.5, 5.0]])


def test_hand_numbers_agree_with_numpy_percentile():
  # A check of the test's own arithmetic above, not of the code.
  np.testing.assert_allclose(np.percentile(RET_1, [5, 95]), [LOW_1, HIGH_1], rtol=1e-12)


def test_actor_critic_loss_contdisc_range_below_limit():
  # Default rate .01 from zeros: low = .01 * -.4375, high = .01 * 9.8125, range
  # .1025 < limit 1, so scale = 1 and the advantage is ret - value itself.
  losses, out, metrics = ac_loss(config())
  np.testing.assert_allclose(out["ret"], RET_1, rtol=RTOL)
  np.testing.assert_allclose(out["retnorm"].low, 0.01 * LOW_1, rtol=RTOL)
  np.testing.assert_allclose(out["retnorm"].high, 0.01 * HIGH_1, rtol=RTOL)
  assert float(metrics["retnorm_scale"]) == 1.0
  np.testing.assert_allclose(metrics["advantage"], ADV_NUM_1.mean(), rtol=RTOL)
  # The weight metric is the mean over all H + 1 states: (1 + 1 + .5 + .5 + 4) / 8 = .875.
  np.testing.assert_allclose(metrics["weight"], 0.875, rtol=RTOL)

  # policy = -weight (logp * adv + .1 * entropy), a mean over the 3 steps:
  # row 0: -1 (-1 * 4.125 + .1 * 1) = 4.025; -1 (-2 * 2.25 + .1 * .5) = 4.45;
  #        -.5 (-.5 * 5 + .1 * 2) = 1.15;               mean 9.625 / 3
  # row 1: -(-.5 * -1.75 + .1 * .25) = -.9; -(-1 * .5 + .1 * 1) = .4;
  #        -(-2 * 5 + .1 * .5) = 9.95;                  mean 9.45 / 3
  assert losses["policy"].shape == (2,)
  np.testing.assert_allclose(losses["policy"], [9.625 / 3, 9.45 / 3], rtol=RTOL)

  # value = weight ((value - ret)^2 + .5 (value - slow)^2):
  # row 0: 1 ((2 - 6.125)^2 + .5 (2 - 3)^2) = 17.015625 + .5 = 17.515625
  #        1 ((4 - 6.25)^2 + .5 (4 - 3)^2) = 5.0625 + .5 = 5.5625
  #        .5 ((6 - 11)^2 + .5 (6 - 3)^2) = .5 (25 + 4.5) = 14.75     mean 37.828125 / 3
  # row 1: (1 + .75)^2 + .5 * 1^2 = 3.5625; (0 - .5)^2 + 0 = .25;
  #        (-2 - 3)^2 + .5 (-2)^2 = 27                               mean 30.8125 / 3
  assert losses["value"].shape == (2,)
  np.testing.assert_allclose(losses["value"], [37.828125 / 3, 30.8125 / 3], rtol=RTOL)


def test_actor_critic_loss_contdisc_range_above_limit():
  # Rate .5 from zeros: low = -.21875, high = 4.90625, range 5.125 > 1: scale 5.125.
  losses, out, metrics = ac_loss(config(retnorm_rate=0.5))
  np.testing.assert_allclose([out["retnorm"].low, out["retnorm"].high], [-0.21875, 4.90625],
                             rtol=RTOL)
  np.testing.assert_allclose(metrics["retnorm_scale"], 5.125, rtol=RTOL)
  np.testing.assert_allclose(metrics["advantage"], ADV_NUM_1.mean() / 5.125, rtol=RTOL)
  # Only the advantage term shrinks, by 1 / 5.125; the entropy term is not scaled:
  # row 0: (4.125 + 4.5 + .5 * 2.5) / 5.125 - (.1 + .05 + .5 * .2) = 9.875 / 5.125 - .25
  # row 1: (-.875 + .5 + 10) / 5.125 - (.025 + .1 + .05)        = 9.625 / 5.125 - .175
  np.testing.assert_allclose(losses["policy"],
                             [(9.875 / 5.125 - 0.25) / 3, (9.625 / 5.125 - 0.175) / 3],
                             rtol=RTOL)
  # The critic's targets are the raw returns: the value loss does not see the scale.
  np.testing.assert_allclose(losses["value"], [37.828125 / 3, 30.8125 / 3], rtol=RTOL)


def test_actor_critic_loss_without_contdisc_discounts_on_top_of_cont():
  # contdisc=False, horizon 10: imag_discount = .9, applied on top of the continues.
  cfg = config(contdisc=False, horizon=10)
  assert cfg.imag_discount == pytest.approx(0.9)
  losses, out, _ = ac_loss(cfg)
  # weight = cumprod(.9 cont) / .9:
  #   row 0: [.9, .81, .81 * .45, .3645 * .9] / .9 = [1, .9, .405, .3645];
  #   row 1: [.9, .81, .729, .6561] / .9 = [1, .9, .81, .729].
  # live = .9 cont[1:]: row 0 [.9, .45, .9], row 1 [.9, .9, .9]; c = .5.
  # row 0: R_2 = 3 + .9 * 8 = 10.2
  #        R_1 = 2 + .45 (.5 * 6 + .5 * 10.2) = 2 + .45 * 8.1 = 5.645
  #        R_0 = 1 + .9 (.5 * 4 + .5 * 5.645) = 1 + .9 * 4.8225 = 5.34025
  # row 1: R_2 = 1 + .9 * 2 = 2.8
  #        R_1 = 0 + .9 (.5 * -2 + .5 * 2.8) = .9 * .4 = .36
  #        R_0 = -1 + .9 (.5 * 0 + .5 * .36) = -1 + .162 = -.838
  ret = np.array([[5.34025, 5.645, 10.2], [-0.838, 0.36, 2.8]])
  np.testing.assert_allclose(out["ret"], ret, rtol=RTOL)
  # Rate .01 leaves the range far below 1: scale 1.
  low, high = np.percentile(ret, [5, 95])
  np.testing.assert_allclose([out["retnorm"].low, out["retnorm"].high],
                             [0.01 * low, 0.01 * high], rtol=RTOL)
  # policy: row 0 -1 (-1 (5.34025 - 2) + .1 * 1)  = 3.24025
  #               -.9 (-2 (5.645 - 4) + .1 * .5) = -.9 * -3.24 = 2.916
  #               -.405 (-.5 (10.2 - 6) + .1 * 2) = -.405 * -1.9 = .7695
  #         row 1 -1 (-.5 (-.838 - 1) + .1 * .25) = -(.919 + .025) = -.944
  #               -.9 (-1 (.36 - 0) + .1 * 1)    = -.9 * -.26 = .234
  #               -.81 (-2 (2.8 + 2) + .1 * .5)  = -.81 * -9.55 = 7.7355
  np.testing.assert_allclose(losses["policy"], [(3.24025 + 2.916 + 0.7695) / 3,
                                                (-0.944 + 0.234 + 7.7355) / 3], rtol=RTOL)
  # value: row 0 1 ((2 - 5.34025)^2 + .5 * 1) = 11.1572700625 + .5 = 11.6572700625
  #              .9 ((4 - 5.645)^2 + .5 * 1) = .9 (2.706025 + .5) = 2.8854225
  #              .405 ((6 - 10.2)^2 + .5 * 9) = .405 (17.64 + 4.5) = 8.9667
  #        row 1 1 ((1 + .838)^2 + .5 * 1) = 3.378244 + .5 = 3.878244
  #              .9 ((0 - .36)^2 + 0) = .9 * .1296 = .11664
  #              .81 ((-2 - 2.8)^2 + .5 * 4) = .81 (23.04 + 2) = 20.2824
  np.testing.assert_allclose(losses["value"], [(11.6572700625 + 2.8854225 + 8.9667) / 3,
                                               (3.878244 + 0.11664 + 20.2824) / 3], rtol=RTOL)


def test_larger_entropy_lowers_policy_loss_by_weighted_bonus():
  # One more nat of entropy at row 0, step 2 (weight .5) lowers that row's policy loss
  # by weight * coef * 1 / H = .5 * .1 / 3, and changes nothing else.
  base, _, _ = ac_loss(config())
  entropy = np.array(ENTROPY)
  entropy[0, 2] += 1.0
  more, _, _ = ac_loss(config(), entropy=entropy)
  drop = np.asarray(base["policy"]) - np.asarray(more["policy"])
  assert drop[0] > 0
  np.testing.assert_allclose(drop, [0.5 * 0.1 / 3, 0.0], rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(more["value"], base["value"])


def test_final_state_outputs_are_not_used():
  # The last state's logp, entropy and slow value have no step to belong to; only its
  # value enters, as the bootstrap of the last return.
  base, base_out, _ = ac_loss(config())
  other, other_out, _ = ac_loss(config(), logp=np.array(LOGP) * [1, 1, 1, 0],
                                entropy=np.array(ENTROPY) * [1, 1, 1, 0],
                                slow=np.array(SLOW) * [1, 1, 1, 0])
  for k in ("policy", "value"):
    np.testing.assert_array_equal(other[k], base[k])
  np.testing.assert_array_equal(other_out["ret"], base_out["ret"])


def test_actor_critic_gradients_follow_the_stop_gradients():
  """The returns, advantage, weights and actions are stopped: only the actor's
  log-probability (through the policy loss) and the critic's prediction (through the
  value loss, towards fixed targets) carry gradient."""
  traj = trajectory(VALUE, SLOW, LOGP, ENTROPY, REWARD, CONT)
  cfg = config()

  def losses(params):
    t = traj._replace(action=params["action"], reward=params["reward"], cont=params["cont"])
    out, _, _ = behavior.actor_critic_loss(StandInActor(params["a"]),
                                           StandInCritic(0, params["w"]),
                                           StandInCritic(1, params["w_slow"]), t,
                                           behavior.ReturnNorm.init(), cfg)
    return out

  params = {"a": 1.0, "w": 1.0, "w_slow": 1.0, "action": traj.action, "reward": traj.reward,
            "cont": traj.cont}
  g_policy = jax.grad(lambda p: losses(p)["policy"].sum())(params)
  g_value = jax.grad(lambda p: losses(p)["value"].sum())(params)

  # The advantage (ret - value) / scale reads the critic but passes it no gradient.
  assert float(g_policy["w"]) == 0.0
  # d policy / da = mean_t -weight * logp * adv (a = 1, scale 1):
  # row 0: (4.125 + 4.5 + 1.25) / 3; row 1: (-.875 + .5 + 10) / 3; summed 19.5 / 3 = 6.5.
  np.testing.assert_allclose(g_policy["a"], 6.5, rtol=RTOL)
  # The value loss does not reach the actor.
  assert float(g_value["a"]) == 0.0
  # d value / dw with the targets held fixed (w scales the critic's value v):
  #   mean_t weight (2 (v - R) v + 2 * .5 (v - slow) v)
  # row 0: 1 (2 (2 - 6.125) 2 + (2 - 3) 2) = -18.5; 1 (2 (4 - 6.25) 4 + (4 - 3) 4) = -14;
  #        .5 (2 (6 - 11) 6 + (6 - 3) 6) = -21;                       sum -53.5
  # row 1: 2 (1.75) 1 + 1 = 4.5; 0; 2 (-5)(-2) + (-2)(-2) = 24;          sum 28.5
  # total (-53.5 + 28.5) / 3 = -25 / 3. Had the targets R kept their gradient (R moves
  # with w through the bootstraps), the figure would differ.
  np.testing.assert_allclose(g_value["w"], -25 / 3, rtol=RTOL)
  # Nothing reaches the slow critic, the actions, or the imagined rewards and continues
  # (the world model's predictions): weights, returns and advantages are all stopped.
  for g in (g_policy, g_value):
    for name in ("w_slow", "action", "reward", "cont"):
      np.testing.assert_array_equal(g[name], np.zeros_like(params[name]), err_msg=name)


# --- replay value loss: B = 1, T = 4 ---------------------------------------------------

R_REWARD = [0.0, 1.0, 2.0, 3.0]
R_BOOT = [10.0, 20.0, 30.0, 40.0]  # the imagined returns of the replayed states
R_VALUE = [22.0, 28.0, 7.0, 8.0]
R_SLOW = [21.0, 30.0, 0.0, 99.0]  # the last entry is never used


def replay_case(last, term, w=1.0, boot=R_BOOT, reward=R_REWARD):
  f = lambda x: jnp.asarray([x], jnp.float32)
  feat = jnp.stack([f(R_VALUE), f(R_SLOW)], -1)
  data = {"reward": f(reward) if not isinstance(reward, jax.Array) else reward,
          "is_last": jnp.asarray([last], bool), "is_terminal": jnp.asarray([term], bool)}
  # config.discount = 1 - 1 / horizon = .9 whatever contdisc says: replayed returns
  # discount explicitly.
  cfg = BehaviorConfig(horizon=10, lam=LAM, slow_reg=SLOW_REG)
  boot = f(boot) if not isinstance(boot, jax.Array) else boot
  return behavior.replay_value_loss(StandInCritic(0, w), StandInCritic(1), feat, data, boot,
                                    cfg)


def test_replay_value_loss_is_last_uses_bootstrap_and_zero_weight():
  # is_last at step 2 (a time limit): live = .9 everywhere, c = .5 (1 - last[1:]) =
  # [.5, 0, .5]; R_2 is seeded with boot_3 = 40.
  #   R_2 = 3 + .9 (.5 * 40 + .5 * 40) = 39     (its reward belongs to the next episode)
  #   R_1 = 2 + .9 (1 * 30 + 0) = 29            (c_2 = 0: the bootstrap alone)
  #   R_0 = 1 + .9 (.5 * 20 + .5 * 29) = 1 + .9 * 24.5 = 23.05
  losses, out, metrics = replay_case([0, 0, 1, 0], [0, 0, 0, 0])
  np.testing.assert_allclose(out["ret"], [[23.05, 29.0, 39.0]], rtol=RTOL)
  np.testing.assert_allclose(metrics["ret"], (23.05 + 29 + 39) / 3, rtol=RTOL)
  # weight = 1 - is_last[:-1] = [1, 1, 0]: the step AT is_last gets none.
  # loss_0 = (22 - 23.05)^2 + .5 (22 - 21)^2 = 1.1025 + .5 = 1.6025
  # loss_1 = (28 - 29)^2 + .5 (28 - 30)^2 = 1 + 2 = 3
  # loss_2 = 0 * ((7 - 39)^2 + .5 (7 - 0)^2) = 0
  assert losses["repval"].shape == (1, 3)
  np.testing.assert_allclose(losses["repval"], [[1.6025, 3.0, 0.0]], rtol=RTOL)


@pytest.mark.parametrize("last", [[0, 0, 1, 0], [0, 0, 0, 0]], ids=["with_last", "term_only"])
def test_replay_value_loss_terminal_ends_the_return(last):
  # is_terminal at step 2: live_2 = 0, so the return of step 1 is its reward alone.
  #   R_2 = 3 + .9 * 40 = 39
  #   R_1 = 2 + 0 = 2
  #   R_0 = 1 + .9 (.5 * 20 + .5 * 2) = 1 + .9 * 11 = 10.9
  # Whether is_last is also set (as the environment adapters write a terminal) does not
  # change the returns: live_2 = 0 already removes bootstrap and continuation.
  losses, out, _ = replay_case(last, [0, 0, 1, 0])
  np.testing.assert_allclose(out["ret"], [[10.9, 2.0, 39.0]], rtol=RTOL)
  # loss_0 = (22 - 10.9)^2 + .5 (22 - 21)^2 = 123.21 + .5 = 123.71
  # loss_1 = (28 - 2)^2 + .5 (28 - 30)^2 = 676 + 2 = 678
  # loss_2 = (7 - 39)^2 + .5 (7 - 0)^2 = 1024 + 24.5 = 1048.5, times weight 1 - is_last_2.
  weight_2 = 1.0 - last[2]
  np.testing.assert_allclose(losses["repval"], [[123.71, 678.0, weight_2 * 1048.5]],
                             rtol=RTOL)


def test_replay_value_loss_gradient_only_reaches_the_critic_prediction():
  last, term = [0, 0, 1, 0], [0, 0, 0, 0]
  boot, reward = jnp.asarray([R_BOOT]), jnp.asarray([R_REWARD])

  def total(w, boot, reward):
    return replay_case(last, term, w, boot, reward)[0]["repval"].sum()

  gw, gboot, greward = jax.grad(total, argnums=(0, 1, 2))(1.0, boot, reward)
  # Targets fixed: d/dw sum_t weight (2 (v - R) v + 2 * .5 (v - slow) v), w = 1:
  #   step 0: 2 (22 - 23.05) 22 + (22 - 21) 22 = -46.2 + 22 = -24.2
  #   step 1: 2 (28 - 29) 28 + (28 - 30) 28 = -56 - 56 = -112
  #   step 2: weight 0.                                      total -136.2
  np.testing.assert_allclose(gw, -136.2, rtol=RTOL)
  # The returns are stopped: no gradient into the bootstrap or the replayed rewards.
  np.testing.assert_array_equal(gboot, np.zeros((1, 4)))
  np.testing.assert_array_equal(greward, np.zeros((1, 4)))
