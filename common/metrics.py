"""Feature-space evaluation: k-nearest-neighbour accuracy and batched feature extraction.

``knn_accuracy`` is the BiGAN paper's Table 1 protocol (1-NN classification of the test set with the train
set as reference) in bounded memory: test rows are processed ``chunk`` at a time against ``train_chunk``
train rows at a time, keeping a running top-k, so 60k x 10k MNIST needs a few tens of MB. Distances are
computed in float32 with one matrix multiply per block (numpy's BLAS); ties in the vote go to the smallest
label, like scikit-learn's ``KNeighborsClassifier``.
"""
from __future__ import annotations

from typing import Callable, Iterable, Union

import numpy as np

METRICS = ('cosine', 'l2')


def _prepare(x, metric: str):
  x = np.asarray(x, np.float32).reshape(len(x), -1)
  if metric == 'cosine':
    n = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.maximum(n, 1e-12)
  return x


def knn_predict(train_feats, train_labels, test_feats, k: int = 1, metric: str = 'cosine', chunk: int = 1024,
                train_chunk: int = 16384) -> np.ndarray:
  """Majority label of the k nearest train rows for every test row (ties: smallest label)."""
  if metric not in METRICS:
    raise ValueError(f'unknown metric {metric!r}: use one of {METRICS}')
  train, test = _prepare(train_feats, metric), _prepare(test_feats, metric)
  train_labels = np.asarray(train_labels).astype(np.int64)
  if train.shape[1] != test.shape[1]:
    raise ValueError(f'train features have {train.shape[1]} dims, test features {test.shape[1]}')
  n_train = len(train)
  if not 1 <= k <= n_train:
    raise ValueError(f'k={k} must be between 1 and the number of train rows ({n_train})')
  # Squared norms for l2: ||a - b||^2 = ||a||^2 - 2 a.b + ||b||^2 (||a||^2 is constant per test row: dropped).
  sq_train = np.einsum('ij,ij->i', train, train) if metric == 'l2' else None
  num_classes = int(train_labels.max()) + 1
  out = np.empty(len(test), np.int64)
  for s in range(0, len(test), chunk):
    q = test[s:s + chunk]
    best_d = np.full((len(q), k), np.inf, np.float32)
    best_i = np.zeros((len(q), k), np.int64)
    for t in range(0, n_train, train_chunk):
      ref = train[t:t + train_chunk]
      dots = q @ ref.T
      d = sq_train[t:t + train_chunk][None, :] - 2 * dots if metric == 'l2' else -dots
      if k == 1:   # fast path: argmin keeps the earliest of equal distances; strict < keeps earlier chunks
        j = d.argmin(axis=1)
        dj = d[np.arange(len(q)), j]
        better = dj < best_d[:, 0]
        best_d[better, 0], best_i[better, 0] = dj[better], j[better] + t
        continue
      kk = min(k, d.shape[1])
      idx = np.argpartition(d, kk - 1, axis=1)[:, :kk] if kk < d.shape[1] else np.broadcast_to(
          np.arange(d.shape[1]), d.shape)
      cand_d = np.concatenate([best_d, np.take_along_axis(d, idx, 1)], axis=1)
      cand_i = np.concatenate([best_i, idx + t], axis=1)
      # Stable sort on (distance, train index): equal distances keep the earlier train row.
      order = np.lexsort((cand_i, cand_d), axis=1)[:, :k]
      best_d, best_i = np.take_along_axis(cand_d, order, 1), np.take_along_axis(cand_i, order, 1)
    votes = train_labels[best_i]
    if k == 1:
      out[s:s + len(q)] = votes[:, 0]
    else:
      counts = np.zeros((len(q), num_classes), np.int64)
      np.add.at(counts, (np.arange(len(q))[:, None], votes), 1)
      out[s:s + len(q)] = counts.argmax(axis=1)
  return out


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k: int = 1, metric: str = 'cosine',
                 chunk: int = 1024, train_chunk: int = 16384) -> float:
  """Fraction of test rows whose k-NN vote (``metric``: 'cosine' or 'l2') over the train rows is their label."""
  pred = knn_predict(train_feats, train_labels, test_feats, k=k, metric=metric, chunk=chunk,
                     train_chunk=train_chunk)
  return float(np.mean(pred == np.asarray(test_labels)))


def extract(fn: Callable, data: Union[np.ndarray, Iterable[dict]], batch_size: int = 256):
  """Runs a (jitted) feature function over a dataset in batches; returns numpy features.

  ``data``: an array of inputs (N, ...): every batch is padded to ``batch_size`` (so ``fn`` compiles once) and
  the padding is dropped; returns features (N, ...). Or an iterable of batches (dicts with 'image' and
  optionally 'label', as ``data.Batches`` yields; stop it yourself, e.g. with ``itertools.islice``): returns
  ``(features, labels)`` (labels None when the batches have none).
  """
  if isinstance(data, np.ndarray) or hasattr(data, 'shape'):
    x = np.asarray(data)
    out = []
    for s in range(0, len(x), batch_size):
      b = x[s:s + batch_size]
      n = len(b)
      if n < batch_size:
        b = np.concatenate([b, np.repeat(b[-1:], batch_size - n, axis=0)], axis=0)
      out.append(np.asarray(fn(b))[:n])
    return np.concatenate(out, axis=0) if out else np.zeros((0,))
  feats, labels = [], []
  for batch in data:
    feats.append(np.asarray(fn(batch['image'])))
    if 'label' in batch:
      labels.append(np.asarray(batch['label']))
  feats = np.concatenate(feats, axis=0)
  return feats, (np.concatenate(labels, axis=0) if labels else None)
