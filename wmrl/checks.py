"""What a run refuses before it starts, and what a resume cannot take: each
check raises a ValueError that names the field and the way out."""
from __future__ import annotations

import pathlib

import jax

from wmrl import algorithms, checkpoint, drivers, mesh
from wmrl.algorithms.contract import Algorithm, entry_specs
from wmrl.config import Config, ReplayConfig, diff as cfgdiff
from wmrl.drivers.selection import PRIORITY_SIGNALS
from wmrl.logging import require_wandb
from wmrl.replay import Replay
from wmrl.trees import tree_shapes

# Fields whose change breaks a resumed run: the saved replay or environments
# would not fit. A change of the algorithm's settings is checked by the shapes
# of the state it makes (`check_resume`); any other change is reported and used.
FIXED_ON_RESUME = ("algorithm", "env.id", "env.num_envs", "env.pixels", "env.image_size",
                   "run.replay_capacity")


def _selection_checks(replay: ReplayConfig) -> list[tuple[bool, str]]:
  fracs, prio = replay.fracs, replay.prio
  shares = (fracs.uniform, fracs.priority, fracs.recency)
  return [
      (min(shares) >= 0 and abs(sum(shares) - 1) < 1e-6,
       f"replay.fracs must be >= 0 and sum to 1 (uniform, priority, recency), got "
       f"{', '.join(map(str, shares))} (sum {sum(shares):g})"),
      (replay.priosignal in PRIORITY_SIGNALS,
       f"replay.priosignal must be one of {', '.join(PRIORITY_SIGNALS)}, got "
       f"{replay.priosignal!r}"),
      (prio.exponent >= 0 and 0 <= prio.maxfrac <= 1 and prio.initial >= 0,
       f"replay.prio needs exponent >= 0, 0 <= maxfrac <= 1 and initial >= 0, got "
       f"{prio.exponent}, {prio.maxfrac}, {prio.initial}"),
      (replay.recexp >= 0, f"replay.recexp must be >= 0 (older windows are no likelier), "
                           f"got {replay.recexp}"),
  ]


def validate(config: Config, logdir: str | pathlib.Path) -> None:
  """Refuses settings that cannot work, before anything starts."""
  r = config.run
  logdir = pathlib.Path(logdir)
  if logdir.exists() and not logdir.is_dir():
    raise ValueError(f"logdir '{logdir}' is a file; give a directory (it is created if missing)")
  checks = [
      (r.train_ratio > 0, f"run.train_ratio must be positive, got {r.train_ratio}"),
      (r.steps > 0, f"run.steps must be positive, got {r.steps}"),
      (r.batch_size > 0 and r.batch_length > 1,
       f"run.batch_size must be >= 1 and run.batch_length >= 2, got {r.batch_size}, {r.batch_length}"),
      (r.replay_context >= 0,
       f"run.replay_context must be >= 0 (steps before each training window whose stored "
       f"latent starts it; 0: start from zeros), got {r.replay_context}"),
      (config.env.num_envs > 0, f"env.num_envs must be positive, got {config.env.num_envs}"),
      (len(set(r.seeds)) == len(r.seeds),
       f"run.seeds repeat a seed ({', '.join(map(str, r.seeds))}): each seed trains once"),
      (r.seeds_batch >= 0,
       f"run.seeds_batch must be >= 0 (seeds vmapped at once; 0: all), got {r.seeds_batch}"),
      (r.seeds_batch == 0 or r.seeds,
       f"run.seeds_batch={r.seeds_batch} groups the seeds of run.seeds, and none are given: "
       f"name them (run.seeds 0,1,2,3) or drop run.seeds_batch"),
      (r.replay_capacity >= config.env.num_envs * (r.batch_length + r.replay_context),
       f"run.replay_capacity={r.replay_capacity} cannot hold one training sequence "
       f"(run.replay_context + run.batch_length = {r.replay_context + r.batch_length} steps) per "
       f"environment; raise it"),
      (r.report_every >= 0, f"run.report_every must be >= 0 (0: never), got {r.report_every}"),
      *_selection_checks(config.replay),
  ]
  for ok, message in checks:
    if not ok:
      raise ValueError(message)
  drivers.check(config)
  algorithms.validate(config)  # the algorithm's own settings (an unknown name included)
  mesh.check(config, jax.local_device_count(), jax.process_count())
  if r.wandb:
    require_wandb()  # the run asked for W&B: fail now, not after setting up


def state_shapes(config: Config, obs_spec, act_spec) -> dict[str, jax.ShapeDtypeStruct]:
  """The arrays of a freshly initialised state under `config`, by tree path, computed
  without allocating them."""
  algo = algorithms.get(config.algorithm)
  state = jax.eval_shape(lambda k: algo.init(k, obs_spec, act_spec, config), jax.random.key(0))
  return tree_shapes(state, "state")


def check_resume(saved: Config, config: Config, obs_spec, act_spec) -> list[str]:
  """Returns notes on changed fields; raises for changes a resume cannot take.

  A changed setting of the model or the optimiser is refused only where the
  state it makes has other arrays than the saved one (changing `free_nats`
  or `unimix` changes no array and is allowed).
  """
  changes = cfgdiff(saved, config)
  fixed = [n for n in changes if n in FIXED_ON_RESUME]
  if fixed:
    details = "; ".join(f"{n}: {changes[n][0]!r} -> {changes[n][1]!r}" for n in fixed)
    raise ValueError(f"cannot resume with a changed {', '.join(fixed)} ({details}); use the saved "
                     "value or start a new logdir")
  shaping = [n for n in changes if not n.startswith(("run.", "env."))]
  if shaping:
    old, new = state_shapes(saved, obs_spec, act_spec), state_shapes(config, obs_spec, act_spec)
    differ = sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n))
    if differ:
      details = "; ".join(f"{n}: {changes[n][0]!r} -> {changes[n][1]!r}" for n in shaping)
      arrays = ", ".join(f"{n} {_shape(old.get(n))} -> {_shape(new.get(n))}" for n in differ[:3])
      raise ValueError(f"cannot resume with a changed {', '.join(shaping)} ({details}): the state "
                       f"would have other arrays ({arrays}{', ...' if len(differ) > 3 else ''}); "
                       "use the saved values or start a new logdir")
  return [f"config field {n} changed on resume: {a!r} -> {b!r}" for n, (a, b) in changes.items()]


def check_replay_entries(replay: Replay, algo: Algorithm, state, context: int,
                         priority: bool = False) -> None:
  """Refuses a saved replay whose steps lack the replay entries that `context`
  needs (filled with run.replay_context 0, or by a wmrl that stored none), or
  hold ones a run without context would not add; likewise the steps'
  priorities, which replay holds where `priority` (replay.fracs.priority > 0)."""
  if not replay.keys:
    return
  if priority != ("priority" in replay.keys):
    have = "holds no priorities" if priority else "holds the steps' priorities"
    want = "above 0" if priority else "0"
    raise ValueError(f"cannot resume with replay.fracs.priority {want}: the saved replay {have} "
                     f"(it was filled with replay.fracs.priority {'0' if priority else 'above 0'});"
                     " resume with the fractions it was filled with or start a new logdir")
  names = set(entry_specs(algo, state))
  held = names & set(replay.keys)
  if context and held != names:
    raise ValueError(f"cannot resume with run.replay_context={context}: the saved replay has no "
                     f"{', '.join(sorted(names - held))} (it was filled with run.replay_context 0 "
                     "or by an older wmrl); resume with run.replay_context 0 or start a new logdir")
  if not context and held:
    raise ValueError(f"cannot resume with run.replay_context=0: the saved replay holds "
                     f"{', '.join(sorted(held))}, stored for a replay context above 0; resume with "
                     "run.replay_context above 0 or start a new logdir")


def _shape(spec) -> str:
  return "none" if spec is None else f"{spec.dtype}{list(spec.shape)}"


def check_layout(logdir: pathlib.Path, seeds_axis: bool) -> None:
  """Refuses a logdir that holds a run of the other kind: one seed's checkpoints
  at its top where seeds are asked, or seed folders where one seed is."""
  if seeds_axis and checkpoint.list_checkpoints(logdir):
    raise ValueError(f"{logdir} holds a run of one seed (its checkpoints are at the top); "
                     "train several seeds in a new logdir, or resume it without run.seeds")
  seeded = sorted(p.name for p in logdir.glob("seed-*") if checkpoint.list_checkpoints(p))
  if not seeds_axis and seeded:
    raise ValueError(f"{logdir} holds a run of several seeds ({', '.join(seeded)}); resume it "
                     "with its run.seeds, or one seed alone with --logdir LOGDIR/seed-K")
