"""Latent-space experiments on a trained generator (DCGAN sections 6.1, 6.3; Figures 4, 6, 7, 8), as PNGs.

  # a numbered sample sheet: sheet.png, and sheet.npz with the z (and labels) of every cell
  python launch/latent.py --workdir=runs/digits --sheet=runs/digits/sheet.png --num=64
  # walks between random points, a linear and a spherical row for each pair of end points (Figure 4)
  python launch/latent.py --workdir=runs/digits --walk --rows=4 --steps=10 --method=both --out=walks.png
  # vector arithmetic on exemplars picked from the sheet by number (Figure 7)
  python launch/latent.py --workdir=runs/digits --from_sheet=runs/digits/sheet.png \\
      --arithmetic="3,7,12 - 5,9,21 + 40,41,42" --out=arithmetic.png
  # a direction ("turn" vector) from one set to another, added to random samples (Figure 8)
  python launch/latent.py --workdir=runs/digits --from_sheet=runs/digits/sheet.png \\
      --direction="1,2,3 -> 4,5,6" --num=8 --steps=8 --out=direction.png
  # forgetting: drop the maps a logistic regression ties to boxed objects (Figure 6)
  python launch/latent.py --workdir=runs/digits --from_sheet=runs/digits/sheet.png --forget=boxes.json \\
      --num=16 --out=forget.png

boxes.json maps sheet numbers to boxes [x0, y0, x1, y1] in the generated image's pixels (G's resolution):
{"3": [[2, 2, 9, 14]], "10": [[0, 4, 8, 12]], "11": []}. See dcgan_jax/forget.py.
"""
import sys

if __package__ in (None, ''):   # python launch/latent.py from a checkout: put the checkout on sys.path
  import os
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from launch import _cli  # noqa: E402

MODES = ('sheet', 'walk', 'arithmetic', 'direction', 'forget')


def _span(text):
  try:
    t0, t1 = (float(v) for v in text.split(','))
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected "T0,T1" such as "0,1", got {text!r}') from None
  return t0, t1


def parser():
  """The argument parser (every flag, its check and its help)."""
  p = _cli.parser(__doc__)
  p.add_argument('--workdir', required=True, type=_cli.run_dir, help='run directory written by launch/train.py')
  p.add_argument('--step', type=_cli.int_range(0), default=None, help='checkpoint step (default: latest)')
  p.add_argument('--seed', type=_cli.int_range(0, 2**32 - 1), default=0, help='seed for z and noise')
  p.add_argument('--out', default=None, type=_cli.out_file, help='output PNG (default: WORKDIR/<mode>.png)')
  p.add_argument('--batch_stats', default='running', choices=('running', 'batch'),
                 help="G's batchnorm: running averages (each image depends only on its z) or this batch's")
  mode = p.add_argument_group('what to make (exactly one)')
  mode.add_argument('--sheet', metavar='FILE.png', type=_cli.out_file, help='numbered sample sheet; also writes FILE.npz (z, labels)')
  mode.add_argument('--walk', action='store_true', help='latent walks between random points')
  mode.add_argument('--arithmetic', metavar='EXPR', help='e.g. "3,7,12 - 5,9,21 + 40,41,42" (sheet numbers)')
  mode.add_argument('--direction', metavar='EXPR', help='e.g. "1,2,3 -> 4,5,6": mean(to) - mean(from)')
  mode.add_argument('--forget', metavar='BOXES.json', type=_cli.existing_file, help='boxes on sheet samples; drop the maps that draw them')
  p.add_argument('--from_sheet', metavar='SHEET', type=_cli.existing_file, help='sheet (.png or .npz) whose numbers the expression uses')
  p.add_argument('--num', type=_cli.int_range(1, 4096), default=None,
                 help='samples: on the sheet (default 64), walked along the direction or shown with and '
                      'without the forgotten maps (default 8)')
  p.add_argument('--rows', type=_cli.int_range(1, 256), default=4, help='--walk: pairs of end points')
  p.add_argument('--steps', type=_cli.int_range(2, 256), default=8, help='--walk/--direction: points per row, ends included')
  p.add_argument('--method', default='both', choices=('linear', 'spherical', 'both'), help='--walk: path')
  p.add_argument('--scale', type=_cli.float_range(0), default=0.25, help='--arithmetic: noise scale of the 8 neighbours')
  p.add_argument('--label', type=_cli.int_range(0), default=None, help='conditional model: label of the arithmetic result')
  p.add_argument('--span', type=_span, default=(0.0, 1.0), metavar='T0,T1',
                 help='--direction: z + t * direction for t from T0 to T1 (default 0,1)')
  p.add_argument('--layer', default=None, help="--forget: G's layer (default: the second-highest hidden layer)")
  p.add_argument('--negatives', type=_cli.float_range(0, above=True), default=1.0, help='--forget: negatives per positive')
  return p


def parse(argv=None):
  p = parser()
  a = p.parse_args(argv)
  chosen = [m for m in MODES if getattr(a, m)]
  if len(chosen) != 1:
    p.error(f'choose exactly one of {", ".join("--" + m for m in MODES)}')
  a.mode = chosen[0]
  if a.mode in ('arithmetic', 'direction', 'forget') and not a.from_sheet:
    p.error(f'--{a.mode} needs --from_sheet=SHEET (make one with --sheet=SHEET.png)')
  return a


def run(a):
  from dcgan_jax import latent_tools   # JAX: after --help
  return latent_tools.make_picture(a)


def main(argv=None) -> int:
  return _cli.run_main(parse, run, argv, imports=('dcgan_jax.latent_tools',))


if __name__ == '__main__':
  _cli.exit(main())
