"""Model names -> model objects. A model plugs into ``common.loop`` through this duck-typed interface:

- ``init(key) -> TrainState``                        fresh state (params, batch stats, optimizer states, step, key)
- ``train_step(state, batch) -> (state, metrics)``   per-device body; collectives over ``parallel.AXIS``
- ``sample(state, key, n) -> images``                n images in [-1, 1], jitted
- ``data_options() -> dict``                         ``data.Batches`` keywords: resolution, load_size, crop, flip
- ``z_dim``, ``resolution``                          latent size and the image size G makes

Imports are lazy so that ``launch/*.py --help`` stays fast.
"""
from __future__ import annotations

from common.config import Config

MODELS = ('dcgan', 'cdcgan', 'mlp_gan', 'bigan', 'latent_regressor', 'joint_latent_regressor', 'autoencoder')


def build_model(config: Config, channels: int, num_classes: int | None):
  """The model named by ``config.model`` for data with ``channels`` channels and ``num_classes`` labels."""
  name = config.model
  if name in ('dcgan', 'cdcgan'):
    from dcgan_jax.train import DCGAN
    if name == 'cdcgan' and not num_classes:
      raise ValueError(f'--model=cdcgan needs a labelled dataset; {config.dataset} has no labels')
    return DCGAN(config, channels=channels, num_classes=num_classes if name == 'cdcgan' else 0)
  if name == 'mlp_gan':
    from dcgan_jax.mlp_gan import MLPGAN
    if not num_classes:
      raise ValueError(f'--model=mlp_gan needs a labelled dataset; {config.dataset} has no labels')
    return MLPGAN(config, channels=channels, num_classes=num_classes)
  if name in ('bigan', 'latent_regressor', 'joint_latent_regressor', 'autoencoder'):
    from bigan_jax.train import build
    return build(config, channels=channels, num_classes=num_classes)
  raise ValueError(f'unknown model {name!r}: choose one of {", ".join(MODELS)}')


def data_options(model, config: Config) -> dict:
  """Preprocessing for ``data.Batches`` as the model asks for it (resolution, crop, flip, load size)."""
  return model.data_options()
