"""The architecture's rules, checked on the source: the import layers (import-linter contracts in pyproject.toml),
no import cycles, no dispatch on a model's type or signature outside the models, launch tools that use public
names only, and function-level imports of project modules only where they keep ``--help`` fast."""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('common', 'dcgan_jax', 'bigan_jax', 'launch')
# Where a model is defined: the only places that may look at a model's own type.
MODEL_MODULES = {'dcgan_jax/dcgan.py', 'dcgan_jax/mlp_gan.py', 'bigan_jax/family.py', 'bigan_jax/bigan.py',
                 'bigan_jax/baselines.py'}


def _sources(lines=False):
  for pkg in PACKAGES:
    for dirpath, _, files in os.walk(os.path.join(ROOT, pkg)):
      for f in files:
        if f.endswith('.py'):
          path = os.path.join(dirpath, f)
          rel = os.path.relpath(path, ROOT)
          with open(path) as fh:
            text = fh.read()
          yield (rel, ast.parse(text, rel), text.splitlines()) if lines else (rel, ast.parse(text, rel))


def _is_project(module: str) -> bool:
  return module.split('.')[0] in PACKAGES


def test_import_contracts_hold():
  exe = os.path.join(os.path.dirname(sys.executable), 'lint-imports')
  if not os.path.exists(exe):
    pytest.skip('import-linter is not installed (pip install -e .[dev])')
  r = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0 and 'BROKEN' not in r.stdout.upper().replace('0 BROKEN', ''), r.stdout[-3000:]
  assert 'launch > dcgan_jax | bigan_jax > common KEPT' in r.stdout


def test_no_import_cycles():
  grimp = pytest.importorskip('grimp')
  sys.path.insert(0, ROOT)
  graph = grimp.build_graph(*PACKAGES)
  cycles = []
  for a in sorted(graph.modules):
    for b in sorted(graph.find_modules_directly_imported_by(a)):
      if graph.chain_exists(importer=b, imported=a):
        cycles.append(f'{a} <-> {b}')
  assert not cycles, cycles


def _mentions_model(node) -> bool:
  text = ast.unparse(node)
  return 'model' in text or 'networks(' in text


def test_no_dispatch_on_model_type_or_signature_outside_models():
  found = []
  for rel, tree in _sources():
    for node in ast.walk(tree):
      if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name, args = node.func.id, node.args
        if name == 'isinstance' and args and rel not in MODEL_MODULES and _mentions_model(args[0]):
          found.append(f'{rel}:{node.lineno} {ast.unparse(node)}')
        if name in ('hasattr', 'getattr') and args and _mentions_model(args[0]) and rel not in MODEL_MODULES:
          found.append(f'{rel}:{node.lineno} {ast.unparse(node)}')
      if isinstance(node, ast.Attribute) and node.attr == 'signature' and ast.unparse(node.value) == 'inspect':
        found.append(f'{rel}:{node.lineno} inspect.signature')
      if isinstance(node, ast.ExceptHandler) and node.type is not None and ast.unparse(node.type) == 'TypeError':
        body = ' '.join(ast.unparse(s) for s in node.body) + ' '.join(
            ast.unparse(s) for s in getattr(node, 'parent_try_body', []))
        if 'model' in body:
          found.append(f'{rel}:{node.lineno} except TypeError around a model')
  assert not found, found


def test_launch_uses_public_names_only():
  found = []
  for rel, tree in _sources():
    if not rel.startswith('launch/'):
      continue
    aliases = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module and _is_project(node.module):
        for a in node.names:
          aliases.add(a.asname or a.name)
          if a.name.startswith('_') and not (node.module == 'launch' and a.name == '_cli'):
            found.append(f'{rel}:{node.lineno} from {node.module} import {a.name}')
      if isinstance(node, ast.Import):
        for a in node.names:
          if _is_project(a.name):
            aliases.add(a.asname or a.name.split('.')[0])
    for node in ast.walk(tree):
      if (isinstance(node, ast.Attribute) and node.attr.startswith('_') and not node.attr.startswith('__')
          and isinstance(node.value, ast.Name) and node.value.id in aliases and node.value.id != '_cli'):
        found.append(f'{rel}:{node.lineno} {ast.unparse(node)}')
  assert not found, found


def test_function_level_project_imports_only_in_launch():
  """Below launch/, every import of a project module is at the top of its module (no import hidden in a function
  to dodge a cycle), unless its line says why it is lazy (``# lazy: ...``, e.g. TensorFlow-heavy builders);
  launch tools import the library lazily, after parsing, so ``--help`` is fast."""
  found = []
  for rel, tree, lines in _sources(lines=True):
    if rel.startswith('launch/'):
      continue
    for fn in ast.walk(tree):
      if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        for node in ast.walk(fn):
          mod = node.module if isinstance(node, ast.ImportFrom) else (
              node.names[0].name if isinstance(node, ast.Import) else None)
          if mod and _is_project(mod) and '# lazy:' not in lines[node.lineno - 1]:
            found.append(f'{rel}:{node.lineno} {ast.unparse(node)}')
  assert not found, found


def test_help_does_not_import_jax_models():
  code = ('import sys; sys.argv = ["train.py", "--help"]\n'
          'import runpy\n'
          'try:\n  runpy.run_path("launch/train.py", run_name="__main__")\nexcept SystemExit:\n  pass\n'
          'print("LOADED", sorted(m for m in sys.modules if m.startswith(("dcgan_jax", "bigan_jax", "flax"))))')
  r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr[-2000:]
  assert 'LOADED []' in r.stdout, r.stdout[-500:]
