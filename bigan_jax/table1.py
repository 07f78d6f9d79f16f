"""BiGAN Table 1 end to end: 1-NN accuracy on the permutation-invariant (Fashion-)MNIST test set in the feature
space of BiGAN, its baselines (D, LR, JLR, l2/l1 autoencoders), a randomly initialised encoder and raw pixels.

``table_1nn`` trains (or resumes, when WORKROOT/<method> already holds a run) BiGAN, a joint latent regressor
(JLR; its G and D are a plain GAN's, whose D gives the D row), a latent regressor on that GAN's frozen G (LR),
and l2 / l1 autoencoders, all with the same networks and optimiser; then prints their 1-NN accuracies, on E(x)
(the authors' NNC_e) and on E's last hidden layer (NNC_e-), beside the paper's numbers. Default length: the
paper's 400 epochs.
"""
from __future__ import annotations

import math
import os
import time

import jax

from common import checkpoint, data, loop, parallel, registry, splits
from common.config import Config
from common.eval_tasks import feature_fn
from common.model import DataFacts

PAPER_1NN = {'BiGAN': 97.39, 'D': 97.30, 'LR': 97.44, 'JLR': 97.13, 'AE (l2)': 97.58, 'AE (l1)': 97.63}
# Flags of launch/evaluate.py passed to every run of the table.
TABLE_FLAGS = ('batch_size', 'seed', 'resolution', 'z_dim', 'hidden', 'architecture', 'width', 'lr', 'lr_final',
               'weight_decay', 'data_dir', 'manual_dir', 'log_every', 'sample_every', 'checkpoint_every')


def _steps(a, n_train: int, given) -> int:
  return given if given is not None else int(math.ceil(a.epochs * n_train / a.batch_size))


def table_1nn(a) -> list:
  """Trains every Table 1 method (resuming finished or partial runs), evaluates them, prints the table."""
  dataset = a.dataset or 'mnist'
  root = os.path.abspath(a.workroot)
  _, info = data.open_source(dataset, 'train', data_dir=a.data_dir, manual_dir=a.manual_dir)
  base = Config.make(dataset=dataset, **{k: getattr(a, k) for k in TABLE_FLAGS})
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
  random_model = registry.build(base.replace(model='bigan'), DataFacts(info.channels, info.num_classes))
  opts = random_model.data_options(eval=True)
  train = splits.load_split(dataset, 'train', opts, a.data_dir, a.manual_dir)
  test = splits.load_split(dataset, 'test', opts, a.data_dir, a.manual_dir)
  loaded, results = {}, []
  for method, name, net, steps in rows:
    t = time.time()
    if name is None and net is None:
      fn = None
    elif name is None:
      state = parallel.on_one_device(jax.jit(random_model.init)(jax.random.PRNGKey(base.loop.seed)))
      fn = feature_fn(random_model, state, 'E', a.layer)
    else:
      if name not in loaded:
        model, state, _ = checkpoint.load(os.path.join(root, name))
        loaded[name] = (model, parallel.on_one_device(state))
      model, state = loaded[name]
      fn = feature_fn(model, state, net, a.layer if net == 'E' else None)
    acc = splits.knn_accuracy(fn, train, test, a.metric, a.k, a.eval_batch)
    hidden = None
    if net == 'E' and not a.layer:   # the authors' NNC_e- beside NNC_e
      m, st = (random_model, state) if name is None else loaded[name]
      layer = m.hidden_feature_layer()
      if layer != m.default_feature_layer():
        hidden = splits.knn_accuracy(feature_fn(m, st, 'E', layer), train, test, a.metric, a.k, a.eval_batch)
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
