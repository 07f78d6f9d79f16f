"""Whole dataset splits for evaluation: preprocessed images, labels, and features of chosen examples.

Evaluations read data in example order (not the training pipeline's shuffled stream) and center-crop, as a
model's ``data_options(eval=True)`` asks.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from common import data, images, metrics
from common.progress import Progress


def images_of(source, resolution: int, indices=None, load_size: Optional[int] = None):
  """(images float32 NHWC in [-1, 1], labels int64) of ``indices`` (default all) of a source, center-cropped."""
  ids = np.arange(len(source)) if indices is None else np.asarray(indices, np.int64)
  xs, ys = [], []
  for s in range(0, len(ids), 1024):
    for ex in source.get_many(ids[s:s + 1024]):
      xs.append(data.preprocess(ex['image'], resolution, load_size=load_size, crop='center'))
      ys.append(ex['label'])
  if not xs:
    return np.zeros((0, resolution, resolution, source.channels), np.float32), np.zeros((0,), np.int64)
  return np.stack(xs), np.asarray(ys, np.int64)


def load_split(dataset: str, split: str, options: dict, data_dir=None, manual_dir=None):
  """All examples of a split, in order, preprocessed as ``options`` (a model's ``data_options(eval=True)``)."""
  source, _ = data.open_source(dataset, split, data_dir=data_dir, manual_dir=manual_dir)
  return images_of(source, options['resolution'], load_size=options.get('load_size'))


def read_labels(source) -> np.ndarray:
  """All labels of a source, without decoding images."""
  out = []
  for s in range(0, len(source), 8192):
    out.extend(int(r['label']) for r in source.read_records(range(s, min(s + 8192, len(source)))))
  return np.asarray(out, np.int64)


def featurize(fn: Callable, source, ids, *, resolution: int, load_size=None, channels: Optional[int] = None,
              batch: int = 256, chunk: int = 4096, progress: Optional[str] = 'features'):
  """(features (len(ids), dims) float32, labels) of examples ``ids`` of ``source``: images preprocessed at
  ``resolution`` (center crop), adapted to ``channels``, through ``fn`` in batches of ``batch``; progress
  lines on stderr while it takes longer than a few seconds (``progress=None``: silent)."""
  ids = np.asarray(ids, np.int64)
  feats, labels = [], []
  bar = Progress(progress, len(ids))
  for s in range(0, len(ids), chunk):
    x, y = images_of(source, resolution, ids[s:s + chunk], load_size=load_size)
    if channels:
      x = np.asarray(images.adapt(x, channels=channels))
    feats.append(np.asarray(metrics.extract(fn, x, batch), np.float32))
    labels.append(y)
    bar.update(len(y))
  bar.close()
  return np.concatenate(feats), np.concatenate(labels)


def knn_accuracy(fn: Optional[Callable], train, test, metric: str = 'l2', k: int = 1, batch: int = 500) -> float:
  """k-NN accuracy (%) of the ``test`` (images, labels) on ``train`` in the space of ``fn`` (None: pixels)."""
  (xtr, ytr), (xte, yte) = train, test
  if fn is None:
    ftr, fte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
  else:
    ftr = metrics.extract(fn, xtr, batch, progress='k-NN: features of the reference split')
    fte = metrics.extract(fn, xte, batch, progress='k-NN: features of the query split')
  return 100.0 * metrics.knn_accuracy(ftr, ytr, fte, yte, k=k, metric=metric, progress='k-NN: nearest neighbours')
