"""DCGAN generator and discriminator (Radford et al., 2016, section 3 and Figure 1).

The architecture guidelines, as code:
- no pooling: D downsamples with stride-2 convolutions, G upsamples with stride-2 fractionally-strided
  (transposed) convolutions;
- no fully connected hidden layers: z is projected by one matrix multiply and reshaped to 4x4xC; D's
  last convolution is flattened into a single logit (the sigmoid lives in the loss);
- batchnorm everywhere except G's output layer and D's input layer;
- ReLU in G with tanh on the output; LeakyReLU(0.2) in D;
- all weights N(0, 0.02).

The number of stride-2 layers follows from the resolution: log2(resolution / 4). ``width`` is the channel
count next to the image (G's last hidden layer, D's first layer) and doubles at each step toward 4x4, so the
64x64 defaults (width 128) give the paper's 4x4x1024 -> 8x8x512 -> 16x16x256 -> 32x32x128 -> 64x64x3.

Both networks record every hidden activation (after its non-linearity) as ``'<layer>_act'`` in the
'intermediates' collection (read it with ``mutable=['intermediates']``) for feature extraction and visualisation, and G takes an optional mask of
feature maps to drop per layer (the paper's "forgetting to draw" experiment).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from common import layers

init_normal = nn.initializers.normal(0.02)


def num_layers(resolution: int) -> int:
  """Number of stride-2 layers between 4x4 and ``resolution``; raises on unsupported sizes."""
  n = math.log2(resolution / 4) if resolution > 0 else -1
  if n != int(n) or not 1 <= n <= 7:
    raise ValueError(f'resolution {resolution} is not supported: use 4 * 2^k between 8 and 512 '
                     '(e.g. --resolution=32, 64 or 128)')
  return int(n)


def layer_widths(resolution: int, width: int) -> list[int]:
  """Channels from 4x4 up to the last hidden layer, e.g. [1024, 512, 256, 128] at 64x64, width 128."""
  n = num_layers(resolution)
  return [width * 2 ** (n - 1 - i) for i in range(n)]


def _dtype(dtype):
  return None if dtype in (None, 'float32') else jnp.dtype(dtype)


class Generator(nn.Module):
  """G: z in [-1, 1]^z_dim (and an optional class label) -> image in [-1, 1]^(R x R x channels)."""
  resolution: int = 64
  width: int = 128
  kernel_size: int = 5
  channels: int = 3
  num_classes: int = 0          # > 0: conditional G, one-hot label concatenated to z
  bn_scale_bias: bool = True    # False: batchnorm without scale and bias (conditional MNIST model)
  bias: bool = True             # the output layer's bias (the authors' layers have none)
  z_hidden: bool = False        # BiGAN (authors' code): z re-enters every hidden deconv, before batchnorm
  axis_name: Optional[str] = None
  dtype: Any = None
  upsample_impl: str = 'auto'

  def _bn(self, train: bool, name: str):
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=self.axis_name,
                        use_scale=self.bn_scale_bias, use_bias=self.bn_scale_bias, dtype=_dtype(self.dtype),
                        name=name)

  @nn.compact
  def __call__(self, z, y=None, *, train: bool = True,
               drop: Optional[Mapping[str, jax.Array]] = None) -> jax.Array:
    """``drop`` maps a layer name ('project', 'conv1', ...) to a (channels,) mask of maps to zero."""
    dt = _dtype(self.dtype)
    widths = layer_widths(self.resolution, self.width)
    h = z
    if self.num_classes:
      h = jnp.concatenate([h, jax.nn.one_hot(y, self.num_classes, dtype=h.dtype)], axis=-1)

    def record(name, h):
      if drop is not None and name in drop:
        h = h * (1 - jnp.asarray(drop[name], h.dtype))
      self.sow('intermediates', f'{name}_act', h)
      return h

    # Project and reshape: the one matrix multiply the paper allows, then 4x4xC.
    h = nn.Dense(4 * 4 * widths[0], use_bias=False, kernel_init=init_normal, dtype=dt, name='project')(h)
    h = h.reshape(h.shape[0], 4, 4, widths[0])
    h = record('project', nn.relu(self._bn(train, 'project_bn')(h)))
    # Fractionally-strided convolutions; batchnorm + ReLU on all but the output layer.
    for i, c in enumerate(widths[1:] + [self.channels], start=1):
      out = i == len(widths)
      h = layers.ConvTranspose2x(c, self.kernel_size, use_bias=out and self.bias, kernel_init=init_normal,
                                 dtype=dt, impl=self.upsample_impl, name=f'conv{i}')(h)
      if out:
        return jnp.tanh(h).astype(jnp.float32)
      if self.z_hidden:   # bias-free linear map of z, broadcast over space, N(0, 0.02 k^2) as D's z weights
        zc = nn.Dense(c, use_bias=False, kernel_init=nn.initializers.normal(0.02 * self.kernel_size ** 2),
                      dtype=dt, name=f'conv{i}_z')(z)
        h = h + zc[:, None, None, :]
      h = record(f'conv{i}', nn.relu(self._bn(train, f'bn{i}')(h)))


class Discriminator(nn.Module):
  """D: image (and an optional class label) -> one logit per image (the sigmoid is in the loss)."""
  resolution: int = 64
  width: int = 128
  kernel_size: int = 5
  num_classes: int = 0          # > 0: conditional D, one-hot label as extra input channels and logit input
  bn_scale_bias: bool = True
  axis_name: Optional[str] = None
  dtype: Any = None
  downsample_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, y=None, *, train: bool = True) -> jax.Array:
    dt = _dtype(self.dtype)
    widths = layer_widths(self.resolution, self.width)[::-1]
    if x.shape[1] != self.resolution or x.shape[2] != self.resolution:
      raise ValueError(f'D expects {self.resolution}x{self.resolution} images, got {x.shape[1]}x{x.shape[2]}')
    h = x
    if self.num_classes:
      onehot = jax.nn.one_hot(y, self.num_classes, dtype=x.dtype)
      h = jnp.concatenate([h, jnp.broadcast_to(onehot[:, None, None, :], h.shape[:3] + (self.num_classes,))], -1)
    # Strided convolutions; no batchnorm on the input layer; LeakyReLU(0.2) everywhere.
    for i, c in enumerate(widths, start=1):
      h = layers.Conv2x(c, self.kernel_size, use_bias=i == 1, kernel_init=init_normal, dtype=dt,
                        impl=self.downsample_impl, name=f'conv{i}')(h)
      if i > 1:
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=self.axis_name,
                         use_scale=self.bn_scale_bias, use_bias=self.bn_scale_bias, dtype=dt, name=f'bn{i}')(h)
      h = nn.leaky_relu(h, 0.2)
      self.sow('intermediates', f'conv{i}_act', h)
    # The last convolution, flattened, straight into one output.
    h = h.reshape(h.shape[0], -1)
    if self.num_classes:
      h = jnp.concatenate([h, onehot], axis=-1)
    return nn.Dense(1, kernel_init=init_normal, dtype=dt, name='logit')(h)[:, 0].astype(jnp.float32)
