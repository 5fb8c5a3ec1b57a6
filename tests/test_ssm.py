"""The SSM sequence model (wmrl/dynamics/ssm.py): its recurrence against the
formula in NumPy, stability, its parallel scan against its steps over long
windows with resets, gradients at T=1024 and parameter counts per size.
The contract's checks run in tests/test_dynamics_contract.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from wmrl.config import Config
from wmrl.dynamics.config import SSMConfig
from wmrl.dynamics.ssm import SSM, LinearRecurrence
from wmrl.nets import count_params
from wmrl.presets import apply_presets

SMALL = SSMConfig(deter=32, units=16, state=8, layers=2, hidden=16, stoch=4, classes=4)


def complex_param(p):
  p = np.asarray(p[...], np.float64)
  return p[..., 0] + 1j * p[..., 1]


def test_a_recurrence_step_is_the_formula():
  layer = LinearRecurrence(6, 5, SMALL, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  h = rng.normal(size=(3, 5)) + 1j * rng.normal(size=(3, 5))
  x = rng.normal(size=(3, 6)).astype(np.float32)
  first = np.array([False, True, False])
  new_h, y = layer.step(jnp.asarray(h, jnp.complex64), jnp.asarray(x), jnp.asarray(first))
  nu, theta = np.exp(np.asarray(layer.nu_log[...], np.float64)), np.exp(np.asarray(layer.theta_log[...], np.float64))
  lam = np.exp(-nu + 1j * theta)
  gamma = np.exp(np.asarray(layer.gamma_log[...], np.float64))
  b = complex_param(layer.b)  # [units, state, (re, im)]
  c = np.asarray(layer.c[...], np.float64)  # [state, (re, im), units]
  c = c[:, 0] + 1j * c[:, 1]
  h = np.where(first[:, None], complex_param(layer.initial), h)
  expected_h = lam * h + gamma * (x @ b)
  expected_y = np.real(expected_h @ c) + np.asarray(layer.d[...]) * x
  np.testing.assert_allclose(new_h, expected_h, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(y, expected_y, rtol=1e-4, atol=1e-5)


def test_eigenvalues_start_on_the_ring_and_stay_inside_the_unit_circle():
  layer = LinearRecurrence(4, 64, SMALL, rngs=nnx.Rngs(1))
  radius = np.abs(np.asarray(layer.decay()))
  assert SMALL.r_min - 1e-6 <= radius.min() and radius.max() <= SMALL.r_max + 1e-6
  # Any parameter values: exp(-exp(nu)) < 1 for every finite nu (1 within
  # float32 rounding where exp(nu) underflows).
  layer.nu_log[...] = jnp.linspace(-30.0, 5.0, 64)
  assert np.all(np.abs(np.asarray(layer.decay())) <= 1.0 + 1e-6)
  # gamma keeps each state's variance at one for white-noise input.
  np.testing.assert_allclose(np.exp(2 * np.asarray(layer.gamma_log[...])) + radius ** 2, 1.0,
                             rtol=1e-5)


def _window(T, seed, embed=10, actions=3, batch=2, resets=4):
  rng = np.random.default_rng(seed)
  first = np.zeros((batch, T), bool)
  first[:, 0] = rng.random(batch) < 0.5
  first[np.arange(batch).repeat(resets), rng.integers(1, T, batch * resets)] = True
  return (jnp.asarray(rng.normal(size=(batch, T, actions)), jnp.float32),
          jnp.asarray(rng.normal(size=(batch, T, embed)), jnp.float32), jnp.asarray(first))


def test_the_parallel_scan_equals_the_steps_over_256_steps_with_resets():
  model = SSM(SMALL, 10, 3, rngs=nnx.Rngs(2))
  actions, embeds, first = _window(256, seed=3)
  key = jax.random.key(4)
  start = model.observe(model.initial((2,)), *_window(9, seed=5), jax.random.key(5))[0]
  _, parallel, _, _ = jax.jit(lambda c, a, e, f, k: model.observe(c, a, e, f, k))(
      start, actions, embeds, first, key)

  def step(carry, inputs):
    a, e, f, k = inputs
    carry = model.obs_step(carry, a, e, f, k)
    return carry, carry

  swap = lambda x: jnp.swapaxes(x, 0, 1)
  _, stepped = jax.lax.scan(step, start, (swap(actions), swap(embeds), swap(first),
                                          jax.random.split(key, 256)))
  stepped = jax.tree.map(swap, stepped)
  np.testing.assert_array_equal(parallel.stoch, stepped.stoch)  # same draws
  np.testing.assert_allclose(parallel.hidden, stepped.hidden, atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(parallel.deter, stepped.deter, atol=1e-4, rtol=1e-4)


def test_gradients_are_finite_over_1024_steps():
  model = SSM(SMALL, 10, 3, rngs=nnx.Rngs(6))
  graph, params = nnx.split(model)
  actions, embeds, first = _window(1024, seed=7, resets=1)

  def loss(params):
    m = nnx.merge(graph, params)
    _, latents, losses, _ = m.observe(m.initial((2,)), actions, embeds, first, jax.random.key(8))
    return sum(v.mean() for v in losses.values()) + (m.features(latents) ** 2).mean()

  grads = jax.jit(jax.grad(loss))(params)
  leaves = jax.tree.leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert any(np.abs(g).max() > 0 for g in leaves)


def expected_count(c: SSMConfig, embed: int, actions: int) -> int:
  """The SSM's parameters, counted from its layout by hand."""
  stoch = c.stoch * c.classes
  dense = lambda i, o: i * o + o + o  # kernel, bias, norm scale
  mlp = lambda i, units, layers: sum(dense(a, units) for a in [i] + [units] * (layers - 1))
  recurrence = 3 * c.state + 2 * c.units * c.state * 2 + c.units + 2 * c.state
  layer = c.units + recurrence + (c.units * 2 * c.units + 2 * c.units)
  return (dense(stoch + actions, c.units) + c.layers * layer + c.units + dense(c.units, c.deter)
          + mlp(c.deter, c.hidden, c.img_layers) + c.hidden * stoch + stoch
          + mlp(embed, c.hidden, c.obs_layers) + c.hidden * stoch + stoch)


@pytest.mark.parametrize("size, expected", [("size1m", 150_848), ("size12m", 2_323_712)])
def test_parameter_counts_per_size(size, expected):
  """About 40% of the RSSM's at the same size (364,416 and 5,733,888 with these inputs)."""
  config = apply_presets(Config(), size).model.ssm
  shapes = nnx.eval_shape(lambda: SSM(config, 64, 6, rngs=nnx.Rngs(0)))
  count = count_params(nnx.state(shapes, nnx.Param))
  assert count == expected_count(config, 64, 6) == expected
