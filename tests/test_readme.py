"""README.md cannot rot: its main job, Python block and the commands on a trained run execute offline at tiny
size; every other command's flags exist in its tool's parser; the model table is the registry's."""
import contextlib
import io
import os
import re
import shlex

import pytest

from common import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, 'README.md')).read()
TOOLS = ('train', 'sample', 'evaluate', 'latent', 'visualize', 'dedup')
COMMAND = re.compile(r'(?:python3? launch/(\w+)\.py|dcgan-jax (\w+))')


def _blocks(lang: str) -> list:
  return re.findall(rf'```{lang}\n(.*?)```', README, re.S)


def _commands() -> list:
  """(tool, argv) of every command line in the README's bash blocks; ``[...]`` marks optional flags (kept),
  ``a|b`` alternatives (the first kept), ``...`` elisions (dropped)."""
  out = []
  for block in _blocks('bash'):
    text = block.replace('\\\n', ' ')
    for line in text.splitlines():
      line = line.split(' #')[0]
      for m in COMMAND.finditer(line):
        rest = line[m.end():].replace('[', ' ').replace(']', ' ')
        if rest.count('"') % 2:                   # a command quoted inside another (ssh --command="...")
          rest = rest.replace('"', ' ')
        lex = shlex.shlex(rest, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        argv = []
        for token in lex:
          if token in ('&&', '&', ';', '|', '||', 'done'):
            break
          if token != '...':
            argv.append(re.sub(r'^(--[\w-]+=)([^|]+)\|.*$', r'\1\2', token))
        out.append((m.group(1) or m.group(2), argv))
  return out


def _option_strings(load_cli, tool: str) -> set:
  p = load_cli(tool).parser()
  return {o for action in p._actions for o in action.option_strings}   # pylint: disable=protected-access


def test_the_readme_has_the_commands_it_should():
  tools = {t for t, _ in _commands()}
  assert tools >= set(TOOLS), tools
  first = _blocks('bash')[0]
  assert 'pip install -e' in first and 'launch/train.py' in first
  assert 'python -m pytest -q -n auto' in _blocks('bash')[1]
  with open(os.path.join(ROOT, '.ci', 'run')) as f:
    ci = f.read()
  assert first.strip().split('&& python launch/train.py')[1] in ci            # CI runs the README's main job


def test_every_flag_in_the_readme_exists(load_cli):
  known = {t: _option_strings(load_cli, t) for t in TOOLS}
  unknown = []
  for tool, argv in _commands():
    assert tool in known, f'README names an unknown tool {tool!r}'
    for a in argv:
      if a.startswith('--'):
        flag = a.split('=')[0]
        if flag not in known[tool]:
          unknown.append(f'{tool} {flag}')
  assert not unknown, unknown


def test_the_model_table_is_the_registrys():
  table = README.split('<!-- models -->')[1].split('<!-- /models -->')[0]
  rows = dict(re.findall(r'^\| `(\w+)` \| (.+?) \|$', table, re.M))
  assert rows == registry.describe()


def _localise(argv, run_dir, data_dir, tmp):
  out = []
  for a in argv:
    a = re.sub(r'--workdir=runs/digits(16)?\b', f'--workdir={run_dir}', a)
    a = a.replace('docs/img/', os.path.join(ROOT, 'docs', 'img', ''))
    if a.startswith('--out=') and not os.path.isabs(a[6:]):
      a = f'--out={os.path.join(tmp, a[6:])}'
    for flag in ('--sheet=', '--from_sheet='):
      if a.startswith(flag) and not os.path.isabs(a[len(flag):]):
        a = flag + os.path.join(tmp, a[len(flag):])
    out.append(a)
  return out


def _main(load_cli, tool, argv):
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    rc = load_cli(tool).main(argv)
  return rc, out.getvalue(), err.getvalue()


def test_readme_main_job_python_block_and_run_commands_execute(load_cli, data_dir, tmp_path, monkeypatch):
  """The main job (3 steps instead of 1500), then the Python block and every sample/latent/visualize command and
  the SVM probe line on that run, offline."""
  monkeypatch.chdir(tmp_path)
  run_dir = str(tmp_path / 'digits')
  tool, argv = _commands()[0]
  assert tool == 'train'
  argv = [re.sub(r'^--steps=\d+$', '--steps=3', a) for a in _localise(argv, run_dir, data_dir, str(tmp_path))]
  rc, out, err = _main(load_cli, 'train', argv + [f'--data_dir={data_dir}', '--log_every=1'])
  assert rc == 0, err[-2000:]
  assert os.path.exists(os.path.join(run_dir, 'samples.png'))

  (code,) = [b for b in _blocks('python') if 'checkpoint.load' in b]
  exec(compile(code.replace("'runs/digits'", repr(run_dir)), 'README.md', 'exec'), {})   # noqa: S102
  assert os.path.getsize(tmp_path / 'grid.png') > 0

  ran = []
  for tool, argv in _commands():
    if tool not in ('sample', 'latent', 'visualize', 'evaluate'):
      continue
    if not any(re.match(r'--workdir=runs/digits(16)?$', a) for a in argv):
      continue
    if tool == 'evaluate' and '--eval=svm' not in argv:
      continue
    argv = _localise(argv, run_dir, data_dir, str(tmp_path))
    if tool == 'evaluate':
      argv += [f'--data_dir={data_dir}', '--labels_per_class=20', '--draws=2', '--bn_batches=2']
    rc, out, err = _main(load_cli, tool, argv)
    assert rc == 0, (tool, argv, err[-2000:])
    ran.append(tool)
  assert {'sample', 'latent', 'visualize', 'evaluate'} <= set(ran) and len(ran) >= 9, ran
  for name in ('samples.png', 'walk.png', 'sheet.png', 'arith.png', 'dir.png', 'forget.png', 'gbp.png',
               'filters.png'):
    assert os.path.getsize(tmp_path / name) > 0, name


@pytest.mark.parametrize('argv', [['--help'], ['train', '--help']])
def test_entry_point_runs_the_same_tools(argv, capsys):
  from launch import cli
  with contextlib.suppress(SystemExit):
    rc = cli.main(argv)
    assert rc == 0
  text = capsys.readouterr()
  assert ('--model' in text.out) if argv[0] == 'train' else all(t in text.out for t in TOOLS)
