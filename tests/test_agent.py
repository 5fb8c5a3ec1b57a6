"""The agent's pure functions: shapes, gradients, compile-once, learning on a fixed batch."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import batch_with_terminal, tiny_config
from wmrl import algorithms
from wmrl.algorithms.dreamerv3 import agent
from wmrl.config import Config
from wmrl.presets import apply_presets
from wmrl.spaces import ActionSpec, ArraySpec
from wmrl.testing import SPACES, WALKER_ACT, WALKER_OBS, entry_specs


def _batch_for(config, obs_spec, act_spec, seed=0, state=None):
  """A batch [B, context + T] for `config`; with a replay context it holds the
  stored latents of `state`'s model (random values)."""
  length = config.run.replay_context + config.run.batch_length
  if state is None:
    state = jax.eval_shape(lambda k: agent.init(k, obs_spec, act_spec, config), jax.random.key(0))
  entries = entry_specs(agent.DREAMERV3, state) if config.run.replay_context else None
  return batch_with_terminal(obs_spec, act_spec, config.run.batch_size, length, seed, entries)


# Parameter counts of the reference implementation for DMC walker-walk
# (24 observation values in 3 keys, 6 continuous actions), by part.
REFERENCE_COUNTS = {
    "size12m": {"dynamics": 5_783_040, "critic": 853_503, "decoder": 794_136, "actor": 791_052,
                "reward": 721_407, "continue": 656_129, "encoder": 138_752, "total": 9_738_019},
    "size1m": {"total": 640_867},
}


def _reference_image_counts():
  """The reference's encoder and decoder sizes at size12m for 64x64x3 images, by hand
  from `dreamerv3/rssm.py` (kernel 5, depth 16, mults 2, 3, 4, 4: channels 32, 48,
  64, 64; 4 stages down to a 4x4x64 grid; deter 2048, stoch 32 x 16 = 512, units 256;
  RMS norms have a scale and no shift)."""
  conv = lambda cin, cout: 5 * 5 * cin * cout + cout
  encoder = sum(conv(a, b) + b for a, b in ((3, 32), (32, 48), (48, 64), (64, 64)))
  grid = 4 * 4 * 64
  decoder = ((8 * (2048 // 8) * (grid // 8) + grid)  # sp0: block-linear on deter, 8 blocks
             + (512 * 512 + 512) + 512  # sp1 (stoch -> 2 x units) and its norm
             + (512 * grid + grid) + 64  # sp2 (-> the grid) and spnorm
             + sum(conv(a, b) + b for a, b in ((64, 64), (64, 48), (48, 32)))  # conv2, 1, 0
             + conv(32, 3))  # imgout
  return {"encoder": encoder, "decoder": decoder}


def test_image_encoder_and_decoder_counts_match_reference():
  config = apply_presets(Config(), "size12m")
  obs = {"image": ArraySpec((64, 64, 3), "uint8")}
  state = jax.eval_shape(lambda k: agent.init(k, obs, ActionSpec("discrete", (6,)), config),
                         jax.random.key(0))
  counts = agent.param_counts(state)
  expected = _reference_image_counts()
  assert expected == {"encoder": 220_416, "decoder": 1_272_003}  # the sums written out
  assert {k: counts[k] for k in expected} == expected


@pytest.mark.parametrize("preset", ["size1m", "size12m"])
def test_parameter_counts_match_reference(preset):
  config = apply_presets(Config(), preset)
  # eval_shape builds the parameter shapes without allocating or computing them.
  state = jax.eval_shape(lambda k: agent.init(k, WALKER_OBS, WALKER_ACT, config), jax.random.key(0))
  counts = agent.param_counts(state)
  for part, expected in REFERENCE_COUNTS[preset].items():
    assert counts[part] == expected, (part, counts[part], expected)


@pytest.mark.parametrize("kind", list(SPACES))
def test_policy_and_train_step_shapes(kind):
  obs_spec, act_spec = SPACES[kind]
  config = tiny_config()
  state = agent.init(jax.random.key(0), obs_spec, act_spec, config)
  num_envs = 3
  obs = {k: v[:, 0] for k, v in _batch_for(config.replace(**{"run.batch_size": num_envs}),
                                            obs_spec, act_spec).items() if k in obs_spec}
  obs["is_first"] = jnp.ones((num_envs,), bool)
  carry = agent.initial_carry(state, num_envs)
  for mode in ("train", "eval"):
    action, new_carry = agent.policy_step(state, obs, carry, jax.random.key(1), mode)
    assert action.shape == (num_envs, act_spec.dim) and action.dtype == jnp.float32
    assert jax.tree.map(jnp.shape, new_carry) == jax.tree.map(jnp.shape, carry)
    if act_spec.discrete:
      choices = act_spec.to_indices(np.asarray(action))
      np.testing.assert_array_equal(act_spec.from_indices(choices), np.asarray(action))
    else:
      assert np.all(np.abs(np.asarray(action)) <= 1.0)
  new_state, metrics, _ = agent.train_step(state, _batch_for(config, obs_spec, act_spec))
  assert int(new_state.step) == 1
  for name, value in metrics.items():
    assert np.isfinite(float(value)), name
  for part in ("rec", "rew", "con", "dyn", "rep", "policy", "value", "repval"):
    assert f"loss/{part}" in metrics


def test_bfloat16_compute_dtype_keeps_float32_params():
  obs_spec, act_spec = SPACES["dict-multidiscrete"]
  config = tiny_config(**{"model.compute_dtype": "bfloat16"})
  state = agent.init(jax.random.key(0), obs_spec, act_spec, config)
  new_state, metrics, _ = agent.train_step(state, _batch_for(config, obs_spec, act_spec))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(new_state.params))
  assert np.isfinite(float(metrics["loss/rec"]))


def _grads(config, obs_spec, act_spec):
  state = agent.init(jax.random.key(0), obs_spec, act_spec, config)
  data, prev = agent.split_batch(_batch_for(config, obs_spec, act_spec), config.run.replay_context)
  grads, _ = jax.grad(agent.loss, has_aux=True)(state.params, state, data, prev, jax.random.key(2))
  norm = lambda tree: float(sum(jnp.abs(x).sum() for x in jax.tree.leaves(tree)))
  return {name: norm(tree) for name, tree in grads.items()}


def _only(*terms):
  scales = ("rec", "rew", "con", "dyn", "rep", "policy", "value", "repval")
  return {f"loss_scales.{s}": (1.0 if s in terms else 0.0) for s in scales}


def test_world_model_losses_do_not_reach_actor_or_critic():
  grads = _grads(tiny_config(**_only("rec", "rew", "con", "dyn", "rep")),
                 *SPACES["vector-continuous"])
  assert grads["wm"] > 0
  assert grads["actor"] == 0 and grads["critic"] == 0


def test_actor_loss_does_not_change_world_model_or_critic():
  grads = _grads(tiny_config(**_only("policy")), *SPACES["vector-continuous"])
  assert grads["actor"] > 0
  assert grads["wm"] == 0 and grads["critic"] == 0


def test_critic_loss_in_imagination_does_not_change_world_model():
  grads = _grads(tiny_config(**_only("value")), *SPACES["image-discrete"])
  assert grads["critic"] > 0
  assert grads["wm"] == 0 and grads["actor"] == 0


def test_replay_value_loss_reaches_world_model_only_with_repval_grad():
  spaces = SPACES["vector-continuous"]
  # The critic's output layer starts at zero, which would pass no gradient
  # back to its inputs; a random one shows where gradients can flow.
  overrides = {**_only("repval"), "model.critic.outscale": 1.0}
  with_grad = _grads(tiny_config(**overrides), *spaces)
  assert with_grad["critic"] > 0 and with_grad["wm"] > 0 and with_grad["actor"] == 0
  without = _grads(tiny_config(**overrides, **{"behavior.repval_grad": False}), *spaces)
  assert without["critic"] > 0 and without["wm"] == 0


def test_reward_scale_is_the_loss_of_rewards_times_the_scale():
  """behavior.reward_scale multiplies the rewards every loss reads, and nothing else."""
  spaces = SPACES["vector-continuous"]
  # Heads that start at zero predict one loss for any target; random ones do not.
  heads = {"run.replay_context": 0, "model.reward.outscale": 1.0, "model.critic.outscale": 1.0}
  config = tiny_config(**heads)
  state = agent.init(jax.random.key(0), *spaces, config)
  data, prev = agent.split_batch(_batch_for(config, *spaces), 0)
  scaled = tiny_config(**heads, **{"behavior.reward_scale": 48.0})
  scaled_state = agent.init(jax.random.key(0), *spaces, scaled)
  total = lambda s, d: float(jax.jit(agent.loss)(s.params, s, d, prev, jax.random.key(2))[0])
  scaled_loss = total(scaled_state, data)
  np.testing.assert_allclose(scaled_loss, total(state, {**data, "reward": data["reward"] * 48.0}),
                             rtol=1e-6)
  assert abs(scaled_loss - total(state, data)) > 1e-3
  with pytest.raises(ValueError, match="reward_scale"):
    algorithms.validate(tiny_config(**{"behavior.reward_scale": 0.0}))


def test_train_steps_return_the_steps_priorities_where_windows_are_drawn_by_them():
  """With replay.fracs.priority above 0 and the "model" signal, the train step
  returns each trained step's priority: its sequence-model and decoder losses
  (the reference's rep, dyn and decoder losses), so their mean is the sum of
  those losses' means; the reward and continue losses are not in it."""
  spaces = SPACES["vector-continuous"]
  fracs = {"replay.fracs.uniform": 0.5, "replay.fracs.priority": 0.5}
  config = tiny_config(**fracs)
  batch = _batch_for(config, *spaces)
  state = agent.init(jax.random.key(0), *spaces, config)
  _, metrics, written = agent.train_step(state, batch)
  trained = (config.run.batch_size, config.run.batch_length)
  assert written["priority"].shape == trained and {"latent/deter", "latent/stoch"} <= set(written)
  expected = sum(float(metrics[f"loss/{name}"]) for name in ("dyn", "rep", "rec"))
  np.testing.assert_allclose(float(written["priority"].mean()), expected, rtol=1e-5)
  assert abs(expected + float(metrics["loss/rew"]) - float(written["priority"].mean())) > 1e-4
  for off in (tiny_config(), tiny_config(**fracs, **{"replay.priosignal": "none"})):
    state = agent.init(jax.random.key(0), *spaces, off)
    assert "priority" not in agent.train_step(state, _batch_for(off, *spaces))[2]


def test_train_step_compiles_once_over_updates(monkeypatch):
  """Catches a recompile on every update: a train step that returns its state in
  another form than it took (a dtype, a weak type, a tree, a static field that
  compares unequal), so each update after the first traces and compiles again.
  `update` runs in Python once per trace of the train step, not once per call."""
  traces = []
  real_update = agent.update

  def counted(*args):
    traces.append(1)
    return real_update(*args)

  monkeypatch.setattr(agent, "update", counted)
  obs_spec, act_spec = SPACES["vector-continuous"]
  # A setting no other test uses, so no other test's compile of this spec is reused
  # (which would leave nothing to count: the test would fail, not pass).
  config = tiny_config(**{"behavior.lam": 0.9501})
  state = agent.init(jax.random.key(0), obs_spec, act_spec, config)
  for seed in range(3):
    state, _, _ = agent.train_step(state, _batch_for(config, obs_spec, act_spec, seed))
  assert int(state.step) == 3
  assert len(traces) == 1


def test_slow_critic_is_ema_of_critic():
  obs_spec, act_spec = SPACES["vector-continuous"]
  config = tiny_config(**{"optim.warmup": 0, "optim.lr": 1e-2})
  state = agent.init(jax.random.key(0), obs_spec, act_spec, config)
  old_slow = jax.device_get(state.slow_critic)  # train_step donates the state it replaces
  new_state, _, _ = agent.train_step(state, _batch_for(config, obs_spec, act_spec))
  rate = config.behavior.slow_critic_rate
  for slow, old, new in zip(jax.tree.leaves(new_state.slow_critic), jax.tree.leaves(old_slow),
                            jax.tree.leaves(new_state.params["critic"])):
    np.testing.assert_allclose(slow, (1 - rate) * old + rate * new, rtol=1e-6, atol=1e-7)


def _bouncing_point_batch(batch_size, length, seed=0):
  """Sequences of a point that moves by its action and bounces inside [-1, 1]."""
  rng = np.random.default_rng(seed)
  pos = np.zeros((batch_size, length, 2), np.float32)
  action = rng.uniform(-1, 1, (batch_size, length, 2)).astype(np.float32)
  for t in range(1, length):
    pos[:, t] = np.clip(pos[:, t - 1] + 0.3 * action[:, t - 1], -1, 1)
  reward = -np.abs(pos).sum(-1).astype(np.float32)
  first = np.zeros((batch_size, length), bool)
  first[:, 0] = True
  zeros = np.zeros((batch_size, length), bool)
  return {"pos": pos, "action": action, "reward": reward, "is_first": first, "is_last": zeros,
          "is_terminal": zeros}


def test_world_model_loss_falls_on_fixed_batch():
  obs_spec = {"pos": ArraySpec((2,), "float32")}
  act_spec = ActionSpec("continuous", (2,))
  config = tiny_config(**{"optim.lr": 3e-3, "optim.warmup": 0, "run.batch_size": 8,
                          "run.batch_length": 16})
  state = agent.init(jax.random.key(0), obs_spec, act_spec, config)
  batch = _bouncing_point_batch(8, 17)
  for name, spec in entry_specs(agent.DREAMERV3, state).items():  # zero latents before step 1
    batch[name] = np.zeros((8, 17, *spec.shape), spec.dtype)
  history = []
  for _ in range(150):
    state, metrics, _ = agent.train_step(state, batch)
    history.append({k: float(metrics[f"loss/{k}"]) for k in ("rec", "rew")})
  first, last = history[0], np.mean([[h["rec"], h["rew"]] for h in history[-10:]], 0)
  assert last[0] < 0.3 * first["rec"], (first, last)
  assert last[1] < 0.5 * first["rew"], (first, last)


def test_init_rejects_bad_spaces():
  with pytest.raises(TypeError, match="ActionSpec"):
    agent.init(jax.random.key(0), {"obs": ArraySpec((3,), "float32")}, "Discrete(3)", tiny_config())
  with pytest.raises(ValueError, match="reserved"):
    agent.init(jax.random.key(0), {"reward": ArraySpec((3,), "float32")},
               ActionSpec("discrete", (2,)), tiny_config())
  with pytest.raises(ValueError, match="1-D"):
    agent.init(jax.random.key(0), {"grid": ArraySpec((3, 3), "float32")},
               ActionSpec("discrete", (2,)), tiny_config())


def test_states_that_differ_only_in_seed_stack_for_vmap():
  obs_spec, act_spec = SPACES["vector-continuous"]
  configs = [tiny_config(**{"run.seed": seed, "run.steps": 10 * seed + 1}) for seed in (0, 1)]
  states = [agent.init(jax.random.key(c.run.seed), obs_spec, act_spec, c) for c in configs]
  assert jax.tree.structure(states[0]) == jax.tree.structure(states[1])
  assert states[0].spec == states[1].spec  # the static part holds no run settings
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
  batches = [_batch_for(configs[0], obs_spec, act_spec, seed) for seed in (0, 1)]
  stacked_batch = jax.tree.map(lambda *xs: np.stack(xs), *batches)
  # What the vmapped update gives each seed, against each seed's own update.
  singles = [jax.device_get(agent.train_step(s, b)) for s, b in zip(states, batches)]
  vmapped, metrics, _ = jax.vmap(agent.train_step)(stacked, stacked_batch)
  assert metrics["loss/rec"].shape == (2,)
  for i, (single, _, _) in enumerate(singles):
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(vmapped.params)):
      # Bit-exact on this CPU (largest difference 0.0); the tolerance leaves room for
      # backends whose batched matmuls sum in another order than single ones.
      np.testing.assert_allclose(np.asarray(b[i]), np.asarray(a), rtol=1e-4, atol=1e-6)


def test_loss_names_and_shapes_are_checked():
  """Catches a loss that is made but not declared (or declared and not made), one
  without a scale (left out of the total), or one of the wrong shape (averaged
  over the wrong steps)."""
  scales = Config().loss_scales
  names = ("rec", "rew", "con", "dyn", "rep", "policy", "value")
  declared = (*names, "repval")
  good = {name: jnp.zeros((2, 5)) for name in names}
  means = agent.check_losses({**good, "repval": jnp.ones((2, 4))}, declared, scales, 2, 5)
  assert float(means["repval"]) == 1.0 and set(means) == set(declared)
  with pytest.raises(ValueError, match=r"the losses \[.*\] are not the declared losses .*'repval'"):
    agent.check_losses(good, declared, scales, 2, 5)  # repval declared and missing
  with pytest.raises(ValueError, match=r"the losses \['extra'\] have no scale in loss_scales"):
    agent.check_losses({**good, "extra": jnp.zeros((2, 5))}, (*names, "extra"), scales, 2, 5)
  with pytest.raises(ValueError, match="loss 'rew' has shape"):
    agent.check_losses({**good, "rew": jnp.zeros((10,)), "repval": jnp.ones((2, 4))}, declared,
                       scales, 2, 5)
  assert set(agent.check_losses(good, names, scales, 2, 5)) == set(names)


def test_metrics_are_prefixed_by_part():
  obs_spec, act_spec = SPACES["vector-continuous"]
  config = tiny_config()
  state = agent.init(jax.random.key(0), obs_spec, act_spec, config)
  _, metrics, _ = agent.train_step(state, _batch_for(config, obs_spec, act_spec))
  parts = {name.split("/")[0] for name in metrics}
  assert parts == {"wm", "ac", "replay", "loss", "opt"}, sorted(metrics)
  assert {"wm/kl", "ac/ret", "ac/entropy", "replay/ret", "opt/grad_norm"} <= set(metrics)


def test_policy_step_receives_only_world_model_and_actor_parameters():
  obs_spec, act_spec = SPACES["vector-continuous"]
  state = agent.init(jax.random.key(0), obs_spec, act_spec, tiny_config())
  obs = {"obs": np.zeros((1, 5), np.float32), "is_first": np.ones(1, bool)}
  carry = agent.initial_carry(state, 1)
  traced = jax.make_jaxpr(agent._policy_step, static_argnums=4)(
      agent.PolicyParams(state.params["wm"], state.params["actor"], state.spec), obs, carry,
      jax.random.key(0), "train")
  inputs = sum(int(np.prod(v.aval.shape)) for v in traced.jaxpr.invars)
  wm_and_actor = agent.param_counts(state)["total"] - agent.param_counts(state)["critic"]
  # Parameters plus the observation, carry and key: no optimiser moments or critic.
  assert wm_and_actor <= inputs < wm_and_actor + 1000


# --- replay context: the stored latent starts training, posteriors go back ------


def _fresh(config, kind="vector-continuous"):
  obs_spec, act_spec = SPACES[kind]
  return agent.init(jax.random.key(0), obs_spec, act_spec, config)


def test_replay_entries_are_the_dynamics_carry_by_tree_path():
  state = _fresh(tiny_config())
  carry = agent.initial_carry(state, 3)
  by_env = lambda x: x + jnp.arange(3.0).reshape(3, *[1] * (x.ndim - 1))  # rows that differ
  carry = carry._replace(latent=jax.tree.map(by_env, carry.latent))
  entries = agent.replay_entries(state, carry)
  assert set(entries) == {"latent/deter", "latent/stoch"}
  np.testing.assert_array_equal(entries["latent/deter"], carry.latent.deter)
  np.testing.assert_array_equal(entries["latent/stoch"], carry.latent.stoch)
  assert entry_specs(agent.DREAMERV3, state) == {
      "latent/deter": jax.ShapeDtypeStruct((32,), jnp.float32),
      "latent/stoch": jax.ShapeDtypeStruct((4, 4), jnp.float32)}


def test_training_starts_from_the_stored_latent_and_returns_its_posteriors():
  from wmrl.dynamics.rssm import Latent
  config = tiny_config()  # replay context 1
  obs_spec, act_spec = SPACES["vector-continuous"]
  batch = _batch_for(config, obs_spec, act_spec, seed=3)
  batch["latent/deter"] *= 3.0  # far from the zeros a start without context has
  state = _fresh(config)
  wm, _, _ = agent.modules(state.spec, state.params)
  _, loss_key = jax.random.split(state.key)
  wm_key, _, _ = jax.random.split(loss_key, 3)

  @jax.jit
  def by_hand(start):  # the posterior over the T steps after the context, from `start`
    data = {k: v[:, 1:] for k, v in batch.items()}
    _, post, _, _ = wm.dynamics.observe(start, batch["action"][:, :-1], wm.encoder(data),
                                        data["is_first"], wm_key)
    return post

  stored = Latent(batch["latent/deter"][:, 0], batch["latent/stoch"][:, 0])  # step K - 1 = 0
  expected = jax.device_get(by_hand(stored))
  from_zeros = jax.device_get(by_hand(wm.dynamics.initial((2,))))
  _, _, updates = agent.train_step(state, batch)
  updates = jax.device_get(updates)
  assert set(updates) == {"latent/deter", "latent/stoch"}
  assert updates["latent/deter"].shape == (2, 6, 32)
  assert updates["latent/stoch"].shape == (2, 6, 4, 4)
  np.testing.assert_allclose(updates["latent/deter"], expected.deter, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(updates["latent/stoch"], expected.stoch)
  # The start shows: from zeros the posteriors are others (until an episode starts).
  assert np.abs(from_zeros.deter[1] - expected.deter[1]).max() > 1e-2


def test_without_context_training_is_the_old_path_bit_for_bit():
  config = tiny_config(**{"run.replay_context": 0})
  obs_spec, act_spec = SPACES["vector-continuous"]
  batch = _batch_for(config, obs_spec, act_spec, seed=1)
  # Stored latents, where a replay holds them, are ignored without context.
  for name, spec in entry_specs(agent.DREAMERV3, _fresh(config)).items():
    batch[name] = np.full((2, 6, *spec.shape), 5.0, spec.dtype)

  @jax.jit
  def old_step(state, batch):  # zeros start, the first step's previous action zero
    action = batch["action"]
    prev = jnp.concatenate([jnp.zeros_like(action[:, :1]), action[:, :-1]], 1)
    return agent.update(state, None, batch, prev)[:2]

  old_state, old_metrics = jax.device_get(old_step(_fresh(config), batch))
  new_state, new_metrics, updates = jax.device_get(agent.train_step(_fresh(config), batch))
  assert updates == {}
  assert old_metrics.keys() == new_metrics.keys()
  for name in old_metrics:
    assert old_metrics[name] == new_metrics[name], name
  for a, b in zip(jax.tree.leaves(old_state.params), jax.tree.leaves(new_state.params)):
    np.testing.assert_array_equal(a, b)


def test_a_step_before_an_episode_start_in_the_window_is_last():
  batch = {"is_first": np.array([[1, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 1]], bool),
           "is_last": np.array([[0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0]], bool),
           "action": np.zeros((2, 6, 1), np.float32)}
  data, _ = agent.split_batch(batch, 1)
  # Row 0: step 2 precedes the start at 3; row 1: 1 already ends, 4 precedes the start at 5.
  # The window's last step has no next step in the window and stays as it is.
  np.testing.assert_array_equal(data["is_last"], [[0, 1, 0, 0, 0], [1, 0, 0, 1, 0]])
  np.testing.assert_array_equal(data["is_first"], batch["is_first"][:, 1:])
  data, _ = agent.split_batch(batch, 0)
  np.testing.assert_array_equal(data["is_last"], [[0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 1, 0]])


def test_context_without_stored_latents_is_refused_naming_them():
  config = tiny_config()
  obs_spec, act_spec = SPACES["vector-continuous"]
  batch = batch_with_terminal(obs_spec, act_spec, 2, 7)
  with pytest.raises(ValueError, match=r"no latent/deter, latent/stoch: with run.replay_context=1.*"
                                       r"replay_entries"):
    agent.train_step(_fresh(config), batch)
  batch = _batch_for(config, obs_spec, act_spec)
  batch["latent/deter"] = batch["latent/deter"][..., :8]
  with pytest.raises(ValueError,
                     match=r"latent/deter has step shape \(8,\), the model's latent \(32,\)"):
    agent.train_step(_fresh(config), batch)
  with pytest.raises(ValueError, match="reserved"):
    agent.init(jax.random.key(0), {"latent/deter": ArraySpec((3,), "float32")},
               ActionSpec("discrete", (2,)), config)
