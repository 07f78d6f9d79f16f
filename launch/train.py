"""Train a model: python launch/train.py --model=dcgan --dataset=lsun --workdir=runs/lsun

Every hyperparameter is a flag with the paper's default (--help lists them). Running the same command
again resumes from the latest checkpoint in --workdir; SIGTERM/SIGINT checkpoint and exit cleanly.
"""
import argparse
import sys

import _path  # noqa: F401  (source checkout on sys.path)
from common.config import add_flags, from_args


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  add_flags(parser)
  config = from_args(parser.parse_args(argv))
  from common import data, loop  # heavy imports after --help
  try:
    loop.train(config)
  except (data.DataError, loop.ResumeError, loop.DivergenceError, loop.StorageError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
