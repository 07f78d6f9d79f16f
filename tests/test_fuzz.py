"""No input gives a traceback: a property-based fuzz test (Hypothesis) over every launch tool's flags.

In-process (fast, many examples): generated values of each flag's type and of the wrong type, odd numbers
(negative, zero, huge, nan, inf), odd text, and paths that are files, missing or not writable, through each
tool's parsing and checking layer (for train.py also the model's own checks, which run before anything is
written). Each parse must succeed or end with exit status 1 and exactly one ``error: ...`` line. As
subprocesses (slow, a few examples): whole runs of train.py with generated flags, which must exit 0 or print
one error line, never a traceback. ``pytest -m slow tests/test_fuzz.py`` runs many more examples.
"""
import argparse
import contextlib
import io
import os
import subprocess
import sys

import pytest

hypothesis = pytest.importorskip('hypothesis')
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ('train', 'sample', 'evaluate', 'latent', 'visualize', 'dedup')
FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
MANY = settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope='module')
def places(tmp_path_factory):
  """Paths of every kind: a file, a directory, a missing path, a directory that cannot be written."""
  d = tmp_path_factory.mktemp('fuzz')
  (d / 'a_file.txt').write_text('not a checkpoint\n')
  (d / 'empty_dir').mkdir()
  return [str(d / 'a_file.txt'), str(d / 'empty_dir'), str(d / 'missing' / 'deeper'), '/proc/1/not_writable',
          '', '.', str(d / 'a_file.txt') + '/under_a_file']


def _flags(parser):
  """[(option string, action)] of a parser's flags (not --help)."""
  out = []
  for a in parser._actions:  # pylint: disable=protected-access
    if a.option_strings and not isinstance(a, argparse._HelpAction):  # pylint: disable=protected-access
      out.append((a.option_strings[-1], a))
  return out


_numbers = st.one_of(st.integers(-10**12, 10**12), st.sampled_from([0, 1, -1, 2**31, 2**63, 10**30]),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr),
                     st.sampled_from(['nan', 'inf', '-inf', '1e309', '0x10', '1_000', ' 3 ', '']))
_text = st.one_of(st.text(max_size=12), st.sampled_from(['true', 'false', 'none', 'None', 'yes', '0', '1', 'x' * 300,
                                                         'dcgan', 'digits', 'folder:', 'lsun/nothing', '1,2,x',
                                                         '3,7 - 5 + 1', '1 -> 2', '-', '--', '\x00']))


def _argv(draw, parser, places):
  flags = _flags(parser)
  chosen = draw(st.lists(st.sampled_from(flags), max_size=5, unique_by=lambda f: f[0]))
  argv = []
  for opt, action in chosen:
    if action.nargs == 0:                      # store_true and friends
      argv.append(opt)
      continue
    value = draw(st.one_of(_numbers.map(str), _text, st.sampled_from(places),
                           st.sampled_from(list(action.choices)) if action.choices else _text))
    argv.append(f'{opt}={value}' if draw(st.booleans()) else opt)
    if not argv[-1].startswith(f'{opt}='):
      argv.append(value)
  if draw(st.integers(0, 9)) == 0:
    argv.append(draw(st.sampled_from(['stray', '--no_such_flag=1', '-x', '--'])))
  return argv


def _check_parse(tool, argv):
  err = io.StringIO()
  with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    try:
      parsed = tool.parse(argv)
    except SystemExit as e:
      lines = err.getvalue().strip().splitlines()
      assert e.code == 1, (argv, e.code, err.getvalue())
      assert len(lines) == 1 and lines[0].startswith('error: '), (argv, err.getvalue())
      return None
  assert not err.getvalue(), (argv, err.getvalue())
  return parsed


def _check_model(config):
  """train.py's next layer: the model's own checks (they run before the workdir is touched)."""
  from common import registry
  from common.model import DataFacts
  for facts in (DataFacts(1, 10), DataFacts(3, None)):
    try:
      registry.build(config, facts)
    except (ValueError, FileNotFoundError, OSError) as e:   # one line, naming what to change
      assert '\n' not in str(e).strip() and str(e).strip(), repr(e)


def _fuzz_tool(name, load_cli, places, data):
  tool = load_cli(name)
  argv = data.draw(st.composite(lambda draw: _argv(draw, tool.parser(), places))())
  parsed = _check_parse(tool, argv)
  if name == 'train' and parsed is not None:
    _check_model(parsed)


@pytest.mark.parametrize('name', TOOLS)
@FAST
@given(data=st.data())
def test_every_flag_of_every_tool_parses_or_is_one_error_line(name, load_cli, places, data):
  _fuzz_tool(name, load_cli, places, data)


@pytest.mark.slow
@pytest.mark.parametrize('name', TOOLS)
@MANY
@given(data=st.data())
def test_every_flag_of_every_tool_many_examples(name, load_cli, places, data):
  _fuzz_tool(name, load_cli, places, data)


# -- whole runs as subprocesses ------------------------------------------------------------------------------

_RUN_FLAGS = st.fixed_dictionaries({}, optional={
    'resolution': st.sampled_from(['8', '12', '0', '-8', '4', 'abc', '1024']),
    'width': st.sampled_from(['8', '0', '3', '-1']),
    'batch_size': st.sampled_from(['16', '0', '3', '7', '-2']),
    'model': st.sampled_from(['dcgan', 'bigan', 'cdcgan', 'mlp_gan', 'autoencoder', 'latent_regressor', 'nope']),
    'log_every': st.sampled_from(['1', '0', 'x']),
    'z_dim': st.sampled_from(['4', '0', 'nan']),
    'keep_checkpoints': st.sampled_from(['1', '0']),
    'dataset': st.sampled_from(['digits', 'nosuchset', 'folder:/nonexistent', 'lsun/nothing']),
})


def _run_train(flags, wd, data_dir):
  argv = [f'--{k}={v}' for k, v in {'dataset': 'digits', 'resolution': '8', 'width': '8', 'z_dim': '4',
                                    'batch_size': '16', 'steps': '1', 'sample_every': '0', 'num_samples': '4',
                                    'data_workers': '0', 'hidden': '16', **flags}.items()]
  r = subprocess.run([sys.executable, 'launch/train.py', f'--workdir={wd}', f'--data_dir={data_dir}', *argv],
                     cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, 'XLA_FLAGS': ''})
  assert 'Traceback' not in r.stderr + r.stdout, (argv, r.stderr[-3000:])
  if r.returncode:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and lines and lines[-1].startswith('error: '), (argv, r.returncode, r.stderr[-2000:])
    assert len([line for line in lines if line.startswith('error')]) == 1, (argv, r.stderr[-2000:])


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(flags=_RUN_FLAGS)
def test_whole_runs_with_generated_flags_exit_cleanly(flags, tmp_path_factory, data_dir):
  _run_train(flags, str(tmp_path_factory.mktemp('run')), data_dir)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(flags=_RUN_FLAGS)
def test_whole_runs_many_examples(flags, tmp_path_factory, data_dir):
  _run_train(flags, str(tmp_path_factory.mktemp('run')), data_dir)
