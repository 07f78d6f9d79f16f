"""Multi-process and cross-topology runs: 2 processes x 4 CPU devices == 1 process x 8 devices, and a
checkpoint written on 8 devices resumes on 1 and on 4 with the same losses."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from common import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--dataset=digits', '--resolution=8', '--width=8', '--z_dim=16', '--batch_size=16', '--log_every=1',
        '--sample_every=0', '--num_samples=8']


def _env(devices):
  return {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}', 'JAX_PLATFORMS': 'cpu'}


def _train(workdir, data_dir, steps, devices=8, extra=(), process=None):
  args = [sys.executable, 'launch/train.py', *TINY, *extra, f'--workdir={workdir}', f'--data_dir={data_dir}',
          f'--steps={steps}', f'--checkpoint_every={steps}']
  if process is not None:
    port, pid = process
    args += [f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2', f'--process_id={pid}']
  return subprocess.Popen(args, cwd=ROOT, env=_env(devices), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def _ok(p, timeout=300):
  out = p.communicate(timeout=timeout)[0]
  assert p.returncode == 0, out[-3000:]
  return out


def _losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return {r['step']: r for r in map(json.loads, f)}


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _params(workdir):
  _, state, _ = checkpoint.load(workdir)
  import jax
  return jax.tree_util.tree_map(np.asarray, state.params)


@pytest.mark.parametrize('model_flags', [['--model=dcgan'],
                                         pytest.param(['--model=bigan', '--architecture=mlp', '--resolution=8'],
                                                      marks=pytest.mark.slow)],     # the same loop; -m slow
                         ids=['dcgan', 'bigan'])
def test_two_processes_equal_one_process(model_flags, tmp_path, data_dir):
  if model_flags[0] == '--model=bigan':
    pytest.importorskip('bigan_jax.bigan')
  one = str(tmp_path / 'one')
  _ok(_train(one, data_dir, 3, devices=8, extra=model_flags))
  two = str(tmp_path / 'two')
  port = _free_port()
  procs = [_train(two, data_dir, 3, devices=4, extra=model_flags, process=(port, i)) for i in range(2)]
  outs = [_ok(p) for p in procs]
  assert '8 devices, 2 processes' in outs[0]
  assert not any(line.startswith('step') for line in outs[1].splitlines()), 'only process 0 logs'
  a, b = _params(one), _params(two)
  import jax
  # Adam normalises updates, so float rounding in a near-zero gradient (e.g. a bias whose layer feeds a
  # batchnorm, which removes it) can move that parameter by up to lr per step in either run; kernels, whose
  # gradients are not near zero, must agree tightly.
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    assert np.abs(x - y).max() <= 3 * 2e-4
    if x.ndim > 1:
      assert np.mean(np.isclose(x, y, rtol=1e-4, atol=1e-5)) > 0.99
  la, lb = _losses(one), _losses(two)
  for s in (1, 2, 3):
    assert np.isclose(la[s]['d_loss'], lb[s]['d_loss'], rtol=1e-4) and np.isclose(la[s]['g_loss'], lb[s]['g_loss'],
                                                                                   rtol=1e-4)


@pytest.mark.parametrize('devices', [1, pytest.param(4, marks=pytest.mark.slow)])   # 4: -m slow
def test_checkpoint_from_8_devices_resumes_on_other_counts(devices, tmp_path, data_dir):
  ref = str(tmp_path / 'ref')
  _ok(_train(ref, data_dir, 4, devices=8))
  wd = str(tmp_path / 'wd')
  _ok(_train(wd, data_dir, 2, devices=8))
  out = _ok(_train(wd, data_dir, 4, devices=devices))
  assert f'{devices} devices' in out and 'resumed from' in out
  la, lb = _losses(ref), _losses(wd)
  for s in (3, 4):
    for k in ('d_loss', 'g_loss', 'd_real', 'd_fake'):
      assert np.isclose(la[s][k], lb[s][k], rtol=1e-4, atol=1e-6), (s, k, la[s][k], lb[s][k])


def test_resume_refuses_a_different_global_batch(tmp_path, data_dir):
  wd = str(tmp_path)
  _ok(_train(wd, data_dir, 1, devices=4))
  p = _train(wd, data_dir, 2, devices=4, extra=['--batch_size=32'])
  out = p.communicate(timeout=300)[0]
  assert p.returncode == 1 and 'batch_size: 16 -> 32' in out
