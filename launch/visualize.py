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
import argparse
import sys

import _path  # noqa: F401


def _maps(text):
  try:
    maps = [int(t) for t in text.split(',') if t.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected map numbers such as "0,1,2", got {text!r}') from None
  if not maps or min(maps) < 0:
    raise argparse.ArgumentTypeError(f'expected non-negative map numbers, got {text!r}')
  return maps


def parse(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdir', required=True, help='run directory written by launch/train.py')
  p.add_argument('--what', required=True, choices=('guided_backprop', 'filters'), help='which picture')
  p.add_argument('--out', default=None, help='output PNG (default: WORKDIR/<what>.png)')
  p.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  p.add_argument('--maps', type=_maps, default=list(range(6)),
                 help="guided_backprop: maps of D's last conv layer (default 0..5, as Figure 5)")
  p.add_argument('--num_images', type=int, default=256, help='guided_backprop: real images searched')
  p.add_argument('--split', default='train', help='guided_backprop: dataset split of the real images')
  p.add_argument('--net', default='D', choices=('D', 'E'),
                 help="guided_backprop: the discriminator (DCGAN) or a BiGAN's encoder E")
  p.add_argument('--layer', default=None, help="guided_backprop: the network's layer (default: its last conv layer)")
  p.add_argument('--seed', type=int, default=0, help='seed of the random-D baseline')
  a = p.parse_args(argv)
  if a.num_images < 1:
    p.error('--num_images must be >= 1')
  return a


def _real_images(model, config, n, split):
  from common import data
  source, _ = data.open_source(config.dataset, split, data_dir=config.data_dir, manual_dir=config.manual_dir)
  try:
    opts = model.data_options(eval=True)
  except TypeError:
    opts = model.data_options()
  n = min(n, len(source))
  with data.Batches(source, global_batch=n, seed=0, prefetch=0, cache=False, **opts) as it:
    return next(it)


def run(a) -> str:
  import os
  import jax
  import jax.numpy as jnp
  from common import checkpoint, images, visualize
  model, state, config = checkpoint.load(a.workdir, a.step)
  state = visualize.single_device(state)
  out = a.out or os.path.join(a.workdir, f'{a.what}.png')
  if a.what == 'filters':
    filters = visualize.network_filters(jax.device_get(state.params), model.channels, model.resolution)
    images.save_png(visualize.filters_figure(filters), out)
    print('filters: ' + ', '.join(f'{k} {p} ({len(t)})' for k, (p, t) in filters.items()))
  else:
    nets = model.networks()
    nets = {'G': nets[0], 'D': nets[1]} if isinstance(nets, tuple) else nets
    if a.net == 'D' and 'E' in nets:
      raise ValueError(f"a {config.model} D sees (x, z): guided backpropagation needs an image-only network; "
                       'use --net=E for its encoder')
    net = nets.get(a.net)
    if net is None or a.net not in state.params:
      raise ValueError(f'{config.model} has no {a.net} to visualise')
    batch = _real_images(model, config, a.num_images, a.split)
    x = jnp.asarray(batch['image'])
    size = model.resolution if a.net == 'D' else getattr(model, 'encoder_resolution', model.resolution)
    if x.shape[1] != size:
      x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), 'linear')
    from dcgan_jax.latent_tools import is_conditional
    labels = batch['label'] if a.net == 'D' and is_conditional(model) else None
    trained = visualize.maximal_response_backprop(net, state.variables(a.net), x, a.maps, labels=labels,
                                                  layer=a.layer)
    init_args = (x[:2],) if labels is None else (x[:2], jnp.asarray(labels[:2]))
    random_vars = net.init(jax.random.PRNGKey(a.seed), *init_args, train=False)
    random = visualize.maximal_response_backprop(net, random_vars, x, a.maps, labels=labels, layer=a.layer)
    for r in (trained, random):
      r['maps'], r['net'] = a.maps, a.net
    images.save_png(visualize.guided_backprop_figure(trained, random, x), out)
    print(f"{trained['layer']}: maximal responses {', '.join(f'{v:.3g}' for v in trained['value'])} (trained), "
          f"{', '.join(f'{v:.3g}' for v in random['value'])} (random)")
  print(f'wrote {out}')
  return out


def main(argv=None) -> int:
  return _path.run_main(parse, run, argv)


if __name__ == '__main__':
  sys.exit(main())
