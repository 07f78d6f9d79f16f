"""``DataError``: the one exception the data layer raises for problems with data or arguments."""
from __future__ import annotations

import re


class DataError(ValueError):
  """A problem with the data or the arguments; the message is one line naming the problem and the fix."""

  def __init__(self, message: str):
    super().__init__(re.sub(r'\s*[\r\n]+\s*', ' ', str(message)).strip())


def one_line(e: BaseException, limit: int = 300) -> str:
  """``'Type: message'`` of ``e`` on one line, cut at ``limit`` characters."""
  text = ' '.join(f'{type(e).__name__}: {e}'.split())
  return text if len(text) <= limit else text[:limit] + '...'
