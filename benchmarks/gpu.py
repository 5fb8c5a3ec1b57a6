"""The GPU script: everything wmrl measures on a GPU, as one command that fits in 5 minutes.

    bash benchmarks/gpu.sh --wheels WHEELS            # a lent GPU machine; results in $OUT
    bash benchmarks/gpu.sh --dry --out /tmp/gpudry    # the same stages on the CPU, tiny: ~1 min

The stages, in order, each with a time budget (290 s in all by default, so that a run
and a rerun fit in 15 minutes of GPU time):

  setup    installs the wheels of WHEELS offline (`pip install --no-index --no-deps
           --target`, into a temporary folder, not the machine's Python) and checks
           which of the modules the stages need import, and on which device JAX runs
  speed    the speed table: size1m, size12m and size50m in float32 and bfloat16, each
           row's compile time, updates/s and share of the matmul peak measured in the same
           stage for its dtype (wmrl.bench: `bench_preset`, `measure_peak`); 95 s
  seeds    1, 4 and 16 vmapped seeds of size1m: total updates/s and its ratio to one
           seed (wmrl.bench.seeds); 50 s
  run      the published `dmc_proprio` recipe on cartpole-balance, 5 vmapped seeds, for
           as many frames as fit: `wmrl train` on playground:CartpoleBalance (MuJoCo
           Playground's JAX port of the DMC task, through the fused driver; dm-control's
           wheels do not fit in what travels), or on dmc:cartpole-balance where only
           dm-control imports; stopped with SIGTERM (it saves and exits) before its budget
           ends; the rest of the time
  compare  `wmrl compare RUN --reference dmc_proprio --require-inside 0.8`; 15 s

The outputs, in --out (default $OUT, else benchmarks/results/gpu-DATE), are five files:
summary.json (every stage's figures, or SKIPPED and why), speed.csv, seeds.csv, run.csv
(the run's episodes) and gpu.log (everything the stages printed). stdout gets one line per
stage. A stage that cannot run here (a module missing, no time left) is SKIPPED with its
reason in the summary; nothing is left out silently.

The stages run in child processes under hard time limits: one compile slower than
expected costs that stage's rows, not the whole script. The speed and seeds stages share
one, this file run as a worker (`--worker`): one process start (on a GPU, one CUDA start),
and one seed's size1m update is the speed row's program, compiled already. It writes each
row as it finishes, so rows measured before a limit are kept, and leaves out a row that the
longest row so far says will not fit. Compile time is reported apart from steady state: per
speed row (`compile_s`, XLA's part `xla_compile_s`), per seed count (`first_call_s` against
the timed calls), and for the run (seconds to its first record with updates, against the
rates it logs from then on).

`--dry` runs every stage of the same script on the CPU (JAX_PLATFORMS=cpu) with a tiny model
(wmrl.testing.TINY), speed rows of size1m only, seeds 1 and 2, and a run of 2 seeds to 10k
frames (the published curves' first point), so that compare judges a point; where
playground is not installed there, gymnax:CartPole-v1 stands in for the run and compare is
SKIPPED (no published curve). On the CPU the run goes beside the worker, not after it.
tests/test_gpu_script.py runs it in the default suite.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import math
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout: the repository root holds the package
  sys.path.insert(0, str(REPO))

# The files written to --out; the issue allows at most 8.
SUMMARY, LOG = "summary.json", "gpu.log"
SPEED_CSV, SEEDS_CSV, RUN_CSV = "speed.csv", "seeds.csv", "run.csv"
REFERENCE = "dmc_proprio"
REQUIRE_INSIDE = "0.8"  # the README's example for dmc_proprio
STAGES = ("setup", "speed", "seeds", "run", "compare")
GRACE_S = 15.0  # a worker's hard limit past the deadline it keeps to itself
RUN_MIN_S = 60.0  # the run is not started with less: it compiles its programs first
SIGTERM_EXIT = 128 + signal.SIGTERM  # `wmrl train`'s status after a SIGTERM it saved on


@dataclasses.dataclass(frozen=True)
class Plan:
  """What each stage runs and how long it may take (seconds)."""

  dry: bool
  budget_s: float  # the whole script
  fields: tuple[str, ...]  # config fields of every stage (the tiny model in --dry)
  sizes: tuple[str, ...]
  dtypes: tuple[str, ...]
  bench_flags: tuple[str, ...]  # `wmrl bench` flags of every speed row
  speed_s: float
  seeds_preset: str
  seeds_dtype: str
  seed_counts: tuple[int, ...]  # the first is 1: the others' ratio is to it
  seeds_flags: tuple[str, ...]
  seeds_s: float
  # (env id, module it needs, whether it stands in for cartpole-balance): the first whose
  # module is installed runs.
  run_envs: tuple[tuple[str, str, bool], ...]
  run_seeds: tuple[int, ...]
  run_flags: tuple[str, ...]
  stop_margin_s: float  # SIGTERM this long before the run's budget ends: time to save
  compare_s: float


CARTPOLE = (("playground:CartpoleBalance", "mujoco_playground", False),
            ("dmc:cartpole-balance", "dm_control", False))


def make_plan(dry: bool, budget_s: float | None) -> Plan:
  if not dry:
    return Plan(
        dry=False, budget_s=budget_s or 290.0, fields=(),
        sizes=("size1m", "size12m", "size50m"), dtypes=("float32", "bfloat16"),
        bench_flags=("--repeats", "10", "--warmup", "2", "--policy-calls", "50",
                     "--peak-size", "4096", "--peak-repeats", "5"),
        speed_s=95.0, seeds_preset="size1m", seeds_dtype="float32", seed_counts=(1, 4, 16),
        seeds_flags=("--repeats", "10", "--warmup", "2", "--policy-calls", "20"), seeds_s=50.0,
        run_envs=CARTPOLE, run_seeds=(0, 1, 2, 3, 4),
        # run.steps only sizes the device replay (25k steps: 0.24 GiB a seed at size12m):
        # the wall clock stops the run long before. Records every 500 steps give the
        # steady-state rates.
        run_flags=("--run.steps", "25000", "--run.log_every", "500"),
        stop_margin_s=25.0, compare_s=15.0)
  from wmrl.testing import tiny_flags
  return Plan(
      dry=True, budget_s=budget_s or 600.0, fields=tuple(tiny_flags()),
      sizes=("size1m",), dtypes=("float32", "bfloat16"),
      bench_flags=("--repeats", "2", "--warmup", "1", "--policy-calls", "5",
                   "--peak-size", "256", "--peak-repeats", "2"),
      speed_s=150.0, seeds_preset="size1m", seeds_dtype="float32", seed_counts=(1, 2),
      seeds_flags=("--repeats", "2", "--warmup", "1", "--policy-calls", "5"), seeds_s=150.0,
      run_envs=CARTPOLE + (("gymnax:CartPole-v1", "gymnax", True),), run_seeds=(0, 1),
      # 10,240 frames: past the published first point (10k). 8 environments as the recipe;
      # a batch of 2 x 6 (TINY) at train ratio 3/16 owes 1/64 update per step, and 32
      # vector steps an iteration owe 4: the first iteration holds the training start (step
      # 60) and owes 4 too, so the run compiles one fused program, not three.
      run_flags=("--env.num_envs", "8", "--run.train_ratio", "0.1875", "--run.fused_steps", "32",
                 "--run.steps", "5120", "--run.log_every", "512"),
      stop_margin_s=20.0, compare_s=60.0)


def stage_budget(plan: Plan, stage: str, left_s: float) -> float:
  """Seconds `stage` may take when `left_s` remain of the whole budget: its own share,
  less what the later stages need (the run takes all that the others leave)."""
  later = {"speed": plan.seeds_s + RUN_MIN_S + plan.compare_s,
           "seeds": RUN_MIN_S + plan.compare_s, "run": plan.compare_s, "compare": 0.0}[stage]
  own = {"speed": plan.speed_s, "seeds": plan.seeds_s, "run": math.inf,
         "compare": plan.compare_s}[stage]
  budget = min(own, left_s - later)
  # Compare takes a second or two: it runs even where the run overstayed.
  return max(budget, 10.0) if stage == "compare" else budget


def fits(now: float, longest_s: float, deadline: float) -> bool:
  """Whether a row may start: the longest row so far (rows grow) would end by the deadline."""
  return not longest_s or now + 1.5 * longest_s <= deadline


# --- the worker: the speed and seeds stages, in a process of their own ----------------------

def _emit(path: pathlib.Path, item: dict) -> None:
  """One finished row, at once: rows written before a hard limit are kept."""
  with path.open("a") as f:
    f.write(json.dumps(item, default=float) + "\n")


def worker(plan: dict, out: pathlib.Path, deadlines: dict[str, float]) -> None:
  """The speed rows, then the seed counts, each part by its own deadline. One process for
  both: a process start (and on a GPU its CUDA start) is paid once, and one seed's update
  at size1m float32 is the speed row's program, compiled there already."""
  for stage, body in (("speed", worker_speed), ("seeds", worker_seeds)):
    if stage in deadlines:
      start = time.time()
      body(plan, lambda item, stage=stage: _emit(out, {"stage": stage, **item}),
           deadlines[stage])
      _emit(out, {"stage": stage, "kind": "end", "wall_s": time.time() - start})


def _budget_skip(what: str, longest: float, deadline: float) -> str:
  return (f"budget: the longest {what} so far took {longest:.0f} s and "
          f"{deadline - time.time():.0f} s of the stage were left")


def worker_speed(plan: dict, emit, deadline: float) -> None:
  from wmrl.bench import cli as bench_cli
  from wmrl.bench.preset import bench_preset
  from wmrl.bench.timing import measure_peak

  args = {dtype: bench_cli.parse_args(["--dtype", dtype, *plan["bench_flags"], *plan["fields"]])
          for dtype in plan["dtypes"]}
  peaks = {}
  # The peaks first (a second each): a row cut by the hard limit still has its share.
  for dtype, a in args.items():
    peaks[dtype] = measure_peak(a.peak_size, dtype, a.peak_repeats)
    emit({"kind": "peak", "dtype": dtype, **peaks[dtype]})
  longest = 0.0
  for size in plan["sizes"]:  # the smaller sizes first: what a tight budget drops is the largest
    for dtype in plan["dtypes"]:
      if not fits(time.time(), longest, deadline):
        emit({"kind": "row", "size": size, "dtype": dtype, "status": "SKIPPED",
              "reason": _budget_skip("row", longest, deadline)})
        continue
      start = time.time()
      try:
        row = bench_preset(size, args[dtype])
      except Exception as e:  # e.g. out of memory at size50m: the other rows still run
        emit({"kind": "row", "size": size, "dtype": dtype, "status": "failed",
              "reason": f"{type(e).__name__}: {e}"[:500]})
        continue
      wall = time.time() - start
      longest = max(longest, wall)
      emit({"kind": "row", **speed_row(size, dtype, row, peaks[dtype], wall)})


def speed_row(size: str, dtype: str, row: dict, peak: dict, wall: float) -> dict:
  """The figures of one `bench_preset` row that the table and CSV show."""
  t, b = row["train"]["seconds_per_update"], row["batch"]
  return {"size": size, "dtype": dtype, "status": "ran", "wall_s": wall, "params": row["params"],
          "batch": f"{b['size']}x{b['length']}+{b['context']}",
          "compile_s": row["compile"]["total_s"], "xla_compile_s": row["compile"]["compile_s"],
          "first_call_s": row["compile"]["first_call_s"],
          "s_per_update": t["median"], "s_per_update_min": t["min"], "s_per_update_max": t["max"],
          "updates_per_s": row["train"]["updates_per_s"],
          "flops_per_update": row["flops"]["per_update"],
          "flops_per_s": row["flops"]["achieved_per_s"], "peak_flops_per_s": peak["flops_per_s"],
          "fraction_of_peak": row["flops"]["achieved_per_s"] / peak["flops_per_s"],
          "policy_calls_per_s_1": row["policy"]["1"]["calls_per_s"],
          "policy_calls_per_s_16": row["policy"]["16"]["calls_per_s"],
          "memory_bytes": row["memory"]["bytes"], "memory_kind": row["memory"]["kind"]}


def worker_seeds(plan: dict, emit, deadline: float) -> None:
  from wmrl.bench import cli as bench_cli
  from wmrl.bench import seeds as bench_seeds
  from wmrl.bench.preset import build_config

  counts = plan["seed_counts"]
  args = bench_cli.parse_args(["--preset", plan["seeds_preset"], "--dtype", plan["seeds_dtype"],
                               "--seeds", ",".join(map(str, counts)), *plan["seeds_flags"],
                               *plan["fields"]])
  (preset,) = args.preset
  config = build_config(preset, args)
  rows, flops, longest = [], None, 0.0
  for count in counts:
    if not fits(time.time(), longest, deadline):
      emit({"kind": "row", "seeds": count, "status": "SKIPPED",
            "reason": _budget_skip("count", longest, deadline)})
      continue
    start = time.time()
    try:
      if flops is None:  # the first count also counts one update's FLOPs, as `wmrl bench` does
        args.seeds = (count,)
        (row,) = bench_seeds.bench_rows([preset], args)["seeds"]
        flops = row["flops"]["per_update"]
      else:
        row = bench_seeds.bench_seed_count(preset, config, count, args, flops)
    except Exception as e:
      emit({"kind": "row", "seeds": count, "status": "failed",
            "reason": f"{type(e).__name__}: {e}"[:500]})
      continue
    wall = time.time() - start
    longest = max(longest, wall)
    rows.append(row)
    bench_seeds.with_ratios(rows)  # each count's total updates/s over one seed's
    t = row["train"]
    emit({"kind": "row", "seeds": count, "status": "ran", "preset": preset,
          "dtype": plan["seeds_dtype"], "path": row["path"], "wall_s": wall,
          "first_call_s": row["first_call_s"],
          "s_per_program": t["seconds_per_program"]["median"],
          "updates_per_s": t["updates_per_s"],
          "updates_per_s_per_seed": t["updates_per_s_per_seed"],
          "ratio_to_1": t["ratio_to_1"], "flops_per_update": flops,
          "flops_per_s": row["flops"]["achieved_per_s"],
          "policy_env_steps_per_s": row["policy"]["env_steps_per_s"]})


# --- the parent: processes, limits, the log --------------------------------------------------

@dataclasses.dataclass
class Child:
  """A started stage process: where its output goes, and when it is stopped and killed."""

  process: subprocess.Popen
  log: pathlib.Path
  offset: int  # where its output starts in `log`
  start: float
  limit_s: float  # SIGKILL to its process group after this
  stop_s: float | None = None  # SIGTERM (once) after this
  ended: str = "exited"

  def check(self) -> bool:
    """Stops or kills it when due; whether it still runs."""
    if self.process.poll() is not None:
      return False
    now = time.time() - self.start
    if now >= self.limit_s:
      self.kill()
      self.ended = "killed"
      return False
    if self.stop_s is not None and now >= self.stop_s and self.ended == "exited":
      self.process.send_signal(signal.SIGTERM)  # `wmrl train` saves and exits on it
      self.ended = "stopped"
    return True

  def kill(self) -> None:
    try:
      os.killpg(self.process.pid, signal.SIGKILL)  # its group: anything it started too
    except ProcessLookupError:  # it ended meanwhile
      pass
    self.process.wait()


class Script:
  """The state of one invocation: plan, clock, log, folders, the children's environment."""

  def __init__(self, plan: Plan, out: pathlib.Path, work: pathlib.Path):
    self.plan, self.out, self.work = plan, out, work
    self.start = time.time()
    self.deadline = self.start + plan.budget_s
    self.log = (out / LOG).open("a")
    self.env = dict(os.environ, PYTHONUNBUFFERED="1")
    self.site: pathlib.Path | None = None
    self.background: list[Child] = []  # started and not yet waited for
    self.children: list[Child] = []  # every one started, killed if the script is
    if plan.dry:
      # The CPU even where a GPU is; and XLA's quick compiles, as the tests compile
      # (tests/conftest.py): the dry run's figures only show that each stage works.
      self.env["JAX_PLATFORMS"] = "cpu"
      self.env.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
      flags = self.env.get("XLA_FLAGS", "")
      if "xla_cpu_use_fusion_emitters" not in flags:
        self.env["XLA_FLAGS"] = f"{flags} --xla_cpu_use_fusion_emitters=false".strip()
      # A compilation cache that outlives the run: a dry run after the first compiles only
      # what changed (a cached program is the compiled program itself). Never in the real
      # mode, whose compile times are figures it reports.
      self.env["JAX_COMPILATION_CACHE_DIR"] = str(pathlib.Path(tempfile.gettempdir())
                                                  / "wmrl-gpu-dry-xla")
    else:
      self.env.pop("JAX_COMPILATION_CACHE_DIR", None)
    self.set_path()

  def set_path(self) -> None:
    paths = [str(self.site)] if self.site else []
    paths += [str(REPO)] + [p for p in self.env.get("PYTHONPATH", "").split(os.pathsep) if p]
    self.env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))

  def elapsed(self) -> float:
    return time.time() - self.start

  def left(self) -> float:
    return self.deadline - time.time()

  def note(self, text: str, echo: bool = True) -> None:
    line = f"[{self.elapsed():5.0f}s] {text}"
    if echo:
      print(line, flush=True)
    self.log.write(f"gpu.py {line}\n")
    self.log.flush()

  def launch(self, cmd: list[str], limit_s: float, stop_s: float | None = None,
             log: pathlib.Path | None = None, shown: str | None = None) -> Child:
    """Starts `cmd`, its output appended to `log` (default the script's log); the log
    names it as `shown` where the whole command would be too long to read."""
    self.note("$ " + (shown or " ".join(cmd)), echo=False)
    log = log or self.out / LOG
    with log.open("a") as f:  # the child keeps its own copy of the descriptor
      offset = f.tell()
      process = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=self.env,
                                 cwd=REPO, start_new_session=True)
    self.children.append(Child(process, log, offset, time.time(), limit_s, stop_s))
    return self.children[-1]

  def wait(self, child: Child, poll=None) -> tuple[int | None, str, str]:
    """Waits for `child` (keeping the limits of those in the background); returns its exit
    status, how it ended ('exited', 'stopped' or 'killed') and what it printed."""
    while child.check():
      if poll is not None:
        poll()
      self.background = [c for c in self.background if c is child or c.check()]
      time.sleep(0.25)
    if poll is not None:
      poll()
    with child.log.open() as f:
      f.seek(child.offset)
      printed = f.read()
    return child.process.returncode, child.ended, printed

  def child(self, cmd: list[str], limit_s: float, stop_s: float | None = None, poll=None,
            shown: str | None = None) -> tuple[int | None, str, str]:
    """`launch`, then `wait`."""
    return self.wait(self.launch(cmd, limit_s, stop_s, shown=shown), poll)


def _tail(text: str, lines: int = 8) -> str:
  return "\n".join(text.strip().splitlines()[-lines:])


def _read_jsonl(path: pathlib.Path) -> list[dict]:
  if not path.exists():
    return []
  items = []
  for line in path.read_text().splitlines():
    try:
      items.append(json.loads(line))
    except json.JSONDecodeError:  # a line cut by a kill
      pass
  return items


def _finite(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- setup -----------------------------------------------------------------------------------

# Which modules import, their versions and JAX's device, in the stages' environment. The
# modules after "--" are the run's environments in order of preference, only looked up
# (importing playground takes seconds, and the run imports it anyway): the first found is
# the one the run takes.
CHECK = r"""
import importlib, importlib.metadata, importlib.util, json, sys
DISTS = {"mujoco_playground": "playground", "orbax.checkpoint": "orbax-checkpoint",
         "dm_control": "dm-control"}

def version(name, module=None):
  try:
    return importlib.metadata.version(DISTS.get(name, name))
  except Exception:
    return getattr(module, "__version__", None)

names = sys.argv[1:]
first = names.index("--")
modules = {}
for name in names[:first]:
  try:
    modules[name] = {"ok": True, "version": version(name, importlib.import_module(name))}
  except Exception as e:
    modules[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}
found = False
for name in names[first + 1:]:
  if found:
    modules[name] = {"ok": None, "error": "not looked up: an earlier environment is installed"}
  elif importlib.util.find_spec(name) is None:
    modules[name] = {"ok": False, "error": "not installed"}
  else:
    modules[name] = {"ok": True, "version": version(name), "imported": False}
    found = True
device = {}
try:
  import jax
  d = jax.devices()[0]
  device = {"platform": d.platform, "device_kind": d.device_kind,
            "device_count": jax.device_count(), "jax_version": jax.__version__}
except Exception as e:
  device = {"error": f"{type(e).__name__}: {e}"[:300]}
print("CHECK " + json.dumps({"modules": modules, "device": device}))
"""
CORE = ("jax", "flax", "optax", "orbax.checkpoint", "numpy", "gymnasium")


def stage_setup(s: Script, wheels: str | None) -> dict:
  result: dict = {"status": "ran"}
  if wheels:
    files = sorted(pathlib.Path(wheels).glob("*.whl"))
    s.site = s.work / "site"
    s.set_path()
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet",
           "--target", str(s.site), *map(str, files)]
    rc, ended, printed = s.child(cmd, limit_s=180) if files else (None, "none", "")
    result["wheels"] = {"folder": wheels, "files": [f.name for f in files],
                        "installed": rc == 0, "target": str(s.site)}
    if rc != 0:
      result["wheels"]["error"] = (f"no .whl files in {wheels}" if not files
                                   else f"pip {ended} with status {rc}: {_tail(printed)}")
  envs = [module for _, module, _ in s.plan.run_envs]
  modules = [*CORE, "--", *envs]
  rc, ended, printed = s.child([sys.executable, "-c", CHECK, *modules], limit_s=120,
                               shown=f"{sys.executable} -c CHECK {' '.join(modules)}")
  found = [line for line in printed.splitlines() if line.startswith("CHECK ")]
  if rc != 0 or not found:
    return {**result, "status": "failed",
            "reason": f"the module check {ended} with status {rc}: {_tail(printed)}"}
  result.update(json.loads(found[-1][len("CHECK "):]))
  result["python"] = sys.version.split()[0]
  return result


def imports(setup: dict, module: str) -> bool:
  """Whether `module` imported in the check (the run's environments: is installed)."""
  return setup.get("modules", {}).get(module, {}).get("ok", False)


def missing(setup: dict, module: str, why: str) -> str | None:
  """The SKIPPED reason where `module` does not import, else None."""
  if imports(setup, module):
    return None
  error = setup.get("modules", {}).get(module, {}).get("error", "not checked")
  return (f"{module} does not import ({error}); {why}. Pass --wheels DIR with its wheel "
          "(benchmarks/README.md, 'The GPU machine')")


GYM_WHY = "wmrl.bench and wmrl.run import wmrl.envs, which imports it"


# --- speed and seeds -------------------------------------------------------------------------

def start_bench(s: Script, budgets: dict[str, float]) -> Child:
  """Starts the worker of the speed and seeds stages (those in `budgets`)."""
  plan = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(s.plan).items()}
  now, deadlines = time.time(), {}
  for stage, budget in budgets.items():  # the seeds may use what the speed rows leave
    now = deadlines[stage] = now + budget
  cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", json.dumps(deadlines),
         "--worker-plan", json.dumps(plan), "--worker-out", str(s.work / "bench.jsonl")]
  # Beside the run (--dry), its output waits in a file of its own, not mixed into the log.
  return s.launch(cmd, limit_s=sum(budgets.values()) + GRACE_S,
                  log=s.work / "bench.log" if s.plan.dry else None,
                  shown=" ".join(cmd[:4]) + " --worker-plan PLAN (the summary's plan)")


def collect_bench(s: Script, child: Child, budgets: dict[str, float]) -> dict[str, dict]:
  """The worker's rows by stage, and every planned row that did not run named with the
  reason."""
  rc, ended, printed = s.wait(child)
  if child.log != s.out / LOG:
    s.log.write(printed)
    s.log.flush()
  problem = None
  if ended == "killed":
    problem = f"killed at the worker's hard limit ({child.limit_s:.0f} s)"
  elif rc != 0:
    problem = f"the worker exited with status {rc}: {_tail(printed)}"
  items_path = s.work / "bench.jsonl"
  items = _read_jsonl(items_path)
  results = {}
  for stage in budgets:
    mine = [{k: v for k, v in i.items() if k != "stage"} for i in items if i["stage"] == stage]
    wall = next((i["wall_s"] for i in mine if i["kind"] == "end"), None)
    rows = [{k: v for k, v in i.items() if k != "kind"} for i in mine if i["kind"] == "row"]
    if stage == "speed":
      planned = [{"size": size, "dtype": dtype} for size in s.plan.sizes for dtype in s.plan.dtypes]
      result = {"peaks": {i["dtype"]: {k: i[k] for k in ("n", "flops_per_s", "calls_per_block")}
                          for i in mine if i["kind"] == "peak"}}
    else:
      planned = [{"seeds": n} for n in s.plan.seed_counts]
      result = {}
    done = [{k: row[k] for k in planned[0]} for row in rows]
    # Rows a hard limit or a crash cut are named, not dropped.
    rows += [{**key, "status": "SKIPPED", "reason": problem or "the worker ended before this row"}
             for key in planned if key not in done]
    ran = sum(r["status"] == "ran" for r in rows)
    status = "ran" if ran == len(planned) else "partial" if ran else "failed"
    results[stage] = {"status": status, "problem": problem if wall is None else None,
                      "wall_s": wall, "budget_s": budgets[stage], **result, "rows": rows}
  if "seeds" in results:
    peak = results.get("speed", {}).get("peaks", {}).get(s.plan.seeds_dtype)
    for row in results["seeds"]["rows"]:  # the matmul peak the speed stage measured
      if row["status"] == "ran":
        row["fraction_of_peak"] = row["flops_per_s"] / peak["flops_per_s"] if peak else None
    results["seeds"]["peak_from"] = "the speed stage, same dtype" if peak else None
  return results


# --- the run ---------------------------------------------------------------------------------

class Watch:
  """Records when each new line of a metrics.jsonl appears (the run's records carry no
  time): the first record with updates marks the end of compiles and prefill."""

  def __init__(self, path: pathlib.Path, start: float):
    self.path, self.start, self.seen, self.times = path, start, 0, []

  def __call__(self) -> None:
    if not self.path.exists():
      return
    lines = self.path.read_text().split("\n")[:-1]  # the last may be half written
    now = time.time() - self.start
    for line in lines[self.seen:]:
      try:
        self.times.append((now, json.loads(line)))
      except json.JSONDecodeError:
        break
    self.seen = len(self.times)


def stage_run(s: Script, budget: float, setup: dict) -> tuple[dict, pathlib.Path | None]:
  p = s.plan
  chosen = next(((env, needs, stand_in) for env, needs, stand_in in p.run_envs
                 if imports(setup, needs)), None)
  if chosen is None:
    needs = ", ".join(sorted({m for _, m, _ in p.run_envs}))
    return {"status": "SKIPPED", "reason": f"none of {needs} imports: no cartpole-balance to "
                                           "train. Pass --wheels DIR with playground's wheels "
                                           "(benchmarks/README.md, 'The GPU machine')"}, None
  env_id, _, stand_in = chosen
  reason = missing(setup, "gymnasium", GYM_WHY)
  if reason:
    return {"status": "SKIPPED", "env": env_id, "reason": reason}, None
  logdir = s.work / "run"
  seeds = ",".join(map(str, p.run_seeds))
  # Evaluation, videos and TensorBoard are off: none of them changes what is learned, and
  # each costs time the 5 minutes do not have (compare reads the training episodes).
  argv = ["train", "--logdir", str(logdir), "--env", env_id, "--preset", REFERENCE, *p.fields,
          "--run.seeds", seeds, "--run.eval_every", "0", "--run.eval_at_end", "false",
          "--run.report_every", "0", "--run.eval_video", "false", "--run.tensorboard", "false",
          *p.run_flags]
  start = time.time()
  watch = Watch(logdir / f"seed-{p.run_seeds[0]}" / "metrics.jsonl", start)
  rc, ended, printed = s.child([sys.executable, "-m", "wmrl.cli", *argv], limit_s=budget,
                               stop_s=max(budget - p.stop_margin_s, 1.0), poll=watch)
  wall = time.time() - start
  how = {"exited": "run.steps reached" if rc == 0 else f"exited with status {rc}",
         "stopped": "stopped by SIGTERM at its budget; it saved a checkpoint and exited"
                    if rc == SIGTERM_EXIT else f"SIGTERM at its budget, then status {rc}",
         "killed": "killed at its hard limit"}[ended]
  ok = rc == 0 or (ended == "stopped" and rc == SIGTERM_EXIT)
  result = {"status": "ran" if ok else "failed", "env": env_id, "stand_in": stand_in,
            "driver": "fused" if env_id.split(":")[0] in ("playground", "gymnax") else "host",
            "preset": REFERENCE, "seeds": list(p.run_seeds), "command": ["wmrl", *argv],
            "ended": how, "exit_status": rc, "wall_s": wall, "budget_s": budget}
  if not ok:
    result["reason"] = f"{how}: {_tail(printed)}"
  result.update(run_figures(logdir, p.run_seeds, watch))
  return result, logdir


def run_figures(logdir: pathlib.Path, seeds: tuple[int, ...], watch: Watch) -> dict:
  """How far the run got, its episodes (for run.csv), and its speed: seconds to the first
  record with updates (start-up, compiles, prefill) apart from the steady-state rates
  the run logs after that record."""
  episodes, per_seed = [], {}
  for seed in seeds:
    records = _read_jsonl(logdir / f"seed-{seed}" / "metrics.jsonl")
    mine = [r for r in records if "episode/score" in r]
    episodes += [{"seed": seed, "step": r["step"], "frames": r.get("frames"),
                  "score": r["episode/score"], "length": r.get("episode/length")} for r in mine]
    scores = [r["episode/score"] for r in mine][-10:]
    per_seed[seed] = {"env_steps": max((r["step"] for r in records), default=0),
                      "frames": max((r.get("frames", 0) for r in records), default=0),
                      "updates": max((r.get("train/updates", 0) for r in records), default=0),
                      "episodes": len(mine),
                      "mean_score_last_10": sum(scores) / len(scores) if scores else None}
  timed = [(t, r) for t, r in watch.times if "fps/train" in r]
  first = next((t for t, r in timed if r.get("train/updates", 0) > 0), None)
  steady = [r for t, r in timed if first is not None and t > first]
  rates = None
  if steady:
    updates = statistics.median(r["fps/train"] for r in steady)
    steps = statistics.median(r["fps/env"] for r in steady)
    n = len(seeds)
    frames_per_step = (steady[0]["frames"] / steady[0]["step"]) if steady[0]["step"] else 1
    rates = {"records": len(steady), "updates_per_s_per_seed": updates,
             "updates_per_s_all": n * updates, "env_steps_per_s_per_seed": steps,
             "frames_per_s_all": n * steps * frames_per_step}
  return {"frames": max((v["frames"] for v in per_seed.values()), default=0),
          "per_seed": per_seed, "first_record_s": timed[0][0] if timed else None,
          "first_update_record_s": first, "steady": rates, "episodes": episodes}


# --- compare ---------------------------------------------------------------------------------

def stage_compare(s: Script, budget: float, run: dict, logdir: pathlib.Path | None) -> dict:
  if run.get("status") != "ran" or logdir is None:
    return {"status": "SKIPPED", "reason": "the run stage did not run: nothing to compare"}
  from wmrl import suites
  from wmrl.compare import compare
  from wmrl.compare.references import load_reference

  task, reference = suites.task_name(run["env"]), load_reference(REFERENCE)
  if task not in reference.tasks:
    return {"status": "SKIPPED", "reason": f"{run['env']} (task {task}) stood in for "
                                           f"cartpole-balance and has no published "
                                           f"'{REFERENCE}' curve"}
  if not run["episodes"]:
    return {"status": "SKIPPED", "reason": "the run ended no episode: no score to compare"}
  points = [int(f) for f in reference.tasks[task]["frames"]]
  # compare refuses a run short of the first published point; asked for that point, it
  # judges none, and says so in its verdict.
  frames = None if run["frames"] >= points[0] else [points[0]]
  argv = ["compare", str(logdir), "--reference", REFERENCE, "--require-inside", REQUIRE_INSIDE]
  argv += ["--frames", str(points[0])] if frames else []
  rc, ended, printed = s.child([sys.executable, "-m", "wmrl.cli", *argv], limit_s=budget)
  verdict = next((line.removeprefix("wmrl compare: ") for line in printed.splitlines()
                  if "inside the published" in line), None)
  result = {"status": "ran" if rc in (0, 3) and verdict else "failed",
            "command": ["wmrl", *argv], "exit_status": rc, "verdict": verdict,
            "required": float(REQUIRE_INSIDE), "passed": rc == 0}
  if result["status"] != "ran":
    result["reason"] = f"wmrl compare {ended} with status {rc}: {_tail(printed)}"
    return result
  # The same comparison in this process, for its points in the summary (no bootstrap).
  try:
    detail = compare([str(logdir)], REFERENCE, frames=frames, bootstrap=0,
                     require_inside=float(REQUIRE_INSIDE))
  except Exception as e:  # the command's verdict stands; only the detail is missing
    result["points_error"] = f"{type(e).__name__}: {e}"
    return result
  result["points"] = [{"frames": q["frames"], "published": q["published"], "inside": q["inside"],
                       "runs": {k: v for k, v in q["runs"].items() if k != "scores"}}
                      for q in detail["tasks"][task]["points"]]
  return result


# --- outputs ---------------------------------------------------------------------------------

SPEED_COLUMNS = ("size", "dtype", "status", "params", "batch", "compile_s", "xla_compile_s",
                 "first_call_s", "s_per_update", "s_per_update_min", "s_per_update_max",
                 "updates_per_s", "flops_per_update", "flops_per_s", "peak_flops_per_s",
                 "fraction_of_peak", "policy_calls_per_s_1", "policy_calls_per_s_16",
                 "memory_bytes", "reason")
SEEDS_COLUMNS = ("preset", "dtype", "seeds", "status", "first_call_s", "s_per_program",
                 "updates_per_s", "updates_per_s_per_seed", "ratio_to_1", "flops_per_update",
                 "flops_per_s", "fraction_of_peak", "policy_env_steps_per_s", "reason")
RUN_COLUMNS = ("seed", "step", "frames", "score", "length")


def write_csv(path: pathlib.Path, columns: tuple[str, ...], rows: list[dict]) -> None:
  with path.open("w", newline="") as f:
    writer = csv.DictWriter(f, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


def _g(value, scale: float = 1.0, digits: int = 3) -> str:
  return f"{value * scale:.{digits}g}" if _finite(value) else "-"


def speed_line(result: dict) -> str:
  ran = [r for r in result["rows"] if r["status"] == "ran"]
  parts = [f"{r['size']} {r['dtype'][:4]} {_g(r['updates_per_s'])} upd/s "
           f"{_g(r['fraction_of_peak'], 100, 2)}%" for r in ran]
  peaks = ", ".join(f"{d} {_g(p['flops_per_s'], 1e-12)}" for d, p in result["peaks"].items())
  return (f"{len(ran)}/{len(result['rows'])} rows; peak TFLOP/s {peaks or '-'}; "
          + "; ".join(parts))


def seeds_line(result: dict) -> str:
  parts = [f"{r['seeds']}: {_g(r['updates_per_s'])} upd/s x{_g(r['ratio_to_1'])}"
           if r["status"] == "ran" else f"{r['seeds']}: {r['status']}" for r in result["rows"]]
  return "; ".join(parts)


def run_line(result: dict) -> str:
  steady = result.get("steady") or {}
  stand_in = ", a stand-in" if result["stand_in"] else ""
  return (f"{result['env']} ({result['driver']} driver{stand_in}), "
          f"{len(result['seeds'])} seeds, {result['frames']:,} frames in {result['wall_s']:.0f} s "
          f"({result['ended']}); first updates at {_g(result['first_update_record_s'])} s, then "
          f"{_g(steady.get('updates_per_s_all'))} upd/s all seeds")


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="benchmarks/gpu.sh", description="Everything wmrl measures on a GPU, in one command "
      "of at most 5 minutes (the module doc of benchmarks/gpu.py says what and how).")
  parser.add_argument("--dry", action="store_true",
                      help="every stage on the CPU with a tiny model, in under a minute")
  parser.add_argument("--out", help="output folder (default: $OUT if set, else "
                                    "benchmarks/results/gpu-DATE)")
  parser.add_argument("--wheels", help="folder of wheels to install offline first (playground, "
                                       "mujoco, gymnasium, ...: benchmarks/README.md)")
  parser.add_argument("--budget", type=float,
                      help="seconds for the whole script (default 290; --dry: 600, a backstop)")
  parser.add_argument("--stages", default=",".join(STAGES[1:]),
                      help="stages to run, joined by commas (default: all); the others are "
                           "SKIPPED")
  # The worker (the speed and seeds stages): its deadlines by stage, the plan, its output.
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  parser.add_argument("--worker-plan", help=argparse.SUPPRESS)
  parser.add_argument("--worker-out", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  asked = [name.strip() for name in args.stages.split(",") if name.strip()]
  unknown = [name for name in asked if name not in STAGES[1:]]
  if unknown:
    parser.error(f"--stages: unknown stage {unknown[0]!r}; the stages are "
                 f"{', '.join(STAGES[1:])}")
  args.stages = set(asked)
  return args


def default_out() -> pathlib.Path:
  if os.environ.get("OUT"):
    return pathlib.Path(os.environ["OUT"])
  return REPO / "benchmarks" / "results" / f"gpu-{datetime.date.today().isoformat()}"


def main(argv: list[str] | None = None) -> int:
  args = parse_args(list(sys.argv[1:] if argv is None else argv))
  if args.worker:
    worker(json.loads(args.worker_plan), pathlib.Path(args.worker_out), json.loads(args.worker))
    return 0
  plan = make_plan(args.dry, args.budget)
  out = pathlib.Path(args.out) if args.out else default_out()
  out.mkdir(parents=True, exist_ok=True)
  s = Script(plan, out, pathlib.Path(tempfile.mkdtemp(prefix="wmrl-gpu-")))
  summary = {"mode": "dry" if plan.dry else "gpu",
             "date": datetime.datetime.now().isoformat(timespec="seconds"), "out": str(out),
             "budget_s": plan.budget_s, "plan": dataclasses.asdict(plan), "stages": {}}
  s.note(f"mode {summary['mode']}, budget {plan.budget_s:.0f} s, out {out}")
  try:
    status = run_stages(s, args, summary["stages"])
  except BaseException as e:  # the summary and the log still say how far it got
    for child in s.children:  # each in a session of its own, so Ctrl-C did not reach them
      if child.process.poll() is None:
        child.kill()
    summary["error"] = f"{type(e).__name__}: {e}"
    s.note(f"error: {summary['error']}")
    finish(s, summary)
    raise
  return finish(s, summary, status)


def run_stages(s: Script, args: argparse.Namespace, stages: dict) -> int:
  """Each stage in turn into `stages`; returns the exit status (2: no GPU in the real mode)."""
  plan = s.plan
  stages["setup"] = setup = timed(lambda: stage_setup(s, args.wheels))
  device = setup.get("device", {})
  s.note(f"setup: {setup['status']}: {device.get('platform', '?')} "
         f"{device.get('device_kind', '?')}, jax {device.get('jax_version', '?')}; "
         + ", ".join(f"{m} {'ok' if ok['ok'] else 'missing' if ok['ok'] is False else '-'}"
                     for m, ok in setup.get("modules", {}).items()
                     if m not in CORE or m == "gymnasium"))
  if setup["status"] != "ran":
    s.note(f"error: {setup['reason']}")
    return 2
  if not plan.dry and device.get("platform") != "gpu":
    setup["status"] = "failed"
    setup["reason"] = (f"JAX runs on {device.get('platform', 'no device')} here, not a GPU, "
                       "where the real stages would take hours; --dry is the CPU's mode")
    s.note(f"error: {setup['reason']}")
    return 2
  gym = missing(setup, "gymnasium", GYM_WHY)

  def skip_reason(name: str, budget: float) -> str | None:
    if name not in args.stages:
      return "not asked for (--stages)"
    if gym and name != "compare":
      return gym
    if budget < (RUN_MIN_S if name == "run" and not plan.dry else 10.0):
      return f"budget: {s.left():.0f} s of {plan.budget_s:.0f} s left"
    return None

  def report(name: str, result: dict, line) -> dict:
    if result["status"] == "SKIPPED":
      shown = f" ({result['reason']})"
    elif result["status"] in ("ran", "partial"):
      shown = f": {line(result)}"
    else:
      shown = f" ({result.get('reason') or result.get('problem')})"
    s.note(f"{name}: {result['status']}{shown}")
    return result

  # The speed and seeds stages share one worker process (`worker`).
  budgets, left = {}, s.left()
  for name in ("speed", "seeds"):
    budget = stage_budget(plan, name, left)
    reason = skip_reason(name, budget)
    if reason:
      stages[name] = {"status": "SKIPPED", "reason": reason}
    else:
      budgets[name] = budget
      left -= budget
  bench = start_bench(s, budgets) if budgets else None

  def bench_done() -> None:
    stages.update(collect_bench(s, bench, budgets) if bench else {})
    for name, line in (("speed", speed_line), ("seeds", seeds_line)):
      report(name, stages[name], line)

  if not plan.dry or not bench:
    bench_done()
  else:
    # On the CPU the run goes beside the worker: two processes get two shares of a busy
    # machine, and their figures mean nothing anyway. On a GPU each stage times alone.
    s.background.append(bench)
  budget = stage_budget(plan, "run", s.left())
  reason = skip_reason("run", budget)
  logdir = None
  if reason:
    stages["run"] = {"status": "SKIPPED", "reason": reason}
  else:
    stages["run"], logdir = stage_run(s, budget, setup)
  report("run", stages["run"], run_line)
  if plan.dry and bench:
    bench_done()

  budget = stage_budget(plan, "compare", s.left())
  reason = skip_reason("compare", budget)
  stages["compare"] = ({"status": "SKIPPED", "reason": reason} if reason
                       else timed(lambda: stage_compare(s, budget, stages["run"], logdir)))
  report("compare", stages["compare"], lambda r: r["verdict"])
  return 0


def timed(body) -> dict:
  start = time.time()
  result = body()
  result["wall_s"] = time.time() - start
  return result


def finish(s: Script, summary: dict, status: int = 1) -> int:
  """The CSVs and the summary; the work folder (wheels, the run's checkpoints) removed."""
  stages = summary["stages"] = {k: summary["stages"][k] for k in STAGES if k in summary["stages"]}
  write_csv(s.out / SPEED_CSV, SPEED_COLUMNS, stages.get("speed", {}).get("rows", []))
  write_csv(s.out / SEEDS_CSV, SEEDS_COLUMNS, stages.get("seeds", {}).get("rows", []))
  run = stages.get("run", {})
  write_csv(s.out / RUN_CSV, RUN_COLUMNS, run.pop("episodes", []))
  summary["wall_s"] = s.elapsed()
  summary["files"] = sorted(p.name for p in s.out.iterdir())
  if SUMMARY not in summary["files"]:
    summary["files"] = sorted(summary["files"] + [SUMMARY])
  (s.out / SUMMARY).write_text(json.dumps(summary, indent=1, default=str) + "\n")
  s.note(f"done in {summary['wall_s']:.0f} s: {s.out / SUMMARY}")
  s.log.close()
  shutil.rmtree(s.work, ignore_errors=True)
  return status


if __name__ == "__main__":
  sys.exit(main())
