"""The shared training loop end to end on the embedded digits data: outputs, exact resume, errors."""
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from common import checkpoint, loop
from common.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(model='dcgan', dataset='digits', resolution=8, width=8, z_dim=16, batch_size=16, log_every=1,
            sample_every=0, num_samples=16)


def _losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return {r['step']: r for r in map(json.loads, f)}


@pytest.fixture(scope='module')
def straight(tmp_path_factory, data_dir):
  """N=6 steps in one go: the reference for resume tests."""
  wd = str(tmp_path_factory.mktemp('straight'))
  out = loop.train(Config.make(**TINY, workdir=wd, data_dir=data_dir, steps=6, checkpoint_every=3))
  return wd, out


def test_run_leaves_samples_checkpoint_logs(straight):
  wd, out = straight
  assert out['step'] == 6
  assert os.path.getsize(os.path.join(wd, 'samples.png')) > 0
  assert checkpoint.Checkpointer(wd).all_steps() == [3, 6]
  assert sorted(_losses(wd)) == [1, 2, 3, 4, 5, 6]
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(os.path.join(wd, 'tb')))
  with open(os.path.join(wd, 'config.json')) as f:
    assert json.load(f)['loop']['steps'] == 6


def test_resume_gives_bitwise_identical_losses(straight, tmp_path, data_dir):
  wd_ref, _ = straight
  wd = str(tmp_path)
  loop.train(Config.make(**TINY, workdir=wd, data_dir=data_dir, steps=3, checkpoint_every=3))  # "stops" at k=3
  out = loop.train(Config.make(**TINY, workdir=wd, data_dir=data_dir, steps=6, checkpoint_every=3))  # same run, resumed
  assert out['step'] == 6
  ref, got = _losses(wd_ref), _losses(wd)
  for s in range(1, 7):
    assert {k: ref[s][k] for k in ref[s]} == {k: got[s][k] for k in got[s]}, s   # bitwise on CPU


def test_model_and_state_reload_from_checkpoint(straight):
  wd, out = straight
  model, state, config = checkpoint.load(wd)
  assert config.model.resolution == 8 and int(state.step) == 6
  import jax
  a = model.sample(state, jax.random.PRNGKey(0), 4)
  b = model.sample(out['state'], jax.random.PRNGKey(0), 4)
  assert np.array_equal(np.asarray(a), np.asarray(b))


def test_resume_with_different_config_lists_the_differences(straight):
  wd, _ = straight
  with pytest.raises(loop.ResumeError, match=r"batch_size: 16 -> 32.*width: 8 -> 16"):
    loop.train(Config.make(**{**TINY, 'batch_size': 32, 'width': 16}, workdir=wd, steps=7))


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, data_dir):
  wd = str(tmp_path)
  loop.train(Config.make(**TINY, workdir=wd, data_dir=data_dir, steps=3, checkpoint_every=3))
  # Resume with a learning rate that blows up: the run stops, nothing non-finite is saved.
  with pytest.raises(loop.DivergenceError, match='non-finite .* last good checkpoint is 3'):
    loop.train(Config.make(**TINY, workdir=wd, data_dir=data_dir, steps=50, checkpoint_every=1, lr=1e38))
  assert checkpoint.Checkpointer(wd).all_steps() == [3]
  _, state, _ = checkpoint.load(wd)
  import jax
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(state.params))




def _cli(*args, env=None, timeout=240):
  e = {**os.environ, 'XLA_FLAGS': '', **(env or {})}
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=e)


def test_train_help_lists_every_flag():
  r = _cli('launch/train.py', '--help')
  assert r.returncode == 0
  for flag in ('--model', '--dataset', '--steps', '--batch_size', '--resolution', '--seed', '--data_dir',
               '--checkpoint_every', '--sample_every', '--workdir', '--lr', '--beta1', '--dtype'):
    assert flag in r.stdout


@pytest.mark.parametrize('flags,message', [
    (['--dataset=nosuchset'], 'unknown dataset'),
    (['--resolution=48'], 'resolution 48 is not supported'),
])
def test_bad_input_is_a_one_line_error(flags, message, tmp_path, data_dir, load_cli):
  import contextlib
  import io
  train_cli = load_cli('train')
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    rc = train_cli.main([f'--workdir={tmp_path}', f'--data_dir={data_dir}', '--steps=1', *flags])
  assert rc == 1
  lines = err.getvalue().strip().splitlines()
  assert len(lines) == 1 and message in lines[0].lower(), lines


def test_sigterm_checkpoints_and_same_command_resumes(tmp_path, data_dir):
  """A preemption: SIGTERM mid-run -> checkpoint, exit 0; the same command finishes the run."""
  wd = str(tmp_path)
  cmd = ['launch/train.py', *[f'--{k}={v}' for k, v in TINY.items()], f'--workdir={wd}', f'--data_dir={data_dir}',
         '--steps=100000', '--checkpoint_every=100000']
  p = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env={**os.environ, 'XLA_FLAGS': ''})
  for line in p.stdout:
    m = re.match(r'step\s+(\d+)/', line)
    if m and int(m.group(1)) >= 5:
      break
  p.send_signal(signal.SIGTERM)
  rest = p.communicate(timeout=120)[0]
  assert p.returncode == 0, rest
  assert 'SIGTERM: saved checkpoint at step' in rest
  stopped = checkpoint.Checkpointer(wd).latest_step()
  assert stopped >= 5
  r = _cli(*[c for c in cmd if not c.startswith('--steps')], f'--steps={stopped + 2}')
  assert r.returncode == 0, r.stderr[-2000:]
  assert f'resumed from' in r.stdout and checkpoint.Checkpointer(wd).latest_step() == stopped + 2
