"""The default XLA:CPU flags: added before the backend starts, never over the user's, opt-out works."""
import os
import subprocess
import sys

from common import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = xla_flags.CPU_DEFAULTS[0].split('=')[0]


def test_defaults_respect_user_flags_and_old_jaxlib():
  assert xla_flags.defaults('', (0, 10)) == list(xla_flags.CPU_DEFAULTS)
  assert xla_flags.defaults(f'{NAME}=dot', (0, 10)) == []            # the user's value wins
  assert xla_flags.defaults('', (0, 9)) == []                        # jaxlib that may not know the flag


def test_not_applied_once_the_backend_started():
  import jax
  jax.numpy.zeros(1).block_until_ready()
  env = {'XLA_FLAGS': ''}
  assert xla_flags.apply_defaults(env) == [] and env['XLA_FLAGS'] == ''


def _child_flags(**env):
  code = ('import os, common, jax.numpy as jnp; jnp.ones((2, 2)).dot(jnp.ones((2, 2))).block_until_ready(); '
          'print(os.environ.get("XLA_FLAGS", ""))')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, check=True,
                       env={**os.environ, 'JAX_PLATFORMS': 'cpu', **env})
  return out.stdout.strip()


def test_import_appends_defaults_to_existing_flags_and_runs():
  flags = _child_flags(XLA_FLAGS='--xla_force_host_platform_device_count=2')
  assert flags.startswith('--xla_force_host_platform_device_count=2') and NAME in flags


def test_opt_out():
  assert NAME not in _child_flags(XLA_FLAGS='', DCGAN_JAX_XLA_DEFAULTS='0')
