"""BiGAN (Donahue et al., 2017): the paper's rules pinned on the networks, the steps, the baselines, k-NN and
the Table 1 pipeline. Tiny networks (hidden 32, 8x8 images) so the file runs in about a minute on 2 cores."""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bigan_jax.family import apply as _apply
from bigan_jax.objectives import bigan_losses, decay_mask, latent_regression_loss, logits_to_z, reconstruction_loss
from common import metrics, parallel, registry
from common import networks as models
from common.config import Config
from common.gan import sample_z
from common.model import DataFacts

TINY = Config.make(model='bigan', hidden=32, resolution=8, z_dim=8, batch_size=16, steps=100)
CONV = Config.make(model='bigan', architecture='conv', resolution=8, width=8, z_dim=8, batch_size=16, steps=100)
# The networks as this project built them before following the authors' code (tests/test_fidelity.py pins the
# defaults); these tests keep checking that the alternatives stay available.
def build(config, channels=1, num_classes=None):
  """The model of ``config`` for data of ``channels`` channels, its defaults resolved (``registry.build``)."""
  return registry.build(config, DataFacts(channels, num_classes))


LEGACY = dict(z_into_d='every_layer', layer_bias=True, z_into_g=False, encoder_output='linear',
              data_range='symmetric', alexnet_pool5=True)


def _batch(n=16, res=8, c=1, seed=0):
  rng = np.random.default_rng(seed)
  return {'image': rng.uniform(-1, 1, (n, res, res, c)).astype(np.float32),
          'label': rng.integers(0, 10, n).astype(np.int32)}


def _leaves_moved(a, b):
  return jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x, y: not np.allclose(x, y), a, b))


@functools.lru_cache(maxsize=None)
def _compiled(model, devices):
  """(mesh, jitted data-parallel step), cached: one compilation per model and device set."""
  mesh = parallel.make_mesh(list(devices))
  return mesh, parallel.data_parallel(model.train_step, mesh, donate=False)


def _init(model, seed=0):
  return jax.device_get(jax.jit(model.init)(jax.random.PRNGKey(seed)))


def _run(model, devices, batches, state=None):
  mesh, step = _compiled(model, tuple(devices))
  state = parallel.replicate(mesh, _init(model) if state is None else state)
  ms = []
  for b in batches:
    state, m = step(state, parallel.global_batch(mesh, b))
    ms.append(jax.device_get(m))
  return jax.device_get(state), ms


@pytest.fixture(scope='module')
def mlp():
  model = build(TINY, channels=1)
  return model, _init(model)


@pytest.fixture(scope='module')
def mlp_step(mlp):
  """One BiGAN step on one device from the ``mlp`` state."""
  model, s0 = mlp
  s1, (m,) = _run(model, jax.devices()[:1], [_batch()])
  return s1, m


# -- networks ----------------------------------------------------------------------------------------------

def _d_acts(D, v, x, z):
  logit, inter = jax.jit(lambda v, z: D.apply(v, x, z, train=False, mutable=['intermediates']))(v, z)
  return {**{k: np.asarray(a[0]) for k, a in inter['intermediates'].items()}, 'logit': np.asarray(logit)}


@pytest.mark.parametrize('config', [TINY.replace(**LEGACY), CONV.replace(resolution=16, **LEGACY)],
                         ids=['mlp', 'conv'])
def test_z_is_injected_at_every_layer_of_d(config):
  model = build(config, channels=1)
  D = model.networks()['D']
  x = jnp.asarray(_batch(4, res=config.model.resolution)['image'])
  z = sample_z(jax.random.PRNGKey(1), 4, 8)
  v = jax.jit(lambda: D.init(jax.random.PRNGKey(0), x, z, train=False))()
  p = v['params']
  hidden = ['fc1', 'fc2'] if config.bigan.architecture is None else ['conv1', 'conv2']   # 16x16: two stride-2 layers
  for name in hidden + ['logit']:
    assert f'{name}_z' in p, name
    assert 'bias' not in p[f'{name}_z']      # a linear map of z (the layer keeps its own bias)
  a, b = _d_acts(D, v, x, z), _d_acts(D, v, x, -z)
  assert set(a) == {f'{n}_act' for n in hidden} | {'logit'}
  for name in a:   # LeakyReLU is injective: a changed activation means a changed pre-activation
    assert not np.allclose(a[name], b[name]), name
  # Without the z path of a layer, that layer (and only downstream ones) would not see z.
  p0 = {**p, f'{hidden[0]}_z': {'kernel': jnp.zeros_like(p[f'{hidden[0]}_z']['kernel'])}}
  a0, b0 = _d_acts(D, {**v, 'params': p0}, x, z), _d_acts(D, {**v, 'params': p0}, x, -z)
  assert np.allclose(a0[f'{hidden[0]}_act'], b0[f'{hidden[0]}_act'])


def test_conv_d_four_layers_at_64_and_z_init_scaled_by_kernel_area():
  model = build(Config.make(model='bigan', z_dim=200, **LEGACY), channels=3)
  assert (model.architecture, model.resolution, model.z_dim, model.encoder_kind) == ('conv', 64, 200, 'alexnet')
  D = model.networks()['D']
  shapes = jax.eval_shape(lambda: D.init(jax.random.PRNGKey(0), jnp.zeros((2, 64, 64, 3)), jnp.zeros((2, 200)),
                                         train=False))['params']
  assert [shapes[f'conv{i}']['kernel'].shape for i in range(1, 5)] == [
      (5, 5, 3, 128), (5, 5, 128, 256), (5, 5, 256, 512), (5, 5, 512, 1024)]
  assert [shapes[f'conv{i}_z']['kernel'].shape for i in range(1, 5)] == [
      (200, 128), (200, 256), (200, 512), (200, 1024)]
  # Init stds on a small conv D (values, not shapes): 0.5 for 5x5 z weights, 0.02 elsewhere.
  small = models.JointDiscriminator(resolution=16, width=64, kernel_size=5, z_into='every_layer')
  p = jax.jit(lambda: small.init(jax.random.PRNGKey(0), jnp.zeros((2, 16, 16, 1)), jnp.zeros((2, 64)),
                                train=False))()['params']
  assert abs(np.std(p['conv1_z']['kernel']) - 0.5) < 0.05 and abs(np.std(p['conv2_z']['kernel']) - 0.5) < 0.05
  assert abs(np.std(p['conv2']['kernel']) - 0.02) < 0.002 and abs(np.std(p['logit_z']['kernel']) - 0.02) < 0.006
  mp = jax.jit(lambda: models.MLPDiscriminator(hidden=256, z_into='every_layer').init(
      jax.random.PRNGKey(0), jnp.zeros((2, 64)), jnp.zeros((2, 64)), train=False))()['params']
  assert abs(np.std(mp['fc1_z']['kernel']) - 0.02) < 0.002      # dense z weights: the standard 0.02


def test_mlp_parameter_free_batchnorm_on_second_hidden_layer():
  model = build(TINY.replace(**LEGACY), channels=1)
  s = _init(model)
  for net in ('G', 'D', 'E'):
    p = s.params[net]
    assert 'bn2' not in p, net                       # no scale, no bias
    assert set(s.batch_stats[net]['bn2']) == {'mean', 'var'}
    assert 'bias' not in p['fc2'] and 'bias' in p['fc1']
    assert p['fc1']['kernel'].shape[1] == p['fc2']['kernel'].shape[0] == 32
  assert s.params['G']['out']['kernel'].shape == (32, 64)        # 8x8x1 image, tanh
  assert s.params['E']['out']['kernel'].shape == (32, 8)         # linear z


def test_weight_decay_only_on_kernels(mlp):
  for model in (mlp[0], build(CONV.replace(resolution=16), channels=1)):
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0)).params
    for net, tree in params.items():
      flat = jax.tree_util.tree_flatten_with_path(decay_mask(tree))[0]
      for path, on in flat:
        assert on == (path[-1].key == 'kernel'), (net, path)
      assert any(on for _, on in flat)
  # Through the optimiser: with zero gradients only kernels move (decay), biases and BN scale/shift do not.
  tx = model.optimizers()['D']
  p = jax.tree_util.tree_map(jnp.ones_like, params['D'])
  upd = jax.jit(lambda p: tx.update(jax.tree_util.tree_map(jnp.zeros_like, p), tx.init(p), p)[0])(p)
  for (path, u) in jax.tree_util.tree_flatten_with_path(upd)[0]:
    assert (float(jnp.abs(u).max()) > 0) == (path[-1].key == 'kernel'), path
  assert 'scale' in params['D']['bn2'] and mlp[0].config.model.weight_decay == 2.5e-5


def test_learning_rate_schedule():
  model = build(Config.make(model='bigan', steps=1000), channels=1)
  lr = model.schedule
  assert np.isclose(lr(0), 2e-4) and np.isclose(lr(500), 2e-4) and np.isclose(lr(1000), 2e-6, rtol=1e-4)
  assert np.isclose(lr(750), 2e-5, rtol=1e-3)          # exponential: the geometric mean halfway through decay
  assert np.isclose(lr(400), 2e-4) and lr(600) < 2e-4


def test_adam_betas():
  c = Config.make()
  assert (c.model.lr, c.model.beta1, c.model.beta2, c.bigan.lr_final, c.loop.batch_size) == (2e-4, 0.5, 0.999, 2e-6, 128)


# -- objective and the step --------------------------------------------------------------------------------

def test_inverse_objective_sign():
  lr, lf = jnp.array([0.4, -0.3]), jnp.array([-0.2, 0.7])
  d_loss, ge_loss = bigan_losses(lr, lf)
  dr, df = jax.nn.sigmoid(lr), jax.nn.sigmoid(lf)
  assert np.isclose(d_loss, -(jnp.log(dr) + jnp.log(1 - df)).mean(), atol=1e-6)     # -V
  assert np.isclose(ge_loss, -(jnp.log(1 - dr) + jnp.log(df)).mean(), atol=1e-6)    # inverse, not +V
  assert not np.isclose(ge_loss, -d_loss)
  # G/E's loss falls as D is fooled (real pairs called fake, fake pairs called real); D's rises.
  fooled = bigan_losses(jnp.array([-3.0, -3.0]), jnp.array([3.0, 3.0]))
  right = bigan_losses(jnp.array([3.0, 3.0]), jnp.array([-3.0, -3.0]))
  assert fooled[1] < ge_loss < right[1] and fooled[0] > d_loss > right[0]
  g_real, g_fake = jax.grad(lambda a, b: bigan_losses(a, b)[1], argnums=(0, 1))(lr, lf)
  assert (g_real > 0).all() and (g_fake < 0).all()     # G/E push D(x, E(x)) down and D(G(z), z) up


def test_one_step_updates_d_g_and_e_simultaneously_at_current_params(mlp, mlp_step):
  """The step equals Adam on grad_D(D's loss) and grad_{G,E}(inverse loss), all at the step-0 parameters."""
  model, s0 = mlp
  s1, m = mlp_step
  assert int(s1.step) == 1
  for net in ('G', 'D', 'E'):
    assert all(_leaves_moved(s0.params[net], s1.params[net])), net
    assert not np.allclose(s0.batch_stats[net]['bn2']['mean'], s1.batch_stats[net]['bn2']['mean']), net
  # Reference: plain jax.grad of the two losses, every network at its step-0 parameters.
  nets = model.networks()
  G, D, E = nets['G'], nets['D'], nets['E']
  x = jnp.asarray(_batch()['image'])
  z = sample_z(jax.random.fold_in(s0.key, 0), 16, model.z_dim)
  bs = s0.batch_stats

  def losses(p):   # the networks' range and E's squash as the model defines them
    fake, _ = model._g(G, p['G'], bs['G'], z, train=True)
    ez, _ = model._e_train(E, p['E'], bs['E'], model.to_model(x))
    lr, b = _apply(D, p['D'], bs['D'], model.to_model(x), ez, train=True)
    lf, _ = _apply(D, p['D'], b, fake, z, train=True)
    return bigan_losses(lr, lf)

  tx = model.optimizers()['D']

  @jax.jit
  def reference(p):
    g_d = jax.grad(lambda pd: losses({**p, 'D': pd})[0])(p['D'])
    g_ge = jax.grad(lambda pge: losses({**p, **pge})[1])({'G': p['G'], 'E': p['E']})
    grads = {'D': g_d, **g_ge}
    return losses(p)[0], {k: optax.apply_updates(p[k], tx.update(grads[k], tx.init(p[k]), p[k])[0]) for k in grads}

  d_loss, new = reference(s0.params)
  assert np.isclose(m['d_loss'], d_loss, rtol=1e-5)
  for net in ('D', 'G', 'E'):
    ref = new[net]
    diff = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda a, b: np.abs(a - b) > 1e-6, ref, s1.params[net]))
    # Adam's first step is ~lr * sign(g): allow a rare flip where a gradient is ~0 in float32.
    assert np.mean(np.concatenate([d.ravel() for d in diff])) < 1e-3, net


def test_eight_devices_equal_one_device(mlp):
  assert jax.device_count() >= 8, 'conftest sets 8 simulated CPU devices'
  model, s0 = mlp
  batches = [_batch(seed=i) for i in range(2)]
  s1, m1 = _run(model, jax.devices()[:1], batches, s0)
  s8, m8 = _run(model, jax.devices()[:8], batches, s0)
  for a, b in zip(m1, m8):
    for k in a:
      assert np.isclose(a[k], b[k], rtol=1e-4, atol=1e-5), (k, a[k], b[k])
  close = jax.tree_util.tree_map(lambda a, b: np.allclose(a, b, rtol=1e-3, atol=1e-5),
                                 (s1.params, s1.batch_stats), (s8.params, s8.batch_stats))
  assert all(jax.tree_util.tree_leaves(close))


def test_encoder_learns_to_invert_generator():
  """On data from a 2-D manifold, a short BiGAN run brings E(G(z)) toward z (Theorem 2)."""
  zd, res, n = 2, 4, 32
  rng = np.random.default_rng(0)
  A = rng.normal(size=(zd, res * res)).astype(np.float32)

  def data(k):
    return np.tanh(rng.uniform(-1, 1, (k, zd)).astype(np.float32) @ A).reshape(k, res, res, 1)

  model = build(Config.make(model='bigan', hidden=64, resolution=res, z_dim=zd, batch_size=n, steps=200, lr=1e-3),
                channels=1)
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = jax.jit(model.init, out_shardings=parallel.replicated(mesh))(jax.random.PRNGKey(0))
  step = parallel.data_parallel(model.train_step, mesh)
  z = sample_z(jax.random.PRNGKey(9), 256, zd)

  def err(s):
    return float(jnp.abs(model.encode(s, model.generate(s, z)) - z).mean())

  e0 = err(state)
  for _ in range(200):
    state, _ = step(state, parallel.global_batch(mesh, {'image': data(n)}))
  e1 = err(state)
  assert e1 < 0.75 * e0, (e0, e1)


# -- baselines -----------------------------------------------------------------------------------------------

def test_latent_regression_loss_is_sigmoid_cross_entropy_to_rescaled_z():
  z = jnp.array([[-0.9, 0.0, 0.5]])
  target = (z + 1) / 2
  best = jnp.log(target / (1 - target))                  # sigmoid(best) = (z + 1) / 2
  g = jax.grad(lambda l: latent_regression_loss(l, z))(best)
  assert np.allclose(g, 0, atol=1e-6) and np.allclose(logits_to_z(best), z, atol=1e-6)
  ref = -(target * jnp.log(jax.nn.sigmoid(best)) + (1 - target) * jnp.log(1 - jax.nn.sigmoid(best))).mean()
  assert np.isclose(latent_regression_loss(best, z), ref, atol=1e-6)


def test_joint_latent_regressor_step_e_does_not_touch_g_or_d():
  model = build(TINY.replace(model='joint_latent_regressor', jlr_weight=0.0), channels=1)
  assert isinstance(model.networks()['D'], models.MLPDiscriminator) and not model.networks()['D'].joint
  s0 = _init(model)
  other_e = _init(model, seed=1).params['E']
  a, (ma,) = _run(model, jax.devices()[:1], [_batch()], s0)
  b, _ = _run(model, jax.devices()[:1], [_batch()], s0.replace(params={**s0.params, 'E': other_e}))
  for net in ('G', 'D', 'E'):
    assert all(_leaves_moved(s0.params[net], a.params[net])), net
  # E is trained on stop_gradient(G(z)): G's and D's updates do not depend on E at all.
  same = jax.tree_util.tree_map(np.array_equal, (a.params['G'], a.params['D']), (b.params['G'], b.params['D']))
  assert all(jax.tree_util.tree_leaves(same))
  assert {'d_loss', 'g_loss', 'e_loss', 'z_err'} <= set(ma)
  x = _batch(4)['image']
  assert model.features(a, x, net='D').shape == (4, 32)
  assert model.features(a, x, net='D', layer='fc1_act,fc2_act').shape == (4, 64)
  z = np.asarray(model.encode(a, x))
  assert z.shape == (4, 8) and np.abs(z).max() < 1       # 2 sigmoid(logits) - 1


def test_autoencoder_l1_and_l2():
  x, y = jnp.array([0.0, 1.0, -1.0]), jnp.array([0.5, 1.0, 1.0])
  assert np.isclose(reconstruction_loss(x, y, 'l2'), (0.25 + 0 + 4) / 3)
  assert np.isclose(reconstruction_loss(x, y, 'l1'), (0.5 + 0 + 2) / 3)
  s0 = None
  out = {}
  for kind in ('l2', 'l1'):
    model = build(TINY.replace(model='autoencoder', recon_loss=kind), channels=1)
    assert set(model.networks()) == {'G', 'E'}
    s0 = s0 or _init(model)
    s1, (m,) = _run(model, jax.devices()[:1], [_batch()], s0)
    assert set(s1.params) == {'G', 'E'} and all(_leaves_moved(s0.params['G'], s1.params['G']))
    assert np.isfinite(m['recon_loss']) and m['recon_loss'] > 0
    out[kind] = (m['recon_loss'], s1.params['E']['out']['kernel'])
  assert out['l2'][0] < out['l1'][0]           # images in [-1, 1], errors < 1: squared below absolute
  assert not np.allclose(out['l2'][1], out['l1'][1])


# -- generalised BiGAN and the conv encoders -----------------------------------------------------------------

def test_generalised_bigan_encoder_at_twice_the_resolution():
  # An 8x8 D has one layer: z can only enter it at that layer (every_layer); tests/test_fidelity.py checks the error.
  model = build(CONV.replace(encoder_resolution=16, z_into_d='every_layer'), channels=1)
  assert model.resolution == 8 and model.encoder_resolution == 16 and model.encoder_kind == 'dcgan'
  opts = model.data_options()
  assert opts == dict(resolution=16, load_size=18, crop='random', flip=True)
  assert model.data_options(eval=True) == dict(resolution=16, load_size=18, crop='center', flip=False)
  s0 = _init(model)
  assert s0.params['D']['logit']['kernel'].shape == (4 * 4 * 8, 1)          # D at G's 8x8
  assert s0.params['E']['out']['kernel'].shape == (4 * 4 * 16, 8)           # E: 16 -> 8 -> 4, 16 channels
  b = _batch(res=16)
  s1, (m,) = _run(model, jax.devices()[:1], [b], s0)
  assert all(np.isfinite(v) for v in m.values()) and all(_leaves_moved(s0.params['E'], s1.params['E']))
  x = b['image'][:4]
  assert model.display(x).shape == (4, 8, 8, 1) and model.reconstruct(s1, x).shape == (4, 8, 8, 1)
  assert model.features(s1, x).shape == (4, 4 * 4 * 16)


@pytest.mark.parametrize('res,pool5', [(64, 2), (112, 4)])
def test_alexnet_encoder_shapes(res, pool5):
  model = build(Config.make(model='bigan', encoder_resolution=res, alexnet_pool5=True), channels=3)
  assert model.encoder_kind == 'alexnet' and model.resolution == 64
  assert model.data_options()['load_size'] == round(res * 72 / 64)
  E = model.networks()['E']
  x = jnp.zeros((2, res, res, 3))
  v = jax.eval_shape(lambda: E.init(jax.random.PRNGKey(0), x, train=False))
  out, inter = jax.eval_shape(lambda v: E.apply(v, x, train=False, mutable=['intermediates']), v)
  acts = {k: a[0].shape for k, a in inter['intermediates'].items()}
  assert acts['conv1_act'] == (2, res // 4, res // 4, 96) and acts['conv5_act'][-1] == 256
  assert acts['pool5'] == (2, pool5, pool5, 256) and out.shape == (2, 200)
  p = v['params']
  assert p['conv1']['kernel'].shape == (11, 11, 3, 96) and 'bias' not in p['conv1']
  assert set(p['bn1']) == {'scale', 'bias'}                                # BN with learned scale and bias
  assert model.default_feature_layer() == 'pool5'


# -- k-NN ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('metric,sk_metric', [('l2', 'euclidean'), ('cosine', 'cosine')])
def test_knn_matches_sklearn_and_is_chunking_invariant(metric, sk_metric):
  from sklearn.neighbors import KNeighborsClassifier
  rng = np.random.default_rng(0)
  tr, te = rng.normal(size=(200, 6)), rng.normal(size=(77, 6))
  ytr, yte = rng.integers(0, 4, 200), rng.integers(0, 4, 77)
  for k in (1, 3):
    ref = KNeighborsClassifier(k, metric=sk_metric, algorithm='brute').fit(tr, ytr).predict(te)
    for chunk, train_chunk in ((1024, 16384), (10, 7), (1, 1)):
      pred = metrics.knn_predict(tr, ytr, te, k=k, metric=metric, chunk=chunk, train_chunk=train_chunk)
      assert np.array_equal(pred, ref), (k, chunk, train_chunk)
    acc = metrics.knn_accuracy(tr, ytr, te, yte, k=k, metric=metric, chunk=9, train_chunk=31)
    assert np.isclose(acc, np.mean(ref == yte))


def test_extract_pads_to_one_shape():
  shapes = []

  def fn(x):
    shapes.append(x.shape)
    return x.reshape(len(x), -1) * 2

  x = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
  assert np.array_equal(metrics.extract(fn, x, batch_size=3), x * 2) and set(shapes) == {(3, 3)}
  f, y = metrics.extract(fn, [{'image': x[:4], 'label': np.arange(4)}, {'image': x[4:], 'label': np.arange(3)}])
  assert f.shape == (7, 3) and np.array_equal(y, [0, 1, 2, 3, 0, 1, 2])


# -- Table 1 end to end on the embedded digits data ---------------------------------------------------------

@pytest.fixture(scope='module')
def table(tmp_path_factory, data_dir):
  import sys
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'launch'))
  import evaluate
  root = str(tmp_path_factory.mktemp('table1'))
  args = evaluate.parse(['--table=1nn', '--dataset=digits', f'--workroot={root}', '--steps_bigan=12',
                         '--steps_baseline=8', '--hidden=32', '--resolution=8', '--z_dim=8', '--batch_size=32',
                         f'--data_dir={data_dir}', '--sample_every=0', '--log_every=4', '--eval_batch=300'])
  from bigan_jax import table1
  return evaluate, root, table1.table_1nn(args)


def test_table_1nn_trains_and_evaluates_every_method(table, capsys):
  _, root, rows = table
  methods = [r['method'] for r in rows]
  assert methods == ['raw pixels', 'random E', 'BiGAN', 'D', 'LR', 'JLR', 'AE (l2)', 'AE (l1)']
  assert all(0 <= r['accuracy'] <= 100 for r in rows)
  assert rows[0]['accuracy'] > 80            # 1-NN on 8x8 digit pixels is ~95-98%
  assert {r['method']: r['paper'] for r in rows}['BiGAN'] == 97.39
  assert sorted(os.listdir(root)) == ['ae_l1', 'ae_l2', 'bigan', 'jlr', 'lr']


def test_latent_regressor_freezes_the_gans_generator(table):
  from common import checkpoint
  _, root, _ = table
  gan, gan_state, _ = checkpoint.load(os.path.join(root, 'jlr'))
  lr_model, lr_state, cfg = checkpoint.load(os.path.join(root, 'lr'))
  assert cfg.bigan.gan_workdir == os.path.join(root, 'jlr') and set(lr_state.opt_state) == {'E'}
  same = jax.tree_util.tree_map(np.array_equal, jax.device_get(gan_state.params['G']),
                                jax.device_get(lr_state.params['G']))
  assert all(jax.tree_util.tree_leaves(same))     # G copied from the GAN and never updated
  fresh = _init(lr_model)
  assert any(_leaves_moved(fresh.params['E'], jax.device_get(lr_state.params['E'])))


def test_evaluate_knn_cli_on_a_run(table, capsys):
  evaluate, root, rows = table
  assert evaluate.main([f'--workdir={os.path.join(root, "bigan")}', '--eval=knn']) == 0
  out = capsys.readouterr().out
  acc = float(out.strip().split()[-1].rstrip('%'))
  assert np.isclose(acc, {r['method']: r['accuracy'] for r in rows}['BiGAN'], atol=0.01)
  assert evaluate.main([f'--workdir={os.path.join(root, "jlr")}', '--eval=knn', '--net=D', '--metric=cosine',
                        '--layer=fc1_act']) == 0


FASHION_MNIST = '/usr/share/datasets/fashion-mnist'     # Debian: apt-get install dataset-fashion-mnist


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST), reason='needs the Debian dataset-fashion-mnist files')
def test_bigan_features_beat_a_random_encoder_on_fashion_mnist(tmp_path, load_cli):
  """The README's measured claim (about 30 min on 2 cores): 30,000 steps of the MLP BiGAN (Appendix C.1) give
  E(x) a better 1-NN accuracy on the 10k test images than a randomly initialised E, for l2 and cosine."""
  import contextlib
  import io
  import re
  from common import loop
  wd = str(tmp_path / 'bigan')
  loop.train(Config.make(model='bigan', dataset='fashion_mnist', manual_dir=FASHION_MNIST, data_dir=str(tmp_path / 'tfds'),
                    steps=30000, log_every=5000, sample_every=0, checkpoint_every=30000, workdir=wd))
  evaluate = load_cli('evaluate')

  def accuracy(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      assert evaluate.main([f'--workdir={wd}', '--eval=knn', *argv]) == 0
    return float(re.search(r': ([0-9.]+)%', out.getvalue()).group(1))

  for metric in ('l2', 'cosine'):
    random = max(accuracy(f'--metric={metric}', '--random_init', f'--seed={s}') for s in range(3))
    assert accuracy(f'--metric={metric}') > random + 0.5, metric
