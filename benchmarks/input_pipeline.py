"""Input pipeline throughput: images/s that ``common.data.Batches`` delivers to a consumer doing nothing else.

  python benchmarks/input_pipeline.py --dataset=digits --resolution=32 --batch_size=128 --steps=200
  python benchmarks/input_pipeline.py --dataset=fashion_mnist --manual_dir=/usr/share/datasets/fashion-mnist

Prints one JSON line: steady-state images/s over ``--steps`` batches after ``--warmup`` batches (the
first batch includes building the in-memory cache, reported separately as ``first_batch_s``).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import data  # noqa: E402


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--dataset', default='digits')
  p.add_argument('--split', default='train')
  p.add_argument('--data_dir', default=None)
  p.add_argument('--manual_dir', default=None)
  p.add_argument('--resolution', type=int, default=32)
  p.add_argument('--load_size', type=int, default=None)
  p.add_argument('--crop', default='center', choices=('center', 'random'))
  p.add_argument('--flip', action='store_true')
  p.add_argument('--batch_size', type=int, default=128)
  p.add_argument('--steps', type=int, default=200)
  p.add_argument('--warmup', type=int, default=10)
  p.add_argument('--num_threads', type=int, default=None)
  p.add_argument('--prefetch', type=int, default=2)
  p.add_argument('--cache', choices=('auto', 'on', 'off'), default='auto')
  p.add_argument('--seed', type=int, default=0)
  a = p.parse_args(argv)

  t0 = time.perf_counter()
  try:
    source, info = data.open_source(a.dataset, a.split, data_dir=a.data_dir, manual_dir=a.manual_dir)
  except data.DataError as e:
    sys.exit(f'error: {e}')
  open_s = time.perf_counter() - t0
  cache = {'auto': None, 'on': True, 'off': False}[a.cache]
  t0 = time.perf_counter()
  with data.Batches(source, global_batch=a.batch_size, resolution=a.resolution, seed=a.seed,
                    load_size=a.load_size, crop=a.crop, flip=a.flip, num_threads=a.num_threads,
                    prefetch=a.prefetch, cache=cache) as it:
    next(it)
    first_s = time.perf_counter() - t0
    for _ in range(a.warmup):
      next(it)
    t0 = time.perf_counter()
    for _ in range(a.steps):
      batch = next(it)
    dt = time.perf_counter() - t0
    cached = it._plan._cache is not None  # noqa: SLF001 - reported for context
  print(json.dumps({
      'dataset': info.name, 'split': info.split, 'num_examples': info.num_examples,
      'resolution': a.resolution, 'channels': info.channels, 'batch_size': a.batch_size,
      'crop': a.crop, 'flip': a.flip, 'steps': a.steps, 'cached': cached,
      'threads': a.num_threads or min(8, os.cpu_count() or 1), 'cpus': os.cpu_count(),
      'images_per_s': round(a.steps * a.batch_size / dt, 1), 'ms_per_batch': round(1000 * dt / a.steps, 3),
      'first_batch_s': round(first_s, 3), 'open_s': round(open_s, 3),
      'batch_shape': list(batch['image'].shape)}))


if __name__ == '__main__':
  main()
