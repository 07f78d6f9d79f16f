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


@pytest.fixture(scope='session')
def tiny_dcgan_run(tmp_path_factory, data_dir):
  """A small DCGAN trained briefly on digits (16x16), shared by the tests of tools that use a trained run."""
  from common import loop
  from common.config import Config
  wd = str(tmp_path_factory.mktemp('tiny_dcgan'))
  loop.train(Config.make(model='dcgan', dataset='digits', resolution=16, width=16, z_dim=32, batch_size=32, steps=40,
                    log_every=20, sample_every=0, checkpoint_every=40, workdir=wd, data_dir=data_dir))
  return wd


@pytest.fixture(scope='session')
def load_cli():
  """``load_cli(name)`` imports launch/<name>.py as a module (launch/ holds scripts, not a package)."""
  import importlib.util
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sys.path.insert(0, os.path.join(root, 'launch'))

  def load(name):
    spec = importlib.util.spec_from_file_location(f'launch_{name}', os.path.join(root, 'launch', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
  return load
