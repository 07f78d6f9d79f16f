"""Adding a model is one class and one ``registry.register`` call: a tiny GAN defined here, in the test file, goes
through train -> resume -> sample -> --eval=knn -> --eval=quality with the public API and the command line,
and nothing else in the project changes."""
import contextlib
import dataclasses
import functools
import io
import os
from typing import Optional

import jax
import jax.numpy as jnp
import optax
import pytest
from flax import linen as nn

from common import checkpoint, features, parallel, registry
from common.config import Config
from common.gan import bce, sample_z
from common.model import DataFacts, check_net, no_encoder
from common.state import TrainState


class TinyG(nn.Module):
  size: int
  channels: int

  @nn.compact
  def __call__(self, z, *, train: bool = True):
    h = nn.relu(nn.Dense(32, name='fc1')(z))
    self.sow('intermediates', 'fc1_act', h)
    x = jnp.tanh(nn.Dense(self.size * self.size * self.channels, name='out')(h))
    return x.reshape(z.shape[0], self.size, self.size, self.channels)


class TinyD(nn.Module):
  @nn.compact
  def __call__(self, x, *, train: bool = True):
    h = nn.leaky_relu(nn.Dense(32, name='fc1')(x.reshape(x.shape[0], -1)), 0.2)
    self.sow('intermediates', 'fc1_act', h)
    return nn.Dense(1, name='logit')(h)[:, 0]


@dataclasses.dataclass(frozen=True)
class TinyGAN:
  """An MLP GAN on 8x8 images: the whole ``common.model.Model`` interface in about 80 lines."""
  config: Config
  channels: int = 1
  num_classes: int = 0

  @classmethod
  def create(cls, config, facts: DataFacts):
    m = config.model
    return cls(config.replace(resolution=m.resolution or 8, z_dim=m.z_dim or 4), facts.channels,
               facts.num_classes or 0)

  z_dim = property(lambda self: self.config.model.z_dim)
  resolution = property(lambda self: self.config.model.resolution)
  conditional = property(lambda self: False)
  has_encoder = property(lambda self: False)
  feature_nets = property(lambda self: ('D',))

  def networks(self, axis_name: Optional[str] = None):
    return {'G': TinyG(self.resolution, self.channels), 'D': TinyD()}

  def data_options(self, eval: bool = False):  # pylint: disable=redefined-builtin
    return dict(resolution=self.resolution, load_size=None, crop='center', flip=False)

  def init(self, key):
    nets, (kg, kd, key) = self.networks(), jax.random.split(key, 3)
    params = {'G': nets['G'].init(kg, jnp.zeros((1, self.z_dim)))['params'],
              'D': nets['D'].init(kd, jnp.zeros((1, self.resolution, self.resolution, self.channels)))['params']}
    tx = optax.adam(self.config.model.lr)
    return TrainState(step=jnp.zeros((), jnp.int32), key=key, params=params, batch_stats={'G': {}, 'D': {}},
                      opt_state={k: tx.init(v) for k, v in params.items()})

  def train_step(self, state, batch):
    nets, tx = self.networks(), optax.adam(self.config.model.lr)
    b = batch['image'].shape[0]
    z = parallel.shard_slice(sample_z(jax.random.fold_in(state.key, state.step), b * parallel.num_shards(),
                                      self.z_dim), b)
    G = lambda p: nets['G'].apply({'params': p}, z)  # noqa: E731
    D = lambda p, x: nets['D'].apply({'params': p}, x)  # noqa: E731
    d_loss, gd = jax.value_and_grad(lambda p: bce(D(p, batch['image']), 1.) + bce(D(p, G(state.params['G'])), 0.))(
        state.params['D'])
    g_loss, gg = jax.value_and_grad(lambda p: bce(D(state.params['D'], G(p)), 1.))(state.params['G'])
    grads = parallel.pmean({'D': gd, 'G': gg})
    params, opt = {}, {}
    for k in ('G', 'D'):
      upd, opt[k] = tx.update(grads[k], state.opt_state[k], state.params[k])
      params[k] = optax.apply_updates(state.params[k], upd)
    return state.replace(step=state.step + 1, params=params, opt_state=opt), parallel.pmean(
        {'d_loss': d_loss, 'g_loss': g_loss})

  @functools.partial(jax.jit, static_argnums=(0, 3), static_argnames=('use_running_average',))
  def sample(self, state, key, n, y=None, use_running_average=True):
    return self.generate(state, sample_z(key, n, self.z_dim))

  def generate(self, state, z, y=None, drop=None, use_running_average=True, axis_name=None):
    return self.networks()['G'].apply({'params': state.params['G']}, z)

  def feature_layers(self, net=None):
    check_net(self, net)
    return ('fc1_act',)

  def default_feature_layer(self, net=None):
    return 'fc1_act'

  def features(self, state, x, net=None, layer=None, pool=features.GRID, y=None):
    check_net(self, net)
    names = None if layer == '*' else features.split_layers(layer or 'fc1_act')
    return features.sown_features(self.networks()['D'], {'params': state.params['D']}, (x,), names, pool)

  def encode(self, state, x):
    raise no_encoder(self)

  reconstruct = encode

  def recompute_batch_stats(self, state, batches, net=None):
    return state                               # no batchnorm

  def display(self, x):
    return x


@pytest.fixture
def tiny_registered():
  registry.register('tiny_test_gan', TinyGAN.create, 'an MLP GAN defined in tests/test_registry.py')
  yield 'tiny_test_gan'
  registry.unregister('tiny_test_gan')


def _cli(load_cli, name, *argv):
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    rc = load_cli(name).main(list(argv))
  return rc, out.getvalue(), err.getvalue()


def test_a_model_defined_here_trains_resumes_samples_and_evaluates(tiny_registered, tmp_path, data_dir, load_cli):
  wd = str(tmp_path / 'run')
  flags = ['--model=tiny_test_gan', '--dataset=digits', f'--data_dir={data_dir}', f'--workdir={wd}',
           '--batch_size=16', '--log_every=2', '--sample_every=0', '--checkpoint_every=2', '--num_samples=16']
  rc, out, err = _cli(load_cli, 'train', *flags, '--steps=4')
  assert rc == 0, err
  assert registry.describe()['tiny_test_gan'].startswith('an MLP GAN') and 'tiny_test_gan' in registry.names()
  rc, out, err = _cli(load_cli, 'train', *flags, '--steps=6')                  # the same command resumes
  assert rc == 0 and 'resumed from' in out, err
  model, state, config = checkpoint.load(wd)
  assert isinstance(model, TinyGAN) and int(state.step) == 6 and config.model.z_dim == 4   # saved resolved
  x = model.sample(state, jax.random.PRNGKey(0), 5)
  assert x.shape == (5, 8, 8, 1) and float(jnp.abs(x).max()) <= 1
  rc, out, err = _cli(load_cli, 'sample', f'--workdir={wd}', '--num=9', f'--out={tmp_path}/s.png')
  assert rc == 0 and os.path.getsize(tmp_path / 's.png') > 0, err
  rc, out, err = _cli(load_cli, 'evaluate', f'--workdir={wd}', '--eval=knn', '--net=D')
  assert rc == 0, err
  assert 0 <= float(out.strip().split()[-1].rstrip('%')) <= 100
  rc, out, err = _cli(load_cli, 'evaluate', f'--workdir={wd}', '--eval=quality', f'--data_dir={data_dir}',
                      f'--feature_net_dir={tmp_path}/fnet', '--steps=5', '--num_samples=64', '--num_real=64',
                      '--kid_subsets=2', '--kid_subset_size=32', '--metrics=fid,kid')
  assert rc == 0, err
  assert 'tiny_test_gan step 6: 64 samples' in out and '| FID | KID |' in out


def test_registry_refuses_clashes_and_unknown_names():
  with pytest.raises(ValueError, match='already registered'):
    registry.register('dcgan', TinyGAN.create, 'x')
  with pytest.raises(ValueError, match="unknown --model='nope'"):
    registry.factory('nope')
