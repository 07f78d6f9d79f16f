"""Train-step throughput at 1, 2, 4 and 8 devices with a fixed per-device batch (weak scaling).

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/scaling.py          # simulated CPU devices
  python benchmarks/scaling.py --devices=1                                                 # one GPU

Prints one JSON object per configuration: model, devices, global_batch, img_per_s, step_ms (median of
--reps timed steps after warm-up), plus compile_s. On simulated CPU devices the absolute figures mean
little (all "devices" share the same cores); what they show is the code path and the per-step overhead.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIGS = {
    # name: (Config overrides, channels, num_classes)
    'dcgan64': (dict(model='dcgan', resolution=64), 3, None),
    'dcgan32': (dict(model='dcgan', resolution=32), 3, None),
    'bigan_mlp': (dict(model='bigan', architecture='mlp', resolution=28), 1, 10),
    'bigan_conv64': (dict(model='bigan', architecture='conv', resolution=64), 3, None),
    'tiny': (dict(model='dcgan', resolution=8, width=8, z_dim=16), 1, None),   # for tests
}


def bench(name, n_devices, per_device_batch, reps, dtype):
  import jax
  import numpy as np
  from common import parallel, registry
  from common.config import Config
  from common.model import DataFacts
  overrides, channels, num_classes = CONFIGS[name]
  gb = per_device_batch * n_devices
  config = Config.make(**overrides, batch_size=gb, dtype=dtype)
  model = registry.build(config, DataFacts(channels, num_classes))
  mesh = parallel.make_mesh(jax.devices()[:n_devices])
  state = jax.jit(model.init, out_shardings=parallel.replicated(mesh))(jax.random.PRNGKey(0))
  opts = model.data_options()
  r = opts['resolution']
  rng = np.random.default_rng(0)
  batch = parallel.global_batch(mesh, {'image': rng.uniform(-1, 1, (gb, r, r, channels)).astype(np.float32),
                                       'label': rng.integers(0, 10, gb).astype(np.int32)})
  step = parallel.data_parallel(model.train_step, mesh)
  t = time.perf_counter()
  state, m = step(state, batch)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t
  state, m = step(state, batch)  # warm-up
  jax.block_until_ready(m)
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    state, m = step(state, batch)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
  ms = 1000 * float(np.median(times))
  return {'model': name, 'devices': n_devices, 'global_batch': gb, 'img_per_s': round(gb / ms * 1000, 1),
          'step_ms': round(ms, 2), 'compile_s': round(compile_s, 2), 'dtype': dtype,
          'platform': jax.devices()[0].platform, 'device_kind': jax.devices()[0].device_kind}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--models', default='dcgan64,bigan_mlp', help=f'comma list of {sorted(CONFIGS)}')
  p.add_argument('--devices', default='1,2,4,8', help='device counts (each <= available devices)')
  p.add_argument('--per_device_batch', type=int, default=8)
  p.add_argument('--reps', type=int, default=5)
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  a = p.parse_args(argv)
  import jax
  for name in a.models.split(','):
    for n in map(int, a.devices.split(',')):
      if n > jax.device_count():
        print(json.dumps({'model': name, 'devices': n, 'skipped': f'only {jax.device_count()} devices'}))
        continue
      print(json.dumps(bench(name, n, a.per_device_batch, a.reps, a.dtype)), flush=True)


if __name__ == '__main__':
  main()
