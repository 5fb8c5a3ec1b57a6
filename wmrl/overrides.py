"""Config fields on a command line: `--FIELD VALUE` or `--FIELD=VALUE`.

    wmrl train --env dmc:walker-walk --logdir runs/w --run.train_ratio 64 --model.rssm.deter=1024
    wmrl bench --preset size1m --run.train_ratio 64
    python experiments/run_suite.py dmc_proprio --run.train_ratio 64 --dry-run

Every command that builds a config takes its fields this one way: a flag
named by the field's dotted path (or a top-level field's name, such as
`--algorithm`). `split_overrides` takes them out of an argument list before
argparse sees the command's own flags, and refuses an unknown field with the
closest names, so a typo fails before anything runs. Values stay strings
here; `Config.replace` converts them to the field's type.
"""
from __future__ import annotations

import argparse

from wmrl import config as cfg
from wmrl.names import did_you_mean


class OverrideError(ValueError):
  """An unknown config field, or a field flag without a value."""


def _fields(algorithm: str = cfg.Config.algorithm) -> tuple[str, ...]:
  """The fields of a config of `algorithm` (its own groups differ from another's)."""
  try:
    return tuple(cfg.field_names(cfg.Config(algorithm)))
  except ValueError:  # an unknown algorithm: `Config.replace` refuses it with the choices
    return tuple(cfg.field_names(cfg.Config()))


def _algorithm_of(argv: list[str]) -> str:
  """The algorithm a command line names with `--algorithm` (the last one wins), or
  the default: its fields are the ones the other flags may name."""
  name = cfg.Config.algorithm
  for i, token in enumerate(argv):
    if token == "--":
      break
    if token.startswith("--algorithm="):
      name = token.partition("=")[2]
    elif token == "--algorithm" and i + 1 < len(argv):
      name = argv[i + 1]
  return name


def field_defaults() -> dict[str, object]:
  """Every dotted field name with its default value."""
  defaults = {}
  for name in _fields():
    value = cfg.Config()
    for part in name.split("."):
      value = getattr(value, part)
    defaults[name] = value
  return defaults


def _field_of(token: str, fields: tuple[str, ...]) -> str | None:
  """The field a `--FIELD[=VALUE]` token names, or None for any other token.

  A dotted name is always meant as a field (and checked as one); a plain
  name only when it is a top-level field, so a command's own flags pass.
  """
  if not token.startswith("--") or token == "--":
    return None
  name = token[2:].partition("=")[0]
  return name if "." in name or name in fields else None


def split_overrides(argv: list[str]) -> tuple[dict[str, str], list[str]]:
  """(field -> value, the other arguments in order) from a command line.

  Takes `--FIELD VALUE` and `--FIELD=VALUE`; a later value of one field
  wins, as with any flag. Everything after a bare `--` is left alone.
  """
  fields = _fields(_algorithm_of(argv))
  overrides: dict[str, str] = {}
  rest: list[str] = []
  i = 0
  while i < len(argv):
    token = argv[i]
    if token == "--":
      rest += argv[i:]
      break
    name = _field_of(token, fields)
    if name is None:
      rest.append(token)
      i += 1
      continue
    if name not in fields:
      raise OverrideError(f"unknown config field '{name}'{did_you_mean(name, fields)}")
    if "=" in token:
      overrides[name] = token.partition("=")[2]
      i += 1
    elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
      overrides[name] = argv[i + 1]
      i += 2
    else:
      raise OverrideError(f"--{name} needs a value: --{name} VALUE or --{name}=VALUE")
  return overrides, rest


def parse_overrides(argv: list[str]) -> dict[str, str]:
  """field -> value from arguments that are all `--FIELD VALUE` or `--FIELD=VALUE`."""
  overrides, rest = split_overrides(argv)
  if rest:
    raise OverrideError(f"expected --FIELD VALUE, got {rest[0]!r}; fields are dotted names "
                        "such as --run.train_ratio 64")
  return overrides


def parse_args(parser: argparse.ArgumentParser,
               argv: list[str]) -> tuple[argparse.Namespace, dict[str, str]]:
  """The command's own flags, parsed by `parser`, and the config fields.

  Mistakes exit through `parser.error` (status 2) with the closest flag or
  field named.
  """
  try:
    overrides, rest = split_overrides(argv)
  except OverrideError as e:
    parser.error(str(e))
  args, unknown = parser.parse_known_args(rest)
  if unknown:
    flags = [u.partition("=")[0] for u in unknown if u.startswith("-")] or unknown
    # A field named without its group (--train_ratio) is close to its dotted flag.
    known = [s for action in parser._actions for s in action.option_strings]
    known += [f"--{name}" for name in _fields(_algorithm_of(argv))]
    parser.error(f"unknown argument {flags[0]}{did_you_mean(flags[0], known)}")
  return args, overrides


def fields_help() -> str:
  """Every field as a flag with its default, for a command's --help."""
  lines = ["config fields, each as --FIELD VALUE or --FIELD=VALUE (DreamerV3's, with the "
           "reference's defaults;\n  another --algorithm has its own groups beside env and run):"]
  for name, default in field_defaults().items():
    if isinstance(default, tuple):
      default = ",".join(map(str, default))
    lines.append(f"  --{name:<32} default: {default}")
  return "\n".join(lines)
