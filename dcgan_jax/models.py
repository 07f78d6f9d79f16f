"""DCGAN networks that only the DCGAN paper uses (its section-3 G and D are ``common.networks``, shared with
BiGAN): the authors' conditional MNIST pair and the authors' 32x32 ImageNet pair (the D whose features the
paper's CIFAR-10 probe uses).

Both follow Newmu/dcgan_code (docs/fidelity.md): no biases (batchnorm's shift is the only one), 5x5 (MNIST) or
3x3 (ImageNet-32) kernels, LeakyReLU(0.2) in D, ReLU in G, N(0, 0.02) weights.
"""
from __future__ import annotations

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from common import layers
from common.networks import BNSpec, batch_norm, compute_dtype, flatten, init_normal, sow_act


def _maps(y, num_classes: int, like):
  """One-hot labels as constant feature maps the size of ``like`` (the authors' ``conv_cond_concat``)."""
  onehot = jax.nn.one_hot(y, num_classes, dtype=like.dtype)
  return jnp.broadcast_to(onehot[:, None, None, :], like.shape[:3] + (num_classes,))


class CondMNISTGenerator(nn.Module):
  """The authors' conditional MNIST G (``mnist/train_cond_dcgan.py``): y joins every layer's input, the fully
  connected ones included: [z, y] -> fc 1024 -> BN -> ReLU -> [h, y] -> fc 7*7*128 -> BN (per unit) -> ReLU
  -> 7x7x128 (+ y maps) -> deconv 5x5/2 -> 14x14x64 -> BN -> ReLU (+ y maps) -> deconv 5x5/2 -> 28x28 -> sigmoid
  (images in [0, 1]). Batchnorm without scale and bias; no biases."""
  channels: int = 1
  num_classes: int = 10
  hidden: int = 1024
  width: int = 64
  bn: BNSpec = BNSpec()
  axis_name: Optional[str] = None
  dtype: Any = None
  upsample_impl: str = 'auto'

  @nn.compact
  def __call__(self, z, y=None, *, train: bool = True, drop=None):
    dt = compute_dtype(self.dtype)
    onehot = jax.nn.one_hot(y, self.num_classes, dtype=z.dtype)

    def bn(name):
      return batch_norm(train, self.axis_name, name, False, dt, self.bn)

    record = functools.partial(sow_act, self, drop)

    h = nn.Dense(self.hidden, use_bias=False, kernel_init=init_normal, dtype=dt, name='fc1')(
        jnp.concatenate([z, onehot], -1))
    h = record('fc1', nn.relu(bn('bn1')(h)))
    h = nn.Dense(7 * 7 * 2 * self.width, use_bias=False, kernel_init=init_normal, dtype=dt, name='fc2')(
        jnp.concatenate([h, onehot], -1))
    h = nn.relu(bn('bn2')(h)).reshape(z.shape[0], 7, 7, 2 * self.width)
    h = record('fc2', h)
    h = layers.ConvTranspose2x(self.width, 5, use_bias=False, kernel_init=init_normal, dtype=dt,
                               impl=self.upsample_impl, name='conv1')(jnp.concatenate([h, _maps(y, self.num_classes, h)], -1))
    h = record('conv1', nn.relu(bn('bn3')(h)))
    x = layers.ConvTranspose2x(self.channels, 5, use_bias=False, kernel_init=init_normal, dtype=dt,
                               impl=self.upsample_impl, name='conv2')(jnp.concatenate([h, _maps(y, self.num_classes, h)], -1))
    return jax.nn.sigmoid(x).astype(jnp.float32)


class CondMNISTDiscriminator(nn.Module):
  """The authors' conditional MNIST D: [x, y maps] -> conv 5x5/2 64 -> LReLU -> (+ y maps) conv 5x5/2 128 -> BN
  -> LReLU -> flatten (+ y) -> fc 1024 -> BN -> LReLU -> (+ y) -> logit. Batchnorm without scale and bias; no
  biases; x in [0, 1]."""
  num_classes: int = 10
  hidden: int = 1024
  width: int = 64
  bn: BNSpec = BNSpec()
  axis_name: Optional[str] = None
  dtype: Any = None
  downsample_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, y=None, *, train: bool = True):
    dt = compute_dtype(self.dtype)
    onehot = jax.nn.one_hot(y, self.num_classes, dtype=x.dtype)

    def bn(name):
      return batch_norm(train, self.axis_name, name, False, dt, self.bn)

    h = layers.Conv2x(self.width, 5, use_bias=False, kernel_init=init_normal, dtype=dt, impl=self.downsample_impl,
                      name='conv1')(jnp.concatenate([x, _maps(y, self.num_classes, x)], -1))
    h = nn.leaky_relu(h, 0.2)
    self.sow('intermediates', 'conv1_act', h)
    h = layers.Conv2x(2 * self.width, 5, use_bias=False, kernel_init=init_normal, dtype=dt,
                      impl=self.downsample_impl, name='conv2')(jnp.concatenate([h, _maps(y, self.num_classes, h)], -1))
    h = nn.leaky_relu(bn('bn2')(h), 0.2)
    self.sow('intermediates', 'conv2_act', h)
    h = nn.Dense(self.hidden, use_bias=False, kernel_init=init_normal, dtype=dt, name='fc3')(
        jnp.concatenate([flatten(h), onehot], -1))
    h = nn.leaky_relu(bn('bn3')(h), 0.2)
    self.sow('intermediates', 'fc3_act', h)
    logit = nn.Dense(1, use_bias=False, kernel_init=init_normal, dtype=dt, name='logit')(
        jnp.concatenate([h, onehot], -1))
    return logit[:, 0].astype(jnp.float32)


# The authors' 32x32 ImageNet model (imagenet/load_pretrained.py; "7l_3x3"): (stride, width multiple) per layer.
IMAGENET32_G = ((2, 4), (1, 2), (2, 2), (1, 1), (2, 1))          # from 4x4x(4w): 8, 8, 16, 16, 32
IMAGENET32_D = ((1, 1), (2, 1), (1, 2), (2, 2), (1, 4), (2, 4))  # 32, 16, 16, 8, 8, 4


class ImageNet32Generator(nn.Module):
  """The authors' ImageNet-32 G: z -> fc 4*4*4w -> BN (per unit) -> ReLU -> 4x4x4w -> five 3x3 deconvs (strides
  2,1,2,1,2; widths 4w, 2w, 2w, w, w; BN + ReLU) -> 3x3 conv to the image -> tanh. (w = 128: 512 at 4x4.)"""
  width: int = 128
  channels: int = 3
  bn_scale_bias: bool = True
  bias: bool = False
  bn: BNSpec = BNSpec()
  axis_name: Optional[str] = None
  dtype: Any = None
  upsample_impl: str = 'auto'

  @nn.compact
  def __call__(self, z, y=None, *, train: bool = True, drop=None):
    dt = compute_dtype(self.dtype)

    def bn(name):
      return batch_norm(train, self.axis_name, name, self.bn_scale_bias, dt, self.bn)

    record = functools.partial(sow_act, self, drop)

    h = nn.Dense(16 * 4 * self.width, use_bias=False, kernel_init=init_normal, dtype=dt, name='project')(z)
    h = record('project', nn.relu(bn('project_bn')(h)).reshape(z.shape[0], 4, 4, 4 * self.width))
    for i, (stride, mult) in enumerate(IMAGENET32_G, start=1):
      c = mult * self.width
      if stride == 2:
        h = layers.ConvTranspose2x(c, 3, use_bias=False, kernel_init=init_normal, dtype=dt, impl=self.upsample_impl,
                                   name=f'conv{i}')(h)
      else:
        h = nn.Conv(c, (3, 3), padding='SAME', use_bias=False, kernel_init=init_normal, dtype=dt, name=f'conv{i}')(h)
      h = record(f'conv{i}', nn.relu(bn(f'bn{i}')(h)))
    x = nn.Conv(self.channels, (3, 3), padding='SAME', use_bias=self.bias, kernel_init=init_normal, dtype=dt,
                name='out')(h)
    return jnp.tanh(x).astype(jnp.float32)


class ImageNet32Discriminator(nn.Module):
  """The authors' ImageNet-32 D: six 3x3 convs (strides 1,2,1,2,1,2; widths w, w, 2w, 2w, 4w, 4w; BN on all but
  the first; LReLU(0.2)) -> flatten 4x4x4w -> logit. Its six layers pooled to 4x4 give the paper's 28,672
  features at w = 128 (16 * (128 + 128 + 256 + 256 + 512 + 512)); "512 in the highest layer"."""
  width: int = 128
  bn_scale_bias: bool = True
  bias: bool = False
  bn: BNSpec = BNSpec()
  axis_name: Optional[str] = None
  dtype: Any = None
  downsample_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, y=None, *, train: bool = True):
    dt = compute_dtype(self.dtype)
    if x.shape[1] != 32 or x.shape[2] != 32:
      raise ValueError(f'the ImageNet-32 D expects 32x32 images, got {x.shape[1]}x{x.shape[2]}')
    h = x
    for i, (stride, mult) in enumerate(IMAGENET32_D, start=1):
      c = mult * self.width
      if stride == 2:
        h = layers.Conv2x(c, 3, use_bias=False, kernel_init=init_normal, dtype=dt, impl=self.downsample_impl,
                          name=f'conv{i}')(h)
      else:
        h = nn.Conv(c, (3, 3), padding='SAME', use_bias=i == 1 and self.bias, kernel_init=init_normal, dtype=dt,
                    name=f'conv{i}')(h)
      if i > 1:
        h = batch_norm(train, self.axis_name, f'bn{i}', self.bn_scale_bias, dt, self.bn)(h)
      h = nn.leaky_relu(h, 0.2)
      self.sow('intermediates', f'conv{i}_act', h)
    return nn.Dense(1, use_bias=self.bias, kernel_init=init_normal, dtype=dt, name='logit')(flatten(h))[:, 0].astype(
        jnp.float32)
