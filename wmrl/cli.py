"""The `wmrl` command line.

  wmrl train --env gym:CartPole-v1 --logdir runs/cartpole --preset size1m --steps 20000
  wmrl train --env dmc:walker-walk --logdir runs/walker --preset dmc_proprio
  wmrl train --env mypkg.envs:make_maze --logdir runs/maze --run.train_ratio 64

Every config field is a flag named by its dotted path (`--model.rssm.deter 512`
or `--model.rssm.deter=512`, see wmrl/overrides.py); `--preset` applies named
presets, joined by commas, in order, before the flags.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
import warnings

import wmrl
from wmrl import config as cfg
from wmrl import overrides as ov
from wmrl import presets
from wmrl.names import did_you_mean

# Short flags for the fields set most often.
SHORTCUTS = {"env": "env.id", "steps": "run.steps", "seed": "run.seed"}


def _train_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="wmrl train", usage="wmrl train --logdir DIR [--env ID] [--preset P,Q] [--FIELD VALUE ...]",
      formatter_class=argparse.RawDescriptionHelpFormatter,
      description="Train an agent (DreamerV3 by default; --algorithm names another). "
                  "Metrics go to LOGDIR/metrics.jsonl.",
      epilog="presets: " + ", ".join(presets.PRESETS) + "\n\nenvironment ids: gym:ID (any Gymnasium "
             "id; gym:PACKAGE:ID imports PACKAGE first), dmc:DOMAIN-TASK (DeepMind Control),\n"
             "  popgym:NAME, gymnax:ID, craftax:ID, navix:ID, playground:NAME (written in JAX: "
             "the fused driver),\n  custom:NAME (wmrl.envs.register) or module.path:factory (a "
             "function returning a gymnasium.Env)\n\n" + ov.fields_help())
  parser.add_argument("--logdir", required=True, help="directory for metrics and checkpoints")
  parser.add_argument("--preset", default="",
                      help="presets joined by commas, applied in order (a later one wins)")
  parser.add_argument("--env", help="environment id (env.id), e.g. gym:CartPole-v1")
  parser.add_argument("--steps", help="environment steps to train for (run.steps)")
  parser.add_argument("--seed", help="random seed (run.seed)")
  parser.add_argument("--quiet", action="store_true", help="no console progress")
  return parser


def parse_train_args(argv: list[str]) -> tuple[argparse.Namespace, cfg.Config]:
  parser = _train_parser()
  args, fields = ov.parse_args(parser, argv)
  values = vars(args)
  shortcuts = {name: values[short] for short, name in SHORTCUTS.items()
               if values.get(short) is not None}
  try:
    # A field flag wins over its shortcut (--run.steps over --steps).
    config = wmrl.make_config(presets=args.preset, overrides={**shortcuts, **fields})
  except ValueError as e:
    parser.error(str(e))
  return args, config


def train_main(argv: list[str]) -> int:
  args, config = parse_train_args(argv)
  from wmrl.envs.registry import check  # Gymnasium only: a mistyped id is refused in a blink
  try:
    check(config.env.id)
  except ValueError as e:
    print(f"wmrl train: error: {e}", file=sys.stderr)
    return 2
  from wmrl import run  # JAX and the agent load only for training
  try:
    summary = run.train(config, args.logdir, console=not args.quiet)
  except ValueError as e:
    print(f"wmrl train: error: {e}", file=sys.stderr)
    return 2
  except run.EnvironmentCrash as e:  # the simulator's own traceback, then what was saved
    traceback.print_exception(e.error)
    print(f"wmrl train: error: {e}", file=sys.stderr)
    return 1
  except run.Stopped as e:  # saved, and the console said so
    return 128 + e.signum
  except KeyboardInterrupt:  # a second Ctrl-C, before the first one's save
    print("wmrl train: interrupted at once; the newest checkpoint written before it is "
          "where the same command continues", file=sys.stderr)
    return 128 + signal.SIGINT
  runs = summary.get("seeds") or {config.run.seed: summary}
  for seed, result in runs.items():
    scores = result["scores"][-10:]
    line = f"done{f' (seed {seed})' if 'seeds' in summary else ''}: {summary['env_steps']} steps"
    if scores:
      line += (f", {result['episodes']} episodes, mean score of the last {len(scores)}: "
               f"{score_text(sum(scores) / len(scores))}")
    evaluation = result.get("evaluation")
    if evaluation:
      line += (f"; greedy evaluation over {config.run.eval_episodes} episodes: "
               f"{score_text(evaluation['eval/score'])}")
    print(line)
  return 0


def score_text(score: float) -> str:
  """A score with four significant digits: 0.1497 as 0.1497 (not 0.1), -205.3 as -205.3."""
  return f"{score:.4g}" if abs(score) < 1000 else f"{score:.1f}"


def compare_main(argv: list[str]) -> int:
  from wmrl import compare  # numpy only; matplotlib only with --out
  return compare.main(argv)


def plot_main(argv: list[str]) -> int:
  from wmrl.compare import plot  # numpy and matplotlib only
  return plot.main(argv)


def eval_main(argv: list[str]) -> int:
  from wmrl import evaluate  # JAX and the agent load only for this command
  return evaluate.main(argv)


def bench_main(argv: list[str]) -> int:
  from wmrl import bench  # JAX and the agent load only for this command
  return bench.main(argv)


COMMANDS = {"train": train_main, "eval": eval_main, "plot": plot_main, "bench": bench_main,
            "compare": compare_main}


def _brief_notes() -> None:
  """wmrl's own notes to the user (a dropped observation key) as one line, not
  with the source line Python's warnings show."""
  default = warnings.formatwarning
  if getattr(default, "brief_notes", False):  # installed by an earlier call
    return

  def format(message, category, filename, lineno, line=None):
    # By name: importing wmrl.envs here would load Gymnasium for every command.
    if category.__module__ == "wmrl.envs.observations" and category.__name__ == "DroppedKey":
      return f"note: {message}\n"
    return default(message, category, filename, lineno, line)

  format.brief_notes = True
  warnings.formatwarning = format


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  _brief_notes()
  # `module.path:factory` env ids resolve against the working directory, as
  # with `python -m`.
  if os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())
  if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
    unknown = ""
    if argv and argv[0] not in ("-h", "--help"):
      close = did_you_mean(argv[0], COMMANDS) or f" (commands: {', '.join(COMMANDS)})"
      unknown = f"wmrl: unknown command '{argv[0]}'{close}\n"
    usage = unknown + ("usage: wmrl {" + ",".join(COMMANDS) + "} ...\n\n"
             "  train    train an agent on an environment\n"
             "  eval     run a trained agent's eval policy, optionally writing a video\n"
             "  plot     learning curves of any runs, seeds grouped, with 95% intervals\n"
             "  bench    measure train and policy speed against the machine's matmul peak\n"
             "  compare  put training runs beside the published DreamerV3 curves\n\n"
             "Run `wmrl COMMAND --help` for a command's options.")
    print(usage, file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr)
    return 0 if argv and argv[0] in ("-h", "--help") else 2
  return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
  sys.exit(main())
