"""FLOPs of the parts of one train step, counted from the jaxpr (tracing only, no compile).

  python benchmarks/flops_breakdown.py size12m
"""
import sys

import jax
from flax import nnx

from wmrl import agent, bench
from wmrl.config import Config, apply_presets
from wmrl.rssm import features
from wmrl.world_model import world_model_loss

preset = sys.argv[1] if len(sys.argv) > 1 else "size1m"
config = apply_presets(Config(), preset)
obs, act = bench.task_spaces(config, None)
state = agent.init(jax.random.key(0), obs, act, config)
batch = bench.random_batch(obs, act, 16, 65)
data, prev = agent.split_batch(batch, 1)
def total(params): return jax.grad(agent.loss, has_aux=True)(params, state, data, prev, jax.random.key(0))
def wm_only(params):
  def f(p):
    wm = nnx.merge(state.spec.graphs[0], p)
    losses, post, _ = world_model_loss(wm, wm.rssm.initial((16,)), data, prev, jax.random.key(0), 1.0, 1.0)
    return sum(v.mean() for v in losses.values())
  return jax.grad(f)(params["wm"])
def imagine_only(params):
  wm = nnx.merge(state.spec.graphs[0], params["wm"]); actor = nnx.merge(state.spec.graphs[1], params["actor"])
  starts = wm.rssm.initial((16 * 64,))
  policy = lambda latent, k: actor(features(latent)).sample(k)
  return wm.rssm.imagine(starts, policy, 15, jax.random.key(0))
for name, fn in [("total (fwd+bwd)", total), ("world model (fwd+bwd)", wm_only), ("imagination rollout (fwd)", imagine_only)]:
  jaxpr = jax.make_jaxpr(fn)(state.params)
  flops, _ = bench.jaxpr_flops(jaxpr.jaxpr)
  print(f"{preset} {name}: {flops / 1e9:.1f} GFLOP")
