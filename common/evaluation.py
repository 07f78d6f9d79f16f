"""Evaluation of trained runs: the DCGAN paper's feature probes and nearest-neighbour test, and sample quality.

Feature probes (DCGAN section 5): ``pool_concat`` is the one implementation of "every layer max-pooled to a 4x4
spatial grid, flattened and concatenated" (the paper's 28672-d vector for its ImageNet model);
``sown_features`` applies it to the activations a network sows as ``'<layer>_act'``; ``model_features``
reaches it for any model (DCGAN's D via ``DCGAN.features``; BiGAN's encoder or a plain D by module).
``svm_probe`` runs the linear L2-SVM protocol of sections 5.1 / 5.2: C chosen on a validation split taken from
the train split, optionally ``labels_per_class`` class-balanced training examples in several random draws
(mean and standard deviation of the test error), test accuracy on the test split.

Nearest-neighbour test (supplementary 8.1, Table 3): ``nn_generated`` streams class-conditional samples through
a running 1-NN (``metrics.StreamingNearestNeighbour``): memory does not grow with the number of samples.

Sample quality: ``real_statistics`` (feature mean/covariance and a bounded feature matrix of real images,
cached under ``<data_dir>/fid_stats/``), ``generated_features`` and ``quality`` (Frechet distance, KID,
precision/recall, density/coverage) on a pluggable feature network (``common.feature_net``: the project's own
classifier or Inception-V3). ``TrainingEvaluator`` measures one of them periodically during training
(``--eval_every``, ``--eval_metric``) and says when it improved, for the loop's best checkpoint.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
import warnings
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from common import metrics

GRID = 4                        # section 5.1: "maxpooling each layers representation to produce a 4 x 4 spatial grid"
DEFAULT_CS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
PAPER_VAL_SIZE = 10_000         # section 5.2: "we split off a validation set of 10,000 examples"
MAX_REAL = 50_000               # real images for sample-quality statistics (the usual 50k)
KEEP_FEATURES = 20_000          # real feature rows kept in the cache for KID / precision-recall
# Sample-quality metrics and whether lower is better.
LOWER_IS_BETTER = {'fid': True, 'kid': True, 'precision': False, 'recall': False, 'density': False,
                   'coverage': False}
QUALITY_METRICS = tuple(LOWER_IS_BETTER)


# -- features: 4x4 max-pool of every layer, concatenated ------------------------------------------------------

def adaptive_max_pool(h, grid: int = GRID):
  """(N, H, W, C) -> (N, grid, grid, C): the max over each cell of a grid x grid partition of the map.

  Cell (i, j) covers rows [floor(i H / grid), ceil((i + 1) H / grid)) and the same for columns (PyTorch's
  adaptive max pool); for H divisible by grid these are the non-overlapping H/grid x W/grid windows. Maps
  smaller than the grid repeat their values, so every layer always gives grid * grid * C features.
  """
  n, hh, ww, c = h.shape
  if hh % grid == 0 and ww % grid == 0:
    return h.reshape(n, grid, hh // grid, grid, ww // grid, c).max(axis=(2, 4))
  rows = [(i * hh // grid, -(-(i + 1) * hh // grid)) for i in range(grid)]
  cols = [(j * ww // grid, -(-(j + 1) * ww // grid)) for j in range(grid)]
  return jnp.stack([jnp.stack([h[:, r0:r1, c0:c1].max(axis=(1, 2)) for c0, c1 in cols], axis=1)
                    for r0, r1 in rows], axis=1)


def pool_concat(acts: Sequence, grid: Optional[int] = GRID):
  """Every 4-D activation (N, H, W, C) max-pooled to a grid x grid map (``grid`` None or 0: not pooled), every
  activation flattened, all concatenated: (N, sum of dims), float32."""
  parts = []
  for a in acts:
    if a.ndim == 4 and grid:
      a = adaptive_max_pool(a, grid)
    parts.append(a.reshape(a.shape[0], -1).astype(jnp.float32))
  return jnp.concatenate(parts, axis=-1)


def sown_features(module, variables, args: tuple, layers: Optional[Sequence[str]] = None,
                  grid: Optional[int] = GRID):
  """``module.apply(variables, *args, train=False)``'s sown activations -> ``pool_concat`` features.

  ``layers``: names of sown activations (default: every ``'*_act'`` one, in network order). Jitted per
  (module, layers, grid).
  """
  return _sown_features(module, tuple(layers) if layers else None, grid or None, variables, args)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _sown_features(module, layers, grid, variables, args):
  _, inter = module.apply(variables, *args, train=False, mutable=['intermediates'])
  acts = _flat_intermediates(inter)
  names = [_resolve(n, acts) for n in layers] if layers else [k for k in acts if k.endswith('_act')]
  return pool_concat([acts[n] for n in names], grid)


def _flat_intermediates(inter) -> dict:
  """{'conv1_act': array, ...}; activations sown by submodules get 'sub/...' names (network order kept)."""
  from flax import traverse_util
  flat = traverse_util.flatten_dict(dict(inter['intermediates']), sep='/')
  return {k: v[0] for k, v in flat.items()}


def _resolve(name: str, acts: dict) -> str:
  if name in acts:
    return name
  hits = [k for k in acts if k.rsplit('/', 1)[-1] == name]
  if len(hits) != 1:
    raise ValueError(f'unknown feature layer {name!r}: choose from {", ".join(acts)}')
  return hits[0]


def sown_layers(module, variables, args: tuple) -> dict:
  """{name: shape} of every activation the module sows (no computation: shapes only)."""
  _, inter = jax.eval_shape(lambda v, a: module.apply(v, *a, train=False, mutable=['intermediates']),
                            variables, args)
  return {k: tuple(v.shape) for k, v in _flat_intermediates(inter).items()}


def _split_layers(layer: Optional[str]):
  return tuple(s for s in layer.split(',') if s) if layer else None


def _resize(x, size: int):
  if x.shape[1] == size and x.shape[2] == size:
    return x
  return jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), 'linear', antialias=True)


def default_net(model) -> str:
  """'E' for models with an encoder, else 'D'."""
  nets = model.networks()
  return 'E' if isinstance(nets, dict) and 'E' in nets else 'D'


def model_features(model, state, x, net: Optional[str] = None, layer: Optional[str] = None,
                   pool: Optional[int] = GRID):
  """Section 5.1 features of images x for any model of this project: ``net`` 'D' (DCGAN, cdcgan's needs labels
  so is refused, mlp_gan, or a BiGAN-family plain D) or 'E' (BiGAN-family encoders); every ``'*_act'`` layer
  (or ``layer``, comma-separated) max-pooled to ``pool`` x ``pool`` (None: not pooled), concatenated."""
  net = net or default_net(model)
  nets = model.networks()
  if not isinstance(nets, dict):                       # DCGAN family: (G, D)
    if net != 'D':
      raise ValueError(f'{model.config.model} has no encoder: use the discriminator\'s features (--net=D)')
    if getattr(model, 'num_classes', 0):
      raise ValueError(f'{model.config.model} has a label-conditioned D, which needs the label of each image: '
                       'probe an unconditional model')
    return model.features(state, x, layer=layer, pool=pool)
  if net == 'E':
    if 'E' not in nets:
      raise ValueError(f'{model.config.model} has no encoder: use --net=D')
    return sown_features(nets['E'], state.variables('E'), (_resize(jnp.asarray(x), model.encoder_resolution),),
                         _split_layers(layer), pool)
  if getattr(model, 'D_KIND', None) != 'plain':
    raise ValueError(f'{model.config.model} has no plain discriminator D(x) to take features from: use --net=E')
  return sown_features(nets['D'], state.variables('D'), (_resize(jnp.asarray(x), model.resolution),),
                       _split_layers(layer), pool)


def feature_fn(model, state, net=None, layer=None, pool=GRID) -> Callable:
  return lambda x: model_features(model, state, x, net=net, layer=layer, pool=pool)


# -- data -----------------------------------------------------------------------------------------------------

def match_channels(x: np.ndarray, channels: int) -> np.ndarray:
  """NHWC images -> ``channels`` channels: gray replicated to RGB, RGB to gray by luma."""
  c = x.shape[-1]
  if c == channels:
    return x
  if c == 1 and channels == 3:
    return np.repeat(x, 3, axis=-1)
  if c == 3 and channels == 1:
    from common.feature_net import LUMA
    return (x * np.asarray(LUMA, x.dtype)).sum(-1, keepdims=True)
  raise ValueError(f'cannot adapt {c}-channel images to {channels} channels')


def adaptation_note(dataset: str, data_channels: int, data_size, model_channels: int, resolution: int) -> str:
  """A one-line note when a dataset's images are adapted to a model trained on other data ('' when not)."""
  notes = []
  if data_channels != model_channels:
    notes.append('gray replicated to RGB' if data_channels == 1 else 'RGB converted to gray (luma)')
  if data_size and tuple(data_size[:2]) != (resolution, resolution):
    notes.append(f'{data_size[0]}x{data_size[1]} resized (shorter edge) and center-cropped to '
                 f'{resolution}x{resolution}')
  if not notes:
    return ''
  return (f'note: {dataset} images ({data_channels} channel{"s" if data_channels > 1 else ""}) adapted to the '
          f'model ({model_channels} channel{"s" if model_channels > 1 else ""}, {resolution}x{resolution}): '
          + '; '.join(notes))


def read_labels(source) -> np.ndarray:
  """All labels of a source, without decoding images."""
  out = []
  for s in range(0, len(source), 8192):
    out.extend(int(r['label']) for r in source.read_records(range(s, min(s + 8192, len(source)))))
  return np.asarray(out, np.int64)


def validation_split(n: int, val_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(validation ids, remaining ids), both sorted: a fixed random ``val_size`` of range(n)."""
  if not 0 < val_size < n:
    raise ValueError(f'--val_size={val_size} must be between 1 and the train split size - 1 ({n - 1})')
  perm = np.random.default_rng([seed, 0x7A1]).permutation(n)
  return np.sort(perm[:val_size]), np.sort(perm[val_size:])


def balanced_draw(labels, per_class: int, rng, num_classes: Optional[int] = None) -> np.ndarray:
  """Positions (sorted) of exactly ``per_class`` random examples of every class (0 .. num_classes - 1)."""
  labels = np.asarray(labels)
  rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
  num_classes = num_classes or int(labels.max()) + 1
  out = []
  for c in range(num_classes):
    where = np.flatnonzero(labels == c)
    if len(where) < per_class:
      raise ValueError(f'class {c} has {len(where)} examples outside the validation split, fewer than '
                       f'--labels_per_class={per_class}: lower it or --val_size')
    out.append(rng.choice(where, per_class, replace=False))
  return np.sort(np.concatenate(out))


def featurize(fn: Callable, source, ids, *, resolution: int, load_size=None, channels: Optional[int] = None,
              batch: int = 256, chunk: int = 4096):
  """(features (len(ids), dims) float32, labels) of examples ``ids`` of ``source``: images preprocessed at
  ``resolution`` (center crop), adapted to ``channels``, through ``fn`` in batches of ``batch``."""
  from common.feature_net import load_split_images
  ids = np.asarray(ids, np.int64)
  feats, labels = [], []
  for s in range(0, len(ids), chunk):
    x, y = load_split_images(source, resolution, ids[s:s + chunk], load_size=load_size)
    if channels:
      x = match_channels(x, channels)
    feats.append(np.asarray(metrics.extract(fn, x, batch), np.float32))
    labels.append(y)
  return np.concatenate(feats), np.concatenate(labels)


# -- linear L2-SVM probe (sections 5.1, 5.2) -------------------------------------------------------------------

def fit_svm(train_f, train_y, val_f, val_y, Cs=DEFAULT_CS, seed: int = 0) -> dict:
  """A regularised linear L2-SVM (squared hinge loss, one-vs-rest, liblinear's dual coordinate descent: fast
  when examples are fewer than dimensions, as in the paper's 28672-d probe; features standardised on the train
  rows) for every C; keeps the one with the best validation accuracy (ties: the smaller C). Returns
  ``{'clf', 'C', 'val_accuracy', 'val_accuracies'}``."""
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler
  from sklearn.svm import LinearSVC
  best, scores = None, {}
  for c in Cs:
    clf = make_pipeline(StandardScaler(), LinearSVC(C=c, loss='squared_hinge', penalty='l2', dual=True,
                                                    max_iter=1000, random_state=seed))
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', ConvergenceWarning)
      clf.fit(train_f, train_y)
    acc = float(np.mean(clf.predict(val_f) == val_y))
    scores[c] = acc
    if best is None or acc > best[1]:
      best = (clf, acc, c)
  return {'clf': best[0], 'C': best[2], 'val_accuracy': best[1], 'val_accuracies': scores}


def svm_probe(fn: Callable, train_source, test_source, *, resolution: int, load_size=None,
              channels: Optional[int] = None, labels_per_class: Optional[int] = None, draws: int = 1,
              val_size: Optional[int] = None, Cs=DEFAULT_CS, seed: int = 0, batch: int = 256,
              log: Callable = print) -> dict:
  """The L2-SVM protocol on features ``fn(images)``.

  A validation split of ``val_size`` examples (default: the paper's 10,000, at most a fifth of the train split)
  is taken from the train split and chooses C. The SVM trains on the rest of the train split, or, with
  ``labels_per_class``, on that many class-balanced examples drawn from the rest, ``draws`` times with
  different seeds (section 5.2: 1000 labels = 100 per class on SVHN; Table 1's "400 per class"). Accuracy is on
  the whole test split, streamed in chunks (every draw's SVM scores each chunk).
  """
  t0 = time.time()
  train_labels = read_labels(train_source)
  n = len(train_labels)
  if val_size is None:
    val_size = min(PAPER_VAL_SIZE, n // 5)
  val_ids, rest = validation_split(n, val_size, seed)
  num_classes = int(train_labels.max()) + 1
  if labels_per_class:
    draw_ids = [rest[balanced_draw(train_labels[rest], labels_per_class, np.random.default_rng([seed, d]),
                                   num_classes)] for d in range(draws)]
  else:
    draws, draw_ids = 1, [rest]
  needed = np.unique(np.concatenate([val_ids] + draw_ids))
  opts = dict(resolution=resolution, load_size=load_size, channels=channels, batch=batch)
  log(f'extracting features of {len(needed)} train-split examples ({len(val_ids)} validation)')
  feats, labels = featurize(fn, train_source, needed, **opts)
  pos = {i: p for p, i in enumerate(needed)}
  take = lambda ids: np.fromiter((pos[i] for i in ids), np.int64, len(ids))  # noqa: E731
  fv, yv = feats[take(val_ids)], labels[take(val_ids)]
  fits = []
  for d, ids in enumerate(draw_ids):
    fit = fit_svm(feats[take(ids)], labels[take(ids)], fv, yv, Cs, seed)
    fits.append(fit)
    log(f'draw {d + 1}/{draws}: {len(ids)} training examples, C={fit["C"]:g} '
        f'(validation accuracy {100 * fit["val_accuracy"]:.2f}%)')
  del feats
  correct, n_test = np.zeros(len(fits), np.int64), len(test_source)
  for s in range(0, n_test, 4096):
    ft, yt = featurize(fn, test_source, np.arange(s, min(s + 4096, n_test)), **opts)
    for j, fit in enumerate(fits):
      correct[j] += int(np.sum(fit['clf'].predict(ft) == yt))
  acc = correct / n_test
  err = 1.0 - acc
  ddof = 1 if len(acc) > 1 else 0
  return {'accuracy': acc.tolist(), 'error': err.tolist(), 'mean_accuracy': float(acc.mean()),
          'std_accuracy': float(acc.std(ddof=ddof)), 'mean_error': float(err.mean()),
          'std_error': float(err.std(ddof=ddof)), 'C': [f['C'] for f in fits],
          'val_accuracy': [f['val_accuracy'] for f in fits], 'n_train': [len(i) for i in draw_ids],
          'n_val': len(val_ids), 'n_test': n_test, 'dims': int(fv.shape[1]), 'draws': draws,
          'labels_per_class': labels_per_class, 'seconds': time.time() - t0}


# -- nearest-neighbour classification by generated samples (supplementary 8.1) ---------------------------------

def nn_generated(generate: Callable, num_classes: int, samples_per_class: int, test_x, test_y, *,
                 batch: int = 1000, seed: int = 0, log: Optional[Callable] = None) -> dict:
  """Test error of a 1-NN classifier (Euclidean, pixel space) whose only reference set is
  ``samples_per_class`` generated samples of each class: ``generate(key, labels) -> images``.

  Samples are produced ``batch`` at a time (labels cycling over the classes, so every class gets exactly
  ``samples_per_class``) and folded into a running nearest neighbour per test example; nothing else is kept, so
  memory does not depend on the number of samples (10M fit). Every call to ``generate`` has ``batch`` labels
  (one compilation); the surplus of the last batch is dropped.
  """
  stream = metrics.StreamingNearestNeighbour(np.asarray(test_x).reshape(len(test_x), -1))
  total = num_classes * samples_per_class
  key = jax.random.PRNGKey(seed)
  t0, last = time.time(), time.time()
  for b, s in enumerate(range(0, total, batch)):
    y = np.arange(s, s + batch) % num_classes
    images = generate(jax.random.fold_in(key, b), jnp.asarray(y, jnp.int32))
    k = min(batch, total - s)
    stream.update(jnp.asarray(images)[:k], y[:k])
    if log and time.time() - last > 30:
      log(f'{s + k:,}/{total:,} samples, {(s + k) / (time.time() - t0):,.0f}/s')
      last = time.time()
  return {'error': stream.error(test_y), 'samples': total, 'samples_per_class': samples_per_class,
          'stream_bytes': stream.nbytes, 'seconds': time.time() - t0}


def generator_fn(model, state, running: bool = True) -> Callable:
  """``(key, labels) -> images`` of a label-conditioned model (cdcgan, mlp_gan)."""
  if not getattr(model, 'num_classes', 0):
    raise ValueError(f'{model.config.model} is not label-conditioned: train --model=cdcgan or --model=mlp_gan')
  from dcgan_jax.train import sample_z

  def generate(key, y):
    return model.generate(state, sample_z(key, y.shape[0], model.z_dim), y, use_running_average=running)
  return generate


# -- sample quality ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class RealStats:
  mu: np.ndarray
  sigma: np.ndarray
  feats: np.ndarray     # all rows, or a fixed random subset of KEEP_FEATURES of them
  n: int                # images the mean and covariance are over
  path: str             # the cache file
  cached: bool          # read from the cache (not computed now)


def stats_path(net, dataset: str, split: str, resolution: int, n: int, data_dir=None, load_size=None) -> str:
  from common.feature_net import data_root, dataset_key
  tag = f'{split.replace("/", "_")}-r{resolution}' + (f'-l{load_size}' if load_size else '')
  return os.path.join(data_root(data_dir), 'fid_stats', dataset_key(dataset), f'{tag}-{net.name}-n{n}.npz')


def real_statistics(net, dataset: str, split: str = 'train', *, resolution: int, load_size=None,
                    data_dir=None, manual_dir=None, max_examples: Optional[int] = MAX_REAL, batch: int = 256,
                    keep: int = KEEP_FEATURES, log: Optional[Callable] = print) -> RealStats:
  """Feature statistics of real images, computed once per (dataset, split, resolution, feature network, count)
  and cached in ``<data_dir>/fid_stats/<dataset>/<split>-r<res>-<net>-n<N>.npz``. Images are preprocessed as the
  models see them (shorter edge to ``resolution``, or ``load_size``, center crop); with ``max_examples`` below
  the split size a fixed random subset is used."""
  from common import data
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


def _to_host(x) -> np.ndarray:
  return np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) and not x.is_fully_addressable \
      else np.asarray(x)


def generated_features(net, sample: Callable, n: int, *, batch: int = 500, seed: int = 0) -> np.ndarray:
  """Features of ``n`` generated images: ``sample(key, batch) -> images`` (surplus of the last batch dropped)."""
  key = jax.random.PRNGKey(seed)
  out = []
  for b, s in enumerate(range(0, n, batch)):
    x = _to_host(sample(jax.random.fold_in(key, b), batch))
    out.append(np.asarray(metrics.extract(net, x, batch), np.float32)[:n - s])
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
    if config.eval_metric not in LOWER_IS_BETTER:
      raise ValueError(f'--eval_metric={config.eval_metric!r}: choose one of {", ".join(QUALITY_METRICS)}')
    self.config, self.model, self.log = config, model, log
    self.metric = config.eval_metric
    self.lower_is_better = LOWER_IS_BETTER[self.metric]
    self.best: Optional[float] = None
    self.net = self.real = None

  def _setup(self) -> None:
    from common import feature_net
    c = self.config
    self.net = feature_net.open_net(dataset=c.dataset, data_dir=c.data_dir, manual_dir=c.manual_dir,
                                    feature_net_dir=c.feature_net_dir, inception_weights=c.inception_weights)
    self.real = real_statistics(self.net, c.dataset, c.split, resolution=self.model.resolution,
                                data_dir=c.data_dir, manual_dir=c.manual_dir, log=self.log)

  def measure(self, state) -> dict:
    """{'fid': ..., <eval_metric>: ...} of ``config.eval_samples`` samples of ``state``."""
    if self.net is None:
      self._setup()
    n = self.config.eval_samples
    feats = generated_features(self.net, lambda key, b: self.model.sample(state, key, b), n,
                               batch=min(500, n), seed=self.config.seed + 0xE7A1)
    which = ('fid',) if self.metric == 'fid' else ('fid', self.metric)
    return quality(self.real, feats, which, seed=self.config.seed)

  def improves(self, value: float) -> bool:
    if not np.isfinite(value):
      return False
    if self.best is None:
      return True
    return value < self.best if self.lower_is_better else value > self.best

