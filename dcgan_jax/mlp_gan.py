"""``--model=mlp_gan``: the permutation-invariant conditional GAN baseline of the DCGAN paper's Table 3
(supplementary 8.1, "a permutation invariant GAN baseline", nearest-neighbour test on conditional samples).

G and D are the permutation-invariant MLPs of ``common.networks`` (``MLPGenerator`` and
``MLPDiscriminator(joint=False)``: two hidden layers of ``--hidden`` units, the second with parameter-free
batchnorm, which the DCGAN paper found better "for both models"), conditioned by concatenating the label's
one-hot code to z and to the flattened image. Training, sampling and evaluation are DCGAN's (same loss,
step and optimiser): only the networks differ.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from common.config import Config
from common.model import DataFacts
from common.networks import MLPDiscriminator, MLPGenerator, flatten
from dcgan_jax.dcgan import DCGAN

RESOLUTION = 28   # MNIST


class ConditionalMLPGenerator(nn.Module):
  """G(z, y): ``MLPGenerator`` on [z, one_hot(y)]."""
  resolution: int = RESOLUTION
  channels: int = 1
  hidden: int = 1024
  num_classes: int = 10
  axis_name: Optional[str] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, z, y=None, *, train: bool = True, drop=None):
    if drop is not None:
      raise ValueError('--model=mlp_gan has no feature maps to drop: use a conv model (dcgan, cdcgan)')
    h = jnp.concatenate([z, jax.nn.one_hot(y, self.num_classes, dtype=z.dtype)], axis=-1)
    return MLPGenerator(resolution=self.resolution, channels=self.channels, hidden=self.hidden,
                        axis_name=self.axis_name, dtype=self.dtype, name='mlp')(h, train=train)


class ConditionalMLPDiscriminator(nn.Module):
  """D(x, y): ``MLPDiscriminator(joint=False)`` on [flatten(x), one_hot(y)]."""
  hidden: int = 1024
  num_classes: int = 10
  axis_name: Optional[str] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x, y=None, *, train: bool = True):
    h = jnp.concatenate([flatten(x), jax.nn.one_hot(y, self.num_classes, dtype=x.dtype)], axis=-1)
    return MLPDiscriminator(hidden=self.hidden, joint=False, axis_name=self.axis_name, dtype=self.dtype,
                            name='mlp')(h, train=train)


@dataclasses.dataclass(frozen=True)
class MLPGAN(DCGAN):
  """DCGAN's training and sampling with the conditional permutation-invariant MLPs."""

  @classmethod
  def create(cls, config: Config, facts: DataFacts) -> 'MLPGAN':
    if not facts.num_classes:
      raise ValueError(f'--model={config.model.name} needs a labelled dataset; {config.data.dataset} has no labels')
    return cls(cls.resolve(config, conditional=True, resolution=RESOLUTION, default_variant='paper'),
               channels=facts.channels, num_classes=facts.num_classes)

  @classmethod
  def check(cls, config: Config) -> None:
    """The MLPs take any image size."""

  def networks(self, axis_name: Optional[str] = None) -> dict:
    m = self.config.model
    return {'G': ConditionalMLPGenerator(resolution=self.resolution, channels=self.channels,
                                         hidden=self.config.model.hidden, num_classes=self.num_classes,
                                         axis_name=axis_name, dtype=m.dtype),
            'D': ConditionalMLPDiscriminator(hidden=self.config.model.hidden, num_classes=self.num_classes,
                                             axis_name=axis_name, dtype=m.dtype)}

  def feature_layers(self, net: Optional[str] = None) -> tuple:
    return ('mlp/fc1_act', 'mlp/fc2_act')
