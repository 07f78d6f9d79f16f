"""Image bytes <-> uint8 arrays with Pillow. Shared by the builders (writing) and ``common.data`` (reading).

Arrays are HxWxC uint8 with C = 1 (grayscale) or 3 (RGB). Palette, alpha, CMYK and 16-bit images are
converted on decode: alpha is dropped, 16-bit grayscale is scaled to 8 bits.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

GRAYSCALE_MODES = frozenset({'1', 'L', 'LA', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'})


def sniff(data: bytes) -> str | None:
  """'jpeg', 'png' or 'webp' from the leading bytes; None for anything else."""
  if data[:3] == b'\xff\xd8\xff':
    return 'jpeg'
  if data[:8] == b'\x89PNG\r\n\x1a\n':
    return 'png'
  if data[:4] == b'RIFF' and data[8:12] == b'WEBP':
    return 'webp'
  return None


def to_mode(im: Image.Image, channels: int) -> Image.Image:
  """``im`` as mode 'L' (channels=1) or 'RGB' (channels=3)."""
  want = 'L' if channels == 1 else 'RGB'
  if im.mode == want:
    return im
  if im.mode.startswith('I') or im.mode == 'F':   # 16/32-bit grayscale: scale to 8 bits when needed
    a = np.asarray(im, dtype=np.float64)
    if a.size and a.max() > 255:
      a = a / 257.0
    im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), 'L')
    return im if want == 'L' else im.convert('RGB')
  if im.mode in ('RGBA', 'LA', 'PA') or (im.mode == 'P' and 'transparency' in im.info):
    im = im.convert('RGBA' if im.mode != 'LA' else 'LA')   # drop alpha below
  return im.convert(want)


def decode(data: bytes, channels: int) -> np.ndarray:
  """Encoded image bytes -> uint8 HxWxC array with C = ``channels``."""
  with Image.open(io.BytesIO(data)) as im:
    a = np.asarray(to_mode(im, channels))
  return a[..., None] if a.ndim == 2 else a


def encode_png(image: np.ndarray) -> bytes:
  """uint8 HxW, HxWx1 or HxWx3 array -> PNG bytes (fast compression: preparation is write-once)."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f'expected uint8 pixels, got {image.dtype}')
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format='PNG', compress_level=1)
  return buf.getvalue()
