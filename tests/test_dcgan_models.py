"""Pins the DCGAN architecture guidelines of section 3 (and Figure 1) on the Flax modules."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from common.config import Config
from common.model import DataFacts
from common.state import count_params
from common import networks as models
from dcgan_jax.dcgan import DCGAN


def _init(res=64, width=128, k=5, channels=3, num_classes=0, bn_scale_bias=True):
  G = models.Generator(resolution=res, width=width, kernel_size=k, channels=channels, num_classes=num_classes,
                       bn_scale_bias=bn_scale_bias)
  D = models.Discriminator(resolution=res, width=width, kernel_size=k, num_classes=num_classes,
                           bn_scale_bias=bn_scale_bias)
  y = jnp.zeros((2,), jnp.int32)
  vg = jax.eval_shape(lambda: G.init(jax.random.PRNGKey(0), jnp.zeros((2, 100)), y, train=False))
  vd = jax.eval_shape(lambda: D.init(jax.random.PRNGKey(0), jnp.zeros((2, res, res, channels)), y, train=False))
  return G, D, vg, vd


def test_paper_64x64_generator_layers_and_shapes():
  G, _, vg, _ = _init()
  p = vg['params']
  # z (100) projected to 4x4x1024 by one matrix multiply, no bias (batchnorm follows).
  assert p['project']['kernel'].shape == (100, 4 * 4 * 1024) and 'bias' not in p['project']
  # Four fractionally-strided 5x5 convolutions: 1024 -> 512 -> 256 -> 128 -> 3.
  assert [p[f'conv{i}']['kernel'].shape for i in range(1, 5)] == [
      (5, 5, 1024, 512), (5, 5, 512, 256), (5, 5, 256, 128), (5, 5, 128, 3)]
  # Batchnorm after the projection and every hidden conv, not on the output layer.
  assert sorted(k for k in p if 'bn' in k) == ['bn1', 'bn2', 'bn3', 'project_bn']
  assert 'bias' in p['conv4'] and all('bias' not in p[f'conv{i}'] for i in (1, 2, 3))
  # No other layers: no fully connected hidden layer, no pooling parameters.
  assert set(p) == {'project', 'project_bn', 'conv1', 'conv2', 'conv3', 'conv4', 'bn1', 'bn2', 'bn3'}


def test_paper_64x64_discriminator_layers():
  _, D, _, vd = _init()
  p = vd['params']
  assert [p[f'conv{i}']['kernel'].shape for i in range(1, 5)] == [
      (5, 5, 3, 128), (5, 5, 128, 256), (5, 5, 256, 512), (5, 5, 512, 1024)]
  # No batchnorm on D's input layer; batchnorm on every other conv.
  assert 'bn1' not in p and all(f'bn{i}' in p for i in (2, 3, 4))
  # Last conv (4x4x1024) flattened into a single output.
  assert p['logit']['kernel'].shape == (4 * 4 * 1024, 1)
  assert set(p) == {'conv1', 'conv2', 'conv3', 'conv4', 'bn2', 'bn3', 'bn4', 'logit'}


def test_parameter_count_of_paper_defaults():
  # The section-3 networks with biases and per-channel projection batchnorm (this project before it followed
  # the authors' code; tests/test_fidelity.py counts the authors' version).
  legacy = Config.make(resolution=64, layer_bias=True, project_bn='channel')
  s = jax.eval_shape(DCGAN.create(legacy, DataFacts(channels=3)).init, jax.random.PRNGKey(0))
  # G: 100*16384 + BN(1024) + 5*5*(1024*512 + 512*256 + 256*128 + 128*3) + 3 + BN(512, 256, 128)
  g = 100 * 16384 + 2 * 1024 + 25 * (1024 * 512 + 512 * 256 + 256 * 128 + 128 * 3) + 3 + 2 * (512 + 256 + 128)
  d = 25 * (3 * 128 + 128 * 256 + 256 * 512 + 512 * 1024) + 128 + 2 * (256 + 512 + 1024) + 16384 + 1
  assert count_params(s.params['G']) == g == 18_855_043
  assert count_params(s.params['D']) == d == 17_232_897


@pytest.mark.parametrize('res,n', [(8, 1), (16, 2), (32, 3), (64, 4), (128, 5)])
def test_shapes_at_every_resolution(res, n):
  G = models.Generator(resolution=res, width=8, channels=3)
  D = models.Discriminator(resolution=res, width=8)
  z = jax.random.uniform(jax.random.PRNGKey(0), (2, 100), minval=-1, maxval=1)
  vg = G.init(jax.random.PRNGKey(1), z, train=False)
  x, inter = G.apply(vg, z, train=False, mutable=['intermediates'])
  assert x.shape == (2, res, res, 3)
  acts = inter['intermediates']
  assert [acts[k + '_act'][0].shape[1] for k in ['project'] + [f'conv{i}' for i in range(1, n)]] == [4 * 2 ** i for i in range(n)]
  vd = D.init(jax.random.PRNGKey(2), x, train=False)
  logit, dint = D.apply(vd, x, train=False, mutable=['intermediates'])
  assert logit.shape == (2,)
  assert [dint['intermediates'][f'conv{i}_act'][0].shape[1] for i in range(1, n + 1)] == [res // 2 ** i for i in range(1, n + 1)]


@pytest.mark.parametrize('res', [0, 12, 48, 100])
def test_unsupported_resolution_is_a_clear_error(res):
  with pytest.raises(ValueError, match=f'resolution {res} is not supported'):
    models.num_layers(res)


def test_activations_relu_in_g_tanh_output_leaky_in_d():
  G = models.Generator(resolution=16, width=8, channels=1)
  D = models.Discriminator(resolution=16, width=8)
  z = jax.random.uniform(jax.random.PRNGKey(0), (16, 100), minval=-1, maxval=1)
  vg = G.init(jax.random.PRNGKey(1), z, train=False)
  # Scale the output layer up so tanh saturates: outputs stay strictly inside [-1, 1].
  vg = jax.tree_util.tree_map(lambda x: x, vg)
  vg['params']['conv2']['kernel'] = vg['params']['conv2']['kernel'] * 1e3
  x, inter = G.apply(vg, z, train=True, mutable=['intermediates', 'batch_stats'])
  assert float(jnp.abs(x).max()) <= 1.0 and float(jnp.abs(x).max()) > 0.99
  for name in ('project', 'conv1'):
    h = inter['intermediates'][name + '_act'][0]
    assert float(h.min()) == 0.0 and float(h.max()) > 0  # ReLU: non-negative with exact zeros
  vd = D.init(jax.random.PRNGKey(2), x, train=False)
  _, dint = D.apply(vd, x, train=True, mutable=['intermediates', 'batch_stats'])
  h = dint['intermediates']['conv1_act'][0]
  pre = h / jnp.where(h < 0, 0.2, 1.0)
  assert float(h.min()) < 0 and np.allclose(np.asarray(jnp.where(pre < 0, 0.2 * pre, pre)), np.asarray(h))


def test_init_statistics_are_n_0_002():
  s = DCGAN.create(Config.make(resolution=64), DataFacts(channels=3)).init(jax.random.PRNGKey(0))
  for net in ('G', 'D'):
    kernels = [v['kernel'] for v in s.params[net].values() if 'kernel' in v]
    flat = np.concatenate([np.asarray(k).ravel() for k in kernels])
    assert abs(flat.mean()) < 1e-4 and abs(flat.std() - 0.02) < 5e-4
    biases = [v['bias'] for k, v in s.params[net].items() if 'bias' in v and 'bn' not in k]
    assert all(float(jnp.abs(b).max()) == 0.0 for b in biases)


def test_conditional_and_parameter_free_batchnorm():
  _, _, vg, vd = _init(res=32, width=16, channels=1, num_classes=10, bn_scale_bias=False)
  assert vg['params']['project']['kernel'].shape == (110, 4 * 4 * 64)   # z ++ one-hot(y)
  assert vd['params']['conv1']['kernel'].shape == (5, 5, 11, 16)        # image ++ one-hot planes
  assert not any('bn' in k for k in vg['params']) and not any('bn' in k for k in vd['params'])
  assert 'project_bn' in vg['batch_stats'] and 'bn2' in vd['batch_stats']


def test_conditional_generator_depends_on_label():
  G = models.Generator(resolution=8, width=8, channels=1, num_classes=10)
  z = jnp.zeros((2, 100)) + 0.3
  v = G.init(jax.random.PRNGKey(0), z, jnp.array([0, 1]), train=False)
  x = G.apply(v, z, jnp.array([0, 1]), train=False)
  assert not np.allclose(x[0], x[1])


def test_drop_mask_zeroes_feature_maps_and_changes_output():
  G = models.Generator(resolution=16, width=8, channels=1)
  z = jax.random.uniform(jax.random.PRNGKey(0), (4, 100), minval=-1, maxval=1)
  v = G.init(jax.random.PRNGKey(1), z, train=False)
  mask = jnp.zeros((8,)).at[jnp.array([0, 3])].set(1.0)
  x0 = G.apply(v, z, train=False)
  x1, inter = G.apply(v, z, train=False, drop={'conv1': mask}, mutable=['intermediates'])
  h = inter['intermediates']['conv1_act'][0]
  assert float(jnp.abs(h[..., 0]).max()) == 0.0 and float(jnp.abs(h[..., 3]).max()) == 0.0
  assert not np.allclose(x0, x1)
