"""The JAX environment sources (wmrl/jaxenvs) through `JaxEnv`: the exact step contract.

For each library a short episode is cut once by its time limit and once by a
true termination (a hand-built state one step from the end, or actions known
to end it): the cut step has is_last (and is_terminal only for the
termination), its observation is the one the library's own non-resetting
step gives from the same state, the step after is a first step (reward 0)
that ignores its action, and consecutive episodes start from different
initial states. Each test compiles `reset` and `step` once.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from wmrl import jaxenvs
from wmrl.jaxenvs import JaxEnv


def _keys(state):
  """The keys JaxEnv's next step draws from: (the source's step, a reset's init)."""
  key, init_key = jax.random.split(state.key[0])
  return jax.random.split(key)[1], init_key


def _unbatch(tree):
  return jax.tree.map(lambda x: x[0], tree)


def _obs(out, keys):
  return {k: np.asarray(out[k][0]) for k in keys}


def _assert_obs(actual, expected):
  for k in expected:
    np.testing.assert_allclose(actual[k], np.asarray(expected[k]), rtol=1e-5, atol=1e-6, err_msg=k)


class Contract:
  """One source's `JaxEnv` (num_envs=1) with `reset` and `step` compiled once."""

  def __init__(self, source, time_limit, library_step):
    self.env = JaxEnv(source, num_envs=1, time_limit=time_limit)
    self.reset, self.step = jax.jit(self.env.reset), jax.jit(self.env.step)
    self.init = jax.jit(source.init)
    # (key, inner, model-format action) -> the library's own step's obs, in wmrl's format
    self.library_step = jax.jit(library_step)
    self.keys = tuple(source.obs_spec)

  def cut(self, state, action, steps, terminal):
    """Steps `action` until the episode ends, at step `steps` exactly; checks the cut."""
    action = jnp.asarray(action, jnp.float32)[None]
    for t in range(steps):
      prev = state
      state, out = self.step(state, action)
      assert not out["is_first"][0]
      assert bool(out["is_last"][0]) == (t == steps - 1), t
      assert bool(out["is_terminal"][0]) == (terminal and t == steps - 1), t
    # The final observation is the library's own, not a reset's.
    expected = self.library_step(_keys(prev)[0], _unbatch(prev.inner), action[0])
    _assert_obs(_obs(out, self.keys), expected)
    return state, out

  def restart(self, state, action, other_action, first):
    """The step after an end: a fresh first step, whatever the action."""
    _, init_key = _keys(state)
    s1, o1 = self.step(state, jnp.asarray(action, jnp.float32)[None])
    s2, o2 = self.step(state, jnp.asarray(other_action, jnp.float32)[None])
    for a, b in zip(jax.tree.leaves((s1, o1)), jax.tree.leaves((s2, o2))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert o1["is_first"][0] and not o1["is_last"][0] and not o1["is_terminal"][0]
    assert o1["reward"][0] == 0.0
    assert int(s1.time[0]) == 0 and not s1.done[0]
    _assert_obs(_obs(o1, self.keys), self.init(init_key)[1])
    # A fresh initial state, not the previous episode's first one again.
    assert any(not np.array_equal(o1[k][0], first[k][0]) for k in self.keys)
    return s1, o1

  def step_inner(self, change, action):
    """One step from a first state whose inner state `change` edits."""
    state, _ = self.reset(0)
    state = state._replace(inner=jax.tree.map(lambda x: x[None], change(_unbatch(state.inner))))
    return self.step(state, jnp.asarray(action, jnp.float32)[None])

  def check(self, action, other_action, limit, make_terminal=None, terminal_action=None,
            terminal_steps=1):
    """Episode 1 cut by the time limit, episode 2 by a termination."""
    state, first = self.reset(0)
    state, _ = self.cut(state, action, limit, terminal=False)
    state, first = self.restart(state, action, other_action, first)
    if terminal_action is None:
      return
    if make_terminal is not None:
      inner = make_terminal(_unbatch(state.inner))
      state = state._replace(inner=jax.tree.map(lambda x: x[None], inner))
    state, _ = self.cut(state, terminal_action, terminal_steps, terminal=True)
    self.restart(state, action, other_action, first)


def test_gymnax_cartpole():
  import gymnax
  env, params = gymnax.make("CartPole-v1")
  source = jaxenvs.source("gymnax:CartPole-v1")
  assert source.time_limit == 500
  library = lambda key, inner, action: {
      "obs": env.step_env(key, inner, jnp.argmax(action), params)[0]}
  left, right = jnp.eye(2)
  Contract(source, 5, library).check(right, left, limit=5)
  # Pushing right knocks the pole over within a few steps: a termination (limit 500).
  contract = Contract(source, None, library)
  state, first = contract.reset(0)
  steps = 0
  while True:  # find the step it falls at, then check that episode again exactly
    state, out = contract.step(state, right[None])
    steps += 1
    if out["is_last"][0]:
      break
    assert steps < 50
  state, _ = contract.cut(contract.reset(0)[0], right, steps, terminal=True)
  contract.restart(state, right, left, first)


def test_gymnax_pendulum_scales_actions_to_max_torque():
  import gymnax
  env, params = gymnax.make("Pendulum-v1")
  source = jaxenvs.source("gymnax:Pendulum-v1")
  assert source.act_spec.kind == "continuous" and source.time_limit == 200
  key = jax.random.PRNGKey(0)
  inner, _ = source.init(key)
  for action, torque in ((1.0, params.max_torque), (-1.0, -params.max_torque), (0.0, 0.0)):
    _, obs, reward, terminated = source.transition(key, inner, jnp.array([action]))
    obs2, _, reward2, _, _ = env.step_env(key, inner, jnp.array([torque]), params)
    np.testing.assert_allclose(obs["obs"], obs2, rtol=1e-6)
    np.testing.assert_allclose(reward, reward2, rtol=1e-6)
    assert not terminated
  library = lambda key, inner, action: {
      "obs": env.step_env(key, inner, action * params.max_torque, params)[0]}
  Contract(source, 3, library).check(jnp.array([1.0]), jnp.array([-1.0]), limit=3)


def test_craftax_classic_symbolic():
  from craftax.craftax_env import make_craftax_env_from_name
  env = make_craftax_env_from_name("Craftax-Classic-Symbolic-v1", auto_reset=False)
  params = env.default_params
  source = jaxenvs.source("craftax:Craftax-Classic-Symbolic-v1")
  assert source.time_limit == params.max_timesteps == 10000
  library = lambda key, inner, action: {
      "obs": env.step_env(key, inner, jnp.argmax(action), params)[0]}
  noop, left = jnp.eye(17)[0], jnp.eye(17)[1]
  # Death: health 0 ends the game on the next step (a true termination).
  dead = lambda inner: inner.replace(player_health=jnp.zeros_like(inner.player_health))
  contract = Contract(source, 3, library)
  contract.check(noop, left, limit=3, make_terminal=dead, terminal_action=noop)
  # Craftax's own game over includes reaching max_timesteps; the source's termination does not.
  out = contract.step_inner(lambda inner: inner.replace(
      timestep=jnp.full_like(inner.timestep, params.max_timesteps - 1)), noop)
  assert env.is_terminal(_unbatch(out[0].inner), params) and not out[1]["is_last"][0]


def test_navix_empty_random():
  import navix
  name = "Navix-Empty-Random-5x5-v0"
  env = navix.make(name, max_steps=None)
  source = jaxenvs.source(f"navix:{name}")
  assert source.time_limit == env.max_steps == 100
  assert source.act_spec.sizes == (7,)
  library = lambda key, inner, action: {
      "obs": env._step(inner, jnp.argmax(action)).observation.reshape(-1).astype(jnp.float32)}
  rotate, turn_back, forward = jnp.eye(7)[0], jnp.eye(7)[1], jnp.eye(7)[2]

  def next_to_goal(timestep):  # west of the goal, facing east (direction 0)
    player, goal = timestep.state.entities["player"], timestep.state.entities["goal"]
    player = player.replace(position=goal.position - jnp.array([0, 1]),
                            direction=jnp.zeros_like(player.direction))
    entities = {**timestep.state.entities, "player": player}
    return timestep.replace(state=timestep.state.replace(entities=entities))

  contract = Contract(source, 3, library)
  contract.check(rotate, turn_back, limit=3, make_terminal=next_to_goal, terminal_action=forward)
  # Navix's own TRUNCATION at max_steps is no termination.
  state, out = contract.step_inner(lambda timestep: timestep.replace(t=timestep.t * 0 + 99), rotate)
  assert out["is_last"][0] == out["is_terminal"][0] == False  # noqa: E712
  assert _unbatch(state.inner).step_type == navix.StepType.TRUNCATION


def test_playground_cartpole_balance():
  from wmrl.jaxenvs import playground_source
  source = jaxenvs.source("playground:CartpoleBalance")
  env, _ = playground_source.load("CartpoleBalance")  # the source's raw environment
  assert source.time_limit == 1000 and source.act_spec.sizes == (1,)
  library = lambda key, inner, action: {"obs": env.step(inner, action).obs}

  # Playground's only `done` is diverged physics: NaN velocities end the episode.
  def diverged(state):
    return state.replace(data=state.data.replace(qvel=jnp.full_like(state.data.qvel, jnp.nan)))

  Contract(source, 3, library).check(jnp.array([1.0]), jnp.array([-1.0]), limit=3,
                                     make_terminal=diverged, terminal_action=jnp.array([1.0]))
