"""Random-access sources: ``open_source(name, split)`` -> (``Source``, ``DatasetInfo``).

Names: ``digits`` (embedded, the default), ``mnist``, ``fashion_mnist``, ``cifar10``, ``svhn``, ``celeba``,
``lsun`` (= ``lsun/bedroom``), ``lsun/<category>``, ``imagenet32``, ``imagenet64``, ``folder:PATH``. How a
dataset gets prepared (official TFDS data, our offline builders, manual files, download) is
``common.datasets.prepare``'s job; this module reads the prepared array_record files through TFDS's
``as_data_source`` and decodes images with Pillow (``common.datasets.codec``).
"""
from __future__ import annotations

import dataclasses
import operator
from typing import Any, Sequence

from common.datasets import codec
from common.datasets import prepare as _prepare
from common.datasets.errors import DataError
from common.preprocess import decode_resized


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  name: str                 # canonical: 'digits', 'mnist', 'lsun/bedroom', 'folder:/abs/path', ...
  split: str
  num_examples: int         # in this split
  num_classes: int | None   # None when unlabeled
  channels: int             # 1 (grayscale) or 3


def open_source(name: str, split: str = 'train', *, data_dir: str | None = None,
                manual_dir: str | None = None, strict: bool = False,
                download: bool = True) -> tuple['Source', DatasetInfo]:
  """Random-access source of one split: ``len(src)``; ``src[i] -> {'image': uint8 HxWxC, 'label': int}``.

  Prepares the dataset into ``data_dir`` (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``) on first
  use, offline from ``manual_dir`` (default ``<data_dir>/downloads/manual``) or embedded data where possible
  (see ``common.datasets.prepare``). ``strict`` (``folder:`` only): fail on unreadable files instead of
  skipping. ``download=False`` never tries an official download. ``split`` may be a TFDS slice
  ('train[:90%]'); 'test' falls back to 'validation' for datasets without a test split (LSUN, ImageNet).
  """
  p = _prepare.prepare(name, split, data_dir=data_dir, manual_dir=manual_dir, strict=strict, download=download)
  tfds = _prepare.tfds()
  ds = p.builder.as_data_source(split=p.split, decoders={'image': tfds.decode.SkipDecoding()})
  source = Source(ds, p.builder.info.features, name=p.name, split=p.split, skipped=p.skipped)
  return source, source.info


class Source:
  """Random access to one split: ``len(src)``; ``src[i] -> {'image': uint8 HxWxC, 'label': int}``.

  ``label`` is -1 for unlabeled data; C is ``src.channels`` (1 or 3). Images are decoded with Pillow from
  the stored bytes. Thread-safe, and picklable (``Batches`` sends it to its worker processes). Attributes:
  ``info`` (``DatasetInfo``), ``channels``, ``num_classes``, ``image_shape`` (from the TFDS feature; None
  for variable sizes), ``skipped_files`` ((path, reason) pairs left out when a folder was prepared).
  """

  def __init__(self, data_source, features, *, name: str, split: str, skipped: Sequence = ()):
    from tensorflow_datasets.core.features import class_label_feature
    image = features['image']
    label = features['label'] if 'label' in features.keys() else None
    self._ds = data_source
    self.image_shape = tuple(image.shape)
    self.channels = int(image.shape[-1])
    self.num_classes = label.num_classes if isinstance(label, class_label_feature.ClassLabel) else None
    self.skipped_files = tuple(tuple(s) for s in skipped)
    self.info = DatasetInfo(name=name, split=split, num_examples=len(data_source),
                            num_classes=self.num_classes, channels=self.channels)

  def __len__(self) -> int:
    return self.info.num_examples

  def __getitem__(self, i) -> dict[str, Any]:
    n = self.info.num_examples
    i = operator.index(i)
    if i < 0:
      i += n
    if not 0 <= i < n:
      raise IndexError(f'index {i} out of range for {self.info.name} {self.info.split} ({n} examples)')
    return self.decode_record(self._ds[i])

  def read_records(self, ids: Sequence[int]) -> list:
    """Stored records of ``ids`` (image still encoded) in one batched read: one array_record call costs
    about 0.1 ms plus ~10 us per record, so reading a batch at once is ~10x faster than one by one."""
    return self._ds.__getitems__([operator.index(i) for i in ids]) if len(ids) else []

  def decode_record(self, record, *, resize_to: int | None = None, draft: bool = True) -> dict[str, Any]:
    """A stored record -> ``{'image': uint8 HxWxC, 'label': int}``; with ``resize_to`` the image's shorter
    edge is resized to it (``common.preprocess.decode_resized``: JPEGs decoded at reduced scale if ``draft``)."""
    if resize_to is None:
      image = codec.decode(record['image'], self.channels)
    else:
      image = decode_resized(record['image'], self.channels, resize_to, draft=draft)
    return {'image': image, 'label': int(record['label']) if self.num_classes is not None else -1}

  def get_many(self, ids: Sequence[int]) -> list[dict[str, Any]]:
    """``[src[i] for i in ids]`` with one batched read."""
    return [self.decode_record(r) for r in self.read_records(ids)]

  def __repr__(self) -> str:
    i = self.info
    return f'Source({i.name!r}, split={i.split!r}, n={i.num_examples}, channels={i.channels})'


__all__ = ['DataError', 'DatasetInfo', 'Source', 'open_source']
