"""The FID Inception-V3 in Flax: architecture with random weights, weight-file conversion, parity with pytorch-fid.

Parity with the reference (pytorch-fid's ``InceptionV3``) runs only where pytorch-fid and torchvision are
importable: with random weights always there, with the real FID weights when ``FID_INCEPTION_WEIGHTS`` names the
``pt_inception-2015-12-05-6726825d.pth`` file (or its .npz).
"""
import os

import jax
import numpy as np
import pytest

from common import inception


def test_architecture_output_and_parameter_count():
  variables = inception.abstract_variables()
  pool3, logits = jax.eval_shape(lambda v, x: inception.InceptionV3().apply(v, x), variables,
                                 jax.ShapeDtypeStruct((2, 299, 299, 3), np.float32))
  assert pool3.shape == (2, 2048) and logits.shape == (2, 1008)
  n = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables['params']))
  # torchvision's Inception-V3 without the auxiliary classifier: 23,834,568 with a 1000-way fc; the FID graph's
  # fc is 1008-way.
  assert n == inception.NUM_PARAMS == 23_850_960
  keys = inception.expected_keys()
  assert keys['Conv2d_1a_3x3.conv.weight'] == (32, 3, 3, 3)
  assert keys['Mixed_7c.branch_pool.conv.weight'] == (192, 2048, 1, 1)
  assert keys['Mixed_6e.branch7x7dbl_5.conv.weight'] == (192, 192, 1, 7)
  assert keys['fc.weight'] == (1008, 2048)
  assert not any('AuxLogits' in k for k in keys)


def test_random_weights_forward_any_input_size():
  # At the smallest input Inception-V3 takes (75x75) to keep the test fast; FID resizes to 299x299.
  net = inception.InceptionNet(inception.random_variables(0), name='inception-random', size=75)
  gray = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 1)).astype(np.float32)
  f = np.asarray(net(gray))          # gray replicated to RGB, resized
  assert f.shape == (2, 2048) and np.all(np.isfinite(f)) and np.all(f >= 0)   # pool3 follows a ReLU
  assert not np.allclose(f[0], f[1])


def test_weights_roundtrip_through_state_dict_and_npz(tmp_path):
  variables = inception.random_variables(1)
  sd = inception.state_dict_from_variables(variables)
  assert set(sd) == set(inception.expected_keys())
  path = str(tmp_path / 'w.npz')
  np.savez(path, **sd, **{'Conv2d_1a_3x3.bn.num_batches_tracked': np.array(0)})   # extra keys are ignored
  back = inception.variables_from_state_dict(inception.read_state_dict(path))
  for a, b in zip(jax.tree_util.tree_leaves(variables), jax.tree_util.tree_leaves(back)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_missing_or_wrong_weights_are_one_line_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='pt_inception-2015-12-05'):
    inception.InceptionNet.from_file(str(tmp_path / 'absent.pth'))
  sd = inception.state_dict_from_variables(inception.random_variables(0))
  del sd['Mixed_5b.branch1x1.conv.weight']
  sd['fc.weight'] = sd['fc.weight'][:1000]
  with pytest.raises(ValueError) as e:
    inception.variables_from_state_dict(sd)
  assert '\n' not in str(e.value) and 'missing' in str(e.value) and 'fc.weight' in str(e.value)


def _pytorch_fid():
  torch = pytest.importorskip('torch')
  try:
    import pytorch_fid.inception as pfi
  except Exception:  # noqa: BLE001 - not installed, or torchvision unusable
    pytest.skip('pytorch-fid (with torchvision) is not importable')
  return torch, pfi


def _reference(state_dict):
  """pytorch-fid's InceptionV3 (pool3 block) holding ``state_dict`` (its download patched out)."""
  torch, pfi = _pytorch_fid()
  tsd = {k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()}
  original = pfi.load_state_dict_from_url
  pfi.load_state_dict_from_url = lambda *a, **k: tsd
  try:
    return pfi.InceptionV3([3]).eval(), torch
  finally:
    pfi.load_state_dict_from_url = original


def _parity(sd, size=40):
  ref, torch = _reference(sd)
  x = np.random.default_rng(0).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
  with torch.no_grad():
    want = ref(torch.from_numpy((x.transpose(0, 3, 1, 2) + 1) / 2))[0][:, :, 0, 0].numpy()
  got = np.asarray(inception.InceptionNet(inception.variables_from_state_dict(sd))(x))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_parity_with_pytorch_fid_random_weights():
  _pytorch_fid()
  rng = np.random.default_rng(2)
  sd = inception.state_dict_from_variables(inception.random_variables(2))
  for k in sd:   # non-trivial batchnorm statistics
    if k.endswith('running_mean'):
      sd[k] = rng.normal(0, 0.1, sd[k].shape).astype(np.float32)
    elif k.endswith('running_var'):
      sd[k] = rng.uniform(0.5, 1.5, sd[k].shape).astype(np.float32)
  _parity(sd)


@pytest.mark.skipif(not os.path.exists(os.environ.get('FID_INCEPTION_WEIGHTS', '/nonexistent')),
                    reason='set FID_INCEPTION_WEIGHTS to the pt_inception-2015-12-05 weights file')
def test_parity_with_pytorch_fid_real_weights():
  _pytorch_fid()
  sd = inception.read_state_dict(os.environ['FID_INCEPTION_WEIGHTS'])
  _parity({k: v for k, v in sd.items() if k in inception.expected_keys()}, size=64)
