"""Run configuration in sections, the command-line flags made from it, and their validation.

``Config`` holds one frozen dataclass per concern: ``model`` (what is trained: the architecture and optimiser
flags both papers share), ``bigan`` (the BiGAN family's own), ``data``, ``loop``, ``eval`` and ``dist``. Every
field is a flag of the same name (``model.name`` is ``--model``), so flags keep their names whatever section
they live in; ``Config.make(**flags)`` and ``config.replace(**flags)`` take them by that name.

Every field carries its help text and its constraint (minimum, choices, ...): values are checked when a
``Config`` is built, and the command line checks each flag as it parses it, so a bad value is one line naming
the flag, the value and what is allowed. Fields left ``None`` are model-dependent defaults (``z_dim`` is 100
for DCGAN, 50 for the MLP BiGAN); the model fills them when it is built (``registry.build``), so the config a
run saves says what ran, and a resume compares effective values (``identity_diff``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from typing import Any, Optional

_TYPES = {'int': int, 'float': float, 'str': str, 'bool': bool}


class ConfigError(ValueError):
  """A flag value that is not allowed; the message names the flag, the value and what is allowed."""


def _f(default, help, *, flag=None, choices=None, min=None, max=None, above=None, identity=False, path=None):
  """A config field: its default, help text and constraint. ``identity``: a checkpoint of a run with another
  value cannot be resumed (it changes the parameters or the data the run sees). ``path``: 'dir', 'file',
  'workdir' or 'run' (a workdir that must already hold checkpoints): checked on the command line."""
  return dataclasses.field(default=default, metadata=dict(help=help, flag=flag, choices=choices, min=min, max=max,
                                                          above=above, identity=identity, path=path))


class _Section:
  """Base of the sections: every field is checked when a section is built."""

  def __post_init__(self):
    for f in dataclasses.fields(self):
      check(FIELDS[f.metadata['flag'] or f.name], getattr(self, f.name))


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Section):
  """What is trained: the model and the architecture / optimiser flags both papers share."""
  name: str = _f('dcgan', 'model to train (see the table in README.md or --help)', flag='model', identity=True)
  resolution: Optional[int] = _f(None, "image size G makes and D sees: 4 * 2^k for conv nets, e.g. 32, 64, 128 "
                                       "(default: 64; 28 for the permutation-invariant BiGAN)", min=4, max=1024,
                                 identity=True)
  z_dim: Optional[int] = _f(None, 'latent size (DCGAN 100; BiGAN 50 for MLP, 200 for conv)', min=1, identity=True)
  width: Optional[int] = _f(None, "channels of G's last hidden layer and D's first; doubling toward 4x4 (default "
                                   "128, the paper; cdcgan's MNIST network: 64)", min=1, identity=True)
  kernel_size: int = _f(5, 'convolution kernel size (paper 5; PyTorch example 4)', min=2, max=15, identity=True)
  bn_scale_bias: Optional[bool] = _f(None, 'batchnorm with learned scale and bias (default: true; false for '
                                            "cdcgan, the paper's conditional MNIST model)", identity=True)
  dtype: str = _f('float32', 'compute dtype of convolutions and matmuls (params, optimizer state and batchnorm '
                             'statistics stay float32)', choices=('float32', 'bfloat16'))
  upsample_impl: str = _f('auto', "G's fractionally-strided convolution: auto, subpixel (fast on CPU) or xla "
                                  '(lax.conv_transpose); the same function either way',
                          choices=('auto', 'subpixel', 'xla'))
  lr: float = _f(2e-4, 'Adam learning rate (paper 2e-4)', above=0.0)
  beta1: float = _f(0.5, 'Adam beta1 (paper 0.5)', min=0.0, max=0.999999)
  beta2: float = _f(0.999, 'Adam beta2', min=0.0, max=0.999999)
  hidden: int = _f(1024, 'MLP networks (BiGAN MLPs, mlp_gan): units in each of the two hidden layers (paper 1024)',
                   min=1, identity=True)
  weight_decay: Optional[float] = _f(None, "L2 weight decay added to the gradient (BiGAN: 2.5e-5 on multiplicative "
                                           "weights only, the paper; DCGAN: 1e-5 on every parameter, the authors' "
                                           "code; cdcgan: 2.5e-5)", min=0.0)
  variant: Optional[str] = _f(None, "the model's network variant: dcgan: paper (section 3, default) or imagenet32 "
                                    "(the authors' 32x32 ImageNet model, 3x3 kernels, the CIFAR-10 probe's D); "
                                    "cdcgan: mnist (the authors' conditional MNIST network at 28x28; default unless another "
                                    '--resolution is given) or paper '
                                    '(the conv DCGAN with one-hot labels)', choices=('paper', 'imagenet32', 'mnist'),
                              identity=True)
  layer_bias: Optional[bool] = _f(None, "biases on layers not followed by batchnorm (default false: the authors' "
                                        'layers have none)', identity=True)
  bn_scale_init: Optional[str] = _f(None, "batchnorm scale init: normal (N(1, 0.02), the DCGAN authors' gain_ifn; "
                                          "DCGAN default) or ones (BiGAN default, its authors' code)",
                                    choices=('normal', 'ones'), identity=True)
  bn_momentum: float = _f(0.9, 'batchnorm running averages: new = momentum * old + (1 - momentum) * batch '
                               "(PyTorch's momentum=0.1 is 0.9 here; the authors keep none)", min=0.0, max=0.9999)
  bn_epsilon: float = _f(1e-5, "batchnorm epsilon (the authors' code: 1e-8; kept at 1e-5, see docs/fidelity.md)",
                         above=0.0, max=1.0)
  project_bn: Optional[str] = _f(None, "batchnorm of the conv G's projection: unit (statistics per unit of the "
                                       "flat 4x4xC vector, the authors' code; default) or channel (per channel "
                                       'over the 4x4 map)', choices=('unit', 'channel'), identity=True)
  z_prior: str = _f('uniform', "z's distribution: uniform (U(-1, 1), the papers) or normal (N(0, 1), PyTorch's "
                               'example)', choices=('uniform', 'normal'), identity=True)
  lr_decay: Optional[str] = _f(None, 'learning-rate schedule: none (DCGAN), linear (to 0 over the second half: '
                                     "the authors' conditional MNIST script) or exponential (to --lr_final from "
                                     'halfway: BiGAN appendix C)', choices=('none', 'linear', 'exponential'))
  update_order: Optional[str] = _f(None, "DCGAN's updates: alternate (the authors' code: G with fresh z, then D on "
                                         "the real batch with new z; default) or joint (D then G on D's fake batch, "
                                         "PyTorch's example); BiGAN is always simultaneous (appendix B)",
                                   choices=('alternate', 'joint'))
  sample_bn: Optional[str] = _f(None, "batchnorm statistics when sampling: batch (this batch's, the DCGAN authors' "
                                      "code; DCGAN default) or running (running averages; BiGAN default)",
                                choices=('batch', 'running'))


@dataclasses.dataclass(frozen=True)
class BiGANConfig(_Section):
  """The BiGAN family (Donahue et al., appendices B, C); defaults are the paper's where it speaks, else the
  authors' code's (docs/fidelity.md)."""
  architecture: Optional[str] = _f(None, 'networks: mlp (permutation-invariant) or conv (default: mlp for '
                                         '1-channel data, conv otherwise)', choices=('mlp', 'conv'), identity=True)
  encoder_resolution: Optional[int] = _f(None, 'generalised BiGAN: encoder input size (e.g. 112 with 64x64 G/D)',
                                         min=4, max=1024, identity=True)
  encoder: Optional[str] = _f(None, 'conv encoder: alexnet or dcgan (a DCGAN-D mirror; default: alexnet when the '
                                    'encoder input is >= 64 px, else dcgan)', choices=('alexnet', 'dcgan'),
                              identity=True)
  lr_final: float = _f(2e-6, 'lr decays exponentially to this from halfway through training (paper 2e-6)',
                       above=0.0)
  recon_loss: str = _f('l2', 'autoencoder baseline loss', choices=('l2', 'l1'), identity=True)
  gan_workdir: Optional[str] = _f(None, 'latent_regressor: workdir of the trained GAN whose G is frozen', path='run')
  data_range: Optional[str] = _f(None, "the networks' pixel range: unit ([0, 1], sigmoid G output; default for the "
                                       "MLP, the authors' MNIST setting) or symmetric ([-1, 1], tanh; conv default)",
                                 choices=('unit', 'symmetric'), identity=True)
  encoder_output: str = _f('squash', "E's linear output mapped into the prior's support by 2 sigmoid - 1 before D "
                                     "sees it (squash, authors' dist.py) or used as is (linear)",
                           choices=('squash', 'linear'), identity=True)
  z_into_d: str = _f('after_first', 'joint D: z added before batchnorm at every hidden layer after the first '
                                    "(after_first: authors' code, the paper's 'each linear layer thereafter') or "
                                    'after batchnorm at every layer and the logit (every_layer)',
                     choices=('after_first', 'every_layer'), identity=True)
  z_into_g: bool = _f(True, "z re-enters G's hidden layers after the first (authors' code)", identity=True)
  g_first_bn: bool = _f(False, "MLP G: parameter-free batchnorm after the first hidden layer too (authors' code; "
                               'the paper: second layer only)', identity=True)
  d_logit_init: str = _f('normal', "D's logit weights: normal (N(0, 0.02), the paper) or zero (authors' code)",
                         choices=('normal', 'zero'), identity=True)
  alexnet_pool5: bool = _f(False, "AlexNet E: max-pool conv5 before the map to z (authors' code: no pool5)",
                           identity=True)
  jlr_weight: float = _f(0.25, "joint latent regressor: weight of the latent regression loss in G's and E's "
                               "objective (authors' --encode_gen_weight 0.25); 0: E alone, G untouched", min=0.0)


@dataclasses.dataclass(frozen=True)
class DataConfig(_Section):
  """The dataset and how it is read."""
  dataset: str = _f('digits', 'dataset name (digits, mnist, fashion_mnist, cifar10, svhn, celeba, lsun, '
                              'lsun/<category>, imagenet32, imagenet64, folder:PATH)', identity=True)
  split: str = _f('train', 'dataset split to train on', identity=True)
  data_dir: Optional[str] = _f(None, 'where TFDS keeps prepared data (default ~/tensorflow_datasets)', path='dir')
  manual_dir: Optional[str] = _f(None, 'directory holding original dataset files for offline preparation',
                                 path='dir')
  dedup: Optional[str] = _f(None, 'file of example ids to keep (kept.txt from launch/dedup.py)', path='file',
                            identity=True)
  strict_data: bool = _f(False, 'folder: datasets: stop on an unreadable image instead of skipping it')
  augment: Optional[bool] = _f(None, 'random crop from load_size and horizontal flip (BiGAN natural images)')
  load_size: Optional[int] = _f(None, 'shorter edge before cropping (default: resolution; BiGAN aug: 72)', min=1)
  data_workers: Optional[int] = _f(None, 'processes decoding and preprocessing images (default: from the CPU '
                                         'count; 0: in the training process)', min=0)


@dataclasses.dataclass(frozen=True)
class LoopConfig(_Section):
  """The training loop: length, batch, seed, cadence of logs, samples and checkpoints."""
  workdir: str = _f('runs/default', 'directory for checkpoints, samples, logs; the same command resumes',
                    path='workdir')
  steps: int = _f(10000, 'number of train steps (one D and one G update each)', min=1)
  batch_size: int = _f(128, 'global batch size, over all devices and processes (paper: 128)', min=1, identity=True)
  seed: int = _f(0, 'seed for parameters, latent draws and data order', min=0, max=2**32 - 1, identity=True)
  log_every: int = _f(50, 'steps between progress lines and TensorBoard scalars', min=1)
  sample_every: int = _f(500, 'steps between PNG sample grids (and TensorBoard images); 0: only at the end', min=0)
  checkpoint_every: int = _f(1000, 'steps between checkpoints (one is always written at the end); 0: only at the '
                                   'end', min=0)
  keep_checkpoints: int = _f(3, 'how many recent checkpoints to keep', min=1)
  keep_every: int = _f(0, 'also keep every checkpoint whose step is a multiple of this (0: none), e.g. milestones '
                          'of a long run to evaluate later', min=0)
  resume_step: Optional[int] = _f(None, 'resume from this checkpoint step instead of the newest readable one', min=0)
  num_samples: int = _f(64, 'images in each sample grid', min=1, max=4096)
  on_nan: str = _f('stop', 'on a non-finite loss: stop (keep the last good checkpoint) or rollback',
                   choices=('stop', 'rollback'))


@dataclasses.dataclass(frozen=True)
class EvalConfig(_Section):
  """Periodic sample-quality evaluation during training (common/quality.py; docs/evaluation.md)."""
  eval_every: int = _f(0, 'steps between sample-quality evaluations (0: none); the best state is kept in '
                          'WORKDIR/best', min=0)
  eval_metric: str = _f('fid', 'metric that picks the best checkpoint', choices=('fid', 'kid', 'precision', 'recall',
                                                                                   'density', 'coverage'))
  eval_samples: int = _f(5000, 'generated images per evaluation', min=2)
  feature_net_dir: Optional[str] = _f(None, "the project's feature classifier for --eval_every (default: "
                                             '<data_dir>/feature_nets/<dataset>-r32, trained on first use)',
                                      path='dir')
  inception_weights: Optional[str] = _f(None, 'FID Inception-V3 weights (pt_inception-2015-12-05 .pth or .npz): '
                                               'evaluate on Inception features instead of the classifier',
                                        path='file')


@dataclasses.dataclass(frozen=True)
class DistConfig(_Section):
  """Explicit multi-process runs (automatic on clusters JAX detects)."""
  coordinator_address: Optional[str] = _f(None, 'HOST:PORT of process 0, for explicit multi-process runs')
  num_processes: Optional[int] = _f(None, 'number of processes in an explicit multi-process run', min=1)
  process_id: Optional[int] = _f(None, 'this process index in an explicit multi-process run', min=0)


SECTIONS = {'model': ModelConfig, 'bigan': BiGANConfig, 'data': DataConfig, 'loop': LoopConfig,
            'eval': EvalConfig, 'dist': DistConfig}


@dataclasses.dataclass(frozen=True)
class Field:
  """One flag: where it lives and what it accepts."""
  flag: str
  section: str
  name: str
  kind: type            # int, float, str or bool
  optional: bool
  default: Any
  meta: dict

  @property
  def help(self) -> str:
    text = self.meta['help']
    return text if 'default' in text else f'{text} (default: {self.default})'


def _fields() -> dict[str, Field]:
  out = {}
  for section, cls in SECTIONS.items():
    for f in dataclasses.fields(cls):
      t = f.type if isinstance(f.type, str) else getattr(f.type, '__name__', str(f.type))
      kind = next(v for k, v in _TYPES.items() if k in t)
      flag = f.metadata['flag'] or f.name
      out[flag] = Field(flag, section, f.name, kind, 'Optional' in t, f.default, dict(f.metadata))
  return out


FIELDS = _fields()


def check(field: Field, value):
  """``value`` for ``field``, or ConfigError naming the flag, the value and what is allowed."""
  if value is None:
    if field.optional:
      return None
    raise ConfigError(f'--{field.flag} needs a value')
  kind, m = field.kind, field.meta
  ok_type = (isinstance(value, bool) if kind is bool else
             isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else
             isinstance(value, int) and not isinstance(value, bool) if kind is int else isinstance(value, str))
  if not ok_type:
    raise ConfigError(f'--{field.flag}={value!r}: expected {_kind_name(kind)}')
  if kind is float:
    value = float(value)
    if value != value or value in (float('inf'), float('-inf')):
      raise ConfigError(f'--{field.flag}={value}: expected a finite number')
  if m['choices'] is not None and value not in m['choices']:
    raise ConfigError(f'--{field.flag}={value}: choose one of {", ".join(m["choices"])}')
  if m['min'] is not None and value < m['min'] or m['max'] is not None and value > m['max'] or \
     m['above'] is not None and value <= m['above']:
    raise ConfigError(f'--{field.flag}={value}: {_range(field)}')
  if kind is str and '\x00' in value:
    raise ConfigError(f'--{field.flag}: contains a NUL character')
  return value


def _kind_name(kind) -> str:
  return {int: 'an integer', float: 'a number', bool: 'true or false', str: 'a string'}[kind]


def _range(field: Field) -> str:
  m, what = field.meta, _kind_name(field.kind)
  if m['above'] is not None:
    return f'must be {what} > {m["above"]:g}'
  if m['min'] is not None and m['max'] is not None:
    return f'must be {what} between {m["min"]:g} and {m["max"]:g}'
  if m['min'] is not None:
    return f'must be {what} >= {m["min"]:g}'
  return f'must be {what} <= {m["max"]:g}'


@dataclasses.dataclass(frozen=True)
class Config:
  """The whole run: one section per concern (module docstring)."""
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  bigan: BiGANConfig = dataclasses.field(default_factory=BiGANConfig)
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  loop: LoopConfig = dataclasses.field(default_factory=LoopConfig)
  eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
  dist: DistConfig = dataclasses.field(default_factory=DistConfig)

  @classmethod
  def make(cls, **flags) -> 'Config':
    """A config from flag values by flag name (``Config.make(model='bigan', steps=100)``); the rest default."""
    return cls().replace(**flags)

  def replace(self, **flags) -> 'Config':
    """A copy with some flags changed, by flag name."""
    per_section: dict[str, dict] = {}
    for flag, value in flags.items():
      f = FIELDS.get(flag)
      if f is None:
        raise ConfigError(f'unknown flag --{flag}')
      per_section.setdefault(f.section, {})[f.name] = value
    return dataclasses.replace(self, **{s: dataclasses.replace(getattr(self, s), **kw)
                                        for s, kw in per_section.items()})

  def flags(self) -> dict[str, Any]:
    """{flag name: value} of every field."""
    return {flag: getattr(getattr(self, f.section), f.name) for flag, f in FIELDS.items()}

  def to_dict(self) -> dict[str, dict]:
    return {**dataclasses.asdict(self), 'version': VERSION}

  @classmethod
  def from_dict(cls, d: dict) -> 'Config':
    """Inverse of ``to_dict``; also reads what older versions saved (the flat {flag: value} files of version 1),
    filling the flags added since with the values that version ran with (``LEGACY``), so an old checkpoint
    loads and resumes as it was trained. Unknown keys are ignored."""
    if any(isinstance(v, dict) for v in d.values()):
      flags = {}
      for s, values in d.items():
        if not isinstance(values, dict):
          continue
        for name, v in values.items():
          f = next((f for f in FIELDS.values() if f.section == s and f.name == name), None)
          if f is not None:
            flags[f.flag] = v
        if s == 'bigan' and 'layer_bias' in values:      # moved to the model section in version 2
          flags.setdefault('layer_bias', values['layer_bias'])
    else:
      flags = {k: v for k, v in d.items() if k in FIELDS}
      flags = {**_legacy(flags), **flags}
      if d.get('model') in DCGAN_FAMILY:      # version 1 saved BiGAN's layer_bias for every model
        flags.update(layer_bias=True, weight_decay=0.0)
    return cls.make(**flags)


VERSION = 2
DCGAN_FAMILY = ('dcgan', 'cdcgan', 'mlp_gan')
# What version 1 (flat config files) did, for flags added since.
LEGACY = {
    'dcgan': dict(variant='paper', bn_scale_init='ones', project_bn='channel', update_order='joint',
                  sample_bn='running', lr_decay='none'),
    'bigan': dict(project_bn='channel', bn_scale_init='ones', sample_bn='running', lr_decay='exponential',
                  # before the BiGAN networks followed the authors' code
                  z_into_d='every_layer', z_into_g=False, encoder_output='linear', data_range='symmetric',
                  layer_bias=True, alexnet_pool5=True, jlr_weight=0.0, d_logit_init='normal', g_first_bn=False),
}


def _legacy(flags: dict) -> dict:
  family = 'dcgan' if flags.get('model', 'dcgan') in DCGAN_FAMILY else 'bigan'
  return dict(LEGACY[family])


def identity_diff(saved: Config, current: Config) -> list[str]:
  """The identity flags (changing the parameters or the data) that differ, as '--name: saved -> now'."""
  a, b = saved.flags(), current.flags()
  return sorted(f'--{k}: {a[k]!r} -> {b[k]!r}' for k, f in FIELDS.items() if f.meta['identity'] and a[k] != b[k])


def to_json(config: Config) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True)


# -- command line -------------------------------------------------------------------------------------------


class ArgumentParser(argparse.ArgumentParser):
  """argparse with the project's error convention: one line ``error: ...`` on stderr, exit status 1 (as every
  other bad input)."""

  def error(self, message):
    self.exit(1, f'error: {_one_line(message)}\n')


def _one_line(text: str) -> str:
  return re.sub(r'\s+', ' ', str(text)).strip()


def parse_bool(s: str) -> bool:
  if s.lower() in ('1', 'true', 'yes', 'y'):
    return True
  if s.lower() in ('0', 'false', 'no', 'n'):
    return False
  raise argparse.ArgumentTypeError(f'expected true or false, got {s!r}')


def path_checked(kind: str, flag: str):
  """An argparse type for a path flag: 'file' must be a readable file, 'dir' a directory if it exists,
  'workdir' a writable directory or creatable, 'run' a directory holding checkpoints."""
  def parse(text: str) -> str:
    return check_path(kind, flag, text)
  parse.__name__ = f'{kind} path'
  return parse


def check_path(kind: str, flag: str, text: str) -> str:
  """``text`` if it is a usable path of ``kind`` (see ``path_checked``), else ArgumentTypeError saying why."""
  if not text or '\x00' in text:
    raise argparse.ArgumentTypeError(f'{text!r} is not a path')
  p = os.path.abspath(os.path.expanduser(text))
  if kind == 'file':
    if not os.path.isfile(p):
      raise argparse.ArgumentTypeError(f'{text} is not a file' if os.path.exists(p) else f'{text} does not exist')
    if not os.access(p, os.R_OK):
      raise argparse.ArgumentTypeError(f'{text} is not readable')
  elif kind == 'dir':
    if os.path.exists(p) and not os.path.isdir(p):
      raise argparse.ArgumentTypeError(f'{text} is a file, not a directory')
  elif kind == 'run':
    if not os.path.isdir(p):
      raise argparse.ArgumentTypeError(f'{text} does not exist: give the --workdir of a trained run')
    if not os.path.isdir(os.path.join(p, 'checkpoints')):
      raise argparse.ArgumentTypeError(f'{text} holds no checkpoints: give the --workdir of a trained run')
  elif kind == 'workdir':
    probe = p
    while not os.path.exists(probe):
      probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
      raise argparse.ArgumentTypeError(f'{probe} is a file, not a directory: choose another workdir')
    if not os.access(probe, os.W_OK | os.X_OK):
      raise argparse.ArgumentTypeError(f'{probe} is not writable: choose another workdir')
  return text


def _flag_type(field: Field):
  """The argparse type of a field: parses the text and checks the value (min, choices, path)."""
  if field.meta['path']:
    return path_checked(field.meta['path'], field.flag)
  base = parse_bool if field.kind is bool else field.kind

  def parse(text: str):
    if field.optional and text.lower() in ('none', ''):
      return None
    try:
      value = base(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f'expected {_kind_name(field.kind)}, got {text!r}') from None
    try:
      return check(field, value)
    except ConfigError as e:
      raise argparse.ArgumentTypeError(str(e).split(': ', 1)[-1]) from None
  parse.__name__ = _kind_name(field.kind)
  return parse


def add_flags(parser: argparse.ArgumentParser, only: Optional[tuple[str, ...]] = None,
              model_choices: Optional[tuple[str, ...]] = None) -> None:
  """One ``--flag`` per config field (or those in ``only``), grouped by section, with help and checks.
  ``model_choices``: the registered model names for ``--model``."""
  groups = {}
  for flag, f in FIELDS.items():
    if only is not None and flag not in only:
      continue
    if f.section not in groups:
      groups[f.section] = parser.add_argument_group(f'{f.section} ({SECTIONS[f.section].__doc__.splitlines()[0]})')
    choices = model_choices if flag == 'model' else None
    names = choices or f.meta['choices'] or (('true', 'false') if f.kind is bool else None)
    groups[f.section].add_argument(f'--{flag}', type=_flag_type(f), default=f.default, choices=choices,
                                   help=f.help, metavar='{' + ','.join(names) + '}' if names else None)


def from_args(args: argparse.Namespace) -> Config:
  """The Config of parsed flags (namespace entries that are not config flags are ignored)."""
  return Config.make(**{k: v for k, v in vars(args).items() if k in FIELDS})

