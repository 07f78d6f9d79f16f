"""Nothing lost, nothing cryptic: unreadable checkpoints, --resume_step, refused resumes that change nothing,
kills and resumes that leave exactly one metrics row and one TensorBoard point per step, and signals at every
moment of start-up. Each test does it for real, on tiny runs of the embedded digits data."""
import contextlib
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from common import checkpoint, loop
from common.config import Config, ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(model='dcgan', dataset='digits', resolution=8, width=8, z_dim=16, batch_size=16, log_every=1,
            sample_every=0, num_samples=16, data_workers=0)


def _flags(**kw):
  return [f'--{k}={v}' for k, v in {**TINY, **kw}.items()]


def _snapshot(directory):
  """{relative path: (size, sha1)} of every file under ``directory``."""
  out = {}
  for dirpath, _, files in os.walk(directory):
    for f in files:
      p = os.path.join(dirpath, f)
      with open(p, 'rb') as fh:
        out[os.path.relpath(p, directory)] = (os.path.getsize(p), hashlib.sha1(fh.read()).hexdigest())
  return out


def _rows(wd):
  with open(os.path.join(wd, 'metrics.jsonl')) as f:
    return [json.loads(line)['step'] for line in f if line.strip()]


def _truncate_state(wd, step):
  """Truncates every array-data file of checkpoint ``step`` to half its size."""
  hit = 0
  for dirpath, _, files in os.walk(os.path.join(wd, 'checkpoints', str(step), 'state')):
    for f in files:
      p = os.path.join(dirpath, f)
      if os.sep + 'd' + os.sep in p:
        with open(p, 'r+b') as fh:
          fh.truncate(os.path.getsize(p) // 2)
        hit += 1
  assert hit, 'no array data found to truncate'


@pytest.fixture
def run4(tmp_path, data_dir):
  """A run with checkpoints at steps 2 and 4."""
  wd = str(tmp_path / 'run')
  loop.train(Config.make(**TINY, workdir=wd, data_dir=data_dir, steps=4, checkpoint_every=2, keep_checkpoints=5))
  assert checkpoint.Checkpointer(wd).all_steps() == [2, 4]
  return wd


def test_keep_checkpoints_is_at_least_one(load_cli, tmp_path):
  with pytest.raises(ConfigError, match='--keep_checkpoints=0: must be an integer >= 1'):
    Config.make(keep_checkpoints=0)
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    rc = load_cli('train').main([f'--workdir={tmp_path}/w', '--keep_checkpoints=0'])
  assert rc == 1 and err.getvalue().count('\n') == 1 and '--keep_checkpoints' in err.getvalue()
  assert not os.path.exists(tmp_path / 'w')


def test_unreadable_newest_checkpoint_is_named_and_the_previous_one_used(run4, data_dir, load_cli, capsys):
  _truncate_state(run4, 4)
  model, state, _ = checkpoint.load(run4)
  out = capsys.readouterr().out
  assert int(state.step) == 2 and 'checkpoint 4 is unreadable' in out and 'using checkpoint 2' in out
  # The sampling tool does the same, and an explicit --step names the damaged one in one line.
  sample = load_cli('sample')
  assert sample.main([f'--workdir={run4}', '--num=4', f'--out={run4}/s.png']) == 0
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    assert sample.main([f'--workdir={run4}', '--num=4', '--step=4', f'--out={run4}/s.png']) == 1
  assert 'checkpoint 4 is unreadable' in err.getvalue() and err.getvalue().count('\n') == 1
  with contextlib.redirect_stderr(err := io.StringIO()):
    assert sample.main([f'--workdir={run4}', '--num=4', '--step=999']) == 1
  assert 'no checkpoint 999' in err.getvalue() and 'steps there are 2, 4' in err.getvalue()
  # Training resumes from 2, moves 4 aside (kept, out of the way of the new save at 4) and goes on.
  out = loop.train(Config.make(**TINY, workdir=run4, data_dir=data_dir, steps=6, checkpoint_every=2,
                               keep_checkpoints=5))
  assert out['step'] == 6 and checkpoint.Checkpointer(run4).all_steps() == [2, 4, 6]
  assert os.path.isdir(os.path.join(run4, 'checkpoints.unreadable', '4'))
  assert _rows(run4) == [1, 2, 3, 4, 5, 6]          # one row per step: the rows 3-4 of the lost branch dropped


def test_missing_state_item_falls_back_too(run4):
  import shutil
  shutil.rmtree(os.path.join(run4, 'checkpoints', '4', 'state'))
  _, state, _ = checkpoint.load(run4, warn=lambda *_: None)
  assert int(state.step) == 2


def test_resume_step_picks_a_checkpoint_and_moves_newer_ones_aside(run4, data_dir):
  out = loop.train(Config.make(**TINY, workdir=run4, data_dir=data_dir, steps=3, checkpoint_every=2,
                               keep_checkpoints=5, resume_step=2))
  assert out['step'] == 3 and checkpoint.Checkpointer(run4).all_steps() == [2, 3]
  assert os.path.isdir(os.path.join(run4, 'checkpoints.superseded', '4'))
  assert _rows(run4) == [1, 2, 3]
  with pytest.raises(FileNotFoundError, match='no checkpoint 7 .* steps there are 2, 3'):
    loop.train(Config.make(**TINY, workdir=run4, data_dir=data_dir, steps=9, resume_step=7))


def test_a_refused_resume_changes_nothing_in_the_workdir(run4, data_dir, load_cli):
  before = _snapshot(run4)
  with pytest.raises(loop.ResumeError, match='--width: 8 -> 16'):
    loop.train(Config.make(**{**TINY, 'width': 16}, workdir=run4, data_dir=data_dir, steps=6))
  err = io.StringIO()
  with contextlib.redirect_stderr(err):       # the same through the command line: one line, nothing written
    assert load_cli('train').main(_flags(width=16, workdir=run4, data_dir=data_dir, steps=6)) == 1
  assert err.getvalue().count('\n') == 1 and 'different run' in err.getvalue()
  assert _snapshot(run4) == before


def _tensorboard_steps(wd, tag='train/d_loss'):
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(os.path.join(wd, 'tb'), size_guidance={'scalars': 0})
  acc.Reload()
  return [e.step for e in acc.Scalars(tag)]


def _train_proc(wd, data_dir, steps, **kw):
  cmd = [sys.executable, 'launch/train.py', *_flags(workdir=wd, data_dir=data_dir, steps=steps, **kw)]
  return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, 'XLA_FLAGS': ''}, start_new_session=True)


def test_after_a_kill_and_a_resume_every_step_is_logged_exactly_once(tmp_path, data_dir):
  wd = str(tmp_path / 'run')
  p = _train_proc(wd, data_dir, 100000, checkpoint_every=3)
  for line in p.stdout:
    m = re.match(r'step\s+(\d+)/', line)
    if m and int(m.group(1)) >= 8:
      break
  os.killpg(p.pid, signal.SIGKILL)
  p.wait(timeout=60)
  stopped = checkpoint.Checkpointer(wd).latest_step()
  assert stopped is not None and stopped % 3 == 0 and max(_rows(wd)) > stopped     # rows past the checkpoint
  out = loop.train(Config.make(**TINY, workdir=wd, data_dir=data_dir, steps=stopped + 4, checkpoint_every=3))
  assert out['step'] == stopped + 4
  assert _rows(wd) == list(range(1, stopped + 5))
  assert _tensorboard_steps(wd) == list(range(1, stopped + 5))   # TensorBoard: no gap, no duplicate


@pytest.mark.parametrize('when', ['import', 'startup', 'compile', 'training'])
def test_ctrl_c_at_any_moment_is_a_clean_stop(when, tmp_path, data_dir):
  """A terminal's Ctrl-C (SIGINT to the whole process group) at several moments: exit 0 or 130, at most one
  line on stderr, never a traceback or a crash; what was written stays readable."""
  wd = str(tmp_path / 'run')
  p = _train_proc(wd, data_dir, 100000, checkpoint_every=5, data_workers=1)
  lines = []
  if when == 'import':
    time.sleep(1.0)
  else:
    marker = {'startup': r'^dcgan on ', 'compile': r'^dcgan on ', 'training': r'^step\s+6/'}[when]
    for line in p.stdout:
      lines.append(line)
      if re.match(marker, line):
        break
    if when == 'compile':
      time.sleep(0.3)
  os.killpg(p.pid, signal.SIGINT)
  rest = p.communicate(timeout=180)[0]
  text = ''.join(lines) + rest
  assert p.returncode in (0, 130), text[-3000:]
  assert 'Traceback' not in text and 'Segmentation' not in text, text[-3000:]
  if when == 'training':
    assert 'SIGINT: saved checkpoint at step' in text
    _, state, _ = checkpoint.load(wd, warn=lambda *_: None)
    assert int(state.step) >= 6
  elif p.returncode == 0:
    assert 'stopped before the first step' in text or 'saved checkpoint' in text, text[-2000:]


def test_a_worker_process_keeps_sigint_ignored(tmp_path):
  """A Ctrl-C during start-up must not reach Grain's workers: a spawned worker re-imports the launch tool (as
  ``__mp_main__``, which installs the tools' handlers) before multiprocessing marks it a child; its SIGINT must
  stay ignored (it was seen to raise KeyboardInterrupt in a worker still importing)."""
  main = tmp_path / 'tool.py'
  main.write_text(f'import sys\nsys.path.insert(0, {ROOT!r})\nfrom common import signals\nsignals.install()\n')
  code = (f'import multiprocessing, runpy, signal\n'
          f'multiprocessing.current_process().name = "Worker-1"\n'      # as spawn's prepare() sets it first
          f'signal.signal(signal.SIGINT, signal.SIG_IGN)\n'
          f'runpy.run_path({str(main)!r}, run_name="__mp_main__")\n'
          f'print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)')
  r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
  assert r.stdout.strip() == 'True', r.stderr[-2000:]
