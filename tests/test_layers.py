"""Exactness tests for common.layers (ConvTranspose2x / Conv2x vs Flax)."""

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import layers as L

KERNELS = (3, 4, 5)
SIZES = ((4, 4), (7, 7))   # even, odd (non-square: variant tests below)
CIN, COUT, BATCH = 3, 5, 2


def _flax_ref(kind, features, k, use_bias, dtype=None):
  init = nn.initializers.normal(0.02)
  cls = nn.ConvTranspose if kind == 'up' else nn.Conv
  return cls(features, (k, k), strides=(2, 2), padding='SAME', use_bias=use_bias,
             kernel_init=init, dtype=dtype)


def _ours(kind, features, k, use_bias, impl, dtype=None):
  cls = L.ConvTranspose2x if kind == 'up' else L.Conv2x
  return cls(features, kernel_size=k, use_bias=use_bias, impl=impl, dtype=dtype)


def _rand(seed, shape):
  # numpy, not jax.random: avoids compiling a PRNG kernel for every shape.
  return jnp.asarray(np.random.RandomState(seed).standard_normal(shape), jnp.float32)


def _params(k, cin, cout, use_bias, scale=0.3):
  p = {'kernel': scale * _rand(1, (k, k, cin, cout))}
  if use_bias:
    p['bias'] = _rand(2, (cout,))
  return {'params': p}


def _close(a, b, rtol=1e-5):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  scale = max(np.abs(b).max(), 1e-30)
  np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


def _check_equivalence(kind, k, hw, use_bias, impl):
  x = _rand(0, (BATCH, *hw, CIN))
  ref = _flax_ref(kind, COUT, k, use_bias)
  mine = _ours(kind, COUT, k, use_bias, impl)
  # Parameter trees: same structure, shapes and dtypes (abstract init, cheap).
  key = jax.random.key(1)
  shapes_ref = jax.eval_shape(ref.init, key, x)
  shapes_mine = jax.eval_shape(mine.init, key, x)
  assert jax.tree.structure(shapes_mine) == jax.tree.structure(shapes_ref)
  for a, b in zip(jax.tree.leaves(shapes_mine), jax.tree.leaves(shapes_ref)):
    assert a.shape == b.shape and a.dtype == b.dtype == jnp.float32
  params = _params(k, CIN, COUT, use_bias)
  assert jax.tree.structure(params) == jax.tree.structure(shapes_ref)

  ct = _rand(3, jax.eval_shape(ref.apply, params, x).shape)

  @jax.jit
  def run(params, x):   # one compile per case: outputs and VJPs of both modules
    out = []
    for m in (ref, mine):
      y, vjp = jax.vjp(m.apply, params, x)
      out.append((y, vjp(ct)))
    return out

  (y_ref, (gp_ref, gx_ref)), (y, (gp, gx)) = run(params, x)
  if kind == 'up':
    assert y.shape == (BATCH, 2 * hw[0], 2 * hw[1], COUT)
  else:
    assert y.shape == (BATCH, -(-hw[0] // 2), -(-hw[1] // 2), COUT)
  assert y.shape == y_ref.shape
  _close(y, y_ref)
  _close(gx, gx_ref)
  for a, b in zip(jax.tree.leaves(gp), jax.tree.leaves(gp_ref)):
    _close(a, b)


@pytest.mark.parametrize('k,hw,use_bias',
                         list(itertools.product(KERNELS, SIZES, (True, False))))
def test_conv_transpose_subpixel_matches_flax(k, hw, use_bias):
  _check_equivalence('up', k, hw, use_bias, 'subpixel')


@pytest.mark.parametrize('k,hw,use_bias',
                         list(itertools.product(KERNELS, SIZES, (True, False))))
def test_conv2x_subpixel_matches_flax(k, hw, use_bias):
  _check_equivalence('down', k, hw, use_bias, 'subpixel')


@pytest.mark.parametrize('kind', ['up', 'down'])
def test_xla_impl_matches_flax(kind):
  _check_equivalence(kind, 5, (4, 4), True, 'xla')


@pytest.mark.parametrize('kind', ['up', 'down'])
def test_auto_impl_matches_flax(kind):
  """'auto' (lax.platform_dependent; Conv2x's custom_vjp inside the CPU branch): values and VJPs on CPU."""
  _check_equivalence(kind, 5, (7, 7), True, 'auto')


def _jaxpr_text(f, *args):
  return str(jax.make_jaxpr(f)(*args))


def test_auto_is_resolved_at_lowering_not_tracing():
  """'auto' stages a platform_dependent cond (forward and backward); an explicit impl stages no cond."""
  x = _rand(0, (BATCH, 8, 8, 4))
  params = _params(5, 4, COUT, True)
  for cls in (L.ConvTranspose2x, L.Conv2x):
    def loss(p, impl):
      return jnp.sum(cls(COUT, impl=impl).apply(p, x) ** 2)
    auto = _jaxpr_text(jax.grad(functools.partial(loss, impl='auto')), params)
    assert auto.count("branches_platforms=(('cpu',), None)") == 2, cls    # forward cond + backward cond
    assert 'platform_index' in auto
    for impl in ('subpixel', 'xla'):
      assert 'platform_index' not in _jaxpr_text(jax.grad(functools.partial(loss, impl=impl)), params)
  w = _rand(1, (3, 3, 2, 6))
  for impl, has_cond in (('auto', True), ('split', False), ('xla', False)):
    assert ('platform_index' in _jaxpr_text(lambda x, w: L.grouped_conv(x, w, 1, 2, impl), x, w)) == has_cond
  for impl, has_cond in (('auto', True), ('slices', False), ('xla', False)):
    assert ('platform_index' in _jaxpr_text(lambda x: L.max_pool(x, impl=impl), x)) == has_cond


def test_conv2x_forward_mode_needs_xla_impl():
  """Conv2x 'auto' traces its custom_vjp CPU branch on every platform, so jax.jvp needs impl='xla'."""
  x = _rand(0, (BATCH, 8, 8, CIN))
  params = _params(5, CIN, COUT, True)
  jvp = lambda impl: jax.jvp(lambda x: L.Conv2x(COUT, impl=impl).apply(params, x), (x,), (x,))  # noqa: E731
  with pytest.raises(TypeError, match='forward-mode'):
    jvp('auto')
  y, t = jvp('xla')
  _close(t, y - params['params']['bias'])     # linear in x: the tangent along x is y minus the bias


def _check_fn(f, f_ref, x, w):
  """f(x, w) == f_ref(x, w) and same VJPs (one jit compile)."""
  ct = _rand(2, jax.eval_shape(f_ref, x, w).shape)

  @jax.jit
  def run(x, w):
    return [(y, vjp(ct)) for y, vjp in (jax.vjp(g, x, w) for g in (f, f_ref))]

  (y, g), (y_ref, g_ref) = run(x, w)
  assert y.shape == y_ref.shape
  _close(y, y_ref)
  for a, b in zip(g, g_ref):
    _close(a, b)


@pytest.mark.parametrize('variant', ['fused', 'phase'])
@pytest.mark.parametrize('k', [1, 2, 3, 4, 5, 6, 7])
def test_subpixel_variants_all_kernel_sizes(variant, k):
  f = lambda x, w: L.conv_transpose_2x_subpixel(x, w, variant=variant)
  _check_fn(f, L.conv_transpose_2x_xla, _rand(0, (BATCH, 5, 4, CIN)),
            _rand(1, (k, k, CIN, COUT)))


def test_non_square_kernel():
  x = _rand(0, (BATCH, 5, 4, CIN))
  w = _rand(1, (3, 4, CIN, COUT))
  for variant in ('fused', 'phase'):
    _check_fn(lambda x, w: L.conv_transpose_2x_subpixel(x, w, variant=variant),
              L.conv_transpose_2x_xla, x, w)
  _check_fn(L.conv_2x_subpixel, L.conv_2x_xla, x, w)
  shapes = jax.eval_shape(L.ConvTranspose2x(COUT, (3, 4)).init, jax.random.key(0), x)
  assert shapes['params']['kernel'].shape == (3, 4, CIN, COUT)


@pytest.mark.parametrize('k', [1, 2, 6, 7])
def test_conv2x_subpixel_other_kernel_sizes(k):
  _check_fn(L.conv_2x_subpixel, L.conv_2x_xla, _rand(0, (BATCH, 7, 8, CIN)),
            _rand(1, (k, k, CIN, COUT)))


@pytest.mark.parametrize('kind', ['up', 'down'])
def test_bf16_compute_keeps_f32_params(kind):
  x = _rand(0, (BATCH, 4, 4, CIN))
  mine = _ours(kind, COUT, 5, True, 'subpixel', dtype=jnp.bfloat16)
  ref = _flax_ref(kind, COUT, 5, True, dtype=jnp.bfloat16)
  shapes = jax.eval_shape(mine.init, jax.random.key(1), x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(shapes))
  params = _params(5, CIN, COUT, True)

  @jax.jit
  def run(params, x):
    loss = lambda p: jnp.sum(mine.apply(p, x).astype(jnp.float32) ** 2)
    return mine.apply(params, x), ref.apply(params, x), jax.grad(loss)(params)

  y, y_ref, grads = run(params, x)
  assert y.dtype == jnp.bfloat16
  _close(y.astype(jnp.float32), y_ref.astype(jnp.float32), rtol=2e-2)
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize('kind', ['up', 'down'])
def test_batch_dims_like_flax(kind):
  ref = _flax_ref(kind, COUT, 4, True)
  mine = _ours(kind, COUT, 4, True, 'subpixel')
  params = _params(4, CIN, COUT, True)
  xs = [_rand(0, (4, 4, CIN)), _rand(1, (2, 3, 4, 4, CIN))]  # unbatched, 2 batch dims
  outs = jax.jit(lambda p, xs: [(mine.apply(p, x), ref.apply(p, x)) for x in xs])(params, xs)
  for y, y_ref in outs:
    assert y.shape == y_ref.shape
    _close(y, y_ref)


def test_conv2x_grad_of_grad():
  # Gradient-penalty style reverse-over-reverse through the custom_vjp.
  x = _rand(0, (BATCH, 8, 8, CIN))
  mods = [_ours('down', COUT, 5, True, impl) for impl in ('subpixel', 'xla', 'auto')]
  params = _params(5, CIN, COUT, True)

  def penalty(m):
    def f(p):
      g = jax.grad(lambda x: jnp.sum(jnp.tanh(m.apply(p, x))))(x)
      return jnp.sum(g ** 2)
    return f

  g_sub, g_xla, g_auto = jax.jit(lambda p: [jax.grad(penalty(m))(p) for m in mods])(params)
  for a, b in zip(jax.tree.leaves(g_sub), jax.tree.leaves(g_xla)):
    _close(a, b, rtol=1e-4)
  for a, b in zip(jax.tree.leaves(g_auto), jax.tree.leaves(g_xla)):
    _close(a, b, rtol=1e-4)


def test_auto_impl_resolution():
  assert L.backend_default_impl('cpu') == 'subpixel'
  assert L.backend_default_impl('gpu') == 'xla'
  assert L.backend_default_impl('tpu') == 'xla'
  assert L.backend_default_impl() in ('subpixel', 'xla')
  with pytest.raises(ValueError):
    jax.eval_shape(L.ConvTranspose2x(4, impl='bogus').init, jax.random.key(0),
                   jnp.ones((1, 2, 2, 1)))


def test_init_identical_to_flax():
  # Same init rng -> bit-identical parameters, and the same parameter count.
  x = _rand(0, (BATCH, 4, 4, CIN))
  pairs = [(_flax_ref(kind, COUT, 5, True), _ours(kind, COUT, 5, True, 'subpixel'))
           for kind in ('up', 'down')]
  inits = jax.jit(lambda key: [(r.init(key, x), m.init(key, x)) for r, m in pairs])
  for p_ref, p in inits(jax.random.key(7)):
    assert jax.tree.structure(p) == jax.tree.structure(p_ref)
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(p_ref)):
      assert a.dtype == jnp.float32
      np.testing.assert_array_equal(a, b)
    count = lambda p: sum(a.size for a in jax.tree.leaves(p))
    assert count(p) == count(p_ref) == 5 * 5 * CIN * COUT + COUT


def test_checkpoint_interchange_between_impls():
  x = _rand(0, (BATCH, 4, 4, 8))
  params = _params(5, 8, 16, True)            # e.g. saved from an 'xla' run
  mods = [L.ConvTranspose2x(16, impl=i) for i in ('xla', 'subpixel')]
  ys = jax.jit(lambda p, x: [m.apply(p, x) for m in mods])(params, x)
  _close(ys[1], ys[0])


@pytest.mark.parametrize('impl', ['split', 'auto'])
@pytest.mark.parametrize('groups,stride', [(2, 1), (1, 4), (4, 2)])
def test_grouped_conv_equals_flax_conv(groups, stride, impl):
  """GroupedConv('split', and 'auto' under jit) is nn.Conv(feature_group_count=groups): same parameters, outputs
  and gradients."""
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 9, 9, 8))
  ref = nn.Conv(12, (3, 3), strides=(stride, stride), padding='SAME', use_bias=False, feature_group_count=groups,
                kernel_init=nn.initializers.normal(0.02))
  ours = L.GroupedConv(12, 3, strides=stride, groups=groups, impl=impl)
  v_ref, v = ref.init(jax.random.PRNGKey(1), x), ours.init(jax.random.PRNGKey(1), x)
  assert v['params']['kernel'].shape == (3, 3, 8 // groups, 12)
  np.testing.assert_array_equal(v['params']['kernel'], v_ref['params']['kernel'])
  ct = jax.random.normal(jax.random.PRNGKey(2), ref.apply(v_ref, x).shape)
  y_ref, vjp_ref = jax.vjp(lambda v, x: ref.apply(v, x), v_ref, x)
  y, vjp = jax.vjp(jax.jit(lambda v, x: ours.apply(v, x)), v, x)   # jit: 'auto' stages its platform cond
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(vjp(ct)), jax.tree_util.tree_leaves(vjp_ref(ct))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('impl', ['slices', 'auto'])
@pytest.mark.parametrize('size', [16, 9, 4])
def test_max_pool_slices_equals_flax(size, impl):
  x = jax.random.normal(jax.random.PRNGKey(size), (2, size, size, 5))
  ref = lambda x: nn.max_pool(x, (3, 3), strides=(2, 2), padding='SAME')     # noqa: E731
  y_ref, vjp_ref = jax.vjp(ref, x)
  y, vjp = jax.vjp(jax.jit(lambda x: L.max_pool(x, 3, 2, impl=impl)), x)
  np.testing.assert_array_equal(y, y_ref)
  ct = jax.random.normal(jax.random.PRNGKey(1), y.shape)
  np.testing.assert_allclose(vjp(ct)[0], vjp_ref(ct)[0], rtol=1e-6, atol=1e-6)   # no ties in random data
