"""Evaluation: section-5 feature probes, the streaming nearest-neighbour test, sample-quality metrics, the best
checkpoint of --eval_every, and the launch/evaluate.py paths end to end (in-process, tiny runs on digits)."""
import contextlib
import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg

from common import checkpoint, data, eval_tasks, feature_net, features, images, loop, metrics, nn_generated, probes
from common import quality, registry
from common.model import DataFacts
from common.config import Config


TINY = dict(dataset='digits', resolution=8, width=8, z_dim=16, batch_size=16, log_every=2, sample_every=0,
            num_samples=16)


def _np_max_pool(h, grid):
  """Reference: adaptive max pool written directly in numpy."""
  n, hh, ww, c = h.shape
  out = np.empty((n, grid, grid, c), h.dtype)
  for i in range(grid):
    for j in range(grid):
      r0, r1 = i * hh // grid, -(-(i + 1) * hh // grid)
      c0, c1 = j * ww // grid, -(-(j + 1) * ww // grid)
      out[:, i, j] = h[:, r0:r1, c0:c1].max(axis=(1, 2))
  return out


@pytest.mark.parametrize('shape', [(2, 8, 8, 3), (2, 16, 12, 2), (1, 6, 10, 4), (2, 2, 2, 1), (1, 4, 4, 5)])
def test_adaptive_max_pool_matches_numpy(shape):
  h = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(features.adaptive_max_pool(jnp.asarray(h), 4)), _np_max_pool(h, 4))


# -- features ------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def tiny(tiny_dcgan_run):
  model, state, config = checkpoint.load(tiny_dcgan_run)
  return model, jax.device_put(jax.device_get(state), jax.devices()[0]), config


def test_dcgan_features_pool_every_conv_layer_to_4x4(tiny):
  model, state, _ = tiny         # 16x16 D, width 16: conv1 8x8x16, conv2 4x4x32
  x = np.random.default_rng(0).uniform(-1, 1, (5, 16, 16, 1)).astype(np.float32)
  f = np.asarray(model.features(state, x))
  assert f.shape == (5, 16 * (16 + 32))
  D = model.networks()['D']
  _, inter = D.apply(state.variables('D'), x, train=False, mutable=['intermediates'])
  acts = [np.asarray(inter['intermediates'][k][0]) for k in ('conv1_act', 'conv2_act')]
  want = np.concatenate([_np_max_pool(a, 4).reshape(5, -1) for a in acts], axis=1)
  np.testing.assert_allclose(f, want, rtol=1e-6)
  assert np.asarray(model.features(state, x, layer='conv2_act')).shape == (5, 16 * 32)
  assert np.asarray(model.features(state, x, pool=None)).shape == (5, 8 * 8 * 16 + 4 * 4 * 32)
  with pytest.raises(ValueError, match='unknown feature layer'):
    model.features(state, x, layer='conv9_act')


def test_bigan_encoder_features_through_the_same_pooling():
  def build(config, channels):
    return registry.build(config, DataFacts(channels))

  def shape(model, x, **kw):   # shapes only: nothing is compiled
    state = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    return jax.eval_shape(lambda s, x: probes.probe_features(model, s, x, **kw), state, x).shape

  conv = build(Config.make(model='bigan', dataset='digits', architecture='conv', resolution=16, width=8, z_dim=8),
               channels=1)
  x = jax.ShapeDtypeStruct((3, 16, 16, 1), jnp.float32)
  assert shape(conv, x) == (3, 16 * (8 + 16))                  # E: conv1 8x8x8, conv2 4x4x16, each -> 4x4
  assert shape(conv, x, layer='conv1_act') == (3, 16 * 8)
  with pytest.raises(ValueError, match='no plain discriminator'):
    shape(conv, x, net='D')
  mlp = build(Config.make(model='joint_latent_regressor', dataset='digits', resolution=8, hidden=32, z_dim=8), channels=1)
  x = jax.ShapeDtypeStruct((3, 8, 8, 1), jnp.float32)
  assert shape(mlp, x) == (3, 64)                              # MLP E: fc1, fc2 (not pooled)
  assert shape(mlp, x, net='D') == (3, 64)


def test_channel_adaptation():
  gray = np.random.default_rng(0).uniform(-1, 1, (2, 4, 4, 1)).astype(np.float32)
  rgb = np.asarray(images.adapt(gray, channels=3))
  assert rgb.shape == (2, 4, 4, 3) and np.array_equal(rgb[..., 2], gray[..., 0])
  np.testing.assert_allclose(np.asarray(images.adapt(rgb, channels=1)), gray, rtol=1e-6)
  note = probes.adaptation_note('mnist', 1, (28, 28, 1), 3, 32)
  assert 'gray replicated to RGB' in note and '28x28 resized' in note and '\n' not in note
  assert probes.adaptation_note('cifar10', 3, (32, 32, 3), 3, 32) == ''


# -- the SVM protocol ----------------------------------------------------------------------------------------

def test_balanced_draw_and_validation_split():
  labels = np.random.default_rng(0).integers(0, 10, 3000)
  val, rest = probes.validation_split(len(labels), 500, seed=0)
  assert len(val) == 500 and len(rest) == 2500 and not set(val) & set(rest)
  a = rest[probes.balanced_draw(labels[rest], 25, np.random.default_rng([0, 0]), 10)]
  b = rest[probes.balanced_draw(labels[rest], 25, np.random.default_rng([0, 1]), 10)]
  assert np.array_equal(np.bincount(labels[a], minlength=10), np.full(10, 25))
  assert np.array_equal(np.bincount(labels[b], minlength=10), np.full(10, 25))
  assert not set(a) & set(val) and set(a) != set(b)
  with pytest.raises(ValueError, match='fewer than --labels_per_class'):
    probes.balanced_draw(labels[rest], 10_000, 0)


def test_svm_probe_beats_chance_on_a_short_run(tiny, data_dir):
  model, state, _ = tiny
  train, _ = data.open_source('digits', 'train', data_dir=data_dir)
  test, _ = data.open_source('digits', 'test', data_dir=data_dir)
  r = probes.svm_probe(probes.feature_fn(model, state), train, test, resolution=16, channels=1,
                       labels_per_class=20, draws=2, val_size=200, Cs=(1e-2,), log=lambda *_: None)
  assert r['n_train'] == [200, 200] and r['n_val'] == 200 and r['n_test'] == 300 and r['dims'] == 768
  assert r['mean_accuracy'] > 0.5, r          # chance: 0.1
  assert len(set(r['accuracy'])) == 2 or r['std_error'] == 0


def test_svm_probe_authors_protocol_one_c_over_draws_and_refit_on_all_labels(tiny, data_dir):
  """The authors' choice of C (best mean validation accuracy over the draws, then used for every draw) and, with
  all labels, the final SVM refitted on the whole train split."""
  model, state, _ = tiny
  train, _ = data.open_source('digits', 'train', data_dir=data_dir)
  test, _ = data.open_source('digits', 'test', data_dir=data_dir)
  fn, quiet = probes.feature_fn(model, state), (lambda *_: None)
  cs = (1e-5, 1e-3, 1e-1)
  r = probes.svm_probe(fn, train, test, resolution=16, channels=1, labels_per_class=5, draws=3, val_size=200,
                       Cs=cs, log=quiet)
  assert len(set(r['C'])) == 1 and r['C'][0] in cs
  per = probes.svm_probe(fn, train, test, resolution=16, channels=1, labels_per_class=5, draws=3, val_size=200,
                         Cs=cs, choose_c='per_draw', log=quiet)
  assert all(c in cs for c in per['C'])
  full = probes.svm_probe(fn, train, test, resolution=16, channels=1, val_size=200, Cs=(1e-2,), log=quiet)
  held = probes.svm_probe(fn, train, test, resolution=16, channels=1, val_size=200, Cs=(1e-2,), refit=False,
                          log=quiet)
  assert full['n_train'] == [len(train)] and held['n_train'] == [len(train) - 200]
  assert probes.DEFAULT_CS == (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2)


def test_real_batch_stats_replace_running_averages_with_real_image_statistics(tiny, data_dir):
  model, state, _ = tiny
  train, _ = data.open_source('digits', 'train', data_dir=data_dir)
  fresh = probes.real_batch_stats(model, state, train, batches=3, batch=32)
  before, after = state.batch_stats['D'], fresh.batch_stats['D']
  assert jax.tree_util.tree_structure(before) == jax.tree_util.tree_structure(after)
  assert not all(np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(before),
                                                   jax.tree_util.tree_leaves(after)))
  assert fresh.params is state.params
  # The average of per-batch statistics: the same batch given twice gives that batch's statistics.
  x = np.random.default_rng(0).uniform(-1, 1, (16, 16, 16, 1)).astype(np.float32)
  once = model.recompute_batch_stats(state, [x])
  twice = model.recompute_batch_stats(state, [x, x])
  for a, b in zip(jax.tree_util.tree_leaves(once.batch_stats['D']), jax.tree_util.tree_leaves(twice.batch_stats['D'])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  f_run = np.asarray(model.features(state, x))
  f_real = np.asarray(model.features(fresh, x))
  assert not np.allclose(f_run, f_real)


# -- nearest-neighbour test ----------------------------------------------------------------------------------

def test_streaming_nearest_neighbour_equals_brute_force():
  rng = np.random.default_rng(0)
  refs, labels = rng.normal(size=(203, 12)).astype(np.float32), rng.integers(0, 5, 203)
  queries = rng.normal(size=(50, 12)).astype(np.float32)
  stream = metrics.StreamingNearestNeighbour(queries)
  for s in range(0, 203, 16):
    stream.update(refs[s:s + 16], labels[s:s + 16])
  want = metrics.knn_predict(refs, labels, queries, k=1, metric='l2')
  np.testing.assert_array_equal(stream.predict(), want)


def test_nn_generated_streams_with_memory_independent_of_the_count():
  rng = np.random.default_rng(1)
  test_x = rng.normal(size=(40, 4, 4, 1)).astype(np.float32)
  test_y = rng.integers(0, 3, 40)
  calls, per_class = [], np.zeros(3, np.int64)

  def generate(key, y):     # class c -> noise around the mean of test images of class c
    calls.append(len(y))
    centres = jnp.asarray(np.stack([test_x[test_y == c].mean(0) for c in range(3)]))
    return centres[y] + 0.01 * jax.random.normal(key, (len(y), 4, 4, 1))

  small = nn_generated.nn_generated(generate, 3, 10, test_x, test_y, batch=16)
  big = nn_generated.nn_generated(generate, 3, 200, test_x, test_y, batch=16)
  assert small['samples'] == 30 and big['samples'] == 600
  assert set(calls) == {16}                                   # one batch at a time, never the whole set
  assert small['stream_bytes'] == big['stream_bytes']         # what is kept does not grow with the count
  # The streamed classifier equals brute-force 1-NN over all generated samples at once.
  key = jax.random.PRNGKey(0)
  xs, ys = [], []
  for b, s in enumerate(range(0, 30, 16)):
    y = np.arange(s, s + 16) % 3
    xs.append(np.asarray(generate(jax.random.fold_in(key, b), jnp.asarray(y)))[:min(16, 30 - s)])
    ys.append(y[:min(16, 30 - s)])
  ys = np.concatenate(ys)
  assert np.array_equal(np.bincount(ys), [10, 10, 10])
  brute = metrics.knn_predict(np.concatenate(xs).reshape(30, -1), ys, test_x.reshape(40, -1), k=1, metric='l2')
  assert small['error'] == pytest.approx(np.mean(brute != test_y))


# -- sample-quality metrics ----------------------------------------------------------------------------------

def test_frechet_distance_closed_form():
  rng = np.random.default_rng(0)
  mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
  d1, d2 = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
  want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)   # diagonal Gaussians
  assert metrics.frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(want, rel=1e-9)
  a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
  s1, s2 = a @ a.T + np.eye(5), b @ b.T + np.eye(5)                             # general (non-commuting)
  want = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
  assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-7)
  assert metrics.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-8)


def test_kid_is_unbiased_on_one_distribution_and_positive_on_two():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 16))
  same = metrics.kernel_distance(x, x, subsets=20, subset_size=100)
  other = metrics.kernel_distance(x, rng.normal(size=(400, 16)), subsets=20, subset_size=100)
  shifted = metrics.kernel_distance(x, rng.normal(0.5, 1, size=(400, 16)), subsets=20, subset_size=100)
  for r in (same, other):
    assert abs(r['mean']) < 4 * r['stderr'] + 1e-3, r
  assert shifted['mean'] > 10 * shifted['stderr'] and shifted['mean'] > 0.05, shifted
  assert shifted['stderr'] == pytest.approx(shifted['std'] / np.sqrt(20))


def test_precision_recall_density_coverage_sanity():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(300, 8)).astype(np.float32)
  assert metrics.precision_recall(x, x, k=3) == {'precision': 1.0, 'recall': 1.0}
  dc = metrics.density_coverage(x, x, k=5)
  assert dc['coverage'] == 1.0 and dc['density'] == pytest.approx(1.0, abs=0.3)
  far = x + 100
  assert metrics.precision_recall(x, far, k=3) == {'precision': 0.0, 'recall': 0.0}
  assert metrics.density_coverage(x, far, k=5) == {'density': 0.0, 'coverage': 0.0}
  half = metrics.precision_recall(x, np.concatenate([x[:150], far[:150]]), k=3)
  assert half['precision'] == pytest.approx(0.5) and 0.3 < half['recall'] < 0.9


# -- feature network and cached real statistics --------------------------------------------------------------

@pytest.fixture(scope='module')
def classifier_dir(tmp_path_factory, data_dir, load_cli):
  """A tiny feature classifier for digits, trained through the CLI."""
  out = str(tmp_path_factory.mktemp('feature_net'))
  cli = load_cli('evaluate')
  rc = cli.main(['--train_feature_net', '--dataset=digits', f'--data_dir={data_dir}', f'--feature_net_dir={out}',
                 '--steps=40', '--feature_resolution=16', '--batch_size=64'])
  assert rc == 0
  return out


def test_feature_net_saves_and_reloads(classifier_dir):
  net = feature_net.load(classifier_dir)
  assert net.resolution == 16 and net.channels == 1 and net.meta['test_accuracy'] > 0.3
  f = np.asarray(net(np.zeros((3, 8, 8, 3), np.float32)))    # any size and channels: adapted
  assert f.shape == (3, 128)
  with pytest.raises(FileNotFoundError, match='--train_feature_net'):
    feature_net.load(os.path.dirname(classifier_dir) + '/nothing_here')


def test_real_statistics_are_cached(classifier_dir, data_dir, monkeypatch):
  net = feature_net.load(classifier_dir)
  first = quality.real_statistics(net, 'digits', 'test', resolution=8, data_dir=data_dir, log=None)
  assert first.path.startswith(os.path.join(data_dir, 'fid_stats', 'digits'))
  monkeypatch.setattr(quality, 'featurize', lambda *a, **k: pytest.fail('recomputed instead of cached'))
  second = quality.real_statistics(net, 'digits', 'test', resolution=8, data_dir=data_dir, log=None)
  assert not first.cached and second.cached and second.n == 300
  np.testing.assert_array_equal(first.mu, second.mu)
  np.testing.assert_array_equal(first.feats, second.feats)


# -- best checkpoint during training -------------------------------------------------------------------------

def test_eval_every_keeps_the_best_checkpoint(tmp_path, data_dir, monkeypatch, load_cli):
  seq = iter([5.0, 3.0, 4.0, 6.0, 3.5, 2.0])
  monkeypatch.setattr(quality.TrainingEvaluator, 'measure', lambda self, state: {'fid': next(seq)})
  wd = str(tmp_path)
  cfg = Config.make(model='dcgan', **TINY, workdir=wd, data_dir=data_dir, steps=8, checkpoint_every=8, eval_every=2)
  loop.train(cfg)
  assert checkpoint.Checkpointer(os.path.join(wd, 'best')).all_steps() == [4]
  _, state, _ = checkpoint.load(os.path.join(wd, 'best'))
  assert int(state.step) == 4
  with open(os.path.join(wd, 'eval.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  assert [(r['step'], r['fid'], r['best']) for r in rows] == [(2, 5.0, True), (4, 3.0, True), (6, 4.0, False),
                                                              (8, 6.0, False)]
  # Resumed: the best value (3.0) is remembered; 3.5 does not replace it, 2.0 does.
  loop.train(cfg.replace(steps=12))
  assert checkpoint.Checkpointer(os.path.join(wd, 'best')).all_steps() == [12]
  cli = load_cli('evaluate')
  a = cli.parse([f'--workdir={wd}', '--best', '--eval=knn'])
  _, state, _ = eval_tasks.load_run(a)
  assert int(state.step) == 12


def test_training_evaluator_on_the_feature_net(tiny, data_dir, classifier_dir):
  model, state, config = tiny
  ev = quality.TrainingEvaluator(config.replace(data_dir=data_dir, eval_metric='kid', eval_samples=64,
                                                feature_net_dir=classifier_dir), model, log=lambda *_: None)
  values = ev.measure(state)
  assert set(values) >= {'fid', 'kid', 'kid_stderr'} and values['fid'] > 0 and np.isfinite(values['kid'])
  assert ev.improves(values['kid']) and ev.lower_is_better
  ev.best = values['kid']
  assert not ev.improves(values['kid']) and ev.improves(values['kid'] - 1) and not ev.improves(float('nan'))
  assert ev.measure(state) == values          # the same latents every time


# -- the command line, end to end ----------------------------------------------------------------------------

@pytest.fixture
def _run(load_cli):
  """``_run(*argv)`` runs launch/evaluate.py in this process: (exit code, stdout, stderr)."""
  cli = load_cli('evaluate')

  def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      rc = cli.main(list(argv))
    return rc, out.getvalue(), err.getvalue()
  return run


def test_cli_svm_table(tiny_dcgan_run, data_dir, _run):
  rc, out, err = _run(f'--workdir={tiny_dcgan_run}', '--eval=svm', f'--data_dir={data_dir}', '--labels_per_class=10',
                      '--draws=2', '--val_size=100', '--svm_C=0.01')
  assert rc == 0, err
  assert '82.80%' in out and '73.80% (±0.40%)' in out and '22.48%' in out
  row = [line for line in out.splitlines() if '(this run)' in line][0]
  assert '10 per class x 2 draws' in row and '±' in row


def test_cli_quality_table(tiny_dcgan_run, data_dir, classifier_dir, _run):
  args = (f'--workdir={tiny_dcgan_run}', '--eval=quality', f'--data_dir={data_dir}',
          f'--feature_net_dir={classifier_dir}', '--num_samples=128', '--kid_subsets=5', '--kid_subset_size=64')
  rc, out, err = _run(*args)
  assert rc == 0, err
  assert '| FID | KID | precision | recall | density | coverage |' in out
  assert 'dcgan step 40: 128 samples' in out and 'real test split: 128 images' in out
  rc, out, _ = _run(*args)
  assert rc == 0 and 'read from' in out          # real statistics cached


@pytest.mark.parametrize('model', ['cdcgan', pytest.param('mlp_gan', marks=pytest.mark.slow)])
def test_cli_nn_generated(model, tmp_path, data_dir, _run):
  wd = str(tmp_path / model)
  loop.train(Config.make(model=model, **TINY, hidden=32, workdir=wd, data_dir=data_dir, steps=4, checkpoint_every=4))
  rc, out, err = _run(f'--workdir={wd}', '--eval=nn_generated', '--samples_per_class=20', '--gen_batch=64')
  assert rc == 0, err
  assert '| GAN | 6.28% | 5.65% |' in out and '| DCGAN | 2.98% | 1.48% |' in out
  assert f'{model} step 4 | 200 generated (20 per class)' in out and '1,497 training images' in out


def test_mlp_gan_is_a_conditional_mlp_dcgan():
  model = registry.build(Config.make(model='mlp_gan', dataset='digits', hidden=32, z_dim=16), DataFacts(1, 10))
  assert model.resolution == 28 and model.num_classes == 10
  state = jax.jit(model.init)(jax.random.PRNGKey(0))
  assert state.params['D']['mlp']['fc1']['kernel'].shape == (28 * 28 + 10, 32)    # one-hot label joins x
  assert state.params['G']['mlp']['fc1']['kernel'].shape == (16 + 10, 32)         # ... and z
  assert 'scale' not in state.batch_stats['G']['mlp']['bn2'] and 'bn2' not in state.params['G']['mlp']
  batch = {'image': jnp.zeros((4, 28, 28, 1)), 'label': jnp.arange(4)}
  from common import parallel
  new, m = jax.eval_shape(parallel.data_parallel(model.train_step, parallel.make_mesh(jax.devices()[:1])),
                          state, batch)
  assert set(m) >= {'d_loss', 'g_loss'}
  r = nn_generated.nn_generated(nn_generated.generator_fn(model, state), 10, 3, np.zeros((5, 28, 28, 1)),
                                np.arange(5), batch=16)
  assert r['samples'] == 30
  with pytest.raises(ValueError, match='needs a labelled dataset'):
    registry.build(Config.make(model='mlp_gan'), DataFacts(1, None))


def test_cli_errors_are_one_line(tiny_dcgan_run, data_dir, _run):
  for argv, message in ((['--eval=svm', '--best'], 'no best checkpoint'),
                        (['--eval=nn_generated'], 'label-conditioned'),
                        (['--eval=quality', '--inception_weights=/nonexistent/pt_inception.pth'], 'does not exist')):
    rc, _, err = _run(f'--workdir={tiny_dcgan_run}', f'--data_dir={data_dir}', *argv)
    assert rc == 1 and message in err and len(err.strip().splitlines()) == 1, err
