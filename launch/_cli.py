"""What every launch tool shares: its argument parser and the one-line error convention of its ``main``."""
from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence

import argparse
import importlib
import os

from common import signals
from common.config import ArgumentParser, ConfigError, check_path

signals.install()   # a Ctrl-C while JAX imports is recorded, not lost (common/signals.py)

# Bad input of every kind a tool can meet: flags, files, data, a workdir of another run, a full disk.
INPUT_ERRORS = (ConfigError, FileNotFoundError, ValueError, OSError, RuntimeError)


def parser(doc: str) -> ArgumentParser:
  """An argument parser whose errors are one line (``error: ...``, exit status 1)."""
  return ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def run_main(parse: Callable, run: Callable, argv: Optional[Sequence[str]] = None,
             imports: Sequence[str] = ()) -> int:
  """``run(parse(argv))``: exit status 0, or 1 with ``error: ...`` on one stderr line for bad input (a flag, a
  file, the data), or 130 with one line on Ctrl-C. Unexpected exceptions (bugs) keep their traceback.
  ``imports``: the library modules ``run`` uses, imported first with signals deferred (JAX's import is where
  a Ctrl-C is otherwise swallowed with a stray traceback; ``common.signals``)."""
  try:
    a = parse(argv)
  except SystemExit as e:        # --help (0) or a bad flag (1, one line already printed)
    return e.code if isinstance(e.code, int) else 1
  try:
    with signals.deferred():
      for module in imports:
        importlib.import_module(module)
    run(a)
  except KeyboardInterrupt:
    print('interrupted', file=sys.stderr)
    return 130
  except INPUT_ERRORS as e:
    print(f'error: {_one_line(e)}', file=sys.stderr)
    return 1
  return 0


def exit(code: int) -> None:  # pylint: disable=redefined-builtin
  """Ends the process with ``code``. After Ctrl-C (130) it skips the interpreter's teardown: threads of XLA,
  TensorFlow or Grain still running at that moment could crash it (a segmentation fault after the message);
  nothing is left unsaved then (checkpoints are written atomically and waited for)."""
  sys.stdout.flush()
  sys.stderr.flush()
  if code == 130:
    os._exit(130)
  sys.exit(code)


def _one_line(e: BaseException) -> str:
  return ' '.join(str(e).split()) or type(e).__name__


# -- argparse types that check a value as it is parsed (the message names what is allowed) --------------------


def int_range(lo: int, hi: Optional[int] = None):
  def parse(text: str) -> int:
    try:
      v = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f'expected an integer, got {text!r}') from None
    if v < lo or (hi is not None and v > hi):
      raise argparse.ArgumentTypeError(f'{v}: must be an integer ' + (f'between {lo} and {hi}' if hi is not None
                                                                       else f'>= {lo}'))
    return v
  parse.__name__ = 'integer'
  return parse


def float_range(lo: float, hi: Optional[float] = None, above: bool = False):
  def parse(text: str) -> float:
    try:
      v = float(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f'expected a number, got {text!r}') from None
    if v != v or v in (float('inf'), float('-inf')) or (v <= lo if above else v < lo) or (hi is not None and v > hi):
      raise argparse.ArgumentTypeError(f'{text}: must be a number ' + (f'> {lo:g}' if above else f'>= {lo:g}')
                                       + (f' and <= {hi:g}' if hi is not None else ''))
    return v
  parse.__name__ = 'number'
  return parse


def run_dir(text: str) -> str:
  """A --workdir that holds a trained run's checkpoints (tools that read a run never create one)."""
  return check_path('run', 'workdir', text)


def existing_file(text: str) -> str:
  return check_path('file', '', text)


def out_dir(text: str) -> str:
  """A directory to write into: existing and writable, or creatable."""
  return check_path('workdir', '', text)


def out_file(text: str) -> str:
  """A file to write: not a directory, in a directory that is writable or can be created."""
  if not text or '\x00' in text:
    raise argparse.ArgumentTypeError(f'{text!r} is not a path')
  if os.path.isdir(text):
    raise argparse.ArgumentTypeError(f'{text} is a directory: give a file name')
  check_path('workdir', '', os.path.dirname(os.path.abspath(text)))
  return text


def positive_list(text: str) -> str:
  """Comma-separated positive numbers (e.g. an SVM's C grid), kept as text."""
  try:
    values = [float(t) for t in text.split(',') if t.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected comma-separated numbers, got {text!r}') from None
  if not values or any(not v > 0 or v == float('inf') for v in values):
    raise argparse.ArgumentTypeError(f'expected positive numbers, got {text!r}')
  return text


def existing_dir(text: str) -> str:
  """A directory that must exist (e.g. original dataset files)."""
  if not text or not os.path.isdir(text):
    raise argparse.ArgumentTypeError(f'{text} is not a directory' if os.path.exists(text or '')
                                     else f'{text} does not exist')
  return text
