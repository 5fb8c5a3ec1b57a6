"""Loop parity: what happens between updates, in wmrl's host driver and in the
reference's own training loop, compared on the same environment and recipe.

    python benchmarks/loop_parity.py --reference-src dreamerv3 \\
        --reference-python refenv/bin/python                   # ratios 32 and 512, 16 envs
    python benchmarks/loop_parity.py --reference-record R.npz  # against a saved reference run
    python benchmarks/loop_parity.py ... --inject ratio        # a negative control: must FAIL

The parity harness (benchmarks/parity.py) compares one update; this compares
the loop around it. The reference (danijar/dreamerv3 at e3f0224, set up as
for parity.py) runs `embodied.run.train` itself (its driver, replay, online
queue, train ratio and prefetching stream) in its own Python
(benchmarks/loop_parity_reference.py); wmrl runs `HostDriver`. Both step
the same environments (`Ticker`: deterministic episodes, a quarter of them
abandoned without `is_last`, each step observing (environment, time)) with
stub agents whose train steps record the windows they get and write back
marked latents, so every batch says which steps it holds. Compared:

- `updates`: the updates made by every environment step (the train ratio,
  when training starts), exactly.
- `random steps`: environment steps whose actions were random, not the policy's.
- `online queue`: every non-overlapping fresh window trained on once, in the
  order the queue got them, before the uniform draws; the totals exactly
  (up to the batches the reference's prefetch sampled ahead).
- `uniform ages`: the age of each uniformly drawn window over the windows
  its stream held when drawn, as the reference's uniform selector makes it
  (two-sample Kolmogorov-Smirnov test, p > 0.01).
- `annotation`: every window the reference trained on, gathered from wmrl's
  replay and annotated by wmrl (`split_batch`), against the reference's
  annotated flags of its trained steps, exactly.
- `context latents`: the latent each window starts from is the one stored
  with its context step, the policy's (the tick of that very step) or the
  last written back over it (that step's), in both, exactly; how many
  updates old the written ones are is printed beside.

The last line is the verdict: PASS, or FAIL naming the comparisons that
failed. Differences the reference's loop has by its design (its prefetch
thread samples the next batch while an update runs; its first batch is
drawn as soon as one window is stored) are printed as NAMED with figures.
"""
from __future__ import annotations

import argparse
import dataclasses
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from loop_parity_reference import Ticker  # noqa: E402

INJECTIONS = ("ratio", "online", "is-last")


@dataclasses.dataclass(frozen=True)
class Recipe:
  envs: int = 16
  batch_size: int = 16
  batch_length: int = 64
  context: int = 1
  ratio: float = 32.0
  steps: int = 20_000
  seed: int = 0

  def horizon(self) -> int:  # more steps of each environment than the run takes
    return self.steps // self.envs + 2 * (self.batch_size * self.batch_length) // self.envs + 1000


# --- wmrl's side ------------------------------------------------------------------

class TickerEnv:
  """The `Ticker` environments in wmrl's `Env` format."""

  def __init__(self, recipe: Recipe):
    from wmrl.spaces import ActionSpec, ArraySpec
    self.num_envs = recipe.envs
    self.obs_spec = {"tick": ArraySpec((2,), "float32")}
    self.act_spec = ActionSpec("discrete", (2,))
    self.tickers = [Ticker(recipe.seed, i, recipe.horizon()) for i in range(recipe.envs)]

  def _next(self) -> dict:
    steps = [ticker.observe() for ticker in self.tickers]
    return {key: np.stack([np.asarray(s[key]) for s in steps]) for key in steps[0]}

  def reset(self) -> dict:
    return self._next()

  def step(self, action) -> dict:
    return self._next()


def stub_algorithm(records: list, driver_box: list, context: int, annotate):
  """An `Algorithm` without networks: its carry is the tick it last observed
  (stored with the step as its replay entry `latent`), its policy acts (.5, .5), its
  train step records the batch and writes (-(update + 1), time) back."""
  import jax.numpy as jnp
  from wmrl.algorithms.contract import Algorithm

  def policy_step(state, obs, carry, key, mode):
    # Not one-hot, so the random prefill's actions (one-hot) stand out in replay.
    return jnp.full((obs["tick"].shape[0], 2), 0.5), {"latent": obs["tick"]}

  def train_step(state, batch):
    driver = driver_box[0]
    update = len(records)
    data, _ = annotate({k: np.asarray(v) for k, v in batch.items()}, context)
    records.append({
        "train_step": driver.counters.env_steps, "sample_step": driver.counters.env_steps,
        "sample_windows": len(driver.replays[0]) - driver.num_envs * (driver.schedule.window - 1),
        "tick": np.asarray(batch["tick"]).astype(np.int64),
        "is_first": np.concatenate([np.asarray(batch["is_first"][:, :context]),
                                    np.asarray(data["is_first"])], 1),
        "is_last": np.concatenate([np.asarray(batch["is_last"][:, :context]),
                                   np.asarray(data["is_last"])], 1),
        "latent": np.asarray(batch["latent"]).copy()})
    written = np.asarray(batch["tick"][:, context:]).copy()
    written[..., 0] = -(update + 1)
    return state, {}, {"latent": written}

  return Algorithm(
      name="loop-stub", init=lambda *a: jnp.zeros(()),
      initial_carry=lambda state, n: {"latent": jnp.zeros((n, 2))},
      policy_step=policy_step, record_action=lambda carry, action: carry,
      replay_entries=lambda state, carry: {"latent": carry["latent"]},
      train_step=train_step, report=lambda *a: {}, param_counts=lambda state: {"total": 0})


def without_is_last(batch: dict, context: int):
  """The negative control's annotation: wmrl's, minus the `is_last` before an
  in-window `is_first`."""
  data = {k: v[:, context:] for k, v in batch.items()}
  return data, None


def run_wmrl(recipe: Recipe, inject: str | None = None) -> tuple[dict, object]:
  """wmrl's host driver on the `Ticker`s with the stub agent: the records of
  its updates (the reference side's format), the actions it took and the driver."""
  from wmrl.algorithms.dreamerv3.agent import split_batch
  from wmrl.config import ReplayConfig, RunConfig
  from wmrl.drivers.host import HostDriver

  ratio = recipe.ratio * (1.1 if inject == "ratio" else 1.0)
  run = RunConfig(seed=recipe.seed, batch_size=recipe.batch_size,
                  batch_length=recipe.batch_length, replay_context=recipe.context,
                  train_ratio=ratio, replay_capacity=5_000_000)
  records, box = [], []
  annotate = without_is_last if inject == "is-last" else split_batch
  algo = stub_algorithm(records, box, recipe.context, annotate)
  env = TickerEnv(recipe)
  driver = HostDriver.single(algo, run, env, algo.init(None),
                             selection=ReplayConfig(online=inject != "online"))
  box.append(driver)
  updates = []
  while driver.counters.env_steps < recipe.steps:
    driver.iterate(lambda *a: None, lambda metrics: None)
    updates.append(len(records))
  stored = driver.replays[0].streams(("action",))["action"]  # [N, time, 2]
  actions = stored[..., 0] != 0.5
  stack = lambda key: np.stack([r[key] for r in records])
  record = {key: stack(key) for key in records[0]}
  record["updates_by_step"] = np.array(updates)
  record["random_steps"] = int(actions.sum())
  return record, driver


# --- the reference's side ---------------------------------------------------------

def run_reference(recipe: Recipe, python: str, src: str, folder: pathlib.Path) -> dict:
  out = folder / f"reference-{recipe.ratio:g}.npz"
  command = [python, str(HERE / "loop_parity_reference.py"), "--reference-src", src,
             "--out", str(out), "--envs", str(recipe.envs), "--batch-size", str(recipe.batch_size),
             "--batch-length", str(recipe.batch_length), "--context", str(recipe.context),
             "--ratio", str(recipe.ratio), "--steps", str(recipe.steps), "--seed", str(recipe.seed)]
  subprocess.run(command, check=True, capture_output=True, text=True)
  return load_record(out)


def load_record(path) -> dict:
  with np.load(path) as saved:
    return {key: saved[key] for key in saved}


def recipe_of(record: dict) -> Recipe:
  return Recipe(int(record["envs"]), int(record["batch_size"]), int(record["batch_length"]),
                int(record["context"]), float(record["ratio"]), int(record["steps"]),
                int(record["seed"]))


def updates_by_step(record: dict, recipe: Recipe) -> np.ndarray:
  """Updates made by the end of every vector step, from the steps the updates ran at."""
  ends = np.arange(1, recipe.steps // recipe.envs + 1) * recipe.envs
  return np.searchsorted(np.sort(record["train_step"]), ends, side="right")


# --- comparisons ------------------------------------------------------------------

@dataclasses.dataclass
class Row:
  name: str
  reference: str
  wmrl: str
  result: str  # PASS, FAIL or NAMED
  how: str


def queue_order(recipe: Recipe, steps: int) -> list[tuple[int, int]]:
  """The windows the reference's online queue gets in its first `steps`
  environment steps, in order: each stream's windows starting at times 1,
  L + 1, 2L + 1, ... (`Replay.add`), queued when the step L - 1 after the
  start is added, streams in the order they step."""
  L = recipe.batch_length + recipe.context
  order = []
  for time in range(L, steps // recipe.envs):
    if time % L == 0:
      order.extend((env, time - L + 1) for env in range(recipe.envs))
  return order


def online_rows(record: dict, recipe: Recipe) -> tuple[int, bool]:
  """Rows that took windows of the queue, and whether they took them in the
  queue's order, each once, each batch's first (the leading rows of each
  batch that continue the queue's order)."""
  order = queue_order(recipe, recipe.steps + recipe.envs)
  position = {window: i for i, window in enumerate(order)}
  expected, taken, in_order = 0, 0, True
  for batch in record["tick"]:
    for row in batch:
      window = (int(row[0, 0]), int(row[0, 1]))
      if position.get(window) != expected:
        break
      expected += 1
      taken += 1
  # No queued window may appear anywhere else before its turn.
  for batch in record["tick"]:
    for row in batch:
      i = position.get((int(row[0, 0]), int(row[0, 1])))
      if i is not None and i >= expected:
        in_order = False
  return taken, in_order


def uniform_ages(record: dict, recipe: Recipe, taken: int) -> np.ndarray:
  """Each uniformly drawn window's age over the windows its stream held when
  it was drawn, in [0, 1): 0 the newest. Within a vector step the first
  environments have stepped once more (the reference samples in a thread,
  at any step)."""
  L, N = recipe.batch_length + recipe.context, recipe.envs
  ages, skip = [], taken
  for batch, step in zip(record["tick"], record["sample_step"]):
    per_env, extra = divmod(int(step), N)
    for row in batch:
      if skip:
        skip -= 1
        continue
      env, start = int(row[0, 0]), int(row[0, 1])
      held = per_env + (env < extra) - L + 1  # windows its stream held
      ages.append((held - 1 - start) / held)
  return np.asarray(ages)


def context_checks(record: dict, recipe: Recipe) -> tuple[bool, np.ndarray]:
  """Whether every context latent is the policy's for that step or one written
  over that step by an earlier update; the written ones' ages in updates."""
  K = recipe.context
  if not K:
    return True, np.zeros(0)
  ticks, latents = record["tick"][:, :, K - 1], record["latent"][:, :, K - 1]
  ok, ages = True, []
  for update, (tick, latent) in enumerate(zip(ticks, latents)):
    policy = latent[:, 0] >= 0
    ok &= bool(np.all(latent[policy] == tick[policy]))
    ok &= bool(np.all(latent[~policy, 1] == tick[~policy, 1]))
    writer = -latent[~policy, 0].astype(np.int64) - 1
    ok &= bool(np.all(writer < update))
    ages.extend(update - writer)
  return ok, np.asarray(ages)


def annotation_check(reference: dict, driver, recipe: Recipe, annotate) -> tuple[bool, int]:
  """The reference's windows gathered from wmrl's replay and annotated by wmrl,
  against the reference's flags of the trained steps (the context step's are
  the reference's to force: it is not trained on)."""
  from wmrl.replay import Positions
  K, L = recipe.context, recipe.batch_length + recipe.context
  replay = driver.replays[0]
  ticks = reference["tick"].reshape(-1, L, 2)
  envs, starts = ticks[:, 0, 0], ticks[:, 0, 1]
  held = starts + L <= driver.counters.env_steps // recipe.envs
  windows = replay.gather(Positions(envs[held], starts[held]), L, ("is_first", "is_last", "action"))
  data, _ = annotate(windows, K)
  same = True
  for key in ("is_first", "is_last"):
    theirs = reference[key].reshape(-1, L)[held][:, K:]
    same &= bool(np.array_equal(np.asarray(data[key]), theirs))
  crossing = int(np.sum(windows["is_first"][:, K:].any(1)))
  return same, crossing


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
  """The two-sample Kolmogorov-Smirnov statistic and its asymptotic p-value."""
  a, b = np.sort(a), np.sort(b)
  grid = np.concatenate([a, b])
  d = float(np.max(np.abs(np.searchsorted(a, grid, "right") / len(a)
                          - np.searchsorted(b, grid, "right") / len(b))))
  n = len(a) * len(b) / (len(a) + len(b))
  lam = (np.sqrt(n) + 0.12 + 0.11 / np.sqrt(n)) * d
  k = np.arange(1, 101)
  p = float(np.clip(2 * np.sum((-1) ** (k - 1) * np.exp(-2 * (k * lam) ** 2)), 0, 1))
  return d, p


def compare(reference: dict, wmrl: dict, driver, recipe: Recipe,
            inject: str | None = None) -> list[Row]:
  from wmrl.algorithms.dreamerv3.agent import split_batch
  rows = []
  ref_updates = updates_by_step(reference, recipe)
  ours = wmrl["updates_by_step"][:len(ref_updates)]
  diff = np.flatnonzero(ref_updates != ours)
  first = lambda r: int(np.min(r["train_step"]))
  where = (f"first differs at step {(diff[0] + 1) * recipe.envs}: {ref_updates[diff[0]]} vs "
           f"{ours[diff[0]]}" if diff.size else "equal at every step")
  rows.append(Row("updates", f"{ref_updates[-1]} (first at {first(reference)})",
                  f"{ours[-1]} (first at {first(wmrl)})", "FAIL" if diff.size else "PASS",
                  f"at each of {len(ref_updates)} vector steps; {where}"))
  rows.append(Row("random steps", "0 (acts with the policy from the start)",
                  str(wmrl["random_steps"]), "PASS" if wmrl["random_steps"] == 0 else "FAIL",
                  "steps whose action was not the policy's"))

  (ref_taken, ref_order), (our_taken, our_order) = (online_rows(r, recipe)
                                                    for r in (reference, wmrl))
  rows_total = lambda r: r["tick"].shape[0] * r["tick"].shape[1]
  # The reference's prefetch samples one batch ahead: its last batch may hold
  # queue windows wmrl's run has not reached, or miss ones it has.
  close = abs(ref_taken - our_taken) <= recipe.batch_size
  ok = ref_order and our_order and close and our_taken > 0
  rows.append(Row("online queue", f"{ref_taken} rows ({ref_taken / rows_total(reference):.2%})",
                  f"{our_taken} rows ({our_taken / rows_total(wmrl):.2%})",
                  "PASS" if ok else "FAIL",
                  f"in queue order, each once: {ref_order}/{our_order}; totals within one batch"))

  ref_ages = uniform_ages(reference, recipe, ref_taken)
  our_ages = uniform_ages(wmrl, recipe, our_taken)
  d, p = ks_two_sample(ref_ages, our_ages)
  rows.append(Row("uniform ages", f"median {np.median(ref_ages):.3f} of {len(ref_ages)}",
                  f"median {np.median(our_ages):.3f} of {len(our_ages)}",
                  "PASS" if p > 0.01 else "FAIL", f"two-sample KS D {d:.4f}, p {p:.3g}"))

  annotate = without_is_last if inject == "is-last" else split_batch
  same, crossing = annotation_check(reference, driver, recipe, annotate)
  rows.append(Row("annotation", "the reference's flags", "wmrl's on the same windows",
                  "PASS" if same else "FAIL",
                  f"exact on {reference['tick'].shape[0] * recipe.batch_size} windows, "
                  f"{crossing} crossing an episode start"))

  (ref_ok, ref_lag), (our_ok, our_lag) = (context_checks(r, recipe) for r in (reference, wmrl))
  share = lambda lag, r: len(lag) / max(r["tick"].shape[0] * recipe.batch_size, 1)
  rows.append(Row("context latents", f"{share(ref_lag, reference):.1%} written back, "
                  f"median {np.median(ref_lag) if len(ref_lag) else 0:.0f} updates old",
                  f"{share(our_lag, wmrl):.1%} written back, "
                  f"median {np.median(our_lag) if len(our_lag) else 0:.0f} updates old",
                  "PASS" if ref_ok and our_ok else "FAIL",
                  "the policy's latent of that step or one written over it, exactly"))

  lag = reference["train_step"] - reference["sample_step"]
  rows.append(Row("batch drawn ahead", f"median {np.median(lag):.0f} steps before its update; "
                  f"first with {int(reference['sample_windows'][0])} windows stored",
                  f"at its update; first with {int(wmrl['sample_windows'][0])}", "NAMED",
                  "the reference's prefetch thread (JAXAgent.stream) and its one-update-late "
                  "write-back"))
  return rows


def table(rows: list[Row], recipe: Recipe) -> str:
  lines = [f"recipe: {recipe.envs} envs, batch {recipe.batch_size} x {recipe.batch_length} "
           f"(+{recipe.context} context), train ratio {recipe.ratio:g}, {recipe.steps} steps",
           "| comparison | reference | wmrl | result | how |", "|---|---|---|---|---|"]
  lines += [f"| {r.name} | {r.reference} | {r.wmrl} | {r.result} | {r.how} |" for r in rows]
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--reference-src")
  parser.add_argument("--reference-python")
  parser.add_argument("--reference-record", nargs="*", default=[],
                      help="saved reference runs (.npz) to compare against instead")
  parser.add_argument("--save-record", help="folder to keep the reference's records in")
  parser.add_argument("--ratios", default="32,512")
  parser.add_argument("--envs", type=int, default=16)
  parser.add_argument("--steps", type=int, default=20_000)
  parser.add_argument("--inject", choices=INJECTIONS,
                      help="a negative control: an error put into wmrl's side")
  args = parser.parse_args(argv)
  if not args.reference_record and not (args.reference_src and args.reference_python):
    parser.error("give --reference-src and --reference-python, or --reference-record")
  failed = []
  with tempfile.TemporaryDirectory() as tmp:
    folder = pathlib.Path(args.save_record or tmp)
    folder.mkdir(parents=True, exist_ok=True)
    if args.reference_record:
      references = [load_record(path) for path in args.reference_record]
    else:
      references = [run_reference(Recipe(args.envs, ratio=float(ratio), steps=args.steps),
                                  args.reference_python, args.reference_src, folder)
                    for ratio in args.ratios.split(",")]
    for reference in references:
      recipe = recipe_of(reference)
      wmrl, driver = run_wmrl(recipe, args.inject)
      rows = compare(reference, wmrl, driver, recipe, args.inject)
      print(table(rows, recipe), "\n", flush=True)
      failed += [f"{r.name} (ratio {recipe.ratio:g})" for r in rows if r.result == "FAIL"]
  print("FAIL: " + ", ".join(failed) if failed else "PASS", "" if not args.inject
        else f"(with --inject {args.inject})")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
