"""Given random draws for the parity harness, shared by both of its processes.

`benchmarks/parity.py` (wmrl's environment) and `benchmarks/parity_reference.py`
(the reference's) import this file; it needs only JAX and NumPy, so it runs
under either JAX version. Both sides' samplers are patched, inside the
harness only, to read their randomness from `DRAWS` instead of a key:

- a categorical (a latent's class, a discrete action) is drawn by inverting
  the CDF of its probabilities at one given uniform number, `categorical`;
- a continuous action is `mean + std * noise` with given standard-normal noise.

Each draw is looked up by the role of the code that asks for it and its
kind: `observe/stoch` (posterior latents), `imagine/stoch` (prior latents in
imagination), `imagine/act` (actions in imagination) and `last/act` (the
action at the last imagined state, drawn outside the rollout). The role is
set by wrapping the sequence model's `observe` and `imagine` methods
(`role(...)`), and inside a `jax.lax.scan` started in one of these roles the
scan's step index picks the draw of that step: `DRAWS[name][step]`. Outside a
scan (single steps) the draw is `DRAWS[name]` itself. Both sides' rollouts
consume the same arrays in the same order, whatever key each side splits.
"""
from __future__ import annotations

import contextlib
import threading

import jax
import jax.numpy as jnp
import numpy as np

DRAWS: dict[str, np.ndarray] = {}
SCAN_ROLES = ("observe", "imagine")
_STATE = threading.local()


def use(draws: dict):
  """The draws of the next computation (traced after this call): name -> array."""
  DRAWS.clear()
  DRAWS.update(draws)


def _get(name, default=None):
  return getattr(_STATE, name, default)


@contextlib.contextmanager
def role(name: str):
  """The draws asked for inside this block belong to `name`."""
  before = _get("role")
  _STATE.role = name
  try:
    yield
  finally:
    _STATE.role = before


def wrap_role(fn, name: str):
  """`fn` run inside `role(name)` (for patching a method)."""

  def wrapper(*args, **kwargs):
    with role(name):
      return fn(*args, **kwargs)

  wrapper.__wrapped__ = fn
  return wrapper


def draw(kind: str, event_ndim: int):
  """The given draw of `kind` ("stoch" or "act") for the current role and scan step.

  `event_ndim` is the rank the draw must have (the batch dims and, for
  categoricals, the latent axis); an array of one more dimension is indexed
  by the current scan step (step 0 when the body runs outside the scan, as
  ninjax runs it once before scanning to find its state).
  """
  name = f"{_get('role') or 'last'}/{kind}"
  if name not in DRAWS:
    raise KeyError(f"parity harness: no given draws named '{name}' (have {sorted(DRAWS)})")
  value = jnp.asarray(DRAWS[name])
  if value.ndim == event_ndim + 1:
    step = _get("step")
    value = value[0] if step is None else value[step]
  if value.ndim != event_ndim:
    raise ValueError(f"parity harness: draws '{name}' have shape {value.shape}, "
                     f"expected rank {event_ndim}")
  return value


def categorical(probs, u):
  """Class indices [...] of `probs` [..., K] at uniforms `u` [...]: the inverse CDF."""
  cdf = jnp.cumsum(probs, -1)
  index = (cdf <= u[..., None].astype(cdf.dtype) * cdf[..., -1:]).sum(-1)
  return jnp.minimum(index, probs.shape[-1] - 1)


_ORIGINAL_SCAN = jax.lax.scan


def _scan(f, init, xs=None, length=None, *args, **kwargs):
  """jax.lax.scan that, in a scan role, tells the body its step index."""
  if _get("role") not in SCAN_ROLES or _get("step") is not None:
    return _ORIGINAL_SCAN(f, init, xs, length, *args, **kwargs)
  if length is None:
    length = len(jax.tree.leaves(xs)[0])

  def body(carry, x):
    x, step = x
    before = _get("step")
    _STATE.step = step
    try:
      return f(carry, x)
    finally:
      _STATE.step = before

  return _ORIGINAL_SCAN(body, init, (xs, jnp.arange(length)), length, *args, **kwargs)


@contextlib.contextmanager
def patched(patches):
  """Sets (object, attribute, value) triples and jax.lax.scan for the block, then restores them."""
  saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patches]
  saved.append((jax.lax, "scan", jax.lax.scan))
  try:
    for obj, attr, value in patches:
      setattr(obj, attr, value)
    jax.lax.scan = _scan
    yield
  finally:
    for obj, attr, value in reversed(saved):
      setattr(obj, attr, value)
