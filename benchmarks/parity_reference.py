"""The reference's side of `benchmarks/parity.py`, run in the reference's own Python.

    REFPY benchmarks/parity_reference.py --reference-src DIR --workdir FOLDER --mode parity
    REFPY benchmarks/parity_reference.py --reference-src DIR --workdir FOLDER --mode time

`parity.py` starts it; nothing here imports wmrl. It builds the reference's
agent (danijar/dreamerv3, `dreamerv3.agent.Agent`) from FOLDER/spec.json,
loads FOLDER/params.npz into it (every entry of its state, each name and
shape checked), patches its samplers to read the given draws
(`parity_draws.py`), computes each comparison from FOLDER/inputs.npz and
writes FOLDER/outputs.npz. In `time` mode it keeps the agent and answers
`time K` on standard input with the seconds of K train steps. Its messages
to `parity.py` are the stdout lines that start with `PARITY `; everything
else it prints goes to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import sys
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

PROTOCOL = sys.stdout


def message(payload: dict):
  PROTOCOL.write("PARITY " + json.dumps(payload) + "\n")
  PROTOCOL.flush()


def grouped(path) -> dict[str, dict[str, np.ndarray]]:
  """An npz of 'group|name' entries as {group: {name: array}}."""
  out = {}
  with np.load(path) as data:
    for key in data.files:
      group, name = key.split("|", 1)
      out.setdefault(group, {})[name] = data[key]
  return out


def build(src: pathlib.Path, folder: pathlib.Path, spec: dict):
  """The reference's agent on the spec's spaces and config (configs.yaml defaults, then it)."""
  import elements
  import ruamel.yaml as yaml
  from dreamerv3.agent import Agent

  configs = yaml.YAML(typ="safe").load((src / "dreamerv3" / "configs.yaml").read_text())
  config = elements.Config(configs["defaults"]).update(spec["config"])
  # No precompile (the harness patches samplers before the first trace), no profiler, and no
  # transfer guard (the harness feeds NumPy arrays).
  jaxcfg = dict(config.jax, precompile=False, profiler=False, transfer_guard=False)
  space = lambda s: elements.Space(np.dtype(s["dtype"]), tuple(s["shape"]),
                                   *([s["low"], s["high"]] if "low" in s else []))
  obs_space = {k: space(s) for k, s in spec["obs_space"].items()}
  act_space = {k: space(s) for k, s in spec["act_space"].items()}
  agent_config = elements.Config(
      **config.agent, logdir=str(folder / "logdir"), seed=0, jax=jaxcfg,
      batch_size=config.batch_size, batch_length=config.batch_length,
      replay_context=config.replay_context, report_length=config.report_length,
      replica=0, replicas=1)
  return Agent(obs_space, act_space, agent_config), config


def patches():
  """The reference's samplers reading the given draws, and roles for its rollouts."""
  import jax
  import parity_draws as D
  from dreamerv3 import rssm
  from embodied.jax import outs

  def onehot_sample(self, seed, shape=()):
    probs = jax.nn.softmax(self.dist.logits, -1)
    u = D.draw("stoch", probs.ndim - 1)
    return self._onehot_with_grad(D.categorical(jax.lax.stop_gradient(probs), u))

  def normal_sample(self, seed, shape=()):
    return D.draw("act", self.mean.ndim) * self.stddev + self.mean

  def categorical_sample(self, seed, shape=()):
    probs = jax.nn.softmax(self.logits, -1)
    return D.categorical(probs, D.draw("act", probs.ndim)[..., 0])

  return [(outs.OneHot, "sample", onehot_sample), (outs.Normal, "sample", normal_sample),
          (outs.Categorical, "sample", categorical_sample),
          (rssm.RSSM, "observe", D.wrap_role(rssm.RSSM.observe, "observe")),
          (rssm.RSSM, "imagine", D.wrap_role(rssm.RSSM.imagine, "imagine"))]


def load_params(agent, path) -> dict:
  """The given state, checked against the agent's own: the same names, shapes and dtypes."""
  import jax.numpy as jnp
  given = dict(np.load(path))
  missing = sorted(set(agent.params) - set(given))
  extra = sorted(set(given) - set(agent.params))
  wrong = sorted(k for k in set(given) & set(agent.params)
                 if tuple(given[k].shape) != tuple(agent.params[k].shape))
  if missing or extra or wrong:
    shapes = [(k, given[k].shape, agent.params[k].shape) for k in wrong]
    raise ValueError(f"the mapped parameters do not fit the reference agent: missing {missing}, "
                     f"extra {extra}, shapes differ {shapes}")
  return {k: jnp.asarray(v, agent.params[k].dtype) for k, v in given.items()}


def parity(args):
  import jax
  import jax.numpy as jnp
  import ninjax as nj
  import parity_draws as D
  import dreamerv3.agent as agentlib
  from embodied.jax import outs

  folder = args.workdir
  spec = json.loads((folder / "spec.json").read_text())
  agent, _ = build(args.reference_src, folder, spec)
  model = agent.model
  cfg = model.config
  params = load_params(agent, folder / "params.npz")
  given = dict(np.load(folder / "params.npz"))
  I = grouped(folder / "inputs.npz")
  draws = grouped(folder / "draws.npz")
  batch = I["batch"]
  B = batch["reward"].shape[0]
  seed = np.array([0, 0], np.uint32)
  out = {}

  def call(fn, *inputs):
    """fn run purely on the given parameters (jitted): (state after, output)."""
    def inner(params, seed, *inputs):
      return nj.pure(fn)(params, *inputs, seed=seed)
    return jax.jit(inner)(params, seed, *inputs)

  def logp(logit):
    return jax.nn.log_softmax(outs.OneHot(logit, model.dyn.unimix).dist.logits, -1)

  with D.patched(patches()):
    # Encoder on the replayed window.
    window = {k: v[:, 1:] for k, v in batch.items() if k in spec["obs_space"]}
    _, out["encoder/tokens"] = call(
        lambda obs: model.enc({}, obs, obs["is_first"], False)[2], window)

    # One posterior step and one prior step from a given latent.
    s = I["step"]
    carry = {"deter": s["deter"], "stoch": s["stoch"]}

    def observe_step(carry, tokens, action, reset):
      with D.role("observe"):
        _, (_, feat) = model.dyn._observe(carry, tokens, {"action": action}, reset, False)
      return feat["deter"], logp(feat["logit"]), feat["stoch"]

    D.use(draws["observe_step"])
    _, res = call(observe_step, carry, s["embed"], s["action"], s["is_first"])
    out.update(zip(("observe_step/deter", "observe_step/logp", "observe_step/stoch"), res))

    def imagine_step(carry, action):
      _, (feat, _) = model.dyn.imagine(carry, {"action": action}, 1, False, single=True)
      return feat["deter"], logp(feat["logit"]), feat["stoch"]

    D.use(draws["imagine_step"])
    _, res = call(imagine_step, carry, s["action"])
    out.update(zip(("imagine_step/deter", "imagine_step/logp", "imagine_step/stoch"), res))

    # Decoder and heads on given features.
    f = I["feat"]

    def heads(f):
      feat = {"deter": f["deter"], "stoch": f["stoch"]}
      reset = jnp.zeros(f["deter"].shape[:2], bool)
      _, _, recons = model.dec({}, feat, reset, False)
      res = {f"decoder/{k}": v.pred() for k, v in recons.items()}
      inp = model.feat2tensor(feat)
      rew, con, val = model.rew(inp, 2), model.con(inp, 2), model.val(inp, 2)
      res["heads/reward"] = rew.pred()
      res["heads/reward_loss"] = rew.loss(f["reward_target"])
      res["heads/cont"] = con.prob(1)
      res["heads/cont_loss"] = con.loss(f["cont_target"])
      res["heads/value"] = val.pred()
      res["heads/value_loss"] = val.loss(f["value_target"])
      policy = model.pol(inp, 2)["action"]
      if isinstance(policy, outs.Agg):  # continuous: a bounded normal per dimension
        res["heads/actor_mean"] = policy.output.mean
        res["heads/actor_std"] = policy.output.stddev
      else:
        res["heads/actor_logits"] = jax.nn.log_softmax(policy.logits, -1)
      res["heads/actor_logp"] = policy.logp(f["action"])
      res["heads/actor_entropy"] = policy.entropy()
      return res

    _, res = call(heads, f)
    out.update(res)

    # Actor and critic losses on a given imagined trajectory, from the given normaliser.
    t = I["traj"]

    def actor_critic(t):
      imgfeat = {"deter": t["deter"], "stoch": t["stoch"]}
      inp = model.feat2tensor(imgfeat)
      los, res, _ = agentlib.imag_loss(
          {"action": t["action"]}, model.rew(inp, 2).pred(), model.con(inp, 2).prob(1),
          model.pol(inp, 2), model.val(inp, 2), model.slowval(inp, 2),
          model.retnorm, model.valnorm, model.advnorm, update=True,
          contdisc=cfg.contdisc, horizon=cfg.horizon, **cfg.imag_loss)
      return {"ac/policy": los["policy"].mean(1), "ac/value": los["value"].mean(1),
              "ac/ret": res["ret"]}

    state, res = call(actor_critic, t)
    out.update(res)
    out["ac/retnorm_lo"] = state["retnorm/lo/value"]
    out["ac/retnorm_hi"] = state["retnorm/hi/value"]

    # The replay value loss on given replayed features, bootstrapped from given returns.
    def replay(f, last, term, rew, boot):
      inp = model.feat2tensor({"deter": f["deter"], "stoch": f["stoch"]})
      los, res, _ = agentlib.repl_loss(
          last, term, rew, boot, model.val(inp, 2), model.slowval(inp, 2), model.valnorm,
          update=True, horizon=cfg.horizon, **cfg.repl_loss)
      return {"repval/repval": los["repval"], "repval/ret": res["ret"]}

    _, res = call(replay, f, batch["is_last"][:, 1:], batch["is_terminal"][:, 1:],
                  batch["reward"][:, 1:], I["repl"]["bootstrap"])
    out.update(res)

    # The whole loss of one train step and its gradients, as `Agent.train` computes them.
    D.use(draws["loss"])

    def whole(data):
      carry = model.init_train(B)
      carry, obs, prevact, _ = model._apply_replay_context(carry, data)
      lossfn = lambda c, o, p: model.loss(c, o, p, training=True)
      loss, _, grads, aux = nj.grad(lossfn, model.modules, has_aux=True)(carry, obs, prevact)
      return loss, grads, aux[2]["losses"]

    _, (loss, grads, losses) = call(whole, batch)
    out["loss/total"] = loss
    out["loss/rec"] = sum(losses[k] for k in spec["decoder_keys"])
    for name in ("dyn", "rep", "rew", "con", "policy", "value", "repval"):
      out[f"loss/{name}"] = losses[name]
    out.update({f"grad/{k}": v for k, v in grads.items()})
    # The total again from the per-step losses, summed in float64: XLA's float32 reduction
    # of the image loss over B x T x H x W x C inside the jitted total loses some digits.
    scales = model.scales
    out["loss/total_f64"] = np.float64(sum(
        scales[k] * np.asarray(v, np.float64).mean() for k, v in losses.items()))

    # The optimiser alone: one update from the given state and gradients.
    opt = model._make_opt(**cfg.opt)
    grads_given = {k: jnp.asarray(v) for k, v in I["grads"].items()}
    sub = {k: params[k] for k in grads_given}
    first, _, _, sched = opt.init(sub)
    opt_state = (first,
                 (jnp.int32(given["opt/state/1/0"]),
                  {k: given[f"opt/state/1/1/{k}"] for k in sub}),
                 (jnp.int32(given["opt/state/2/0"]),
                  {k: given[f"opt/state/2/1/{k}"] for k in sub}),
                 sched._replace(count=jnp.int32(given["opt/state/3/count"])))
    updates, _ = jax.jit(opt.update)(grads_given, opt_state, sub)
    out.update({f"opt/{k}": v for k, v in updates.items()})

    # One whole train step through the agent's own jitted `train`.
    agent.params = {k: jax.device_put(v, agent.train_params_sharding[k])
                    for k, v in params.items()}
    carry = agent.init_train(B)
    agent.train(carry, {**batch, "seed": agent._seeds(0, agent.train_mirrored)})
    for name, value in agent.params.items():
      value = np.asarray(value)
      if name.startswith("opt/state/1/1/"):
        out[f"train/nu/{name[len('opt/state/1/1/'):]}"] = value
      elif name.startswith("opt/state/2/1/"):
        out[f"train/mu/{name[len('opt/state/2/1/'):]}"] = value
      elif not name.startswith(("opt/", "slowval_count", "retnorm")):
        out[f"train/param/{name}"] = value
    # The posteriors of the trained steps, for writing back into the replay.
    replay = agent._take_outs(agent.pending_outs)["replay"]
    out["train/replay/deter"] = replay["dyn/deter"]
    out["train/replay/stoch"] = replay["dyn/stoch"]
    out["train/retnorm_lo"] = np.asarray(agent.params["retnorm/lo/value"])
    out["train/retnorm_hi"] = np.asarray(agent.params["retnorm/hi/value"])

  np.savez(folder / "outputs.npz", **{k: np.asarray(v) for k, v in out.items()})
  message({"done": True, "outputs": len(out)})


def random_data(spaces: dict, batch: int, length: int, rng) -> dict:
  """A replay batch of the agent's spaces (observations, actions, its extra entries)."""
  data = {}
  for key, space in spaces.items():
    shape = (batch, length, *space.shape)
    if space.dtype == bool:
      data[key] = np.zeros(shape, bool)
    elif np.issubdtype(space.dtype, np.floating):
      data[key] = rng.normal(size=shape).astype(space.dtype)
    else:
      data[key] = np.zeros(shape, space.dtype)
  if "action" in data and np.issubdtype(data["action"].dtype, np.floating):
    data["action"] = np.clip(data["action"], -1, 1)
  data["is_first"][:, 0] = True
  return data


def serve(args):
  """Times the reference's train step on request: `time K` -> the seconds of K steps."""
  import jax
  from embodied.jax import internal

  folder = args.workdir
  spec = json.loads((folder / "spec.json").read_text())
  agent, config = build(args.reference_src, folder, spec)
  B, T, C = config.batch_size, config.batch_length, config.replay_context
  data = internal.device_put(random_data(agent.spaces, B, T + C, np.random.default_rng(0)),
                             agent.train_sharded)
  carry = agent.init_train(B)
  counter = [0]

  def step():
    nonlocal carry
    seed = agent._seeds(counter[0], agent.train_mirrored)
    counter[0] += 1
    start = time.perf_counter()
    carry, _, _ = agent.train(carry, {**data, "seed": seed})
    jax.block_until_ready((agent.params, carry))
    return time.perf_counter() - start

  first = step()
  for _ in range(int(spec.get("warmup", 5))):
    step()
  message({"ready": True, "first_call": first})
  for line in sys.stdin:
    words = line.split()
    if not words or words[0] == "quit":
      break
    if words[0] == "time":
      message({"seconds": [step() for _ in range(int(words[1]))]})


def main():
  global PROTOCOL
  parser = argparse.ArgumentParser()
  parser.add_argument("--reference-src", type=pathlib.Path, required=True)
  parser.add_argument("--workdir", type=pathlib.Path, required=True)
  parser.add_argument("--mode", choices=("parity", "time"), default="parity")
  args = parser.parse_args()
  sys.path.insert(0, str(args.reference_src))
  # Only the protocol's lines go to stdout; the reference's prints go to stderr.
  PROTOCOL = sys.stdout
  with contextlib.redirect_stdout(sys.stderr):
    try:
      (parity if args.mode == "parity" else serve)(args)
    except Exception:
      traceback.print_exc()
      message({"error": traceback.format_exc(limit=-3)})
      return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
