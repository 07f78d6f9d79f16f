"""BiGAN networks (Donahue, Kraehenbuehl & Darrell, 2017, section 4 and appendix C).

Permutation-invariant MLPs (appendix C.1): G, E and D each have two hidden layers of ``hidden`` units (1024 in
the paper). The first hidden layer is followed by the non-linearity; the second by parameter-free batchnorm
(no scale, no bias) and the non-linearity; then a linear prediction layer. LeakyReLU(0.2) in D and E, ReLU in
G. Images are flat vectors: E and D flatten their input, G reshapes its (tanh) output.

Convolutional networks (appendix C.2): G is the DCGAN generator (``dcgan_jax.models.Generator``, reused as is);
the joint D is the DCGAN discriminator with z injected at every layer; E is AlexNet conv1-conv5
(:class:`AlexNetEncoder`) for inputs of 64 px and more, or a DCGAN-D mirror (:class:`ConvEncoder`) for small
images.

The joint discriminator D(x, z) (section 4): "at each linear layer thereafter, the latent representation z is
transformed using a learned linear transformation to the hidden layer dimension and added to the
non-linearity input". Here the z term is added after batchnorm (the non-linearity's input) and, for
convolutions, broadcast over space; the final logit gets its own linear z term. All weights are N(0, 0.02)
except D's weights that multiply z into a convolution, whose std is scaled by the kernel area (appendix C:
5x5 -> 0.5); z weights into dense layers (MLP D, the final logit) keep 0.02.

Every network sows its hidden activations (after the non-linearity) as ``'<layer>_act'`` (and the AlexNet
pools as ``'pool<i>'``) into the 'intermediates' collection, for feature extraction.
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from common import layers
from dcgan_jax.models import Discriminator, Generator, layer_widths  # noqa: F401  (re-exported: one G for both papers)

STD = 0.02
init_normal = nn.initializers.normal(STD)


def z_init(kernel_area: int = 1):
  """Init of D's weights that multiply z: N(0, 0.02 * kernel area) (appendix C; 5x5 conv -> 0.5)."""
  return nn.initializers.normal(STD * kernel_area)


def _dtype(dtype):
  return None if dtype in (None, 'float32') else jnp.dtype(dtype)


def _bn(train: bool, axis_name: Optional[str], name: str, scale_bias: bool = True, dtype=None):
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=axis_name,
                      use_scale=scale_bias, use_bias=scale_bias, dtype=dtype, name=name)


def flatten(x):
  return x.reshape(x.shape[0], -1)


# ---------------------------------------------------------------------------------------------------------
# Permutation-invariant MLPs (appendix C.1)
# ---------------------------------------------------------------------------------------------------------


class MLPGenerator(nn.Module):
  """G: z -> fc1 -> ReLU -> fc2 -> parameter-free BN -> ReLU -> linear -> tanh, reshaped to R x R x C."""
  resolution: int = 28
  channels: int = 1
  hidden: int = 1024
  axis_name: Optional[str] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, z, *, train: bool = True):
    dt = _dtype(self.dtype)
    h = nn.relu(nn.Dense(self.hidden, kernel_init=init_normal, dtype=dt, name='fc1')(z))
    self.sow('intermediates', 'fc1_act', h)
    h = nn.Dense(self.hidden, use_bias=False, kernel_init=init_normal, dtype=dt, name='fc2')(h)
    h = nn.relu(_bn(train, self.axis_name, 'bn2', scale_bias=False, dtype=dt)(h))
    self.sow('intermediates', 'fc2_act', h)
    x = nn.Dense(self.resolution * self.resolution * self.channels, kernel_init=init_normal, dtype=dt,
                 name='out')(h)
    return jnp.tanh(x).astype(jnp.float32).reshape(z.shape[0], self.resolution, self.resolution, self.channels)


class MLPEncoder(nn.Module):
  """E: flat x -> fc1 -> LReLU -> fc2 -> parameter-free BN -> LReLU -> linear -> z (or z logits)."""
  z_dim: int = 50
  hidden: int = 1024
  axis_name: Optional[str] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool = True):
    dt = _dtype(self.dtype)
    h = nn.leaky_relu(nn.Dense(self.hidden, kernel_init=init_normal, dtype=dt, name='fc1')(flatten(x)), 0.2)
    self.sow('intermediates', 'fc1_act', h)
    h = nn.Dense(self.hidden, use_bias=False, kernel_init=init_normal, dtype=dt, name='fc2')(h)
    h = nn.leaky_relu(_bn(train, self.axis_name, 'bn2', scale_bias=False, dtype=dt)(h), 0.2)
    self.sow('intermediates', 'fc2_act', h)
    return nn.Dense(self.z_dim, kernel_init=init_normal, dtype=dt, name='out')(h).astype(jnp.float32)


class MLPDiscriminator(nn.Module):
  """D(x, z) (``joint``) or D(x): the MLP of appendix C.1 with z added to every non-linearity input.

  Pre-activations: a1 = fc1(x) [+ fc1_z(z)]; a2 = BN(fc2(h1)) [+ fc2_z(z)]; logit = logit(h2) [+ logit_z(z)].
  """
  hidden: int = 1024
  joint: bool = True
  axis_name: Optional[str] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x, z=None, *, train: bool = True):
    dt = _dtype(self.dtype)

    def zterm(width, name):
      if not self.joint:
        return 0.0
      return nn.Dense(width, use_bias=False, kernel_init=z_init(1), dtype=dt, name=name)(z)

    h = nn.Dense(self.hidden, kernel_init=init_normal, dtype=dt, name='fc1')(flatten(x))
    h = nn.leaky_relu(h + zterm(self.hidden, 'fc1_z'), 0.2)
    self.sow('intermediates', 'fc1_act', h)
    h = nn.Dense(self.hidden, use_bias=False, kernel_init=init_normal, dtype=dt, name='fc2')(h)
    h = _bn(train, self.axis_name, 'bn2', scale_bias=False, dtype=dt)(h)
    h = nn.leaky_relu(h + zterm(self.hidden, 'fc2_z'), 0.2)
    self.sow('intermediates', 'fc2_act', h)
    logit = nn.Dense(1, kernel_init=init_normal, dtype=dt, name='logit')(h) + zterm(1, 'logit_z')
    return logit[:, 0].astype(jnp.float32)


# ---------------------------------------------------------------------------------------------------------
# Convolutional networks (appendix C.2)
# ---------------------------------------------------------------------------------------------------------


class JointDiscriminator(nn.Module):
  """D(x, z): DCGAN's discriminator (stride-2 5x5 convs, BN except on the input layer, LReLU(0.2)) with z
  mapped linearly to each layer's channels, broadcast over space and added before the non-linearity, and a
  linear z term on the final logit. Same layer names as ``dcgan_jax.models.Discriminator`` plus ``*_z``."""
  resolution: int = 64
  width: int = 128
  kernel_size: int = 5
  bn_scale_bias: bool = True
  axis_name: Optional[str] = None
  dtype: Any = None
  downsample_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, z, *, train: bool = True):
    dt = _dtype(self.dtype)
    if x.shape[1] != self.resolution or x.shape[2] != self.resolution:
      raise ValueError(f'D expects {self.resolution}x{self.resolution} images, got {x.shape[1]}x{x.shape[2]}')
    k = self.kernel_size
    h = x
    for i, c in enumerate(layer_widths(self.resolution, self.width)[::-1], start=1):
      h = layers.Conv2x(c, k, use_bias=i == 1, kernel_init=init_normal, dtype=dt, impl=self.downsample_impl,
                        name=f'conv{i}')(h)
      if i > 1:
        h = _bn(train, self.axis_name, f'bn{i}', self.bn_scale_bias, dt)(h)
      zc = nn.Dense(c, use_bias=False, kernel_init=z_init(k * k), dtype=dt, name=f'conv{i}_z')(z)
      h = nn.leaky_relu(h + zc[:, None, None, :], 0.2)
      self.sow('intermediates', f'conv{i}_act', h)
    logit = nn.Dense(1, kernel_init=init_normal, dtype=dt, name='logit')(flatten(h))
    logit = logit + nn.Dense(1, use_bias=False, kernel_init=z_init(1), dtype=dt, name='logit_z')(z)
    return logit[:, 0].astype(jnp.float32)


class ConvEncoder(nn.Module):
  """E for small images: the DCGAN discriminator without z (stride-2 5x5 convs, BN except on the input layer,
  LReLU(0.2)), its last feature map flattened into a linear layer to z."""
  resolution: int = 32
  width: int = 128
  kernel_size: int = 5
  z_dim: int = 200
  bn_scale_bias: bool = True
  axis_name: Optional[str] = None
  dtype: Any = None
  downsample_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, *, train: bool = True):
    dt = _dtype(self.dtype)
    h = x
    for i, c in enumerate(layer_widths(self.resolution, self.width)[::-1], start=1):
      h = layers.Conv2x(c, self.kernel_size, use_bias=i == 1, kernel_init=init_normal, dtype=dt,
                        impl=self.downsample_impl, name=f'conv{i}')(h)
      if i > 1:
        h = _bn(train, self.axis_name, f'bn{i}', self.bn_scale_bias, dt)(h)
      h = nn.leaky_relu(h, 0.2)
      self.sow('intermediates', f'conv{i}_act', h)
    return nn.Dense(self.z_dim, kernel_init=init_normal, dtype=dt, name='out')(flatten(h)).astype(jnp.float32)


# AlexNet conv1-conv5 (Krizhevsky et al., 2012): (name, kernel, stride, channels, groups, max-pool after).
ALEXNET = (('conv1', 11, 4, 96, 1, True),
           ('conv2', 5, 1, 256, 2, True),
           ('conv3', 3, 1, 384, 1, False),
           ('conv4', 3, 1, 384, 2, False),
           ('conv5', 3, 1, 256, 2, True))


class AlexNetEncoder(nn.Module):
  """E of the ImageNet experiments: AlexNet through conv5 without LRN, each conv followed by batchnorm (with
  scale and bias) and LReLU(0.2); 3x3 stride-2 max pools after conv1, conv2 and conv5; then one linear layer
  from the flattened pool5 to z.

  Choices where the paper is silent: 'SAME' padding everywhere (conv1 and the pools included), so a 64x64
  input gives 16 -> 8 -> 8 -> 4 -> 4 -> pool5 2x2x256 and 112x112 gives 28 -> 14 -> 14 -> 7 -> 7 -> pool5
  4x4x256; AlexNet's two filter groups in conv2, conv4 and conv5 (``groups``, 1 for none); convs have no
  bias (batchnorm's shift replaces it); no fc6/fc7: pool5 maps straight to z.
  """
  z_dim: int = 200
  groups: int = 2
  channel_scale: float = 1.0    # < 1 for tiny test networks
  conv_impl: str = 'auto'       # layers.grouped_conv / max_pool: CPU-fast forms of the same function, or 'xla'
  axis_name: Optional[str] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool = True):
    dt = _dtype(self.dtype)
    h = x
    for i, (name, k, s, c, g, pool) in enumerate(ALEXNET, start=1):
      c = max(int(c * self.channel_scale) // 2 * 2, 2)
      h = layers.GroupedConv(c, k, strides=s, groups=g if self.groups > 1 else 1, kernel_init=init_normal,
                             dtype=dt, impl=self.conv_impl, name=name)(h)
      h = nn.leaky_relu(_bn(train, self.axis_name, f'bn{i}', True, dt)(h), 0.2)
      self.sow('intermediates', f'{name}_act', h)
      if pool:
        h = layers.max_pool(h, 3, 2, impl=self.conv_impl)
        self.sow('intermediates', f'pool{i}', h)
    return nn.Dense(self.z_dim, kernel_init=init_normal, dtype=dt, name='out')(flatten(h)).astype(jnp.float32)
