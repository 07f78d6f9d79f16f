"""Test session setup: 8 simulated CPU devices (set before JAX is imported) and quiet TensorFlow."""
import os
import sys

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """One TFDS data_dir for the session: the embedded digits data is prepared into it once."""
  return str(tmp_path_factory.mktemp('tfds'))
