"""BiGAN's feature-learning baselines (Donahue et al., 2017, section 4.1), with BiGAN's networks and optimiser:

- ``joint_latent_regressor``: a GAN (G, plain D(x), simultaneous updates, non-saturating G loss) trained jointly
  with E on the latent regressor loss L(z, E(G(z))); G shares the loss with weight ``--jlr_weight`` (authors'
  0.25).
- ``latent_regressor``: the same loss for E against the frozen G of a GAN trained before (``--gan_workdir``).
- ``autoencoder``: E and G minimising ||G(E(x)) - x|| (``--recon_loss=l2|l1``, per-pixel means); no D. (Not in
  the authors' released code.)

The JLR's G and D are a plain GAN's (updated simultaneously, appendix B: "our standard GAN experiments also
follow this protocol"); its D gives Table 1's "discriminator features" row and its G the one the LR freezes.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar, Optional

import jax
import jax.numpy as jnp

from bigan_jax.family import BiGANFamily, apply
from bigan_jax.objectives import latent_regression_loss, logits_to_z, reconstruction_loss
from common import checkpoint, images, parallel
from common.config import Config
from common.gan import gan_losses
from common.model import DataFacts
from common.state import TrainState


@dataclasses.dataclass(frozen=True)
class JointLatentRegressor(BiGANFamily):
  """``--model=joint_latent_regressor``: a GAN (G, plain D(x)) and E trained at the same time on the latent
  regressor loss L = L(z, E(G(z))). As the authors' JLR (``--encode_gen_weight 0.25``), G's objective is its GAN
  loss plus ``jlr_weight`` * L and E descends the gradient of that same weighted term (G and E share one
  optimiser there; per-parameter Adam makes that the same as two). ``--jlr_weight=0``: E minimises L alone
  with stop-gradient into G, so G and D are exactly a plain GAN's."""
  D_KIND: ClassVar[Optional[str]] = 'plain'
  E_LOGITS: ClassVar[bool] = True

  def train_step(self, state: TrainState, batch: dict):
    nets = self.networks(parallel.AXIS)
    G, D, E = nets['G'], nets['D'], nets['E']
    p, bs = state.params, state.batch_stats
    x = self.to_model(batch['image'])
    z = self._z(state, x.shape[0])
    w = self.config.bigan.jlr_weight

    fake, g_vjp, bs_g = jax.vjp(lambda pg: self._g(G, pg, bs['G'], z, train=True), p['G'], has_aux=True)

    def d_forward(pd, fake):
      logits_real, b = apply(D, pd, bs['D'], x, train=True)
      logits_fake, b = apply(D, pd, b, fake, train=True)
      return (logits_real, logits_fake), b

    logits, d_vjp, bs_d = jax.vjp(d_forward, p['D'], fake, has_aux=True)
    d_loss, g_loss = gan_losses(*logits)
    d_grads = d_vjp(jax.grad(lambda lg: gan_losses(*lg)[0])(logits))[0]
    _, fake_ct = d_vjp(jax.grad(lambda lg: gan_losses(*lg)[1])(logits))

    def e_loss_fn(pe, fake):
      z_logits, b = apply(E, pe, bs['E'], images.resize(fake, self.encoder_resolution), train=True)
      return latent_regression_loss(z_logits, z), (b, z_logits)

    if w:
      (e_loss, (bs_e, z_logits)), (e_grads, fake_ct_e) = jax.value_and_grad(e_loss_fn, argnums=(0, 1),
                                                                             has_aux=True)(p['E'], fake)
      e_grads = jax.tree_util.tree_map(lambda g: w * g, e_grads)
      fake_ct = fake_ct + w * fake_ct_e
    else:
      (e_loss, (bs_e, z_logits)), e_grads = jax.value_and_grad(e_loss_fn, has_aux=True)(
          p['E'], jax.lax.stop_gradient(fake))
    grads = {'D': d_grads, 'G': g_vjp(fake_ct)[0], 'E': e_grads}
    lr, lf = logits
    metrics = {'d_loss': d_loss, 'g_loss': g_loss, 'e_loss': e_loss,
               'd_real': jax.nn.sigmoid(lr).mean(), 'd_fake': jax.nn.sigmoid(lf).mean(),
               'z_err': jnp.abs(logits_to_z(z_logits) - z).mean()}
    return self._update(state, grads, {'G': bs_g, 'D': bs_d, 'E': bs_e}, metrics)


# -- Latent regressor ----------------------------------------------------------------------------------------

_GAN_CACHE: dict = {}


def load_gan(workdir: str):
  """(GAN model object, host copies of G's params and batch_stats) from a trained run, cached per process."""
  key = os.path.abspath(workdir)
  if key not in _GAN_CACHE:
    gan, state, _ = checkpoint.load(workdir)
    if 'G' not in state.params:
      raise ValueError(f'--gan_workdir={workdir} holds no generator')
    _GAN_CACHE[key] = (gan, jax.device_get(state.params['G']), jax.device_get(state.batch_stats.get('G', {})))
  return _GAN_CACHE[key]


@dataclasses.dataclass(frozen=True)
class LatentRegressor(BiGANFamily):
  """``--model=latent_regressor``: E trained with the latent regressor loss against a frozen, already trained G.

  The GAN comes from ``--gan_workdir``: any unconditional run with a G, for example a ``joint_latent_regressor``
  run (its G and D are a plain GAN's), a ``bigan`` run, or a ``dcgan`` run. G's architecture, z size, resolution
  and pixel range are the GAN's; G is copied into this run's state at init (so checkpoints are self-contained)
  and never updated; images come from the GAN's own ``generate``. G makes E's training images with batch
  statistics, as in GAN training.
  """
  gan: Any = None    # the GAN's model object (from checkpoint.load)

  NETS: ClassVar[tuple] = ('G', 'E')
  TRAINED: ClassVar[tuple] = ('E',)
  D_KIND: ClassVar[Optional[str]] = None
  E_LOGITS: ClassVar[bool] = True

  @classmethod
  def create(cls, config: Config, facts: DataFacts) -> 'LatentRegressor':
    path = config.bigan.gan_workdir
    if not path:
      raise ValueError('--model=latent_regressor needs --gan_workdir=DIR of a trained GAN (e.g. a '
                       'joint_latent_regressor, bigan or dcgan run)')
    gan = load_gan(path)[0]
    if gan.conditional:
      raise ValueError(f'--gan_workdir={path} is a conditional GAN: use an unconditional one')
    if gan.channels != facts.channels:
      raise ValueError(f'--gan_workdir={path} makes {gan.channels}-channel images, {config.data.dataset} has '
                       f'{facts.channels}')
    for flag, mine, theirs in (('z_dim', config.model.z_dim, gan.z_dim),
                               ('resolution', config.model.resolution, gan.resolution)):
      if mine is not None and mine != theirs:
        raise ValueError(f'--{flag}={mine} differs from the GAN in --gan_workdir ({theirs}): leave it out')
    gb = gan.config.bigan
    config = config.replace(data_range=gb.data_range or 'symmetric')
    resolved = cls.resolve(config, facts.channels, architecture=gb.architecture or 'conv', z_dim=gan.z_dim,
                           resolution=gan.resolution)
    return cls(resolved, channels=facts.channels, num_classes=facts.num_classes or 0, gan=gan)

  def generator(self, axis_name=None):
    return self.gan.networks(axis_name)['G']

  def _generate(self, state, z, use_running_average: bool = True, axis_name: Optional[str] = None, drop=None):
    return self.gan.generate(state, z, drop=drop, use_running_average=use_running_average, axis_name=axis_name)

  def init(self, key) -> TrainState:
    _, g_params, g_stats = load_gan(self.config.bigan.gan_workdir)
    ke, ks = jax.random.split(key)
    ve = self._init_net('E', self.encoder(), ke)
    g_params = jax.tree_util.tree_map(jnp.asarray, g_params)
    g_stats = jax.tree_util.tree_map(jnp.asarray, g_stats)
    return self._state(ks, {'G': g_params, 'E': ve['params']}, {'G': g_stats, 'E': ve.get('batch_stats', {})})

  def train_step(self, state: TrainState, batch: dict):
    E = self.networks(parallel.AXIS)['E']
    b = batch['image'].shape[0]
    z = self._z(state, b)
    fake = self._generate(state, z, use_running_average=False, axis_name=parallel.AXIS)   # frozen, in [-1, 1]
    fake = jax.lax.stop_gradient(images.resize(self.to_model(fake), self.encoder_resolution))

    def e_loss_fn(pe):
      z_logits, bs = apply(E, pe, state.batch_stats['E'], fake, train=True)
      return latent_regression_loss(z_logits, z), (bs, z_logits)

    (e_loss, (bs_e, z_logits)), e_grads = jax.value_and_grad(e_loss_fn, has_aux=True)(state.params['E'])
    metrics = {'e_loss': e_loss, 'z_err': jnp.abs(logits_to_z(z_logits) - z).mean()}
    return self._update(state, {'E': e_grads}, {'E': bs_e}, metrics)


# -- Autoencoder ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Autoencoder(BiGANFamily):
  """``--model=autoencoder``: E and G (BiGAN's architectures) minimising the l2 or l1 error of G(E(x)); no D."""
  NETS: ClassVar[tuple] = ('G', 'E')
  TRAINED: ClassVar[tuple] = ('G', 'E')
  D_KIND: ClassVar[Optional[str]] = None

  def train_step(self, state: TrainState, batch: dict):
    nets = self.networks(parallel.AXIS)
    G, E = nets['G'], nets['E']
    x = self.to_model(batch['image'])
    target = images.resize(x, self.resolution)

    def loss_fn(params):
      z, bs_e = self._e_train(E, params['E'], state.batch_stats['E'], x)
      x_hat, bs_g = self._g(G, params['G'], state.batch_stats['G'], z, train=True)
      return reconstruction_loss(x_hat, target, self.config.bigan.recon_loss), {'E': bs_e, 'G': bs_g}

    (loss, bs), grads = jax.value_and_grad(loss_fn, has_aux=True)({'G': state.params['G'], 'E': state.params['E']})
    return self._update(state, grads, bs, {'recon_loss': loss})
