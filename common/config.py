"""Run configuration: one dataclass drives the command-line flags, the saved run config and resume checks.

Every hyperparameter has the paper's value as its default. Fields left as ``None`` are filled by the
model (for example ``z_dim`` is 100 for DCGAN and 50 for the permutation-invariant BiGAN).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any, Optional


def _f(default, help, **kw):
  return dataclasses.field(default=default, metadata={'help': help, **kw})


@dataclasses.dataclass(frozen=True)
class Config:
  # What to train.
  model: str = _f('dcgan', 'model to train', choices=('dcgan', 'cdcgan', 'mlp_gan', 'bigan', 'latent_regressor',
                                                       'joint_latent_regressor', 'autoencoder'))
  dataset: str = _f('digits', "dataset name (digits, mnist, fashion_mnist, cifar10, svhn, celeba, lsun, "
                              "lsun/<category>, imagenet32, folder:PATH)")
  workdir: str = _f('runs/default', 'directory for checkpoints, samples, logs; the same command resumes')
  data_dir: Optional[str] = _f(None, 'where TFDS keeps prepared data (default ~/tensorflow_datasets)')
  manual_dir: Optional[str] = _f(None, 'directory holding original dataset files for offline preparation')
  split: str = _f('train', 'dataset split to train on')
  dedup: Optional[str] = _f(None, 'file of example ids to keep (from launch/dedup.py)')
  strict_data: bool = _f(False, 'folder: datasets: stop on an unreadable image instead of skipping it')

  # Schedule.
  steps: int = _f(10000, 'number of train steps (one D and one G update each)')
  batch_size: int = _f(128, 'global batch size, over all devices and processes (paper: 128)')
  seed: int = _f(0, 'seed for parameters, latent draws and data order')

  # Architecture (paper defaults at 64x64: 4x4x1024 projection, 5x5 kernels, stride 2).
  resolution: Optional[int] = _f(None, "image size G makes and D sees: 4 * 2^k, e.g. 32, 64, 128 (default: 64; "
                                          '28 for the permutation-invariant BiGAN)')
  z_dim: Optional[int] = _f(None, 'latent size (DCGAN 100; BiGAN 50 for MLP, 200 for conv)')
  width: int = _f(128, "channels of G's last hidden layer and D's first; doubling toward 4x4 (paper 128)")
  kernel_size: int = _f(5, 'convolution kernel size (paper 5; PyTorch example 4)')
  bn_scale_bias: Optional[bool] = _f(None, 'batchnorm with learned scale and bias (default: true; false for '
                                            "cdcgan, the paper's conditional MNIST model)")
  dtype: str = _f('float32', 'compute dtype of convolutions and matmuls: float32 or bfloat16 '
                             '(params, optimizer state and batchnorm statistics stay float32)',
                  choices=('float32', 'bfloat16'))
  upsample_impl: str = _f('auto', "G's fractionally-strided convolution: auto, subpixel (fast on CPU) or "
                                  'xla (lax.conv_transpose); the same function either way',
                          choices=('auto', 'subpixel', 'xla'))

  # Optimizer (paper: Adam lr 2e-4, beta1 0.5).
  lr: float = _f(2e-4, 'Adam learning rate')
  beta1: float = _f(0.5, 'Adam beta1')
  beta2: float = _f(0.999, 'Adam beta2')

  # BiGAN (Appendix B/C); ignored by DCGAN.
  architecture: Optional[str] = _f(None, 'BiGAN networks: mlp (permutation-invariant) or conv '
                                         '(default: mlp for 28x28 grayscale data, conv otherwise)')
  encoder_resolution: Optional[int] = _f(None, 'generalised BiGAN: encoder input size (e.g. 112 with 64x64 G/D)')
  weight_decay: float = _f(2.5e-5, 'BiGAN L2 weight decay on multiplicative weights only')
  lr_final: float = _f(2e-6, 'BiGAN: lr decays exponentially to this from halfway through training')
  recon_loss: str = _f('l2', 'autoencoder baseline loss', choices=('l2', 'l1'))
  gan_workdir: Optional[str] = _f(None, 'latent_regressor: workdir of the trained GAN whose G is frozen')
  augment: Optional[bool] = _f(None, 'random crop from load_size and horizontal flip (BiGAN natural images)')
  load_size: Optional[int] = _f(None, 'shorter edge before cropping (default: resolution; BiGAN aug: 72)')
  hidden: int = _f(1024, 'BiGAN MLP networks: units in each of the two hidden layers (paper 1024)')
  encoder: Optional[str] = _f(None, 'BiGAN conv encoder: alexnet or dcgan (a DCGAN-D mirror; default: alexnet '
                                    'when the encoder input is >= 64 px, else dcgan)', choices=('alexnet', 'dcgan'))
  # BiGAN fidelity options (docs/fidelity.md): defaults are the paper's where it speaks, else the authors' code's.
  data_range: Optional[str] = _f(None, "BiGAN networks' pixel range: unit ([0, 1], sigmoid G output; default for "
                                       "the MLP, the authors' MNIST setting) or symmetric ([-1, 1], tanh; conv "
                                       'default)', choices=('unit', 'symmetric'))
  encoder_output: str = _f('squash', "BiGAN: E's linear output mapped into the prior's support by 2 sigmoid - 1 "
                                     "before D sees it (squash, authors' dist.py) or used as is (linear)",
                           choices=('squash', 'linear'))
  z_into_d: str = _f('after_first', 'BiGAN joint D: z added before batchnorm at every hidden layer after the '
                                    "first (after_first: authors' code, the paper's 'each linear layer "
                                    "thereafter') or after batchnorm at every layer and the logit (every_layer)",
                     choices=('after_first', 'every_layer'))
  z_into_g: bool = _f(True, "BiGAN: z re-enters G's hidden layers after the first (authors' code)")
  g_first_bn: bool = _f(False, "BiGAN MLP G: parameter-free batchnorm after the first hidden layer too (authors' "
                               'code; the paper: second layer only)')
  d_logit_init: str = _f('normal', "BiGAN D's logit weights: normal (N(0, 0.02), the paper) or zero (authors' code)",
                         choices=('normal', 'zero'))
  layer_bias: bool = _f(False, "BiGAN: biases on linear/conv layers not followed by batchnorm (the authors' layers "
                               'have none)')
  alexnet_pool5: bool = _f(False, "BiGAN AlexNet E: max-pool conv5 before the map to z (authors' code: no pool5)")
  jlr_weight: float = _f(0.25, "joint latent regressor: weight of the latent regression loss in G's and E's "
                               "objective (authors' --encode_gen_weight 0.25); 0: E alone, G untouched")

  # Loop.
  log_every: int = _f(50, 'steps between progress lines and TensorBoard scalars')
  sample_every: int = _f(500, 'steps between PNG sample grids in the workdir')
  checkpoint_every: int = _f(1000, 'steps between checkpoints (one is always written at the end)')
  keep_checkpoints: int = _f(3, 'how many recent checkpoints to keep')
  keep_every: int = _f(0, 'also keep every checkpoint whose step is a multiple of this (0: none), e.g. milestones '
                          'of a long run to evaluate later')
  num_samples: int = _f(64, 'images in each sample grid')
  on_nan: str = _f('stop', 'on a non-finite loss: stop (keep the last good checkpoint) or rollback',
                   choices=('stop', 'rollback'))

  # Periodic sample-quality evaluation (common.evaluation; docs/evaluation.md).
  eval_every: int = _f(0, 'steps between sample-quality evaluations (0: none); the best state is kept in WORKDIR/best')
  eval_metric: str = _f('fid', 'metric that picks the best checkpoint', choices=('fid', 'kid', 'precision', 'recall',
                                                                                   'density', 'coverage'))
  eval_samples: int = _f(5000, 'generated images per evaluation')
  feature_net_dir: Optional[str] = _f(None, "the project's feature classifier for --eval_every (default: "
                                             '<data_dir>/feature_nets/<dataset>-r32, trained on first use)')
  inception_weights: Optional[str] = _f(None, 'FID Inception-V3 weights (pt_inception-2015-12-05 .pth or .npz): '
                                               'evaluate on Inception features instead of the classifier')

  # Multi-host.
  coordinator_address: Optional[str] = _f(None, 'HOST:PORT of process 0, for explicit multi-process runs')
  num_processes: Optional[int] = _f(None, 'number of processes in an explicit multi-process run')
  process_id: Optional[int] = _f(None, 'this process index in an explicit multi-process run')

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def replace(self, **kw) -> 'Config':
    return dataclasses.replace(self, **kw)


# Fields whose change makes a checkpoint incompatible with the run that resumes it.
IDENTITY_FIELDS = ('model', 'dataset', 'split', 'batch_size', 'resolution', 'z_dim', 'width', 'kernel_size',
                   'bn_scale_bias', 'architecture', 'encoder_resolution', 'recon_loss', 'seed', 'dedup',
                   'hidden', 'encoder', 'data_range', 'encoder_output', 'z_into_d', 'z_into_g', 'g_first_bn',
                   'd_logit_init', 'layer_bias', 'alexnet_pool5')


def diff_identity(saved: dict, current: dict) -> list[str]:
  """Differences in identity fields between a saved config and the current one, as 'name: saved -> now'."""
  return [f'{k}: {saved.get(k)!r} -> {current.get(k)!r}' for k in IDENTITY_FIELDS
          if k in saved and saved.get(k) != current.get(k)]


def _parse_bool(s: str) -> bool:
  if s.lower() in ('1', 'true', 'yes', 'y'):
    return True
  if s.lower() in ('0', 'false', 'no', 'n'):
    return False
  raise argparse.ArgumentTypeError(f'expected true or false, got {s!r}')


def _help(f: dataclasses.Field) -> str:
  text = f.metadata.get('help', '')
  return text if 'default' in text else f'{text} (default: {f.default})'


def add_flags(parser: argparse.ArgumentParser, cls=Config, only: tuple[str, ...] | None = None) -> None:
  """Adds one ``--name`` flag per dataclass field, with its default and help text."""
  for f in dataclasses.fields(cls):
    if only is not None and f.name not in only:
      continue
    base = f.type if isinstance(f.type, str) else getattr(f.type, '__name__', str(f.type))
    kind = (_parse_bool if 'bool' in base else int if 'int' in base else float if 'float' in base else str)
    parser.add_argument(f'--{f.name}', type=kind, default=f.default, choices=f.metadata.get('choices'),
                        help=_help(f))


def from_args(args: argparse.Namespace) -> Config:
  names = {f.name for f in dataclasses.fields(Config)}
  return Config(**{k: v for k, v in vars(args).items() if k in names})


def to_json(config: Config) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True)
