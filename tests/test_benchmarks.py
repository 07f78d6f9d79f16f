"""The benchmarks' JAX halves run on a tiny configuration, so they cannot rot (PyTorch is not in CI)."""
import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
  spec = importlib.util.spec_from_file_location(f'bench_{name}', os.path.join(ROOT, 'benchmarks', f'{name}.py'))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_train_step_benchmark_jax_half(capsys, data_dir, monkeypatch):
  monkeypatch.setenv('TFDS_DATA_DIR', data_dir)
  out = _load('train_step').main(['--configs=tiny', '--batch_sizes=8', '--reps=2', '--jax_only'])
  assert len(out) == 1
  r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert r['model'] == 'tiny' and r['batch_size'] == 8 and r['resolution'] == 8
  assert r['jax_img_per_s'] > 0 and r['jax_compile_s'] > 0 and r['pipeline_img_per_s'] > 0
  assert r['torch_img_per_s'] is None and r['ratio'] is None
  assert r['xla_flags'] == os.environ.get('XLA_FLAGS', '')     # recorded, with the project's defaults if applied


def test_scaling_benchmark_runs_on_several_devices():
  r1 = _load('scaling').bench('tiny', 1, per_device_batch=4, reps=2, dtype='float32')
  r4 = _load('scaling').bench('tiny', 4, per_device_batch=4, reps=2, dtype='float32')
  assert (r1['devices'], r1['global_batch'], r4['devices'], r4['global_batch']) == (1, 4, 4, 16)
  assert r1['img_per_s'] > 0 and r4['img_per_s'] > 0 and r4['step_ms'] > 0
