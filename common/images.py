"""Images: grids as PNG files, and the one resize / channel adaptation every model and metric uses."""
from __future__ import annotations

import math
import os
import tempfile
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

LUMA = (0.299, 0.587, 0.114)   # ITU-R 601 luma weights: RGB -> gray


def resize(x, size: int, antialias: bool = True):
  """NHWC images -> ``size`` x ``size`` (bilinear; antialiased when shrinking unless ``antialias=False``); a
  no-op at that size. BiGAN's g_X (section 3.5) and every metric's input adaptation."""
  if x.shape[1] == size and x.shape[2] == size:
    return x
  return jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), 'linear', antialias=antialias)


def adapt(x, resolution: Optional[int] = None, channels: Optional[int] = None, antialias: bool = True):
  """NHWC images in [-1, 1] -> ``channels`` channels (1 -> 3 replicates; 3 -> 1 takes luma) and ``resolution``
  x ``resolution`` (``resize``); float32."""
  x = jnp.asarray(x, jnp.float32)
  c = x.shape[-1]
  if channels and c != channels:
    if c == 1 and channels == 3:
      x = jnp.repeat(x, 3, axis=-1)
    elif c == 3 and channels == 1:
      x = (x * jnp.asarray(LUMA, x.dtype)).sum(-1, keepdims=True)
    else:
      raise ValueError(f'cannot adapt {c}-channel images to {channels} channels')
  return resize(x, resolution, antialias) if resolution else x


def to_uint8(images) -> np.ndarray:
  """[-1, 1] floats -> uint8, NHWC."""
  x = np.asarray(images, dtype=np.float32)
  return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid(images, ncol: int | None = None, pad: int = 2, pad_value: int = 255) -> np.ndarray:
  """Tiles N images (NHWC, [-1, 1]) into one HxWxC uint8 array with ``ncol`` columns."""
  x = to_uint8(images)
  n, h, w, c = x.shape
  ncol = ncol or int(math.ceil(math.sqrt(n)))
  nrow = int(math.ceil(n / ncol))
  out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), pad_value, np.uint8)
  for i in range(n):
    r, q = divmod(i, ncol)
    out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = x[i]
  return out


def save_png(array: np.ndarray, path: str, scale: int = 1) -> str:
  """Writes a uint8 HxWxC array atomically (temporary file, then rename): never a half-written PNG."""
  a = array[..., 0] if array.shape[-1] == 1 else array
  img = Image.fromarray(a)
  if scale > 1:
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix='.png', dir=d)
  try:
    with os.fdopen(fd, 'wb') as f:
      img.save(f, format='PNG')
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a PNG should be readable like any other file
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def save_grid(images, path: str, ncol: int | None = None, scale: int | None = None) -> str:
  """Saves images in [-1, 1] as a PNG grid; small images are upscaled (nearest) to be visible."""
  h = np.asarray(images).shape[1]
  scale = scale or max(1, 64 // h)
  return save_png(grid(images, ncol), path, scale)


def interleave(a, b):
  """[a0, b0, a1, b1, ...] for side-by-side pairs (e.g. x beside its reconstruction)."""
  a, b = np.asarray(a), np.asarray(b)
  out = np.empty((2 * len(a),) + a.shape[1:], a.dtype)
  out[0::2], out[1::2] = a, b
  return out
