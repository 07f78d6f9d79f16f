"""Image preprocessing: resize the shorter edge, crop (center or random), flip, scale to [-1, 1].

``preprocess(image, resolution, ...)`` is the whole recipe for one decoded uint8 image. ``Batches``
(``common.input_pipeline``) runs it in two stages so that the deterministic part can be cached:
``stage1`` (resize, and the center crop when there is no random crop) and ``stage2`` (random crop and
flip, drawn from the example's own generator), then ``to_float``. ``decode_resized`` is ``stage1``'s
resize fused with decoding: a JPEG is decoded at 1/2, 1/4 or 1/8 scale (Pillow's ``draft``) when the
target shorter edge is at most half the stored one, which is 1.5-2x faster for 256 px -> 64 px and stays
within ``JPEG_DRAFT_TOLERANCE`` of decoding in full (tests/test_input_pipeline.py measures it).
"""
from __future__ import annotations

import io
import logging

import numpy as np

from common.datasets import codec
from common.datasets.errors import DataError

log = logging.getLogger('common.preprocess')

# Mean absolute difference, in [0, 255] levels over a set of photo-like images, that draft decoding may
# add to full decoding + the same resize (measured: ~0.8 at 256 -> 64; the worst single image ~2.3).
JPEG_DRAFT_TOLERANCE = 1.5


def to_float(images: np.ndarray) -> np.ndarray:
  """uint8 pixels -> float32 in [-1, 1]: float32(v) / 127.5 - 1 (0 -> -1.0, 255 -> 1.0), in place on one
  float32 copy (twice as fast as a 256-entry table lookup, with the same values)."""
  out = images.astype(np.float32)
  out /= np.float32(127.5)
  out -= np.float32(1.0)
  return out


def as_image(image) -> np.ndarray:
  """``image`` as uint8 HxWxC with C = 1 or 3 (a HxW array gains a channel axis); else a ``DataError``."""
  a = np.asarray(image)
  if a.ndim == 2:
    a = a[..., None]
  if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] not in (1, 3) or 0 in a.shape:
    raise DataError(f'expected a uint8 HxWxC image with C=1 or 3, got {a.dtype} {a.shape}: decode it to '
                    'uint8 grayscale or RGB first')
  return a


def _positive_int(value) -> bool:
  return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= 1


def check_options(resolution, load_size, crop) -> int:
  """Validates the preprocessing options; returns ``load_size`` (default ``resolution``)."""
  if not _positive_int(resolution):
    raise DataError(f'resolution must be a positive integer, got {resolution!r}')
  if crop not in ('center', 'random'):
    raise DataError(f"crop must be 'center' or 'random', got {crop!r}")
  if load_size is None:
    return int(resolution)
  if not _positive_int(load_size) or load_size < resolution:
    raise DataError(f'load_size={load_size!r} must be an integer >= resolution={resolution}: the shorter edge '
                    'is resized to load_size, then a resolution x resolution crop is taken')
  return int(load_size)


def _resized_shape(h: int, w: int, size: int) -> tuple[int, int]:
  """(height, width) with the shorter edge ``size`` and the aspect ratio kept (rounded)."""
  if h <= w:
    return size, max(size, int(round(w * size / h)))
  return max(size, int(round(h * size / w))), size


def _resize_pil(pil, h: int, w: int, size: int, box=None) -> np.ndarray:
  """Pillow image of original size (h, w) -> uint8 array, shorter edge ``size`` (bilinear, antialiased)."""
  nh, nw = _resized_shape(h, w, size)
  out = np.asarray(pil.resize((nw, nh), _bilinear(), box=box))
  return out[..., None] if out.ndim == 2 else out


def _bilinear():
  from PIL import Image
  return Image.Resampling.BILINEAR


UPSCALE_WARNING = 4.0      # warn (once per process) when an image is enlarged more than this


def resize_shorter(image: np.ndarray, size: int) -> np.ndarray:
  """Shorter edge -> ``size`` (Pillow bilinear; antialiased when shrinking); aspect ratio kept. Enlarging an
  image more than ``UPSCALE_WARNING`` times is logged once: such images carry little of what the model sees."""
  h, w = image.shape[:2]
  if min(h, w) == size:
    return image
  if size > UPSCALE_WARNING * min(h, w) and not _warned:
    _warned.append(True)
    log.warning('an image of %dx%d is enlarged to a shorter edge of %d (%.0fx): check the dataset or '
                '--resolution', w, h, size, size / min(h, w))
  from PIL import Image
  return _resize_pil(Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image), h, w, size)


_warned: list = []


def decode_resized(data: bytes, channels: int, size: int, *, draft: bool = True) -> np.ndarray:
  """Encoded image -> uint8 HxWxC (C = ``channels``) with its shorter edge resized to ``size``.

  Equal to ``resize_shorter(codec.decode(data, channels), size)``, except that with ``draft`` a JPEG whose
  shorter edge is at least 2 * ``size`` is decoded at the largest 1/2, 1/4 or 1/8 scale that keeps it
  >= ``size`` and then resized over the box of the full image, so the output grid is the same.
  """
  from PIL import Image
  with Image.open(io.BytesIO(data)) as im:
    w, h = im.size
    box = None
    if draft and im.format == 'JPEG' and 2 * size <= min(h, w):
      scale = size / min(h, w)
      drafted = im.draft(im.mode, (max(1, int(np.ceil(w * scale))), max(1, int(np.ceil(h * scale)))))
      if drafted is not None and im.size != (w, h):
        box = drafted[1]
    pil = codec.to_mode(im, channels)
    nh, nw = _resized_shape(h, w, size)
    if pil.size == (nw, nh) and (box is None or tuple(box) == (0, 0, nw, nh)):   # decoded at the target size
      a = np.asarray(pil)
      return a[..., None] if a.ndim == 2 else a
    return _resize_pil(pil, h, w, size, box)


def center_crop(x: np.ndarray, resolution: int) -> np.ndarray:
  h, w = x.shape[:2]
  top, left = (h - resolution) // 2, (w - resolution) // 2
  return x[top:top + resolution, left:left + resolution]


def stage1(image: np.ndarray, resolution: int, load_size: int, crop: str) -> np.ndarray:
  """The deterministic part: resize the shorter edge to ``load_size``; center crop if ``crop='center'``."""
  x = resize_shorter(image, load_size)
  return center_crop(x, resolution) if crop == 'center' else x


def stage2(x: np.ndarray, resolution: int, crop: str, flip: bool, rng) -> np.ndarray:
  """The random part: crop offsets (top, then left) and a flip with p=0.5, drawn in that order."""
  if crop == 'random':
    h, w = x.shape[:2]
    top = int(rng.integers(0, h - resolution + 1))
    left = int(rng.integers(0, w - resolution + 1))
    x = x[top:top + resolution, left:left + resolution]
  if flip and rng.random() < 0.5:
    x = x[:, ::-1]
  return x


def preprocess(image: np.ndarray, resolution: int, *, load_size: int | None = None, crop: str = 'center',
               flip: bool = False, rng: np.random.Generator | None = None) -> np.ndarray:
  """uint8 HxWxC -> float32 RxRxC in [-1, 1].

  Resizes the shorter edge to ``load_size`` (default ``resolution``) with Pillow's bilinear filter
  (antialiased when shrinking), takes the center RxR crop (or a random one drawn from ``rng`` when
  ``crop='random'``), and flips horizontally with p=0.5 when ``flip`` (drawn from ``rng`` after the crop
  offsets). Grayscale stays one channel. ``Batches`` applies exactly this to position i with
  ``rng=np.random.default_rng([seed, i, 1])``.
  """
  image = as_image(image)
  load_size = check_options(resolution, load_size, crop)
  if (crop == 'random' or flip) and rng is None:
    raise DataError("crop='random' and flip=True need rng=np.random.default_rng(...)")
  r = int(resolution)
  return to_float(stage2(stage1(image, r, load_size, crop), r, crop, flip, rng))
