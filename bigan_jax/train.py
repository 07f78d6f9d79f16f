"""BiGAN and its feature-learning baselines (Donahue et al., 2017, sections 3.4, 3.5, 4.1 and appendices B, C).

``build(config, channels, num_classes)`` returns one of four model objects, each plugging into
``common.loop`` through the interface of ``common.registry`` (``init``, ``train_step``, ``sample``,
``data_options``, ``z_dim``, ``resolution``) and adding the encoder API: ``encode``, ``reconstruct``,
``generate``, ``display``, ``features`` (and ``d_features`` where there is a plain D):

- ``bigan``: G, E and the joint D(x, z), all updated simultaneously from one batch (appendix B): D maximises
  log D(x, E(x)) + log(1 - D(G(z), z)); G and E minimise the inverse (label-swapped) objective
  -log(1 - D(x, E(x))) - log D(G(z), z).
- ``joint_latent_regressor``: a GAN (G, plain D(x), simultaneous updates, non-saturating G loss) trained jointly
  with E, which minimises the latent regressor loss L(z, E(G(z))) on generated samples only (section 4.1).
- ``latent_regressor``: the same loss for E against the frozen G of a GAN trained before (``--gan_workdir``).
- ``autoencoder``: E and G minimising ||G(E(x)) - x|| (``--recon_loss=l2|l1``); no D.

All of them use the same networks and the same optimiser (section 4.2: "The same architecture and optimization
algorithm is used across all methods"): Adam(2e-4, 0.5, 0.999), the step size held for the first half of
``config.steps`` then decayed exponentially to ``lr_final`` (2e-6), and L2 weight decay 2.5e-5 added to the
gradient of multiplicative weights only (kernels; not biases, not batchnorm scale or shift) (appendix C).

The latent regressor loss (section 4.1: "We use a sigmoid cross entropy loss L as it naturally maps to a
uniformly distributed output space"): E outputs one logit per latent dimension and the loss is the sigmoid
cross-entropy against the targets (z + 1) / 2 in [0, 1], averaged over dimensions and examples. The encoder's
point estimate of z is then 2 sigmoid(logit) - 1, which is what ``encode`` returns for these models.

Choices where the paper is silent:
- BiGAN's E outputs z linearly (unbounded). (The authors' released code squashes it as 2 sigmoid - 1 into the
  prior's support; on digits that made no difference to 1-NN accuracy in our runs, so the plain form stays.)
- JLR is "jointly during a regular GAN training" with E's loss stopped at G(z): G and D are exactly a plain
  GAN's (updated simultaneously, appendix B: "our standard GAN experiments also follow this protocol"), which
  is also the GAN whose D gives the "discriminator features" row and whose G the LR baseline freezes.
- Features for 1-NN (Table 1 says only "the feature space learned by"): MLP encoders use E(x) itself ('z', 50-D);
  conv encoders their last conv block ('pool5' for AlexNet); D features are D's last hidden layer. Any sown
  layer can be chosen by name (``feature_layers()``), several joined by commas.
- Autoencoder losses are per-pixel means (squared error for l2, absolute error for l1).
- Generalised BiGAN (section 3.5): the pipeline makes images at the encoder size; g_X is an antialiased
  bilinear resize (``jax.image.resize``) down to G's size. Latent regressors, whose E sees only G(z), get G(z)
  resized up to E's size.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, ClassVar, Optional

import jax
import jax.numpy as jnp
import optax

from bigan_jax import models
from common import parallel
from common.config import Config
from common.state import TrainState
from dcgan_jax.train import bce, sample_z

Z_DIM = {'mlp': 50, 'conv': 200}        # section 4.2: U(-1, 1)^50; section 4.3: U(-1, 1)^200
RESOLUTION = {'mlp': 28, 'conv': 64}    # MNIST 28x28; ImageNet crops 64x64
LOAD_RATIO = 72 / 64                    # appendix C.2: shorter edge 72, random 64x64 crop
ALEXNET_MIN = 64                        # encoder input at least this large -> AlexNet E, else the DCGAN-mirror E


# -- losses ----------------------------------------------------------------------------------------------------

def bigan_losses(logits_real, logits_fake):
  """(D's loss, G and E's loss) from D's logits on (x, E(x)) and on (G(z), z).

  D minimises -log D(x, E(x)) - log(1 - D(G(z), z)), i.e. maximises V. G and E minimise the inverse objective
  -log(1 - D(x, E(x))) - log D(G(z), z) (appendix B): the labels swapped, not the sign of V flipped.
  """
  d_loss = bce(logits_real, 1.0) + bce(logits_fake, 0.0)
  ge_loss = bce(logits_real, 0.0) + bce(logits_fake, 1.0)
  return d_loss, ge_loss


def gan_losses(logits_real, logits_fake):
  """(D's loss, G's non-saturating loss -log D(G(z))) for a plain GAN."""
  return bce(logits_real, 1.0) + bce(logits_fake, 0.0), bce(logits_fake, 1.0)


def latent_regression_loss(z_logits, z):
  """Sigmoid cross-entropy between E's logits and the targets (z + 1) / 2, for z in [-1, 1] (section 4.1)."""
  return optax.sigmoid_binary_cross_entropy(z_logits, (z + 1.0) / 2.0).mean()


def logits_to_z(z_logits):
  """The latent regressor's estimate of z in (-1, 1)."""
  return 2.0 * jax.nn.sigmoid(z_logits) - 1.0


def reconstruction_loss(x_hat, x, kind: str = 'l2'):
  """Mean squared (l2) or absolute (l1) error per pixel."""
  d = x_hat - x
  if kind == 'l2':
    return jnp.mean(d * d)
  if kind == 'l1':
    return jnp.mean(jnp.abs(d))
  raise ValueError(f'unknown --recon_loss={kind!r}: use l2 or l1')


# -- optimiser -------------------------------------------------------------------------------------------------

def decay_mask(params):
  """True for multiplicative weights (every 'kernel'); False for biases and batchnorm scale/shift."""
  return jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[-1], 'key', None) == 'kernel', params)


def lr_schedule(config: Config):
  """lr for the first half of ``config.steps``, then exponential decay reaching ``lr_final`` at the end."""
  half = config.steps // 2
  return optax.exponential_decay(config.lr, transition_steps=max(config.steps - half, 1),
                                 decay_rate=config.lr_final / config.lr, transition_begin=half,
                                 end_value=config.lr_final)


def optimizer(config: Config) -> optax.GradientTransformation:
  """Appendix C: L2 weight decay on kernels added to the gradient, then Adam with the decaying step size."""
  return optax.chain(optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
                     optax.scale_by_adam(b1=config.beta1, b2=config.beta2),
                     optax.scale_by_learning_rate(lr_schedule(config)))


# -- the shared model object ---------------------------------------------------------------------------------

def _apply(module, params, batch_stats, *args, train: bool):
  """module.apply with batch statistics; in training mode returns (output, updated batch_stats)."""
  v = {'params': params}
  if batch_stats:
    v['batch_stats'] = batch_stats
  if not train:
    return module.apply(v, *args, train=False)
  out, upd = module.apply(v, *args, train=True, mutable=['batch_stats'])
  return out, upd.get('batch_stats', {})


def _resize(x, size: int):
  """g_X of section 3.5: square images resized to ``size`` (antialiased when shrinking)."""
  if x.shape[1] == size and x.shape[2] == size:
    return x
  return jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), 'linear', antialias=True)


@dataclasses.dataclass(frozen=True)
class _BiGANFamily:
  """Networks, optimiser, preprocessing and the trained-model API shared by BiGAN and its baselines.

  Subclasses set ``NETS`` (the networks in the state), ``TRAINED`` (those with an optimiser), ``D_KIND``
  ('joint', 'plain' or None) and ``E_LOGITS`` (E's linear output is a logit per latent dimension and its z is
  2 sigmoid(logit) - 1, as for the latent regressors; features then also offer 'logits').
  """
  config: Config
  channels: int = 1
  num_classes: int = 0

  NETS: ClassVar[tuple] = ('G', 'D', 'E')
  TRAINED: ClassVar[tuple] = ('G', 'D', 'E')
  D_KIND: ClassVar[Optional[str]] = 'joint'
  E_LOGITS: ClassVar[bool] = False

  # -- sizes ---------------------------------------------------------------------------------------------------

  @property
  def architecture(self) -> str:
    a = self.config.architecture or ('mlp' if self.channels == 1 else 'conv')
    if a not in ('mlp', 'conv'):
      raise ValueError(f'unknown --architecture={a!r}: use mlp or conv')
    return a

  @property
  def z_dim(self) -> int:
    return self.config.z_dim or Z_DIM[self.architecture]

  @property
  def resolution(self) -> int:
    """The size G makes and D sees."""
    return self.config.resolution or RESOLUTION[self.architecture]

  @property
  def encoder_resolution(self) -> int:
    """The size E sees (section 3.5: may be larger than G's); the input pipeline produces this size."""
    return self.config.encoder_resolution or self.resolution

  @property
  def data_range(self) -> str:
    """'unit' ([0, 1]: the authors' MNIST networks, sigmoid G) or 'symmetric' ([-1, 1], tanh G): the range the
    networks work in. The API (batches in, samples out) is always [-1, 1]; the model converts at its edges."""
    r = self.config.data_range or ('unit' if self.architecture == 'mlp' else 'symmetric')
    if r not in ('unit', 'symmetric'):
      raise ValueError(f'unknown --data_range={r!r}: use unit or symmetric')
    return r

  def to_model(self, x):
    """Images in [-1, 1] -> the networks' range."""
    return (x + 1.0) * 0.5 if self.data_range == 'unit' else x

  def from_model(self, x):
    """The networks' range -> [-1, 1]."""
    return 2.0 * x - 1.0 if self.data_range == 'unit' else x

  @property
  def e_squash(self) -> bool:
    """E's linear output goes through 2 sigmoid - 1 (into U(-1, 1)'s support) before D sees it: the latent
    regressors always (their loss is on logits), BiGAN by ``--encoder_output=squash`` (authors' dist.py)."""
    return self.E_LOGITS or self.config.encoder_output == 'squash'

  @property
  def encoder_kind(self) -> str:
    """'mlp', 'alexnet' (conv, encoder input >= 64 px) or 'dcgan' (conv, smaller inputs); ``--encoder`` overrides."""
    if self.architecture == 'mlp':
      return 'mlp'
    return self.config.encoder or ('alexnet' if self.encoder_resolution >= ALEXNET_MIN else 'dcgan')

  def data_options(self, eval: bool = False) -> dict:  # pylint: disable=redefined-builtin
    """``data.Batches`` keywords. Conv (natural images, appendix C.2): shorter edge to 72/64 of the size, random
    crop, horizontal flip; MLP: none (``--augment`` overrides). ``eval``: center crop, no flip."""
    c = self.config
    aug = c.augment if c.augment is not None else self.architecture == 'conv'
    r = self.encoder_resolution
    load = c.load_size or (int(round(r * LOAD_RATIO)) if aug else None)
    train_aug = aug and not eval
    return dict(resolution=r, load_size=load, crop='random' if train_aug else 'center', flip=train_aug)

  # -- networks ------------------------------------------------------------------------------------------------

  def generator(self, axis_name=None):
    c = self.config
    if self.architecture == 'mlp':
      return models.MLPGenerator(resolution=self.resolution, channels=self.channels, hidden=c.hidden,
                                 bias=c.layer_bias, first_bn=c.g_first_bn, z_hidden=c.z_into_g,
                                 output='sigmoid' if self.data_range == 'unit' else 'tanh',
                                 axis_name=axis_name, dtype=c.dtype)
    return models.Generator(resolution=self.resolution, width=c.width, kernel_size=c.kernel_size,
                            channels=self.channels, bn_scale_bias=c.bn_scale_bias is not False, bias=c.layer_bias,
                            z_hidden=c.z_into_g, axis_name=axis_name, dtype=c.dtype, upsample_impl=c.upsample_impl)

  def encoder(self, axis_name=None):
    c = self.config
    kind = self.encoder_kind
    if kind == 'mlp':
      return models.MLPEncoder(z_dim=self.z_dim, hidden=c.hidden, bias=c.layer_bias, axis_name=axis_name,
                               dtype=c.dtype)
    if kind == 'alexnet':
      return models.AlexNetEncoder(z_dim=self.z_dim, pool5=c.alexnet_pool5, bias=c.layer_bias, axis_name=axis_name,
                                   dtype=c.dtype)
    if kind == 'dcgan':
      return models.ConvEncoder(resolution=self.encoder_resolution, width=c.width, kernel_size=c.kernel_size,
                                z_dim=self.z_dim, bn_scale_bias=c.bn_scale_bias is not False, bias=c.layer_bias,
                                axis_name=axis_name, dtype=c.dtype)
    raise ValueError(f'unknown --encoder={kind!r}: use alexnet or dcgan')

  def discriminator(self, axis_name=None):
    c = self.config
    joint = self.D_KIND == 'joint'
    if self.architecture == 'mlp':
      return models.MLPDiscriminator(hidden=c.hidden, joint=joint, z_into=c.z_into_d, bias=c.layer_bias,
                                     logit_init=c.d_logit_init, axis_name=axis_name, dtype=c.dtype)
    common = dict(resolution=self.resolution, width=c.width, kernel_size=c.kernel_size,
                  bn_scale_bias=c.bn_scale_bias is not False, axis_name=axis_name, dtype=c.dtype)
    if joint:
      return models.JointDiscriminator(z_into=c.z_into_d, bias=c.layer_bias, logit_init=c.d_logit_init, **common)
    return models.Discriminator(**common)

  def networks(self, axis_name: Optional[str] = None) -> dict:
    make = {'G': self.generator, 'D': self.discriminator, 'E': self.encoder}
    return {k: make[k](axis_name) for k in self.NETS}

  def optimizers(self) -> dict:
    tx = optimizer(self.config)
    return {k: tx for k in self.TRAINED}

  @property
  def schedule(self):
    """The step size as a function of the update count (for inspection and logging)."""
    return lr_schedule(self.config)

  # -- state ---------------------------------------------------------------------------------------------------

  def _init_net(self, name, module, key):
    z = jnp.zeros((2, self.z_dim))
    if name == 'G':
      return module.init(key, z, train=False)
    if name == 'E':
      return module.init(key, jnp.zeros((2, self.encoder_resolution, self.encoder_resolution, self.channels)),
                         train=False)
    x = jnp.zeros((2, self.resolution, self.resolution, self.channels))
    return module.init(key, x, z, train=False) if self.D_KIND == 'joint' else module.init(key, x, train=False)

  def init(self, key) -> TrainState:
    nets = self.networks()
    keys = dict(zip(('G', 'D', 'E', 'state'), jax.random.split(key, 4)))
    variables = {k: self._init_net(k, m, keys[k]) for k, m in nets.items()}
    return self._state(keys['state'], {k: v['params'] for k, v in variables.items()},
                       {k: v.get('batch_stats', {}) for k, v in variables.items()})

  def _state(self, key, params, batch_stats) -> TrainState:
    txs = self.optimizers()
    return TrainState(step=jnp.zeros((), jnp.int32), key=key, params=params, batch_stats=batch_stats,
                      opt_state={k: txs[k].init(params[k]) for k in self.TRAINED})

  def _z(self, state, b: int):
    """z ~ U(-1, 1)^z_dim drawn for the global batch, then this device's slice: any device count, same step."""
    kz = jax.random.fold_in(state.key, state.step)
    return parallel.shard_slice(sample_z(kz, b * parallel.num_shards(), self.z_dim), b)

  def _update(self, state: TrainState, grads: dict, batch_stats: dict, metrics: dict):
    """Averages gradients over devices and applies every optimiser (all at once: simultaneous updates)."""
    txs = self.optimizers()
    grads = parallel.pmean(grads)
    params, opt_state = dict(state.params), dict(state.opt_state)
    for k in self.TRAINED:
      upd, opt_state[k] = txs[k].update(grads[k], state.opt_state[k], state.params[k])
      params[k] = optax.apply_updates(state.params[k], upd)
    new = state.replace(step=state.step + 1, params=params, batch_stats={**state.batch_stats, **batch_stats},
                        opt_state=opt_state)
    return new, parallel.pmean(metrics)

  # -- using a trained model -------------------------------------------------------------------------------

  def images_from_g(self, raw):
    """G's raw output -> images in [-1, 1]."""
    if self.data_range == 'unit' and self.architecture != 'mlp':
      raw = (raw + 1.0) * 0.5
    return self.from_model(raw)

  def _g(self, G, params, batch_stats, z, train: bool):
    """G(z) in the networks' range (the conv G's tanh moved to [0, 1] for 'unit'); in training mode
    (output, updated batch_stats)."""
    out = _apply(G, params, batch_stats, z, train=train)
    fix = (lambda x: (x + 1.0) * 0.5) if self.data_range == 'unit' and self.architecture != 'mlp' else (lambda x: x)
    return (fix(out[0]), out[1]) if train else fix(out)

  def _generate(self, state, z, use_running_average: bool = True):
    """G(z) in [-1, 1] (running batchnorm statistics, or this batch's)."""
    G = self.networks()['G']
    if use_running_average:
      return self.from_model(self._g(G, state.params['G'], state.batch_stats.get('G'), z, train=False))
    return self.from_model(self._g(G, state.params['G'], state.batch_stats.get('G'), z, train=True)[0])

  @functools.partial(jax.jit, static_argnums=(0,), static_argnames=('use_running_average',))
  def generate(self, state: TrainState, z, use_running_average: bool = True):
    """G(z) in [-1, 1] at G's resolution (running batchnorm statistics by default)."""
    return self._generate(state, z, use_running_average)

  @functools.partial(jax.jit, static_argnums=(0, 3), static_argnames=('use_running_average',))
  def sample(self, state: TrainState, key, n: int, use_running_average: bool = True):
    """n images G(z), z ~ U(-1, 1)^z_dim."""
    return self._generate(state, sample_z(key, n, self.z_dim), use_running_average)

  def _e_train(self, E, params, batch_stats, x):
    """E(x) in training mode on x in the networks' range: (z, updated batch_stats); z = 2 sigmoid(E's output) - 1
    when ``e_squash``."""
    out, bs = _apply(E, params, batch_stats, x, train=True)
    return (logits_to_z(out) if self.e_squash else out), bs

  def _encode(self, state, x):
    E = self.networks()['E']
    out = E.apply(state.variables('E'), self.to_model(x), train=False)
    return logits_to_z(out) if self.e_squash else out

  @functools.partial(jax.jit, static_argnums=(0,))
  def encode(self, state: TrainState, x):
    """E(x) as D sees it (running batchnorm statistics); x in [-1, 1] at the encoder resolution. With
    ``e_squash``: 2 sigmoid(E's linear output) - 1."""
    return self._encode(state, x)

  @functools.partial(jax.jit, static_argnums=(0,))
  def reconstruct(self, state: TrainState, x):
    """G(E(x)) at G's resolution, in [-1, 1]."""
    return self._generate(state, self._encode(state, x))

  def display(self, x):
    """Real images as G makes them (resized down when the encoder sees a larger size), for side-by-side sheets."""
    return _resize(jnp.asarray(x), self.resolution)

  def default_feature_layer(self) -> str:
    """MLP: 'logits', E's linear output (the authors' ``NNC_e``: E(x) before 2 sigmoid - 1; the 50-D latent).
    Conv: the last convolutional block before the linear map to z ('conv5_act' for AlexNet, 'pool5' with
    ``--alexnet_pool5``)."""
    kind = self.encoder_kind
    if kind == 'mlp':
      return 'logits'
    if kind == 'alexnet':
      return 'pool5' if self.config.alexnet_pool5 else 'conv5_act'
    return f'conv{len(models.layer_widths(self.encoder_resolution, self.config.width))}_act'

  def hidden_feature_layer(self) -> str:
    """E's last hidden layer, the input of its linear map to z (the authors' ``NNC_e-``)."""
    if self.encoder_kind == 'mlp':
      return 'fc2_act'
    return self.default_feature_layer()

  def feature_layers(self) -> tuple:
    """Names ``features`` accepts: E's sown activations, 'logits' (E's linear output) and 'z' (E(x) as D sees it)."""
    E = self.networks()['E']
    x = jnp.zeros((1, self.encoder_resolution, self.encoder_resolution, self.channels))
    abstract = jax.eval_shape(lambda p: E.apply(p, x, train=False, mutable=['intermediates']),
                              jax.eval_shape(lambda: E.init(jax.random.PRNGKey(0), x, train=False)))
    return tuple(abstract[1]['intermediates']) + ('logits', 'z')

  def features(self, state: TrainState, x, layer: Optional[str] = None):
    """E's activations for x (in [-1, 1]), flattened to (N, dims): ``layer`` names one ('fc2_act', 'conv3_act',
    'logits', 'z', ...) or several joined by commas (concatenated); default ``default_feature_layer()``. Jitted
    (one compilation shared by every model with the same encoder)."""
    names = tuple((layer or self.default_feature_layer()).split(','))
    return _features(self.networks()['E'], self.e_squash, names, state.variables('E'), self.to_model(x))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _features(E, squash: bool, names: tuple, variables, x):
  out, inter = E.apply(variables, x, train=False, mutable=['intermediates'])
  acts = {k: v[0] for k, v in inter['intermediates'].items()}
  acts['logits'] = out
  acts['z'] = logits_to_z(out) if squash else out
  return _select(names, acts)


def _select(names, acts: dict):
  missing = [n for n in names if n not in acts]
  if missing:
    raise ValueError(f'unknown feature layer(s) {missing}: choose from {sorted(acts)}')
  return jnp.concatenate([models.flatten(acts[n]).astype(jnp.float32) for n in names], axis=-1)


# -- BiGAN ----------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BiGAN(_BiGANFamily):
  """``--model=bigan``: G, E and the joint D(x, z), updated simultaneously from one batch (section 3.4, app. B)."""

  def train_step(self, state: TrainState, batch: dict):
    """Per-device body of the data-parallel step; collectives over ``parallel.AXIS``."""
    nets = self.networks(parallel.AXIS)
    G, D, E = nets['G'], nets['D'], nets['E']
    p, bs = state.params, state.batch_stats
    x = self.to_model(batch['image'])       # at the encoder resolution, in the networks' range
    z = self._z(state, x.shape[0])
    x_d = _resize(x, self.resolution)       # g_X (section 3.5): identity unless E sees a larger image

    fake, g_vjp, bs_g = jax.vjp(lambda pg: self._g(G, pg, bs['G'], z, train=True), p['G'], has_aux=True)
    ez, e_vjp, bs_e = jax.vjp(lambda pe: self._e_train(E, pe, bs['E'], x), p['E'], has_aux=True)

    def d_forward(pd, ez, fake):
      logits_real, b = _apply(D, pd, bs['D'], x_d, ez, train=True)
      logits_fake, b = _apply(D, pd, b, fake, z, train=True)
      return (logits_real, logits_fake), b

    logits, d_vjp, bs_d = jax.vjp(d_forward, p['D'], ez, fake, has_aux=True)
    # All gradients at the current parameters: D's from V, G's and E's from the inverse objective.
    (d_loss, ge_loss) = bigan_losses(*logits)
    ct_d = jax.grad(lambda lg: bigan_losses(*lg)[0])(logits)
    ct_ge = jax.grad(lambda lg: bigan_losses(*lg)[1])(logits)
    d_grads = d_vjp(ct_d)[0]
    _, ez_ct, fake_ct = d_vjp(ct_ge)
    grads = {'D': d_grads, 'G': g_vjp(fake_ct)[0], 'E': e_vjp(ez_ct)[0]}
    lr, lf = logits
    metrics = {'d_loss': d_loss, 'g_loss': ge_loss,
               'd_real': jax.nn.sigmoid(lr).mean(),   # D(x, E(x))
               'd_fake': jax.nn.sigmoid(lf).mean(),   # D(G(z), z)
               'd_acc': 0.5 * ((lr > 0).mean() + (lf < 0).mean())}
    return self._update(state, grads, {'G': bs_g, 'D': bs_d, 'E': bs_e}, metrics)


# -- Joint latent regressor ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class JointLatentRegressor(_BiGANFamily):
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
    w = self.config.jlr_weight

    fake, g_vjp, bs_g = jax.vjp(lambda pg: self._g(G, pg, bs['G'], z, train=True), p['G'], has_aux=True)

    def d_forward(pd, fake):
      logits_real, b = _apply(D, pd, bs['D'], x, train=True)
      logits_fake, b = _apply(D, pd, b, fake, train=True)
      return (logits_real, logits_fake), b

    logits, d_vjp, bs_d = jax.vjp(d_forward, p['D'], fake, has_aux=True)
    d_loss, g_loss = gan_losses(*logits)
    d_grads = d_vjp(jax.grad(lambda lg: gan_losses(*lg)[0])(logits))[0]
    _, fake_ct = d_vjp(jax.grad(lambda lg: gan_losses(*lg)[1])(logits))

    def e_loss_fn(pe, fake):
      z_logits, b = _apply(E, pe, bs['E'], _resize(fake, self.encoder_resolution), train=True)
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

  def default_d_layer(self) -> str:
    """The last hidden layer of D (the input of its logit)."""
    if self.architecture == 'mlp':
      return 'fc2_act'
    return f'conv{len(models.layer_widths(self.resolution, self.config.width))}_act'

  def d_features(self, state: TrainState, x, layer: Optional[str] = None):
    """The "discriminator features" baseline (section 4.1): D's hidden activations for x (at G's resolution;
    resized if larger), flattened; ``layer`` as in ``features`` (default: D's last hidden layer). Jitted."""
    names = tuple((layer or self.default_d_layer()).split(','))
    return _d_features(self.networks()['D'], self.resolution, names, state.variables('D'), self.to_model(x))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _d_features(D, resolution: int, names: tuple, variables, x):
  _, inter = D.apply(variables, _resize(x, resolution), train=False, mutable=['intermediates'])
  return _select(names, {k: v[0] for k, v in inter['intermediates'].items()})


# -- Latent regressor ----------------------------------------------------------------------------------------

_GAN_CACHE: dict = {}


def _load_gan(workdir: str):
  """(GAN model object, host copies of G's params and batch_stats) from a trained run, cached per process."""
  key = os.path.abspath(workdir)
  if key not in _GAN_CACHE:
    from common import checkpoint
    gan, state, _ = checkpoint.load(workdir)
    if 'G' not in state.params:
      raise ValueError(f'--gan_workdir={workdir} holds no generator')
    _GAN_CACHE[key] = (gan, jax.device_get(state.params['G']), jax.device_get(state.batch_stats.get('G', {})))
  return _GAN_CACHE[key]


@dataclasses.dataclass(frozen=True)
class LatentRegressor(_BiGANFamily):
  """``--model=latent_regressor``: E trained with the latent regressor loss against a frozen, already trained G.

  The GAN comes from ``--gan_workdir``: any run with a G, for example a ``joint_latent_regressor`` run (its G and
  D are a plain GAN's: E never feeds back into them), a ``bigan`` run, or a ``dcgan`` run. G's architecture, z
  size and resolution are the GAN's; G is copied into this run's state at init (so checkpoints are
  self-contained) and never updated. G makes E's training images with batch statistics, as in GAN training.
  """
  gan: Any = None    # the GAN's model object (from checkpoint.load)

  NETS: ClassVar[tuple] = ('G', 'E')
  TRAINED: ClassVar[tuple] = ('E',)
  D_KIND: ClassVar[Optional[str]] = None
  E_LOGITS: ClassVar[bool] = True

  @property
  def architecture(self) -> str:
    return getattr(self.gan, 'architecture', 'conv')

  @property
  def z_dim(self) -> int:
    return self.gan.z_dim

  @property
  def resolution(self) -> int:
    return self.gan.resolution

  def generator(self, axis_name=None):
    nets = self.gan.networks(axis_name)
    return nets['G'] if isinstance(nets, dict) else nets[0]     # DCGAN.networks() is (G, D)

  def init(self, key) -> TrainState:
    _, g_params, g_stats = _load_gan(self.config.gan_workdir)
    ke, ks = jax.random.split(key)
    ve = self._init_net('E', self.encoder(), ke)
    g_params = jax.tree_util.tree_map(jnp.asarray, g_params)
    g_stats = jax.tree_util.tree_map(jnp.asarray, g_stats)
    return self._state(ks, {'G': g_params, 'E': ve['params']}, {'G': g_stats, 'E': ve.get('batch_stats', {})})

  def train_step(self, state: TrainState, batch: dict):
    nets = self.networks(parallel.AXIS)
    G, E = nets['G'], nets['E']
    b = batch['image'].shape[0]
    z = self._z(state, b)
    fake, _ = _apply(G, state.params['G'], state.batch_stats['G'], z, train=True)   # frozen: stats discarded
    fake = self.to_model(self.gan.images_from_g(fake))                               # the GAN's range -> ours
    fake = jax.lax.stop_gradient(_resize(fake, self.encoder_resolution))

    def e_loss_fn(pe):
      z_logits, bs = _apply(E, pe, state.batch_stats['E'], fake, train=True)
      return latent_regression_loss(z_logits, z), (bs, z_logits)

    (e_loss, (bs_e, z_logits)), e_grads = jax.value_and_grad(e_loss_fn, has_aux=True)(state.params['E'])
    metrics = {'e_loss': e_loss, 'z_err': jnp.abs(logits_to_z(z_logits) - z).mean()}
    return self._update(state, {'E': e_grads}, {'E': bs_e}, metrics)


# -- Autoencoder ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Autoencoder(_BiGANFamily):
  """``--model=autoencoder``: E and G (BiGAN's architectures) minimising the l2 or l1 error of G(E(x)); no D."""
  NETS: ClassVar[tuple] = ('G', 'E')
  TRAINED: ClassVar[tuple] = ('G', 'E')
  D_KIND: ClassVar[Optional[str]] = None

  def train_step(self, state: TrainState, batch: dict):
    nets = self.networks(parallel.AXIS)
    G, E = nets['G'], nets['E']
    x = self.to_model(batch['image'])
    target = _resize(x, self.resolution)

    def loss_fn(params):
      z, bs_e = self._e_train(E, params['E'], state.batch_stats['E'], x)
      x_hat, bs_g = self._g(G, params['G'], state.batch_stats['G'], z, train=True)
      return reconstruction_loss(x_hat, target, self.config.recon_loss), {'E': bs_e, 'G': bs_g}

    (loss, bs), grads = jax.value_and_grad(loss_fn, has_aux=True)({'G': state.params['G'], 'E': state.params['E']})
    return self._update(state, grads, bs, {'recon_loss': loss})


MODELS = {'bigan': BiGAN, 'joint_latent_regressor': JointLatentRegressor, 'latent_regressor': LatentRegressor,
          'autoencoder': Autoencoder}


def build(config: Config, channels: int, num_classes: Optional[int] = None):
  """The BiGAN-family model named by ``config.model``."""
  if config.model not in MODELS:
    raise ValueError(f'unknown BiGAN-family model {config.model!r}: choose one of {", ".join(MODELS)}')
  if config.model == 'latent_regressor':
    if not config.gan_workdir:
      raise ValueError('--model=latent_regressor needs --gan_workdir=DIR of a trained GAN (e.g. a '
                       'joint_latent_regressor, bigan or dcgan run)')
    gan = _load_gan(config.gan_workdir)[0]
    if gan.config.model == 'cdcgan':
      raise ValueError(f'--gan_workdir={config.gan_workdir} is a conditional GAN: use an unconditional one')
    if gan.channels != channels:
      raise ValueError(f'--gan_workdir={config.gan_workdir} makes {gan.channels}-channel images, '
                       f'{config.dataset} has {channels}')
    model = LatentRegressor(config, channels=channels, num_classes=num_classes or 0, gan=gan)
  else:
    model = MODELS[config.model](config, channels=channels, num_classes=num_classes or 0)
  _ = model.encoder_kind   # validate architecture / encoder flags early
  if model.encoder_kind == 'dcgan':
    models.layer_widths(model.encoder_resolution, config.width)   # raises on unsupported sizes
  if (model.D_KIND == 'joint' and model.architecture == 'conv' and config.z_into_d == 'after_first'
      and len(models.layer_widths(model.resolution, config.width)) < 2):
    raise ValueError(f'--resolution={model.resolution}: the joint D has a single conv layer, so z has no layer after '
                     'the first to enter: use --resolution=16 or more, or --z_into_d=every_layer')
  return model
