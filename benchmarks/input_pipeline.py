"""Input pipeline throughput on an LSUN-like set, new (Grain worker processes) against old (threads).

  python benchmarks/input_pipeline.py                      # 3000 images, folder and LMDB, workers 1 and 2
  python benchmarks/input_pipeline.py --workers=1,2,4,8 --images=5000
  python benchmarks/input_pipeline.py --dataset=celeba --manual_dir=...   # any dataset instead
  python benchmarks/input_pipeline.py --flops              # + FLOPs of a DCGAN-64 step and cores per H100

The set is made once in --workdir: --images photo-like JPEGs (common/datasets/synthetic.py) with a
--short px shorter edge and LSUN's mix of aspect ratios, written both as a folder of files and as an
LSUN-format LMDB (40-hex keys -> JPEG bytes, as ``bedroom_train_lmdb``), and prepared through
``open_source`` ('folder:...' and 'lsun/bedroom'), which stores the original JPEG bytes in array_record
either way. Each pipeline then makes uncached (cache=False) batches at --resolution (shorter edge resized
to it, center crop), and the consumer does nothing else. Reported per run: img/s over --steps batches
after --warmup; img/s per worker (the nominal core count); img per CPU-second (the CPU time of the main
process and its workers during the timed batches, read from /proc); and the load average, since other
processes on the machine share its cores. The old pipeline is benchmarks/baseline_threaded_batches.py
with num_threads = workers.

--flops: XLA's cost analysis of one jitted DCGAN-64 train step (paper defaults: 5x5 kernels, width 128,
batch 128, G's transposed convolutions in XLA's own form, as on a GPU; the CPU's sub-pixel form for
comparison), and the images per second an H100 consumes at two assumed sustained rates (``H100``), hence
the cores needed at the measured img per CPU-second of the new pipeline (1000 when not measured).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Assumed sustained throughput of one H100 SXM on this step: 989 TFLOP/s is the dense bf16 peak; small
# convolutions at batch 128 keep a GAN far from it, so we take 35% of it for bf16, and 55 TFLOP/s for
# float32 math on tensor cores (tf32), a typical achieved figure.
H100 = {'bf16 (35% of 989 TFLOP/s peak)': 0.35 * 989e12, 'fp32/tf32 (55 TFLOP/s achieved)': 55e12}


# -- the LSUN-like set -------------------------------------------------------------------------------------


def make_set(workdir: str, n: int, short: int, quality: int, seed: int = 0) -> dict:
  """Writes ``n`` photo-like JPEGs to <workdir>/images/ and the same bytes to an LSUN LMDB under
  <workdir>/manual/bedroom_train_lmdb/ (once; reused when the parameters match)."""
  import lmdb
  import numpy as np
  from common.datasets import synthetic
  meta = {'images': n, 'short': short, 'quality': quality, 'seed': seed}
  marker = os.path.join(workdir, 'set.json')
  if os.path.exists(marker) and json.load(open(marker)) == meta:
    return meta
  import shutil
  for sub in ('images', 'manual', 'tfds'):
    shutil.rmtree(os.path.join(workdir, sub), ignore_errors=True)
  os.makedirs(os.path.join(workdir, 'images'))
  lmdb_dir = os.path.join(workdir, 'manual', 'bedroom_train_lmdb')
  os.makedirs(lmdb_dir)
  rng = np.random.default_rng(seed)
  t = time.perf_counter()
  env = lmdb.open(lmdb_dir, map_size=1 << 34)
  with env.begin(write=True) as txn:
    for i, (h, w) in enumerate(synthetic.lsun_like_sizes(rng, n, short)):
      data = synthetic.photo_like_jpeg(rng, h, w, quality)
      with open(os.path.join(workdir, 'images', f'{i:06d}.jpg'), 'wb') as f:
        f.write(data)
      txn.put(hashlib.sha1(data).hexdigest().encode(), data)
  env.close()
  with open(marker, 'w') as f:
    json.dump(meta, f)
  print(f'made {n} JPEGs ({short} px shorter edge, quality {quality}) in {time.perf_counter() - t:.0f} s',
        file=sys.stderr)
  return meta


# -- measuring ---------------------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
  """utime + stime of a process, from /proc (0 when it is gone)."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
  except (OSError, IndexError, ValueError):
    return 0.0


def _cpu_now() -> dict[int, float]:
  out = {os.getpid(): time.process_time()}
  for p in multiprocessing.active_children():
    out[p.pid] = _cpu_seconds(p.pid)
  return out


def measure(make_batches, *, steps: int, warmup: int, batch_size: int) -> dict:
  """img/s and CPU seconds of ``steps`` batches after ``warmup`` (which includes starting workers)."""
  with make_batches() as it:
    t0 = time.perf_counter()
    for _ in range(warmup):
      next(it)
    startup_s = time.perf_counter() - t0
    cpu0 = _cpu_now()
    t0 = time.perf_counter()
    for _ in range(steps):
      next(it)
    dt = time.perf_counter() - t0
    cpu1 = _cpu_now()
  main = os.getpid()
  main_cpu = cpu1[main] - cpu0[main]
  cpu = sum(cpu1[p] - cpu0.get(p, cpu1[p]) for p in cpu1)
  images = steps * batch_size
  return {'img_per_s': round(images / dt, 1), 'img_per_cpu_s': round(images / max(cpu, 1e-9), 1),
          'cpu_cores_busy': round(cpu / dt, 2), 'main_cpu_ms_per_img': round(1000 * main_cpu / images, 3),
          'worker_cpu_ms_per_img': round(1000 * (cpu - main_cpu) / images, 3), 'warmup_s': round(startup_s, 2)}


def pipelines(names, workers_list, draft_list):
  """(label, kind, workers, draft) of every run."""
  out = []
  for w in workers_list:
    if 'old' in names:
      out.append(('old threads', 'old', w, False))
    if 'new' in names:
      for d in draft_list:
        out.append((f'new grain{"" if d else " no-draft"}', 'new', w, d))
  return out


def run_throughput(a) -> list[dict]:
  from common import data
  import baseline_threaded_batches as old
  if a.dataset:
    layouts = [(a.dataset, dict(data_dir=a.data_dir, manual_dir=a.manual_dir))]
  else:
    make_set(a.workdir, a.images, a.short, a.quality)
    dd = os.path.join(a.workdir, 'tfds')
    all_layouts = {'folder': (f'folder:{os.path.join(a.workdir, "images")}', dict(data_dir=dd)),
                   'lmdb': ('lsun/bedroom', dict(data_dir=dd, manual_dir=os.path.join(a.workdir, 'manual')))}
    layouts = [all_layouts[k] for k in a.layouts.split(',')]
  results = []
  for name, kw in layouts:
    t = time.perf_counter()
    source, info = data.open_source(name, a.split, **kw)
    open_s = time.perf_counter() - t
    layout = 'lmdb' if name.startswith('lsun') and not a.dataset else ('folder' if not a.dataset else name)
    opts = dict(global_batch=a.batch_size, resolution=a.resolution, seed=0, cache=False, prefetch=2)
    for label, kind, w, draft in pipelines(a.pipelines.split(','), [int(x) for x in a.workers.split(',')],
                                           [d == 'on' for d in a.draft.split(',')]):
      if kind == 'old':
        make = lambda w=w: old.Batches(source, num_threads=w, **opts)  # noqa: E731
      else:
        make = lambda w=w, draft=draft: data.Batches(source, workers=w, jpeg_draft=draft, **opts)  # noqa: E731
      r = measure(make, steps=a.steps, warmup=a.warmup, batch_size=a.batch_size)
      r = {'layout': layout, 'pipeline': label, 'workers': w, **r,
           'img_per_s_per_worker': round(r['img_per_s'] / max(w, 1), 1),
           'resolution': a.resolution, 'batch_size': a.batch_size, 'num_examples': info.num_examples,
           'open_s': round(open_s, 2), 'cpus': len(os.sched_getaffinity(0)),
           'loadavg_1m': round(os.getloadavg()[0], 2)}
      print(json.dumps(r), flush=True)
      results.append(r)
  return results


def table(results: list[dict]) -> str:
  lines = ['| set | pipeline | workers | img/s | img/s per worker | img per CPU-s | CPU ms/img main + workers '
           '| cores busy | load 1m |', '|---|---|---|---|---|---|---|---|---|']
  for r in results:
    lines.append(f'| {r["layout"]} | {r["pipeline"]} | {r["workers"]} | {r["img_per_s"]:.0f} | '
                 f'{r["img_per_s_per_worker"]:.0f} | {r["img_per_cpu_s"]:.0f} | {r["main_cpu_ms_per_img"]:.2f} + '
                 f'{r["worker_cpu_ms_per_img"]:.2f} | {r["cpu_cores_busy"]} | {r["loadavg_1m"]} |')
  return '\n'.join(lines)


# -- FLOPs of a train step ---------------------------------------------------------------------------------


def step_flops(config_name: str = 'dcgan64', batch_size: int = 128, upsample_impl: str = 'xla') -> dict:
  """FLOPs of one jitted train step from XLA's cost analysis (lowered and compiled, never run)."""
  import jax
  import numpy as np
  from common import parallel, registry
  from common.config import Config
  from common.model import DataFacts
  import train_step as bench_step
  overrides, channels = bench_step.CONFIGS[config_name]
  config = Config.make(**overrides, batch_size=batch_size, steps=10**6, upsample_impl=upsample_impl)
  model = registry.build(config, DataFacts(channels, 10))
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  r = model.data_options()['resolution']
  batch = {'image': jax.ShapeDtypeStruct((batch_size, r, r, channels), np.float32),
           'label': jax.ShapeDtypeStruct((batch_size,), np.int32)}
  t = time.perf_counter()
  compiled = parallel.data_parallel(model.train_step, mesh).lower(state, batch).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return {'config': config_name, 'batch_size': batch_size, 'upsample_impl': upsample_impl,
          'flops_per_step': float(cost['flops']), 'flops_per_image': float(cost['flops']) / batch_size,
          'compile_s': round(time.perf_counter() - t, 1)}


def h100_estimate(flops_per_image: float, img_per_s_per_core: float) -> list[dict]:
  out = []
  for assumption, rate in H100.items():
    img_s = rate / flops_per_image
    out.append({'assumption': assumption, 'sustained_flop_per_s': rate, 'h100_img_per_s': round(img_s),
                'cores_at_measured_rate': round(img_s / img_per_s_per_core, 1),
                'img_per_s_per_core': round(img_per_s_per_core, 1)})
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdir', default='/tmp/input_pipeline_bench')
  p.add_argument('--images', type=int, default=3000)
  p.add_argument('--short', type=int, default=256, help='shorter edge of the generated JPEGs')
  p.add_argument('--quality', type=int, default=75, help='JPEG quality of the generated images (LSUN: 75)')
  p.add_argument('--layouts', default='folder,lmdb')
  p.add_argument('--dataset', default=None, help='benchmark this dataset instead of the generated set')
  p.add_argument('--split', default='train')
  p.add_argument('--data_dir', default=None)
  p.add_argument('--manual_dir', default=None)
  p.add_argument('--resolution', type=int, default=64)
  p.add_argument('--batch_size', type=int, default=128)
  p.add_argument('--steps', type=int, default=40)
  p.add_argument('--warmup', type=int, default=15,
                 help='untimed batches: worker start-up, and enough to drain the buffers filled meanwhile')
  p.add_argument('--workers', default='1,2', help='comma-separated worker (old: thread) counts')
  p.add_argument('--pipelines', default='old,new')
  p.add_argument('--draft', default='on', help="new pipeline's jpeg_draft: on, off or on,off")
  p.add_argument('--flops', action='store_true', help='also estimate FLOPs per DCGAN-64 step and cores per H100')
  p.add_argument('--flops_config', default='dcgan64', help='a config of benchmarks/train_step.py')
  p.add_argument('--no_throughput', action='store_true')
  a = p.parse_args(argv)
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # baseline_threaded_batches, train_step
  results = [] if a.no_throughput else run_throughput(a)
  if results:
    print(table(results), file=sys.stderr)
  out = {'throughput': results}
  if a.flops:
    flops = [step_flops(a.flops_config, a.batch_size, impl) for impl in ('xla', 'subpixel')]
    new = [r['img_per_cpu_s'] for r in results if r['pipeline'] == 'new grain']
    per_core = max(new) if new else 1000.0   # img per CPU-second: what a core gives when nothing else runs
    out['flops'] = flops
    out['h100'] = h100_estimate(flops[0]['flops_per_image'], per_core)
    print(json.dumps({'flops': flops, 'h100': out['h100']}), flush=True)
  return out


if __name__ == '__main__':
  main()
