"""DreamerV3's report: the open-loop video.

Open loop (the reference's `report`): the world model watches the first
`context` steps of replayed sequences through its posterior, then imagines
the rest from the replayed actions alone, and decodes both. Put beside the
real frames and their difference, this shows how far ahead the model
predicts its environment: the world-model loss alone cannot.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

OPENLOOP_CONTEXT = 5  # steps observed before imagining


def open_loop(wm, data: dict, prev_actions, images: list[str], key,
              context: int = OPENLOOP_CONTEXT, horizon: int | None = None,
              start=None) -> jax.Array:
  """Real | predicted | error frames of replayed sequences.

  `data` holds T replayed steps [B, T, ...] and `prev_actions` the action
  before each; `wm` is a world model (an encoder, a dynamics model and a
  decoder). The model observes the first `context` of the T steps and
  imagines the next `horizon` (default: the rest) from the replayed actions;
  `start` is the dynamics carry [B] before the first step (default: the
  initial carry).
  Returns uint8 [B, context + horizon, K * H, 3 * W, 3]: for each of the K
  `images` keys (top to bottom) the real frame, the decoded prediction
  (posterior reconstruction over the context, prior imagination after it)
  and |real - prediction|, left to right.
  """
  if not images:
    raise ValueError("open_loop needs an image observation; this model has only vectors (skip "
                     "the report for them, as the driver does)")
  horizon = _horizon(context, horizon, data["is_first"].shape[1])
  obs_key, img_key = jax.random.split(key)
  seen = jax.tree.map(lambda x: x[:, :context], data)
  dynamics = wm.dynamics
  if start is None:
    start = dynamics.initial(seen["is_first"].shape[:1])
  last, post, _, _ = dynamics.observe(start, prev_actions[:, :context], wm.encoder(seen),
                                      seen["is_first"], obs_key)
  # Episode starts inside the imagined part are ignored, as in the reference:
  # the real frames jump there while the prediction carries on.
  imagined, _ = dynamics.imagine(last, prev_actions[:, context:context + horizon], None, img_key)
  latents = jax.tree.map(lambda a, b: jnp.concatenate([a, b], 1), post, imagined)
  pred = wm.decoder(dynamics.features(latents))
  rows = [_side_by_side(data[k][:, :context + horizon], pred[k]) for k in images]
  return jnp.concatenate(rows, -3)


def _horizon(context: int, horizon: int | None, length: int) -> int:
  if not 1 <= context < length:
    raise ValueError(f"open_loop context={context} must be at least 1 and less than the {length} "
                     "steps of the sequences (after the replay context), to leave steps to "
                     "imagine; lower context or sample longer sequences")
  rest = length - context
  if horizon is None:
    return rest
  if not 1 <= horizon <= rest:
    raise ValueError(f"open_loop horizon={horizon} must be in [1, {rest}]: the sequences hold "
                     f"{length} steps, {context} of them observed; lower horizon or context")
  return horizon


def _side_by_side(real, pred):
  """uint8 real [..., H, W, C] and predicted [0, 1] frames -> [..., H, 3W, 3]."""
  pred = jnp.clip(pred, 0.0, 1.0)
  error = jnp.abs(real.astype(jnp.float32) / 255.0 - pred)
  to_uint8 = lambda x: jnp.round(x * 255.0).astype(jnp.uint8)
  return _rgb(jnp.concatenate([real, to_uint8(pred), to_uint8(error)], -2))


def _rgb(frames):
  # RGB(A) keeps its colours; other channel counts show their first channel in grey.
  return frames[..., :3] if frames.shape[-1] >= 3 else jnp.repeat(frames[..., :1], 3, -1)
