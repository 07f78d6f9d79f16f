"""Pieces shared by DCGAN and BiGAN: config, state, data, parallelism, checkpoints, the training loop."""
from common import xla_flags as _xla_flags

_xla_flags.apply_defaults()
