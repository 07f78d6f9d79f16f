"""Pictures of what a trained run's networks compute (DCGAN section 6.2, Figure 5; BiGAN Figure 3).

  # guided backpropagation of the maximal responses of D's last conv layer, trained D vs. a random D
  python launch/visualize.py --workdir=runs/digits --what=guided_backprop --maps=0,1,2,3,4,5 \\
      --num_images=512 --out=guided.png
  # first-layer filters of D (and E when the run has one), output-layer filters of G
  python launch/visualize.py --workdir=runs/digits --what=filters --out=filters.png

guided_backprop: for each map, the real image (of the first --num_images of --split) and the position
where the map responds most, and that one unit backpropagated to the input with the guided rule; top two
rows for the trained D, bottom two for a randomly initialised D of the same architecture (the baseline).
--net=E does the same for a BiGAN's encoder (a BiGAN's D sees (x, z), not an image alone).
"""
import sys

if __package__ in (None, ''):   # python launch/visualize.py from a checkout: put the checkout on sys.path
  import os
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from launch import _cli  # noqa: E402


def _maps(text):
  try:
    maps = [int(t) for t in text.split(',') if t.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected map numbers such as "0,1,2", got {text!r}') from None
  if not maps or min(maps) < 0:
    raise argparse.ArgumentTypeError(f'expected non-negative map numbers, got {text!r}')
  return maps


def parser():
  """The argument parser (every flag, its check and its help)."""
  p = _cli.parser(__doc__)
  p.add_argument('--workdir', required=True, type=_cli.run_dir, help='run directory written by launch/train.py')
  p.add_argument('--what', required=True, choices=('guided_backprop', 'filters'), help='which picture')
  p.add_argument('--out', default=None, type=_cli.out_file, help='output PNG (default: WORKDIR/<what>.png)')
  p.add_argument('--step', type=_cli.int_range(0), default=None, help='checkpoint step (default: latest)')
  p.add_argument('--maps', type=_maps, default=list(range(6)),
                 help="guided_backprop: maps of D's last conv layer (default 0..5, as Figure 5)")
  p.add_argument('--num_images', type=_cli.int_range(1, 100000), default=256, help='guided_backprop: real images searched')
  p.add_argument('--split', default='train', help='guided_backprop: dataset split of the real images')
  p.add_argument('--net', default='D', choices=('D', 'E'),
                 help="guided_backprop: the discriminator (DCGAN) or a BiGAN's encoder E")
  p.add_argument('--layer', default=None, help="guided_backprop: the network's layer (default: its last conv layer)")
  p.add_argument('--seed', type=_cli.int_range(0, 2**32 - 1), default=0, help='seed of the random-D baseline')
  return p


def parse(argv=None):
  return parser().parse_args(argv)


def run(a):
  from common import visualize   # JAX: after --help
  return visualize.make_picture(a)


def main(argv=None) -> int:
  return _cli.run_main(parse, run, argv, imports=('common.visualize',))


if __name__ == '__main__':
  _cli.exit(main())
