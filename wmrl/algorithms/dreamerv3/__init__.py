"""DreamerV3 (Hafner et al.; the reference implementation danijar/dreamerv3 at
its 2024 version), registered as the algorithm `dreamerv3`.

| module | one job |
| --- | --- |
| config.py | its settings (`model`, `behavior`, `optim`, `loss_scales`), the reference's defaults |
| agent.py | the algorithm contract: state, `init`, `policy_step`, `train_step` (four stages), `report` |
| world_model.py | encoder, decoder, reward and continue heads around a sequence model (wmrl/dynamics), and their losses |
| behavior.py | imagination, lambda-returns, return normalisation, actor and critic losses |
| report.py | the open-loop video: what the world model predicts from replayed actions |
"""
