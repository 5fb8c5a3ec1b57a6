"""The JAX libraries' environment ids, kept in the package for suggestions.

Listing them live means importing gymnax, craftax, navix and MuJoCo Playground:
about 8 s on a 2-core CPU, where a mistyped id should be refused in a blink.
So did-you-mean reads this snapshot, for the libraries that are installed
(found, not imported), and this module imports no JAX. An id itself is
always checked by its own library when it is built.
tests/test_envs.py holds the snapshot to the installed libraries;
``python -m wmrl.envs.jax_ids`` rewrites it after a library adds ids.
"""
from __future__ import annotations

import importlib.util
import json
import pathlib

SNAPSHOT = pathlib.Path(__file__).with_name("jax_ids.json")
# Prefix -> the package whose presence makes its ids available (None: wmrl's own).
PACKAGES = {"gymnax": "gymnax", "craftax": "craftax", "navix": "navix",
            "playground": "mujoco_playground", "wmrl": None}


def is_jax_id(env_id: str) -> bool:
  """Whether `env_id` names a JAX environment (its prefix is one of PACKAGES)."""
  return isinstance(env_id, str) and env_id.partition(":")[0] in PACKAGES


def installed(prefix: str) -> bool:
  package = PACKAGES[prefix]
  return package is None or importlib.util.find_spec(package) is not None


def snapshot_ids() -> list[str]:
  """The snapshot's ids of every installed JAX library, without importing one."""
  snapshot = json.loads(SNAPSHOT.read_text())
  return [env_id for prefix, ids in snapshot.items() if installed(prefix) for env_id in ids]


def live_ids(prefix: str) -> list[str]:
  """The ids the installed library lists today (imports it: seconds)."""
  from wmrl import jaxenvs
  return sorted(jaxenvs.module(prefix).env_ids())


def main() -> None:
  missing = [prefix for prefix in PACKAGES if not installed(prefix)]
  if missing:
    raise SystemExit(f"install {', '.join(missing)} first (pip install -e '.[test]'): "
                     "the snapshot lists every library's ids")
  SNAPSHOT.write_text(json.dumps({prefix: live_ids(prefix) for prefix in PACKAGES}, indent=1) + "\n")
  print(f"wrote {SNAPSHOT}")


if __name__ == "__main__":
  main()
