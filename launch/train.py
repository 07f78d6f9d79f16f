"""Train a model: python launch/train.py --model=dcgan --dataset=lsun --workdir=runs/lsun

Every hyperparameter is a flag with the paper's default (grouped by section below). Running the same command
again resumes from the newest checkpoint in --workdir; SIGTERM/SIGINT checkpoint and exit cleanly.
"""
import sys

if __package__ in (None, ''):   # python launch/train.py from a checkout: put the checkout on sys.path
  import os
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import config as config_lib, registry  # noqa: E402  (light: no JAX model is imported here)
from launch import _cli  # noqa: E402


def parser():
  """The argument parser (every flag, its check and its help)."""
  models = '\n'.join(f'  {name:24s} {text}' for name, text in registry.describe().items())
  p = _cli.parser(__doc__ + f'\nmodels (--model):\n{models}')
  config_lib.add_flags(p, model_choices=registry.names())
  return p


def parse(argv=None):
  p = parser()
  try:
    return config_lib.from_args(p.parse_args(argv))
  except config_lib.ConfigError as e:     # what argparse lets through (e.g. --model=--)
    p.error(str(e))


def run(config):
  from common import loop   # JAX and the models: after --help
  loop.train(config)


def main(argv=None) -> int:
  return _cli.run_main(parse, run, argv, imports=('common.loop',))


if __name__ == '__main__':
  _cli.exit(main())
