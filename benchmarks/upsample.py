"""Benchmark stride-2 (de)convolution implementations from ``common.layers``.

For every DCGAN generator upsampling shape (ConvTranspose2x) and mirrored
discriminator downsampling shape (Conv2x) and every implementation, times

* ``fwd``: ``y = f(x, w)``
* ``fwd+bwd``: ``y, (dx, dw) = vjp(f)(x, w)`` with a fixed random cotangent
  (the primal output is returned so the forward pass cannot be dead-code
  eliminated, as happens with ``grad(sum(f * c))`` for a bilinear ``f``),

jitted (AOT-compiled first), after a warm-up call, median of ``--reps``
calls, with ``block_until_ready``. Prints one JSON line per (shape, impl) with
both times and the speed-up ratios ``xla_ms / impl_ms``.

Some XLA:CPU convolutions are pathologically slow (tens of seconds to minutes
per call at B=64, e.g. the xla transposed conv 4x4 -> 8x8, forward included).
To keep the run short, every xla timing is first probed with two calls at B=2;
if the linear extrapolation to the full batch exceeds ``--max-ms`` the
full-batch measurement is skipped and the extrapolated value is reported (listed
in ``"estimated"``); a first full-batch call slower than 3x ``--max-ms`` is not
repeated (listed in ``"single_call"``). ``*_min_ms`` are the fastest reps
(useful on a shared, noisy machine).

    python benchmarks/upsample.py            # B=64 and 128 (~2-3 min on 2 shared cores)
    python benchmarks/upsample.py --quick    # B=64, fewer reps
    python benchmarks/upsample.py --variants # also subpixel 'fused' / 'phase' variants
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from common import layers as L  # noqa: E402

# (H, Cin, Cout, k): input H x H x Cin -> output 2H x 2H x Cout.
UP_SHAPES = [
    (4, 1024, 512, 5),
    (8, 512, 256, 5),
    (16, 256, 128, 5),
    (32, 128, 3, 5),
    (16, 128, 64, 5),
]
# Discriminator mirror: input H x H x Cin -> output H/2 x H/2 x Cout.
DOWN_SHAPES = [
    (64, 3, 128, 5),
    (32, 128, 256, 5),
    (16, 256, 512, 5),
    (8, 512, 1024, 5),
    (32, 64, 128, 5),
]


def _impls(kind, variants):
  if kind == 'up':
    d = {'xla': L.conv_transpose_2x_xla, 'subpixel': L.conv_transpose_2x_subpixel}
    if variants:
      d['subpixel_fused'] = lambda x, w: L.conv_transpose_2x_subpixel(x, w, variant='fused')
      d['subpixel_phase'] = lambda x, w: L.conv_transpose_2x_subpixel(x, w, variant='phase')
  else:
    d = {'xla': L.conv_2x_xla, 'subpixel': L.conv_2x_subpixel}
  return d


def _time(fn, args, reps, max_ms=float('inf')):
  """(median, min, n) wall ms over ``reps`` calls after compile + a first call.

  If the first call (after AOT compilation) already exceeds ``max_ms``, it is
  the only measurement (n = 1): no point repeating a pathological case.
  """
  compiled = fn.lower(*args).compile()
  t0 = time.perf_counter()
  jax.block_until_ready(compiled(*args))
  first = time.perf_counter() - t0
  if first * 1e3 > max_ms:
    return first * 1e3, first * 1e3, 1
  ts = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    ts.append(time.perf_counter() - t0)
  return float(np.median(ts)) * 1e3, float(np.min(ts)) * 1e3, reps


def _make(fn):
  fwd = jax.jit(fn)

  @jax.jit
  def fwd_bwd(x, w, ct):
    y, vjp = jax.vjp(fn, x, w)
    return y, vjp(ct)

  return fwd, fwd_bwd


def _data(kind, b, h, cin, cout, k, dtype):
  kx, kw, kc = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (b, h, h, cin), dtype)
  w = (0.02 * jax.random.normal(kw, (k, k, cin, cout))).astype(dtype)
  ho = 2 * h if kind == 'up' else -(-h // 2)
  ct = jax.random.normal(kc, (b, ho, ho, cout), dtype)
  return x, w, ct


_PER_SAMPLE = {}   # (kind, shape, dtype, 'fwd'|'fwd_bwd') -> ms per sample
_PROBE_B = 2


def _per_sample_ms(key, fn, args):
  """Second call at batch _PROBE_B (the first one includes one-time costs), ms/sample."""
  if key not in _PER_SAMPLE:
    small = tuple(a if i == 1 else a[:_PROBE_B] for i, a in enumerate(args))  # w stays
    jax.block_until_ready(fn(*small))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*small))
    _PER_SAMPLE[key] = (time.perf_counter() - t0) * 1e3 / _PROBE_B
  return _PER_SAMPLE[key]


def run(kind, shapes, batches, reps, variants, max_ms, dtype):
  impls = _impls(kind, variants)
  for b in batches:
    for (h, cin, cout, k) in shapes:
      x, w, ct = _data(kind, b, h, cin, cout, k, dtype)
      ho = 2 * h if kind == 'up' else -(-h // 2)
      base = None
      for name, fn in impls.items():
        fwd, fwd_bwd = _make(fn)
        rec = {
            'op': 'conv_transpose_2x' if kind == 'up' else 'conv_2x',
            'shape': f'{h}x{h}x{cin}->{ho}x{ho}x{cout}', 'k': k, 'B': b,
            'dtype': jnp.dtype(dtype).name, 'impl': name,
            'backend': jax.default_backend(),
        }
        estimated, single = [], []
        for what, f, args in (('fwd', fwd, (x, w)), ('fwd_bwd', fwd_bwd, (x, w, ct))):
          if name == 'xla':   # XLA:CPU has pathological cases: probe first
            key = (kind, h, cin, cout, k, rec['dtype'], what)
            est = _per_sample_ms(key, f, args) * b
            if est > max_ms:
              rec[f'{what}_ms'] = round(est, 1)
              estimated.append(what)
              continue
          med, mn, n = _time(f, args, reps, 3 * max_ms)
          rec[f'{what}_ms'], rec[f'{what}_min_ms'] = round(med, 2), round(mn, 2)
          if n == 1:
            single.append(what)
        rec['estimated'] = estimated   # timings extrapolated from the B=2 probe
        rec['single_call'] = single     # timings from one (too slow to repeat) call
        if name == 'xla':
          base = rec
        if base is not None:
          rec['ratio_fwd'] = round(base['fwd_ms'] / rec['fwd_ms'], 2)
          rec['ratio_fwd_bwd'] = round(base['fwd_bwd_ms'] / rec['fwd_bwd_ms'], 2)
        print(json.dumps(rec), flush=True)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--quick', action='store_true', help='B=64 only, 2 reps')
  p.add_argument('--batch', type=int, nargs='*', default=None)
  p.add_argument('--reps', type=int, default=None)
  p.add_argument('--only', choices=['up', 'down'], default=None)
  p.add_argument('--variants', action='store_true',
                 help='also time the individual sub-formulations')
  p.add_argument('--bf16', action='store_true', help='bfloat16 inputs/kernels')
  p.add_argument('--max-ms', type=float, default=3000.0,
                 help='xla: report the B=2 extrapolation above this; any impl: '
                      'do not repeat a first call slower than 3x this')
  a = p.parse_args(argv)
  batches = a.batch or ([64] if a.quick else [64, 128])
  reps = a.reps or (2 if a.quick else 3)
  dtype = jnp.bfloat16 if a.bf16 else jnp.float32
  t0 = time.perf_counter()
  if a.only in (None, 'up'):
    run('up', UP_SHAPES, batches, reps, a.variants, a.max_ms, dtype)
  if a.only in (None, 'down'):
    run('down', DOWN_SHAPES, batches, reps, a.variants, a.max_ms, dtype)
  print(json.dumps({'total_s': round(time.perf_counter() - t0, 1)}), file=sys.stderr)


if __name__ == '__main__':
  main()
