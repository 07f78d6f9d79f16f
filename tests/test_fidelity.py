"""The fidelity ledger (docs/fidelity.md), pinned: every default the ledger records for DCGAN and BiGAN, as the
config resolves it and as the networks and the step behave. A default that moves fails here first."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import parallel, registry
from common.config import Config
from common.gan import lr_schedule
from common.model import DataFacts


def _build(facts=DataFacts(1, 10), **flags):
  return registry.build(Config.make(**flags), facts)


def _resolved(model, section='model'):
  return getattr(model.config, section)


def _leaf_paths(tree):
  return ['/'.join(str(getattr(k, 'key', k)) for k in path) for path, _ in
          jax.tree_util.tree_flatten_with_path(tree)[0]]


# -- DCGAN: the paper where it speaks, Newmu/dcgan_code where it does not -------------------------------------

DCGAN_DEFAULTS = dict(variant='paper', resolution=64, z_dim=100, width=128, kernel_size=5, lr=2e-4, beta1=0.5,
                      weight_decay=1e-5, layer_bias=False, bn_scale_init='normal', bn_scale_bias=True,
                      project_bn='unit', z_prior='uniform', lr_decay='none', update_order='alternate',
                      sample_bn='batch', bn_momentum=0.9, bn_epsilon=1e-5)
CDCGAN_DEFAULTS = dict(variant='mnist', resolution=28, z_dim=100, width=64, hidden=1024, weight_decay=2.5e-5,
                       lr_decay='linear', bn_scale_bias=False, sample_bn='batch', update_order='alternate')
BIGAN_MLP_DEFAULTS = dict(z_dim=50, resolution=28, hidden=1024, lr=2e-4, beta1=0.5, weight_decay=2.5e-5,
                          layer_bias=False, bn_scale_init='ones', lr_decay='exponential', sample_bn='running')
BIGAN_SECTION_DEFAULTS = dict(architecture='mlp', data_range='unit', encoder_output='squash', z_into_d='after_first',
                              z_into_g=True, g_first_bn=False, d_logit_init='normal', lr_final=2e-6, jlr_weight=0.25)


@pytest.mark.parametrize('name,flags,section,expected', [
    ('dcgan', {}, 'model', DCGAN_DEFAULTS),
    ('cdcgan', {}, 'model', CDCGAN_DEFAULTS),
    ('bigan', {}, 'model', BIGAN_MLP_DEFAULTS),
    ('bigan', {}, 'bigan', BIGAN_SECTION_DEFAULTS),
    ('bigan', {'dataset': 'cifar10'}, 'bigan', dict(architecture='conv', data_range='symmetric', encoder='alexnet',
                                                   alexnet_pool5=False, encoder_output='squash')),
    ('joint_latent_regressor', {}, 'bigan', dict(jlr_weight=0.25, encoder_output='squash')),
])
def test_resolved_defaults_are_the_ledgers(name, flags, section, expected):
  facts = DataFacts(3, 10) if flags.get('dataset') == 'cifar10' else DataFacts(1, 10)
  model = _build(facts, model=name, **flags)
  got = {k: getattr(_resolved(model, section), k) for k in expected}
  assert got == expected


def test_bigan_conv_z_dim_and_augmentation():
  model = _build(DataFacts(3, 10), model='bigan')
  assert model.config.model.z_dim == 200 and model.config.data.augment is True     # paper appendix C


def test_dcgan_has_no_layer_biases_and_normal_bn_scale():
  model = _build(model='dcgan', resolution=16, width=8)
  state = model.init(jax.random.PRNGKey(0))
  for net in ('G', 'D'):
    paths = _leaf_paths(state.params[net])
    # Biases only as batchnorm shifts (the authors' layers have none).
    assert all('bn' in p.split('/')[0] for p in paths if p.endswith('bias')), paths
    scales = np.concatenate([np.ravel(v) for p, v in zip(paths, jax.tree_util.tree_leaves(state.params[net]))
                             if p.endswith('scale')])
    assert 0.9 < scales.mean() < 1.1 and 0.005 < scales.std() < 0.05          # N(1, 0.02), not ones
  assert tuple(state.batch_stats['G']['project_bn']['mean'].shape) == (4 * 4 * 16,)   # per unit, not per channel
  legacy = _build(model='dcgan', resolution=16, width=8, layer_bias=True, bn_scale_init='ones', project_bn='channel')
  s = legacy.init(jax.random.PRNGKey(0))
  assert any(p.endswith('bias') and 'bn' not in p for p in _leaf_paths(s.params['D']))
  assert tuple(s.batch_stats['G']['project_bn']['mean'].shape) == (16,)


def test_dcgan_weight_decay_reaches_every_parameter():
  """With zero gradients Adam's first step is -lr * sign(weight_decay * p): every parameter moves."""
  model = _build(model='dcgan', resolution=16, width=8)
  params = model.init(jax.random.PRNGKey(0)).params['D']
  tx = model.optimizers()['D']
  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  moved = [bool(np.any(np.asarray(u) != 0)) for u, p in zip(jax.tree_util.tree_leaves(updates),
                                                              jax.tree_util.tree_leaves(params))
           if np.any(np.asarray(p) != 0)]
  assert moved and all(moved)
  off = _build(model='dcgan', resolution=16, width=8, weight_decay=0.0).optimizers()['D']
  updates, _ = off.update(zeros, off.init(params), params)
  assert all(not np.any(np.asarray(u)) for u in jax.tree_util.tree_leaves(updates))


def _step(model, image_seed):
  rng = np.random.default_rng(image_seed)
  r, c = model.resolution, model.channels
  batch = {'image': jnp.asarray(rng.uniform(-1, 1, (8, r, r, c)), jnp.float32),
           'label': jnp.asarray(rng.integers(0, 10, 8), jnp.int32)}
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = model.init(jax.random.PRNGKey(0))
  new, _ = parallel.data_parallel(model.train_step, mesh)(state, parallel.global_batch(mesh, batch))
  return jax.device_get(new)


def test_alternate_update_order_g_before_d_and_joint_order_after():
  """'alternate' (the authors' loop) updates G against the current D, so G's new weights do not depend on the
  real batch; 'joint' (PyTorch's example) updates G against the D just trained on it, so they do."""
  for order, depends in (('alternate', False), ('joint', True)):
    model = _build(model='dcgan', resolution=16, width=8, z_dim=8, batch_size=8, update_order=order)
    a, b = _step(model, 0), _step(model, 1)
    same = all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a.params['G']),
                                                    jax.tree_util.tree_leaves(b.params['G'])))
    assert same is not depends, order
    assert not all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a.params['D']),
                                                        jax.tree_util.tree_leaves(b.params['D'])))


def test_dcgan_samples_with_batch_statistics_by_default():
  model = _build(model='dcgan', resolution=16, width=8, z_dim=8)
  state = model.init(jax.random.PRNGKey(0))
  z = jax.random.uniform(jax.random.PRNGKey(1), (6, 8), minval=-1, maxval=1)
  default = model.generate(state, z)
  np.testing.assert_array_equal(default, model.generate(state, z, use_running_average=False))
  assert not np.allclose(default, model.generate(state, z, use_running_average=True))
  running = _build(model='dcgan', resolution=16, width=8, z_dim=8, sample_bn='running')
  np.testing.assert_array_equal(running.generate(state, z), model.generate(state, z, use_running_average=True))


def test_cdcgan_mnist_network_is_the_authors():
  """The authors' conditional MNIST net: y into every layer, 28x28, sigmoid G ([0, 1] inside, [-1, 1] out)."""
  model = _build(model='cdcgan')
  state = model.init(jax.random.PRNGKey(0))
  g = {p: v.shape for p, v in zip(_leaf_paths(state.params['G']), jax.tree_util.tree_leaves(state.params['G']))}
  d = {p: v.shape for p, v in zip(_leaf_paths(state.params['D']), jax.tree_util.tree_leaves(state.params['D']))}
  assert g['fc1/kernel'] == (100 + 10, 1024) and g['fc2/kernel'] == (1024 + 10, 7 * 7 * 128)
  assert d['fc3/kernel'][1] == 1024 and d['logit/kernel'] == (1024 + 10, 1)
  assert all(not p.endswith('bias') for p in list(g) + list(d))         # parameter-free BN, no biases
  z = jax.random.uniform(jax.random.PRNGKey(1), (4, 100), minval=-1, maxval=1)
  x = model.generate(state, z, jnp.arange(4))
  assert x.shape == (4, 28, 28, 1) and float(x.min()) >= -1 and float(x.max()) <= 1
  assert model.data_range == 'unit'


def test_imagenet32_discriminator_has_the_papers_28672_features():
  """Section 5.1: the ImageNet-32 D's conv features, max-pooled to 4x4 per layer, are 28,672 numbers."""
  model = _build(DataFacts(3, 10), model='dcgan', variant='imagenet32')
  state = model.init(jax.random.PRNGKey(0))
  x = jnp.zeros((2, 32, 32, 3))
  f = model.features(state, x, 'D')
  assert f.shape == (2, 28672)
  with pytest.raises(ValueError, match='--variant=imagenet32 makes 32x32'):
    _build(DataFacts(3, 10), model='dcgan', variant='imagenet32', resolution=64)


def test_lr_schedules():
  lin = lr_schedule(2e-4, 100, 'linear')
  assert float(lin(0)) == float(lin(50)) == pytest.approx(2e-4) and float(lin(100)) == pytest.approx(0.0)
  assert float(lin(75)) == pytest.approx(1e-4)
  exp = lr_schedule(2e-4, 100, 'exponential', final=2e-6)
  assert float(exp(50)) == pytest.approx(2e-4) and float(exp(100)) == pytest.approx(2e-6, rel=1e-3)


def test_authors_parameter_count_of_the_64px_dcgan():
  """G (z 100 -> 4x4x1024 -> ... -> 64x64x3, 5x5 kernels, no biases, BN gain and bias): the count from the
  shapes in section 3 / Figure 1."""
  model = _build(DataFacts(3, 10), model='dcgan')
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  n = sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(shapes.params['G']))
  conv = 25 * (1024 * 512 + 512 * 256 + 256 * 128 + 128 * 3)
  project = 100 * 4 * 4 * 1024
  bn = 2 * (4 * 4 * 1024 + 512 + 256 + 128)
  assert n == conv + project + bn


def test_cdcgan_at_another_resolution_uses_the_conv_networks():
  model = _build(model='cdcgan', resolution=16, width=8)
  assert model.config.model.variant == 'paper' and model.resolution == 16
  with pytest.raises(ValueError, match='--variant=mnist makes 28x28'):
    _build(model='cdcgan', variant='mnist', resolution=16)
