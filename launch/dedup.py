"""De-duplicate a dataset with a hashing autoencoder (DCGAN section 4.1.1), then train on what is kept.

  python launch/dedup.py --dataset=lsun --out=runs/lsun_dedup
  python launch/train.py --dataset=lsun --dedup=runs/lsun_dedup/kept.txt --workdir=runs/lsun

Trains the 32x32-crop denoising ReLU autoencoder (or loads it when OUT already holds one; --retrain to train
again), hashes every example of --split as its 128 thresholded code bits, groups equal hashes, and writes
  OUT/kept.txt       one example id per line: the first (lowest) id of every group
  OUT/groups.json    the duplicate groups (two or more ids) and counts
  OUT/groups.png     the largest duplicate groups, one per row, to inspect by eye
  OUT/codes.npy      the packed hash of every example (N x 16 bytes)
  OUT/hash_autoencoder.{msgpack,json}  the autoencoder and its settings
"""
import sys

if __package__ in (None, ''):   # python launch/dedup.py from a checkout: put the checkout on sys.path
  import os
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from launch import _cli  # noqa: E402


def parser():
  """The argument parser (every flag, its check and its help)."""
  from_defaults = dict(steps=2000, batch_size=64, noise=0.2, dropout=0.1, code_noise=8.0, lr=1e-3)
  p = _cli.parser(__doc__)
  p.add_argument('--dataset', required=True, help='dataset name, as for launch/train.py')
  p.add_argument('--out', required=True, type=_cli.out_dir, help='output directory')
  p.add_argument('--data_dir', default=None, type=_cli.out_dir, help='where TFDS keeps prepared data')
  p.add_argument('--manual_dir', default=None, type=_cli.existing_dir, help='original dataset files for offline preparation')
  p.add_argument('--split', default='train', help='split to de-duplicate (the one you train on)')
  p.add_argument('--steps', type=_cli.int_range(1), default=from_defaults['steps'], help='autoencoder training steps')
  p.add_argument('--batch_size', type=_cli.int_range(1, 65536), default=from_defaults['batch_size'], help='autoencoder batch size')
  p.add_argument('--noise', type=_cli.float_range(0), default=from_defaults['noise'], help='denoising input noise std')
  p.add_argument('--dropout', type=_cli.float_range(0, 0.999), default=from_defaults['dropout'], help='dropout rate on the code')
  p.add_argument('--code_noise', type=_cli.float_range(0), default=from_defaults['code_noise'],
                 help='noise std on the code pre-activations in training (0: off)')
  p.add_argument('--lr', type=_cli.float_range(0, above=True), default=from_defaults['lr'], help='Adam learning rate')
  p.add_argument('--seed', type=_cli.int_range(0, 2**32 - 1), default=0, help='seed')
  p.add_argument('--retrain', action='store_true', help='train a new autoencoder even if OUT has one')
  p.add_argument('--show', type=_cli.int_range(0, 1000), default=16, help='duplicate groups drawn in groups.png')
  return p


def parse(argv=None):
  return parser().parse_args(argv)


def run(a):
  from common import dedup   # JAX: after --help
  return dedup.run(a)


def main(argv=None) -> int:
  return _cli.run_main(parse, run, argv, imports=('common.dedup',))


if __name__ == '__main__':
  _cli.exit(main())
