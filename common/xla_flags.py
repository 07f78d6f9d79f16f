"""XLA:CPU flags the project turns on by default, before JAX starts its backend.

``--xla_cpu_experimental_ynn_fusion_type=dot,reduce`` routes matrix multiplies, convolutions and
reductions to XLA's YNNPACK kernels instead of its default Eigen ones. Measured on 2 CPU cores
(``benchmarks/train_step.py``, batch 64): DCGAN 64x64 train step 10.8 -> 18.4 img/s, 32x32 81 -> 98,
PyTorch-example DCGAN 56 -> 85, conv BiGAN 10.1 -> 16.0; adding 'eltwise' was slower. It changes no
result beyond float rounding, and nothing on GPU/TPU.

Applied when ``common`` is first imported (every package here imports it), only while JAX has not
created its CPU backend yet, only with a jaxlib known to accept the flag (an unknown flag aborts XLA),
and never over a value the user already put in ``XLA_FLAGS``. Opt out with ``DCGAN_JAX_XLA_DEFAULTS=0``.
"""
from __future__ import annotations

import os
import sys
from importlib import metadata

CPU_DEFAULTS = ('--xla_cpu_experimental_ynn_fusion_type=dot,reduce',)
OPT_OUT = 'DCGAN_JAX_XLA_DEFAULTS'
MIN_JAXLIB = (0, 10)


def _jaxlib_version() -> tuple:
  try:
    return tuple(int(p) for p in metadata.version('jaxlib').split('.')[:2])
  except (metadata.PackageNotFoundError, ValueError):
    return (0, 0)


def _backend_started() -> bool:
  """True once JAX created a backend (flags set afterwards would be ignored)."""
  bridge = sys.modules.get('jax._src.xla_bridge')
  return bool(getattr(bridge, '_backends', None))


def defaults(xla_flags: str, jaxlib_version: tuple) -> list:
  """The default flags to append to ``xla_flags`` (those whose name the user has not set)."""
  if jaxlib_version < MIN_JAXLIB:
    return []
  return [f for f in CPU_DEFAULTS if f.split('=')[0] not in xla_flags]


def apply_defaults(env=None) -> list:
  """Appends the default flags to ``env['XLA_FLAGS']`` (``os.environ`` by default); returns those added."""
  env = os.environ if env is None else env
  if env.get(OPT_OUT, '1').lower() in ('0', 'false', 'no') or _backend_started():
    return []
  add = defaults(env.get('XLA_FLAGS', ''), _jaxlib_version())
  if add:
    env['XLA_FLAGS'] = ' '.join([env.get('XLA_FLAGS', '')] + add).strip()
  return add
