"""Run N ``SingleEnv``s in this process or one subprocess each.

Both backends build their envs from picklable zero-argument builders and
answer ``call(method, args)`` with one result per env, in env order.
"""
from __future__ import annotations

import multiprocessing
import pickle
import traceback
from typing import Any, Callable, Sequence

from wmrl.envs.core import SingleEnv

Builder = Callable[[], SingleEnv]


class SerialBackend:

  def __init__(self, builders: Sequence[Builder]):
    self.envs = []
    try:
      for build in builders:
        self.envs.append(build())
    except BaseException:
      self.close()
      raise
    self.specs = [(env.obs_spec, env.act_spec, env.renders) for env in self.envs]

  def call(self, method: str, args: Sequence[tuple] | None = None) -> list[Any]:
    args = args if args is not None else [()] * len(self.envs)
    return [getattr(env, method)(*a) for env, a in zip(self.envs, args)]

  def close(self) -> None:
    for env in self.envs:
      env.close()
    self.envs = []


class RemoteTraceback(Exception):
  """Carries a worker's formatted traceback as the cause of the re-raised error."""

  def __init__(self, tb: str):
    super().__init__(tb)
    self.tb = tb

  def __str__(self) -> str:
    return "\n" + self.tb


def _portable(exc: BaseException) -> BaseException:
  """The exception itself if it survives pickling, else a RuntimeError naming it."""
  try:
    return pickle.loads(pickle.dumps(exc))
  except Exception:
    return RuntimeError(f"{type(exc).__name__}: {exc}")


def _worker(conn, build: Builder) -> None:
  """Builds one env and serves method calls until 'close' or an error."""
  env = None
  try:
    env = build()
    conn.send(("ok", (env.obs_spec, env.act_spec, env.renders)))
    while True:
      method, args = conn.recv()
      if method == "close":
        break
      conn.send(("ok", getattr(env, method)(*args)))
  except (KeyboardInterrupt, EOFError):
    pass  # the parent was interrupted or has gone: nobody to answer
  except BaseException as exc:  # report everything: the parent re-raises it
    conn.send(("error", (_portable(exc), traceback.format_exc())))
  finally:
    try:
      if env is not None:
        env.close()
    finally:
      conn.close()


class ParallelBackend:
  """One subprocess per env, a Pipe each, started with "spawn".

  "spawn" starts clean interpreters: forking a process that holds OpenGL or
  MuJoCo state (or threads) is unsafe. A worker that raises sends the
  exception and its traceback, then exits; the parent re-raises it with the
  worker's traceback as its cause, and the backend is unusable after that.
  """

  def __init__(self, builders: Sequence[Builder]):
    for i, build in enumerate(builders):
      try:
        pickle.dumps(build)
      except Exception as exc:
        raise ValueError(f"parallel=True sends each env's factory to a subprocess, but env {i}'s "
                         f"factory cannot be pickled ({exc}); define it at module level (no lambda or "
                         "closure), or use parallel=False") from exc
    ctx = multiprocessing.get_context("spawn")
    self._conns, self._procs = [], []
    self._broken = None
    for i, build in enumerate(builders):
      parent, child = ctx.Pipe()
      proc = ctx.Process(target=_worker, args=(child, build), name=f"wmrl-env-{i}", daemon=True)
      proc.start()
      child.close()  # so the parent sees EOF if the worker dies
      self._conns.append(parent)
      self._procs.append(proc)
    try:
      self.specs = self._receive()
    except BaseException:
      self.close()
      raise

  def _receive(self) -> list[Any]:
    """One answer from every worker; then raises the first error among them."""
    results, error = [], None
    for i, (conn, proc) in enumerate(zip(self._conns, self._procs)):
      try:
        status, payload = conn.recv()
      except (EOFError, ConnectionResetError):
        proc.join(timeout=1)
        status, payload = "died", None
        if error is None:
          error = RuntimeError(f"env worker {i} exited without answering (exit code "
                               f"{proc.exitcode}); see its stderr above (it may also have been killed, e.g. out of memory)")
      if status == "error" and error is None:
        exc, tb = payload
        exc.add_note(f"(raised in env worker {i}; its traceback is shown above as the cause)")
        exc.__cause__ = RemoteTraceback(tb)
        error = exc
      results.append(payload)
    if error is not None:
      self._broken = error
      raise error
    return results

  def call(self, method: str, args: Sequence[tuple] | None = None) -> list[Any]:
    if self._broken is not None:
      raise RuntimeError("an env worker failed earlier (see the first error); make a new Env") from self._broken
    args = args if args is not None else [()] * len(self._conns)
    for conn, a in zip(self._conns, args):
      conn.send((method, a))
    return self._receive()

  def close(self) -> None:
    for conn, proc in zip(self._conns, self._procs):
      try:
        if proc.is_alive():
          conn.send(("close", ()))
      except (BrokenPipeError, OSError):
        pass
    for conn, proc in zip(self._conns, self._procs):
      proc.join(timeout=5)
      if proc.is_alive():
        proc.terminate()
        proc.join(timeout=1)
      conn.close()
    self._conns, self._procs = [], []
