"""BiGAN networks (Donahue, Kraehenbuehl & Darrell, 2017, section 4 and appendix C).

Permutation-invariant MLPs (appendix C.1): G, E and D each have two hidden layers of ``hidden`` units (1024 in
the paper). The first hidden layer is followed by the non-linearity; the second by parameter-free batchnorm
(no scale, no bias) and the non-linearity; then a linear prediction layer. LeakyReLU(0.2) in D and E, ReLU in
G. Images are flat vectors: E and D flatten their input, G reshapes its output.

Convolutional networks (appendix C.2): G is the DCGAN generator (``dcgan_jax.models.Generator``, with z
re-entering its hidden layers as in the authors' code); the joint D is the DCGAN discriminator with z injected;
E is AlexNet conv1-conv5 (:class:`AlexNetEncoder`) for inputs of 64 px and more, or a DCGAN-D mirror
(:class:`ConvEncoder`) for small images.

The joint discriminator D(x, z) (section 4): "takes data x as its initial input, and at each linear layer
thereafter, the latent representation z is transformed using a learned linear transformation to the hidden
layer dimension and added to the non-linearity input". As in the authors' code (``net.py`` ``apply_cond``), the
z term enters every hidden layer after the first, bias-free, added to the layer's linear output before batchnorm,
broadcast over space for convolutions; the logit does not see z. All weights are N(0, 0.02) except D's weights
that multiply z into a convolution, whose std is scaled by the kernel area (appendix C: 5x5 -> 0.5); z weights
into dense layers keep 0.02. Every departure from the paper or the authors' code is an option of the modules
(``z_into``, ``bias``, ``logit_init``, ``first_bn``, ``z_hidden``, ``pool5``) and a flag (docs/fidelity.md).

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

Z_INTO_D = ('after_first', 'every_layer')


class MLPGenerator(nn.Module):
  """G: z -> fc1 -> [BN] -> ReLU -> fc2 [+ z_fc2(z)] -> parameter-free BN -> ReLU -> out -> tanh or sigmoid.

  ``first_bn``: parameter-free BN after fc1 too (authors' code; the paper puts BN on the second layer only).
  ``z_hidden``: z re-enters the second hidden layer through a bias-free linear map added before BN
  (authors' ``deconvnet_mnist_mlp``; not in the paper). ``bias``: biases on the layers not followed by BN
  (the authors' layers have none). ``output``: 'tanh' (images in [-1, 1]) or 'sigmoid' ([0, 1], the
  authors' MNIST range).
  """
  resolution: int = 28
  channels: int = 1
  hidden: int = 1024
  bias: bool = True
  first_bn: bool = False
  z_hidden: bool = False
  output: str = 'tanh'
  axis_name: Optional[str] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, z, *, train: bool = True):
    dt = _dtype(self.dtype)
    h = nn.Dense(self.hidden, use_bias=self.bias and not self.first_bn, kernel_init=init_normal, dtype=dt,
                 name='fc1')(z)
    if self.first_bn:
      h = _bn(train, self.axis_name, 'bn1', scale_bias=False, dtype=dt)(h)
    h = nn.relu(h)
    self.sow('intermediates', 'fc1_act', h)
    h = nn.Dense(self.hidden, use_bias=False, kernel_init=init_normal, dtype=dt, name='fc2')(h)
    if self.z_hidden:
      h = h + nn.Dense(self.hidden, use_bias=False, kernel_init=z_init(1), dtype=dt, name='fc2_z')(z)
    h = nn.relu(_bn(train, self.axis_name, 'bn2', scale_bias=False, dtype=dt)(h))
    self.sow('intermediates', 'fc2_act', h)
    x = nn.Dense(self.resolution * self.resolution * self.channels, use_bias=self.bias, kernel_init=init_normal,
                 dtype=dt, name='out')(h)
    x = jax.nn.sigmoid(x) if self.output == 'sigmoid' else jnp.tanh(x)
    return x.astype(jnp.float32).reshape(z.shape[0], self.resolution, self.resolution, self.channels)


class MLPEncoder(nn.Module):
  """E: flat x -> fc1 -> LReLU -> fc2 -> parameter-free BN -> LReLU -> out: E's linear output (the model maps it
  into the prior's support, 2 sigmoid - 1, before D sees it, as the authors' code does)."""
  z_dim: int = 50
  hidden: int = 1024
  bias: bool = True
  axis_name: Optional[str] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool = True):
    dt = _dtype(self.dtype)
    h = nn.Dense(self.hidden, use_bias=self.bias, kernel_init=init_normal, dtype=dt, name='fc1')(flatten(x))
    h = nn.leaky_relu(h, 0.2)
    self.sow('intermediates', 'fc1_act', h)
    h = nn.Dense(self.hidden, use_bias=False, kernel_init=init_normal, dtype=dt, name='fc2')(h)
    h = nn.leaky_relu(_bn(train, self.axis_name, 'bn2', scale_bias=False, dtype=dt)(h), 0.2)
    self.sow('intermediates', 'fc2_act', h)
    return nn.Dense(self.z_dim, use_bias=self.bias, kernel_init=init_normal, dtype=dt,
                    name='out')(h).astype(jnp.float32)


class MLPDiscriminator(nn.Module):
  """D(x, z) (``joint``) or D(x): the MLP of appendix C.1, z mapped linearly (no bias) into the hidden layers.

  ``z_into='after_first'`` (default; the authors' ``mnist_mlp`` with ``apply_cond``; the paper's "at each linear
  layer thereafter"): a1 = fc1(x); a2 = BN(fc2(h1) + fc2_z(z)); logit = logit(h2). ``'every_layer'`` (this
  project before it followed the authors' code): a1 = fc1(x) + fc1_z(z); a2 = BN(fc2(h1)) + fc2_z(z);
  logit = logit(h2) + logit_z(z). ``logit_init``: 'normal' (N(0, 0.02), the paper's rule for every weight) or
  'zero' (the authors' ``LinearPredictor(stddev=0)``).
  """
  hidden: int = 1024
  joint: bool = True
  z_into: str = 'after_first'
  bias: bool = True
  logit_init: str = 'normal'
  axis_name: Optional[str] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x, z=None, *, train: bool = True):
    dt = _dtype(self.dtype)
    if self.z_into not in Z_INTO_D:
      raise ValueError(f'unknown z_into={self.z_into!r}: use one of {Z_INTO_D}')
    every = self.joint and self.z_into == 'every_layer'

    def zterm(width, name):
      return nn.Dense(width, use_bias=False, kernel_init=z_init(1), dtype=dt, name=name)(z)

    h = nn.Dense(self.hidden, use_bias=self.bias, kernel_init=init_normal, dtype=dt, name='fc1')(flatten(x))
    if every:
      h = h + zterm(self.hidden, 'fc1_z')
    h = nn.leaky_relu(h, 0.2)
    self.sow('intermediates', 'fc1_act', h)
    h = nn.Dense(self.hidden, use_bias=False, kernel_init=init_normal, dtype=dt, name='fc2')(h)
    if self.joint and not every:
      h = h + zterm(self.hidden, 'fc2_z')
    h = _bn(train, self.axis_name, 'bn2', scale_bias=False, dtype=dt)(h)
    if every:
      h = h + zterm(self.hidden, 'fc2_z')
    h = nn.leaky_relu(h, 0.2)
    self.sow('intermediates', 'fc2_act', h)
    logit = nn.Dense(1, use_bias=self.bias, kernel_init=_logit_init(self.logit_init), dtype=dt, name='logit')(h)
    if every:
      logit = logit + zterm(1, 'logit_z')
    return logit[:, 0].astype(jnp.float32)


def _logit_init(kind: str):
  if kind == 'normal':
    return init_normal
  if kind == 'zero':
    return nn.initializers.zeros
  raise ValueError(f'unknown logit_init={kind!r}: use normal or zero')


# ---------------------------------------------------------------------------------------------------------
# Convolutional networks (appendix C.2)
# ---------------------------------------------------------------------------------------------------------


class JointDiscriminator(nn.Module):
  """D(x, z): DCGAN's discriminator (stride-2 convs, BN except on the input layer, LReLU(0.2)) with z mapped
  linearly (no bias) to a layer's channels and broadcast over space.

  ``z_into='after_first'`` (default; the authors' ``convnet_64`` with ``apply_cond``; the paper's "at each linear
  layer thereafter"): z is added to the conv output of every layer after the first, before BN; the logit sees
  only the flattened last layer. ``'every_layer'`` (this project before): z added after BN at every layer,
  conv1 included, and a linear z term on the logit. z weights into convolutions start at N(0, 0.02 * k * k)
  (appendix C: 5x5 -> 0.5), into dense layers at 0.02. ``bias``: conv1's bias and the logit's (the authors'
  layers have none); ``logit_init`` as for :class:`MLPDiscriminator`. Same layer names as
  ``dcgan_jax.models.Discriminator`` plus ``*_z``.
  """
  resolution: int = 64
  width: int = 128
  kernel_size: int = 5
  bn_scale_bias: bool = True
  z_into: str = 'after_first'
  bias: bool = True
  logit_init: str = 'normal'
  axis_name: Optional[str] = None
  dtype: Any = None
  downsample_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, z, *, train: bool = True):
    dt = _dtype(self.dtype)
    if x.shape[1] != self.resolution or x.shape[2] != self.resolution:
      raise ValueError(f'D expects {self.resolution}x{self.resolution} images, got {x.shape[1]}x{x.shape[2]}')
    if self.z_into not in Z_INTO_D:
      raise ValueError(f'unknown z_into={self.z_into!r}: use one of {Z_INTO_D}')
    every = self.z_into == 'every_layer'
    k = self.kernel_size
    h = x
    for i, c in enumerate(layer_widths(self.resolution, self.width)[::-1], start=1):
      h = layers.Conv2x(c, k, use_bias=i == 1 and self.bias, kernel_init=init_normal, dtype=dt,
                        impl=self.downsample_impl, name=f'conv{i}')(h)
      zc = None
      if every or i > 1:
        zc = nn.Dense(c, use_bias=False, kernel_init=z_init(k * k), dtype=dt, name=f'conv{i}_z')(z)[:, None, None, :]
      if i > 1 and not every:
        h = h + zc
      if i > 1:
        h = _bn(train, self.axis_name, f'bn{i}', self.bn_scale_bias, dt)(h)
      if every:
        h = h + zc
      h = nn.leaky_relu(h, 0.2)
      self.sow('intermediates', f'conv{i}_act', h)
    logit = nn.Dense(1, use_bias=self.bias, kernel_init=_logit_init(self.logit_init), dtype=dt,
                     name='logit')(flatten(h))
    if every:
      logit = logit + nn.Dense(1, use_bias=False, kernel_init=z_init(1), dtype=dt, name='logit_z')(z)
    return logit[:, 0].astype(jnp.float32)


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
  axis_name: Optional[str] = None
  dtype: Any = None
  downsample_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, *, train: bool = True):
    dt = _dtype(self.dtype)
    h = x
    for i, c in enumerate(layer_widths(self.resolution, self.width)[::-1], start=1):
      h = layers.Conv2x(c, self.kernel_size, use_bias=i == 1 and self.bias, kernel_init=init_normal, dtype=dt,
                        impl=self.downsample_impl, name=f'conv{i}')(h)
      if i > 1:
        h = _bn(train, self.axis_name, f'bn{i}', self.bn_scale_bias, dt)(h)
      h = nn.leaky_relu(h, 0.2)
      self.sow('intermediates', f'conv{i}_act', h)
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
      if pool and (i < 5 or self.pool5):
        h = layers.max_pool(h, 3, 2, impl=self.conv_impl)
        self.sow('intermediates', f'pool{i}', h)
    return nn.Dense(self.z_dim, use_bias=self.bias, kernel_init=init_normal, dtype=dt,
                    name='out')(flatten(h)).astype(jnp.float32)
