"""Evaluate trained runs in feature space.

  python launch/evaluate.py --workdir=runs/bigan --eval=knn [--metric=l2|cosine] [--layer=z] [--net=E|D]
  python launch/evaluate.py --table=1nn --dataset=mnist --workroot=runs/table1 [--steps_bigan=N --steps_baseline=N]

--eval=knn: test-split k-NN accuracy (k=1 by default) in the feature space of a trained run, with the train
split as the reference set (BiGAN paper, Table 1). Features: the encoder's (--net=E, default for runs with an
encoder; --layer picks the layer, default the model's: E(x) for MLP encoders) or the discriminator's
(--net=D, the "discriminator features" baseline of a GAN; default its last hidden layer).

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
  add_flags(p, only=TABLE_FLAGS)
  a = p.parse_args(argv)
  if (a.eval is None) == (a.table is None):
    p.error('give exactly one of --eval=... (with --workdir) or --table=...')
  if a.eval and not a.workdir:
    p.error('--eval needs --workdir')
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
  """x -> flattened features of a trained model: encoder (``features``) or discriminator (``d_features``)."""
  net = net or ('E' if hasattr(model, 'features') else 'D')
  name = 'features' if net == 'E' else 'd_features'
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

def eval_knn(a) -> int:
  from common import checkpoint
  model, state, config = checkpoint.load(a.workdir, a.step)
  state = on_one_device(state)
  dataset = a.dataset or config.dataset
  opts = eval_options(model)
  dd, md = a.data_dir or config.data_dir, a.manual_dir or config.manual_dir
  train = load_split(dataset, 'train', opts, dd, md)
  test = load_split(dataset, 'test', opts, dd, md)
  fn = feature_fn(model, state, a.net, a.layer)
  acc = knn_from_fn(fn, train, test, a.metric, a.k, a.eval_batch)
  print(f'{a.k}-NN test accuracy ({a.metric}, {dataset}: {len(train[1])} train / {len(test[1])} test, '
        f'{config.model} step {int(state.step)}): {acc:.2f}%')
  return 0


EVALS = {'knn': eval_knn}


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
    results.append(dict(method=method, accuracy=acc, paper=PAPER_1NN.get(method), steps=steps,
                        train_s=seconds.get(name), eval_s=time.time() - t))

  print(f'\n{a.k}-NN test accuracy (%), {a.metric} distance, {dataset} ({len(train[1])} train / '
        f'{len(test[1])} test), features at {opts["resolution"]}x{opts["resolution"]}; paper: '
        'permutation-invariant MNIST, 400 epochs\n')
  print('| method | ours | paper | train steps | train s |')
  print('|---|---:|---:|---:|---:|')
  for r in results:
    paper = f'{r["paper"]:.2f}' if r['paper'] is not None else '-'
    secs = f'{r["train_s"]:.0f}' if r['train_s'] is not None else '-'
    print(f'| {r["method"]} | {r["accuracy"]:.2f} | {paper} | {r["steps"] or "-"} | {secs} |')
  return results


TABLES = {'1nn': table_1nn}


def main(argv=None) -> int:
  a = parse(argv)
  from common import data, loop
  try:
    if a.eval:
      return EVALS[a.eval](a)
    TABLES[a.table](a)
    return 0
  except (data.DataError, loop.ResumeError, loop.DivergenceError, FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1


if __name__ == '__main__':
  sys.exit(main())
