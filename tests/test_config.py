"""Tests for wmrl/config.py: reference defaults (DESIGN.md, "Faithful to DreamerV3"),
dotted overrides, errors, JSON round trip and diffs (presets: tests/test_presets.py)."""
import dataclasses
import json

import pytest

from wmrl import config as cfg
from wmrl.config import Config
from wmrl.presets import apply_presets

# --- reference defaults ---------------------------------------------------------------

def test_default_optimiser_is_reference():
  o = Config().optim
  assert (o.lr, o.eps, o.beta1, o.beta2, o.agc, o.warmup) == (4e-5, 1e-20, 0.9, 0.999, 0.3, 1000)


def test_default_behavior_is_reference():
  b = Config().behavior
  assert b.horizon == 333 and b.lam == 0.95 and b.entropy == 3e-4
  assert b.imag_horizon == 15
  assert b.slow_critic_rate == 0.02 and b.slow_reg == 1.0
  assert (b.retnorm_rate, b.retnorm_limit, b.retnorm_low, b.retnorm_high) == (0.01, 1.0, 5.0, 95.0)
  assert b.contdisc is True


def test_default_loss_scales_are_reference():
  s = Config().loss_scales
  assert dataclasses.asdict(s) == {"rec": 1.0, "rew": 1.0, "con": 1.0, "dyn": 1.0, "rep": 0.1,
                                   "policy": 1.0, "value": 1.0, "repval": 0.3}


def test_default_batch_is_16_by_64_with_context_1():
  r = Config().run
  assert (r.batch_size, r.batch_length, r.replay_context) == (16, 64, 1)


def test_default_run_is_the_references():
  # Its configs.yaml: run.train_ratio 32, run.envs 16.
  c = Config()
  assert (c.run.train_ratio, c.env.num_envs) == (32.0, 16)


def test_default_model_is_reference():
  m = Config().model
  assert (m.rssm.stoch, m.rssm.blocks, m.rssm.unimix, m.rssm.free_nats) == (32, 8, 0.01, 1.0)
  assert m.reward.bins == 255 and m.critic.bins == 255
  assert m.reward.outscale == 0.0 and m.critic.outscale == 0.0  # zero-initialised outputs
  assert m.encoder.mults == (2, 3, 4, 4) and m.encoder.kernel == 5 and m.encoder.symlog
  assert m.decoder.mults == (2, 3, 4, 4) and m.decoder.kernel == 5 and m.decoder.bspace == 8
  # The reference's categorical policy ignores its unimix setting.
  assert (m.actor_min_std, m.actor_max_std, m.actor_unimix) == (0.1, 1.0, 0.0)
  assert (m.reward.layers, m.cont.layers, m.actor.layers, m.critic.layers) == (1, 1, 3, 3)
  assert m.actor.outscale == 0.01 and m.cont.outscale == 1.0


# --- dotted overrides ------------------------------------------------------------------

def test_override_coerces_int():
  c = Config().replace(**{"model.rssm.deter": "512", "run.steps": "1e6"})
  assert c.model.rssm.deter == 512 and type(c.model.rssm.deter) is int
  assert c.run.steps == 1_000_000 and type(c.run.steps) is int


def test_override_coerces_float():
  c = Config().replace(**{"optim.lr": "1e-4", "behavior.lam": "0.9", "run.train_ratio": 32})
  assert c.optim.lr == 1e-4 and c.behavior.lam == 0.9
  assert c.run.train_ratio == 32.0 and type(c.run.train_ratio) is float


@pytest.mark.parametrize("text,value", [("true", True), ("True", True), ("1", True), ("yes", True),
                                        ("false", False), ("0", False), ("off", False)])
def test_override_coerces_bool(text, value):
  assert Config().replace(**{"env.pixels": text}).env.pixels is value


def test_override_coerces_tuple():
  c = Config().replace(**{"model.encoder.mults": "2,3", "env.image_size": "(96, 80)"})
  assert c.model.encoder.mults == (2, 3)
  assert c.env.image_size == (96, 80)
  assert all(type(v) is int for v in c.model.encoder.mults + c.env.image_size)
  assert Config().replace(**{"model.decoder.mults": [1, "2"]}).model.decoder.mults == (1, 2)


def test_override_bad_values_name_the_field():
  with pytest.raises(ValueError, match="model.rssm.deter"):
    Config().replace(**{"model.rssm.deter": "abc"})
  with pytest.raises(ValueError, match="env.pixels"):
    Config().replace(**{"env.pixels": "maybe"})
  with pytest.raises(ValueError, match="run.seed"):
    Config().replace(**{"run.seed": 1.5})


def test_override_rejects_fractional_int_string():
  """'1.5' for an int field must fail like the float 1.5 does, not truncate to 1."""
  with pytest.raises(ValueError, match="model.rssm.deter"):
    Config().replace(**{"model.rssm.deter": "1.5"})


def test_override_leaves_original_unchanged():
  c = Config()
  c.replace(**{"run.seed": 3})
  assert c.run.seed == 0
  with pytest.raises(dataclasses.FrozenInstanceError):
    c.run.seed = 3  # type: ignore[misc]


def test_unknown_field_suggests_close_name():
  with pytest.raises(ValueError, match="did you mean model.rssm.deter"):
    Config().replace(**{"model.rssm.detr": 1})
  with pytest.raises(ValueError, match="optim.lr"):
    Config().replace(**{"optm.lr": 1})
  with pytest.raises(ValueError, match="unknown config field 'zzz'"):
    Config().replace(zzz=1)


def test_group_and_leaf_misuse_errors():
  with pytest.raises(ValueError, match="group"):
    Config().replace(**{"model.rssm": 1})
  with pytest.raises(ValueError, match="no sub-fields"):
    Config().replace(**{"run.seed.x": 1})


# --- JSON and diff ----------------------------------------------------------------------

def test_json_round_trip_default():
  c = Config()
  assert Config.from_dict(json.loads(c.to_json())) == c


def test_json_round_trip_modified():
  c = apply_presets(Config(), "dmc_vision,size1m").replace(**{
      "model.encoder.mults": "2,2", "env.image_size": "32,48", "optim.eps": 1e-8,
      "env.id": "dmc:walker-walk", "behavior.contdisc": False})
  back = Config.from_dict(json.loads(c.to_json()))
  assert back == c
  assert back.model.encoder.mults == (2, 2) and isinstance(back.env.image_size, tuple)


def test_from_dict_rejects_unknown_key():
  data = Config().to_dict()
  data["model"]["rssm"]["detr"] = 3
  with pytest.raises(ValueError, match="model.rssm.detr"):
    Config.from_dict(data)


def test_from_dict_partial_keeps_defaults():
  c = Config.from_dict({"optim": {"lr": 1e-3}})
  assert c.optim.lr == 1e-3 and c.optim.eps == 1e-20 and c.model == Config().model


def test_diff_lists_changed_fields():
  a = Config()
  b = a.replace(**{"optim.lr": 1e-4, "model.encoder.mults": (2, 2), "run.seed": 0})
  assert cfg.diff(a, a) == {}
  assert cfg.diff(a, b) == {"model.encoder.mults": ((2, 3, 4, 4), (2, 2)),
                            "optim.lr": (4e-5, 1e-4)}


def test_field_names_are_dotted_leaves():
  names = cfg.field_names(Config())
  assert "model.rssm.deter" in names and "optim.lr" in names and "run.seed" in names
  assert "model" not in names and "model.rssm" not in names
  assert len(names) == len(set(names))


# --- the algorithm's settings: nested, addressed at the top ----------------------------------

@dataclasses.dataclass(frozen=True)
class _WidthConfig:
  units: int = 8


@dataclasses.dataclass(frozen=True)
class _OtherSettings:
  """The settings of a second algorithm, registered for these tests only."""

  model: _WidthConfig = _WidthConfig()


@pytest.fixture
def other_algorithm():
  from wmrl import algorithms
  algorithms.register("other-for-config-tests", "no.module:NAME", _OtherSettings)
  return "other-for-config-tests"


def test_the_algorithms_groups_read_and_save_as_the_configs_own():
  """Catches a nesting that leaks: flags, attributes and config.json name DreamerV3's
  groups as before (`model.rssm.deter`, `config.model`, "model" at the top), so old
  saved configs load and old flags work."""
  config = Config().replace(**{"model.rssm.deter": 64, "loss_scales.rep": 0.2})
  assert config.model.rssm.deter == 64 and config.algorithm_config.model.rssm.deter == 64
  assert list(config.to_dict()) == ["algorithm", "model", "behavior", "optim", "loss_scales",
                                    "env", "run", "replay"]
  assert Config.from_dict(json.loads(config.to_json())) == config
  assert "model.rssm.deter" in cfg.field_names(config) and "algorithm_config" not in str(
      cfg.field_names(config))
  with pytest.raises(AttributeError, match="no field 'modle'"):
    config.modle  # noqa: B018


def test_another_algorithm_starts_from_its_own_defaults(other_algorithm):
  """Catches settings carried across algorithms: naming another algorithm replaces
  DreamerV3's groups with its own defaults, whose fields are then the flags, and
  DreamerV3's are refused with the other's names suggested."""
  config = Config().replace(**{"model.rssm.deter": 64}).replace(
      **{"model.units": 16, "algorithm": other_algorithm})  # `algorithm` applies first
  assert config.algorithm_config == _OtherSettings(_WidthConfig(16))
  assert cfg.field_names(config)[:2] == ["algorithm", "model.units"]
  assert Config.from_dict(config.to_dict()) == config
  with pytest.raises(ValueError,
                     match="unknown config field 'model.unit'; did you mean model.units"):
    config.replace(**{"model.unit": 3})
  with pytest.raises(ValueError, match="unknown config field 'behavior.lam'"):
    config.replace(**{"behavior.lam": 0.9})
  with pytest.raises(ValueError, match="unknown algorithm 'dreamerv4'.*did you mean dreamerv3"):
    Config(algorithm="dreamerv4")
