"""Samples from a trained run as PNG grids.

  python launch/sample.py --workdir=runs/digits --num=64 --out=samples.png
  python launch/sample.py --workdir=runs/digits --interpolate --rows=8 --steps=10 --method=spherical --out=walk.png
  python launch/sample.py --workdir=runs/bigan --reconstruct --num=32 --out=recon.png   (BiGAN: x beside G(E(x)))
"""
import sys

if __package__ in (None, ''):   # python launch/sample.py from a checkout: put the checkout on sys.path
  import os
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launch import _cli  # noqa: E402


def parser():
  """The argument parser (every flag, its check and its help)."""
  p = _cli.parser(__doc__)
  p.add_argument('--workdir', required=True, type=_cli.run_dir, help='run directory written by launch/train.py')
  p.add_argument('--out', default=None, type=_cli.out_file, help='output PNG (default: WORKDIR/sample.png, walk.png '
                                                                  'or recon.png)')
  p.add_argument('--num', type=_cli.int_range(1, 4096), default=64, help='number of samples (or reconstructions)')
  p.add_argument('--seed', type=_cli.int_range(0, 2**32 - 1), default=0, help='seed for z')
  p.add_argument('--step', type=_cli.int_range(0), default=None, help='checkpoint step (default: latest)')
  p.add_argument('--interpolate', action='store_true', help='write a latent-walk sheet instead of samples')
  p.add_argument('--rows', type=_cli.int_range(1, 256), default=8, help='walks in the sheet (--interpolate)')
  p.add_argument('--steps', type=_cli.int_range(2, 256), default=10,
                 help='points per walk, ends included (--interpolate)')
  p.add_argument('--method', default='linear', choices=('linear', 'spherical'), help='interpolation path')
  p.add_argument('--reconstruct', action='store_true', help='BiGAN/autoencoder: real x beside G(E(x))')
  p.add_argument('--batch_stats', default=None, choices=('running', 'batch'),
                 help="G's batchnorm: running averages (each image depends only on its z) or this batch's "
                      "(default: the run's --sample_bn; DCGAN: the batch's, as its authors sample)")
  return p


def parse(argv=None):
  return parser().parse_args(argv)


def run(a):
  from common import sampling   # JAX: after --help
  print(f'wrote {sampling.write(a.workdir, out=a.out, num=a.num, seed=a.seed, step=a.step, interpolate=a.interpolate, rows=a.rows, steps=a.steps, method=a.method, reconstruct=a.reconstruct, batch_stats=a.batch_stats)}')


def main(argv=None) -> int:
  return _cli.run_main(parse, run, argv, imports=('common.sampling',))


if __name__ == '__main__':
  _cli.exit(main())
