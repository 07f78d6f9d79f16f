"""``--model=mlp_gan``: the permutation-invariant conditional GAN baseline of the DCGAN paper's Table 3
(supplementary 8.1, "a permutation invariant GAN baseline", nearest-neighbour test on conditional samples).

G and D are the BiGAN paper's permutation-invariant MLPs (``bigan_jax.models.MLPGenerator`` and
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

from bigan_jax.models import MLPDiscriminator, MLPGenerator, flatten
from dcgan_jax.train import DCGAN

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
      raise ValueError('mlp_gan has no feature maps to drop')
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

  @property
  def resolution(self) -> int:
    return self.config.resolution or RESOLUTION

  def networks(self, axis_name: Optional[str] = None):
    c = self.config
    return (ConditionalMLPGenerator(resolution=self.resolution, channels=self.channels, hidden=c.hidden,
                                    num_classes=self.num_classes, axis_name=axis_name, dtype=c.dtype),
            ConditionalMLPDiscriminator(hidden=c.hidden, num_classes=self.num_classes, axis_name=axis_name,
                                        dtype=c.dtype))
