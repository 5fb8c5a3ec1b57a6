"""Times the layout choices the RSSM and heads were written for, old way beside new.

  python benchmarks/layouts.py            # size12m shapes, 1024 imagined rows
  python benchmarks/layouts.py --rows 16  # the posterior scan's 16 rows

Each pair computes the same values (checked) two ways, from inputs laid out
as the old and the new code hold them, jitted, and prints the median time of
each and the ratio:
- block matmul: [rows, blocks, in] row-major einsum against block-major
  [blocks, rows, in] (what `BlockLinear` computes);
- shared inputs: an einsum of the shared inputs with the block kernels against
  one dense row-major matmul moved to blocks afterwards (`BlockLinear`'s
  `shared` argument);
- weight gradient: of a linear layer on [B, T, in] against the same on 2D rows
  (`Linear`);
- categorical draw: Gumbel-max (`jax.random.categorical`) against inverting the
  CDF (`dists.categorical_sample`).
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np

from wmrl import bench, dists
from wmrl.nets import to_blocks


def pairs(rows: int, blocks: int, deter: int, hidden: int, stoch: int, classes: int):
  keys = iter(jax.random.split(jax.random.key(0), 8))
  normal = lambda *shape: jax.random.normal(next(keys), shape)
  own_in = deter // blocks + 3 * hidden  # each block: its slice of deter and the shared inputs
  out = deter // blocks
  rowmajor = normal(rows, blocks, own_in)
  kernel = normal(blocks, own_in, out) * 0.02
  shared = normal(rows, 3 * hidden)
  shared_kernel = normal(blocks, 3 * hidden, out) * 0.02
  feat = normal(rows, 16, deter + stoch * classes)  # 16 imagined steps of features
  weight = normal(feat.shape[-1], hidden) * 0.02
  logits = normal(rows, stoch, classes)

  def weight_grad(x):
    return jax.grad(lambda w: jnp.sum(jnp.tanh(x @ w)))(weight)

  def weight_grad_2d(x):
    return jax.grad(lambda w: jnp.sum(jnp.tanh(x.reshape(-1, x.shape[-1]) @ w)))(weight)

  # BlockLinear keeps the shared-input weights as one dense [shared, blocks * out] matrix.
  dense_kernel = jnp.moveaxis(shared_kernel, 0, 1).reshape(3 * hidden, -1)

  return [
      # In the model the block layers' inputs and outputs stay block-major.
      ("block matmul", (rowmajor, kernel), (rowmajor.transpose(1, 0, 2), kernel),
       lambda x, k: jnp.einsum("rgi,gio->rgo", x, k), jnp.matmul,
       2 * rows * blocks * own_in * out, lambda y: y.transpose(1, 0, 2)),
      ("shared inputs", (shared, shared_kernel), (shared, dense_kernel),
       lambda s, k: jnp.einsum("ri,gio->gro", s, k), lambda s, k: to_blocks(s @ k, blocks),
       2 * rows * 3 * hidden * deter, lambda y: y),
      ("weight gradient", (feat,), (feat,), weight_grad, weight_grad_2d,
       4 * feat.size * hidden, lambda y: y),
      # Different draws from the same distribution: only the speed is compared.
      ("categorical draw", (jax.random.key(1), logits), (jax.random.key(1), logits),
       lambda k, l: jax.random.categorical(k, l, -1),
       lambda k, l: dists.categorical_sample(k, jax.nn.softmax(l, -1)), None, None),
  ]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--rows", type=int, default=1024)
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()
  # size12m: deter 2048 in 8 blocks, hidden 256, 32 latents of 16 classes.
  print(f"rows {args.rows}, size12m shapes, {jax.devices()[0].platform}")
  print(f"{'':18s} {'old ms':>8s} {'new ms':>8s} {'old/new':>8s}  GFLOP/s old, new")
  for name, old_inputs, new_inputs, old, new, flops, old_as_new in pairs(
      args.rows, 8, 2048, 256, 32, 16):
    if old_as_new:  # the same values, in the new layout
      np.testing.assert_allclose(np.asarray(old_as_new(old(*old_inputs))),
                                 np.asarray(new(*new_inputs)), rtol=2e-3, atol=2e-3)
    t_old = bench.median_seconds(old, old_inputs, args.repeats)
    t_new = bench.median_seconds(new, new_inputs, args.repeats)
    rates = f"{flops / t_old / 1e9:.0f}, {flops / t_new / 1e9:.0f}" if flops else "-"
    print(f"{name:18s} {t_old * 1e3:8.2f} {t_new * 1e3:8.2f} {t_old / t_new:8.2f}  {rates}")


if __name__ == "__main__":
  main()
