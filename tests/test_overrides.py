"""Tests for wmrl/overrides.py: the one `--FIELD VALUE` syntax of wmrl train, wmrl bench
and experiments/run_suite.py."""
import argparse

import pytest

from wmrl import cli
from wmrl.overrides import OverrideError, parse_args, parse_overrides, split_overrides


def test_both_forms_and_the_other_flags_in_order():
  fields, rest = split_overrides(["--logdir", "d", "--run.train_ratio", "64", "--quiet",
                                  "--model.rssm.deter=512", "--algorithm", "dreamerv3"])
  assert fields == {"run.train_ratio": "64", "model.rssm.deter": "512", "algorithm": "dreamerv3"}
  assert rest == ["--logdir", "d", "--quiet"]


def test_values_that_look_like_options_but_are_not():
  # A negative number is a value; a later flag of one field wins; after `--` nothing is taken.
  fields, rest = split_overrides(["--optim.lr", "-1e-3", "--run.seed", "1", "--run.seed=2",
                                  "--", "--run.steps", "5"])
  assert fields == {"optim.lr": "-1e-3", "run.seed": "2"}
  assert rest == ["--", "--run.steps", "5"]


def test_unknown_field_is_refused_with_the_closest_names():
  # The closest first (run.train_devices and run.train_mesh are close too).
  with pytest.raises(OverrideError, match=r"unknown config field 'run.trian_ratio'; "
                                          r"did you mean run.train_ratio[,?]"):
    parse_overrides(["--run.trian_ratio", "64"])


def test_field_without_a_value_is_refused():
  with pytest.raises(OverrideError, match="--run.seed needs a value"):
    parse_overrides(["--run.seed", "--quiet"])
  with pytest.raises(OverrideError, match="--run.seed needs a value"):
    parse_overrides(["--run.seed"])


def test_parse_overrides_refuses_anything_but_fields():
  assert parse_overrides(["--run.seed=3"]) == {"run.seed": "3"}
  with pytest.raises(OverrideError, match="expected --FIELD VALUE, got 'seed'"):
    parse_overrides(["seed", "3"])


def test_parse_args_suggests_flags_and_fields(capsys):
  parser = argparse.ArgumentParser(prog="tool")
  parser.add_argument("--logdir")
  args, fields = parse_args(parser, ["--logdir", "x", "--run.seed", "4"])
  assert args.logdir == "x" and fields == {"run.seed": "4"}
  for argv, hint in [(["--logdri", "x"], "did you mean --logdir"),
                     (["--train_ratio", "3"], "did you mean --run.train_ratio"),
                     (["--run.sed", "3"], "did you mean run.seed")]:
    with pytest.raises(SystemExit) as exit_info:
      parse_args(parser, argv)
    assert exit_info.value.code == 2
    assert hint in capsys.readouterr().err


def test_train_takes_either_form():
  _, config = cli.parse_train_args(["--logdir", "d", "--run.train_ratio", "64",
                                    "--model.rssm.deter=512", "--steps", "7", "--run.seed", "3"])
  assert (config.run.train_ratio, config.model.rssm.deter) == (64.0, 512)
  assert (config.run.steps, config.run.seed) == (7, 3)
  # The field flag wins over its shortcut.
  _, config = cli.parse_train_args(["--logdir", "d", "--steps", "7", "--run.steps", "9"])
  assert config.run.steps == 9


def test_an_unknown_command_is_named_with_the_close_ones(capsys):
  assert cli.main(["trian"]) == 2
  assert "wmrl: unknown command 'trian'; did you mean train?" in capsys.readouterr().err
  assert cli.main(["foo"]) == 2
  assert ("unknown command 'foo' (commands: train, eval, plot, bench, compare)"
          in capsys.readouterr().err)
  assert cli.main(["--help"]) == 0 and "unknown" not in capsys.readouterr().out


def test_scores_keep_their_precision():
  """Catches scores rounded to one decimal (0.1497 printed as 0.1)."""
  assert [cli.score_text(x) for x in (0.1497, 0.953, -205.33, 499.9, -1200.4)] == [
      "0.1497", "0.953", "-205.3", "499.9", "-1200.4"]


def test_train_help_lists_every_environment_prefix():
  help_text = cli._train_parser().format_help()
  for prefix in ("gym:", "dmc:", "popgym:", "gymnax:", "craftax:", "navix:", "playground:",
                 "custom:", "module.path:factory"):
    assert prefix in help_text, prefix
