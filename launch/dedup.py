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
import argparse
import sys

import _path  # noqa: F401


def parse(argv=None):
  from_defaults = dict(steps=2000, batch_size=64, noise=0.2, dropout=0.1, code_noise=8.0, lr=1e-3)
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--dataset', required=True, help='dataset name, as for launch/train.py')
  p.add_argument('--out', required=True, help='output directory')
  p.add_argument('--data_dir', default=None, help='where TFDS keeps prepared data')
  p.add_argument('--manual_dir', default=None, help='original dataset files for offline preparation')
  p.add_argument('--split', default='train', help='split to de-duplicate (the one you train on)')
  p.add_argument('--steps', type=int, default=from_defaults['steps'], help='autoencoder training steps')
  p.add_argument('--batch_size', type=int, default=from_defaults['batch_size'], help='autoencoder batch size')
  p.add_argument('--noise', type=float, default=from_defaults['noise'], help='denoising input noise std')
  p.add_argument('--dropout', type=float, default=from_defaults['dropout'], help='dropout rate on the code')
  p.add_argument('--code_noise', type=float, default=from_defaults['code_noise'],
                 help='noise std on the code pre-activations in training (0: off)')
  p.add_argument('--lr', type=float, default=from_defaults['lr'], help='Adam learning rate')
  p.add_argument('--seed', type=int, default=0, help='seed')
  p.add_argument('--retrain', action='store_true', help='train a new autoencoder even if OUT has one')
  p.add_argument('--show', type=int, default=16, help='duplicate groups drawn in groups.png')
  a = p.parse_args(argv)
  if a.steps < 1 or a.batch_size < 1:
    p.error('--steps and --batch_size must be >= 1')
  return a


def run(a) -> dict:
  import json
  import os
  import time
  import numpy as np
  from common import data, dedup, images
  source, info = data.open_source(a.dataset, a.split, data_dir=a.data_dir, manual_dir=a.manual_dir)
  os.makedirs(a.out, exist_ok=True)
  t0 = time.time()
  if dedup.exists(a.out) and not a.retrain:
    hasher = dedup.load(a.out)
    if hasher.config.inputs != dedup.SIZE * dedup.SIZE * info.channels:
      raise ValueError(f'the autoencoder in {a.out} takes {hasher.config.inputs} inputs, {info.name} has '
                       f'{info.channels} channels: pass --retrain or another --out')
    print(f'loaded the autoencoder from {a.out}')
  else:
    config = dedup.HashConfig(noise=a.noise, dropout=a.dropout, code_noise=a.code_noise, lr=a.lr,
                              batch_size=a.batch_size, steps=a.steps, seed=a.seed)
    hasher = dedup.train_on_source(source, config, log=print)
    dedup.save(hasher, a.out)
  t1 = time.time()
  ids, keys = [], []
  for part, x in dedup.source_inputs(source):
    ids.append(part)
    keys.append(np.packbits(hasher.bits(x), axis=1))
  ids, keys = np.concatenate(ids), np.concatenate(keys)
  groups = dedup.group((k.tobytes() for k in keys), ids)
  kept = dedup.kept(groups)
  dups = dedup.duplicate_groups(groups)
  np.save(os.path.join(a.out, 'codes.npy'), keys)
  with open(os.path.join(a.out, 'kept.txt'), 'w') as f:
    f.write(''.join(f'{i}\n' for i in kept))
  summary = {'dataset': info.name, 'split': info.split, 'num_examples': int(len(ids)), 'num_kept': len(kept),
             'num_removed': int(len(ids) - len(kept)), 'num_groups': len(dups),
             'distinct_codes': len(groups), 'groups': dups}
  with open(os.path.join(a.out, 'groups.json'), 'w') as f:
    json.dump(summary, f)
  crops = lambda g: np.stack([dedup.downsample(source[int(i)]['image']) for i in g])  # noqa: E731
  images.save_png(dedup.groups_figure(groups, crops, max_groups=a.show), os.path.join(a.out, 'groups.png'))
  print(f'{info.name} {info.split}: {len(ids)} examples, {len(dups)} duplicate groups, {len(ids) - len(kept)} '
        f'removed, {len(kept)} kept (autoencoder {t1 - t0:.0f}s, hashing {time.time() - t1:.0f}s)')
  print(f'wrote {a.out}/kept.txt, groups.json, groups.png; train with --dedup={os.path.join(a.out, "kept.txt")}')
  return summary


def main(argv=None) -> int:
  return _path.run_main(parse, run, argv)


if __name__ == '__main__':
  sys.exit(main())
