"""``dcgan-jax <tool> [flags]``: the installed entry point; the same code as ``python launch/<tool>.py``.

  dcgan-jax train --model=dcgan --dataset=lsun --workdir=runs/lsun
  dcgan-jax sample --workdir=runs/lsun --num=64
  dcgan-jax evaluate --workdir=runs/bigan --eval=knn
  dcgan-jax latent | visualize | dedup ...   (dcgan-jax <tool> --help lists each tool's flags)
"""
from __future__ import annotations

import importlib
import sys

TOOLS = {'train': 'train a model (resumes in the same --workdir)',
         'sample': 'sample grids, latent walks, reconstructions of a trained run',
         'evaluate': "feature probes, nearest-neighbour tests, sample quality, the papers' tables",
         'latent': 'latent-space sheets, walks, vector arithmetic, directions, forgetting',
         'visualize': 'guided backpropagation and filter pictures of a trained run',
         'dedup': 'de-duplicate a dataset with a hashing autoencoder'}


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  if not argv or argv[0] in ('-h', '--help') or argv[0] not in TOOLS:
    width = max(map(len, TOOLS))
    listing = '\n'.join(f'  {name:{width}s}  {text}' for name, text in TOOLS.items())
    text = f'usage: dcgan-jax <tool> [flags]\n\ntools:\n{listing}\n'
    if argv and argv[0] not in ('-h', '--help'):
      print(f'error: unknown tool {argv[0]!r}: choose one of {", ".join(TOOLS)}', file=sys.stderr)
      return 2
    print(text, file=sys.stdout if argv else sys.stderr)
    return 0 if argv else 2
  code = importlib.import_module(f'launch.{argv[0]}').main(argv[1:])
  if code == 130:                      # Ctrl-C: end without the interpreter's teardown (launch/_cli.exit)
    from launch import _cli
    _cli.exit(code)
  return code


if __name__ == '__main__':
  sys.exit(main())
