"""Shared by the launch scripts: the source checkout on ``sys.path`` (so ``python launch/<tool>.py`` runs without
installing the package) and the one-line error convention of their ``main``."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

INPUT_ERRORS = (FileNotFoundError, ValueError, OSError)


def run_main(parse, run, argv=None, errors=INPUT_ERRORS) -> int:
  """``run(parse(argv))``; exit code 0, or 1 with ``error: ...`` on one stderr line for bad input."""
  a = parse(argv)
  try:
    run(a)
  except errors as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0
