"""Fault injection: kills at random moments, divergence, full disks, corrupt data, determinism.

Each fault is injected for real: a training subprocess killed with SIGKILL, a NaN produced inside the
jitted step, a checkpoint directory on a small tmpfs that the test fills, image files the test corrupts.
"""
import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from common import checkpoint, data, loop, registry
from common.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(model='dcgan', dataset='digits', resolution=8, width=8, z_dim=16, batch_size=16, log_every=1,
            sample_every=0, num_samples=16)


def _losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(l) for l in f]


# -- SIGKILL at random moments, including during checkpoint writes ---------------------------------------------

def _kill_trials(n, tmp_path, data_dir, seed=0):
  """Starts training, SIGKILLs it after a random delay, restarts with the same command; repeats."""
  rng = random.Random(seed)
  wd = str(tmp_path / 'killed')
  cmd = [sys.executable, 'launch/train.py', *[f'--{k}={v}' for k, v in TINY.items()], f'--workdir={wd}',
         f'--data_dir={data_dir}', '--steps=100000', '--checkpoint_every=2', '--log_every=1']
  env = {**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu'}
  report = {'trials': 0, 'restarts_ok': 0, 'max_steps_lost': 0}
  for _ in range(n):
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last_step, resumed_at = 0, None
    deadline = None
    for line in p.stdout:
      m = re.match(r'resumed from .*/(\d+)$', line.strip())
      if m:
        resumed_at = int(m.group(1))
      m = re.match(r'step\s+(\d+)/', line)
      if m:
        last_step = int(m.group(1))
        if deadline is None:
          deadline = time.time() + rng.uniform(0.0, 1.5)   # somewhere in the next steps and checkpoint writes
        if time.time() >= deadline:
          break
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    report['trials'] += 1
    if report['trials'] > 1:
      # The restart found the newest complete checkpoint and carried on from there.
      assert resumed_at is not None and resumed_at <= prev_last
      report['restarts_ok'] += 1
      report['max_steps_lost'] = max(report['max_steps_lost'], prev_last - resumed_at)
    prev_last = last_step
  # After the last kill: the newest checkpoint restores, and training carries on with the same command.
  latest = checkpoint.Checkpointer(wd).latest_step()
  _, state, _ = checkpoint.load(wd)
  assert int(state.step) == latest
  r = subprocess.run([c for c in cmd if not c.startswith('--steps')] + [f'--steps={latest + 2}'], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0 and f'resumed from' in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
  report['restarts_ok'] += 1
  return report


def test_sigkill_at_random_moments_loses_at_most_the_steps_since_the_checkpoint(tmp_path, data_dir):
  report = _kill_trials(3, tmp_path, data_dir)
  print('kill trials:', report)
  assert report['restarts_ok'] == report['trials']
  assert report['max_steps_lost'] <= 2 + 1   # checkpoint_every, plus the step in flight


@pytest.mark.slow
def test_sigkill_many_trials(tmp_path, data_dir):
  report = _kill_trials(20, tmp_path, data_dir, seed=1)
  print('kill trials:', report)
  assert report['restarts_ok'] == report['trials']


# -- divergence ------------------------------------------------------------------------------------------------

def _nan_at(step_to_break, monkeypatch):
  """Makes the jitted step return a NaN loss at one step, for the run's original key only."""
  real_build = registry.build

  def build(config, facts):
    model = real_build(config, facts)
    original = model.init(jax.random.PRNGKey(config.loop.seed)).key

    class Broken:
      def __getattr__(self, name):
        return getattr(model, name)

      def train_step(self, state, batch):
        state2, m = model.train_step(state, batch)
        hit = (state.step + 1 == step_to_break) & jnp.all(state.key == original)
        return state2, {**m, 'd_loss': jnp.where(hit, jnp.nan, m['d_loss'])}
    return Broken()
  monkeypatch.setattr(registry, 'build', build)


def test_nan_stops_with_last_good_checkpoint(tmp_path, data_dir, monkeypatch):
  _nan_at(5, monkeypatch)
  with pytest.raises(loop.DivergenceError, match='non-finite loss at step 5.*last good checkpoint is 4'):
    loop.train(Config.make(**TINY, workdir=str(tmp_path), data_dir=data_dir, steps=8, checkpoint_every=2))
  assert checkpoint.Checkpointer(str(tmp_path)).all_steps() == [2, 4]


def test_nan_rollback_restores_and_continues_with_a_fresh_key(tmp_path, data_dir, monkeypatch, capsys):
  _nan_at(5, monkeypatch)
  out = loop.train(Config.make(**TINY, workdir=str(tmp_path), data_dir=data_dir, steps=8, checkpoint_every=2,
                          on_nan='rollback'))
  assert out['step'] == 8 and out['rollbacks'] == 1
  assert 'rollback 1/3 to step 4' in capsys.readouterr().out
  assert all(np.isfinite(r['d_loss']) for r in _losses(str(tmp_path)))


# -- full disk ---------------------------------------------------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
  mnt = tmp_path / 'small'
  mnt.mkdir()
  r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', str(mnt)], capture_output=True)
  if r.returncode:
    pytest.skip('cannot mount a tmpfs here (needs root)')
  yield mnt
  subprocess.run(['umount', '-l', str(mnt)])


def _fill(path):
  try:
    with open(path, 'wb') as f:
      while True:
        f.write(b'\0' * 4096)
        f.flush()
  except OSError as e:
    assert e.errno == errno.ENOSPC


def test_full_disk_is_a_clear_error_and_keeps_the_previous_checkpoint(small_fs, data_dir):
  wd = str(small_fs / 'run')
  loop.train(Config.make(**TINY, workdir=wd, data_dir=data_dir, steps=2, checkpoint_every=2))
  _fill(small_fs / 'filler')
  with pytest.raises(loop.StorageError, match='no space left on device.*checkpoint \\(2\\) is intact'):
    loop.train(Config.make(**{**TINY, 'log_every': 100}, workdir=wd, data_dir=data_dir, steps=4, checkpoint_every=2))
  os.remove(small_fs / 'filler')
  assert checkpoint.Checkpointer(wd).latest_step() == 2
  _, state, _ = checkpoint.load(wd)
  assert int(state.step) == 2


def test_sample_grid_write_failure_is_a_clear_error(tmp_path, data_dir, monkeypatch):
  from common import images

  def no_space(*a, **k):
    raise OSError(errno.ENOSPC, 'No space left on device')
  monkeypatch.setattr(images, 'save_png', no_space)
  with pytest.raises(loop.StorageError, match='sample grid at step 2 .*no space left'):
    loop.train(Config.make(**{**TINY, 'sample_every': 2}, workdir=str(tmp_path), data_dir=data_dir, steps=2,
                      checkpoint_every=2))


# -- corrupt data ----------------------------------------------------------------------------------------------

@pytest.fixture
def corrupt_folder(tmp_path):
  root = tmp_path / 'imgs'
  root.mkdir()
  rng = np.random.default_rng(0)
  for i in range(20):
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / f'ok{i}.png')
  good = (root / 'ok0.png').read_bytes()
  (root / 'truncated.png').write_bytes(good[:len(good) // 2])
  (root / 'notes.png').write_text('this is not an image')
  Image.fromarray(rng.integers(0, 65535, (12, 12), dtype=np.uint16)).save(root / 'wide16.png')  # another mode
  return root


def test_corrupt_images_are_skipped_and_counted(corrupt_folder, tmp_path, data_dir, capsys, caplog):
  out = loop.train(Config.make(**{**TINY, 'dataset': f'folder:{corrupt_folder}'}, workdir=str(tmp_path / 'wd'),
                          data_dir=data_dir, steps=2, checkpoint_every=2))
  assert out['step'] == 2
  text = capsys.readouterr().out + capsys.readouterr().err + caplog.text
  assert re.search(r'skipped 2 ', text) or 'truncated.png' in text, text[-2000:]


def test_strict_data_stops_naming_the_file(corrupt_folder, tmp_path, data_dir):
  with pytest.raises(data.DataError, match=r'(truncated|notes)\.png'):
    loop.train(Config.make(**{**TINY, 'dataset': f'folder:{corrupt_folder}'}, workdir=str(tmp_path / 'wd'),
                      data_dir=str(tmp_path / 'fresh_tfds'), steps=2, strict_data=True))


# -- determinism -------------------------------------------------------------------------------------------------

def test_same_command_twice_is_bitwise_identical_and_seed_changes_it(tmp_path, data_dir):
  runs = {}
  for name, seed in (('a', 0), ('b', 0), ('c', 1)):
    loop.train(Config.make(**TINY, workdir=str(tmp_path / name), data_dir=data_dir, steps=4, checkpoint_every=4, seed=seed))
    runs[name] = [(r['d_loss'], r['g_loss']) for r in _losses(str(tmp_path / name))]
  assert runs['a'] == runs['b']
  assert runs['a'] != runs['c']
