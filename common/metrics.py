"""Feature-space evaluation: k-NN accuracy, batched feature extraction, streaming 1-NN, sample-quality metrics.

``knn_accuracy`` is the BiGAN paper's Table 1 protocol (1-NN classification of the test set with the train
set as reference) in bounded memory: test rows are processed ``chunk`` at a time against ``train_chunk``
train rows at a time, keeping a running top-k, so 60k x 10k MNIST needs a few tens of MB. Distances are
computed in float32 with one matrix multiply per block (numpy's BLAS); ties in the vote go to the smallest
label, like scikit-learn's ``KNeighborsClassifier``.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Union

import numpy as np

from common.progress import Progress

METRICS = ('cosine', 'l2')


def _prepare(x, metric: str):
  x = np.asarray(x, np.float32).reshape(len(x), -1)
  if metric == 'cosine':
    n = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.maximum(n, 1e-12)
  return x


def knn_predict(train_feats, train_labels, test_feats, k: int = 1, metric: str = 'cosine', chunk: int = 1024,
                train_chunk: int = 16384, progress: Optional[str] = None) -> np.ndarray:
  """Majority label of the k nearest train rows for every test row (ties: smallest label); ``progress``
  names the work in progress lines (``common.progress``)."""
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
  bar = Progress(progress, len(test), unit='queries')
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
    bar.update(len(q))
  bar.close()
  return out


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k: int = 1, metric: str = 'cosine',
                 chunk: int = 1024, train_chunk: int = 16384, progress: Optional[str] = None) -> float:
  """Fraction of test rows whose k-NN vote (``metric``: 'cosine' or 'l2') over the train rows is their label."""
  pred = knn_predict(train_feats, train_labels, test_feats, k=k, metric=metric, chunk=chunk,
                     train_chunk=train_chunk, progress=progress)
  return float(np.mean(pred == np.asarray(test_labels)))


def extract(fn: Callable, data: Union[np.ndarray, Iterable[dict]], batch_size: int = 256,
            progress: Optional[str] = None):
  """Runs a (jitted) feature function over a dataset in batches; returns numpy features.

  ``data``: an array of inputs (N, ...): every batch is padded to ``batch_size`` (so ``fn`` compiles once) and
  the padding is dropped; returns features (N, ...). Or an iterable of batches (dicts with 'image' and
  optionally 'label', as ``data.Batches`` yields; stop it yourself, e.g. with ``itertools.islice``): returns
  ``(features, labels)`` (labels None when the batches have none). ``progress`` names the work in progress
  lines (arrays only).
  """
  if isinstance(data, np.ndarray) or hasattr(data, 'shape'):
    x = np.asarray(data)
    out = []
    bar = Progress(progress, len(x))
    for s in range(0, len(x), batch_size):
      b = x[s:s + batch_size]
      n = len(b)
      if n < batch_size:
        b = np.concatenate([b, np.repeat(b[-1:], batch_size - n, axis=0)], axis=0)
      out.append(np.asarray(fn(b))[:n])
      bar.update(n)
    bar.close()
    return np.concatenate(out, axis=0) if out else np.zeros((0,))
  feats, labels = [], []
  for batch in data:
    feats.append(np.asarray(fn(batch['image'])))
    if 'label' in batch:
      labels.append(np.asarray(batch['label']))
  feats = np.concatenate(feats, axis=0)
  return feats, (np.concatenate(labels, axis=0) if labels else None)


# -- streaming 1-NN (DCGAN supplementary 8.1: a classifier fitted on generated samples only) ------------------


class StreamingNearestNeighbour:
  """1-NN labels of fixed query rows (e.g. the real test set) among reference rows that arrive in batches.

  Keeps only a running best squared distance and label per query row, so the reference set (e.g. 10M
  generated samples) is never stored: memory is O(queries + one batch) whatever the number of references.
  The result equals ``knn_predict(all_refs, all_labels, queries, k=1, metric='l2')``: equal distances keep
  the earliest reference (argmin keeps the first within a batch, strict < keeps earlier batches).
  Distances are computed on the default JAX device (one matrix multiply per batch).
  """

  def __init__(self, queries):
    import jax.numpy as jnp
    q = np.asarray(queries, np.float32)
    self.queries = jnp.asarray(q.reshape(len(q), -1))
    self.best_d = jnp.full((len(q),), jnp.inf, jnp.float32)
    self.best_label = jnp.full((len(q),), -1, jnp.int32)
    self.seen = 0

  def update(self, refs, labels) -> None:
    """Adds a batch of reference rows (B, ...) with their labels (B,)."""
    import jax.numpy as jnp
    refs = jnp.asarray(refs, jnp.float32).reshape(len(labels), -1)
    if refs.shape[1] != self.queries.shape[1]:
      raise ValueError(f'reference rows have {refs.shape[1]} dims, queries {self.queries.shape[1]}')
    self.best_d, self.best_label = _nn_update(self.queries, self.best_d, self.best_label, refs,
                                              jnp.asarray(labels, jnp.int32))
    self.seen += len(labels)

  def predict(self) -> np.ndarray:
    if not self.seen:
      raise ValueError('no reference rows yet: call update() first')
    return np.asarray(self.best_label).astype(np.int64)

  def error(self, labels) -> float:
    """Fraction of query rows whose nearest reference has another label."""
    return float(np.mean(self.predict() != np.asarray(labels)))

  @property
  def nbytes(self) -> int:
    """Bytes held between batches (independent of the number of references seen)."""
    return int(self.queries.nbytes + self.best_d.nbytes + self.best_label.nbytes)


def _nn_update_impl(q, best_d, best_label, refs, labels):
  import jax.numpy as jnp
  # ||q - r||^2 = ||q||^2 - 2 q.r + ||r||^2; ||q||^2 is the same for every r of a query row: dropped.
  d = jnp.sum(refs * refs, axis=1)[None, :] - 2.0 * (q @ refs.T)
  j = jnp.argmin(d, axis=1)
  dj = jnp.take_along_axis(d, j[:, None], axis=1)[:, 0]
  better = dj < best_d
  return jnp.where(better, dj, best_d), jnp.where(better, labels[j], best_label)


def _nn_update(*args):
  import jax
  global _nn_update_jit
  if _nn_update_jit is None:
    _nn_update_jit = jax.jit(_nn_update_impl)
  return _nn_update_jit(*args)


_nn_update_jit = None


# -- sample quality: Frechet distance, kernel distance, k-NN manifold precision/recall and density/coverage ----


def gaussian_stats(feats) -> tuple[np.ndarray, np.ndarray]:
  """Mean and (unbiased) covariance of feature rows, in float64."""
  f = np.asarray(feats, np.float64).reshape(len(feats), -1)
  if len(f) < 2:
    raise ValueError(f'need at least 2 feature rows for a covariance, got {len(f)}')
  return f.mean(axis=0), np.cov(f, rowvar=False)


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh((a + a.T) / 2)
  return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2) (FID on Inception features):

  ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)).

  tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric PSD matrix
  S1^(1/2) S2 S1^(1/2) (the same eigenvalues as S1 S2), which stays real and needs no regularising offset.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
    raise ValueError(f'mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}')
  r = _psd_sqrt(s1)
  eig = np.linalg.eigvalsh(r @ s2 @ r)
  tr_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
  diff = mu1 - mu2
  return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt, 0.0))


def polynomial_kernel(x, y, degree: int = 3, coef0: float = 1.0):
  """(x.y / dims + coef0)^degree, the kernel of the kernel inception distance."""
  return (x @ y.T / x.shape[1] + coef0) ** degree


def kernel_distance(real, fake, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
                    seed: int = 0) -> dict:
  """KID (Binkowski et al., 2018): the unbiased estimate of squared MMD with the polynomial kernel, averaged over
  ``subsets`` random subsets of ``subset_size`` rows of each set (capped at the smaller set).

  Returns ``{'mean', 'std', 'stderr', 'subset_size', 'subsets'}``; ``stderr = std / sqrt(subsets)``. The
  estimate is unbiased: about 0 (possibly negative) for two samples of one distribution. A set compared with
  itself is split into two disjoint subsets each time (independent subsets of one finite set would share rows
  and bias the estimate below 0).
  """
  x = np.asarray(real, np.float64).reshape(len(real), -1)
  y = np.asarray(fake, np.float64).reshape(len(fake), -1)
  if x.shape[1] != y.shape[1]:
    raise ValueError(f'real features have {x.shape[1]} dims, generated {y.shape[1]}')
  same = x.shape == y.shape and np.array_equal(x, y)
  m = min(subset_size, len(x) // 2 if same else len(x), len(y))
  if m < 2:
    raise ValueError(f'need at least 2 rows in each set for KID, got {len(x)} and {len(y)}')
  rng = np.random.default_rng(seed)
  values = np.empty(subsets)
  for s in range(subsets):
    if same:
      ids = rng.choice(len(x), 2 * m, replace=False)
      a, b = x[ids[:m]], x[ids[m:]]
    else:
      a = x[rng.choice(len(x), m, replace=False)]
      b = y[rng.choice(len(y), m, replace=False)]
    kxx, kyy, kxy = (polynomial_kernel(a, a, degree), polynomial_kernel(b, b, degree),
                     polynomial_kernel(a, b, degree))
    values[s] = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())
  std = float(values.std(ddof=1)) if subsets > 1 else 0.0
  return {'mean': float(values.mean()), 'std': std, 'stderr': std / np.sqrt(subsets), 'subset_size': m,
          'subsets': subsets}


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  d = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :]
  return np.maximum(d, 0)


def knn_radii(x, k: int, chunk: int = 1024) -> np.ndarray:
  """Distance from every row of x to its k-th nearest other row (the row itself excluded)."""
  x = np.asarray(x, np.float32).reshape(len(x), -1)
  if not 1 <= k < len(x):
    raise ValueError(f'k={k} must be between 1 and the number of rows - 1 ({len(x) - 1})')
  out = np.empty(len(x), np.float32)
  for s in range(0, len(x), chunk):
    d = _sq_dists(x[s:s + chunk], x)
    out[s:s + chunk] = np.sqrt(np.partition(d, k, axis=1)[:, k])   # index 0 is the row itself (distance 0)
  return out


def _ball_counts(queries, centres, radii, chunk: int = 1024) -> np.ndarray:
  """For every query row: how many of the balls (centre row, radius) contain it."""
  counts = np.empty(len(queries), np.int64)
  r2 = radii.astype(np.float32) ** 2
  for s in range(0, len(queries), chunk):
    counts[s:s + chunk] = (_sq_dists(queries[s:s + chunk], centres) <= r2[None, :]).sum(1)
  return counts


def precision_recall(real, fake, k: int = 3) -> dict:
  """Improved precision and recall (Kynkaanniemi et al., 2019): each set's manifold is the union of balls around
  its rows reaching their k-th nearest neighbour. Precision: fraction of generated rows inside the real
  manifold; recall: fraction of real rows inside the generated one. Identical sets give 1 and 1."""
  x = np.asarray(real, np.float32).reshape(len(real), -1)
  y = np.asarray(fake, np.float32).reshape(len(fake), -1)
  in_real = _ball_counts(y, x, knn_radii(x, k))
  in_fake = _ball_counts(x, y, knn_radii(y, k))
  return {'precision': float(np.mean(in_real > 0)), 'recall': float(np.mean(in_fake > 0))}


def density_coverage(real, fake, k: int = 5) -> dict:
  """Density and coverage (Naeem et al., 2020) on the real rows' k-NN balls. Density: mean number of real balls
  holding a generated row, over k (about 1 for identical distributions); coverage: fraction of real rows whose
  ball holds their nearest generated row."""
  x = np.asarray(real, np.float32).reshape(len(real), -1)
  y = np.asarray(fake, np.float32).reshape(len(fake), -1)
  radii = knn_radii(x, k)
  counts = _ball_counts(y, x, radii)
  d_nearest = np.empty(len(x), np.float32)     # distance from each real row to its nearest generated row
  for s in range(0, len(x), 1024):
    d_nearest[s:s + 1024] = np.sqrt(_sq_dists(x[s:s + 1024], y).min(1))
  return {'density': float(counts.sum() / (k * len(y))), 'coverage': float(np.mean(d_nearest <= radii))}
