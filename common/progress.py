"""Progress of long work (feature extraction over a split, nearest neighbours over 60k rows, generated samples):
one line on stderr every few seconds with the count, the rate and an ETA; silent for work that ends sooner."""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


def format_duration(seconds: float) -> str:
  """A duration as people read it: '45s', '12m05s', '3h07m', '2d04h'."""
  s = int(round(max(seconds, 0)))
  if s < 60:
    return f'{s}s'
  if s < 3600:
    return f'{s // 60}m{s % 60:02d}s'
  if s < 86400:
    return f'{s // 3600}h{s % 3600 // 60:02d}m'
  return f'{s // 86400}d{s % 86400 // 3600:02d}h'


class Progress:
  """``p = Progress('k-NN', total, unit='rows'); p.update(n) ...; p.close()``: prints
  ``k-NN: 12,288/60,000 rows (20%), 3,100 rows/s, eta 15s`` at most every ``every`` seconds, and a final line
  when it printed before. ``what=None`` is silent (callers that report themselves)."""

  def __init__(self, what: Optional[str], total: int, unit: str = 'images', every: float = 10.0,
               stream: Optional[TextIO] = None):
    self.what, self.total, self.unit, self.every = what, int(total), unit, every
    self.stream = stream
    self.done, self.t0 = 0, time.monotonic()
    self.last, self.printed = self.t0, False

  def _line(self, now: float) -> str:
    rate = self.done / max(now - self.t0, 1e-9)
    pct = 100.0 * self.done / max(self.total, 1)
    eta = (self.total - self.done) / rate if rate > 0 else 0.0
    return (f'{self.what}: {self.done:,}/{self.total:,} {self.unit} ({pct:.0f}%), {rate:,.0f} {self.unit}/s, '
            f'eta {format_duration(eta)}')

  def update(self, n: int) -> None:
    self.done += int(n)
    now = time.monotonic()
    if self.what and now - self.last >= self.every and self.done < self.total:
      print(self._line(now), file=self.stream or sys.stderr, flush=True)
      self.last, self.printed = now, True

  def close(self) -> None:
    if self.what and self.printed:
      now = time.monotonic()
      print(f'{self.what}: {self.done:,} {self.unit} in {format_duration(now - self.t0)}',
            file=self.stream or sys.stderr, flush=True)
