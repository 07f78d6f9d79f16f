"""Interrupts that arrive before or around a tool's own handling: never lost, never a stray traceback.

``install()`` (the launch tools call it first thing) makes SIGINT/SIGTERM raise KeyboardInterrupt as Python
would, with two differences: inside ``deferred()`` (heavy imports) the signal is only recorded and raised
when the block ends, and a signal landing in a garbage-collection callback (where Python would print
"Exception ignored" and drop it) is raised again a moment later, outside it. ``pending()`` tells the training
loop that a signal came before it installed its own handler, so it stops before its first step.
"""
from __future__ import annotations

import _thread
import contextlib
import multiprocessing
import signal
import threading
from typing import Optional

_received: list[str] = []
_defer = [0]
_UNSAFE = ('_xla_gc_callback',)    # callbacks where a raised KeyboardInterrupt is swallowed


def _handle(signum, frame):
  _received.append(signal.Signals(signum).name)
  if _defer[0]:
    return
  if frame is not None and frame.f_code.co_name in _UNSAFE:
    threading.Timer(0.05, _thread.interrupt_main, args=(signum,)).start()
    return
  raise KeyboardInterrupt


def install() -> None:
  """Handles SIGINT and SIGTERM as described above (main thread only; elsewhere a no-op). Not in a
  multiprocessing child: a Grain worker imports the tool's module again (as ``__mp_main__``, with the parent's
  ``sys.argv`` and before ``multiprocessing.parent_process()`` is set, but already with its own process name)
  and must keep the SIGINT-ignored disposition it was started with (``common.input_pipeline``); its parent
  stops it."""
  if multiprocessing.current_process().name != 'MainProcess' or multiprocessing.parent_process() is not None:
    return
  try:
    for sig in (signal.SIGINT, signal.SIGTERM):
      signal.signal(sig, _handle)
  except ValueError:   # not the main thread
    pass


@contextlib.contextmanager
def deferred():
  """Signals inside the block are recorded; one that came is raised as KeyboardInterrupt when it ends."""
  seen = len(_received)
  _defer[0] += 1
  try:
    yield
  finally:
    _defer[0] -= 1
  if len(_received) > seen and not _defer[0]:
    raise KeyboardInterrupt


def pending() -> Optional[str]:
  """The first signal recorded so far, or None."""
  return _received[0] if _received else None
