"""Evaluate trained runs: feature probes, nearest-neighbour tests and sample quality.

  python launch/evaluate.py --workdir=runs/bigan --eval=knn [--metric=l2|cosine] [--layer=z] [--net=E|D]
  python launch/evaluate.py --workdir=runs/dcgan --eval=svm [--dataset=cifar10] [--labels_per_class=400 --draws=5]
  python launch/evaluate.py --workdir=runs/cmnist --eval=nn_generated --samples_per_class=5000
  python launch/evaluate.py --workdir=runs/dcgan --eval=quality [--inception_weights=FILE] [--best]
  python launch/evaluate.py --train_feature_net --dataset=mnist [--steps=2000] [--feature_net_dir=DIR]
  python launch/evaluate.py --table=1nn --dataset=mnist --workroot=runs/table1 [--steps_bigan=N --steps_baseline=N]

--eval=knn: test-split k-NN accuracy (k=1 by default) in the feature space of a trained run, with the train
split as the reference set (BiGAN paper, Table 1). Features: the encoder's (--net=E, default for runs with an
encoder; --layer picks the layer, default the model's: E(x) for MLP encoders) or the discriminator's
(--net=D, the "discriminator features" baseline of a GAN; default its last hidden layer).

--eval=svm: DCGAN paper section 5: every layer of D (or of a BiGAN encoder, --net=E) max-pooled to a 4x4 grid
(--pool), concatenated, and a linear L2-SVM (squared hinge) trained on the train split, C chosen on a
validation split of it (--val_size, paper 10,000), accuracy on the test split. --labels_per_class=K
--draws=N: K class-balanced training examples per class, N random draws, error as mean and std (section 5.2:
SVHN, 100 per class; Table 1: 400 per class). --dataset may differ from the run's (the paper's D was trained on
ImageNet and probed on CIFAR-10): images are resized to the model's resolution and gray/RGB adapted.
--random_init probes a randomly initialised network of the same architecture.

--eval=nn_generated: DCGAN supplementary 8.1 / Table 3: a 1-NN classifier (pixels, Euclidean) fitted only on
--samples_per_class generated samples of every class of a label-conditioned run (--model=cdcgan or mlp_gan),
streamed (memory does not grow with the count: 10M works), tested on the real test split; beside 1-NN on the
real training data.

--eval=quality: FID, KID (+- standard error over subsets), precision/recall and density/coverage of
--num_samples generated images against the real --real_split, on the project's classifier features
(--feature_net_dir, trained on first use) or Inception-V3 pool3 (--inception_weights=FILE; docs/evaluation.md).
Real statistics are cached under <data_dir>/fid_stats/. A reference row compares the real test split too.

--best evaluates WORKDIR/best, the best checkpoint kept by a run trained with --eval_every.

--table=1nn: Table 1 of the BiGAN paper end to end. Trains (or resumes, when WORKROOT/<method> already holds
a run) BiGAN, a joint latent regressor (JLR; its G and D are a plain GAN's, whose D gives the D row), a
latent regressor on that GAN's frozen G (LR), and l2 / l1 autoencoders, all with the same networks and
optimiser; then prints their 1-NN accuracies, plus raw pixels and a randomly initialised encoder, beside the
paper's numbers. Default length: the paper's 400 epochs (--epochs), unless --steps_bigan / --steps_baseline.
"""
import argparse
import sys

import _path  # noqa: F401

TABLE_FLAGS = ('batch_size', 'seed', 'resolution', 'z_dim', 'hidden', 'architecture', 'width', 'lr', 'lr_final',
               'weight_decay', 'data_dir', 'manual_dir', 'log_every', 'sample_every', 'checkpoint_every')
PAPER_1NN = {'BiGAN': 97.39, 'D': 97.30, 'LR': 97.44, 'JLR': 97.13, 'AE (l2)': 97.58, 'AE (l1)': 97.63}
# DCGAN paper, Table 1 (CIFAR-10, D trained on ImageNet-1k) and Table 2 (SVHN, 1000 labels): (rows, accuracy %, std).
PAPER_SVM = (('CIFAR-10', 'all labels (50,000)', 82.8, None), ('CIFAR-10', '400 per class', 73.8, 0.4),
             ('SVHN', '1000 labels (100 per class)', 100 - 22.48, None))
# DCGAN paper, Table 3 (MNIST nearest-neighbour test error %): (model, @50K samples, @10M samples).
PAPER_NN = (('AlignMNIST', None, 1.4), ('InfiMNIST', None, 2.6), ('Real Data', 3.1, None), ('GAN', 6.28, 5.65),
            ('DCGAN', 2.98, 1.48))


def parse(argv=None):
  from common.config import add_flags
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdir', default=None, help='run directory written by launch/train.py (--eval)')
  p.add_argument('--eval', default=None, choices=sorted(EVALS), help='evaluation of one run')
  p.add_argument('--table', default=None, choices=sorted(TABLES), help='train and evaluate a paper table')
  p.add_argument('--dataset', default=None, help="dataset to evaluate on (default: the run's; --table: mnist)")
  p.add_argument('--metric', default='l2', choices=('l2', 'cosine'),
                 help='k-NN distance (default l2, the Euclidean distance of the BiGAN code)')
  p.add_argument('--k', type=int, default=1, help='neighbours voting (Table 1: 1)')
  p.add_argument('--layer', default=None, help="feature layer(s), comma-separated (e.g. z, fc2_act, pool5); "
                                               "default: the model's")
  p.add_argument('--net', default=None, choices=('E', 'D'), help='encoder or discriminator features')
  p.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  p.add_argument('--eval_batch', type=int, default=500, help='images per feature-extraction batch')
  p.add_argument('--workroot', default='runs/table1', help='--table: one sub-directory per method')
  p.add_argument('--steps_bigan', type=int, default=None, help='--table: BiGAN train steps (default: --epochs)')
  p.add_argument('--steps_baseline', type=int, default=None,
                 help='--table: train steps of each baseline (default: --epochs)')
  p.add_argument('--epochs', type=float, default=400, help='--table: epochs when steps are not given (paper 400)')
  p.add_argument('--best', action='store_true', help='evaluate WORKDIR/best (kept by training with --eval_every)')
  # --eval=svm
  p.add_argument('--pool', type=int, default=4, help='svm: max-pool every layer to this grid (paper 4; 0: none)')
  p.add_argument('--labels_per_class', type=int, default=None,
                 help='svm: class-balanced training examples per class (SVHN: 100; Table 1: 400); default all')
  p.add_argument('--draws', type=int, default=None, help='svm: random draws of --labels_per_class (default 5)')
  p.add_argument('--val_size', type=int, default=None,
                 help='svm: validation examples taken from the train split to choose C (paper 10,000; '
                      'default min(10000, a fifth of the split))')
  p.add_argument('--svm_C', default=None, help='svm: comma-separated values of C to try (default 1e-4 ... 1)')
  p.add_argument('--random_init', action='store_true', help='svm/knn: a randomly initialised network (baseline)')
  # --eval=nn_generated
  p.add_argument('--samples_per_class', type=int, default=5000,
                 help='nn_generated: samples of each class (Table 3: 5000 -> 50K, 1M -> 10M)')
  p.add_argument('--gen_batch', type=int, default=1000, help='nn_generated/quality: images generated per batch')
  p.add_argument('--batch_stats', default='running', choices=('running', 'batch'),
                 help="nn_generated: G's batchnorm statistics (running averages or each batch's)")
  # --eval=quality and --train_feature_net
  p.add_argument('--num_samples', type=int, default=10000, help='quality: generated images')
  p.add_argument('--num_real', type=int, default=50000, help='quality: real images (at most the split)')
  p.add_argument('--real_split', default='train', help='quality: real split to compare with')
  p.add_argument('--metrics', default='fid,kid,precision,recall,density,coverage', help='quality: which metrics')
  p.add_argument('--kid_subsets', type=int, default=100, help='quality: KID subsets')
  p.add_argument('--kid_subset_size', type=int, default=1000, help='quality: KID subset size')
  p.add_argument('--reference', action=argparse.BooleanOptionalAction, default=True,
                 help='quality: also score the real test split (the metric\'s floor)')
  p.add_argument('--feature_net_dir', default=None,
                 help='the feature classifier (default <data_dir>/feature_nets/<dataset>-r32)')
  p.add_argument('--inception_weights', default=None,
                 help='FID Inception-V3 weights (pt_inception-2015-12-05-6726825d.pth or its .npz)')
  p.add_argument('--train_feature_net', action='store_true', help='train the feature classifier of --dataset')
  p.add_argument('--steps', type=int, default=None,
                 help='--train_feature_net (and a feature net trained on first use): train steps '
                      '(default: 2000 or 30 epochs, whichever is fewer)')
  p.add_argument('--feature_resolution', type=int, default=32, help='--train_feature_net: input size')
  add_flags(p, only=TABLE_FLAGS)
  a = p.parse_args(argv)
  if sum([a.eval is not None, a.table is not None, a.train_feature_net]) != 1:
    p.error('give exactly one of --eval=... (with --workdir), --table=... or --train_feature_net')
  if a.eval and not a.workdir:
    p.error('--eval needs --workdir')
  if a.train_feature_net and not a.dataset:
    p.error('--train_feature_net needs --dataset')
  return a


# -- data and features ---------------------------------------------------------------------------------------

def load_split(dataset, split, options, data_dir=None, manual_dir=None):
  """All examples of a split, in order, preprocessed as ``options`` (a model's ``data_options(eval=True)``)."""
  import numpy as np
  from common import data
  source, _ = data.open_source(dataset, split, data_dir=data_dir, manual_dir=manual_dir)
  opts = dict(resolution=options['resolution'], load_size=options.get('load_size'), crop='center', flip=False)
  x = np.stack([data.preprocess(source[i]['image'], **opts) for i in range(len(source))])
  y = np.array([source[i]['label'] for i in range(len(source))], np.int64)
  return x, y


def eval_options(model) -> dict:
  try:
    return model.data_options(eval=True)
  except TypeError:          # models without an eval variant (DCGAN): no augmentation anyway
    return model.data_options()


def on_one_device(tree):
  """A (replicated) state on the first device only: evaluation then runs once, not once per device."""
  import jax
  return jax.device_put(jax.device_get(tree), jax.devices()[0])


def feature_fn(model, state, net=None, layer=None):
  """x -> flattened features of a trained model: encoder (``features``) or discriminator (``d_features``; for
  DCGAN, whose only feature network is D, its section-5 ``features``)."""
  has_e = hasattr(model, 'encode')
  net = net or ('E' if has_e else 'D')
  name = 'features' if (net == 'E') == has_e else 'd_features'
  if not hasattr(model, name):
    raise ValueError(f'{type(model).__name__} has no {"encoder" if net == "E" else "plain discriminator"} '
                     f'features: try --net={"D" if net == "E" else "E"}')
  fn = getattr(model, name)
  return lambda x: fn(state, x, layer=layer)


def knn_from_fn(fn, train, test, metric='l2', k=1, batch=500) -> float:
  """k-NN accuracy (%) of test on train in the space of ``fn`` (None: raw pixels)."""
  import numpy as np
  from common import metrics
  (xtr, ytr), (xte, yte) = train, test
  if fn is None:
    ftr, fte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
  else:
    ftr, fte = metrics.extract(fn, xtr, batch), metrics.extract(fn, xte, batch)
  return 100.0 * metrics.knn_accuracy(ftr, ytr, fte, yte, k=k, metric=metric)


# -- --eval=... ----------------------------------------------------------------------------------------------

def load_run(a):
  """(model, state on one device, config) of --workdir (its best/ with --best; a fresh init with --random_init)."""
  import os
  import jax
  from common import checkpoint
  workdir = a.workdir
  if a.best:
    workdir = os.path.join(a.workdir, 'best')
    if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
      raise FileNotFoundError(f'no best checkpoint in {workdir}: train with --eval_every=N (and --eval_metric) to '
                              'keep one')
  model, state, config = checkpoint.load(workdir, a.step)
  if a.random_init:
    state = jax.jit(model.init)(jax.random.PRNGKey(a.seed))
  return model, on_one_device(state), config


def _what(config, state, a) -> str:
  return f'{config.model} ' + ('random init' if a.random_init else f'step {int(state.step)}' + (' (best)' if a.best
                                                                                                  else ''))


def eval_knn(a) -> int:
  model, state, config = load_run(a)
  dataset = a.dataset or config.dataset
  opts = eval_options(model)
  dd, md = a.data_dir or config.data_dir, a.manual_dir or config.manual_dir
  train = load_split(dataset, 'train', opts, dd, md)
  test = load_split(dataset, 'test', opts, dd, md)
  what = f'{a.metric}, {dataset}: {len(train[1])} train / {len(test[1])} test, {config.model} step {int(state.step)}'
  hidden = _hidden_layer(model, a)
  if hidden:   # the authors print both: NNC_e- (E's last hidden layer), then NNC_e (E(x))
    acc = knn_from_fn(feature_fn(model, state, 'E', hidden), train, test, a.metric, a.k, a.eval_batch)
    print(f'{a.k}-NN test accuracy on E\'s last hidden layer {hidden} ({what}): {acc:.2f}%')
  fn = feature_fn(model, state, a.net, a.layer)
  acc = knn_from_fn(fn, train, test, a.metric, a.k, a.eval_batch)
  print(f'{a.k}-NN test accuracy ({what}): {acc:.2f}%')
  return 0


def _hidden_layer(model, a):
  """E's last hidden layer when the default E(x) features are asked for and it is a different space, else None."""
  if a.layer or (a.net or 'E') != 'E' or not hasattr(model, 'hidden_feature_layer'):
    return None
  hidden = model.hidden_feature_layer()
  return hidden if hidden != model.default_feature_layer() else None


def eval_svm(a) -> dict:
  """Section 5 feature probe: 4x4-pooled layers + linear L2-SVM; prints our row beside the paper's."""
  from common import data, evaluation
  model, state, config = load_run(a)
  dataset = a.dataset or config.dataset
  dd, md = a.data_dir or config.data_dir, a.manual_dir or config.manual_dir
  train_src, info = data.open_source(dataset, 'train', data_dir=dd, manual_dir=md)
  test_src, _ = data.open_source(dataset, 'test', data_dir=dd, manual_dir=md)
  if not info.num_classes:
    raise ValueError(f'--eval=svm needs a labelled dataset; {dataset} has no labels')
  opts = eval_options(model)
  note = evaluation.adaptation_note(info.name, info.channels, train_src.image_shape, model.channels,
                                    opts['resolution'])
  if note:
    print(note)
  fn = evaluation.feature_fn(model, state, a.net, a.layer, a.pool or None)
  draws = (a.draws or 5) if a.labels_per_class else 1
  cs = tuple(float(c) for c in a.svm_C.split(',')) if a.svm_C else evaluation.DEFAULT_CS
  r = evaluation.svm_probe(fn, train_src, test_src, resolution=opts['resolution'], load_size=opts.get('load_size'),
                           channels=model.channels, labels_per_class=a.labels_per_class, draws=draws,
                           val_size=a.val_size, Cs=cs, seed=a.seed, batch=a.eval_batch)
  net = a.net or evaluation.default_net(model)
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
  print(f'| {_what(config, state, a)} (this run) | {net} ({config.dataset}) | {info.name} | {labels} | '
        f'{pm(100 * r["mean_accuracy"], 100 * r["std_accuracy"])} | '
        f'{pm(100 * r["mean_error"], 100 * r["std_error"])} |')
  print(f'\n({r["seconds"]:.0f}s)')
  return r


def eval_nn_generated(a) -> dict:
  """Supplementary 8.1: 1-NN on generated samples only, beside 1-NN on the real training data."""
  import time
  from common import data, evaluation, metrics
  model, state, config = load_run(a)
  if not getattr(model, 'num_classes', 0):
    raise ValueError(f'--eval=nn_generated needs a label-conditioned run (--model=cdcgan or mlp_gan); '
                     f'{a.workdir} is {config.model}')
  dataset = a.dataset or config.dataset
  dd, md = a.data_dir or config.data_dir, a.manual_dir or config.manual_dir
  opts = eval_options(model)
  test_x, test_y = load_split(dataset, 'test', opts, dd, md)
  train_x, train_y = load_split(dataset, 'train', opts, dd, md)
  if test_x.shape[-1] != model.channels:
    raise ValueError(f'{dataset} has {test_x.shape[-1]}-channel images, the run makes {model.channels}')
  gen = evaluation.generator_fn(model, state, running=a.batch_stats == 'running')
  r = evaluation.nn_generated(gen, model.num_classes, a.samples_per_class, test_x, test_y, batch=a.gen_batch,
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
  import time
  import numpy as np
  from common import data, evaluation, feature_net
  model, state, config = load_run(a)
  dataset = a.dataset or config.dataset
  dd, md = a.data_dir or config.data_dir, a.manual_dir or config.manual_dir
  which = tuple(m for m in a.metrics.split(',') if m)
  t0 = time.time()
  net = feature_net.open_net(dataset=dataset, data_dir=dd, manual_dir=md, feature_net_dir=a.feature_net_dir,
                             inception_weights=a.inception_weights, steps=a.steps)
  real = evaluation.real_statistics(net, dataset, a.real_split, resolution=model.resolution, data_dir=dd,
                                    manual_dir=md, max_examples=a.num_real, batch=a.eval_batch)
  print(f'feature network {net.name} ({net.dims} dims); real statistics of {real.n:,} {a.real_split} images '
        f'{"read from" if real.cached else "written to"} {real.path}')
  kw = dict(kid_subsets=a.kid_subsets, kid_subset_size=a.kid_subset_size, seed=a.seed)
  t = time.time()
  fake = evaluation.generated_features(net, lambda key, b: model.sample(state, key, b), a.num_samples,
                                       batch=min(a.gen_batch, a.num_samples), seed=a.seed)
  rows = [(f'{_what(config, state, a)}: {a.num_samples:,} samples', evaluation.quality(real, fake, which, **kw),
           time.time() - t)]
  if a.reference:
    try:
      test_src, _ = data.open_source(dataset, 'test', data_dir=dd, manual_dir=md)
      t = time.time()
      n = min(len(test_src), a.num_samples)
      ref, _ = evaluation.featurize(net, test_src, np.arange(n), resolution=model.resolution, batch=a.eval_batch)
      rows.append((f'real test split: {n:,} images', evaluation.quality(real, ref, which, **kw), time.time() - t))
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
  from common import feature_net
  return feature_net.train_classifier(a.dataset, data_dir=a.data_dir, manual_dir=a.manual_dir,
                                      out_dir=a.feature_net_dir, resolution=a.feature_resolution,
                                      steps=a.steps, batch_size=a.batch_size,
                                      seed=a.seed)


EVALS = {'knn': eval_knn, 'svm': eval_svm, 'nn_generated': eval_nn_generated, 'quality': eval_quality}


# -- --table=... ---------------------------------------------------------------------------------------------

def _steps(a, n_train: int, given) -> int:
  import math
  return given if given is not None else int(math.ceil(a.epochs * n_train / a.batch_size))


def table_1nn(a) -> list:
  """Trains every Table 1 method (resuming finished or partial runs), evaluates them, prints the table."""
  import os
  import time
  import jax
  from common import checkpoint, data, loop
  from common.config import Config
  from bigan_jax.train import build

  dataset = a.dataset or 'mnist'
  root = os.path.abspath(a.workroot)
  _, info = data.open_source(dataset, 'train', data_dir=a.data_dir, manual_dir=a.manual_dir)
  base = Config(dataset=dataset, **{k: getattr(a, k) for k in TABLE_FLAGS})
  steps_b = _steps(a, info.num_examples, a.steps_bigan)
  steps_o = _steps(a, info.num_examples, a.steps_baseline)
  jlr_dir = os.path.join(root, 'jlr')
  runs = [  # (workdir name, config changes, steps); the JLR run is trained before the LR that reuses its G
      ('jlr', dict(model='joint_latent_regressor'), steps_o),
      ('lr', dict(model='latent_regressor', gan_workdir=jlr_dir), steps_o),
      ('bigan', dict(model='bigan'), steps_b),
      ('ae_l2', dict(model='autoencoder', recon_loss='l2'), steps_o),
      ('ae_l1', dict(model='autoencoder', recon_loss='l1'), steps_o),
  ]
  seconds = {}
  for name, change, steps in runs:
    cfg = base.replace(workdir=os.path.join(root, name), steps=steps, **change)
    t = time.time()
    loop.train(cfg)
    seconds[name] = time.time() - t

  rows = []   # (method, workdir name or None, net, steps)
  rows += [('raw pixels', None, None, 0), ('random E', None, 'E', 0), ('BiGAN', 'bigan', 'E', steps_b),
           ('D', 'jlr', 'D', steps_o), ('LR', 'lr', 'E', steps_o), ('JLR', 'jlr', 'E', steps_o),
           ('AE (l2)', 'ae_l2', 'E', steps_o), ('AE (l1)', 'ae_l1', 'E', steps_o)]
  random_model = build(base.replace(model='bigan'), channels=info.channels, num_classes=info.num_classes)
  opts = eval_options(random_model)
  train = load_split(dataset, 'train', opts, a.data_dir, a.manual_dir)
  test = load_split(dataset, 'test', opts, a.data_dir, a.manual_dir)
  loaded, results = {}, []
  for method, name, net, steps in rows:
    t = time.time()
    if name is None and net is None:
      fn = None
    elif name is None:
      state = on_one_device(jax.jit(random_model.init)(jax.random.PRNGKey(base.seed)))
      fn = feature_fn(random_model, state, 'E', a.layer)
    else:
      if name not in loaded:
        model, state, _ = checkpoint.load(os.path.join(root, name))
        loaded[name] = (model, on_one_device(state))
      model, state = loaded[name]
      fn = feature_fn(model, state, net, a.layer if net == 'E' else None)
    acc = knn_from_fn(fn, train, test, a.metric, a.k, a.eval_batch)
    hidden = None
    if net == 'E' and not a.layer:   # the authors' NNC_e- beside NNC_e
      m, st = (random_model, state) if name is None else loaded[name]
      layer = m.hidden_feature_layer()
      if layer != m.default_feature_layer():
        hidden = knn_from_fn(feature_fn(m, st, 'E', layer), train, test, a.metric, a.k, a.eval_batch)
    results.append(dict(method=method, accuracy=acc, hidden=hidden, paper=PAPER_1NN.get(method), steps=steps,
                        train_s=seconds.get(name), eval_s=time.time() - t))

  print(f'\n{a.k}-NN test accuracy (%), {a.metric} distance, {dataset} ({len(train[1])} train / '
        f'{len(test[1])} test), features at {opts["resolution"]}x{opts["resolution"]}; paper: '
        'permutation-invariant MNIST, 400 epochs. E(x): the encoder output (authors\' NNC_e; D: its last hidden '
        'layer); last hidden: E\'s layer before z (NNC_e-)\n')
  print('| method | ours: E(x) | ours: last hidden | paper | train steps | train s |')
  print('|---|---:|---:|---:|---:|---:|')
  for r in results:
    paper = f'{r["paper"]:.2f}' if r['paper'] is not None else '-'
    secs = f'{r["train_s"]:.0f}' if r['train_s'] is not None else '-'
    hid = f'{r["hidden"]:.2f}' if r['hidden'] is not None else '-'
    print(f'| {r["method"]} | {r["accuracy"]:.2f} | {hid} | {paper} | {r["steps"] or "-"} | {secs} |')
  return results


TABLES = {'1nn': table_1nn}


def main(argv=None) -> int:
  a = parse(argv)
  from common import data, loop
  try:
    if a.eval:
      r = EVALS[a.eval](a)
      return r if isinstance(r, int) else 0
    if a.train_feature_net:
      train_feature_net(a)
      return 0
    TABLES[a.table](a)
    return 0
  except (data.DataError, loop.ResumeError, loop.DivergenceError, FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1


if __name__ == '__main__':
  sys.exit(main())
