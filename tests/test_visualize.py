"""Guided backpropagation (DCGAN 6.2, Figure 5) and filter pictures (BiGAN Figure 3), and their CLI."""
import contextlib
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from common import visualize as vis
from common.networks import Discriminator, Generator


def test_guided_activations_follow_the_rule():
  x = jnp.array([1.0, 2.0, -1.0, 0.5, -3.0])
  g = jnp.array([1.0, -2.0, 3.0, -1.0, -1.0])
  for f, gf in ((jax.nn.relu, vis.guided_relu), (lambda v: jax.nn.leaky_relu(v, 0.2), lambda v: vis.guided_leaky_relu(v, 0.2))):
    y, vjp = jax.vjp(gf, x)
    np.testing.assert_array_equal(y, f(x))                                  # forward unchanged
    np.testing.assert_array_equal(vjp(g)[0], [1.0, 0.0, 0.0, 0.0, 0.0])     # g * [x > 0] * [g > 0]


def test_guided_rewrites_relus_inside_any_function():
  """h -> W2 relu(h) -> leaky(.) -> sum with mixed-sign weights: guided gradients at every ReLU input are >= 0
  and differ from the plain gradients; the forward value is unchanged; jit and vmap compose."""
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  w2 = jax.random.normal(k1, (6, 6))
  w3 = jax.random.normal(k2, (6,))

  def f(h):
    return jnp.sum(w3 * nn.leaky_relu(nn.relu(h) @ w2, 0.2))

  h = jax.random.normal(jax.random.PRNGKey(1), (6,))
  assert vis.guided(f)(h) == f(h)
  plain, guided = jax.grad(f)(h), jax.grad(vis.guided(f))(h)
  assert np.all(np.asarray(guided) >= 0) and np.any(np.asarray(plain) < 0)
  assert not np.allclose(plain, guided)
  np.testing.assert_allclose(jax.jit(jax.grad(vis.guided(f)))(h), guided, rtol=1e-6)
  hs = jnp.stack([h, -h])
  np.testing.assert_allclose(jax.vmap(jax.grad(vis.guided(f)))(hs)[0], guided, rtol=1e-6)
  # By hand: the guided rule applied layer by layer.
  a = nn.relu(h) @ w2
  r = w3 * ((a > 0) & (w3 > 0))
  r = w2 @ r
  np.testing.assert_allclose(guided, r * ((h > 0) & (r > 0)), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope='module')
def small_d():
  D = Discriminator(resolution=16, width=8)
  x = jax.random.uniform(jax.random.PRNGKey(1), (6, 16, 16, 1), minval=-1, maxval=1)
  return D, jax.jit(lambda k: D.init(k, x, train=False))(jax.random.PRNGKey(0)), x


def test_maximal_response_backprop_on_d(small_d):
  D, variables, x = small_d
  f = vis.layer_fn(D, 'conv2_act')
  acts = np.asarray(f(variables, x))
  np.testing.assert_array_equal(np.asarray(vis.guided(f)(variables, x)), acts)     # same forward, bit for bit
  maps = [0, 3, 5]
  r = vis.maximal_response_backprop(D, variables, x, maps)
  assert r['layer'] == 'conv2_act' and r['gradients'].shape == (3, 16, 16, 1)
  for k, c in enumerate(maps):                             # the argmax over images and positions
    n, i, j = np.unravel_index(np.argmax(acts[..., c]), acts.shape[:3])
    assert (r['image'][k], r['row'][k], r['col'][k]) == (n, i, j)
    assert r['value'][k] == acts[n, i, j, c]
  plain = vis.maximal_response_backprop(D, variables, x, maps, use_guided=False)
  assert not np.allclose(plain['gradients'], r['gradients'])
  # The gradient of one unit by hand (single image, same unit) equals the batched one.
  n, i, j, c = r['image'][0], r['row'][0], r['col'][0], maps[0]
  one = jax.grad(lambda xi: vis.guided(f)(variables, xi[None])[0, i, j, c])(x[n])
  np.testing.assert_allclose(r['gradients'][0], one, rtol=1e-5, atol=1e-7)
  assert np.abs(vis.gradient_images(r['gradients'])).max() == pytest.approx(1.0)


def test_filter_tiles_counts_and_orientation():
  k = np.random.default_rng(0).normal(size=(5, 5, 3, 7))
  t = vis.filter_tiles(k)
  assert t.shape == (7, 5, 5, 3) and t.min() == -1 and t.max() == 1
  cond = vis.filter_tiles(np.random.default_rng(0).normal(size=(5, 5, 13, 4)), channels=3)   # label channels dropped
  assert cond.shape == (4, 5, 5, 3)
  g = np.zeros((4, 4, 6, 1))
  g[0, 1, 2, 0] = 1.0
  tg = vis.filter_tiles(g, transposed=True)
  assert tg.shape == (6, 4, 4, 1) and tg[2, 3, 2, 0] == 1.0                  # the painted patch: flipped kernel
  dense = vis.filter_tiles(np.zeros((8 * 8 * 1, 10)), channels=1, resolution=8)
  assert dense.shape == (10, 8, 8, 1)


def _params(module, *inputs):
  """Random parameters of the module's shapes (no compilation: shapes come from jax.eval_shape)."""
  shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *inputs, train=False))['params']
  rng = np.random.default_rng(0)
  return jax.tree_util.tree_map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)


def test_network_filters_of_d_g_and_e():
  G = Generator(resolution=16, width=8, channels=3)
  D = Discriminator(resolution=16, width=8)
  pg = _params(G, jnp.zeros((1, 100)))
  pd = _params(D, jnp.zeros((1, 16, 16, 3)))
  pe = {'conv1': {'kernel': np.ones((11, 11, 3, 12))}, 'conv2': {'kernel': np.ones((5, 5, 12, 24))},
        'out': {'kernel': np.ones((96, 50))}}
  f = vis.network_filters({'G': pg, 'D': pd, 'E': pe}, channels=3, resolution=16)
  assert f['D'][0] == 'conv1' and f['D'][1].shape == (8, 5, 5, 3)          # D: F = 8 tiles of k x k x C
  assert f['G'][0] == 'conv2' and f['G'][1].shape == (8, 5, 5, 3)          # G's output conv: Cin = 8 tiles
  assert f['E'][0] == 'conv1' and f['E'][1].shape == (12, 11, 11, 3)
  pic = vis.filters_figure(f)
  assert pic.ndim == 3 and pic.shape[2] == 3
  # Grayscale 16x16 with width 8: G's projection (z, 4*4*16) has as many outputs as an image has pixels; the
  # output conv is still the one shown.
  g1 = Generator(resolution=16, width=8, channels=1)
  p1 = _params(g1, jnp.zeros((1, 100)))
  assert p1['project']['kernel'].shape[1] == 16 * 16
  assert vis.network_filters({'G': p1}, channels=1, resolution=16)['G'][0] == 'conv2'


def test_cli_guided_backprop_and_filters(tiny_dcgan_run, tmp_path, load_cli):
  cli = load_cli('visualize')
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert cli.main([f'--workdir={tiny_dcgan_run}', '--what=guided_backprop', '--maps=0,1,2', '--num_images=32',
                     f'--out={tmp_path / "guided.png"}']) == 0
    assert cli.main([f'--workdir={tiny_dcgan_run}', '--what=filters', f'--out={tmp_path / "filters.png"}']) == 0
  assert 'conv2_act' in out.getvalue() and 'D conv1 (16)' in out.getvalue()
  from PIL import Image
  for name in ('guided', 'filters'):
    assert Image.open(tmp_path / f'{name}.png').size[0] > 64
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    assert cli.main([f'--workdir={tiny_dcgan_run}', '--what=guided_backprop', '--maps=999',
                     f'--out={tmp_path / "x.png"}']) == 1
  assert 'maps' in err.getvalue()
