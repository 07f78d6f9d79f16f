"""The networks both papers build on: DCGAN's convolutional G and D (Radford et al., section 3, Figure 1), the
BiGAN joint D(x, z) on the same trunk, and the permutation-invariant MLPs (BiGAN appendix C.1, also the DCGAN
paper's Table 3 baseline).

DCGAN's architecture guidelines, as code:
- no pooling: D downsamples with stride-2 convolutions, G upsamples with stride-2 fractionally-strided
  (transposed) convolutions (``common.layers``: exact CPU-fast formulations);
- no fully connected hidden layers: z is projected by one matrix multiply and reshaped to 4x4xC; D's last
  convolution is flattened into a single logit (the sigmoid lives in the loss);
- batchnorm everywhere except G's output layer and D's input layer;
- ReLU in G with tanh on the output; LeakyReLU(0.2) in D; all weights N(0, 0.02).

The number of stride-2 layers follows from the resolution: log2(resolution / 4). ``width`` is the channel count
next to the image (G's last hidden layer, D's first layer) and doubles at each step toward 4x4, so the 64x64
defaults (width 128) give the paper's 4x4x1024 -> 8x8x512 -> 16x16x256 -> 32x32x128 -> 64x64x3.

BiGAN's joint discriminator (section 4: "takes data x as its initial input, and at each linear layer
thereafter, the latent representation z is transformed using a learned linear transformation to the hidden layer
dimension and added to the non-linearity input"): as in the authors' code (``net.py`` ``apply_cond``), z enters
every hidden layer after the first through a bias-free linear map, added to the layer's linear output before
batchnorm and broadcast over space; the logit does not see z (``z_into='after_first'``). z weights into
convolutions start at N(0, 0.02 k^2) (appendix C: 5x5 -> 0.5), into dense layers at 0.02. ``'every_layer'``
keeps this project's earlier reading (z after batchnorm at every layer and on the logit).

Every network sows each hidden activation (after its non-linearity) as ``'<layer>_act'`` in the 'intermediates'
collection (``mutable=['intermediates']``) for feature extraction and visualisation; G takes an optional mask of
feature maps to drop per layer (DCGAN's "forgetting to draw" experiment).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from common import layers

STD = 0.02
init_normal = nn.initializers.normal(STD)
Z_INTO_D = ('after_first', 'every_layer')


def z_init(kernel_area: int = 1):
  """Init of weights that multiply z into a layer: N(0, 0.02 * kernel area) (BiGAN appendix C; 5x5 -> 0.5)."""
  return nn.initializers.normal(STD * kernel_area)


def logit_init(kind: str):
  """D's logit weights: 'normal' (N(0, 0.02)) or 'zero' (the BiGAN authors' ``LinearPredictor(stddev=0)``)."""
  if kind == 'normal':
    return init_normal
  if kind == 'zero':
    return nn.initializers.zeros
  raise ValueError(f'unknown logit_init={kind!r}: use normal or zero')


def num_layers(resolution: int) -> int:
  """Number of stride-2 layers between 4x4 and ``resolution``; raises on unsupported sizes."""
  n = math.log2(resolution / 4) if resolution > 0 else -1
  if n != int(n) or not 1 <= n <= 7:
    raise ValueError(f'resolution {resolution} is not supported by the conv networks (--resolution): use 4 * 2^k '
                     'between 8 and 512 (e.g. --resolution=32, 64 or 128)')
  return int(n)


def layer_widths(resolution: int, width: int) -> list[int]:
  """Channels from 4x4 up to the last hidden layer, e.g. [1024, 512, 256, 128] at 64x64, width 128."""
  n = num_layers(resolution)
  return [width * 2 ** (n - 1 - i) for i in range(n)]


def compute_dtype(dtype):
  """The Flax ``dtype`` of a compute-dtype flag value (None: float32)."""
  return None if dtype in (None, 'float32') else jnp.dtype(dtype)


@dataclasses.dataclass(frozen=True)
class BNSpec:
  """How every batchnorm of a network is set up (``--bn_momentum``, ``--bn_epsilon``, ``--bn_scale_init``)."""
  momentum: float = 0.9          # running = momentum * running + (1 - momentum) * batch (PyTorch's 0.1)
  epsilon: float = 1e-5
  scale_init: str = 'ones'       # or 'normal': N(1, 0.02), the DCGAN authors' gain_ifn


def _scale_init(kind: str):
  if kind == 'ones':
    return nn.initializers.ones
  if kind == 'normal':
    return lambda key, shape, dtype=jnp.float32: 1.0 + STD * jax.random.normal(key, shape, dtype)
  raise ValueError(f'unknown --bn_scale_init={kind!r}: use ones or normal')


def batch_norm(train: bool, axis_name: Optional[str], name: str, scale_bias: bool = True, dtype=None,
               spec: BNSpec = BNSpec()):
  """The project's batchnorm (``spec``: momentum, epsilon, scale init)."""
  return nn.BatchNorm(use_running_average=not train, momentum=spec.momentum, epsilon=spec.epsilon,
                      axis_name=axis_name, use_scale=scale_bias, use_bias=scale_bias, dtype=dtype, name=name,
                      scale_init=_scale_init(spec.scale_init))


def sow_act(module: nn.Module, drop: Optional[Mapping[str, jax.Array]], name: str, h):
  """``h`` with the maps ``drop[name]`` zeroed (a (channels,) mask; DCGAN's "forgetting to draw"), sown as
  ``'<name>_act'`` in the module's 'intermediates'; returns it."""
  if drop is not None and name in drop:
    h = h * (1 - jnp.asarray(drop[name], h.dtype))
  module.sow('intermediates', f'{name}_act', h)
  return h


def flatten(x):
  return x.reshape(x.shape[0], -1)


def check_size(x, resolution: int, who: str = 'D') -> None:
  if x.shape[1] != resolution or x.shape[2] != resolution:
    raise ValueError(f'{who} expects {resolution}x{resolution} images, got {x.shape[1]}x{x.shape[2]}')


# ---------------------------------------------------------------------------------------------------------
# Convolutional networks
# ---------------------------------------------------------------------------------------------------------


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
  project_bn: str = 'channel'   # 'unit': the projection's batchnorm per unit of the flat vector (authors' code)
  bn: BNSpec = BNSpec()
  axis_name: Optional[str] = None
  dtype: Any = None
  upsample_impl: str = 'auto'

  @nn.compact
  def __call__(self, z, y=None, *, train: bool = True,
               drop: Optional[Mapping[str, jax.Array]] = None) -> jax.Array:
    """``drop`` maps a layer name ('project', 'conv1', ...) to a (channels,) mask of maps to zero."""
    dt = compute_dtype(self.dtype)
    widths = layer_widths(self.resolution, self.width)
    h = z
    if self.num_classes:
      h = jnp.concatenate([h, jax.nn.one_hot(y, self.num_classes, dtype=h.dtype)], axis=-1)

    record = functools.partial(sow_act, self, drop)

    def bn(name):
      return batch_norm(train, self.axis_name, name, self.bn_scale_bias, dt, self.bn)

    # Project and reshape: the one matrix multiply the paper allows, then 4x4xC (batchnorm over the flat
    # vector's units, as the authors' code, or per channel of the map).
    if self.project_bn not in ('unit', 'channel'):
      raise ValueError(f'unknown --project_bn={self.project_bn!r}: use unit or channel')
    h = nn.Dense(4 * 4 * widths[0], use_bias=False, kernel_init=init_normal, dtype=dt, name='project')(h)
    if self.project_bn == 'unit':
      h = bn('project_bn')(h)
    h = h.reshape(h.shape[0], 4, 4, widths[0])
    if self.project_bn == 'channel':
      h = bn('project_bn')(h)
    h = record('project', nn.relu(h))
    # Fractionally-strided convolutions; batchnorm + ReLU on all but the output layer.
    for i, c in enumerate(widths[1:] + [self.channels], start=1):
      out = i == len(widths)
      h = layers.ConvTranspose2x(c, self.kernel_size, use_bias=out and self.bias, kernel_init=init_normal,
                                 dtype=dt, impl=self.upsample_impl, name=f'conv{i}')(h)
      if out:
        return jnp.tanh(h).astype(jnp.float32)
      if self.z_hidden:   # bias-free linear map of z, broadcast over space, N(0, 0.02 k^2) as D's z weights
        zc = nn.Dense(c, use_bias=False, kernel_init=z_init(self.kernel_size ** 2), dtype=dt, name=f'conv{i}_z')(z)
        h = h + zc[:, None, None, :]
      h = record(f'conv{i}', nn.relu(bn(f'bn{i}')(h)))


def conv_trunk(module: nn.Module, h, *, resolution: int, width: int, kernel_size: int, bias: bool,
               bn_scale_bias: bool, train: bool, dtype, impl: str,
               pre_bn: Optional[Callable] = None, post_bn: Optional[Callable] = None, bn: BNSpec = BNSpec()):
  """DCGAN's discriminator trunk inside ``module``'s compact method: stride-2 convs (bias on the first only,
  when ``bias``), batchnorm on all but the first, LeakyReLU(0.2), each activation sown as 'conv<i>_act'.
  ``pre_bn(i, c, h)`` / ``post_bn(i, c, h)`` return h with a term added before / after layer i's batchnorm
  (BiGAN's z path). Shared by D, the joint D and the small conv encoder."""
  for i, c in enumerate(layer_widths(resolution, width)[::-1], start=1):
    h = layers.Conv2x(c, kernel_size, use_bias=i == 1 and bias, kernel_init=init_normal, dtype=dtype, impl=impl,
                      name=f'conv{i}')(h)
    if pre_bn is not None:
      h = pre_bn(i, c, h)
    if i > 1:
      h = batch_norm(train, module.axis_name, f'bn{i}', bn_scale_bias, dtype, bn)(h)
    if post_bn is not None:
      h = post_bn(i, c, h)
    h = nn.leaky_relu(h, 0.2)
    module.sow('intermediates', f'conv{i}_act', h)
  return h


class Discriminator(nn.Module):
  """D: image (and an optional class label) -> one logit per image (the sigmoid is in the loss)."""
  resolution: int = 64
  width: int = 128
  kernel_size: int = 5
  num_classes: int = 0          # > 0: conditional D, one-hot label as extra input channels and logit input
  bn_scale_bias: bool = True
  bias: bool = True             # conv1's and the logit's biases (the authors' layers have none)
  bn: BNSpec = BNSpec()
  axis_name: Optional[str] = None
  dtype: Any = None
  downsample_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, y=None, *, train: bool = True) -> jax.Array:
    dt = compute_dtype(self.dtype)
    check_size(x, self.resolution)
    h = x
    if self.num_classes:
      onehot = jax.nn.one_hot(y, self.num_classes, dtype=x.dtype)
      h = jnp.concatenate([h, jnp.broadcast_to(onehot[:, None, None, :], h.shape[:3] + (self.num_classes,))], -1)
    h = conv_trunk(self, h, resolution=self.resolution, width=self.width, kernel_size=self.kernel_size,
                   bias=self.bias, bn_scale_bias=self.bn_scale_bias, train=train, dtype=dt, impl=self.downsample_impl,
                   bn=self.bn)
    # The last convolution, flattened, straight into one output.
    h = flatten(h)
    if self.num_classes:
      h = jnp.concatenate([h, onehot], axis=-1)
    return nn.Dense(1, use_bias=self.bias, kernel_init=init_normal, dtype=dt, name='logit')(h)[:, 0].astype(
        jnp.float32)


class JointDiscriminator(nn.Module):
  """BiGAN's D(x, z) on DCGAN's trunk (module docstring for where z enters: ``z_into``). ``bias``: conv1's and
  the logit's biases; ``logit_init``: 'normal' (the paper) or 'zero' (authors). Same layer names as
  :class:`Discriminator` plus ``*_z``."""
  resolution: int = 64
  width: int = 128
  kernel_size: int = 5
  bn_scale_bias: bool = True
  z_into: str = 'after_first'
  bias: bool = True
  logit_init: str = 'normal'
  bn: BNSpec = BNSpec()
  axis_name: Optional[str] = None
  dtype: Any = None
  downsample_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, z, *, train: bool = True):
    dt = compute_dtype(self.dtype)
    check_size(x, self.resolution)
    if self.z_into not in Z_INTO_D:
      raise ValueError(f'unknown z_into={self.z_into!r}: use one of {Z_INTO_D}')
    every = self.z_into == 'every_layer'
    k = self.kernel_size

    def z_term(i, c, h):
      zc = nn.Dense(c, use_bias=False, kernel_init=z_init(k * k), dtype=dt, name=f'conv{i}_z')(z)
      return h + zc[:, None, None, :]

    before = (lambda i, c, h: z_term(i, c, h) if i > 1 else h) if not every else None
    h = conv_trunk(self, x, resolution=self.resolution, width=self.width, kernel_size=k, bias=self.bias,
                   bn_scale_bias=self.bn_scale_bias, train=train, dtype=dt, impl=self.downsample_impl,
                   pre_bn=before, post_bn=z_term if every else None, bn=self.bn)
    logit = nn.Dense(1, use_bias=self.bias, kernel_init=logit_init(self.logit_init), dtype=dt, name='logit')(
        flatten(h))
    if every:
      logit = logit + nn.Dense(1, use_bias=False, kernel_init=z_init(1), dtype=dt, name='logit_z')(z)
    return logit[:, 0].astype(jnp.float32)


# ---------------------------------------------------------------------------------------------------------
# Permutation-invariant MLPs (BiGAN appendix C.1)
# ---------------------------------------------------------------------------------------------------------


class MLPGenerator(nn.Module):
  """G: z -> fc1 -> [BN] -> ReLU -> fc2 [+ fc2_z(z)] -> parameter-free BN -> ReLU -> out -> tanh or sigmoid.

  ``first_bn``: parameter-free BN after fc1 too (BiGAN authors' code; the paper puts BN on the second layer
  only). ``z_hidden``: z re-enters the second hidden layer through a bias-free linear map added before BN
  (authors' ``deconvnet_mnist_mlp``). ``bias``: biases on the layers not followed by BN (the authors' layers have
  none). ``output``: 'tanh' (images in [-1, 1]) or 'sigmoid' ([0, 1], the authors' MNIST range).
  """
  resolution: int = 28
  channels: int = 1
  hidden: int = 1024
  bias: bool = True
  first_bn: bool = False
  z_hidden: bool = False
  output: str = 'tanh'
  bn: BNSpec = BNSpec()
  axis_name: Optional[str] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, z, *, train: bool = True):
    dt = compute_dtype(self.dtype)
    h = nn.Dense(self.hidden, use_bias=self.bias and not self.first_bn, kernel_init=init_normal, dtype=dt,
                 name='fc1')(z)
    if self.first_bn:
      h = batch_norm(train, self.axis_name, 'bn1', scale_bias=False, dtype=dt, spec=self.bn)(h)
    h = nn.relu(h)
    self.sow('intermediates', 'fc1_act', h)
    h = nn.Dense(self.hidden, use_bias=False, kernel_init=init_normal, dtype=dt, name='fc2')(h)
    if self.z_hidden:
      h = h + nn.Dense(self.hidden, use_bias=False, kernel_init=z_init(1), dtype=dt, name='fc2_z')(z)
    h = nn.relu(batch_norm(train, self.axis_name, 'bn2', scale_bias=False, dtype=dt, spec=self.bn)(h))
    self.sow('intermediates', 'fc2_act', h)
    x = nn.Dense(self.resolution * self.resolution * self.channels, use_bias=self.bias, kernel_init=init_normal,
                 dtype=dt, name='out')(h)
    x = jax.nn.sigmoid(x) if self.output == 'sigmoid' else jnp.tanh(x)
    return x.astype(jnp.float32).reshape(z.shape[0], self.resolution, self.resolution, self.channels)


class MLPDiscriminator(nn.Module):
  """D(x, z) (``joint``) or D(x): the MLP of appendix C.1, z mapped linearly (no bias) into the hidden layers.

  ``z_into='after_first'`` (the authors' ``mnist_mlp`` with ``apply_cond``): a1 = fc1(x);
  a2 = BN(fc2(h1) + fc2_z(z)); logit = logit(h2). ``'every_layer'``: a1 = fc1(x) + fc1_z(z);
  a2 = BN(fc2(h1)) + fc2_z(z); logit = logit(h2) + logit_z(z). ``logit_init`` as for :class:`JointDiscriminator`.
  """
  hidden: int = 1024
  joint: bool = True
  z_into: str = 'after_first'
  bias: bool = True
  logit_init: str = 'normal'
  bn: BNSpec = BNSpec()
  axis_name: Optional[str] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x, z=None, *, train: bool = True):
    dt = compute_dtype(self.dtype)
    if self.z_into not in Z_INTO_D:
      raise ValueError(f'unknown z_into={self.z_into!r}: use one of {Z_INTO_D}')
    every = self.joint and self.z_into == 'every_layer'

    def z_term(width, name):
      return nn.Dense(width, use_bias=False, kernel_init=z_init(1), dtype=dt, name=name)(z)

    h = nn.Dense(self.hidden, use_bias=self.bias, kernel_init=init_normal, dtype=dt, name='fc1')(flatten(x))
    if every:
      h = h + z_term(self.hidden, 'fc1_z')
    h = nn.leaky_relu(h, 0.2)
    self.sow('intermediates', 'fc1_act', h)
    h = nn.Dense(self.hidden, use_bias=False, kernel_init=init_normal, dtype=dt, name='fc2')(h)
    if self.joint and not every:
      h = h + z_term(self.hidden, 'fc2_z')
    h = batch_norm(train, self.axis_name, 'bn2', scale_bias=False, dtype=dt, spec=self.bn)(h)
    if every:
      h = h + z_term(self.hidden, 'fc2_z')
    h = nn.leaky_relu(h, 0.2)
    self.sow('intermediates', 'fc2_act', h)
    logit = nn.Dense(1, use_bias=self.bias, kernel_init=logit_init(self.logit_init), dtype=dt, name='logit')(h)
    if every:
      logit = logit + z_term(1, 'logit_z')
    return logit[:, 0].astype(jnp.float32)
