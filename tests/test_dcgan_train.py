"""The DCGAN train step: purity, what each update touches, losses, and data-parallel equivalence."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common import parallel
from common.config import Config
from common.gan import bce
from common.model import DataFacts
from dcgan_jax.dcgan import DCGAN

CFG = Config.make(resolution=16, width=8, kernel_size=5, batch_size=16, z_dim=16)


def _dcgan(config, channels=1, num_classes=0):
  """The DCGAN of ``config`` (conditional with classes), its defaults resolved as the registry does."""
  if num_classes:
    return DCGAN.create_conditional(config, DataFacts(channels, num_classes))
  return DCGAN.create(config, DataFacts(channels))


def _batch(n=16, res=16, c=1, seed=0):
  rng = np.random.default_rng(seed)
  return {'image': rng.uniform(-1, 1, (n, res, res, c)).astype(np.float32),
          'label': rng.integers(0, 10, n).astype(np.int32)}


def _run(model, devices, steps=2, seed=0):
  mesh = parallel.make_mesh(devices)
  state = jax.jit(model.init, out_shardings=parallel.replicated(mesh))(jax.random.PRNGKey(seed))
  step = parallel.data_parallel(model.train_step, mesh)
  out = []
  for i in range(steps):
    state, m = step(state, parallel.global_batch(mesh, _batch(seed=i)))
    out.append(jax.device_get(m))
  return jax.device_get(state), out


def test_one_step_updates_g_and_d_and_counts():
  model = _dcgan(CFG)
  s0 = jax.device_get(model.init(jax.random.PRNGKey(0)))
  s1, (m,) = _run(model, jax.devices()[:1], steps=1)
  assert int(s1.step) == 1 and np.array_equal(s1.key, s0.key)   # base key fixed; fold_in(step) per step
  for net in ('G', 'D'):
    moved = jax.tree_util.tree_map(lambda a, b: not np.allclose(a, b), s0.params[net], s1.params[net])
    assert all(jax.tree_util.tree_leaves(moved)), net
    assert int(optax.tree_utils.tree_get(s1.opt_state[net], 'count')) == 1    # Adam's step count
  # Batchnorm running statistics were updated in both networks.
  assert not np.allclose(s0.batch_stats['G']['project_bn']['mean'], s1.batch_stats['G']['project_bn']['mean'])
  assert not np.allclose(s0.batch_stats['D']['bn2']['var'], s1.batch_stats['D']['bn2']['var'])
  assert set(m) >= {'d_loss', 'g_loss', 'd_real', 'd_fake'} and all(np.isfinite(v) for v in m.values())


def test_step_is_pure_and_deterministic():
  model = _dcgan(CFG)
  a, ma = _run(model, jax.devices()[:1])
  b, mb = _run(model, jax.devices()[:1])
  assert ma == mb
  assert all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.array_equal, a.params, b.params)))
  c, mc = _run(model, jax.devices()[:1], seed=1)
  assert mc != ma


def test_losses_are_the_papers():
  # D: -log D(x) - log(1 - D(G(z))); G: non-saturating -log D(G(z)).
  logits = jnp.array([0.3, -1.2])
  assert np.isclose(bce(logits, 1.0), -jnp.log(jax.nn.sigmoid(logits)).mean(), atol=1e-6)
  assert np.isclose(bce(logits, 0.0), -jnp.log(1 - jax.nn.sigmoid(logits)).mean(), atol=1e-6)


def test_adam_is_papers():
  model = _dcgan(Config.make())
  assert (CFG.model.lr, CFG.model.beta1, CFG.model.beta2, Config.make().loop.batch_size) == (2e-4, 0.5, 0.999, 128)
  tx = model.optimizers()['G']
  p = {'w': jnp.ones(3)}
  upd, _ = tx.update({'w': jnp.ones(3)}, tx.init(p), p)
  ref, _ = optax.adam(2e-4, b1=0.5).update({'w': jnp.ones(3)}, optax.adam(2e-4, b1=0.5).init(p), p)
  assert np.allclose(upd['w'], ref['w'])


def test_latent_is_uniform_minus_one_one():
  from common.gan import sample_z
  z = np.asarray(sample_z(jax.random.PRNGKey(0), 4096, 100))
  assert z.shape == (4096, 100) and z.min() >= -1 and z.max() <= 1
  assert abs(z.mean()) < 0.01 and abs(z.var() - 1 / 3) < 0.01


@pytest.mark.parametrize('conditional', [False, True])
def test_eight_devices_equal_one_device(conditional):
  """The same global batch on 8 devices (synced batchnorm, pmean gradients) equals 1 device."""
  assert jax.device_count() >= 8, 'conftest sets 8 simulated CPU devices'
  model = _dcgan(CFG, 1, 10 if conditional else 0)
  s1, m1 = _run(model, jax.devices()[:1], steps=3)
  s8, m8 = _run(model, jax.devices()[:8], steps=3)
  for a, b in zip(m1, m8):
    for k in a:
      assert np.isclose(a[k], b[k], rtol=1e-4, atol=1e-5), (k, a[k], b[k])
  close = jax.tree_util.tree_map(lambda a, b: np.allclose(a, b, rtol=1e-3, atol=1e-5),
                                 (s1.params, s1.batch_stats), (s8.params, s8.batch_stats))
  assert all(jax.tree_util.tree_leaves(close))


def test_sample_range_and_running_vs_batch_statistics():
  model = _dcgan(CFG)
  s, _ = _run(model, jax.devices()[:1], steps=2)
  x = model.sample(s, jax.random.PRNGKey(3), 8)
  assert x.shape == (8, 16, 16, 1) and float(jnp.abs(x).max()) <= 1.0
  # Running statistics: an image depends only on its own z.
  z = jax.random.uniform(jax.random.PRNGKey(4), (8, 16), minval=-1, maxval=1)
  a = model.generate(s, z, use_running_average=True)
  b = model.generate(s, z[:3], use_running_average=True)
  assert np.allclose(a[:3], b, atol=1e-5)
  c = model.generate(s, z, use_running_average=False)
  assert not np.allclose(a, c)
  # The default is the run's --sample_bn: the batch's statistics for DCGAN (the authors' sampling).
  assert np.array_equal(np.asarray(model.generate(s, z)), np.asarray(c))


def test_bfloat16_compute_keeps_float32_state_and_trains():
  model = _dcgan(CFG.replace(dtype='bfloat16'))
  s0 = jax.device_get(model.init(jax.random.PRNGKey(0)))
  s, ms = _run(model, jax.devices()[:1], steps=4)
  leaves = jax.tree_util.tree_leaves((s.params, s.batch_stats, s.opt_state))
  assert all(x.dtype in (np.float32, np.int32) for x in leaves if hasattr(x, 'dtype'))
  assert all(np.isfinite(v) for m in ms for v in m.values())
  assert ms[-1]['d_acc'] != ms[0]['d_acc'] or ms[-1]['d_loss'] != ms[0]['d_loss']
  moved = jax.tree_util.tree_map(lambda a, b: not np.allclose(a, b), s0.params, s.params)
  assert all(jax.tree_util.tree_leaves(moved))
  # The convolutions really ran in bf16: outputs differ from the float32 model's on the same params.
  f32 = _dcgan(CFG)
  z = jax.random.uniform(jax.random.PRNGKey(1), (4, 16), minval=-1, maxval=1)
  assert not np.array_equal(np.asarray(model.generate(s, z)), np.asarray(f32.generate(s, z)))
