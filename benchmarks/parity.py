"""Module-by-module parity of wmrl's DreamerV3 with the reference implementation.

    git clone https://github.com/danijar/dreamerv3
    git -C dreamerv3 checkout e3f02248693a79dc8b0ebd62c93683888ddaccfe
    python3 -m venv refenv && refenv/bin/pip install "jax==0.4.33" "jaxlib==0.4.33" \\
        "numpy<2" "ninjax==3.5.1" "elements==3.19.1" "portal==3.5.0" "optax==0.2.4" \\
        "chex==0.1.87" einops
    python benchmarks/parity.py --reference-src dreamerv3 --reference-python refenv/bin/python
    python benchmarks/parity.py ... --config image     # image and vector keys, discrete actions
    python benchmarks/parity.py ... --time --rounds 5  # also time both train steps side by side

The reference (danijar/dreamerv3 at the commit above, the only one accepted)
pins JAX 0.4.33, wmrl needs a current JAX, so each runs in its own Python:
this script (wmrl's environment) builds wmrl's agent, writes its parameters
in the reference's names and layouts, the inputs and every random draw to
a folder, runs `benchmarks/parity_reference.py` in the reference's Python on
that folder, and compares what the two computed. The reference's parameters
are all copied from wmrl's (`reference_names`, the one naming map), so
the initialisations do not matter; wmrl's are first perturbed at random, so
zero-initialised outputs, unit norm scales and a mapping that mixes up rows
or blocks cannot hide.

Random draws: both sides' samplers are patched inside this harness only
(`benchmarks/parity_draws.py`): every categorical (latent classes, discrete
actions) inverts its CDF at a given uniform number, every continuous action
is mean + std x given noise, each looked up by the role of the code asking
(posterior, prior in imagination, action in imagination, last action) and
the step of the rollout, so both consume the same draws in the same order.

Each comparison prints the largest relative difference, max |wmrl - ref| /
max |ref| (over the tensors of a group, the worst tensor's), and last the
largest of all. `--tolerance X` exits with status 1 when that is above X.
The replay context: both use `replay_context` 1. The reference starts each
window from the latent stored with its context step; where wmrl does too
(`agent.start_latent`) the stored latents are random and the posteriors
returned for the replay are compared; where wmrl starts from zeros, the
stored latents are zeros, so both start from zeros.
The optimiser's state is given as after OPT_COUNT updates: from a fresh state
LaProp's first update is lr x sign(gradient), which compares nothing.

`--time` (or `--time-only`) then times one train step of each, on the same
shapes on this machine, alternating rounds of wmrl's and the reference's,
and prints the medians and their ratio.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
# Run from a checkout without installing: the repo root holds the package.
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import parity_draws as D  # noqa: E402
from wmrl import dists  # noqa: E402
from wmrl.algorithms.dreamerv3 import agent, behavior  # noqa: E402
from wmrl.dynamics import rssm as wrssm  # noqa: E402
from wmrl.config import Config  # noqa: E402
from wmrl.presets import apply_presets  # noqa: E402
from wmrl.dynamics.rssm import Latent  # noqa: E402
from wmrl.spaces import ActionSpec, ArraySpec  # noqa: E402
from wmrl.testing import WALKER_ACT, WALKER_OBS, random_batch  # noqa: E402
from wmrl.algorithms.dreamerv3.world_model import split_keys  # noqa: E402

sg = jax.lax.stop_gradient

REFERENCE_COMMIT = "e3f02248693a79dc8b0ebd62c93683888ddaccfe"
CLONE = ("git clone https://github.com/danijar/dreamerv3 && "
         f"git -C dreamerv3 checkout {REFERENCE_COMMIT}")
# The files of the reference the harness relies on, and the hash of them at that commit
# (sha256 over "path\0sha256(content)\n" in this order), for copies that are not git checkouts.
REFERENCE_FILES = (
    "dreamerv3/__init__.py", "dreamerv3/agent.py", "dreamerv3/rssm.py", "dreamerv3/configs.yaml",
    "embodied/jax/__init__.py", "embodied/jax/agent.py", "embodied/jax/heads.py",
    "embodied/jax/internal.py", "embodied/jax/nets.py", "embodied/jax/opt.py",
    "embodied/jax/outs.py", "embodied/jax/transform.py", "embodied/jax/utils.py")
REFERENCE_FILES_SHA256 = "c8a9120a1136f3b81d4950da5662d119ec8bfb0276c8dffb1c8ab81759060465"

# The spaces of each configuration: DMC walker's proprioception with its 6
# continuous actions; and a 64x64 image with a vector and 5 discrete actions.
SETUPS = {
    "vector": (WALKER_OBS, WALKER_ACT),
    "image": ({"image": ArraySpec((64, 64, 3), "uint8"), "pos": ArraySpec((3,), "float32")},
              ActionSpec("discrete", (5,))),
}
BATCH, LENGTH = 4, 16  # the parity batch: 4 sequences of 16 steps (+1 context step)
OPT_COUNT = 100  # updates the given optimiser state has seen
RETNORM = (-2.0, 3.0)  # the given return normaliser's (low, high), a range above its limit
TIME_BATCH, TIME_LENGTH = 16, 64
# wmrl with a replay context starts training from the latent stored with the context step
# (the reference's way); before that, from zeros.
STARTS_FROM_STORED = hasattr(agent, "start_latent")
WARMUP = 5  # untimed updates after the first (compiling) one, each side


class RefusedReference(SystemExit):
  pass


class NotComparable(Exception):
  """A configuration whose wmrl model has no counterpart in the reference."""


def files_sha256(src: pathlib.Path) -> str:
  digest = hashlib.sha256()
  for name in REFERENCE_FILES:
    content = (src / name).read_bytes()
    digest.update(name.encode() + b"\0" + hashlib.sha256(content).hexdigest().encode() + b"\n")
  return digest.hexdigest()


def check_reference(src) -> str:
  """How the reference at `src` was identified; refuses anything but the expected commit."""
  src = pathlib.Path(src)

  def refuse(why: str):
    raise RefusedReference(
        f"parity: {src} is not danijar/dreamerv3 at commit {REFERENCE_COMMIT} ({why}).\n"
        f"Get that commit with:\n  {CLONE}")

  missing = [name for name in REFERENCE_FILES if not (src / name).is_file()]
  if missing:
    refuse(f"missing {', '.join(missing[:3])}")
  if (src / ".git").exists():
    head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    commit = head.stdout.strip()
    if head.returncode or commit != REFERENCE_COMMIT:
      refuse(f"its HEAD is {commit or head.stderr.strip()}")
    if files_sha256(src) != REFERENCE_FILES_SHA256:
      refuse("the right commit, but with local changes to the files the harness uses")
    return f"git checkout at {commit}"
  if files_sha256(src) != REFERENCE_FILES_SHA256:
    refuse("not a git checkout, and its files differ from that commit's")
  return f"copy whose files hash as commit {REFERENCE_COMMIT}"


# --- configuration ---------------------------------------------------------------

def parity_config(overrides: dict | None = None) -> Config:
  """wmrl's size1m (its defaults otherwise), float32, on a short batch, then `overrides`
  (dotted config fields; the reference gets the same through `reference_config`)."""
  return apply_presets(Config(), "size1m").replace(**{
      "run.batch_size": BATCH, "run.batch_length": LENGTH, "model.compute_dtype": "float32",
      **(overrides or {})})


def decoder_bspace(model) -> int:
  """wmrl's image-decoder block-space projection (a ModelConfig's); 0 where wmrl has one
  dense layer there (also wmrl without the option). The reference cannot compute that
  (its Decoder asserts `deter % bspace == 0` before looking at bspace), so images are
  compared only with bspace > 0."""
  return getattr(model.decoder, "bspace", 0)


def reference_config(config: Config) -> dict:
  """The reference's config (dotted keys on its configs.yaml defaults) for a wmrl config."""
  m, b, o, run = config.model, config.behavior, config.optim, config.run
  r = m.rssm
  if m.dynamics != "rssm":
    raise SystemExit(f"parity: the reference has only the RSSM, not model.dynamics={m.dynamics}")
  out = {
      "batch_size": run.batch_size, "batch_length": run.batch_length,
      "replay_context": run.replay_context,
      "jax.platform": "cpu", "jax.compute_dtype": m.compute_dtype, "jax.prealloc": False,
  }
  rssm = dict(deter=r.deter, hidden=r.hidden, stoch=r.stoch, classes=r.classes, blocks=r.blocks,
              unimix=r.unimix, free_nats=r.free_nats, imglayers=r.img_layers,
              obslayers=r.obs_layers, dynlayers=r.dyn_layers, act="silu", norm="rms")
  out.update({f"agent.dyn.rssm.{k}": v for k, v in rssm.items()})
  e, d = m.encoder, m.decoder
  out.update({f"agent.enc.simple.{k}": v for k, v in dict(
      units=e.units, layers=e.layers, depth=e.depth, mults=list(e.mults), kernel=e.kernel,
      symlog=e.symlog, act="silu", norm="rms").items()})
  out.update({f"agent.dec.simple.{k}": v for k, v in dict(
      units=d.units, layers=d.layers, depth=d.depth, mults=list(d.mults), kernel=d.kernel,
      bspace=decoder_bspace(m) or 8, act="silu", norm="rms").items()})
  for ref, h in (("rewhead", m.reward), ("conhead", m.cont), ("policy", m.actor),
                 ("value", m.critic)):
    out[f"agent.{ref}.units"] = h.units
    out[f"agent.{ref}.layers"] = h.layers
  out["agent.rewhead.bins"] = m.reward.bins
  out["agent.value.bins"] = m.critic.bins
  out["agent.policy.minstd"] = m.actor_min_std
  out["agent.policy.maxstd"] = m.actor_max_std
  out.update({
      "agent.imag_length": b.imag_horizon, "agent.horizon": b.horizon,
      "agent.contdisc": b.contdisc, "agent.imag_last": 0,
      "agent.imag_loss.lam": b.lam, "agent.imag_loss.actent": b.entropy,
      "agent.imag_loss.slowreg": b.slow_reg, "agent.imag_loss.slowtar": False,
      "agent.repl_loss.lam": b.lam, "agent.repl_loss.slowreg": b.slow_reg,
      "agent.repl_loss.slowtar": False,
      "agent.slowvalue.rate": b.slow_critic_rate, "agent.slowvalue.every": 1,
      "agent.retnorm.rate": b.retnorm_rate, "agent.retnorm.limit": b.retnorm_limit,
      "agent.retnorm.perclo": b.retnorm_low, "agent.retnorm.perchi": b.retnorm_high,
      "agent.repval_loss": b.repval_loss, "agent.repval_grad": b.repval_grad,
  })
  out.update({f"agent.loss_scales.{k}": v
              for k, v in dataclasses.asdict(config.loss_scales).items()})
  out.update({"agent.opt.lr": o.lr, "agent.opt.agc": o.agc, "agent.opt.eps": o.eps,
              "agent.opt.beta1": o.beta1, "agent.opt.beta2": o.beta2,
              "agent.opt.warmup": o.warmup})
  return out


def without_equivalent(config: Config, act_spec: ActionSpec) -> list[str]:
  """wmrl settings of this run that the reference has no setting for."""
  notes = []
  m, o = config.model, config.optim
  if o.actor_lr or o.critic_lr:
    notes.append("optim.actor_lr / critic_lr: the reference trains all networks at one rate")
  if o.agc_min != 1e-3:
    notes.append(f"optim.agc_min={o.agc_min}: the reference's is 1e-3")
  if act_spec.kind == "discrete" and m.actor_unimix:
    notes.append(f"model.actor_unimix={m.actor_unimix}: the reference's categorical policy "
                 "has no uniform mix")
  return notes


# --- the naming map: wmrl's parameter tree -> the reference's flat names -----------

def _at(tree, path):
  for key in path:
    tree = tree[key]
  return np.asarray(tree)


def _block_kernel(node):
  """A wmrl BlockLinear's kernel in the reference's layout [blocks, own + shared, out].

  wmrl keeps the inputs all blocks see (the shared ones) as a dense
  [shared, blocks * out] matrix; the reference concatenates them to each
  block's own slice, [deter slice, x0, x1, x2], in one kernel.
  """
  kernel = np.asarray(node["kernel"])
  if "shared_kernel" not in node:
    return kernel
  blocks, _, out = kernel.shape
  shared = np.asarray(node["shared_kernel"])
  shared = np.moveaxis(shared.reshape(shared.shape[0], blocks, out), 1, 0)
  return np.concatenate([kernel, shared], 1)


def _stoch_first(kernel, deter: int):
  """Rows [deter; stoch] (wmrl's features) -> [stoch; deter] (the reference's decoder input)."""
  return np.concatenate([kernel[deter:], kernel[:deter]], 0)


def reference_names(spec) -> dict:
  """{reference name: function of wmrl's tree {"wm", "actor", "critic"} -> array}.

  The one place that knows how the two lay out the same parameters.
  """
  rules = {}
  m = spec.model
  r = m.rssm
  obs_spec = dict(spec.obs_spec)
  images, vectors = split_keys(obs_spec, len(m.encoder.mults))

  def leaf(*path):
    return lambda t: _at(t, path)

  def linear(ref, *path, kernel=None):
    rules[f"{ref}/kernel"] = kernel or leaf(*path, "kernel")
    rules[f"{ref}/bias"] = leaf(*path, "bias")

  def norm(ref, *path):
    rules[f"{ref}/scale"] = leaf(*path, "scale")

  def mlp(prefix, *path, layers, first_kernel=None):
    for i in range(layers):
      at = (*path, "mlp", "layers", i)
      linear(f"{prefix}/mlp/linear{i}", *at, "linear",
             kernel=first_kernel(at) if i == 0 and first_kernel else None)
      norm(f"{prefix}/mlp/norm{i}", *at, "norm")

  # Encoder: enc/mlp{i} (+norm) on the symlog vectors, enc/cnn{i} (+norm) on the images.
  if vectors:
    for i in range(m.encoder.layers):
      at = ("wm", "encoder", "mlp", "layers", i)
      linear(f"enc/mlp{i}", *at, "linear")
      norm(f"enc/mlp{i}norm", *at, "norm")
  if images:
    for i in range(len(m.encoder.mults)):
      linear(f"enc/cnn{i}", "wm", "encoder", "cnn", "convs", i)
      norm(f"enc/cnn{i}norm", "wm", "encoder", "cnn", "norms", i)

  # RSSM: dynin0/1/2 on deter, stoch, action; dynhid{i} and dyngru block-linear; prior and
  # posterior MLPs and logits.
  dyn = ("wm", "dynamics")
  for k, name in enumerate(("in_deter", "in_stoch", "in_action")):
    linear(f"dyn/dynin{k}", *dyn, name, "linear")
    norm(f"dyn/dynin{k}norm", *dyn, name, "norm")
  for i in range(r.dyn_layers):
    linear(f"dyn/dynhid{i}", *dyn, "hidden_layers", i,
           kernel=lambda t, i=i: _block_kernel(t["wm"]["dynamics"]["hidden_layers"][i]))
    norm(f"dyn/dynhid{i}norm", *dyn, "hidden_norms", i)
  linear("dyn/dyngru", *dyn, "gru", kernel=lambda t: _block_kernel(t["wm"]["dynamics"]["gru"]))
  for i in range(r.img_layers):
    linear(f"dyn/prior{i}", *dyn, "prior_mlp", "layers", i, "linear")
    norm(f"dyn/prior{i}norm", *dyn, "prior_mlp", "layers", i, "norm")
  linear("dyn/priorlogit", *dyn, "prior_out")
  for i in range(r.obs_layers):
    linear(f"dyn/obs{i}", *dyn, "post_mlp", "layers", i, "linear")
    norm(f"dyn/obs{i}norm", *dyn, "post_mlp", "layers", i, "norm")
  linear("dyn/obslogit", *dyn, "post_out")

  # Decoder: the reference's input is [stoch, deter], wmrl's features [deter, stoch].
  dec = ("wm", "decoder")
  if vectors:
    mlp("dec", *dec, layers=m.decoder.layers,
        first_kernel=lambda at: lambda t: _stoch_first(_at(t, (*at, "linear", "kernel")), r.deter))
    for i, key in enumerate(vectors):  # one output layer per key, in sorted key order
      linear(f"dec/vec/{key}/pred", *dec, "vec_out", "parts", i)
  if images:
    cnn = (*dec, "cnn")
    if decoder_bspace(spec.model):
      linear("dec/sp0", *cnn, "space")
      linear("dec/sp1", *cnn, "stoch_hidden", "linear")
      norm("dec/sp1norm", *cnn, "stoch_hidden", "norm")
      linear("dec/sp2", *cnn, "stoch_space")
      norm("dec/spnorm", *cnn, "space_norm")
    else:
      raise NotComparable("wmrl's image decoder projects all features with one dense layer "
                          "(model.decoder.bspace 0 or no such option); the reference's "
                          "needs its block-space projection (bspace > 0)")
    stages = len(m.decoder.mults)
    for j in range(stages - 1):  # wmrl's convs in the order applied; the reference counts down
      linear(f"dec/conv{stages - 2 - j}", *cnn, "convs", j)
      norm(f"dec/conv{stages - 2 - j}norm", *cnn, "norms", j)
    linear("dec/imgout", *cnn, "out")

  # Heads on the features [deter, stoch] (the same order in both).
  mlp("rew", "wm", "reward", layers=m.reward.layers)
  linear("rew/head/logits", "wm", "reward", "out")
  mlp("con", "wm", "cont", layers=m.cont.layers)
  linear("con/head/logit", "wm", "cont", "out")
  mlp("pol", "actor", "head", layers=m.actor.layers)
  if spec.act_spec.kind == "continuous":
    for i, name in enumerate(("mean", "stddev")):  # the actor's two output layers
      linear(f"pol/head/action/{name}", "actor", "head", "out", "parts", i)
  else:
    linear("pol/head/action/logits", "actor", "head", "out")
  mlp("val", "critic", "head", layers=m.critic.layers)
  linear("val/head/logits", "critic", "head", "out")
  return rules



def to_reference(tree: dict, spec, prefix: str = "") -> dict[str, np.ndarray]:
  """A tree shaped like wmrl's parameters (parameters, gradients, moments) in reference
  names; with `prefix`, only the reference names that start with it."""
  return {name: np.asarray(rule(tree), np.float32)
          for name, rule in reference_names(spec).items() if name.startswith(prefix)}


def reference_state(state, spec) -> dict[str, np.ndarray]:
  """Everything the reference agent holds, from a wmrl AgentState: parameters, slow
  critic, return normaliser and optimiser state."""
  params = to_reference(state.params, spec)
  out = dict(params)
  slow = to_reference({"critic": state.slow_critic}, spec, prefix="val/")
  out.update({"slow" + name: value for name, value in slow.items()})  # val/... -> slowval/...
  out["slowval_count/value"] = np.int32(0)
  out["retnorm/lo/value"] = np.float32(state.retnorm.low)
  out["retnorm/hi/value"] = np.float32(state.retnorm.high)
  _, (rms_step, nu), (mom_step, mu), sched = state.opt_state
  out["opt/step/value"] = np.int32(state.step)
  out["opt/state/1/0"] = np.int32(rms_step)
  out["opt/state/2/0"] = np.int32(mom_step)
  out["opt/state/3/count"] = np.int32(sched.count)
  for prefix, tree in (("opt/state/1/1/", nu), ("opt/state/2/1/", mu)):
    out.update({prefix + name: value for name, value in to_reference(tree, spec).items()})
  return out



# --- inputs ----------------------------------------------------------------------

def ref_action(action, act_spec: ActionSpec):
  """Model-format actions (one-hot for discrete) -> the reference's (class indices)."""
  action = np.asarray(action)
  if act_spec.kind == "continuous":
    return action.astype(np.float32)
  if len(act_spec.sizes) != 1:
    raise SystemExit("parity: the reference's categorical policy takes one discrete action")
  return action.argmax(-1).astype(np.int32)


def one_hot(rng, shape, classes):
  return np.eye(classes, dtype=np.float32)[rng.integers(0, classes, shape)]


def make_inputs(config: Config, obs_spec, act_spec: ActionSpec, embed_dim: int, seed: int = 0):
  """Every input both sides compute on, and their random draws, as NumPy arrays."""
  rng = np.random.default_rng(seed)
  r = config.model.rssm
  B, T, H = config.run.batch_size, config.run.batch_length, config.behavior.imag_horizon
  N, S, C, A = B * T, r.stoch, r.classes, act_spec.dim
  deter = lambda *lead: np.tanh(rng.normal(size=(*lead, r.deter))).astype(np.float32)
  stoch = lambda *lead: one_hot(rng, (*lead, S), C)
  if act_spec.kind == "continuous":
    # Raw actions beyond [-1, 1], as imagination's are, to exercise the RSSM's bound.
    action = lambda *lead: (1.5 * rng.normal(size=(*lead, A))).astype(np.float32)
    act_draw = lambda *lead: rng.normal(size=(*lead, A)).astype(np.float32)
  else:
    action = lambda *lead: one_hot(rng, lead, A)
    act_draw = lambda *lead: rng.uniform(size=(*lead, len(act_spec.sizes))).astype(np.float32)
  uniform = lambda *shape: rng.uniform(size=shape).astype(np.float32)
  targets = lambda *lead: (rng.normal(size=lead) * 3).astype(np.float32)

  # The replayed batch [B, 1 + T]: a context step, then the window. Episodes start and end
  # inside it, one by termination and one by a time limit, and a few rewards are large.
  batch = random_batch(obs_spec, act_spec, B, T + 1, seed=seed)
  batch["reward"] = targets(B, T + 1)
  batch["reward"][0, 3], batch["reward"][1, 5], batch["reward"][3, 9] = 60.0, -800.0, 2e4
  for b, t in ((1, 6), (2, 10)):
    batch["is_last"][b, t] = True
    batch["is_first"][b, t + 1] = True
  batch["is_terminal"][1, 6] = True
  # The latents the policy stored with each replayed step; training starts from the one of
  # the context step. Random where wmrl reads them (replay context), else zeros, which is
  # where wmrl's windows start.
  if STARTS_FROM_STORED:
    stored = {"deter": deter(B, T + 1), "stoch": stoch(B, T + 1)}
    batch.update(agent.tree_named(Latent(stored["deter"], stored["stoch"]), agent.LATENT))
  else:
    stored = {"deter": np.zeros((B, T + 1, r.deter), np.float32),
              "stoch": np.zeros((B, T + 1, S, C), np.float32)}

  I = {"batch": batch, "stored": stored}
  I["step"] = {"deter": deter(B), "stoch": stoch(B), "action": action(B),
               "embed": rng.normal(size=(B, embed_dim)).astype(np.float32),
               "is_first": np.array([True, False, False, True][:B] + [False] * (B - 4))}
  cont = np.where(rng.uniform(size=(B, T)) < 0.2, 0.0, config.behavior.cont_target)
  I["feat"] = {"deter": deter(B, T), "stoch": stoch(B, T), "action": action(B, T),
               "reward_target": batch["reward"][:, 1:], "cont_target": cont.astype(np.float32),
               "value_target": (10 * targets(B, T)).astype(np.float32)}
  I["traj"] = {"deter": deter(N, H + 1), "stoch": stoch(N, H + 1), "action": action(N, H + 1)}
  I["repl"] = {"bootstrap": (5 * targets(B, T)).astype(np.float32)}
  draws = {
      "observe_step": {"observe/stoch": uniform(B, S)},
      "imagine_step": {"imagine/stoch": uniform(B, S)},
      "loss": {"observe/stoch": uniform(T, B, S), "imagine/stoch": uniform(H, N, S),
               "imagine/act": act_draw(H, N), "last/act": act_draw(N)},
  }
  return I, draws


def perturbed(tree, rng, scale: float):
  """Every leaf plus normal noise of `scale` times its RMS (0.1 x scale where it is 0)."""
  def one(x):
    x = np.asarray(x)
    rms = float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0
    noise = rng.normal(size=x.shape) * scale * (rms if rms > 0 else 0.1)
    return jnp.asarray(x + noise, x.dtype)
  return jax.tree.map(one, tree)


def peaked(bias):
  """A two-hot head's output bias falling off linearly from the centre bin, as a trained
  head's puts little weight on the far bins. With random output weights alone the
  predictions would be differences of the edge bins' +-4.9e8 (symexp(20)), and the heads'
  losses would lose float32 precision to that cancellation, not to any difference."""
  k = np.arange(bias.shape[-1]) - (bias.shape[-1] - 1) / 2
  return jnp.asarray(np.asarray(bias) - 0.3 * np.abs(k), jnp.float32)


def spec_keys(spec) -> set[str]:
  """The keys of a replayed step the reference's agent takes besides its extras."""
  return {k for k, _ in spec.obs_spec} | {"reward", "is_first", "is_last", "is_terminal"}


def ref_inputs(I, act_spec, spec) -> dict[str, np.ndarray]:
  """The inputs in the reference's formats, flat: 'group/name'."""
  out = {}
  batch = dict(I["batch"])
  B, T1 = batch["reward"].shape
  data = {k: v for k, v in batch.items() if k in spec_keys(spec)}
  data["action"] = ref_action(batch["action"], act_spec)
  data["consec"] = np.zeros((B, T1), np.int32)  # every window its chunk's first: replay context
  data["stepid"] = np.zeros((B, T1, 20), np.uint8)
  data["dyn/deter"] = np.asarray(I["stored"]["deter"], np.float32)
  data["dyn/stoch"] = np.asarray(I["stored"]["stoch"], np.float32)
  out.update({f"batch|{k}": v for k, v in data.items()})
  for group in ("step", "feat", "traj", "repl"):
    for k, v in I[group].items():
      out[f"{group}|{k}"] = ref_action(v, act_spec) if k == "action" else np.asarray(v)
  return out


# --- wmrl's side -------------------------------------------------------------------

CAPTURED: dict = {}


def wmrl_patches():
  """Samplers that read the given draws, roles for the RSSM's rollouts, and a spy on
  the per-step losses of `agent.loss`."""
  check_losses = agent.check_losses

  def onehot_sample_st(key, logits):
    probs = jax.nn.softmax(logits, -1)
    u = D.draw("stoch", probs.ndim - 1)
    sample = jax.nn.one_hot(D.categorical(sg(probs), u), logits.shape[-1])
    return sample + (probs - sg(probs))

  def policy_sample(self, key):
    if self.spec.kind == "continuous":
      mean, std = self.params
      return mean + std * D.draw("act", mean.ndim)
    u = D.draw("act", self.params[0].ndim)
    parts = []
    for i, logits in enumerate(self.params):
      probs = jax.nn.softmax(logits, -1)
      sample = jax.nn.one_hot(D.categorical(sg(probs), u[..., i]), logits.shape[-1])
      parts.append(sample + (probs - sg(probs)))
    return jnp.concatenate(parts, -1)

  def spy(losses, *args, **kwargs):
    CAPTURED.update(losses)
    return check_losses(losses, *args, **kwargs)

  return [(dists, "onehot_sample_st", onehot_sample_st), (behavior.Policy, "sample", policy_sample),
          (wrssm.RSSM, "observe", D.wrap_role(wrssm.RSSM.observe, "observe")),
          (wrssm.RSSM, "imagine", D.wrap_role(wrssm.RSSM.imagine, "imagine")),
          (agent, "check_losses", spy)]


def _reward_loss(logits, target, bins):
  for name in ("twohot_loss", "symexp_twohot_loss"):  # wmrl's name before and after (a)
    if hasattr(dists, name):
      return getattr(dists, name)(logits, target, bins)
  raise AttributeError("wmrl.dists has no two-hot loss")


def _logp(logits):
  return jax.nn.log_softmax(logits.astype(jnp.float32), -1)


def wmrl_grads(state, I, draws):
  """The whole loss of one train step, its per-step losses and gradients, with the draws."""
  spec = state.spec
  batch = jax.tree.map(jnp.asarray, I["batch"])
  D.use(draws["loss"])

  @jax.jit
  def run(params, state, batch):
    data, prev = agent.split_batch(batch, spec.context)
    start = {}
    if STARTS_FROM_STORED:
      start = {"start": agent.start_latent(agent.modules(spec, params)[0].dynamics, batch,
                                           spec.context)}

    def lossfn(params):
      CAPTURED.clear()
      total, aux = agent.loss(params, state, data, prev, jax.random.key(1), **start)
      return total, (dict(CAPTURED), aux[1])  # aux: metrics, return normaliser[, posteriors]
    (total, (losses, retnorm)), grads = jax.value_and_grad(lossfn, has_aux=True)(params)
    return total, losses, retnorm, grads

  return run(state.params, state, batch)


def wmrl_outputs(state, I, draws, grads) -> dict[str, np.ndarray]:
  """wmrl's side of every comparison, named as `parity_reference.py` names the reference's."""
  spec, b = state.spec, state.spec.behavior
  act_spec = spec.act_spec
  out = {}
  J = jax.tree.map(jnp.asarray, {k: v for k, v in I.items() if k != "batch"})
  batch = jax.tree.map(jnp.asarray, I["batch"])
  data, prev = agent.split_batch(batch, spec.context)
  obs_keys = [k for k, _ in spec.obs_spec]
  graphs = spec.graphs

  def mods(p):
    return agent.modules(spec, p)

  # Encoder on the replayed window.
  enc = jax.jit(lambda p, obs: mods(p)[0].encoder(obs))
  out["encoder/tokens"] = enc(state.params, {k: data[k] for k in obs_keys})

  # One posterior step and one prior step from a given latent.
  s = J["step"]
  latent = Latent(s["deter"], s["stoch"])

  @jax.jit
  def observe_step(p, latent, action, embed, first):
    with D.role("observe"):
      new, post = mods(p)[0].dynamics._posterior_step(latent, action, embed, first,
                                                      jax.random.key(2))
    return new.deter, _logp(post), new.stoch

  D.use(draws["observe_step"])
  out.update(zip(("observe_step/deter", "observe_step/logp", "observe_step/stoch"),
                 observe_step(state.params, latent, s["action"], s["embed"], s["is_first"])))

  @jax.jit
  def imagine_step(p, latent, action):
    with D.role("imagine"):
      new, prior = mods(p)[0].dynamics.img_step(latent, action, jax.random.key(3))
    return new.deter, _logp(prior), new.stoch

  D.use(draws["imagine_step"])
  out.update(zip(("imagine_step/deter", "imagine_step/logp", "imagine_step/stoch"),
                 imagine_step(state.params, latent, s["action"])))

  # Decoder and heads on given features.
  f = J["feat"]

  @jax.jit
  def heads(p, deter, stoch, f):
    wm, actor, critic = mods(p)
    feat = wm.dynamics.features(Latent(deter, stoch))
    res = {f"decoder/{k}": v for k, v in wm.decoder(feat).items()}
    bins = dists.twohot_bins(wm.bins)
    res["heads/reward"] = wm.predict_reward(feat)
    res["heads/reward_loss"] = _reward_loss(wm.reward(feat), f["reward_target"], bins)
    res["heads/cont"] = wm.predict_cont(feat)
    res["heads/cont_loss"] = dists.binary_loss(wm.cont(feat)[..., 0], f["cont_target"])
    logits = critic(feat)
    res["heads/value"] = critic.value(logits)
    res["heads/value_loss"] = critic.loss(logits, f["value_target"])
    policy = actor(feat)
    if act_spec.kind == "continuous":
      res["heads/actor_mean"], res["heads/actor_std"] = policy.params
    else:
      res["heads/actor_logits"] = _logp(policy.params[0])
    res["heads/actor_logp"] = policy.logp(f["action"])
    res["heads/actor_entropy"] = policy.entropy()
    return res

  out.update(heads(state.params, f["deter"], f["stoch"], f))

  # Actor and critic losses on a given imagined trajectory, from the given normaliser.
  t = J["traj"]

  @jax.jit
  def actor_critic(p, slow, retnorm, t):
    wm, actor, critic = mods(p)
    slow_critic = nnx.merge(graphs[2], slow)
    feat = wm.dynamics.features(Latent(t["deter"], t["stoch"]))
    traj = behavior.Trajectory(feat, t["action"], wm.predict_reward(feat), wm.predict_cont(feat))
    losses, res, _ = behavior.actor_critic_loss(actor, critic, slow_critic, traj, retnorm, b)
    return {"ac/policy": losses["policy"], "ac/value": losses["value"], "ac/ret": res["ret"],
            "ac/retnorm_lo": res["retnorm"].low, "ac/retnorm_hi": res["retnorm"].high}

  out.update(actor_critic(state.params, state.slow_critic, state.retnorm, t))

  # The replay value loss on given replayed features, bootstrapped from given returns.
  @jax.jit
  def replay(p, slow, deter, stoch, data, bootstrap):
    wm, _, critic = mods(p)
    slow_critic = nnx.merge(graphs[2], slow)
    feat = wm.dynamics.features(Latent(deter, stoch))
    losses, res, _ = behavior.replay_value_loss(critic, slow_critic, feat, data, bootstrap, b)
    return {"repval/repval": losses["repval"], "repval/ret": res["ret"]}

  repl_data = {k: data[k] for k in ("is_last", "is_terminal", "reward")}
  out.update(replay(state.params, state.slow_critic, f["deter"], f["stoch"], repl_data,
                    J["repl"]["bootstrap"]))

  # The whole loss (computed before the inputs were written: its gradients make the
  # optimiser's given moments).
  total, losses, retnorm, grad_tree = grads
  out["loss/total"] = out["loss/total_f64"] = total
  for name, value in losses.items():
    out[f"loss/{name}"] = value
  out.update({f"grad/{k}": v for k, v in to_reference(grad_tree, spec).items()})

  # The optimiser alone: one update from the given state and gradients.
  optimizer = agent.make_optimizer(spec.optim)
  updates, _ = jax.jit(optimizer.update)(grad_tree, state.opt_state, state.params)
  out.update({f"opt/{k}": v for k, v in to_reference(updates, spec).items()})

  # One whole train step from the given state (the same draws as the whole loss).
  D.use(draws["loss"])
  new, *rest = agent.train_step(jax.tree.map(jnp.copy, state), batch)
  if rest[1:] and rest[1]:  # with a replay context, the posteriors to write back
    names = agent.tree_named(Latent("deter", "stoch"), agent.LATENT)
    for name, field in names.items():
      out[f"train/replay/{field}"] = rest[1][name]
  ref = reference_state(new, spec)
  for name, value in ref.items():
    if name.startswith(("opt/state/1/1/", "opt/state/2/1/")):
      kind = "nu" if name.startswith("opt/state/1/1/") else "mu"
      out[f"train/{kind}/{name[len('opt/state/1/1/'):]}"] = value
    elif "/" in name and not name.startswith(("opt/", "slowval_count", "retnorm")):
      out[f"train/param/{name}"] = value
  out["train/retnorm_lo"], out["train/retnorm_hi"] = new.retnorm.low, new.retnorm.high
  return {k: np.asarray(v) for k, v in out.items()}


def given_opt_state(state, grads, rng):
  """An optimiser state as after OPT_COUNT updates: second moments near the squared
  gradients' scale and first moments of a third of it, so one more update is a smooth
  function of the gradients (a fresh state gives lr x sign(gradient))."""
  def rms(g):
    return float(np.sqrt(np.mean(np.square(np.asarray(g))))) if np.size(g) else 0.0

  nu = jax.tree.map(lambda g: jnp.asarray(
      (rms(g) ** 2 + 1e-12) * rng.uniform(0.5, 1.5, np.shape(g)), jnp.float32), grads)
  mu = jax.tree.map(lambda g: jnp.asarray(
      0.3 * rms(g) * rng.normal(size=np.shape(g)), jnp.float32), grads)
  count = jnp.int32(OPT_COUNT)
  first, _, _, sched = state.opt_state
  opt_state = (first, (count, nu), (count, mu), sched._replace(count=count))
  return state.replace(opt_state=opt_state, step=count)


# --- comparing -------------------------------------------------------------------

def rel_diff(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape:
    raise ValueError(f"shapes differ: wmrl {a.shape}, reference {b.shape}")
  scale = np.max(np.abs(b)) if b.size else 0.0
  diff = np.max(np.abs(a - b)) if a.size else 0.0
  if diff == 0:
    return 0.0
  return float(diff / max(scale, 1e-30))


def rows(ours: dict, ref: dict, spec) -> list[tuple[str, float, str]]:
  """(comparison, largest relative difference, worst tensor) for every comparison."""
  table = []
  act_spec, obs_keys = spec.act_spec, sorted(k for k, _ in spec.obs_spec)

  def one(label, name):
    table.append((label, rel_diff(ours[name], ref[name]), ""))

  def change(label, name, before):
    table.append((label, rel_diff(ours[name] - np.float32(before),
                                  ref[name] - np.float32(before)), ""))

  def group(label, prefix):
    """The worst tensor under `prefix`."""
    names = sorted(k for k in ref if k.startswith(prefix))
    if not names:
      raise KeyError(f"the reference computed nothing under '{prefix}'")
    diffs = {k: rel_diff(ours[k], ref[k]) for k in names}
    worst = max(names, key=diffs.get)
    table.append((label, diffs[worst], worst[len(prefix):]))

  one("encoder output", "encoder/tokens")
  for step, what in (("observe_step", "posterior"), ("imagine_step", "prior")):
    name = step.replace("_", " ")
    one(f"{name}: deter", f"{step}/deter")
    one(f"{name}: {what} log-probabilities", f"{step}/logp")
    one(f"{name}: sampled latent", f"{step}/stoch")
  for key in obs_keys:
    one(f"decoder: {key}", f"decoder/{key}")
  one("reward head: prediction", "heads/reward")
  one("reward head: loss", "heads/reward_loss")
  one("continue head: probability", "heads/cont")
  one("continue head: loss", "heads/cont_loss")
  one("critic: value", "heads/value")
  one("critic: loss", "heads/value_loss")
  if act_spec.kind == "continuous":
    one("actor: mean", "heads/actor_mean")
    one("actor: std", "heads/actor_std")
  else:
    one("actor: log-probabilities", "heads/actor_logits")
  one("actor: log-probability of given actions", "heads/actor_logp")
  one("actor: entropy", "heads/actor_entropy")
  for name in ("dyn", "rep", "rec", "rew", "con"):
    one(f"world-model loss: {name}", f"loss/{name}")
  one("actor-critic, given trajectory: policy loss", "ac/policy")
  one("actor-critic, given trajectory: value loss", "ac/value")
  one("actor-critic, given trajectory: lambda-returns", "ac/ret")
  # The normaliser moves by 1% of a percentile per update: compare its change, which
  # the given state would otherwise drown.
  change("return normaliser after one update: change of low", "ac/retnorm_lo", RETNORM[0])
  change("return normaliser after one update: change of high", "ac/retnorm_hi", RETNORM[1])
  one("replay value loss, given replay: repval", "repval/repval")
  one("replay value loss, given replay: returns", "repval/ret")
  for name in ("policy", "value", "repval"):
    one(f"whole loss (imagination included): {name}", f"loss/{name}")
  one("whole loss: total", "loss/total")
  one("  against the reference's per-step losses summed in float64", "loss/total_f64")
  group("whole loss: gradients", "grad/")
  group("optimiser alone, given gradients: update", "opt/")
  group("train step: parameters after", "train/param/")
  group("train step: optimiser second moments", "train/nu/")
  group("train step: optimiser first moments", "train/mu/")
  if "train/replay/deter" in ours:
    one("train step: posteriors for the replay, deter", "train/replay/deter")
    one("train step: posteriors for the replay, latent", "train/replay/stoch")
  change("train step: return normaliser, change of low", "train/retnorm_lo", RETNORM[0])
  change("train step: return normaliser, change of high", "train/retnorm_hi", RETNORM[1])
  return table


# --- running the reference ---------------------------------------------------------

def reference_spaces(obs_spec, act_spec: ActionSpec) -> dict:
  """The reference agent's observation and action spaces (as JSON) for wmrl's specs."""
  spaces = {k: {"dtype": s.dtype, "shape": list(s.shape)} for k, s in obs_spec.items()}
  spaces.update({k: {"dtype": "bool", "shape": []} for k in ("is_first", "is_last", "is_terminal")})
  spaces["reward"] = {"dtype": "float32", "shape": []}
  if act_spec.kind == "continuous":
    action = {"dtype": "float32", "shape": [act_spec.dim], "low": -1, "high": 1}
  else:
    action = {"dtype": "int32", "shape": [], "low": 0, "high": int(act_spec.sizes[0])}
  return {"obs_space": spaces, "act_space": {"action": action}}


def launch_reference(python: str, src: pathlib.Path, workdir: pathlib.Path, mode: str,
                     log) -> subprocess.Popen:
  command = [python, str(HERE / "parity_reference.py"), "--reference-src", str(src),
             "--workdir", str(workdir), "--mode", mode]
  return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=log, text=True, bufsize=1)


def read_message(process, log) -> dict:
  """The next `PARITY ` line of the reference process (its other output goes to the log)."""
  for line in process.stdout:
    if line.startswith("PARITY "):
      return json.loads(line[len("PARITY "):])
    log.write(line)
  log.flush()
  raise RuntimeError(f"the reference process ended (status {process.wait()}); see {log.name}")


def run_parity(name: str, args, workdir: pathlib.Path) -> list[tuple[str, float, str]]:
  obs_spec, act_spec = SETUPS[name]
  config = parity_config(args.overrides)
  folder = workdir / name
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(1)
  state = agent.init(jax.random.key(0), obs_spec, act_spec, config)
  params = perturbed(state.params, rng, 0.2)
  params["wm"]["reward"]["out"]["bias"] = peaked(params["wm"]["reward"]["out"]["bias"])
  params["critic"]["head"]["out"]["bias"] = peaked(params["critic"]["head"]["out"]["bias"])
  state = state.replace(params=params, slow_critic=perturbed(params["critic"], rng, 0.05),
                        retnorm=behavior.ReturnNorm(jnp.float32(RETNORM[0]),
                                                    jnp.float32(RETNORM[1])))
  spec = state.spec
  reference_names(spec)  # refuses a model the reference cannot express, before any work
  wm, _, _ = agent.modules(spec, state.params)
  I, draws = make_inputs(config, obs_spec, act_spec, wm.encoder.out_dim)

  with D.patched(wmrl_patches()):
    grads = wmrl_grads(state, I, draws)
    state = given_opt_state(state, grads[3], rng)
    params_ref = reference_state(state, spec)
    (folder / "spec.json").write_text(json.dumps({
        "config": reference_config(config), **reference_spaces(obs_spec, act_spec),
        "decoder_keys": sorted(obs_spec)}, indent=1))
    np.savez(folder / "params.npz", **params_ref)
    np.savez(folder / "inputs.npz", **ref_inputs(I, act_spec, spec),
             **{f"grads|{k}": v for k, v in to_reference(grads[3], spec).items()})
    np.savez(folder / "draws.npz", **{f"{c}|{n}": v for c, d in draws.items()
                                      for n, v in d.items()})
    with open(folder / "reference.log", "w") as log:
      process = launch_reference(args.reference_python, args.reference_src, folder, "parity", log)
      ours = wmrl_outputs(state, I, draws, grads)
      np.savez(folder / "wmrl_outputs.npz", **ours)
      message = read_message(process, log)
      process.wait()
  if message.get("error"):
    raise RuntimeError(f"the reference failed: {message['error']} (log: {folder}/reference.log)")
  ref = dict(np.load(folder / "outputs.npz"))
  table = rows(ours, ref, spec)
  if args.verbose:
    for prefix in ("grad/", "opt/", "train/param/", "train/nu/", "train/mu/"):
      for k in sorted(n for n in ref if n.startswith(prefix)):
        print(f"    {k:<50} {rel_diff(ours[k], ref[k]):9.2e}")
  return table


# --- timing ------------------------------------------------------------------------

def run_timing(args, workdir: pathlib.Path) -> dict:
  """Both train steps on the same shapes, alternated: wmrl's then the reference's, per round."""
  config = apply_presets(Config(), args.size).replace(**{
      "run.batch_size": TIME_BATCH, "run.batch_length": TIME_LENGTH,
      "model.compute_dtype": "float32"})
  obs_spec, act_spec = SETUPS["vector"]
  folder = workdir / "timing"
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "spec.json").write_text(json.dumps({
      "config": reference_config(config), **reference_spaces(obs_spec, act_spec),
      "warmup": WARMUP}, indent=1))
  state = agent.init(jax.random.key(0), obs_spec, act_spec, config)
  # With a replay context the stored latents training starts from are part of the batch.
  entries = {}
  if STARTS_FROM_STORED and config.run.replay_context:
    from wmrl.testing import entry_specs
    entries = {"entries": entry_specs(agent.DREAMERV3, state)}
  batch = jax.tree.map(jnp.asarray, random_batch(
      obs_spec, act_spec, TIME_BATCH, TIME_LENGTH + config.run.replay_context, **entries))

  def train(state):
    out = agent.train_step(state, batch)  # (state, metrics[, posteriors for the replay])
    jax.block_until_ready(out)
    return out[0]

  with open(folder / "reference.log", "w") as log:
    process = launch_reference(args.reference_python, args.reference_src, folder, "time", log)
    try:
      ready = read_message(process, log)  # built and compiled, warmed up
      start = time.perf_counter()
      state = train(state)
      ours_compile = time.perf_counter() - start
      for _ in range(WARMUP):
        state = train(state)
      ours, theirs = [], []
      for round_ in range(args.rounds):
        times = []
        for _ in range(args.updates):
          start = time.perf_counter()
          state = train(state)
          times.append(time.perf_counter() - start)
        ours.append(statistics.median(times))
        process.stdin.write(f"time {args.updates}\n")
        process.stdin.flush()
        theirs.append(statistics.median(read_message(process, log)["seconds"]))
        print(f"  round {round_ + 1}: wmrl {ours[-1]:.3f} s, reference {theirs[-1]:.3f} s "
              "per update", flush=True)
      process.stdin.write("quit\n")
      process.stdin.flush()
    finally:
      process.wait(timeout=60)
  wmrl_s, ref_s = statistics.median(ours), statistics.median(theirs)
  return {"size": args.size, "wmrl": wmrl_s, "reference": ref_s, "ratio": ref_s / wmrl_s,
          "rounds": args.rounds,
          "updates": args.updates, "wmrl_rounds": ours, "reference_rounds": theirs,
          "wmrl_first_call": ours_compile, "reference_first_call": ready.get("first_call")}


# --- command line ------------------------------------------------------------------

def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--reference-src", type=pathlib.Path, required=True,
                      help=f"danijar/dreamerv3 at commit {REFERENCE_COMMIT}")
  parser.add_argument("--reference-python", default="python",
                      help="the Python of the reference's environment (JAX 0.4.33, ninjax, ...)")
  parser.add_argument("--config", choices=[*SETUPS, "all"], default="all",
                      help="vector: walker's proprio spaces, continuous actions; image: an "
                           "image and a vector, discrete actions (default: both)")
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="a wmrl config field for the parity check, e.g. optim.agc=0 "
                           "(the reference gets its equivalent); repeatable")
  parser.add_argument("--time", action="store_true",
                      help="also time both train steps (--size, batch 16 x 64, float32)")
  parser.add_argument("--time-only", action="store_true", help="time without the parity check")
  parser.add_argument("--size", default="size1m", help="the model size preset to time")
  parser.add_argument("--rounds", type=int, default=3, help="timing rounds (alternated)")
  parser.add_argument("--updates", type=int, default=5, help="timed updates per side and round")
  parser.add_argument("--tolerance", type=float, default=None,
                      help="exit with status 1 when the largest difference is above this")
  parser.add_argument("--json", type=pathlib.Path, default=None,
                      help="also write the tables (and timing) to this JSON file")
  parser.add_argument("--verbose", action="store_true",
                      help="also print each tensor's difference in the tensor groups")
  parser.add_argument("--workdir", type=pathlib.Path, default=None,
                      help="where the exchanged files go (default: a temporary folder)")
  args = parser.parse_args(argv)
  try:  # a mistyped field fails here, before any work
    args.overrides = dict(item.split("=", 1) for item in args.set)
    parity_config(args.overrides)
  except ValueError as error:
    print(f"parity: --set {' '.join(args.set)}: {error}", file=sys.stderr)
    return 2
  try:
    how = check_reference(args.reference_src)
  except RefusedReference as refused:
    print(refused, file=sys.stderr)
    return 2
  args.reference_src = args.reference_src.resolve()
  print(f"reference: {args.reference_src} ({how})")
  print(f"wmrl: JAX {jax.__version__}, {jax.devices()[0].platform}")
  workdir = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix="wmrl-parity-"))
  largest = 0.0
  results = {"reference": how, "configs": {}}
  if not args.time_only:
    names = list(SETUPS) if args.config == "all" else [args.config]
    for name in names:
      obs_spec, act_spec = SETUPS[name]
      print(f"\n[{name}] obs {', '.join(f'{k} {s.shape}' for k, s in obs_spec.items())}; "
            f"{act_spec.kind} actions {act_spec.sizes}; size1m, float32, batch {BATCH} x "
            f"{LENGTH} (+1 context), imagination "
            f"{parity_config(args.overrides).behavior.imag_horizon} steps"
            + "".join(f", {k}={v}" for k, v in args.overrides.items()))
      for note in without_equivalent(parity_config(args.overrides), act_spec):
        print(f"  note: {note}")
      try:
        table = run_parity(name, args, workdir)
      except NotComparable as why:
        print(f"  skipped: {why}")
        continue
      width = max(len(label) for label, _, _ in table)
      for label, diff, worst in table:
        flag = "" if diff <= 1e-5 else "   > 1e-5"
        where = f"  ({worst})" if worst else ""
        print(f"  {label:<{width}}  {diff:9.2e}{flag}{where}")
      largest = max([largest] + [diff for _, diff, _ in table])
      results["configs"][name] = [{"comparison": label, "difference": diff, "worst": worst}
                                  for label, diff, worst in table]
  if args.time or args.time_only:
    print(f"\ntiming: {args.size}, walker spaces, batch {TIME_BATCH} x {TIME_LENGTH} (+1 context), "
          f"float32, {jax.devices()[0].platform}; {args.rounds} rounds of {args.updates} updates "
          "each, wmrl then the reference")
    result = run_timing(args, workdir)
    print(f"train step: wmrl {result['wmrl']:.3f} s, reference {result['reference']:.3f} s per "
          f"update (medians); reference / wmrl = {result['ratio']:.2f}")
    results["timing"] = result
  if not args.time_only:
    results["largest"] = largest
  if args.json:
    args.json.write_text(json.dumps(results, indent=1))
  if not args.time_only:
    print(f"largest relative difference: {largest:.3e}")
    if args.tolerance is not None and largest > args.tolerance:
      return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
