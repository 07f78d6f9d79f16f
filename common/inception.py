"""Inception-V3 as used for FID (Heusel et al., 2017), in Flax: pool3 features (2048-d) of the TensorFlow
'2015-12-05' Inception graph, with weights loaded from a file the user supplies.

The network is Szegedy et al.'s Inception-V3 (torchvision's layout and layer names: ``Conv2d_1a_3x3`` ...
``Mixed_7c``, each conv followed by batchnorm with eps 1e-3 and ReLU, no auxiliary classifier, a 1008-way
``fc``) with the three quirks of the FID graph: the average pools inside the Inception blocks do not count
the zero padding, and the last block (``Mixed_7c``) max-pools in its pool branch. ``fid=False`` gives the
plain torchvision pooling instead.

Weights: the ``pt_inception-2015-12-05-6726825d.pth`` PyTorch state_dict released with pytorch-fid (a port of
the TensorFlow FID graph), read with ``torch.load`` when torch is installed, or an ``.npz`` of the same
arrays under the same keys (no torch needed)::

    python -m common.inception --convert pt_inception-2015-12-05-6726825d.pth fid_inception.npz

Keys are PyTorch's: ``<module path>.conv.weight`` (O, I, kh, kw), ``<module path>.bn.{weight, bias,
running_mean, running_var}``, ``fc.weight`` (1008, 2048), ``fc.bias``; ``num_batches_tracked`` is ignored.
``python -m common.inception --keys`` lists every expected key with its shape.

Input: NHWC images in [-1, 1] at any size, 1 or 3 channels; grayscale is replicated to RGB and every image is
resized to 299x299 with (non-antialiased) bilinear interpolation, as pytorch-fid does, then fed as is (the
graph expects [-1, 1]).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from common import images as images_lib

SIZE = 299
DIMS = 2048
NUM_CLASSES = 1008
# Parameters (conv kernels, batchnorm scale and shift, fc) of the FID network: torchvision's Inception-V3
# without the auxiliary classifier (23,834,568 with a 1000-way fc) with the 1008-way fc of the 2015 graph.
NUM_PARAMS = 23_834_568 + 8 * (DIMS + 1)


class BasicConv(nn.Module):
  """conv (no bias) -> batchnorm (eps 1e-3, running statistics) -> ReLU."""
  features: int
  kernel: tuple = (1, 1)
  stride: int = 1
  padding: tuple = (0, 0)

  @nn.compact
  def __call__(self, x):
    ph, pw = self.padding
    x = nn.Conv(self.features, self.kernel, strides=(self.stride, self.stride), padding=((ph, ph), (pw, pw)),
                use_bias=False, name='conv')(x)
    return nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-3, name='bn')(x))


def _avg_pool(x, fid: bool):
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=not fid)


def _max_pool_s2(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2))


class InceptionA(nn.Module):
  pool_features: int
  fid: bool = True

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(64, name='branch1x1')(x)
    b5 = BasicConv(48, name='branch5x5_1')(x)
    b5 = BasicConv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = BasicConv(64, name='branch3x3dbl_1')(x)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = BasicConv(self.pool_features, name='branch_pool')(_avg_pool(x, self.fid))
    return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(384, (3, 3), stride=2, name='branch3x3')(x)
    bd = BasicConv(64, name='branch3x3dbl_1')(x)
    bd = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = BasicConv(96, (3, 3), stride=2, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool_s2(x)], -1)


class InceptionC(nn.Module):
  channels_7x7: int
  fid: bool = True

  @nn.compact
  def __call__(self, x):
    c = self.channels_7x7
    row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
    b1 = BasicConv(192, name='branch1x1')(x)
    b7 = BasicConv(c, name='branch7x7_1')(x)
    b7 = BasicConv(c, **row, name='branch7x7_2')(b7)
    b7 = BasicConv(192, **col, name='branch7x7_3')(b7)
    bd = BasicConv(c, name='branch7x7dbl_1')(x)
    bd = BasicConv(c, **col, name='branch7x7dbl_2')(bd)
    bd = BasicConv(c, **row, name='branch7x7dbl_3')(bd)
    bd = BasicConv(c, **col, name='branch7x7dbl_4')(bd)
    bd = BasicConv(192, **row, name='branch7x7dbl_5')(bd)
    bp = BasicConv(192, name='branch_pool')(_avg_pool(x, self.fid))
    return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(192, name='branch3x3_1')(x)
    b3 = BasicConv(320, (3, 3), stride=2, name='branch3x3_2')(b3)
    b7 = BasicConv(192, name='branch7x7x3_1')(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = BasicConv(192, (3, 3), stride=2, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool_s2(x)], -1)


class InceptionE(nn.Module):
  pool: str = 'avg_fid'     # 'avg_fid' (zero padding not counted), 'avg' (counted) or 'max'

  @nn.compact
  def __call__(self, x):
    row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
    b1 = BasicConv(320, name='branch1x1')(x)
    b3 = BasicConv(384, name='branch3x3_1')(x)
    b3 = jnp.concatenate([BasicConv(384, **row, name='branch3x3_2a')(b3),
                          BasicConv(384, **col, name='branch3x3_2b')(b3)], -1)
    bd = BasicConv(448, name='branch3x3dbl_1')(x)
    bd = BasicConv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate([BasicConv(384, **row, name='branch3x3dbl_3a')(bd),
                          BasicConv(384, **col, name='branch3x3dbl_3b')(bd)], -1)
    if self.pool == 'max':
      p = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    else:
      p = _avg_pool(x, self.pool == 'avg_fid')
    bp = BasicConv(192, name='branch_pool')(p)
    return jnp.concatenate([b1, b3, bd, bp], -1)


class InceptionV3(nn.Module):
  """x (N, H, W, 3) in [-1, 1] (at least 75x75; FID uses 299x299) -> (pool3 (N, 2048), logits (N, 1008))."""
  fid: bool = True
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, x):
    x = BasicConv(32, (3, 3), stride=2, name='Conv2d_1a_3x3')(x)
    x = BasicConv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = BasicConv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool_s2(x)
    x = BasicConv(80, name='Conv2d_3b_1x1')(x)
    x = BasicConv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool_s2(x)
    x = InceptionA(32, self.fid, name='Mixed_5b')(x)
    x = InceptionA(64, self.fid, name='Mixed_5c')(x)
    x = InceptionA(64, self.fid, name='Mixed_5d')(x)
    x = InceptionB(name='Mixed_6a')(x)
    for name, c in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
      x = InceptionC(c, self.fid, name=name)(x)
    x = InceptionD(name='Mixed_7a')(x)
    x = InceptionE('avg_fid' if self.fid else 'avg', name='Mixed_7b')(x)
    x = InceptionE('max' if self.fid else 'avg', name='Mixed_7c')(x)
    pool3 = x.mean(axis=(1, 2))
    return pool3, nn.Dense(self.num_classes, name='fc')(pool3)


# -- weights -------------------------------------------------------------------------------------------------

# Flax leaf name -> (PyTorch leaf name, collection).
_LEAVES = {('conv', 'kernel'): ('conv.weight', 'params'), ('bn', 'scale'): ('bn.weight', 'params'),
           ('bn', 'bias'): ('bn.bias', 'params'), ('bn', 'mean'): ('bn.running_mean', 'batch_stats'),
           ('bn', 'var'): ('bn.running_var', 'batch_stats'), ('fc', 'kernel'): ('fc.weight', 'params'),
           ('fc', 'bias'): ('fc.bias', 'params')}


def abstract_variables(fid: bool = True) -> dict:
  """Shapes of every variable (params and batch_stats), without computing anything."""
  return jax.eval_shape(lambda: InceptionV3(fid=fid).init(jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE, 3))))


def _torch_key(collection: str, path: tuple) -> str:
  *modules, parent, leaf = path
  torch_leaf, coll = _LEAVES[(parent, leaf)]
  assert coll == collection, (collection, path)
  return '.'.join(list(modules) + [torch_leaf])


def expected_keys() -> dict:
  """PyTorch state_dict key -> its shape (PyTorch layout), for every tensor the network needs."""
  out = {}
  for coll, tree in abstract_variables().items():
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      names = tuple(p.key for p in path)
      shape = leaf.shape
      if len(shape) == 4:
        shape = (shape[3], shape[2], shape[0], shape[1])       # HWIO -> OIHW
      elif names[-2:] == ('fc', 'kernel'):
        shape = shape[::-1]
      out[_torch_key(coll, names)] = tuple(shape)
  return out


def read_state_dict(path: str) -> dict:
  """{key: numpy array} from a PyTorch state_dict (.pth/.pt, needs torch) or an .npz of the same keys."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'--inception_weights={path} does not exist: download pytorch-fid\'s '
                            'pt_inception-2015-12-05-6726825d.pth (see docs/evaluation.md) or pass the .npz '
                            'converted from it')
  if path.endswith('.npz'):
    with np.load(path) as f:
      return {k: f[k] for k in f.files}
  try:
    import torch
  except ImportError:
    raise ValueError(f'reading {path} needs torch (pip install torch): or convert it once, where torch is '
                     f'installed, with python -m common.inception --convert {path} OUT.npz') from None
  sd = torch.load(path, map_location='cpu', weights_only=True)
  if isinstance(sd, dict) and 'state_dict' in sd and isinstance(sd['state_dict'], dict):
    sd = sd['state_dict']
  return {k: v.detach().cpu().numpy() for k, v in sd.items() if hasattr(v, 'detach')}


def variables_from_state_dict(sd: dict, fid: bool = True) -> dict:
  """Flax variables ({'params', 'batch_stats'}) from a PyTorch-layout state dict; ValueError (one line) on
  missing keys or wrong shapes."""
  expected = expected_keys()
  missing = [k for k in expected if k not in sd]
  bad = [f'{k} {tuple(np.shape(sd[k]))} (expected {s})' for k, s in expected.items()
         if k in sd and tuple(np.shape(sd[k])) != s]
  if missing or bad:
    what = (f'{len(missing)} missing keys (e.g. {", ".join(missing[:3])})' if missing else '') + \
           ('; ' if missing and bad else '') + (f'wrong shapes: {", ".join(bad[:3])}' if bad else '')
    raise ValueError(f'not the FID Inception weights: {what}; expected the pt_inception-2015-12-05 state_dict '
                     'keys (python -m common.inception --keys lists them)')

  def convert(coll, path, leaf):
    names = tuple(p.key for p in path)
    a = np.asarray(sd[_torch_key(coll, names)], np.float32)
    if a.ndim == 4:
      a = a.transpose(2, 3, 1, 0)      # OIHW -> HWIO
    elif names[-2:] == ('fc', 'kernel'):
      a = a.T
    return jnp.asarray(a)

  abstract = abstract_variables(fid)
  return {coll: jax.tree_util.tree_map_with_path(functools.partial(convert, coll), tree)
          for coll, tree in abstract.items()}


def state_dict_from_variables(variables) -> dict:
  """The inverse of ``variables_from_state_dict``: {PyTorch key: numpy array in PyTorch layout}."""
  out = {}
  for coll, tree in variables.items():
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      names = tuple(p.key for p in path)
      a = np.asarray(leaf)
      if a.ndim == 4:
        a = a.transpose(3, 2, 0, 1)      # HWIO -> OIHW
      elif names[-2:] == ('fc', 'kernel'):
        a = a.T
      out[_torch_key(coll, names)] = a
  return out


def random_variables(seed: int = 0) -> dict:
  """Random variables for tests, drawn in numpy (fast: no compilation): He-normal kernels, batchnorm at its
  initial values (scale 1, shift 0, mean 0, variance 1), zero fc bias."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      return jnp.asarray(rng.normal(0, np.sqrt(2 / np.prod(leaf.shape[:-1])), leaf.shape).astype(np.float32))
    return jnp.full(leaf.shape, 1.0 if name in ('scale', 'var') else 0.0, jnp.float32)

  return {coll: jax.tree_util.tree_map_with_path(draw, tree) for coll, tree in abstract_variables().items()}


@functools.partial(jax.jit, static_argnames=('fid', 'size'))
def _pool3(variables, images, fid: bool = True, size: int = SIZE):
  x = images_lib.adapt(images, size, 3, antialias=False)
  return InceptionV3(fid=fid).apply(variables, x)[0]


@dataclasses.dataclass(frozen=True, eq=False)
class InceptionNet:
  """The FID feature network: ``net(images) -> (N, 2048)`` pool3 features (images NHWC in [-1, 1])."""
  variables: Any
  name: str = 'inception-fid'
  fid: bool = True
  dims: int = DIMS
  size: int = SIZE          # input size the images are resized to (FID: 299; smaller only for tests)

  @classmethod
  def from_file(cls, path: str) -> 'InceptionNet':
    digest = _sha256_prefix(path) if os.path.exists(path) else ''
    variables = variables_from_state_dict(read_state_dict(path))
    return cls(variables, name=f'inception-fid-{digest}')

  def __call__(self, images):
    return _pool3(self.variables, images, fid=self.fid, size=self.size)


def _sha256_prefix(path: str, n: int = 8) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      h.update(chunk)
  return h.hexdigest()[:n]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description='FID Inception-V3 weights: list the expected keys or convert a '
                                          'PyTorch state_dict to .npz')
  p.add_argument('--keys', action='store_true', help='print every expected key and shape')
  p.add_argument('--convert', nargs=2, metavar=('IN.pth', 'OUT.npz'), help='state_dict -> npz (needs torch)')
  a = p.parse_args(argv)
  if a.keys:
    for k, s in expected_keys().items():
      print(k, s)
  if a.convert:
    src, dst = a.convert
    try:
      sd = read_state_dict(src)
      variables_from_state_dict(sd)    # validate before writing
    except (FileNotFoundError, ValueError) as e:
      print(f'error: {e}', file=sys.stderr)
      return 1
    np.savez(dst, **{k: v for k, v in sd.items() if k in expected_keys()})
    print(f'wrote {dst} ({len(sd)} arrays; sha256 of the source starts {_sha256_prefix(src)})')
  if not (a.keys or a.convert):
    p.print_help()
  return 0


if __name__ == '__main__':
  sys.exit(main())
