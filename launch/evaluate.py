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
import sys

if __package__ in (None, ''):   # python launch/evaluate.py from a checkout: put the checkout on sys.path
  import os
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from common import config as config_lib  # noqa: E402
from launch import _cli  # noqa: E402

EVALS = ('knn', 'svm', 'nn_generated', 'quality')
TABLES = ('1nn',)
QUALITY_METRICS = ('fid', 'kid', 'precision', 'recall', 'density', 'coverage')
# --table: the training flags passed to every run of the table (bigan_jax.table1.TABLE_FLAGS).
TABLE_FLAGS = ('batch_size', 'seed', 'resolution', 'z_dim', 'hidden', 'architecture', 'width', 'lr', 'lr_final',
               'weight_decay', 'data_dir', 'manual_dir', 'log_every', 'sample_every', 'checkpoint_every')


def parser():
  """The argument parser (every flag, its check and its help)."""
  p = _cli.parser(__doc__)
  p.add_argument('--workdir', default=None, type=_cli.run_dir, help='run directory written by launch/train.py (--eval)')
  p.add_argument('--eval', default=None, choices=EVALS, help='evaluation of one run')
  p.add_argument('--table', default=None, choices=TABLES, help='train and evaluate a paper table')
  p.add_argument('--dataset', default=None, help="dataset to evaluate on (default: the run's; --table: mnist)")
  p.add_argument('--metric', default='l2', choices=('l2', 'cosine'),
                 help='k-NN distance (default l2, the Euclidean distance of the BiGAN code)')
  p.add_argument('--k', type=_cli.int_range(1, 1000), default=1, help='neighbours voting (Table 1: 1)')
  p.add_argument('--layer', default=None, help="feature layer(s), comma-separated (e.g. z, fc2_act, pool5); "
                                               "default: the model's")
  p.add_argument('--net', default=None, choices=('E', 'D'), help='encoder or discriminator features')
  p.add_argument('--step', type=_cli.int_range(0), default=None, help='checkpoint step (default: latest)')
  p.add_argument('--eval_batch', type=_cli.int_range(1, 100000), default=500, help='images per feature-extraction batch')
  p.add_argument('--workroot', default='runs/table1', type=_cli.out_dir, help='--table: one sub-directory per method')
  p.add_argument('--steps_bigan', type=_cli.int_range(1), default=None, help='--table: BiGAN train steps (default: --epochs)')
  p.add_argument('--steps_baseline', type=_cli.int_range(1), default=None,
                 help='--table: train steps of each baseline (default: --epochs)')
  p.add_argument('--epochs', type=_cli.float_range(0, above=True), default=400, help='--table: epochs when steps are not given (paper 400)')
  p.add_argument('--best', action='store_true', help='evaluate WORKDIR/best (kept by training with --eval_every)')
  # --eval=svm
  p.add_argument('--pool', type=_cli.int_range(0, 64), default=4, help='svm: max-pool every layer to this grid (paper 4; 0: none)')
  p.add_argument('--labels_per_class', type=_cli.int_range(1), default=None,
                 help='svm: class-balanced training examples per class (SVHN: 100; Table 1: 400); default all')
  p.add_argument('--draws', type=_cli.int_range(1, 10000), default=None, help='svm: random draws of --labels_per_class (default 5)')
  p.add_argument('--val_size', type=_cli.int_range(1), default=None,
                 help='svm: validation examples taken from the train split to choose C (paper 10,000; '
                      'default min(10000, a fifth of the split))')
  p.add_argument('--svm_C', default=None, type=_cli.positive_list,
                 help="svm: comma-separated values of C to try (default the authors' 1e-4,2e-4,5e-4,1e-3,2e-3,5e-3,1e-2)")
  p.add_argument('--svm_choose_c', default='mean', choices=('mean', 'per_draw'),
                 help="svm: one C for all draws by mean validation accuracy (the authors') or a C per draw")
  p.add_argument('--svm_standardize', action='store_true',
                 help="svm: scale features to unit variance first (the authors' probe uses raw features)")
  p.add_argument('--svm_refit', action=argparse.BooleanOptionalAction, default=True,
                 help='svm, all labels: refit at the chosen C on the whole train split, validation included '
                      "(the paper's CIFAR-10 SVM trains on all 50,000)")
  p.add_argument('--bn_stats', default='real', choices=('real', 'running'),
                 help="svm: the probed net's batchnorm statistics, recomputed on real training images (the "
                      "authors' infer_bnorm_stats; default) or the running averages from training")
  p.add_argument('--bn_batches', type=_cli.int_range(1, 100000), default=200,
                 help='svm --bn_stats=real: batches of --eval_batch real images to average statistics over')
  p.add_argument('--random_init', action='store_true', help='svm/knn: a randomly initialised network (baseline)')
  # --eval=nn_generated
  p.add_argument('--samples_per_class', type=_cli.int_range(1), default=5000,
                 help='nn_generated: samples of each class (Table 3: 5000 -> 50K, 1M -> 10M)')
  p.add_argument('--gen_batch', type=_cli.int_range(1, 100000), default=1000, help='nn_generated/quality: images generated per batch')
  p.add_argument('--batch_stats', default=None, choices=('running', 'batch'),
                 help="nn_generated/quality: G's batchnorm statistics, running averages or each batch's "
                      "(default: the run's --sample_bn; DCGAN: the batch's, as its authors sample)")
  # --eval=quality and --train_feature_net
  p.add_argument('--num_samples', type=_cli.int_range(2), default=10000, help='quality: generated images')
  p.add_argument('--num_real', type=_cli.int_range(2), default=50000, help='quality: real images (at most the split)')
  p.add_argument('--real_split', default='train', help='quality: real split to compare with')
  p.add_argument('--metrics', default='fid,kid,precision,recall,density,coverage', help='quality: which metrics')
  p.add_argument('--kid_subsets', type=_cli.int_range(1), default=100, help='quality: KID subsets')
  p.add_argument('--kid_subset_size', type=_cli.int_range(2), default=1000, help='quality: KID subset size')
  p.add_argument('--reference', action=argparse.BooleanOptionalAction, default=True,
                 help='quality: also score the real test split (the metric\'s floor)')
  p.add_argument('--feature_net_dir', default=None, type=_cli.out_dir,
                 help='the feature classifier (default <data_dir>/feature_nets/<dataset>-r32)')
  p.add_argument('--inception_weights', default=None, type=_cli.existing_file,
                 help='FID Inception-V3 weights (pt_inception-2015-12-05-6726825d.pth or its .npz)')
  p.add_argument('--train_feature_net', action='store_true', help='train the feature classifier of --dataset')
  p.add_argument('--steps', type=_cli.int_range(1), default=None,
                 help='--train_feature_net (and a feature net trained on first use): train steps '
                      '(default: 2000 or 30 epochs, whichever is fewer)')
  p.add_argument('--feature_resolution', type=_cli.int_range(8, 512), default=32, help='--train_feature_net: input size')
  config_lib.add_flags(p, only=TABLE_FLAGS)
  return p


def parse(argv=None):
  p = parser()
  a = p.parse_args(argv)
  if sum([a.eval is not None, a.table is not None, a.train_feature_net]) != 1:
    p.error('give exactly one of --eval=... (with --workdir), --table=... or --train_feature_net')
  if a.eval and not a.workdir:
    p.error('--eval needs --workdir')
  if a.train_feature_net and not a.dataset:
    p.error('--train_feature_net needs --dataset')
  if a.metrics:
    unknown = [m for m in a.metrics.split(',') if m and m not in QUALITY_METRICS]
    if unknown or not any(a.metrics.split(',')):
      p.error(f'argument --metrics: choose from {",".join(QUALITY_METRICS)}, got {a.metrics!r}')
  return a



def run(a):
  """One library call: an evaluation of a run, the feature classifier, or a paper table."""
  if a.eval:
    from common import eval_tasks   # JAX: after --help
    return eval_tasks.EVALS[a.eval](a)
  if a.train_feature_net:
    from common import eval_tasks   # JAX: after --help
    return eval_tasks.train_feature_net(a)
  from bigan_jax import table1   # JAX: after --help
  return table1.table_1nn(a)


def main(argv=None) -> int:
  return _cli.run_main(parse, run, argv, imports=('common.eval_tasks', 'bigan_jax.table1'))


if __name__ == '__main__':
  _cli.exit(main())
