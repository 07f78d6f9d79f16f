"""BiGAN's encoders (Donahue, Kraehenbuehl & Darrell, 2017, appendix C). G and the joint D(x, z) are in
``common.networks`` (DCGAN's G and D trunk; the permutation-invariant MLPs), shared with the DCGAN paper's models.

- :class:`MLPEncoder`: the permutation-invariant E of appendix C.1 (two hidden layers, parameter-free batchnorm
  on the second, LeakyReLU(0.2)).
- :class:`AlexNetEncoder`: the ImageNet E of appendix C.2, AlexNet through conv5 with batchnorm, for inputs of
  64 px and more (generalised BiGAN: 112 px).
- :class:`ConvEncoder`: a DCGAN-D mirror for small images (this project's choice; the paper has none).

Each returns E's linear output; the model maps it into the prior's support (2 sigmoid - 1) before D sees it, as
the authors' code does. Every encoder sows its hidden activations (after the non-linearity) as
``'<layer>_act'`` (and the AlexNet pools as ``'pool<i>'``) into 'intermediates', for feature extraction.
"""
from __future__ import annotations

from typing import Any, Optional

import jax.numpy as jnp
from flax import linen as nn

from common import layers
from common.networks import BNSpec, batch_norm, compute_dtype, conv_trunk, flatten, init_normal


class MLPEncoder(nn.Module):
  """E: flat x -> fc1 -> LReLU -> fc2 -> parameter-free BN -> LReLU -> out: E's linear output (the model maps it
  into the prior's support, 2 sigmoid - 1, before D sees it, as the authors' code does)."""
  z_dim: int = 50
  hidden: int = 1024
  bias: bool = True
  bn: BNSpec = BNSpec()
  axis_name: Optional[str] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool = True):
    dt = compute_dtype(self.dtype)
    h = nn.Dense(self.hidden, use_bias=self.bias, kernel_init=init_normal, dtype=dt, name='fc1')(flatten(x))
    h = nn.leaky_relu(h, 0.2)
    self.sow('intermediates', 'fc1_act', h)
    h = nn.Dense(self.hidden, use_bias=False, kernel_init=init_normal, dtype=dt, name='fc2')(h)
    h = nn.leaky_relu(batch_norm(train, self.axis_name, 'bn2', scale_bias=False, dtype=dt, spec=self.bn)(h), 0.2)
    self.sow('intermediates', 'fc2_act', h)
    return nn.Dense(self.z_dim, use_bias=self.bias, kernel_init=init_normal, dtype=dt,
                    name='out')(h).astype(jnp.float32)


class ConvEncoder(nn.Module):
  """E for small images: the DCGAN discriminator without z (stride-2 5x5 convs, BN except on the input layer,
  LReLU(0.2)), its last feature map flattened into a linear layer to z. ``bias``: conv1's and the output
  layer's biases (the authors' layers have none)."""
  resolution: int = 32
  width: int = 128
  kernel_size: int = 5
  z_dim: int = 200
  bn_scale_bias: bool = True
  bias: bool = True
  bn: BNSpec = BNSpec()
  axis_name: Optional[str] = None
  dtype: Any = None
  downsample_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, *, train: bool = True):
    dt = compute_dtype(self.dtype)
    h = conv_trunk(self, x, resolution=self.resolution, width=self.width, kernel_size=self.kernel_size,
                   bias=self.bias, bn_scale_bias=self.bn_scale_bias, train=train, dtype=dt, impl=self.downsample_impl,
                   bn=self.bn)
    return nn.Dense(self.z_dim, use_bias=self.bias, kernel_init=init_normal, dtype=dt,
                    name='out')(flatten(h)).astype(jnp.float32)


# AlexNet conv1-conv5 (Krizhevsky et al., 2012): (name, kernel, stride, channels, groups, max-pool after).
ALEXNET = (('conv1', 11, 4, 96, 1, True),
           ('conv2', 5, 1, 256, 2, True),
           ('conv3', 3, 1, 384, 1, False),
           ('conv4', 3, 1, 384, 2, False),
           ('conv5', 3, 1, 256, 2, True))


class AlexNetEncoder(nn.Module):
  """E of the ImageNet experiments: AlexNet through conv5 without LRN, each conv followed by batchnorm (with
  scale and bias) and LReLU(0.2); 3x3 stride-2 max pools after conv1 and conv2 (and conv5 with ``pool5``); then
  one linear layer from the flattened last map to z.

  Choices where the paper is silent, as the authors' ``alexnet_group_padpool``: 'SAME' padding everywhere
  (conv1 and the pools included), so a 64x64 input gives 16 -> 8 -> 8 -> 4 -> 4 (conv5 4x4x256 = 4096 features)
  and 112x112 gives 28 -> 14 -> 14 -> 7 -> 7; no pool5 (``pool5=True``: a third pool, 2x2x256 at 64 px);
  AlexNet's two filter groups in conv2, conv4 and conv5 (``groups``, 1 for none); convs have no bias; no
  fc6/fc7: conv5 maps straight to z (``out``, with a bias when ``bias``). Where the paper speaks, it wins:
  batchnorm after conv1 too (the authors' conv1 has none).
  """
  z_dim: int = 200
  pool5: bool = False
  bias: bool = True
  bn: BNSpec = BNSpec()
  groups: int = 2
  channel_scale: float = 1.0    # < 1 for tiny test networks
  conv_impl: str = 'auto'       # layers.grouped_conv / max_pool: CPU-fast forms of the same function, or 'xla'
  axis_name: Optional[str] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool = True):
    dt = compute_dtype(self.dtype)
    h = x
    for i, (name, k, s, c, g, pool) in enumerate(ALEXNET, start=1):
      c = max(int(c * self.channel_scale) // 2 * 2, 2)
      h = layers.GroupedConv(c, k, strides=s, groups=g if self.groups > 1 else 1, kernel_init=init_normal,
                             dtype=dt, impl=self.conv_impl, name=name)(h)
      h = nn.leaky_relu(batch_norm(train, self.axis_name, f'bn{i}', True, dt, self.bn)(h), 0.2)
      self.sow('intermediates', f'{name}_act', h)
      if pool and (i < 5 or self.pool5):
        h = layers.max_pool(h, 3, 2, impl=self.conv_impl)
        self.sow('intermediates', f'pool{i}', h)
    return nn.Dense(self.z_dim, use_bias=self.bias, kernel_init=init_normal, dtype=dt,
                    name='out')(flatten(h)).astype(jnp.float32)
