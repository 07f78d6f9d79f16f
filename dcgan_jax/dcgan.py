"""The DCGAN model (Radford et al., 2016): its networks, state, pure per-device train step and trained-model API.

Where the paper is silent its authors' code (Newmu/dcgan_code) decides (docs/fidelity.md):

- the update order (``--update_order``): 'alternate', the authors' loop, updates G (non-saturating loss
  -log D(G(z)) on a fresh z) and then D (real batch, another fresh z) within a step, so the sequence of updates
  is theirs (G, D, G, D, ...); 'joint' (PyTorch's examples/dcgan, this project before) updates D first and then
  G against the updated D on D's own fake batch, reusing G's forward pass (one G forward and backward per step);
- L2 weight decay 1e-5 on every parameter (2.5e-5 for the conditional MNIST model), no biases, batchnorm scale
  initialised from N(1, 0.02), the projection's batchnorm per unit, and samples drawn with the batch's own
  batchnorm statistics (the authors' code keeps no running averages).

``--model=cdcgan`` is the label-conditioned model: by default the authors' conditional MNIST network
(``--variant=mnist``: y into every layer, 28x28, images in [0, 1], the learning rate decayed linearly to 0 over
the second half); ``--variant=paper`` conditions section 3's conv networks instead. ``--variant=imagenet32`` is
the authors' 32x32 ImageNet model, whose D the paper probes on CIFAR-10.
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
from common.gan import bce, lr_schedule, sample_prior
from common.model import DataFacts, check_net, no_encoder
from common.networks import BNSpec, Discriminator, Generator, layer_widths
from common.state import TrainState
from dcgan_jax import models

Z_DIM = 100       # paper: z ~ U(-1, 1)^100
RESOLUTION = 64   # paper: 64x64 (Figure 1)
WIDTH = 128       # paper: 4x4x1024 at 64x64
# Per variant: (resolution, z_dim, width) the network is made for (None: any).
VARIANTS = {'paper': (None, Z_DIM, WIDTH), 'imagenet32': (32, 256, 128), 'mnist': (28, Z_DIM, 64)}


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
    """``--model=dcgan``: the paper's (and its authors') defaults filled into ``config``."""
    return cls(cls.resolve(config, conditional=False), channels=facts.channels)

  @classmethod
  def create_conditional(cls, config: Config, facts: DataFacts) -> 'DCGAN':
    """``--model=cdcgan``: needs a labelled dataset."""
    if not facts.num_classes:
      raise ValueError(f'--model={config.model.name} needs a labelled dataset; {config.data.dataset} has no labels')
    return cls(cls.resolve(config, conditional=True), channels=facts.channels, num_classes=facts.num_classes)

  @classmethod
  def resolve(cls, config: Config, conditional: bool, resolution: int = RESOLUTION,
              default_variant: Optional[str] = None) -> Config:
    m = config.model
    # cdcgan: the authors' MNIST network unless another size is asked for (then section 3's conv networks).
    variant = m.variant or default_variant or (
        'mnist' if conditional and m.resolution in (None, VARIANTS['mnist'][0]) else 'paper')
    allowed = ('mnist', 'paper') if conditional else ('paper', 'imagenet32')
    if variant not in allowed:
      raise ValueError(f'--variant={variant} is not a --model={m.name} network: use {" or ".join(allowed)}')
    v_res, v_z, v_width = VARIANTS[variant]
    if v_res and m.resolution not in (None, v_res):
      raise ValueError(f'--variant={variant} makes {v_res}x{v_res} images: leave out --resolution={m.resolution}')
    mnist = variant == 'mnist'
    resolved = config.replace(
        variant=variant, resolution=v_res or m.resolution or resolution, z_dim=m.z_dim or v_z,
        width=m.width or v_width, bn_scale_bias=m.bn_scale_bias if m.bn_scale_bias is not None else not conditional,
        weight_decay=m.weight_decay if m.weight_decay is not None else (2.5e-5 if conditional else 1e-5),
        layer_bias=bool(m.layer_bias), bn_scale_init=m.bn_scale_init or 'normal', project_bn=m.project_bn or 'unit',
        update_order=m.update_order or 'alternate', sample_bn=m.sample_bn or 'batch',
        lr_decay=m.lr_decay or ('linear' if mnist else 'none'))
    cls.check(resolved)
    return resolved

  @classmethod
  def check(cls, config: Config) -> None:
    """Raises ValueError on settings the networks cannot take (before anything is written)."""
    if config.model.variant == 'paper':
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

  @property
  def data_range(self) -> str:
    """'unit' ([0, 1], sigmoid G: the authors' MNIST network) or 'symmetric' ([-1, 1], tanh)."""
    return 'unit' if self.config.model.variant == 'mnist' else 'symmetric'

  def to_model(self, x):
    return (x + 1.0) * 0.5 if self.data_range == 'unit' else x

  def from_model(self, x):
    return 2.0 * x - 1.0 if self.data_range == 'unit' else x

  def networks(self, axis_name: Optional[str] = None) -> dict:
    m = self.config.model
    bn = BNSpec(m.bn_momentum, m.bn_epsilon, m.bn_scale_init)
    if m.variant == 'mnist':
      common = dict(num_classes=self.num_classes, hidden=m.hidden, width=m.width, bn=bn, axis_name=axis_name,
                    dtype=m.dtype)
      return {'G': models.CondMNISTGenerator(channels=self.channels, upsample_impl=m.upsample_impl, **common),
              'D': models.CondMNISTDiscriminator(**common)}
    if m.variant == 'imagenet32':
      common = dict(width=m.width, bn_scale_bias=m.bn_scale_bias, bias=m.layer_bias, bn=bn, axis_name=axis_name,
                    dtype=m.dtype)
      return {'G': models.ImageNet32Generator(channels=self.channels, upsample_impl=m.upsample_impl, **common),
              'D': models.ImageNet32Discriminator(**common)}
    common = dict(resolution=self.resolution, width=m.width, kernel_size=m.kernel_size, num_classes=self.num_classes,
                  bn_scale_bias=m.bn_scale_bias, bias=m.layer_bias, bn=bn, axis_name=axis_name, dtype=m.dtype)
    return {'G': Generator(channels=self.channels, upsample_impl=m.upsample_impl, project_bn=m.project_bn, **common),
            'D': Discriminator(**common)}

  def optimizers(self):
    """Adam (the paper: 2e-4, beta1 0.5) after L2 weight decay added to the gradient of every parameter (the
    authors' ``Regularizer(l2=...)``), with ``--lr_decay``'s schedule."""
    m = self.config.model
    lr = m.lr if m.lr_decay == 'none' else lr_schedule(m.lr, self.config.loop.steps, m.lr_decay)
    tx = optax.adam(lr, b1=m.beta1, b2=m.beta2)
    if m.weight_decay:
      tx = optax.chain(optax.add_decayed_weights(m.weight_decay), tx)
    return {'G': tx, 'D': tx}

  def _z(self, key, n: int):
    return sample_prior(key, n, self.z_dim, self.config.model.z_prior)

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
    real, labels = self.to_model(batch['image']), batch.get('label')
    b = real.shape[0]
    n = b * parallel.num_shards()
    key = jax.random.fold_in(state.key, state.step)
    kz, ky = jax.random.split(key)
    # z (and fake labels) drawn for the global batch and sliced: the same step on any device count.
    z = parallel.shard_slice(self._z(kz, n), b)
    y_fake = parallel.shard_slice(jax.random.randint(ky, (n,), 0, max(self.num_classes, 1)), b)

    def g_forward(pg, bs, z, y):
      fake, upd = G.apply({'params': pg, 'batch_stats': bs}, z, y, train=True, mutable=['batch_stats'])
      return fake, upd['batch_stats']

    def d_apply(pd, bs, x, y):
      logits, upd = D.apply({'params': pd, 'batch_stats': bs}, x, y, train=True, mutable=['batch_stats'])
      return logits, upd['batch_stats']

    def d_update(params_d, bs_d, fake, y_fake):
      """D: maximise log D(x) + log(1 - D(G(z))), real and fake as separate batches (as the paper's code)."""
      def d_loss_fn(pd):
        logits_real, bs = d_apply(pd, bs_d, real, labels)
        logits_fake, bs = d_apply(pd, bs, jax.lax.stop_gradient(fake), y_fake)
        return bce(logits_real, 1.0) + bce(logits_fake, 0.0), (bs, logits_real, logits_fake)

      (d_loss, (bs, lr_, lf_)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(params_d)
      d_updates, d_opt = txs['D'].update(parallel.pmean(d_grads), state.opt_state['D'], params_d)
      return optax.apply_updates(params_d, d_updates), d_opt, bs, d_loss, lr_, lf_

    def g_vjp(params_g, bs_g, z, y):
      """G(z) in train mode, its VJP and G's new batch statistics: one forward pass, reused for G's update."""
      fake, vjp, bs_g = jax.vjp(lambda pg: g_forward(pg, bs_g, z, y), params_g, has_aux=True)
      return (fake, vjp), bs_g

    def g_update(params_g, forward, params_d, bs_d, y):
      """G: non-saturating loss -log D(G(z)) against D ``params_d``, back through ``forward = (G(z), VJP)``."""
      fake, vjp = forward

      def g_loss_fn(x):
        logits, bs = d_apply(params_d, bs_d, x, y)
        return bce(logits, 1.0), (bs, logits)

      (g_loss, (bs_d, _)), d_fake = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
      (g_grads,) = vjp(d_fake)
      g_updates, g_opt = txs['G'].update(parallel.pmean(g_grads), state.opt_state['G'], params_g)
      return optax.apply_updates(params_g, g_updates), g_opt, bs_d, g_loss

    p, bs = state.params, state.batch_stats
    if self.config.model.update_order == 'alternate':
      # The authors' loop: G on a fresh z against the current D, then D on the real batch and another fresh z.
      kg, kgy = jax.random.split(jax.random.fold_in(key, 1))
      z_g = parallel.shard_slice(self._z(kg, n), b)
      y_g = parallel.shard_slice(jax.random.randint(kgy, (n,), 0, max(self.num_classes, 1)), b)
      forward, bs_g = g_vjp(p['G'], bs['G'], z_g, y_g)
      params_g, g_opt, bs_d, g_loss = g_update(p['G'], forward, p['D'], bs['D'], y_g)
      fake, bs_g = g_forward(params_g, bs_g, z, y_fake)
      params_d, d_opt, bs_d, d_loss, logits_real, logits_fake = d_update(p['D'], bs_d, fake, y_fake)
    else:
      # D first, then G against the updated D on D's own fake batch (G's forward pass computed once).
      forward, bs_g = g_vjp(p['G'], bs['G'], z, y_fake)
      params_d, d_opt, bs_d, d_loss, logits_real, logits_fake = d_update(p['D'], bs['D'], forward[0], y_fake)
      params_g, g_opt, bs_d, g_loss = g_update(p['G'], forward, params_d, bs_d, y_fake)

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
  def sample(self, state: TrainState, key, n: int, y=None, use_running_average: Optional[bool] = None):
    """n images in [-1, 1] from z drawn from the prior; labels y (conditional model) default to cycling classes;
    batchnorm statistics as ``generate``."""
    return self.generate(state, self._z(key, n), y, use_running_average=use_running_average)

  @functools.partial(jax.jit, static_argnums=(0,), static_argnames=('use_running_average', 'axis_name'))
  def generate(self, state: TrainState, z, y=None, drop=None, use_running_average: Optional[bool] = None,
               axis_name: Optional[str] = None):
    """G(z) in [-1, 1] for given latents (and labels); ``drop`` masks feature maps per layer (``Generator``).

    ``use_running_average``: batchnorm with its running statistics (each image depends only on its own z), or
    with this batch's (synced over ``axis_name``), as during training and as the authors sample; None: the
    run's ``--sample_bn`` (DCGAN default: the batch's).
    """
    G = self.networks(axis_name)['G']
    y = self._labels(y, z.shape[0])
    if use_running_average is None:
      use_running_average = self.config.model.sample_bn == 'running'
    if use_running_average:
      return self.from_model(G.apply(state.variables('G'), z, y, train=False, drop=drop))
    images, _ = G.apply(state.variables('G'), z, y, train=True, drop=drop, mutable=['batch_stats'])
    return self.from_model(images)

  @functools.partial(jax.jit, static_argnums=(0,))
  def discriminate(self, state: TrainState, x, y=None):
    """D's probability that x is real (running batchnorm statistics)."""
    return jax.nn.sigmoid(self.networks()['D'].apply(state.variables('D'), x, y, train=False))

  def feature_layers(self, net: Optional[str] = None) -> tuple:
    check_net(self, net)
    D = self.networks()['D']
    x = jnp.zeros((1, self.resolution, self.resolution, self.channels))
    y = jnp.zeros((1,), jnp.int32)
    variables = jax.eval_shape(lambda: D.init(jax.random.PRNGKey(0), x, y, train=False))
    return tuple(feats.sown_layers(D, variables, (x, y)))

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
    return feats.sown_features(self.networks()['D'], state.variables('D'), (self.to_model(x), y), layers, pool)

  def encode(self, state: TrainState, x):
    raise no_encoder(self)

  def reconstruct(self, state: TrainState, x):
    raise no_encoder(self)

  def display(self, x):
    return x

  def recompute_batch_stats(self, state: TrainState, batches, net: Optional[str] = None) -> TrainState:
    """``state`` with ``net``'s batchnorm statistics replaced by their average over ``batches`` of real images
    (the authors' feature extraction: ``svhn_semisup_analysis.py`` ``infer_bnorm_stats``)."""
    net = check_net(self, net)
    return feats.recompute_batch_stats(self.networks()[net], state, net, (self.to_model(x) for x in batches))
