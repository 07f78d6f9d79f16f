"""Photo-like synthetic images, for benchmarks and tests that need realistic JPEGs without a download.

Smooth colour gradients (sums of low-frequency waves), filled shapes with hard edges, a slight blur and
sensor-like noise: JPEG then spends its bits and its decode time much as on photographs (a 256x341 image
at quality 90 is ~20-30 kB, like an LSUN bedroom), unlike uniform noise (incompressible) or flat colour.
"""
from __future__ import annotations

import io

import numpy as np


def photo_like(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """A uint8 [height, width, 3] photo-like image drawn from ``rng``."""
  from PIL import Image, ImageDraw, ImageFilter
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  img = np.zeros((height, width, 3), np.float32)
  for _ in range(6):
    fx, fy = rng.uniform(0.002, 0.03, 2)
    phase = rng.uniform(0, 2 * np.pi)
    img += rng.uniform(20, 60, 3).astype(np.float32) * np.sin(2 * np.pi * (fx * x + fy * y) + phase)[..., None]
  im = Image.fromarray(np.clip(img + 128, 0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(im)
  for _ in range(12):
    x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
    x1, y1 = x0 + int(rng.integers(10, max(11, width // 2))), y0 + int(rng.integers(10, max(11, height // 2)))
    fill = tuple(int(v) for v in rng.integers(0, 256, 3))
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=fill)
  im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.5))))
  noisy = np.asarray(im, np.float32) + rng.normal(0, 4, (height, width, 3)).astype(np.float32)
  return np.clip(noisy, 0, 255).astype(np.uint8)


def photo_like_jpeg(rng: np.random.Generator, height: int, width: int, quality: int = 90) -> bytes:
  """``photo_like`` encoded as a baseline JPEG."""
  from PIL import Image
  buf = io.BytesIO()
  Image.fromarray(photo_like(rng, height, width)).save(buf, format='JPEG', quality=quality)
  return buf.getvalue()


def lsun_like_sizes(rng: np.random.Generator, n: int, short: int = 256) -> list[tuple[int, int]]:
  """(height, width) of ``n`` images with shorter edge ``short`` and LSUN's mix of aspect ratios
  (mostly landscape 4:3 to 16:9, some portrait)."""
  out = []
  for _ in range(n):
    long = int(round(short * rng.uniform(1.0, 1.78)))
    out.append((short, long) if rng.random() < 0.8 else (long, short))
  return out
