"""The distributions and transforms DreamerV3 is built from, as pure functions.

All functions act on the last axis and broadcast over the leading ones.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

sg = jax.lax.stop_gradient


# --- symlog -------------------------------------------------------------------

def symlog(x):
  """sign(x) * log(1 + |x|): compresses large magnitudes, identity near 0."""
  return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x):
  """Inverse of symlog."""
  return jnp.sign(x) * jnp.expm1(jnp.abs(x))


# --- two-hot over symexp-spaced bins --------------------------------------------

def twohot_bins(num_bins: int = 255, low: float = -20.0, high: float = 20.0):
  """Bin positions symexp(linspace(low, high)): dense near 0, up to +-4.9e8.

  Scalars are two-hot encoded in raw space over these bins (the reference's
  `symexp_twohot` head, 2024 version). With low == -high, one half is
  computed and mirrored onto the other, as the reference does, so the bins are
  exactly symmetric around 0 (for odd counts an exact 0 bin; for even counts
  two, -0 and +0): a plain float32 linspace is off by ~1e-7 there, and
  zero-initialised heads would not predict exactly 0.
  """
  if low != -high:
    return symexp(jnp.linspace(low, high, num_bins, dtype=jnp.float32))
  if num_bins % 2 == 1:
    half = symexp(jnp.linspace(low, 0.0, (num_bins - 1) // 2 + 1, dtype=jnp.float32))
    return jnp.concatenate([half, -half[:-1][::-1]])
  half = symexp(jnp.linspace(low, 0.0, num_bins // 2, dtype=jnp.float32))
  return jnp.concatenate([half, -half[::-1]])


def twohot(x, bins):
  """Encodes scalars `x` [...] as weights [..., K] on the two nearest bins.

  The weights interpolate linearly between the two bins around x, so
  `twohot(x) @ bins == x` for x inside the bins' range; values outside put
  all weight on the nearest edge bin. The weights are distances to the
  other bin over their sum, as the reference computes them (`outs.TwoHot`).
  """
  x = x.astype(jnp.float32)
  n = bins.shape[-1]
  below = jnp.clip((bins <= x[..., None]).sum(-1) - 1, 0, n - 1)
  above = jnp.clip(n - (bins > x[..., None]).sum(-1), 0, n - 1)
  equal = below == above
  to_below = jnp.where(equal, 1.0, jnp.abs(bins[below] - x))
  to_above = jnp.where(equal, 1.0, jnp.abs(bins[above] - x))
  total = to_below + to_above
  return (jax.nn.one_hot(below, n) * (to_above / total)[..., None]
          + jax.nn.one_hot(above, n) * (to_below / total)[..., None])


def twohot_mean(logits, bins):
  """The prediction E[bin] of a two-hot head: the probability-weighted bins.

  The sum runs from the centre outwards over the two halves, so symmetric
  probabilities give exactly 0 (a plain left-to-right sum leaves a rounding
  residue, and zero-initialised heads should predict exactly 0).
  """
  probs = jax.nn.softmax(logits.astype(jnp.float32), -1)
  n = bins.shape[-1]
  m = n // 2
  left = (probs[..., :m] * bins[:m])[..., ::-1]
  right = probs[..., n - m:] * bins[n - m:]
  centre = (probs[..., m:n - m] * bins[m:n - m]).sum(-1)  # the 0 bin of odd counts
  return centre + (left + right).sum(-1)


def twohot_loss(logits, target, bins):
  """Cross-entropy of a two-hot head against the two-hot encoding of the raw targets."""
  target = twohot(sg(target.astype(jnp.float32)), bins)
  return -(target * jax.nn.log_softmax(logits.astype(jnp.float32), -1)).sum(-1)


# --- categoricals with a uniform mix --------------------------------------------

def unimix_logits(logits, unimix: float):
  """Log-probabilities of (1 - unimix) * softmax(logits) + unimix * uniform.

  The 1% uniform floor keeps every class possible, which bounds the KL and
  log-probabilities (paper, "Unimix categoricals").
  """
  logits = logits.astype(jnp.float32)
  if not unimix:
    return jax.nn.log_softmax(logits, -1)
  probs = jax.nn.softmax(logits, -1)
  probs = (1 - unimix) * probs + unimix / logits.shape[-1]
  return jnp.log(probs)


def categorical_sample(key, probs):
  """Class indices [...] drawn from `probs` [..., K] by inverting the CDF.

  One uniform number per draw instead of the K Gumbel variates (and 2K
  logarithms) of `jax.random.categorical`: 5.6x faster on CPU for the RSSM's
  1024 x 32 x 16 latents (0.80 ms against 4.45 ms, `benchmarks/layouts.py`). The uniform is scaled by
  the CDF's last entry, so a sum that rounds below 1 cannot pick a class
  past the end, and a class of probability 0 is never picked.
  """
  cdf = jnp.cumsum(probs, -1)
  u = jax.random.uniform(key, probs.shape[:-1] + (1,), cdf.dtype) * cdf[..., -1:]
  return (cdf <= u).sum(-1)


def onehot_sample_st(key, logits):
  """A one-hot sample with straight-through gradients to the probabilities."""
  probs = jax.nn.softmax(logits, -1)
  sample = jax.nn.one_hot(categorical_sample(key, sg(probs)), logits.shape[-1])
  # Parenthesised so the value is exactly one-hot: (p - p) is exactly 0.
  return sample + (probs - sg(probs))


def onehot_mode(logits):
  return jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1])


def categorical_kl(logits_p, logits_q):
  """KL(p || q) of categoricals over the last axis (log-probability inputs)."""
  lp = jax.nn.log_softmax(logits_p, -1)
  lq = jax.nn.log_softmax(logits_q, -1)
  return (jnp.exp(lp) * (lp - lq)).sum(-1)


def categorical_entropy(logits):
  lp = jax.nn.log_softmax(logits, -1)
  return -(jnp.exp(lp) * lp).sum(-1)


def categorical_logp(logits, onehot):
  return (jax.nn.log_softmax(logits, -1) * onehot).sum(-1)


# --- bounded normal for continuous actions -------------------------------------

def bounded_normal_params(mean_raw, std_raw, min_std: float, max_std: float):
  """tanh-squashed mean in [-1, 1] and std in [min_std, max_std].

  The +2 shifts the initial std towards max_std (reference `bounded_normal`).
  """
  mean = jnp.tanh(mean_raw.astype(jnp.float32))
  std = (max_std - min_std) * jax.nn.sigmoid(std_raw.astype(jnp.float32) + 2.0) + min_std
  return mean, std


def normal_logp(mean, std, x):
  """Log-density of a diagonal normal, summed over the last axis."""
  z = (x - mean) / std
  return (-0.5 * z**2 - jnp.log(std) - 0.5 * jnp.log(2 * jnp.pi)).sum(-1)


def normal_entropy(std):
  return (0.5 * jnp.log(2 * jnp.pi * jnp.e) + jnp.log(std)).sum(-1)


# --- binary ------------------------------------------------------------------

def binary_loss(logits, target):
  """Cross-entropy of a Bernoulli(sigmoid(logits)) against soft targets."""
  logits = logits.astype(jnp.float32)
  return -(target * jax.nn.log_sigmoid(logits) + (1 - target) * jax.nn.log_sigmoid(-logits))
