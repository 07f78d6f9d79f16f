"""Feature networks for sample-quality metrics (FID, KID, precision/recall, density/coverage).

A feature network is any object with ``name`` (a stable id: it keys the cached real-data statistics),
``dims`` and ``__call__(images) -> (N, dims) float32`` where ``images`` are NHWC in [-1, 1] at any size with 1
or 3 channels (the network adapts them: channel replication or luminance, bilinear resize). Two kinds:

- :class:`ClassifierNet`: a small convnet that the project trains itself on a labelled dataset
  (``train_classifier``; ``python launch/evaluate.py --train_feature_net --dataset=NAME``), so every metric
  works offline and in tests. Features: its penultimate layer (128-d). Saved as ``params.msgpack`` (Flax
  serialization) and ``meta.json`` in a directory, by default ``<data_dir>/feature_nets/<dataset>-r<res>``.
- ``common.inception.InceptionNet``: the standard FID Inception-V3 (pool3, 2048-d) from a weights file.

``open_net`` picks one from command-line style arguments, training the classifier when it is missing.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import serialization

from common import data, inception, splits
from common import images as images_lib
from common.datasets.prepare import data_root, preparation_lock

DEFAULT_RESOLUTION = 32
DEFAULT_STEPS = 2000            # at most; small datasets stop at DEFAULT_EPOCHS
DEFAULT_EPOCHS = 30


class Classifier(nn.Module):
  """conv3x3(w) -> conv3x3/2(2w) -> conv3x3/2(4w) -> flatten -> fc(128) = features -> fc(classes); ReLU."""
  num_classes: int = 10
  width: int = 16
  feature_dims: int = 128

  @nn.compact
  def __call__(self, x):
    h = x
    for i, (mult, stride) in enumerate(((1, 1), (2, 2), (4, 2)), start=1):
      h = nn.relu(nn.Conv(self.width * mult, (3, 3), strides=(stride, stride), name=f'conv{i}')(h))
    h = nn.relu(nn.Dense(self.feature_dims, name='fc')(h.reshape(h.shape[0], -1)))
    return nn.Dense(self.num_classes, name='logits')(h), h


@dataclasses.dataclass(frozen=True, eq=False)
class ClassifierNet:
  """A trained :class:`Classifier`: ``net(images) -> (N, 128)`` penultimate-layer features, times a fixed
  ``feature_scale`` that gives the training images unit root-mean-square features (so kernel and Frechet
  distances have the same order of magnitude for any dataset)."""
  params: Any
  meta: dict

  @property
  def module(self) -> Classifier:
    return Classifier(num_classes=self.meta['num_classes'], width=self.meta['width'])

  @property
  def resolution(self) -> int:
    return self.meta['resolution']

  @property
  def channels(self) -> int:
    return self.meta['channels']

  @property
  def dims(self) -> int:
    return self.module.feature_dims

  @property
  def name(self) -> str:
    return f'classifier-{self.meta["dataset_key"]}-r{self.resolution}-{self.meta["fingerprint"]}'

  def __call__(self, images):
    return _classifier_features(self.module, self.resolution, self.channels, self.params, images) * \
        self.meta.get('feature_scale', 1.0)

  def logits(self, images):
    return _classifier_logits(self.module, self.resolution, self.channels, self.params, images)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _classifier_features(module, resolution, channels, params, images):
  return module.apply({'params': params}, images_lib.adapt(images, resolution, channels))[1]


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _classifier_logits(module, resolution, channels, params, images):
  return module.apply({'params': params}, images_lib.adapt(images, resolution, channels))[0]


def dataset_key(dataset: str) -> str:
  """A file-name-safe form of a dataset name ('lsun/bedroom' -> 'lsun_bedroom', folders hashed)."""
  if dataset.startswith('folder:'):
    return 'folder_' + hashlib.sha1(os.path.abspath(dataset[7:]).encode()).hexdigest()[:10]
  return re.sub(r'[^A-Za-z0-9_.-]+', '_', dataset)


def default_dir(dataset: str, data_dir: Optional[str] = None, resolution: int = DEFAULT_RESOLUTION) -> str:
  """``<data_dir>/feature_nets/<dataset>-r<resolution>``."""
  return os.path.join(data_root(data_dir), 'feature_nets', f'{dataset_key(dataset)}-r{resolution}')


def save(net: ClassifierNet, directory: str) -> str:
  os.makedirs(directory, exist_ok=True)
  for name, payload in (('params.msgpack', serialization.to_bytes(net.params)),
                        ('meta.json', json.dumps(net.meta, indent=2).encode())):
    tmp = os.path.join(directory, f'.{name}.tmp')
    with open(tmp, 'wb') as f:
      f.write(payload)
    os.replace(tmp, os.path.join(directory, name))
  return directory


def load(directory: str) -> ClassifierNet:
  """A classifier saved by ``save``/``train_classifier``; FileNotFoundError (one line) when absent."""
  meta_path, params_path = os.path.join(directory, 'meta.json'), os.path.join(directory, 'params.msgpack')
  if not (os.path.exists(meta_path) and os.path.exists(params_path)):
    raise FileNotFoundError(f'no feature network in {directory}: train one with python launch/evaluate.py '
                            '--train_feature_net --dataset=NAME [--feature_net_dir=DIR]')
  with open(meta_path) as f:
    meta = json.load(f)
  module = Classifier(num_classes=meta['num_classes'], width=meta['width'])
  x = jnp.zeros((1, meta['resolution'], meta['resolution'], meta['channels']))
  target = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), x))['params']
  target = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), target)
  with open(params_path, 'rb') as f:
    params = serialization.from_bytes(target, f.read())
  return ClassifierNet(jax.tree_util.tree_map(jnp.asarray, params), meta)


def train_classifier(dataset: str, *, data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
                     out_dir: Optional[str] = None, resolution: int = DEFAULT_RESOLUTION,
                     steps: Optional[int] = None, batch_size: int = 128, lr: float = 1e-3, width: int = 16,
                     seed: int = 0, verbose: bool = True) -> ClassifierNet:
  """Trains the feature classifier on ``dataset``'s train split (Adam, cross-entropy, no augmentation; ``steps``
  default: DEFAULT_STEPS or DEFAULT_EPOCHS epochs, whichever is fewer), reports its test accuracy, and saves
  it to ``out_dir`` (default ``default_dir(dataset, data_dir, resolution)``)."""
  source, info = data.open_source(dataset, 'train', data_dir=data_dir, manual_dir=manual_dir)
  if steps is None:
    steps = min(DEFAULT_STEPS, -(-DEFAULT_EPOCHS * len(source) // batch_size))
  if not info.num_classes:
    raise ValueError(f'--train_feature_net needs a labelled dataset; {dataset} has no labels: use '
                     '--inception_weights=FILE instead')
  module = Classifier(num_classes=info.num_classes, width=width)
  params = module.init(jax.random.PRNGKey(seed), jnp.zeros((1, resolution, resolution, info.channels)))['params']
  tx = optax.adam(lr)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits, _ = module.apply({'params': p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  t0 = time.time()
  with data.Batches(source, global_batch=batch_size, resolution=resolution, seed=seed) as batches:
    for i in range(steps):
      b = next(batches)
      params, opt_state, loss = step(params, opt_state, jnp.asarray(b['image']), jnp.asarray(b['label']))
      if verbose and (i + 1) % max(steps // 5, 1) == 0:
        print(f'feature net step {i + 1}/{steps} | loss {float(loss):.3f} | {time.time() - t0:.0f}s', flush=True)
  digest = hashlib.sha1(serialization.to_bytes(params)).hexdigest()[:10]
  meta = dict(dataset=info.name, dataset_key=dataset_key(info.name), resolution=resolution,
              channels=info.channels, num_classes=info.num_classes, width=width, steps=steps,
              batch_size=batch_size, lr=lr, seed=seed, fingerprint=digest, train_seconds=round(time.time() - t0, 1))
  net = ClassifierNet(params, meta)
  x, _ = splits.images_of(source, resolution, np.arange(min(len(source), 2000)))
  f = np.concatenate([np.asarray(net(x[s:s + 500])) for s in range(0, len(x), 500)])
  meta['feature_scale'] = float(1.0 / max(np.sqrt(np.mean(f.astype(np.float64) ** 2)), 1e-12))
  try:
    test, _ = data.open_source(dataset, 'test', data_dir=data_dir, manual_dir=manual_dir)
    x, y = splits.images_of(test, resolution)
    pred = np.concatenate([np.asarray(net.logits(x[s:s + 500])).argmax(-1) for s in range(0, len(x), 500)])
    meta['test_accuracy'] = float(np.mean(pred == y))
  except data.DataError:   # no test split: the net still works as a feature extractor
    meta['test_accuracy'] = None
  out_dir = out_dir or default_dir(info.name, data_dir, resolution)
  save(net, out_dir)
  if verbose:
    acc = meta['test_accuracy']
    print(f'feature net for {info.name} ({resolution}x{resolution}): {steps} steps in {meta["train_seconds"]:.0f}s'
          f'{"" if acc is None else f", test accuracy {100 * acc:.2f}%"}; saved to {out_dir}', flush=True)
  return net


def open_net(*, dataset: str, data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
             feature_net_dir: Optional[str] = None, inception_weights: Optional[str] = None,
             train_if_missing: bool = True, steps: Optional[int] = None, verbose: bool = True):
  """The feature network for metrics: Inception-V3 when ``inception_weights`` is given, else the project's
  classifier for ``dataset`` from ``feature_net_dir`` (default under data_dir), trained now if missing (under a
  file lock, so concurrent processes train it once)."""
  if inception_weights:
    return inception.InceptionNet.from_file(inception_weights)
  directory = feature_net_dir or default_dir(dataset, data_dir)
  try:
    return load(directory)
  except FileNotFoundError:
    if not train_if_missing:
      raise
  with preparation_lock(data_root(data_dir), f'feature_net-{dataset_key(dataset)}'):
    try:
      return load(directory)
    except FileNotFoundError:
      if verbose:
        print(f'no feature network in {directory}: training one on {dataset}', flush=True)
      return train_classifier(dataset, data_dir=data_dir, manual_dir=manual_dir, out_dir=directory, steps=steps,
                              verbose=verbose)
