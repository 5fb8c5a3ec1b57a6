"""Benchmark suites: the registry (wmrl/suites.py), the runner's commands (experiments/suites.py)
and the runner (experiments/run_suite.py): task names both ways, settings, command lines,
skip/resume/start, dry runs, a real tiny suite, Ctrl-C."""
import csv
import importlib.resources
import importlib.util
import io
import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from conftest import tiny_config
from wmrl import checkpoint, cli, compare, presets
from wmrl import config as cfg
from wmrl import suites as registry

TESTS = pathlib.Path(__file__).parent
EXPERIMENTS = TESTS.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
import run_suite  # noqa: E402
import suites  # noqa: E402

# The conftest tiny model as dotted overrides, plus a quick training loop.
TINY = {name: new for name, (_, new) in cfg.diff(cfg.Config(), tiny_config()).items()}
TINY.update({"run.train_ratio": 12, "run.log_every": 20, "run.console_every": 1000.0,
             "optim.warmup": 0})
TINY_TASKS = [("counter", "fake_envs:make_counter"), ("broken", "fake_envs:no_such_factory")]


# dm-control is an optional dependency (wmrl[dmc]); the DMC suites map their names with it.
needs_dm_control = pytest.mark.skipif(importlib.util.find_spec("dm_control") is None,
                                      reason="the DMC suites need dm-control")


def tiny_suite(**changes) -> suites.Suite:
  fields = dict(name="tiny", description="test suite", load_tasks=lambda: list(TINY_TASKS),
                overrides=TINY, seeds=(0, 1))
  return suites.Suite(**{**fields, **changes})


@pytest.fixture
def tiny_registered(monkeypatch):
  """The tiny suite registered, and tests/ on the runs' PYTHONPATH for fake_envs."""
  suite = tiny_suite()
  monkeypatch.setitem(suites.SUITES, suite.name, suite)
  path = [str(TESTS), os.environ.get("PYTHONPATH")]
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, path)))
  return suite


def fake_checkpoint(logdir: pathlib.Path, env_steps: int, committed: bool = True,
                    run_format: int = checkpoint.FORMAT) -> pathlib.Path:
  """A checkpoint folder as wmrl.checkpoint.save names and marks it (no arrays)."""
  path = logdir / "checkpoints" / f"ckpt-{env_steps:012d}"
  path.mkdir(parents=True)
  counters = {"env_steps": env_steps, "updates": 0, "episodes": 0, "update_debt": 0.0,
              "last_eval": 0}
  (path / "run.json").write_text(json.dumps({"format": run_format, "config": {},
                                             "counters": counters}))
  if committed:
    (path / checkpoint.COMMITTED).write_text("ok\n")
  return path


def csv_tasks(name: str) -> list[str]:
  text = (importlib.resources.files("wmrl") / "reference" / f"dreamerv3_{name}.csv").read_text()
  return sorted({row["task"] for row in csv.DictReader(io.StringIO(text))})


# --- task names ------------------------------------------------------------------------

@needs_dm_control
@pytest.mark.parametrize("name", ["dmc_proprio", "dmc_vision"])
def test_dmc_tasks_are_the_csv_tasks_and_map_to_dm_control_pairs(name):
  tasks = suites.SUITES[name].tasks
  from dm_control import suite as dm_suite  # after wmrl chose a headless GL backend
  assert [task for task, _ in tasks] == csv_tasks(name)
  for task, env_id in tasks:
    match = re.fullmatch(r"dmc:(\w+)-(\w+)", env_id)
    assert match, env_id
    assert match.groups() in dm_suite.ALL_TASKS, env_id
    assert compare.task_name(env_id) == task  # back to the reference's name
    assert suites.SUITES[name].task_name(env_id) == task


@needs_dm_control
@pytest.mark.parametrize("task, env_id", [
    ("dmc_ball_in_cup_catch", "dmc:ball_in_cup-catch"),
    ("dmc_cartpole_swingup_sparse", "dmc:cartpole-swingup_sparse"),
    ("dmc_point_mass_easy", "dmc:point_mass-easy"),
    ("dmc_finger_turn_hard", "dmc:finger-turn_hard"),
    ("dmc_walker_walk", "dmc:walker-walk"),
    ("dmc_quadruped_run", "dmc:quadruped-run"),
])
def test_dmc_names_with_underscores_map_to_the_right_domain(task, env_id):
  assert suites.dmc_env_id(task) == env_id


@needs_dm_control
def test_dmc_name_without_one_matching_pair_is_an_error():
  with pytest.raises(suites.SuiteError, match="matches no dm_control"):
    suites.dmc_env_id("dmc_walker_fly")
  # A name that two (domain, task) pairs could spell is refused, not guessed.
  with pytest.raises(suites.SuiteError, match="matches 2"):
    suites.dmc_env_id("dmc_a_b_c", pairs=[("a", "b_c"), ("a_b", "c")])


def test_atari_tasks_map_to_ale_ids_and_back():
  tasks = suites.SUITES["atari100k"].tasks
  assert [task for task, _ in tasks] == csv_tasks("atari100k")
  ids = dict(tasks)
  assert ids["atari_ms_pacman"] == "gym:ale_py:ALE/MsPacman-v5"
  assert ids["atari_up_n_down"] == "gym:ale_py:ALE/UpNDown-v5"
  assert ids["atari_jamesbond"] == "gym:ale_py:ALE/Jamesbond-v5"
  for task, env_id in tasks:
    assert compare.task_name(env_id) == task
    assert suites.SUITES["atari100k"].task_name(env_id) == task


@pytest.mark.parametrize("suite, task, env_id", [
    pytest.param("dmc_proprio", "dmc_walker_walk", "dmc:walker-walk", marks=needs_dm_control),
    ("atari100k", "atari_pong", "gym:ale_py:ALE/Pong-v5"),
    ("gym_mujoco", "gym_hopper_v5", "gym:Hopper-v5"),
])
def test_the_registry_maps_task_names_both_ways(suite, task, env_id):
  entry = registry.get(suite)
  assert entry.env_id(task) == env_id
  assert entry.task_name(env_id) == task
  assert registry.task_name(env_id) == task  # what `wmrl compare` calls a run of it


def test_the_registry_refuses_what_it_does_not_hold():
  with pytest.raises(registry.SuiteError, match=r"unknown task 'atari_pongg'.*did you mean atari_pong"):
    registry.get("atari100k").env_id("atari_pongg")
  with pytest.raises(registry.SuiteError, match=r"task 'dmc_walker_walk', which is not in suite 'atari100k'"):
    registry.get("atari100k").task_name("dmc:walker-walk")
  # A suite names presets; one that does not exist is refused when the suite is registered.
  with pytest.raises(registry.SuiteError, match=r"suite 'x': unknown preset 'size3m'"):
    registry.register(registry.Suite("x", "x", lambda: [], presets="size1m,size3m"))
  assert "x" not in registry.SUITES


def test_suites_reuse_the_presets_not_copies_of_them():
  for suite in registry.SUITES.values():
    assert not suite.overrides, suite.name  # every setting comes from a named preset
    assert presets.check(suite.presets), suite.name
  assert {n: s.figures for n, s in registry.SUITES.items() if s.figures} == registry.references()


@pytest.mark.parametrize("env_id, repeat, frames", [
    ("dmc:walker-walk", 2, 2),
    ("gym:ale_py:ALE/Pong-v5", 1, 4),  # ALE v5 skips 4 frames itself
    ("gym:ALE/MsPacman-v5", 2, 8),
    ("gym:PongNoFrameskip-v4", 4, 4),
    ("gym:BreakoutDeterministic-v4", 1, 4),
    ("gym:SpaceInvadersDeterministic-v4", 1, 3),
    ("gym:Hopper-v5", 1, 1),  # MuJoCo's frame_skip is physics substeps, not frames
    ("gym:CartPole-v1", 3, 3),
])
def test_frames_per_step_is_the_repeat_times_the_emulators_skip(env_id, repeat, frames):
  assert registry.frames_per_step(cfg.EnvConfig(id=env_id, action_repeat=repeat)) == frames


def test_the_registry_imports_no_jax():
  code = "import sys, wmrl.suites; print('jax' in sys.modules)"
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
  assert result.stdout.strip() == "False", result.stderr


def test_gym_mujoco_tasks():
  assert suites.SUITES["gym_mujoco"].tasks == [
      ("gym_halfcheetah_v5", "gym:HalfCheetah-v5"), ("gym_hopper_v5", "gym:Hopper-v5"),
      ("gym_walker2d_v5", "gym:Walker2d-v5"), ("gym_ant_v5", "gym:Ant-v5"),
      ("gym_humanoid_v5", "gym:Humanoid-v5")]


# --- settings and command lines --------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    # The April-2024 recipe that made the published DMC curves (reference commit 2411f7d),
    # with the 8 environments of the published runs (wmrl/presets.py).
    ("dmc_proprio", {"env.action_repeat": 2, "env.pixels": False, "env.num_envs": 8,
                     "run.train_ratio": 512, "run.steps": 250_000, "model.rssm.deter": 2048}),
    ("dmc_vision", {"env.action_repeat": 2, "env.pixels": True, "env.image_size": (64, 64),
                    "env.num_envs": 8, "run.train_ratio": 512, "run.steps": 500_000,
                    "model.rssm.deter": 2048}),
    ("gym_mujoco", {"env.action_repeat": 1, "run.train_ratio": 512, "run.steps": 1_000_000,
                    "model.rssm.deter": 512}),
    ("atari100k", {"env.action_repeat": 1, "env.pixels": True, "env.image_size": (64, 64),
                   "env.num_envs": 1, "run.train_ratio": 256, "run.steps": 100_000}),
])
def test_suite_settings_are_the_papers(name, expected):
  _, _, config = suites.resolve(suites.SUITES[name])
  flat = cfg._flatten(config.to_dict())
  assert {k: flat[k] for k in expected} == expected
  assert suites.SUITES[name].seeds == (0, 1, 2, 3, 4)


def test_commands_flags_and_logdir_layout(tmp_path):
  runs = suites.commands("gym_mujoco", tmp_path / "suite", seeds=[0, 3], tasks=["gym_hopper_v5"],
                         steps=2000, overrides={"run.train_ratio": "64"}, presets="size12m")
  assert [(r.task, r.seed, r.steps) for r in runs] == [("gym_hopper_v5", 0, 2000),
                                                       ("gym_hopper_v5", 3, 2000)]
  logdir = tmp_path / "suite" / "gym_hopper_v5" / "seed3"
  assert runs[1].logdir == logdir
  assert runs[1].command == (
      sys.executable, "-m", "wmrl.cli", "train", "--env", "gym:Hopper-v5", "--logdir", str(logdir),
      "--preset", "gym_mujoco,size1m,size12m", "--seed", "3", "--quiet",
      "--run.train_ratio", "64", "--run.steps", "2000")


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=needs_dm_control if name.startswith("dmc") else ())
    for name in suites.SUITES])
def test_commands_parse_back_to_the_suite_config(name, tmp_path):
  # What `wmrl train` makes of a command is what the runner judged it by.
  suite = suites.SUITES[name]
  for run in suites.commands(suite, tmp_path, seeds=[2])[:2]:
    args, config = cli.parse_train_args(list(run.command[4:]))
    _, _, expected = suites.resolve(suite)
    assert config == expected.replace(**{"env.id": run.env_id, "run.seed": 2})
    assert args.logdir == str(run.logdir) and args.quiet


def test_tiny_suite_tuples_survive_the_command_line(tmp_path):
  (run,) = suites.commands(tiny_suite(), tmp_path, seeds=[1], tasks=["counter"])
  assert run.command[run.command.index("--model.encoder.mults") + 1] == "1,2"
  _, config = cli.parse_train_args(list(run.command[4:]))
  assert config == tiny_config().replace(**{**TINY, "env.id": "fake_envs:make_counter",
                                            "run.seed": 1})


@pytest.mark.parametrize("kwargs, message", [
    ({"tasks": ["gym_hoper_v5"]}, r"unknown task 'gym_hoper_v5'.*did you mean gym_hopper_v5.*"
                                  r"its tasks: gym_halfcheetah_v5.*gym_humanoid_v5"),
    ({"overrides": {"run.trian_ratio": 1}}, r"unknown config field 'run.trian_ratio'"),
    ({"overrides": {"env.id": "gym:Ant-v5"}}, r"env.id is set per run"),
    ({"overrides": {"run.steps": 5}, "steps": 5}, r"both --steps and --run.steps"),
    ({"seeds": []}, r"seeds must be"),
    ({"presets": "size3m"}, r"unknown preset 'size3m'"),
])
def test_bad_selections_are_refused_with_the_fix(kwargs, message, tmp_path):
  with pytest.raises(suites.SuiteError, match=message):
    suites.commands("gym_mujoco", tmp_path, **kwargs)


def test_unknown_suite_names_the_suites():
  with pytest.raises(suites.SuiteError, match="did you mean dmc_proprio.*suites: dmc_proprio"):
    suites.get("dmc_propio")


# --- skip, resume, start ---------------------------------------------------------------

def test_status_of_fake_run_folders(tmp_path):
  def run(seed):
    return suites.commands(tiny_suite(), tmp_path, seeds=[seed], tasks=["counter"], steps=1000)[0]

  assert suites.status(run(0)) == (suites.START, 0)  # no folder at all
  fake_checkpoint(run(1).logdir, 100)
  fake_checkpoint(run(1).logdir, 1000, committed=False)  # a save killed midway: not a checkpoint
  assert suites.status(run(1)) == (suites.RESUME, 100)
  fake_checkpoint(run(2).logdir, 100)
  fake_checkpoint(run(2).logdir, 1000)
  assert suites.status(run(2)) == (suites.FINISHED, 1000)
  fake_checkpoint(run(3).logdir, 1000, committed=False)
  assert suites.status(run(3)) == (suites.START, 0)
  # Not a wmrl checkpoint: resumed, so that `wmrl train` names the problem in train.log.
  fake_checkpoint(run(4).logdir, 1000, run_format=checkpoint.FORMAT + 1)
  assert suites.status(run(4)) == (suites.RESUME, 0)


def test_finished_runs_are_skipped_without_starting_anything(tiny_registered, tmp_path):
  for seed in (0, 1):
    fake_checkpoint(tmp_path / "counter" / f"seed{seed}", 40)
  out = io.StringIO()
  code = run_suite.main(["tiny", "--logdir", str(tmp_path), "--tasks", "counter", "--steps", "40"],
                        out=out)
  assert code == 0, out.getvalue()
  assert "0 finished, 0 failed, 2 skipped" in out.getvalue()
  assert not list(tmp_path.rglob("train.log"))


def test_dry_run_prints_commands_and_runs_nothing(tmp_path):
  fake_checkpoint(tmp_path / "gym_hopper_v5" / "seed0", 5000)
  fake_checkpoint(tmp_path / "gym_ant_v5" / "seed1", 1200)
  before = sorted(tmp_path.rglob("*"))
  result = subprocess.run(
      [sys.executable, str(EXPERIMENTS / "run_suite.py"), "gym_mujoco", "--logdir", str(tmp_path),
       "--tasks", "gym_hopper_v5,gym_ant_v5", "--seeds", "0,1", "--steps", "5000",
       "--run.train_ratio", "64", "--dry-run"], capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert "2 to start, 1 to resume, 1 finished" in lines[0]
  assert "# gym_hopper_v5 seed 0: finished (5,000/5,000 steps), skipped" in lines
  assert "# gym_ant_v5 seed 1: resume at 1,200/5,000 steps" in lines
  commands = [shlex.split(line) for line in lines if not line.startswith(("#", "suite"))]
  expected = suites.commands("gym_mujoco", str(tmp_path), [0, 1], ["gym_hopper_v5", "gym_ant_v5"],
                             5000, {"run.train_ratio": "64"})
  assert commands == [list(r.command) for r in expected[1:]]  # all but the finished one
  assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("flags", [["--run.train_ratio", "64"], ["--run.train_ratio=64"]])
def test_the_runner_takes_config_fields_as_wmrl_train_does(flags):
  args = run_suite.parse_args(["gym_mujoco", "--preset", "size12m", *flags, "--dry-run"])
  assert args.overrides == {"run.train_ratio": "64"} and args.preset == "size12m"


def test_a_mistyped_field_on_the_command_line_gets_the_closest_name(capsys):
  with pytest.raises(SystemExit) as exit_info:
    run_suite.parse_args(["gym_mujoco", "--run.trian_ratio", "64"])
  assert exit_info.value.code == 2
  assert "unknown config field 'run.trian_ratio'; did you mean run.train_ratio" in capsys.readouterr().err


def test_unknown_task_on_the_command_line_lists_the_tasks(tmp_path):
  result = subprocess.run(
      [sys.executable, str(EXPERIMENTS / "run_suite.py"), "gym_mujoco", "--logdir", str(tmp_path),
       "--tasks", "gym_hopper_v5,hopper", "--dry-run"], capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  assert "unknown task 'hopper'" in result.stderr
  for task, _ in suites.SUITES["gym_mujoco"].tasks:
    assert task in result.stderr
  assert not result.stdout and not list(tmp_path.iterdir())


def test_suite_without_its_modules_exits_2_naming_them(monkeypatch, capsys, tmp_path):
  monkeypatch.setitem(sys.modules, "ale_py", None)  # `import ale_py` now fails, as without it
  assert run_suite.main(["atari100k", "--logdir", str(tmp_path), "--dry-run"]) == 2
  err = capsys.readouterr().err
  assert "suite 'atari100k' cannot run here" in err and "pip install ale-py" in err
  assert not list(tmp_path.iterdir())


# --- real runs -------------------------------------------------------------------------

def test_tiny_suite_end_to_end_then_skipped(tiny_registered, tmp_path):
  out = io.StringIO()
  argv = ["tiny", "--logdir", str(tmp_path), "--seeds", "0,1", "--steps", "40", "--parallel", "2"]
  start = time.time()
  code = run_suite.main(argv, out=out)
  text = out.getvalue()
  assert code == 1, text  # the broken task failed ...
  assert time.time() - start < 150, "the tiny suite should take about a minute"
  assert "2 finished, 2 failed, 0 skipped" in text  # ... and the counter runs still finished
  events = [line.split("] ", 1)[1] for line in text.splitlines() if line.startswith("[")]
  # --parallel 2: both counter runs start before either ends.
  assert events[0].startswith("start  counter seed 0")
  assert events[1].startswith("start  counter seed 1")
  assert re.search(r"FAILED broken seed 0: exit 2 .*\n(.*\n)*.*no attribute 'no_such_factory'", text)
  for seed in (0, 1):
    logdir = tmp_path / "counter" / f"seed{seed}"
    assert json.loads((logdir / "config.json").read_text())["run"]["seed"] == seed
    assert (logdir / "metrics.jsonl").read_text().strip()
    assert suites.progress(logdir) == 40
    assert "wmrl.cli train --env fake_envs:make_counter" in (logdir / "train.log").read_text()
  logs = {p: p.read_text() for p in tmp_path.rglob("train.log")}

  out = io.StringIO()
  code = run_suite.main(argv[:1] + ["--tasks", "counter"] + argv[1:], out=out)
  assert code == 0, out.getvalue()
  assert "0 finished, 0 failed, 2 skipped" in out.getvalue()
  assert {p: p.read_text() for p in tmp_path.rglob("train.log")} == logs  # nothing ran again


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_the_runs_and_reports_them(stop_signal, tiny_registered, tmp_path):
  # The runner in its own process, with the tiny suite registered, as a user runs it.
  script = (f"import sys; sys.path[:0] = [{str(EXPERIMENTS)!r}]; import suites, run_suite; "
            f"suites.register(suites.Suite('tiny', 'test', lambda: [('counter', "
            f"'fake_envs:make_counter')], overrides={TINY!r})); sys.exit(run_suite.main())")
  runner = subprocess.Popen(
      [sys.executable, "-c", script, "tiny", "--logdir", str(tmp_path), "--seeds", "0",
       "--steps", "1000000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    lines = []
    while not any("start  counter seed 0" in line for line in lines):
      line = runner.stdout.readline()
      assert line, "runner exited early:\n" + "".join(lines)
      lines.append(line)
    child = int(re.search(r"pid (\d+)", lines[-1]).group(1))
    # Wait until the run trains (its train step compiled): a signal that
    # arrives during XLA's compile is only handled once the compile is done.
    metrics = tmp_path / "counter" / "seed0" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and "loss/rec" not in (metrics.read_text() if metrics.exists() else ""):
      time.sleep(0.5)
    assert "loss/rec" in metrics.read_text(), "the run did not start training"
    runner.send_signal(stop_signal)  # Ctrl-C, or a batch system's stop
    stopped = time.time()
    rest, _ = runner.communicate(timeout=90)
    # Well inside the grace period: the run was asked to stop, not left to be killed.
    assert time.time() - stopped < run_suite.GRACE_SECONDS - 10
  finally:
    if runner.poll() is None:
      runner.kill()
  assert runner.returncode == 130, "".join(lines) + rest
  assert re.search(r"counter\s+0\s+interrupted", rest), rest
  with pytest.raises(ProcessLookupError):
    os.kill(child, 0)  # the run was stopped and reaped, not left behind
