"""Shared test helpers: the tiny configs and batches of wmrl.testing, fixtures, and
the compiler settings of the tests."""
import gc
import os
import shutil
import tempfile

# The tests' tiny programs spend most of their time compiling: without XLA's
# backend optimisations and with the legacy CPU emitters they compile in about
# half the time (the suite took 11:09 with them on, on a 2-core CPU). Set before
# JAX starts, and inherited by the tests' subprocesses. The learning tests
# compile with every optimisation (`_optimised_learning`), as a user's run does.
os.environ["XLA_FLAGS"] = " ".join(
    filter(None, (os.environ.get("XLA_FLAGS"), "--xla_cpu_use_fusion_emitters=false")))
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# Many tests compile the same tiny programs (a tiny DreamerV3's train step, a fused
# iteration) in runs of their own: one XLA compilation cache for the session, made
# by the process that starts the tests and inherited by its workers and the tests'
# subprocesses, compiles each once. A cached program is the compiled program
# itself, so results are the same bit for bit.
if "PYTEST_XDIST_WORKER" not in os.environ and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _SESSION_CACHE = tempfile.mkdtemp(prefix="wmrl-xla-")
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"

import jax  # noqa: E402
import pytest  # noqa: E402

from wmrl import testing  # noqa: E402
from wmrl.testing import tiny_config  # noqa: F401,E402  (the tests import it from here)


def load_script(path, name: str):
  """A benchmark script (not a package module) imported from its path as `name`."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def batch_with_terminal(obs_spec, act_spec, batch_size, length, seed=0, entries=None):
  """`wmrl.testing.random_batch` with an episode that ends (terminally) in the
  middle of the first sequence and a new one starting after it."""
  batch = testing.random_batch(obs_spec, act_spec, batch_size, length, seed, entries)
  batch["is_last"][0, length // 2] = batch["is_terminal"][0, length // 2] = True
  batch["is_first"][0, length // 2 + 1] = True
  return batch


def load_saved(logdir):
  """The newest checkpoint in `logdir`, read as a resume reads it: (state arrays
  by tree path, the replay, the saved run info, the pending arrays)."""
  from wmrl import algorithms, checkpoint, envs
  from wmrl.trees import tree_arrays
  path = checkpoint.latest(logdir)
  config = checkpoint.saved_config(path)
  with envs.from_config(config.env, seed=0) as env:
    template = algorithms.get(config.algorithm).init(jax.random.key(0), env.obs_spec,
                                                     env.act_spec, config)
  state, replay, saved_run = checkpoint.load(path, template)
  return tree_arrays(state, "state"), replay, saved_run, checkpoint.load_pending(path)


def counter_config(steps, log_every=40, **overrides):
  """A tiny run on the counter env: `steps` steps, 12 replayed per step, no warmup,
  a record every `log_every` steps, no console lines or timed saves."""
  return tiny_config(**{
      "env.id": "fake_envs:make_counter", "run.steps": steps, "run.train_ratio": 12,
      "run.log_every": log_every, "run.console_every": 1000.0,
      "run.save_every_minutes": 1000.0, "optim.warmup": 0, **overrides})


@pytest.fixture
def tiny():
  return tiny_config()


@pytest.fixture(autouse=True)
def _optimised_learning(request):
  """Learning tests run long programs: they compile with XLA's optimisations."""
  if request.node.get_closest_marker("learning") is None:
    yield
    return
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", False)
  try:
    yield
  finally:
    jax.config.update("jax_disable_most_optimizations", previous)


def pytest_collection_modifyitems(config, items):
  """The learning tests first. Pendulum's is a single test of about 8 minutes; run
  among the others, it started half-way through and the suite ended when it did
  (12:48 on a 2-core CPU). Started first, it runs on one worker while the other
  works through the rest."""
  items.sort(key=lambda item: item.get_closest_marker("learning") is None)  # stable


def pytest_sessionfinish(session, exitstatus):
  """The session's compilation cache goes with the session (made only by the
  process that started the tests, and only where no cache was given).

  A worker frees its compiled programs and arrays here, before it reports
  that it has finished. Left to pytest's garbage collection after that report
  (with JAX's collection callback freeing XLA's side), it can run past the 5 s
  that execnet gives a worker to end once the controller closes it; execnet
  then sends the worker SIGINT, and the KeyboardInterrupt, landing inside
  JAX's callback, was printed at the end of the test output as a
  PytestUnraisableExceptionWarning.
  """
  if "_SESSION_CACHE" in globals():
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)
  if "PYTEST_XDIST_WORKER" in os.environ:
    jax.clear_caches()
    gc.collect()
