"""Tests for wmrl/presets.py: the reference's sizes, the suites' recipes, the one way
presets are joined (commas, in order) and the errors for unknown names."""
import pytest

from wmrl import config as cfg
from wmrl import presets
from wmrl.config import Config
from wmrl.presets import apply_presets

HEADS = ("reward", "cont", "actor", "critic")


def test_default_size_is_200m():
  assert apply_presets(Config(), "size200m") == Config()


# --- size presets ------------------------------------------------------------------------

SIZES = {  # deter / hidden / classes / units / CNN depth, from DESIGN.md
    "size1m": (512, 64, 4, 64, 4),
    "size12m": (2048, 256, 16, 256, 16),
    "size25m": (3072, 384, 24, 384, 24),
    "size50m": (4096, 512, 32, 512, 32),
    "size100m": (6144, 768, 48, 768, 48),
    "size200m": (8192, 1024, 64, 1024, 64),
    "size400m": (12288, 1536, 96, 1536, 96),
}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_size_preset_sets_every_module(name):
  deter, hidden, classes, units, depth = SIZES[name]
  m = apply_presets(Config(), name).model
  assert (m.rssm.deter, m.rssm.hidden, m.rssm.classes) == (deter, hidden, classes)
  assert (m.ssm.deter, m.ssm.hidden, m.ssm.classes) == (deter, hidden, classes)
  assert m.ssm.units == m.ssm.state == deter // 8
  assert (m.encoder.units, m.encoder.depth) == (units, depth)
  assert (m.decoder.units, m.decoder.depth) == (units, depth)
  for head in HEADS:
    assert getattr(m, head).units == units, head
  # Everything else keeps its default.
  assert m.rssm.stoch == 32 and m.rssm.blocks == 8
  assert m.actor.layers == 3 and m.critic.outscale == 0.0


def test_size_preset_changes_only_size_fields():
  changed = set(cfg.diff(Config(), apply_presets(Config(), "size1m")))
  expected = {"model.rssm.deter", "model.rssm.hidden", "model.rssm.classes",
              "model.encoder.units", "model.encoder.depth", "model.decoder.units",
              "model.decoder.depth", "model.ssm.deter", "model.ssm.hidden", "model.ssm.classes",
              "model.ssm.units", "model.ssm.state"} | {f"model.{h}.units" for h in HEADS}
  assert changed == expected


# --- presets in order ------------------------------------------------------------------

def test_apply_presets_comma_list_in_order():
  a = apply_presets(Config(), "size1m,size12m")
  b = apply_presets(Config(), "size12m,size1m")
  assert a.model.rssm.deter == 2048  # the later preset wins
  assert b.model.rssm.deter == 512
  assert apply_presets(Config(), " size1m , debug ") == apply_presets(Config(), ["size1m", "debug"])


def test_apply_presets_order_with_overlapping_fields(monkeypatch):
  monkeypatch.setitem(presets.PRESETS, "seed_a", lambda c: c.replace(**{"run.seed": 1, "run.steps": 7}))
  monkeypatch.setitem(presets.PRESETS, "seed_b", lambda c: c.replace(**{"run.seed": 2}))
  c = apply_presets(Config(), "seed_a,seed_b")
  assert (c.run.seed, c.run.steps) == (2, 7)
  c = apply_presets(Config(), "seed_b,seed_a")
  assert (c.run.seed, c.run.steps) == (1, 7)


# The recipes, from the reference's configs.yaml: April 2024 (commit 2411f7d, the one that
# made the published DMC curves) and its current one (no published curves).
RECIPES = {
    "dmc_proprio": {"model.rssm.deter": 2048, "env.action_repeat": 2, "env.num_envs": 8,
                    "env.pixels": False, "run.train_ratio": 512, "run.steps": 250_000,
                    "run.eval_every": 10_000, "run.eval_episodes": 10},
    "dmc_vision": {"model.rssm.deter": 2048, "env.action_repeat": 2, "env.num_envs": 8,
                   "env.pixels": True, "run.train_ratio": 512, "run.steps": 500_000,
                   "run.eval_every": 10_000, "run.eval_episodes": 10},
    "dmc_proprio_2025": {"model.rssm.deter": 512, "env.action_repeat": 1, "env.num_envs": 16,
                         "env.pixels": False, "run.train_ratio": 1024, "run.steps": 1_100_000,
                         "run.eval_every": 10_000, "run.eval_episodes": 10},
    "dmc_vision_2025": {"model.rssm.deter": 8192, "env.action_repeat": 1, "env.num_envs": 16,
                        "env.pixels": True, "run.train_ratio": 256, "run.steps": 1_100_000,
                        "run.eval_every": 10_000, "run.eval_episodes": 10},
    "atari100k": {"env.action_repeat": 1, "env.pixels": True, "env.image_size": (64, 64),
                  "env.num_envs": 1, "run.train_ratio": 256, "run.steps": 100_000},
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_suite_presets_are_the_reference_recipes(name):
  flat = cfg._flatten(apply_presets(Config(), name).to_dict())
  assert {k: flat[k] for k in RECIPES[name]} == RECIPES[name]


@pytest.mark.parametrize("name, size", [("dmc_proprio", "size12m"), ("dmc_vision", "size12m"),
                                        ("dmc_proprio_2025", "size1m"),
                                        ("dmc_vision_2025", "size200m")])
def test_dmc_recipes_set_their_whole_model_size(name, size):
  # From any starting size: a recipe names its model, a later size preset still wins.
  start = apply_presets(Config(), "size400m")
  assert apply_presets(start, name).model == apply_presets(Config(), size).model
  assert apply_presets(Config(), f"{name},size1m").model == apply_presets(Config(), "size1m").model


def test_the_published_recipes_reach_the_end_of_their_curves():
  # The published curves count frames: agent steps x action repeat (x4 for ALE v5).
  from wmrl import compare, suites
  for name, env_id in (("dmc_proprio", "dmc:walker-walk"), ("dmc_vision", "dmc:walker-walk"),
                       ("atari100k", suites.atari_env_id("atari_pong"))):
    config = apply_presets(Config(), suites.get(name).presets).replace(**{"env.id": env_id})
    reference = compare.load_reference(name)
    end = reference.frames(reference.tasks)[-1]
    assert config.run.steps * suites.frames_per_step(config.env) >= end, name


def test_suite_and_debug_presets():
  c = apply_presets(Config(), "dmc_proprio,debug")
  assert c.env.action_repeat == 2 and c.run.steps == 250_000
  assert c.run.batch_size == 8 and c.optim.warmup == 0 and c.run.train_ratio == 64
  assert apply_presets(Config(), "dmc_vision").env.pixels is True


def test_unknown_preset_suggests_close_name():
  with pytest.raises(ValueError, match="size12m"):
    apply_presets(Config(), "size12")
  with pytest.raises(ValueError, match="did you mean.*dmc_proprio"):
    apply_presets(Config(), "dmc_propio")


def test_register_preset_rejects_existing_name():
  with pytest.raises(ValueError, match="exists"):
    presets.register_preset("size1m", lambda c: c)


def test_split_and_join_are_the_one_syntax():
  assert presets.split(" dmc_proprio, size12m ,") == ["dmc_proprio", "size12m"]
  assert presets.split(["size1m", " debug"]) == ["size1m", "debug"]
  assert presets.join("dmc_proprio,size1m", "", " size12m ") == "dmc_proprio,size1m,size12m"
  assert presets.join() == ""


def test_check_names_the_unknown_preset_before_applying_any():
  assert presets.check("size1m,debug") == ["size1m", "debug"]
  with pytest.raises(ValueError, match=r"unknown preset 'clasic'; did you mean classic\?.*known: size1m"):
    presets.check("size1m,clasic")
