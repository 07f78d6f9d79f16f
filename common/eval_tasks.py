"""The evaluations ``launch/evaluate.py`` runs on a trained run, each printing its table beside the paper's:

- ``knn``: BiGAN Table 1's k-NN protocol in the run's feature space (E(x) and E's last hidden layer, or D's);
- ``svm``: the DCGAN paper's section-5 probe (every layer 4x4-pooled, linear L2-SVM; ``common.probes``);
- ``nn_generated``: DCGAN supplementary 8.1 / Table 3, 1-NN on generated samples only (``common.nn_generated``);
- ``quality``: FID, KID, precision/recall, density/coverage (``common.quality``);
- ``train_feature_net``: the project's classifier for the quality metrics (``common.feature_net``).

Each takes ``a``, an object with the command-line fields (``Request`` or an ``argparse.Namespace``).
"""
from __future__ import annotations

import os
import time

import jax
import numpy as np

from common import checkpoint, data, feature_net, metrics, nn_generated, parallel, probes, quality, splits

# DCGAN paper, Table 1 (CIFAR-10, D trained on ImageNet-1k) and Table 2 (SVHN, 1000 labels): (rows, accuracy %, std).
PAPER_SVM = (('CIFAR-10', 'all labels (50,000)', 82.8, None), ('CIFAR-10', '400 per class', 73.8, 0.4),
             ('SVHN', '1000 labels (100 per class)', 100 - 22.48, None))
# DCGAN paper, Table 3 (MNIST nearest-neighbour test error %): (model, @50K samples, @10M samples).
PAPER_NN = (('AlignMNIST', None, 1.4), ('InfiMNIST', None, 2.6), ('Real Data', 3.1, None), ('GAN', 6.28, 5.65),
            ('DCGAN', 2.98, 1.48))



def feature_fn(model, state, net=None, layer=None):
  """x -> flattened features of a trained model in network ``net`` (default the model's first feature net:
  E for encoder models, D for GANs) at ``layer`` (default the net's default feature layer)."""
  return lambda x: model.features(state, x, net=net, layer=layer)


# -- --eval=... ----------------------------------------------------------------------------------------------

def load_run(a):
  """(model, state on one device, config) of --workdir (its best/ with --best; a fresh init with --random_init)."""
  workdir = a.workdir
  if a.best:
    workdir = os.path.join(a.workdir, 'best')
    if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
      raise FileNotFoundError(f'no best checkpoint in {workdir}: train with --eval_every=N (and --eval_metric) to '
                              'keep one')
  model, state, config = checkpoint.load(workdir, a.step)
  if a.random_init:
    state = jax.jit(model.init)(jax.random.PRNGKey(a.seed))
  return model, parallel.on_one_device(state), config


def _what(config, state, a) -> str:
  return f'{config.model.name} ' + ('random init' if a.random_init else f'step {int(state.step)}' + (' (best)' if a.best
                                                                                                  else ''))


def _running(a):
  """--batch_stats as ``use_running_average``: True, False, or None (the run's --sample_bn)."""
  return None if a.batch_stats is None else a.batch_stats == 'running'


def _data(a, config):
  """(dataset, data_dir, manual_dir): the flags, else the run's."""
  d = config.data
  return a.dataset or d.dataset, a.data_dir or d.data_dir, a.manual_dir or d.manual_dir


def eval_knn(a) -> dict:
  """BiGAN Table 1's protocol on one run: k-NN accuracy of the test split on the train split in the run's feature
  space; for encoder models both E(x) (the authors' NNC_e) and E's last hidden layer (NNC_e-)."""
  model, state, config = load_run(a)
  dataset, dd, md = _data(a, config)
  opts = model.data_options(eval=True)
  train = splits.load_split(dataset, 'train', opts, dd, md)
  test = splits.load_split(dataset, 'test', opts, dd, md)
  what = (f'{a.metric}, {dataset}: {len(train[1])} train / {len(test[1])} test, {config.model.name} step '
          f'{int(state.step)}')
  out = {}
  hidden = _hidden_layer(model, a)
  if hidden:   # the authors print both: NNC_e- (E's last hidden layer), then NNC_e (E(x))
    out[hidden] = splits.knn_accuracy(feature_fn(model, state, 'E', hidden), train, test, a.metric, a.k, a.eval_batch)
    print(f'{a.k}-NN test accuracy on E\'s last hidden layer {hidden} ({what}): {out[hidden]:.2f}%')
  out['default'] = splits.knn_accuracy(feature_fn(model, state, a.net, a.layer), train, test, a.metric, a.k,
                                       a.eval_batch)
  print(f'{a.k}-NN test accuracy ({what}): {out["default"]:.2f}%')
  return out


def _hidden_layer(model, a):
  """E's last hidden layer when the default E(x) features are asked for and it is a different space, else None."""
  if a.layer or not model.has_encoder or (a.net or model.feature_nets[0]) != 'E':
    return None
  hidden = model.hidden_feature_layer()
  return hidden if hidden != model.default_feature_layer('E') else None


def eval_svm(a) -> dict:
  """Section 5 feature probe: 4x4-pooled layers + linear L2-SVM; prints our row beside the paper's."""
  model, state, config = load_run(a)
  dataset, dd, md = _data(a, config)
  train_src, info = data.open_source(dataset, 'train', data_dir=dd, manual_dir=md)
  test_src, _ = data.open_source(dataset, 'test', data_dir=dd, manual_dir=md)
  if not info.num_classes:
    raise ValueError(f'--eval=svm needs a labelled dataset; {dataset} has no labels')
  opts = model.data_options(eval=True)
  note = probes.adaptation_note(info.name, info.channels, train_src.image_shape, model.channels,
                                    opts['resolution'])
  if note:
    print(note)
  if a.bn_stats == 'real' and not a.random_init:
    state = probes.real_batch_stats(model, state, train_src, a.net, batches=a.bn_batches, batch=a.eval_batch)
  fn = probes.feature_fn(model, state, a.net, a.layer, a.pool or None)
  draws = (a.draws or 5) if a.labels_per_class else 1
  cs = tuple(float(c) for c in a.svm_C.split(',')) if a.svm_C else probes.DEFAULT_CS
  r = probes.svm_probe(fn, train_src, test_src, resolution=opts['resolution'], load_size=opts.get('load_size'),
                       channels=model.channels, labels_per_class=a.labels_per_class, draws=draws,
                       val_size=a.val_size, Cs=cs, seed=a.seed, batch=a.eval_batch,
                       standardize=a.svm_standardize, choose_c=a.svm_choose_c, refit=a.svm_refit)
  net = a.net or model.feature_nets[0]
  pooled = f'{a.pool}x{a.pool} max-pooled' if a.pool else 'unpooled'
  labels = (f'{a.labels_per_class} per class x {draws} draws' if a.labels_per_class
            else f'all labels ({r["n_train"][0]:,})')
  pm = lambda m, s: f'{m:.2f}%' + (f' (±{s:.2f}%)' if s else '')  # noqa: E731
  print(f'\nLinear L2-SVM on {net} features ({pooled} layers, {r["dims"]:,} dims); validation {r["n_val"]:,}, '
        f'test {r["n_test"]:,}; C {", ".join(f"{c:g}" for c in r["C"])}\n')
  print('| model | features | dataset | labels | test accuracy | test error |')
  print('|---|---|---|---|---:|---:|')
  for ds, lab, acc, std in PAPER_SVM:
    print(f'| DCGAN + L2-SVM (paper) | D{" (ImageNet-1k)" if ds == "CIFAR-10" else ""} | {ds} | {lab} | '
          f'{pm(acc, std)} | {pm(100 - acc, std)} |')
  print(f'| {_what(config, state, a)} (this run) | {net} ({config.data.dataset}) | {info.name} | {labels} | '
        f'{pm(100 * r["mean_accuracy"], 100 * r["std_accuracy"])} | '
        f'{pm(100 * r["mean_error"], 100 * r["std_error"])} |')
  print(f'\n({r["seconds"]:.0f}s)')
  return r


def eval_nn_generated(a) -> dict:
  """Supplementary 8.1: 1-NN on generated samples only, beside 1-NN on the real training data."""
  model, state, config = load_run(a)
  if not model.conditional:
    raise ValueError(f'--eval=nn_generated needs a label-conditioned run (--model=cdcgan or mlp_gan); '
                     f'{a.workdir} is {config.model.name}')
  dataset, dd, md = _data(a, config)
  opts = model.data_options(eval=True)
  test_x, test_y = splits.load_split(dataset, 'test', opts, dd, md)
  train_x, train_y = splits.load_split(dataset, 'train', opts, dd, md)
  if test_x.shape[-1] != model.channels:
    raise ValueError(f'{dataset} has {test_x.shape[-1]}-channel images, the run makes {model.channels}')
  gen = nn_generated.generator_fn(model, state, running=_running(a))
  r = nn_generated.nn_generated(gen, model.num_classes, a.samples_per_class, test_x, test_y, batch=a.gen_batch,
                              seed=a.seed, log=print)
  t = time.time()
  real_err = 1.0 - metrics.knn_accuracy(train_x, train_y, test_x, test_y, k=1, metric='l2')
  r.update(real_error=real_err, real_seconds=time.time() - t, n_train=len(train_y), n_test=len(test_y))
  pct = lambda v: '-' if v is None else f'{v:.2f}%'  # noqa: E731
  print(f'\n1-NN test error on {dataset} ({len(test_y):,} test images, pixels at {opts["resolution"]}x'
        f'{opts["resolution"]}, Euclidean)\n')
  print('| model (paper, MNIST) | @50K samples | @10M samples |')
  print('|---|---:|---:|')
  for name, e50k, e10m in PAPER_NN:
    print(f'| {name} | {pct(e50k)} | {pct(e10m)} |')
  print('\n| this run | reference set | test error | seconds |')
  print('|---|---|---:|---:|')
  print(f'| {_what(config, state, a)} | {r["samples"]:,} generated ({a.samples_per_class:,} per class) | '
        f'{100 * r["error"]:.2f}% | {r["seconds"]:.1f} |')
  print(f'| real data | {len(train_y):,} training images | {100 * real_err:.2f}% | {r["real_seconds"]:.1f} |')
  return r


def eval_quality(a) -> dict:
  """FID / KID / precision-recall / density-coverage of generated images vs real ones."""
  model, state, config = load_run(a)
  dataset, dd, md = _data(a, config)
  which = tuple(m for m in a.metrics.split(',') if m)
  t0 = time.time()
  net = feature_net.open_net(dataset=dataset, data_dir=dd, manual_dir=md, feature_net_dir=a.feature_net_dir,
                             inception_weights=a.inception_weights, steps=a.steps)
  real = quality.real_statistics(net, dataset, a.real_split, resolution=model.resolution, data_dir=dd,
                                    manual_dir=md, max_examples=a.num_real, batch=a.eval_batch)
  print(f'feature network {net.name} ({net.dims} dims); real statistics of {real.n:,} {a.real_split} images '
        f'{"read from" if real.cached else "written to"} {real.path}')
  kw = dict(kid_subsets=a.kid_subsets, kid_subset_size=a.kid_subset_size, seed=a.seed)
  t = time.time()
  running = _running(a)
  fake = quality.generated_features(net, lambda key, b: model.sample(state, key, b, use_running_average=running),
                                    a.num_samples,
                                       batch=min(a.gen_batch, a.num_samples), seed=a.seed)
  rows = [(f'{_what(config, state, a)}: {a.num_samples:,} samples', quality.quality(real, fake, which, **kw),
           time.time() - t)]
  if a.reference:
    try:
      test_src, _ = data.open_source(dataset, 'test', data_dir=dd, manual_dir=md)
      t = time.time()
      n = min(len(test_src), a.num_samples)
      ref, _ = splits.featurize(net, test_src, np.arange(n), resolution=model.resolution, batch=a.eval_batch)
      rows.append((f'real test split: {n:,} images', quality.quality(real, ref, which, **kw), time.time() - t))
    except data.DataError:
      pass
  cols = [c for c in ('fid', 'kid', 'precision', 'recall', 'density', 'coverage') if c in which]
  print(f'\nSample quality vs {real.n:,} real {dataset} {a.real_split} images at {model.resolution}x{model.resolution}'
        f' on {net.name} features (KID x 10^3 ± standard error over {a.kid_subsets} subsets)\n')
  print('| images | ' + ' | '.join(c.upper() if c in ('fid', 'kid') else c for c in cols) + ' | seconds |')
  print('|---|' + '---:|' * (len(cols) + 1))
  for name, q, secs in rows:
    cells = [f'{1e3 * q["kid"]:.2f} ± {1e3 * q["kid_stderr"]:.2f}' if c == 'kid' else f'{q[c]:.3f}' for c in cols]
    print(f'| {name} | ' + ' | '.join(cells) + f' | {secs:.1f} |')
  print(f'\n({time.time() - t0:.0f}s in all)')
  return {'rows': rows, 'real_cached': real.cached, 'net': net.name}


def train_feature_net(a):
  return feature_net.train_classifier(a.dataset, data_dir=a.data_dir, manual_dir=a.manual_dir,
                                      out_dir=a.feature_net_dir, resolution=a.feature_resolution,
                                      steps=a.steps, batch_size=a.batch_size,
                                      seed=a.seed)


EVALS = {'knn': eval_knn, 'svm': eval_svm, 'nn_generated': eval_nn_generated, 'quality': eval_quality}




EVALS = {'knn': eval_knn, 'svm': eval_svm, 'nn_generated': eval_nn_generated, 'quality': eval_quality}
