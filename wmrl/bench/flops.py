"""FLOPs of a compiled program: counted from its jaxpr, and XLA's own figures.

XLA's cost analysis counts the body of a while loop once, whatever its trip
count, and every `lax.scan` lowers to one (the RSSM over the batch length,
imagination over the horizon, and their backward passes). Its figure therefore
undercounts a DreamerV3 update (about 2x for size1m and size12m on walker-walk,
although it also counts elementwise work). The benchmark reports it, but takes
FLOPs per update from the traced jaxpr instead: matmul and convolution FLOPs,
with each scan body counted `length` times. Those are also the FLOPs the
matmul peak measures, so their ratio is a fair utilisation.
"""
from __future__ import annotations

import math

import jax.extend.core as jex


def _dot_flops(eqn) -> int:
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  (_, rhs_contract), (_, rhs_batch) = eqn.params["dimension_numbers"]
  free = [d for i, d in enumerate(rhs) if i not in rhs_contract and i not in rhs_batch]
  # One multiply-add per lhs element and rhs free column.
  return 2 * math.prod(lhs) * math.prod(free)


def _conv_flops(eqn) -> int:
  rhs = eqn.invars[1].aval.shape
  out = eqn.outvars[0].aval.shape
  out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
  # Each output element sums over (in-features per group x kernel window).
  return 2 * math.prod(out) * (math.prod(rhs) // out_features)


def jaxpr_flops(jaxpr) -> tuple[int, int]:
  """Matmul + convolution FLOPs of a jaxpr, scan bodies times their length.

  Returns (flops, while_loops); a `while` body is counted once, since its
  trip count is not static, and counted in `while_loops` so a caller can say so.
  """
  flops, whiles = 0, 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      flops += _dot_flops(eqn)
    elif name == "conv_general_dilated":
      flops += _conv_flops(eqn)
    elif name == "scan":
      inner, w = jaxpr_flops(eqn.params["jaxpr"].jaxpr)
      flops, whiles = flops + eqn.params["length"] * inner, whiles + w
    elif name == "cond":
      # One branch runs; the costliest is the honest upper bound.
      counts = [jaxpr_flops(b.jaxpr) for b in eqn.params["branches"]]
      flops += max(c[0] for c in counts)
      whiles += max(c[1] for c in counts)
    else:
      whiles += name == "while"
      for sub in jex.jaxprs_in_params(eqn.params):
        inner, w = jaxpr_flops(sub)
        flops, whiles = flops + inner, whiles + w
  return flops, whiles


def xla_flops(compiled) -> float | None:
  """FLOPs from XLA's cost analysis; a dict or, in some JAX versions, a list of dicts."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # some backends do not implement it
    return None
  if not analysis:
    return None
  if isinstance(analysis, dict):
    analysis = [analysis]
  return float(sum(a.get("flops", 0.0) for a in analysis if a))


def xla_memory(compiled) -> dict[str, int]:
  try:
    stats = compiled.memory_analysis()
  except Exception:
    return {}
  names = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
           "generated_code_size_in_bytes")
  return {n: int(getattr(stats, n)) for n in names if hasattr(stats, n)}
