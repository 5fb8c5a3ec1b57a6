"""The videos a run logs: DreamerV3's open loop (wmrl/algorithms/dreamerv3/report.py),
the report videos a run takes from a driver's replay (wmrl/report.py) and
filmed evaluations (wmrl/evaluate.py), alone and in a tiny run."""
import importlib.util

import imageio.v3
import jax
import numpy as np
import pytest

from conftest import batch_with_terminal, tiny_config
from fake_envs import ImageCounter
from wmrl import cli, envs, evaluate, report, run, video
from wmrl.algorithms.dreamerv3 import agent
from wmrl.algorithms.dreamerv3 import report as dreamer_report
from wmrl.drivers.host import HostDriver
from wmrl.logging import read_metrics
from wmrl.replay import Replay
from wmrl.spaces import ActionSpec, ArraySpec
from wmrl.testing import entry_specs

IMAGE_OBS = {"image": ArraySpec((16, 16, 3), "uint8")}
ACT = ActionSpec("continuous", (1,))  # as the fake envs


@pytest.fixture(scope="module")
def image_state():
  return agent.init(jax.random.key(0), IMAGE_OBS, ACT, tiny_config())


def _entries(config=tiny_config()):
  """The stored latents' shapes of the image model (what a replay context reads)."""
  state = jax.eval_shape(lambda k: agent.init(k, IMAGE_OBS, ACT, config), jax.random.key(0))
  return entry_specs(agent.DREAMERV3, state)


def _batch(config=tiny_config(), seed=0):
  r = config.run
  return batch_with_terminal(IMAGE_OBS, ACT, r.batch_size, r.replay_context + r.batch_length, seed,
                      _entries(config))


def open_loop(state, batch, key, context=None, horizon=None):
  return agent.report(state, batch, key, context=context, horizon=horizon)["openloop"]


def test_open_loop_shows_real_predicted_and_error(image_state):
  batch = _batch()
  frames = np.asarray(open_loop(image_state, batch, jax.random.key(1), context=5))
  # Batch 2 x (1 + 6) steps; the replay context step supplies the start latent and action.
  assert frames.shape == (2, 6, 16, 3 * 16, 3) and frames.dtype == np.uint8
  real, pred, error = np.split(frames.astype(int), 3, axis=3)
  np.testing.assert_array_equal(real, batch["image"][:, 1:])
  assert 0 <= pred.min() and pred.max() <= 255
  assert np.abs(error - np.abs(real - pred)).max() <= 1  # rounding of the [0, 1] predictions


def test_open_loop_starts_from_the_latent_stored_with_the_context_step(image_state):
  batch = _batch()
  frames = lambda b: np.asarray(open_loop(image_state, b, jax.random.key(1), context=2))
  base = frames(batch)
  elsewhere = {**batch, "latent/deter": batch["latent/deter"].copy()}
  elsewhere["latent/deter"][:, 1:] += 3.0  # the trained steps' latents: not read
  np.testing.assert_array_equal(frames(elsewhere), base)
  context_step = {**batch, "latent/deter": batch["latent/deter"].copy()}
  context_step["latent/deter"][:, 0] += 3.0  # the last context step's: the start
  assert not np.array_equal(frames(context_step), base)


def test_open_loop_horizon_and_its_limits(image_state):
  batch = _batch()
  key = jax.random.key(0)
  assert open_loop(image_state, batch, key, context=2, horizon=2).shape[1] == 4
  with pytest.raises(ValueError, match="context=6 must be at least 1 and less than the 6 steps"):
    open_loop(image_state, batch, key, context=6)
  with pytest.raises(ValueError, match=r"horizon=5 must be in \[1, 4\]"):
    open_loop(image_state, batch, key, context=2, horizon=5)


def test_vector_only_models_get_no_open_loop_video():
  """Catches a report that fails (or films nothing) on a model without images."""
  obs = {"obs": ArraySpec((3,), "float32")}
  state = agent.init(jax.random.key(0), obs, ACT, tiny_config())
  assert agent.report(state, batch_with_terminal(obs, ACT, 2, 7), jax.random.key(0)) == {}
  with pytest.raises(ValueError, match="needs an image observation"):
    wm, _, _ = agent.modules(state.spec, state.params)
    batch = batch_with_terminal(obs, ACT, 2, 6)
    dreamer_report.open_loop(wm, batch, batch["action"], [], jax.random.key(0))


def _report_videos(state, replay, length, seed, sequences=2):
  """`report.report_videos` of a host driver over `replay`, as a run takes them."""
  config = tiny_config()
  with envs.make("fake_envs:make_image_counter", seed=0) as env:
    driver = HostDriver.single(agent.DREAMERV3, config.run, env, state, replay)
    return report.report_videos(driver, 0, length, seed, sequences)


def test_report_videos_tile_the_sequences_and_leave_the_replay_draws_unchanged(image_state):
  """Catches report videos drawn with the replay's own generator (a report would
  change which batches training sees) or tiled the wrong way."""
  entries = _entries()

  def filled():
    replay = Replay(100, seed=3)
    for t in range(20):
      step = {k: v[:, t] for k, v in batch_with_terminal(IMAGE_OBS, ACT, 1, 20, t, entries).items()}
      replay.add(step)
    return replay

  replay = filled()
  # Shapes as in the tests above: the compiled open loop is reused.
  videos = _report_videos(image_state, replay, 7, seed=5)
  # 2 sequences stacked, each real | predicted | error; 6 steps after the replay context.
  assert videos.keys() == {"openloop"}
  assert videos["openloop"].shape == (6, 2 * 16, 3 * 16, 3)
  assert videos["openloop"].dtype == np.uint8
  np.testing.assert_array_equal(videos["openloop"],
                                _report_videos(image_state, filled(), 7, seed=5)["openloop"])
  assert _report_videos(image_state, Replay(100), 7, seed=0) == {}  # nothing 7 steps long yet
  np.testing.assert_array_equal(replay.sample(2, 7)["image"], filled().sample(2, 7)["image"])


def test_tile_stacks_sequences_top_to_bottom():
  """Catches sequences laid side by side or interleaved in a report video."""
  frames = np.arange(2 * 3 * 4 * 5 * 3).reshape(2, 3, 4, 5, 3)
  tiled = report.tile(frames)
  assert tiled.shape == (3, 8, 5, 3)
  np.testing.assert_array_equal(tiled[:, :4], frames[0])
  np.testing.assert_array_equal(tiled[:, 4:], frames[1])


class RenderingImageCounter(ImageCounter):
  """Renders 24x32 frames, a size the 16x16 image observation cannot have."""

  render_mode = "rgb_array"

  def render(self):
    return np.full((24, 32, 3), 7 * self.t, np.uint8)


def make_rendering_image_counter():
  return RenderingImageCounter()


@pytest.mark.parametrize("env_id, frame_shape", [
    ("test_report:make_rendering_image_counter", (24, 32, 3)),
    ("fake_envs:make_image_counter", (16, 16, 3)),  # no render(): the observation is filmed
    ("fake_envs:make_counter", None),  # neither: nothing to film
])
def test_film_episode_prefers_rendered_frames(image_state, env_id, frame_shape):
  with envs.make(env_id, seed=0) as env:
    if frame_shape is None:
      assert not evaluate.can_film(env)
      with pytest.raises(ValueError, match="cannot record a video"):
        evaluate.run_episodes(agent.DREAMERV3, image_state, env, 1, seed=0, film=1)
      return
    results, videos = evaluate.run_episodes(agent.DREAMERV3, image_state, env, 1, seed=0, film=1)
  # Every step of a 20-step episode, its reset included.
  assert results[0]["length"] == 20 and videos[0].shape == (21, *frame_shape)
  assert videos[0].dtype == np.uint8


def test_big_frames_are_filmed_smaller():
  frames = np.zeros((2, 480, 600, 3), np.uint8)
  assert video.shrink(frames, 256).shape == (2, 160, 200, 3)
  assert video.shrink(frames[:, :200, :200], 256).shape == (2, 200, 200, 3)


def test_tiny_image_run_writes_openloop_and_eval_videos(tmp_path, capsys):
  """Catches a run that stops logging its report or evaluation videos, or logs
  them off their schedule."""
  # 12 steps stay inside the prefill (2 x 7 steps), so no train step compiles;
  # replay holds a sequence of 7 from step 7 on.
  config = tiny_config(**{
      "env.id": "fake_envs:make_image_counter", "run.steps": 12, "run.report_every": 5,
      "run.eval_every": 10, "run.eval_episodes": 2, "run.log_every": 10,
      "run.console_every": 1000.0, "run.save_every_minutes": 1000.0})
  run.train(config, tmp_path, console=False)
  videos = sorted(p.name for p in (tmp_path / "videos").iterdir())
  suffix = videos[0].rsplit(".", 1)[1]
  assert videos == [f"eval-10.{suffix}", f"openloop-10.{suffix}"]  # step 5: replay too short
  evals = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "eval/score" in r]
  assert [(r["step"], r["eval/length"]) for r in evals] == [(10, 20)]
  # With tensorboardX installed the run writes event files (run.tensorboard is on by
  # default): asked by the package, not by the folder, so a run that stops writing them fails.
  if importlib.util.find_spec("tensorboardX") is not None:
    from test_logging import read_events
    tags = {v.tag for e in read_events(tmp_path / "tb") for v in e.summary.value}
    assert {"openloop", "eval", "eval/score", "fps/env"} <= tags
  # `wmrl eval --video`: a line per episode, then what is written (16x16 frames shrunk to 8x8).
  capsys.readouterr()
  gif = tmp_path / "eval.gif"
  assert cli.main(["eval", "--logdir", str(tmp_path), "--episodes", "2", "--video", str(gif),
                   "--video-side", "8"]) == 0
  err = capsys.readouterr().err
  assert "episode 1/2: score" in err and "episode 2/2: score" in err
  assert f"writing 42 frames of 8x8 to {gif}" in err
  assert imageio.v3.imread(gif, index=None).shape == (42, 8, 8, 3)
