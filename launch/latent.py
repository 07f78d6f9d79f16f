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
import argparse
import sys

import _path  # noqa: F401

MODES = ('sheet', 'walk', 'arithmetic', 'direction', 'forget')


def _span(text):
  try:
    t0, t1 = (float(v) for v in text.split(','))
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected "T0,T1" such as "0,1", got {text!r}') from None
  return t0, t1


def parse(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdir', required=True, help='run directory written by launch/train.py')
  p.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  p.add_argument('--seed', type=int, default=0, help='seed for z and noise')
  p.add_argument('--out', default=None, help='output PNG (default: WORKDIR/<mode>.png)')
  p.add_argument('--batch_stats', default='running', choices=('running', 'batch'),
                 help="G's batchnorm: running averages (each image depends only on its z) or this batch's")
  mode = p.add_argument_group('what to make (exactly one)')
  mode.add_argument('--sheet', metavar='FILE.png', help='numbered sample sheet; also writes FILE.npz (z, labels)')
  mode.add_argument('--walk', action='store_true', help='latent walks between random points')
  mode.add_argument('--arithmetic', metavar='EXPR', help='e.g. "3,7,12 - 5,9,21 + 40,41,42" (sheet numbers)')
  mode.add_argument('--direction', metavar='EXPR', help='e.g. "1,2,3 -> 4,5,6": mean(to) - mean(from)')
  mode.add_argument('--forget', metavar='BOXES.json', help='boxes on sheet samples; drop the maps that draw them')
  p.add_argument('--from_sheet', metavar='SHEET', help='sheet (.png or .npz) whose numbers the expression uses')
  p.add_argument('--num', type=int, default=None,
                 help='samples: on the sheet (default 64), walked along the direction or shown with and '
                      'without the forgotten maps (default 8)')
  p.add_argument('--rows', type=int, default=4, help='--walk: pairs of end points')
  p.add_argument('--steps', type=int, default=8, help='--walk/--direction: points per row, ends included')
  p.add_argument('--method', default='both', choices=('linear', 'spherical', 'both'), help='--walk: path')
  p.add_argument('--scale', type=float, default=0.25, help='--arithmetic: noise scale of the 8 neighbours')
  p.add_argument('--label', type=int, default=None, help='conditional model: label of the arithmetic result')
  p.add_argument('--span', type=_span, default=(0.0, 1.0), metavar='T0,T1',
                 help='--direction: z + t * direction for t from T0 to T1 (default 0,1)')
  p.add_argument('--layer', default=None, help="--forget: G's layer (default: the second-highest hidden layer)")
  p.add_argument('--negatives', type=float, default=1.0, help='--forget: negatives per positive')
  a = p.parse_args(argv)
  chosen = [m for m in MODES if getattr(a, m)]
  if len(chosen) != 1:
    p.error(f'choose exactly one of {", ".join("--" + m for m in MODES)}')
  a.mode = chosen[0]
  if a.mode in ('arithmetic', 'direction', 'forget') and not a.from_sheet:
    p.error(f'--{a.mode} needs --from_sheet=SHEET (make one with --sheet=SHEET.png)')
  if a.num is not None and a.num < 1:
    p.error('--num must be >= 1')
  if a.steps < 2 or a.rows < 1:
    p.error('--steps must be >= 2 and --rows >= 1')
  return a


def run(a) -> str:
  import os
  import jax
  import numpy as np
  from common import checkpoint, images, visualize
  from dcgan_jax import latent_tools as lt
  model, state, config = checkpoint.load(a.workdir, a.step)
  if a.mode == 'forget' and not isinstance(model.networks(), tuple):
    raise ValueError(f'--forget works on DCGAN runs; {a.workdir} holds a {config.model} model')
  state = visualize.single_device(state)     # one device is plenty, and 1/n of the work
  running = a.batch_stats == 'running'
  key = jax.random.PRNGKey(a.seed)
  out = a.out or os.path.join(a.workdir, f'{a.mode}.png')
  sheet = lt.load_sheet(a.from_sheet, model.z_dim) if a.from_sheet else None

  if a.mode == 'sheet':
    s = lt.numbered_sheet(model, state, key, a.num or 64, use_running_average=running)
    png, npz = lt.save_sheet(a.sheet, s, workdir=os.path.abspath(a.workdir), step=int(state.step), seed=a.seed)
    print(f'wrote {png} and {npz}')
    return png
  if a.mode == 'walk':
    methods = ('linear', 'spherical') if a.method == 'both' else (a.method,)
    z = lt.walks(key, a.rows, a.steps, model.z_dim, methods)
    s = max(1, 64 // model.resolution)
    text = ('rows in pairs: linear, spherical (same end points)' if len(methods) == 2 else f'{methods[0]} walks')
    images.save_png(visualize.caption(visualize.upscale(
        images.grid(lt.generate(model, state, z, None, running), ncol=a.steps), s), text), out)
  elif a.mode == 'arithmetic':
    r = lt.vector_arithmetic(model, state, sheet, lt.parse_arithmetic(a.arithmetic), key, a.scale, a.label,
                             use_running_average=running)
    images.save_png(lt.arithmetic_figure(r), out)
    np.savez(os.path.splitext(out)[0] + '.npz', y=r['y'], grid_z=r['grid_z'])
  elif a.mode == 'direction':
    ids_from, ids_to = lt.parse_direction(a.direction)
    r = lt.direction_walks(model, state, sheet, ids_from, ids_to, key, a.num or 8, a.steps, *a.span,
                           use_running_average=running)
    s = max(1, 64 // model.resolution)
    images.save_png(visualize.caption(visualize.upscale(images.grid(r['images'], ncol=a.steps), s),
                                      f'z + t * (mean {ids_to} - mean {ids_from}), t = {a.span[0]:g} .. {a.span[1]:g}'),
                    out)
    np.savez(os.path.splitext(out)[0] + '.npz', direction=r['direction'], z=r['z'])
  elif a.mode == 'forget':
    from dcgan_jax import forget
    boxes = forget.read_boxes(a.forget)
    r = forget.forget(model, state, sheet, boxes, layer=a.layer, seed=a.seed, negatives=a.negatives)
    print(f"{r['layer']}: {r['positives']} positives, {r['negatives']} negatives, training accuracy "
          f"{r['accuracy']:.3f}; dropping {r['dropped']} of {len(r['mask'])} maps")
    z = jax.random.uniform(key, (a.num or 8, model.z_dim), minval=-1.0, maxval=1.0)
    orig, forgot = forget.with_and_without(model, state, z, r['mask'], r['layer'], use_running_average=running)
    images.save_png(forget.figure(orig, forgot, r['layer'], r['dropped'], len(r['mask'])), out)
    np.savez(os.path.splitext(out)[0] + '.npz', mask=r['mask'], weights=r['weights'], layer=r['layer'], z=np.asarray(z))
  print(f'wrote {out}')
  return out


def main(argv=None) -> int:
  return _path.run_main(parse, run, argv)


if __name__ == '__main__':
  sys.exit(main())
