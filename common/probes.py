"""The DCGAN paper's feature probes (section 5): "features from all layers", each max-pooled to a 4x4 grid,
flattened and concatenated (the 28672-d vector of its ImageNet model), and a regularised linear L2-SVM.

``svm_probe`` runs the protocol of sections 5.1 / 5.2: C chosen on a validation split taken from the train split
(the paper's 10,000), optionally ``labels_per_class`` class-balanced training examples in several random draws
(mean and standard deviation of the test error: SVHN's 1000 labels = 100 per class), accuracy on the test split.
Where the paper is silent the authors' ``svhn/svhn_semisup_analysis.py`` decides (docs/fidelity.md): their C grid,
one C for every draw (the lowest mean validation error over the draws), raw (unstandardised) features.
``probe_features`` gives a model's section-5 features: every layer of its D (or encoder), pooled.
"""
from __future__ import annotations

import time
import warnings
from typing import Callable, Optional

import numpy as np

from common import features as feats
from common.images import adapt
from common.splits import featurize, images_of, read_labels

AUTHORS_CS = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2)   # svhn_semisup_analysis.py's grid
DEFAULT_CS = AUTHORS_CS
PAPER_VAL_SIZE = 10_000         # section 5.2: "we split off a validation set of 10,000 examples"


def probe_features(model, state, x, net: Optional[str] = None, layer: Optional[str] = None,
                   pool: Optional[int] = feats.GRID):
  """Section 5.1 features of images x for any model: every sown layer of ``net`` (default the model's first
  feature net: D for a GAN, E for an encoder; or ``layer``, comma-separated), max-pooled to ``pool`` x ``pool``
  (None: not pooled), concatenated."""
  return model.features(state, x, net=net, layer=layer or '*', pool=pool)


def feature_fn(model, state, net=None, layer=None, pool=feats.GRID) -> Callable:
  return lambda x: probe_features(model, state, x, net=net, layer=layer, pool=pool)


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


def _svm(c: float, standardize: bool, seed: int):
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler
  from sklearn.svm import LinearSVC
  svm = LinearSVC(C=c, loss='squared_hinge', penalty='l2', dual=True, max_iter=1000, random_state=seed)
  return make_pipeline(StandardScaler(), svm) if standardize else svm


def _fit(clf, x, y):
  from sklearn.exceptions import ConvergenceWarning
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', ConvergenceWarning)
    return clf.fit(x, y)


def fit_svm(train_f, train_y, val_f, val_y, Cs=DEFAULT_CS, seed: int = 0, standardize: bool = False) -> dict:
  """A regularised linear L2-SVM (squared hinge loss, one-vs-rest, liblinear's dual coordinate descent: fast
  when examples are fewer than dimensions, as in the paper's 28672-d probe) for every C; keeps the one with the
  best validation accuracy (ties: the smaller C). ``standardize``: features scaled to unit variance on the train
  rows first (the authors' code does not). Returns ``{'clf', 'C', 'val_accuracy', 'val_accuracies'}``."""
  best, scores = None, {}
  for c in Cs:
    clf = _fit(_svm(c, standardize, seed), train_f, train_y)
    acc = float(np.mean(clf.predict(val_f) == val_y))
    scores[c] = acc
    if best is None or acc > best[1]:
      best = (clf, acc, c)
  return {'clf': best[0], 'C': best[2], 'val_accuracy': best[1], 'val_accuracies': scores}


def svm_probe(fn: Callable, train_source, test_source, *, resolution: int, load_size=None,
              channels: Optional[int] = None, labels_per_class: Optional[int] = None, draws: int = 1,
              val_size: Optional[int] = None, Cs=DEFAULT_CS, seed: int = 0, batch: int = 256,
              standardize: bool = False, choose_c: str = 'mean', refit: bool = True,
              log: Callable = print) -> dict:
  """The L2-SVM protocol on features ``fn(images)``.

  A validation split of ``val_size`` examples (default: the paper's 10,000, at most a fifth of the train split)
  is taken from the train split and chooses C. The SVM trains on the rest of the train split, or, with
  ``labels_per_class``, on that many class-balanced examples drawn from the rest, ``draws`` times with
  different seeds (section 5.2: 1000 labels = 100 per class on SVHN; Table 1's "400 per class"). Accuracy is on
  the whole test split, streamed in chunks (every draw's SVM scores each chunk).

  ``choose_c``: 'mean' (the authors': the C with the best mean validation accuracy over the draws, used for
  every draw) or 'per_draw'. ``refit``: with all labels, the final SVM is fitted again at the chosen C on the
  whole train split, validation examples included (the paper's CIFAR-10 row trains on all 50,000).
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
  fits = [fit_svm(feats[take(ids)], labels[take(ids)], fv, yv, Cs, seed, standardize) for ids in draw_ids]
  if choose_c == 'mean' and len(fits) > 1:
    mean_acc = {c: float(np.mean([f['val_accuracies'][c] for f in fits])) for c in Cs}
    best_c = max(Cs, key=lambda c: (mean_acc[c], -c))
    for f, ids in zip(fits, draw_ids):
      if f['C'] != best_c:
        f.update(clf=_fit(_svm(best_c, standardize, seed), feats[take(ids)], labels[take(ids)]), C=best_c,
                 val_accuracy=f['val_accuracies'][best_c])
  elif choose_c not in ('mean', 'per_draw'):
    raise ValueError(f"choose_c={choose_c!r}: use 'mean' or 'per_draw'")
  for d, f in enumerate(fits):
    log(f'draw {d + 1}/{draws}: {len(draw_ids[d])} training examples, C={f["C"]:g} '
        f'(validation accuracy {100 * f["val_accuracy"]:.2f}%)')
  if refit and not labels_per_class:
    draw_ids = [np.concatenate([draw_ids[0], val_ids])]
    fits[0]['clf'] = _fit(_svm(fits[0]['C'], standardize, seed), feats[take(draw_ids[0])],
                          labels[take(draw_ids[0])])
    log(f'refitted at C={fits[0]["C"]:g} on all {len(draw_ids[0])} train-split examples')
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


def real_batch_stats(model, state, source, net: Optional[str] = None, *, batches: int = 200, batch: int = 256,
                     seed: int = 0):
  """``state`` with ``net``'s batchnorm statistics recomputed on ``batches`` random batches of real images of
  ``source`` (the train split), as the authors extract features (``svhn_semisup_analysis.py``
  ``infer_bnorm_stats``): D's running averages come mostly from generated batches."""
  opts = model.data_options(eval=True)
  n = len(source)
  rng = np.random.default_rng(seed)
  ids = rng.permutation(n)[:min(n, batches * batch)]
  chunks = [np.sort(ids[s:s + batch]) for s in range(0, len(ids), batch)]

  def images():
    for c in chunks:
      x, _ = images_of(source, opts['resolution'], c, load_size=opts.get('load_size'))
      yield np.asarray(adapt(x, channels=model.channels))
  return model.recompute_batch_stats(state, images(), net or model.feature_nets[0])
