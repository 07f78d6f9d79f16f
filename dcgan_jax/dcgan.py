"""The DCGAN model (Radford et al., 2016): its networks, state, pure per-device train step and trained-model API.

One step is the paper's recipe (and PyTorch's examples/dcgan): one Adam update of D on a real and a fake batch,
then one Adam update of G with the non-saturating loss -log D(G(z)) against the updated D. G runs forward once;
its VJP is reused for G's update, so the step does one G forward and one G backward. ``--model=cdcgan`` is the
label-conditioned model (one-hot y into G and D; parameter-free batchnorm by default).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import optax

from common import features as feats
from common import parallel
from common.config import Config
from common.gan import bce, sample_z
from common.model import DataFacts, check_net, no_encoder
from common.networks import Discriminator, Generator, layer_widths
from common.state import TrainState

Z_DIM = 100       # paper: z ~ U(-1, 1)^100
RESOLUTION = 64   # paper: 64x64 (Figure 1)


@dataclasses.dataclass(frozen=True)
class DCGAN:
  """DCGAN bound to a resolved config and the dataset's shape; implements ``common.model.Model``.

  ``num_classes > 0`` gives the conditional model (``--model=cdcgan``).
  """
  config: Config
  channels: int = 3
  num_classes: int = 0

  # -- construction (the registry's factories) -------------------------------------------------------------

  @classmethod
  def create(cls, config: Config, facts: DataFacts) -> 'DCGAN':
    """``--model=dcgan``: the paper's defaults filled into ``config``."""
    return cls(cls.resolve(config, conditional=False), channels=facts.channels)

  @classmethod
  def create_conditional(cls, config: Config, facts: DataFacts) -> 'DCGAN':
    """``--model=cdcgan``: needs a labelled dataset."""
    if not facts.num_classes:
      raise ValueError(f'--model={config.model.name} needs a labelled dataset; {config.data.dataset} has no labels')
    return cls(cls.resolve(config, conditional=True), channels=facts.channels, num_classes=facts.num_classes)

  @classmethod
  def resolve(cls, config: Config, conditional: bool, resolution: int = RESOLUTION) -> Config:
    m = config.model
    resolved = config.replace(resolution=m.resolution or resolution, z_dim=m.z_dim or Z_DIM,
                              bn_scale_bias=m.bn_scale_bias if m.bn_scale_bias is not None else not conditional,
                              weight_decay=m.weight_decay if m.weight_decay is not None else 0.0)
    cls.check(resolved)
    return resolved

  @classmethod
  def check(cls, config: Config) -> None:
    """Raises ValueError on settings the networks cannot take (before anything is written)."""
    layer_widths(config.model.resolution, config.model.width)

  # -- the interface ---------------------------------------------------------------------------------------

  @property
  def z_dim(self) -> int:
    return self.config.model.z_dim

  @property
  def resolution(self) -> int:
    return self.config.model.resolution

  @property
  def conditional(self) -> bool:
    return self.num_classes > 0

  @property
  def has_encoder(self) -> bool:
    return False

  @property
  def feature_nets(self) -> tuple:
    return ('D',)

  def data_options(self, eval: bool = False) -> dict:  # pylint: disable=redefined-builtin
    """The paper's preprocessing: min-resize, center crop, scale to [-1, 1], no augmentation."""
    return dict(resolution=self.resolution, load_size=self.config.data.load_size, crop='center', flip=False)

  def networks(self, axis_name: Optional[str] = None) -> dict:
    m = self.config.model
    common = dict(resolution=self.resolution, width=m.width, kernel_size=m.kernel_size, num_classes=self.num_classes,
                  bn_scale_bias=m.bn_scale_bias, axis_name=axis_name, dtype=m.dtype)
    return {'G': Generator(channels=self.channels, upsample_impl=m.upsample_impl, **common),
            'D': Discriminator(**common)}

  def optimizers(self):
    m = self.config.model
    tx = optax.adam(m.lr, b1=m.beta1, b2=m.beta2)
    if m.weight_decay:
      tx = optax.chain(optax.add_decayed_weights(m.weight_decay), tx)
    return {'G': tx, 'D': tx}

  # -- state -----------------------------------------------------------------------------------------------

  def init(self, key) -> TrainState:
    nets = self.networks()
    G, D = nets['G'], nets['D']
    kg, kd, key = jax.random.split(key, 3)
    z = jnp.zeros((2, self.z_dim))
    y = jnp.zeros((2,), jnp.int32)
    vg = G.init(kg, z, y, train=False)
    vd = D.init(kd, jnp.zeros((2, self.resolution, self.resolution, self.channels)), y, train=False)
    params = {'G': vg['params'], 'D': vd['params']}
    txs = self.optimizers()
    return TrainState(step=jnp.zeros((), jnp.int32), key=key, params=params,
                      batch_stats={'G': vg.get('batch_stats', {}), 'D': vd.get('batch_stats', {})},
                      opt_state={k: txs[k].init(params[k]) for k in params})

  # -- the step --------------------------------------------------------------------------------------------

  def train_step(self, state: TrainState, batch: dict):
    """Per-device body of the data-parallel step; collectives over ``parallel.AXIS``."""
    nets = self.networks(parallel.AXIS)
    G, D = nets['G'], nets['D']
    txs = self.optimizers()
    real, labels = batch['image'], batch.get('label')
    b = real.shape[0]
    n = b * parallel.num_shards()
    kz, ky = jax.random.split(jax.random.fold_in(state.key, state.step))
    # z (and fake labels) drawn for the global batch and sliced: the same step on any device count.
    z = parallel.shard_slice(sample_z(kz, n, self.z_dim), b)
    y_fake = parallel.shard_slice(jax.random.randint(ky, (n,), 0, max(self.num_classes, 1)), b)

    def g_forward(pg):
      fake, upd = G.apply({'params': pg, 'batch_stats': state.batch_stats['G']}, z, y_fake, train=True,
                          mutable=['batch_stats'])
      return fake, upd['batch_stats']

    fake, g_vjp, bs_g = jax.vjp(g_forward, state.params['G'], has_aux=True)

    def d_apply(pd, bs, x, y):
      logits, upd = D.apply({'params': pd, 'batch_stats': bs}, x, y, train=True, mutable=['batch_stats'])
      return logits, upd['batch_stats']

    # D: maximise log D(x) + log(1 - D(G(z))), real and fake as separate batches (as the paper's code).
    def d_loss_fn(pd):
      logits_real, bs = d_apply(pd, state.batch_stats['D'], real, labels)
      logits_fake, bs = d_apply(pd, bs, jax.lax.stop_gradient(fake), y_fake)
      loss = bce(logits_real, 1.0) + bce(logits_fake, 0.0)
      return loss, (bs, logits_real, logits_fake)

    (d_loss, (bs_d, logits_real, logits_fake)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
        state.params['D'])
    d_grads = parallel.pmean(d_grads)
    d_updates, d_opt = txs['D'].update(d_grads, state.opt_state['D'], state.params['D'])
    params_d = optax.apply_updates(state.params['D'], d_updates)

    # G: non-saturating loss -log D(G(z)) against the updated D, back through the saved VJP.
    def g_loss_fn(x):
      logits, bs = d_apply(params_d, bs_d, x, y_fake)
      return bce(logits, 1.0), (bs, logits)

    (g_loss, (bs_d, logits_gen)), d_fake = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
    (g_grads,) = g_vjp(d_fake)
    g_grads = parallel.pmean(g_grads)
    g_updates, g_opt = txs['G'].update(g_grads, state.opt_state['G'], state.params['G'])
    params_g = optax.apply_updates(state.params['G'], g_updates)

    new_state = state.replace(step=state.step + 1, params={'G': params_g, 'D': params_d},
                              batch_stats={'G': bs_g, 'D': bs_d}, opt_state={'G': g_opt, 'D': d_opt})
    metrics = parallel.pmean({
        'd_loss': d_loss, 'g_loss': g_loss,
        'd_real': jax.nn.sigmoid(logits_real).mean(),       # D(x)
        'd_fake': jax.nn.sigmoid(logits_fake).mean(),       # D(G(z)) before D's update
        'd_acc': 0.5 * ((logits_real > 0).mean() + (logits_fake < 0).mean()),
    })
    return new_state, metrics

  # -- using a trained model -------------------------------------------------------------------------------

  def _labels(self, y, n: int):
    if self.num_classes and y is None:
      return jnp.arange(n) % self.num_classes
    return y

  @functools.partial(jax.jit, static_argnums=(0, 3), static_argnames=('use_running_average',))
  def sample(self, state: TrainState, key, n: int, y=None, use_running_average: bool = True):
    """n images in [-1, 1] from z ~ U(-1, 1); labels y (conditional model) default to cycling classes."""
    return self.generate(state, sample_z(key, n, self.z_dim), y, use_running_average=use_running_average)

  @functools.partial(jax.jit, static_argnums=(0,), static_argnames=('use_running_average', 'axis_name'))
  def generate(self, state: TrainState, z, y=None, drop=None, use_running_average: bool = True,
               axis_name: Optional[str] = None):
    """G(z) for given latents (and labels); ``drop`` masks feature maps per layer (``Generator``).

    With ``use_running_average`` batchnorm uses its running statistics, so each image depends only on
    its own z; otherwise on the statistics of this batch (synced over ``axis_name``), as during training.
    """
    G = self.networks(axis_name)['G']
    y = self._labels(y, z.shape[0])
    if use_running_average:
      return G.apply(state.variables('G'), z, y, train=False, drop=drop)
    images, _ = G.apply(state.variables('G'), z, y, train=True, drop=drop, mutable=['batch_stats'])
    return images

  @functools.partial(jax.jit, static_argnums=(0,))
  def discriminate(self, state: TrainState, x, y=None):
    """D's probability that x is real (running batchnorm statistics)."""
    return jax.nn.sigmoid(self.networks()['D'].apply(state.variables('D'), x, y, train=False))

  def feature_layers(self, net: Optional[str] = None) -> tuple:
    check_net(self, net)
    n = len(layer_widths(self.resolution, self.config.model.width))
    return tuple(f'conv{i}_act' for i in range(1, n + 1))

  def default_feature_layer(self, net: Optional[str] = None) -> str:
    """Every conv layer of D (section 5.1: "features from all layers")."""
    return ','.join(self.feature_layers(net))

  def features(self, state: TrainState, x, net: Optional[str] = None, layer: Optional[str] = None,
               pool: Optional[int] = feats.GRID, y=None):
    """Section 5.1 features of images x: D's activations (running batchnorm statistics) of every layer
    ('conv1_act', ...; ``layer`` picks some, comma-separated; '*' all), each max-pooled to a ``pool`` x ``pool``
    grid (None: not pooled), flattened and concatenated. The conditional D needs the labels ``y``. Jitted."""
    check_net(self, net)
    if self.num_classes and y is None:
      raise ValueError(f'--model={self.config.model.name} has a label-conditioned D, which needs the label of '
                       'each image: probe an unconditional model')
    layers = None if layer in (None, '*') else feats.split_layers(layer)
    return feats.sown_features(self.networks()['D'], state.variables('D'), (x, y), layers, pool)

  def encode(self, state: TrainState, x):
    raise no_encoder(self)

  def reconstruct(self, state: TrainState, x):
    raise no_encoder(self)

  def display(self, x):
    return x
