"""The dynamics contract (wmrl/dynamics/contract.py), checked on every registered
sequence model: shapes, `observe` against repeated `obs_step`, episode resets
inside a window, `imagine` with a policy and with given actions, replay
entries back to a carry, one compilation, and a vmap over seeds. A model
registered without small settings in `SETTINGS` fails here, so a new model
gets these checks by adding one line."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import counter_config, load_saved
from wmrl import dynamics, run
from wmrl.dynamics.config import RSSMConfig, SSMConfig
from wmrl.logging import read_metrics
from wmrl.replay import Positions
from wmrl.trees import arrays_tree, tree_named

# Settings small enough for CPU unit tests, for every registered model.
SETTINGS = {
    "rssm": RSSMConfig(deter=32, hidden=16, stoch=4, classes=4, blocks=2),
    "ssm": SSMConfig(deter=32, units=16, state=8, layers=2, hidden=16, stoch=4, classes=4),
}
EMBED, ACTIONS, B, T = 10, 3, 2, 7


@dataclasses.dataclass(frozen=True)
class ModelSettings:
  """A model config with every registered model's settings, as ModelConfig has."""

  dynamics: str
  rssm: RSSMConfig = SETTINGS["rssm"]
  ssm: SSMConfig = SETTINGS["ssm"]


def build(name, seed=0):
  return dynamics.make(ModelSettings(name), EMBED, ACTIONS, rngs=nnx.Rngs(seed),
                       dtype=jnp.float32)


def window(seed=1, resets=((0, 3), (1, 0))):
  k = jax.random.split(jax.random.key(seed), 2)
  embeds = jax.random.normal(k[0], (B, T, EMBED))
  actions = jax.random.normal(k[1], (B, T, ACTIONS))
  first = np.zeros((B, T), bool)
  for b, t in resets:
    first[b, t] = True
  return actions, embeds, jnp.asarray(first)


def some_carry(model, seed=2):
  """A carry other than the initial one: a few observed steps."""
  actions, embeds, first = window(seed, resets=((0, 0), (1, 0)))
  return model.observe(model.initial((B,)), actions, embeds, first, jax.random.key(seed))[0]


def assert_trees_close(a, b, tol=1e-5):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=tol, rtol=tol)


def test_every_registered_model_has_small_settings_here():
  assert sorted(dynamics.names()) == sorted(SETTINGS)


@pytest.fixture(params=sorted(SETTINGS))
def name(request):
  return request.param


def test_shapes(name):
  model = build(name)
  carry = model.initial((B,))
  actions, embeds, first = window()
  last, latents, losses, metrics = model.observe(carry, actions, embeds, first, jax.random.key(0))
  assert model.features(latents).shape == (B, T, model.feat_dim)
  assert model.features(last).shape == (B, model.feat_dim)
  assert sum(model.feat_split) == model.feat_dim
  assert set(losses) == set(model.loss_names)
  assert all(v.shape == (B, T) for v in losses.values())
  assert all(np.isfinite(v) for v in jax.tree.leaves(metrics))
  step = model.obs_step(carry, actions[:, 0], embeds[:, 0], first[:, 0], jax.random.key(0))
  assert jax.tree.structure(step) == jax.tree.structure(carry)
  starts = model.starts(latents)
  assert model.features(starts).shape == (B * T, model.feat_dim)
  assert model.policy_features(latents).shape == (B, T, model.policy_feat_dim)
  assert model.policy_features(starts).shape == (B * T, model.policy_feat_dim)


def test_observe_equals_repeated_obs_step_with_resets_inside_the_window(name):
  model = build(name)
  carry = some_carry(model)
  actions, embeds, first = window()
  key = jax.random.key(3)
  last, latents, _, _ = model.observe(carry, actions, embeds, first, key)
  stepped, steps = carry, []
  for t, k in enumerate(jax.random.split(key, T)):
    stepped = model.obs_step(stepped, actions[:, t], embeds[:, t], first[:, t], k)
    steps.append(stepped)
  assert_trees_close(latents, jax.tree.map(lambda *x: jnp.stack(x, 1), *steps))
  assert_trees_close(last, stepped)


def test_a_reset_inside_a_window_forgets_what_came_before(name):
  """From a step marked is_first on, a window gives what a window starting
  there from any carry gives: nothing before the reset leaks through."""
  model = build(name)
  actions, embeds, first = window(resets=((0, 3), (1, 3)))
  key = jax.random.key(4)
  keys = jax.random.split(key, T)
  carries = []
  for carry in (model.initial((B,)), some_carry(model, seed=5)):
    for t, k in enumerate(keys):
      carry = model.obs_step(carry, actions[:, t], embeds[:, t], first[:, t], k)
      if t == 3:
        carries.append(carry)
  # And the same with other steps before the reset.
  _, latents, _, _ = model.observe(some_carry(model, 6), actions.at[:, :3].set(9.0),
                                   embeds.at[:, :3].set(-9.0), first, key)
  assert_trees_close(carries[0], carries[1])
  assert_trees_close(model.features(carries[0]), model.features(latents)[:, 3])


def test_imagine_with_a_policy_equals_imagine_with_its_actions(name):
  model = build(name)
  start = some_carry(model)
  weights = jax.random.normal(jax.random.key(7), (model.feat_dim, ACTIONS))
  policy = lambda carry, key: jnp.tanh(model.features(carry) @ weights)
  latents, actions = model.imagine(start, policy, 5, jax.random.key(8))
  assert model.features(latents).shape == (B, 5, model.feat_dim) and actions.shape == (B, 5, ACTIONS)
  given, taken = model.imagine(start, actions, None, jax.random.key(8))
  assert_trees_close(latents, given)
  np.testing.assert_array_equal(taken, actions)
  with pytest.raises(ValueError, match="horizon"):
    model.imagine(start, actions, 4, jax.random.key(8))
  with pytest.raises(ValueError, match="horizon"):
    model.imagine(start, policy, None, jax.random.key(8))


def test_replay_entries_round_trip_to_the_same_continuation(name):
  """A carry stored as entries (by tree path, as replay keeps them) and read
  back through `truncate` continues exactly as the carry itself does."""
  model = build(name)
  carry = some_carry(model)
  stored = {k: np.asarray(v) for k, v in tree_named(model.entries(carry), "latent").items()}
  restored = model.truncate(arrays_tree(model.entries(model.initial((B,))),
                                        {k: jnp.asarray(v) for k, v in stored.items()}, "latent"))
  actions, embeds, first = window(resets=())
  a = model.observe(carry, actions, embeds, first, jax.random.key(9))[1]
  b = model.observe(restored, actions, embeds, first, jax.random.key(9))[1]
  assert_trees_close(a, b, tol=0)


def test_observe_compiles_once_for_windows_of_one_shape(name):
  model = build(name)
  graph, params = nnx.split(model)
  traces = []

  @jax.jit
  def observe(params, carry, actions, embeds, first, key):
    traces.append(1)
    m = nnx.merge(graph, params)
    return m.observe(carry, actions, embeds, first, key)[1]

  carry = model.initial((B,))
  for seed in (1, 2, 3):
    jax.block_until_ready(observe(params, carry, *window(seed), jax.random.key(seed)))
  assert len(traces) == 1


def test_vmap_over_seeds_equals_each_seed_alone(name):
  models = [build(name, seed) for seed in (0, 1)]
  graph, _ = nnx.split(models[0])
  params = [nnx.split(m)[1] for m in models]
  stacked = jax.tree.map(lambda *x: jnp.stack(x), *params)
  actions, embeds, first = window()

  def observe(params, key):
    m = nnx.merge(graph, params)
    return m.features(m.observe(m.initial((B,)), actions, embeds, first, key)[1])

  keys = jax.random.split(jax.random.key(10), 2)
  together = jax.vmap(observe)(stacked, keys)
  for i in range(2):
    np.testing.assert_allclose(together[i], observe(params[i], keys[i]), atol=1e-5, rtol=1e-5)


def test_a_run_stores_the_models_entries_and_resumes_exactly(tmp_path, name):
  """Through the whole runtime: replay keeps the model's entries with every
  step, training writes its posteriors' entries back, and a resumed run
  equals an uninterrupted one (resumed where an episode ends: episodes of the
  83 steps, right after an episode)."""
  config = lambda steps: counter_config(steps, **{"model.dynamics": name})
  run.train(config(83), tmp_path / "resumed", console=False)
  run.train(config(166), tmp_path / "resumed", console=False)
  run.train(config(166), tmp_path / "straight", console=False)
  resumed, replay_a, _, _ = load_saved(tmp_path / "resumed")
  straight, replay_b, _, _ = load_saved(tmp_path / "straight")
  for key in resumed:
    np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)
  model = build(name)
  assert {k for k in replay_a.keys if k.startswith("latent/")} == set(
      tree_named(model.entries(model.initial((1,))), "latent"))
  everything = Positions(np.zeros(1, int), np.zeros(1, int))
  stored_a, stored_b = replay_a.gather(everything, 166), replay_b.gather(everything, 166)
  for key in stored_a:
    np.testing.assert_array_equal(stored_a[key], stored_b[key], err_msg=key)


def test_a_run_trains_on_long_windows_with_replay_context(tmp_path, name):
  """Windows of 256 steps, each across a dozen counter episodes (20 steps),
  start from the replay context's stored entries and train to finite losses
  (training starts at step 512, when replay holds 256 windows of 257)."""
  config = counter_config(620, log_every=20, **{
      "model.dynamics": name, "run.batch_size": 1, "run.batch_length": 256,
      "run.replay_context": 1, "run.train_ratio": 8})
  run.train(config, tmp_path, console=False)
  trained = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "loss/rec" in r]
  assert len(trained) >= 3
  assert all(np.isfinite(r[k]) for r in trained for k in r if k.startswith("loss/"))


def test_the_ssm_policy_reads_the_inputs_it_is_given():
  # R2I's actor reads [deter, stoch, hidden] by default, [stoch, hidden] on POPGym.
  carry = some_carry(build("ssm"))
  for inputs in (("deter", "stoch", "hidden"), ("stoch", "hidden"), ("deter", "stoch")):
    settings = dataclasses.replace(SETTINGS["ssm"], policy_inputs=inputs)
    model = dynamics.make(ModelSettings("ssm", ssm=settings), EMBED, ACTIONS, rngs=nnx.Rngs(0),
                          dtype=jnp.float32)
    parts = {"deter": carry.deter, "stoch": carry.stoch.reshape(B, -1),
             "hidden": carry.hidden.reshape(B, -1)}
    expected = np.concatenate([parts[k] for k in inputs], -1)
    np.testing.assert_array_equal(model.policy_features(carry), expected)
    assert expected.shape[-1] == model.policy_feat_dim
