"""``jax.export`` of the train steps: one program per platform, lowered here without those devices.

What is exported: ``parallel.data_parallel(model.train_step, mesh)`` on a 1-device mesh, i.e. the
jit(shard_map) that training runs (donation off), so the collectives over the 'data' axis (synced batchnorm,
pmean) are in the program, as all-reduces over one device. (The per-device body alone cannot be exported: its
axis name would be unbound.) Tiny models: 16x16, width 8, batch 8.

Markers, read from the StableHLO text (``Exported.mlir_module()``):

* a transposed convolution is a ``stablehlo.convolution`` with ``lhs_dilate`` (StableHLO's ``lhs_dilation``),
  which is what ``lax.conv_transpose`` and the input gradient of a strided conv lower to. GPU/TPU programs
  have one in G's upsampling and in D's input gradient; the CPU forms have none (stride-1 phase convs, and
  for weight gradients strided / rhs-dilated convs).
* the CPU forms run under the named scopes ``common.layers.SCOPES``, which end up in op locations (debug
  info, on by default: ``jax_include_debug_info_in_dumps``). The checks assert locations are present, so
  turning debug info off fails loudly instead of passing vacuously.

No lowering for 'cuda', 'rocm' or 'tpu' needs those plugins here (no workaround flag): every primitive in
these steps has a platform-independent lowering, or a per-platform one JAX defines itself (threefry: a
rolled loop on CPU, unrolled elsewhere).
"""
import functools
import re

import jax
import numpy as np
import pytest
from jax import export

from common import layers, parallel, registry
from common.config import Config
from common.model import DataFacts

SMALL = dict(resolution=16, width=8, batch_size=8, z_dim=16)
MODELS = {
    'dcgan': Config.make(model='dcgan', **SMALL),
    'bigan_conv': Config.make(model='bigan', architecture='conv', **SMALL),
    'bigan_mlp': Config.make(model='bigan', architecture='mlp', hidden=32, **SMALL),
}
NON_CPU = ('cuda', 'rocm', 'tpu')
TRANSPOSED_CONV = r'stablehlo\.convolution.*lhs_dilate'


@functools.lru_cache(maxsize=None)
def _setup(name):
  """(model, 1-device mesh, the jitted data-parallel step)."""
  model = registry.build(MODELS[name], DataFacts(channels=1, num_classes=10))
  mesh = parallel.make_mesh(jax.devices()[:1])
  return model, mesh, parallel.data_parallel(model.train_step, mesh, donate=False)


def _batch(n=8, res=16):
  rng = np.random.default_rng(0)
  return {'image': rng.uniform(-1, 1, (n, res, res, 1)).astype(np.float32),
          'label': rng.integers(0, 10, n).astype(np.int32)}


@functools.lru_cache(maxsize=None)
def _exported(name, platforms):
  """The step exported for ``platforms`` from abstract state and batch (lowering only, no device)."""
  model, _, step = _setup(name)
  state = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _batch())
  return export.export(step, platforms=platforms)(state, batch)


def _text(exp):
  text = exp.mlir_module()
  assert 'loc("' in text, 'no debug locations in the StableHLO (jax_include_debug_info_in_dumps off?)'
  return text


def _op_locations(text, op_pattern):
  """Name-stack locations (e.g. 'jit(train_step)/jvp(Generator)/conv1/...') of the ops matching ``op_pattern``."""
  aliases = dict(re.findall(r'^#(loc\d*) = loc\("([^"]*)"', text, re.M))
  out = []
  for line in text.splitlines():
    if re.search(op_pattern, line):
      m = re.search(r'loc\((?:#(loc\d*)|"([^"]*)")', line)
      out.append((aliases.get(m.group(1), '') if m.group(1) else m.group(2)) if m else '')
  return out


def _scope_locations(text, scope):
  return [n for n in re.findall(r'loc\("([^"]*)"', text) if f'/{scope}/' in n]


@pytest.mark.parametrize('platform', NON_CPU)
@pytest.mark.parametrize('name', ['dcgan', 'bigan_conv'])
def test_gpu_tpu_programs_use_native_transposed_convs(name, platform):
  exp = _exported(name, (platform,))
  assert exp.platforms == (platform,) and exp.nr_devices == 1
  text = _text(exp)
  for scope in layers.SCOPES.values():
    assert scope not in text, scope
  where = _op_locations(text, TRANSPOSED_CONV)
  assert any('jvp(Generator)' in n and 'transpose' not in n for n in where), where    # G's upsampling
  assert any(re.search(r'transpose\(jvp\(\w*Discriminator\)\)', n) for n in where), where   # D's input gradient


@pytest.mark.parametrize('name', ['dcgan', 'bigan_conv'])
def test_cpu_program_uses_subpixel_forms(name):
  text = _text(_exported(name, ('cpu',)))
  assert not re.search(TRANSPOSED_CONV, text)
  where = _scope_locations(text, layers.SCOPES['subpixel'])
  assert any('jvp(Generator)' in n and 'transpose' not in n for n in where), where    # G's upsampling
  # Conv2x's custom_vjp input gradient, inside the CPU branch of D's platform_dependent.
  assert any(re.search(r'transpose\(jvp\(\w*Discriminator\)\)', n) for n in where), where


def test_mlp_bigan_exports_for_every_platform():
  for platform in ('cpu',) + NON_CPU:
    text = _text(_exported('bigan_mlp', (platform,)))
    assert 'stablehlo.convolution' not in text and 'stablehlo.dot_general' in text
    assert not any(scope in text for scope in layers.SCOPES.values())


def test_grouped_conv_and_max_pool_per_platform():
  """The AlexNet encoder's layers (only built at >= 64 px, too big here), exported on their own with gradients."""
  conv = layers.GroupedConv(8, 3, strides=1, groups=2)
  x = jax.ShapeDtypeStruct((2, 9, 9, 4), np.float32)
  params = jax.eval_shape(conv.init, jax.random.PRNGKey(0), x)

  def loss(p, x):
    return (layers.max_pool(conv.apply(p, x)) ** 2).sum()
  f = jax.jit(jax.grad(loss, argnums=(0, 1)))
  for platform in ('cpu',) + NON_CPU:
    text = _text(export.export(f, platforms=(platform,))(params, x))
    native = ('feature_group_count = 2', 'stablehlo.reduce_window', 'stablehlo.select_and_scatter')
    scopes = (layers.SCOPES['split'], layers.SCOPES['slices'])
    if platform == 'cpu':
      assert not any(m in text for m in native) and all(_scope_locations(text, s) for s in scopes)
    else:
      assert all(m in text for m in native) and not any(s in text for s in scopes)


def _run_jit_and_exported(name, platforms):
  model, mesh, step = _setup(name)
  state = jax.jit(model.init, out_shardings=parallel.replicated(mesh))(jax.random.PRNGKey(0))
  batch = parallel.global_batch(mesh, _batch())
  return jax.device_get(step(state, batch)), jax.device_get(_exported(name, platforms).call(state, batch))


@pytest.mark.parametrize('name,platforms', [('dcgan', ('cpu',)), ('bigan_conv', ('cpu',)), ('bigan_mlp', ('cpu',)),
                                            ('dcgan', ('cpu', 'cuda', 'tpu'))])
def test_exported_cpu_program_equals_jitted_step(name, platforms):
  """Bitwise: the exported CPU program is the StableHLO jit lowers for CPU, compiled by the same deterministic
  XLA:CPU, so any difference is a real one. A tolerance would hide the one that matters: 'xla' and 'subpixel'
  steps differ only by float rounding. A multi-platform export picks the CPU branch when compiled here."""
  ref, out = _run_jit_and_exported(name, platforms)
  assert jax.tree.structure(out) == jax.tree.structure(ref)
  assert int(out[0].step) == 1
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(ref)):
    np.testing.assert_array_equal(a, b)
