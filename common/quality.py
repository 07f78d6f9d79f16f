"""Sample quality: Frechet distance, KID, precision/recall and density/coverage of generated images against real
ones, on a pluggable feature network (``common.feature_net``: the project's own classifier or Inception-V3).

``real_statistics`` computes the feature mean/covariance and a bounded feature matrix of real images once and
caches them under ``<data_dir>/fid_stats/``; ``generated_features`` and ``quality`` score samples against them.
``TrainingEvaluator`` measures one metric periodically during training (``--eval_every``, ``--eval_metric``) and
says when it improved, for the loop's best checkpoint.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Optional, Sequence

import jax
import numpy as np

from common import data, feature_net, metrics, parallel
from common.progress import Progress
from common.splits import featurize

MAX_REAL = 50_000               # real images for sample-quality statistics (the usual 50k)
KEEP_FEATURES = 20_000          # real feature rows kept in the cache for KID / precision-recall
# Sample-quality metrics and whether lower is better.
LOWER_IS_BETTER = {'fid': True, 'kid': True, 'precision': False, 'recall': False, 'density': False,
                   'coverage': False}
QUALITY_METRICS = tuple(LOWER_IS_BETTER)


@dataclasses.dataclass
class RealStats:
  mu: np.ndarray
  sigma: np.ndarray
  feats: np.ndarray     # all rows, or a fixed random subset of KEEP_FEATURES of them
  n: int                # images the mean and covariance are over
  path: str             # the cache file
  cached: bool          # read from the cache (not computed now)


def stats_path(net, dataset: str, split: str, resolution: int, n: int, data_dir=None, load_size=None) -> str:
  tag = f'{split.replace("/", "_")}-r{resolution}' + (f'-l{load_size}' if load_size else '')
  return os.path.join(feature_net.data_root(data_dir), 'fid_stats', feature_net.dataset_key(dataset),
                      f'{tag}-{net.name}-n{n}.npz')


def real_statistics(net, dataset: str, split: str = 'train', *, resolution: int, load_size=None,
                    data_dir=None, manual_dir=None, max_examples: Optional[int] = MAX_REAL, batch: int = 256,
                    keep: int = KEEP_FEATURES, log: Optional[Callable] = print) -> RealStats:
  """Feature statistics of real images, computed once per (dataset, split, resolution, feature network, count)
  and cached in ``<data_dir>/fid_stats/<dataset>/<split>-r<res>-<net>-n<N>.npz``. Images are preprocessed as the
  models see them (shorter edge to ``resolution``, or ``load_size``, center crop); with ``max_examples`` below
  the split size a fixed random subset is used."""
  source, _ = data.open_source(dataset, split, data_dir=data_dir, manual_dir=manual_dir)
  n = min(len(source), max_examples or len(source))
  path = stats_path(net, dataset, split, resolution, n, data_dir, load_size)
  if os.path.exists(path):
    with np.load(path) as f:
      return RealStats(f['mu'], f['sigma'], f['feats'], int(f['n']), path, cached=True)
  t0 = time.time()
  ids = np.arange(len(source)) if n == len(source) else np.sort(
      np.random.default_rng(0).choice(len(source), n, replace=False))
  feats, _ = featurize(net, source, ids, resolution=resolution, load_size=load_size, batch=batch)
  mu, sigma = metrics.gaussian_stats(feats)
  kept = feats if len(feats) <= keep else feats[np.sort(np.random.default_rng(1).choice(len(feats), keep, False))]
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + '.tmp.npz'
  np.savez(tmp, mu=mu, sigma=sigma, feats=kept, n=n)
  os.replace(tmp, path)
  if log:
    log(f'real statistics of {dataset} {split} ({n} images, {net.name}) in {time.time() - t0:.1f}s -> {path}')
  return RealStats(mu, sigma, kept, n, path, cached=False)


def generated_features(net, sample: Callable, n: int, *, batch: int = 500, seed: int = 0) -> np.ndarray:
  """Features of ``n`` generated images: ``sample(key, batch) -> images`` (surplus of the last batch dropped)."""
  key = jax.random.PRNGKey(seed)
  out = []
  bar = Progress('generated samples', n)
  for b, s in enumerate(range(0, n, batch)):
    x = parallel.to_host(sample(jax.random.fold_in(key, b), batch))
    out.append(np.asarray(metrics.extract(net, x, batch), np.float32)[:n - s])
    bar.update(min(batch, n - s))
  bar.close()
  return np.concatenate(out)


def quality(real: RealStats, fake_feats, which: Sequence[str] = QUALITY_METRICS, *, kid_subsets: int = 100,
            kid_subset_size: int = 1000, k_pr: int = 3, k_dc: int = 5, seed: int = 0) -> dict:
  """Sample-quality metrics of generated features against real statistics: 'fid' (Frechet distance of the
  Gaussians), 'kid' (+ 'kid_std', 'kid_stderr' over subsets), 'precision'/'recall' (k_pr-NN manifolds),
  'density'/'coverage' (k_dc-NN balls of the real rows)."""
  unknown = [w for w in which if w not in LOWER_IS_BETTER]
  if unknown:
    raise ValueError(f'unknown metric(s) {unknown}: choose from {", ".join(QUALITY_METRICS)}')
  fake = np.asarray(fake_feats, np.float32)
  out = {}
  if 'fid' in which:
    out['fid'] = metrics.frechet_distance(real.mu, real.sigma, *metrics.gaussian_stats(fake))
  if 'kid' in which:
    k = metrics.kernel_distance(real.feats, fake, kid_subsets, kid_subset_size, seed=seed)
    out.update(kid=k['mean'], kid_std=k['std'], kid_stderr=k['stderr'])
  if 'precision' in which or 'recall' in which:
    out.update(metrics.precision_recall(real.feats, fake, k_pr))
  if 'density' in which or 'coverage' in which:
    out.update(metrics.density_coverage(real.feats, fake, k_dc))
  return out


class TrainingEvaluator:
  """``--eval_every``: measures ``config.eval_metric`` (and FID) of the run's samples against the training
  split on the feature network (``--inception_weights``, or the project's classifier from
  ``--feature_net_dir``/its default place, trained on first use), with the same latents every time, and keeps
  track of the best value."""

  def __init__(self, config, model, log: Callable = print):
    if config.eval.eval_metric not in LOWER_IS_BETTER:
      raise ValueError(f'--eval_metric={config.eval.eval_metric!r}: choose one of {", ".join(QUALITY_METRICS)}')
    self.config, self.model, self.log = config, model, log
    self.metric = config.eval.eval_metric
    self.lower_is_better = LOWER_IS_BETTER[self.metric]
    self.best: Optional[float] = None
    self.net = self.real = None

  def _setup(self) -> None:
    d, e = self.config.data, self.config.eval
    self.net = feature_net.open_net(dataset=d.dataset, data_dir=d.data_dir, manual_dir=d.manual_dir,
                                    feature_net_dir=e.feature_net_dir, inception_weights=e.inception_weights)
    self.real = real_statistics(self.net, d.dataset, d.split, resolution=self.model.resolution,
                                data_dir=d.data_dir, manual_dir=d.manual_dir, log=self.log)

  def measure(self, state) -> dict:
    """{'fid': ..., <eval_metric>: ...} of ``config.eval_samples`` samples of ``state``."""
    if self.net is None:
      self._setup()
    n, seed = self.config.eval.eval_samples, self.config.loop.seed
    feats = generated_features(self.net, lambda key, b: self.model.sample(state, key, b), n,
                               batch=min(500, n), seed=seed + 0xE7A1)
    which = ('fid',) if self.metric == 'fid' else ('fid', self.metric)
    return quality(self.real, feats, which, seed=seed)

  def improves(self, value: float) -> bool:
    if not np.isfinite(value):
      return False
    if self.best is None:
      return True
    return value < self.best if self.lower_is_better else value > self.best
