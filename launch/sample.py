"""Samples from a trained run as PNG grids.

  python launch/sample.py --workdir=runs/digits --num=64 --out=samples.png
  python launch/sample.py --workdir=runs/digits --interpolate --rows=8 --steps=10 --method=spherical --out=walk.png
  python launch/sample.py --workdir=runs/bigan --reconstruct --num=32 --out=recon.png   (BiGAN: x beside G(E(x)))
"""
import argparse
import sys

import _path  # noqa: F401


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdir', required=True, help='run directory written by launch/train.py')
  p.add_argument('--out', default=None, help='output PNG (default: WORKDIR/sample.png, walk.png or recon.png)')
  p.add_argument('--num', type=int, default=64, help='number of samples (or reconstructions)')
  p.add_argument('--seed', type=int, default=0, help='seed for z')
  p.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  p.add_argument('--interpolate', action='store_true', help='write a latent-walk sheet instead of samples')
  p.add_argument('--rows', type=int, default=8, help='walks in the sheet (--interpolate)')
  p.add_argument('--steps', type=int, default=10, help='points per walk, ends included (--interpolate)')
  p.add_argument('--method', default='linear', choices=('linear', 'spherical'), help='interpolation path')
  p.add_argument('--reconstruct', action='store_true', help='BiGAN/autoencoder: real x beside G(E(x))')
  p.add_argument('--batch_stats', default='running', choices=('running', 'batch'),
                 help="G's batchnorm: running averages (each image depends only on its z) or this batch's")
  a = p.parse_args(argv)

  import os
  import jax
  from common import checkpoint, images, latent
  try:
    model, state, config = checkpoint.load(a.workdir, a.step)
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  key = jax.random.PRNGKey(a.seed)
  running = a.batch_stats == 'running'
  if a.reconstruct:
    if not hasattr(model, 'reconstruct'):
      print(f'error: --reconstruct needs a model with an encoder; {config.model} has none', file=sys.stderr)
      return 1
    from common import data
    source, _ = data.open_source(config.dataset, 'test', data_dir=config.data_dir, manual_dir=config.manual_dir)
    it = data.Batches(source, global_batch=a.num, seed=a.seed, **model.data_options(eval=True))
    x = next(it)['image']
    it.close()
    sheet = images.interleave(model.display(x), model.reconstruct(state, x))
    out = a.out or os.path.join(a.workdir, 'recon.png')
    images.save_grid(sheet, out, ncol=8)
  elif a.interpolate:
    z = latent.walk_sheet(key, a.rows, a.steps, model.z_dim, a.method)
    out = a.out or os.path.join(a.workdir, 'walk.png')
    images.save_grid(model.generate(state, z, use_running_average=running), out, ncol=a.steps)
  else:
    out = a.out or os.path.join(a.workdir, 'sample.png')
    images.save_grid(model.sample(state, key, a.num, use_running_average=running), out)
  print(f'wrote {out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
