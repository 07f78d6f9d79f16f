"""What BiGAN and its baselines share: the networks, the optimiser, the state, the preprocessing and the
trained-model API (``common.model.Model``), in one base class.

Section 4.2: "The same architecture and optimization algorithm is used across all methods". Subclasses set
``NETS`` (the networks in the state), ``TRAINED`` (those with an optimiser), ``D_KIND`` ('joint', 'plain' or
None) and ``E_LOGITS`` (E's linear output is a logit per latent dimension, as for the latent regressors).

Defaults filled in by ``create`` (the paper's where it speaks, else the authors' code's; docs/fidelity.md):
MLP networks for 1-channel data (appendix C.1), conv otherwise (C.2); z ~ U(-1, 1)^50 (MLP) or ^200 (conv);
28 px (MLP) or 64 px (conv); the MLP networks work on images in [0, 1] with a sigmoid G (authors' MNIST
range), conv ones in [-1, 1] (the API is [-1, 1] either way: the model converts at its edges); natural images
get the paper's augmentation (shorter edge 72/64 of the size, random crop, horizontal flip).

Generalised BiGAN (section 3.5): the pipeline makes images at the encoder size; g_X is an antialiased bilinear
resize (``common.images.resize``) down to G's size. Latent regressors, whose E sees only G(z), get G(z) resized
up to E's size.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp
import optax

from bigan_jax import models
from bigan_jax.objectives import logits_to_z, lr_schedule, optimizer
from common import features as feats
from common import images, networks, parallel
from common.config import Config
from common.gan import sample_z
from common.model import DataFacts, check_net
from common.state import TrainState

Z_DIM = {'mlp': 50, 'conv': 200}        # section 4.2: U(-1, 1)^50; section 4.3: U(-1, 1)^200
RESOLUTION = {'mlp': 28, 'conv': 64}    # MNIST 28x28; ImageNet crops 64x64
LOAD_RATIO = 72 / 64                    # appendix C.2: shorter edge 72, random 64x64 crop
ALEXNET_MIN = 64                        # encoder input at least this large -> AlexNet E, else the DCGAN-mirror E
WEIGHT_DECAY = 2.5e-5                   # appendix C
WIDTH = 128                             # appendix C.2: "those used by Radford et al." (the authors' script: 64)


def apply(module, params, batch_stats, *args, train: bool):
  """module.apply with batch statistics; in training mode returns (output, updated batch_stats)."""
  v = {'params': params}
  if batch_stats:
    v['batch_stats'] = batch_stats
  if not train:
    return module.apply(v, *args, train=False)
  out, upd = module.apply(v, *args, train=True, mutable=['batch_stats'])
  return out, upd.get('batch_stats', {})


def _identity(x):
  return x


@dataclasses.dataclass(frozen=True)
class BiGANFamily:
  """Networks, optimiser, preprocessing and the trained-model API shared by BiGAN and its baselines."""
  config: Config
  channels: int = 1
  num_classes: int = 0

  NETS: ClassVar[tuple] = ('G', 'D', 'E')
  TRAINED: ClassVar[tuple] = ('G', 'D', 'E')
  D_KIND: ClassVar[Optional[str]] = 'joint'
  E_LOGITS: ClassVar[bool] = False

  # -- construction: the defaults resolved into the config ---------------------------------------------------

  @classmethod
  def create(cls, config: Config, facts: DataFacts):
    return cls(cls.resolve(config, facts.channels), channels=facts.channels, num_classes=facts.num_classes or 0)

  @classmethod
  def resolve(cls, config: Config, channels: int, architecture: Optional[str] = None,
              z_dim: Optional[int] = None, resolution: Optional[int] = None) -> Config:
    """The config with every default this family fills in; ValueError on settings it cannot take."""
    m, b, d = config.model, config.bigan, config.data
    arch = architecture or b.architecture or ('mlp' if channels == 1 else 'conv')
    res = resolution or m.resolution or RESOLUTION[arch]
    enc_res = b.encoder_resolution or res
    encoder = 'mlp' if arch == 'mlp' else b.encoder or ('alexnet' if enc_res >= ALEXNET_MIN else 'dcgan')
    if arch == 'mlp' and b.encoder == 'alexnet':
      raise ValueError('--encoder=alexnet needs --architecture=conv')
    augment = d.augment if d.augment is not None else arch == 'conv'
    out = config.replace(
        architecture=arch, resolution=res, z_dim=z_dim or m.z_dim or Z_DIM[arch], encoder_resolution=enc_res,
        encoder=None if encoder == 'mlp' else encoder, augment=augment,
        load_size=d.load_size or (int(round(enc_res * LOAD_RATIO)) if augment else None),
        bn_scale_bias=m.bn_scale_bias is not False, width=m.width or WIDTH,
        weight_decay=m.weight_decay if m.weight_decay is not None else WEIGHT_DECAY,
        data_range=b.data_range or ('unit' if arch == 'mlp' else 'symmetric'), layer_bias=bool(m.layer_bias),
        bn_scale_init=m.bn_scale_init or 'ones', project_bn=m.project_bn or 'unit',
        lr_decay=m.lr_decay or 'exponential', sample_bn=m.sample_bn or 'running')
    m = out.model
    if arch == 'conv':
      networks.layer_widths(res, m.width)                 # raises on unsupported sizes
      if encoder == 'dcgan':
        networks.layer_widths(enc_res, m.width)
      if (cls.D_KIND == 'joint' and b.z_into_d == 'after_first' and len(networks.layer_widths(res, m.width)) < 2):
        raise ValueError(f'--resolution={res}: the joint D has a single conv layer, so z has no layer after the first '
                         'to enter: use --resolution=16 or more, or --z_into_d=every_layer')
    return out

  # -- sizes and capabilities -------------------------------------------------------------------------------

  @property
  def architecture(self) -> str:
    return self.config.bigan.architecture

  @property
  def z_dim(self) -> int:
    return self.config.model.z_dim

  @property
  def resolution(self) -> int:
    """The size G makes and D sees."""
    return self.config.model.resolution

  @property
  def encoder_resolution(self) -> int:
    """The size E sees (section 3.5: may be larger than G's); the input pipeline produces this size."""
    return self.config.bigan.encoder_resolution

  @property
  def encoder_kind(self) -> str:
    """'mlp', 'alexnet' (conv, encoder input >= 64 px) or 'dcgan' (conv, smaller inputs)."""
    return 'mlp' if self.architecture == 'mlp' else self.config.bigan.encoder

  @property
  def data_range(self) -> str:
    """'unit' ([0, 1]: the authors' MNIST networks, sigmoid G) or 'symmetric' ([-1, 1], tanh G)."""
    return self.config.bigan.data_range

  @property
  def conditional(self) -> bool:
    return False

  @property
  def has_encoder(self) -> bool:
    return 'E' in self.NETS

  @property
  def feature_nets(self) -> tuple:
    return ('E', 'D') if self.D_KIND == 'plain' else ('E',)

  @property
  def e_squash(self) -> bool:
    """E's linear output goes through 2 sigmoid - 1 (into U(-1, 1)'s support) before D sees it: the latent
    regressors always (their loss is on logits), BiGAN by ``--encoder_output=squash`` (authors' dist.py)."""
    return self.E_LOGITS or self.config.bigan.encoder_output == 'squash'

  def to_model(self, x):
    """Images in [-1, 1] -> the networks' range."""
    return (x + 1.0) * 0.5 if self.data_range == 'unit' else x

  def from_model(self, x):
    """The networks' range -> [-1, 1]."""
    return 2.0 * x - 1.0 if self.data_range == 'unit' else x

  def data_options(self, eval: bool = False) -> dict:  # pylint: disable=redefined-builtin
    """Conv (natural images, appendix C.2): shorter edge to 72/64 of the size, random crop, horizontal flip;
    MLP: none (``--augment`` overrides). ``eval``: center crop, no flip."""
    d = self.config.data
    train_aug = d.augment and not eval
    return dict(resolution=self.encoder_resolution, load_size=d.load_size, crop='random' if train_aug else 'center',
                flip=bool(train_aug))

  # -- networks ----------------------------------------------------------------------------------------------

  @property
  def bn(self) -> networks.BNSpec:
    m = self.config.model
    return networks.BNSpec(m.bn_momentum, m.bn_epsilon, m.bn_scale_init)

  def generator(self, axis_name=None):
    m, b = self.config.model, self.config.bigan
    if self.architecture == 'mlp':
      return networks.MLPGenerator(resolution=self.resolution, channels=self.channels, hidden=m.hidden,
                                   bias=m.layer_bias, first_bn=b.g_first_bn, z_hidden=b.z_into_g,
                                   output='sigmoid' if self.data_range == 'unit' else 'tanh', bn=self.bn,
                                   axis_name=axis_name, dtype=m.dtype)
    return networks.Generator(resolution=self.resolution, width=m.width, kernel_size=m.kernel_size,
                              channels=self.channels, bn_scale_bias=m.bn_scale_bias, bias=m.layer_bias,
                              z_hidden=b.z_into_g, project_bn=m.project_bn, bn=self.bn, axis_name=axis_name,
                              dtype=m.dtype, upsample_impl=m.upsample_impl)

  def encoder(self, axis_name=None):
    m, b = self.config.model, self.config.bigan
    kind = self.encoder_kind
    if kind == 'mlp':
      return models.MLPEncoder(z_dim=self.z_dim, hidden=m.hidden, bias=m.layer_bias, bn=self.bn, axis_name=axis_name,
                               dtype=m.dtype)
    if kind == 'alexnet':
      return models.AlexNetEncoder(z_dim=self.z_dim, pool5=b.alexnet_pool5, bias=m.layer_bias, bn=self.bn,
                                   axis_name=axis_name, dtype=m.dtype)
    return models.ConvEncoder(resolution=self.encoder_resolution, width=m.width, kernel_size=m.kernel_size,
                              z_dim=self.z_dim, bn_scale_bias=m.bn_scale_bias, bias=m.layer_bias, bn=self.bn,
                              axis_name=axis_name, dtype=m.dtype)

  def discriminator(self, axis_name=None):
    m, b = self.config.model, self.config.bigan
    joint = self.D_KIND == 'joint'
    if self.architecture == 'mlp':
      return networks.MLPDiscriminator(hidden=m.hidden, joint=joint, z_into=b.z_into_d, bias=m.layer_bias,
                                       logit_init=b.d_logit_init, bn=self.bn, axis_name=axis_name, dtype=m.dtype)
    common = dict(resolution=self.resolution, width=m.width, kernel_size=m.kernel_size,
                  bn_scale_bias=m.bn_scale_bias, bn=self.bn, axis_name=axis_name, dtype=m.dtype)
    if joint:
      return networks.JointDiscriminator(z_into=b.z_into_d, bias=m.layer_bias, logit_init=b.d_logit_init, **common)
    return networks.Discriminator(bias=m.layer_bias, **common)

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

  # -- the pieces of a step -----------------------------------------------------------------------------------

  def _g(self, G, params, batch_stats, z, train: bool):
    """G(z) in the networks' range (the conv G's tanh moved to [0, 1] for 'unit'); in training mode
    (output, updated batch_stats)."""
    out = apply(G, params, batch_stats, z, train=train)
    if not (self.data_range == 'unit' and self.architecture != 'mlp'):
      return out
    fix = lambda x: (x + 1.0) * 0.5  # noqa: E731
    return (fix(out[0]), out[1]) if train else fix(out)

  def _e_train(self, E, params, batch_stats, x):
    """E(x) in training mode on x in the networks' range: (z, updated batch_stats); z = 2 sigmoid(E's output)
    - 1 when ``e_squash``."""
    out, bs = apply(E, params, batch_stats, x, train=True)
    return (logits_to_z(out) if self.e_squash else out), bs

  # -- using a trained model ----------------------------------------------------------------------------------

  def _generate(self, state, z, use_running_average: bool = True, axis_name: Optional[str] = None, drop=None):
    """G(z) in [-1, 1] (running batchnorm statistics, or this batch's)."""
    G = self.networks(axis_name)['G']
    kw = {} if drop is None else {'drop': drop}
    if drop is not None and self.architecture == 'mlp':
      raise ValueError('the MLP G has no feature maps to drop: use a conv model')
    v = state.variables('G')
    if use_running_average:
      out = G.apply(v, z, train=False, **kw)
    else:
      out, _ = G.apply(v, z, train=True, mutable=['batch_stats'], **kw)
    if self.data_range == 'unit' and self.architecture != 'mlp':
      out = (out + 1.0) * 0.5
    return self.from_model(out)

  @functools.partial(jax.jit, static_argnums=(0,), static_argnames=('use_running_average', 'axis_name'))
  def generate(self, state: TrainState, z, y=None, drop=None, use_running_average: bool = True,
               axis_name: Optional[str] = None):
    """G(z) in [-1, 1] at G's resolution (running batchnorm statistics by default). ``y`` is ignored
    (unconditional); ``drop`` zeroes feature maps of the conv G (``common.networks.Generator``)."""
    return self._generate(state, z, use_running_average, axis_name, drop)

  @functools.partial(jax.jit, static_argnums=(0, 3), static_argnames=('use_running_average',))
  def sample(self, state: TrainState, key, n: int, y=None, use_running_average: bool = True):
    """n images G(z), z ~ U(-1, 1)^z_dim."""
    return self._generate(state, sample_z(key, n, self.z_dim), use_running_average)

  def _encode(self, state, x):
    E = self.networks()['E']
    out = E.apply(state.variables('E'), self.to_model(images.resize(x, self.encoder_resolution)), train=False)
    return logits_to_z(out) if self.e_squash else out

  @functools.partial(jax.jit, static_argnums=(0,))
  def encode(self, state: TrainState, x):
    """E(x) as D sees it (running batchnorm statistics); x in [-1, 1], resized to the encoder resolution. With
    ``e_squash``: 2 sigmoid(E's linear output) - 1."""
    return self._encode(state, x)

  @functools.partial(jax.jit, static_argnums=(0,))
  def reconstruct(self, state: TrainState, x):
    """G(E(x)) at G's resolution, in [-1, 1]."""
    return self._generate(state, self._encode(state, x))

  def display(self, x):
    """Real images as G makes them (resized down when the encoder sees a larger size), for side-by-side sheets."""
    return images.resize(jnp.asarray(x), self.resolution)

  # -- features ----------------------------------------------------------------------------------------------

  def default_feature_layer(self, net: Optional[str] = None) -> str:
    """E: 'logits' for the MLP, E's linear output (the authors' ``NNC_e``: E(x) before 2 sigmoid - 1), the last
    conv block for conv encoders ('conv5_act' for AlexNet, 'pool5' with ``--alexnet_pool5``). D (a plain D):
    its last hidden layer (the input of its logit; the authors' ``NNC_d``)."""
    net = check_net(self, net)
    if net == 'D':
      if self.architecture == 'mlp':
        return 'fc2_act'
      return f'conv{len(networks.layer_widths(self.resolution, self.config.model.width))}_act'
    kind = self.encoder_kind
    if kind == 'mlp':
      return 'logits'
    if kind == 'alexnet':
      return 'pool5' if self.config.bigan.alexnet_pool5 else 'conv5_act'
    return f'conv{len(networks.layer_widths(self.encoder_resolution, self.config.model.width))}_act'

  def hidden_feature_layer(self) -> str:
    """E's last hidden layer, the input of its linear map to z (the authors' ``NNC_e-``)."""
    return 'fc2_act' if self.encoder_kind == 'mlp' else self.default_feature_layer('E')

  def _net_input(self, net: str, x):
    size = self.encoder_resolution if net == 'E' else self.resolution
    return self.networks()[net], self.to_model(images.resize(jnp.asarray(x), size))

  def feature_layers(self, net: Optional[str] = None) -> tuple:
    """Names ``features`` accepts: the net's sown activations; for E also 'logits' (its linear output) and 'z'
    (E(x) as D sees it)."""
    net = check_net(self, net)
    module = self.networks()[net]
    size = self.encoder_resolution if net == 'E' else self.resolution
    x = jnp.zeros((1, size, size, self.channels))
    variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), x, train=False))
    names = tuple(feats.sown_layers(module, variables, (x,)))
    return names + (('logits', 'z') if net == 'E' else ())

  def recompute_batch_stats(self, state: TrainState, batches, net: Optional[str] = None) -> TrainState:
    """``state`` with ``net``'s (E or a plain D) batchnorm statistics replaced by their average over ``batches``
    of real images in [-1, 1]: the authors' "deploy" statistics (1000 training batches before each evaluation)."""
    net = check_net(self, net)
    module = self.networks()[net]
    return feats.recompute_batch_stats(module, state, net, (self._net_input(net, x)[1] for x in batches))

  def features(self, state: TrainState, x, net: Optional[str] = None, layer: Optional[str] = None,
               pool: Optional[int] = feats.GRID, y=None):
    """Activations of images x (in [-1, 1], resized to the net's input size) in E (default) or a plain D,
    flattened to (N, dims): ``layer`` names one ('fc2_act', 'conv3_act', 'logits', 'z', ...), several joined by
    commas (concatenated) or '*' (every hidden layer); default ``default_feature_layer(net)``; 4-D maps
    max-pooled to ``pool`` x ``pool`` (None: not pooled). Jitted."""
    net = check_net(self, net)
    module, xm = self._net_input(net, x)
    names = None if layer == '*' else feats.split_layers(layer or self.default_feature_layer(net))
    extra = {'logits': _identity, 'z': logits_to_z if self.e_squash else _identity} if net == 'E' else None
    return feats.sown_features(module, state.variables(net), (xm,), names, pool, extra)
