"""benchmarks/quality_vs_torch.py --quick (its JAX systems, tiny, on digits) runs end to end and scores every run.

The quick mode trains through launch/train.py in its own process; the test keeps everything under its tmp_path
(data, and a feature classifier trained for 5 steps: the scores only have to be finite here).
"""
import json
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quality_bench_quick_scores_every_jax_system(tmp_path):
  out = tmp_path / 'q.json'
  env = dict(os.environ)
  env.pop('XLA_FLAGS', None)          # conftest's 8 simulated devices: the benchmark runs on the real one
  t0 = time.time()
  r = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'quality_vs_torch.py'), '--quick',
                      f'--workroot={tmp_path / "runs"}', f'--out={out}', f'--data_dir={tmp_path / "tfds"}',
                      f'--feature_net_dir={tmp_path / "fnet"}', '--feature_steps=5'],
                     capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  res = json.loads(out.read_text())
  systems, modes, seeds = ('jax', 'jax_torchlike'), ('running', 'batch'), [0, 1]

  # one run per system and seed, each trained for the quick length and scored in both sampling modes
  assert sorted((x['system'], x['seed']) for x in res['runs']) == sorted((s, k) for s in systems for k in seeds)
  for run in res['runs']:
    assert run['steps'] == 20 and run['seconds'] >= 0 and run['process_seconds'] > 0
    for m in modes:
      q = run['scores'][m]
      assert math.isfinite(q['fid']) and q['fid'] > 0, (run['system'], m, q)
      assert math.isfinite(q['kid']), (run['system'], m, q)

  # the two JAX systems are different recipes: the project's defaults and PyTorch's example's choices
  resolved = {x['system']: x['resolved'] for x in res['runs']}
  assert (resolved['jax']['z_prior'], resolved['jax']['update_order']) == ('uniform', 'alternate')
  assert resolved['jax']['weight_decay'] > 0
  assert (resolved['jax_torchlike']['z_prior'], resolved['jax_torchlike']['update_order'],
          resolved['jax_torchlike']['weight_decay'], resolved['jax_torchlike']['project_bn']) == (
              'normal', 'joint', 0.0, 'channel')

  # the table: one finite row per system and mode, over both seeds
  rows = {(x['system'], x['mode']): x for x in res['rows']}
  assert sorted(rows) == sorted((s, m) for s in systems for m in modes)
  for row in rows.values():
    assert row['seeds'] == seeds and len(row['fid']) == 2 and row['steps'] == [20]
    assert all(math.isfinite(v) for v in row['fid'] + row['kid'] + [row['fid_mean'], row['fid_std']])
  for s in systems:
    for m in modes:
      assert any(line.startswith(f'| {s} | {m} | 20 |') for line in r.stdout.splitlines()), r.stdout[-2000:]
  print(f'quality_vs_torch --quick: {time.time() - t0:.0f}s')
