"""TFDS builders that prepare datasets without network access.

Each builder writes the usual TFDS layout (``<data_dir>/<name>/[<config>/]<version>/``, array_record files)
from files the user already has (each class's ``MANUAL_DOWNLOAD_INSTRUCTIONS`` lists them) or, for
``digits``, from data bundled with scikit-learn. Image features hold encoded bytes: PNG (encoded here with
Pillow) for datasets distributed as arrays, the original JPEG/PNG/WebP bytes otherwise, so preparation
never imports TensorFlow and never re-compresses a JPEG. Examples keep their source order
(``disable_shuffling``): ``common.data.Batches`` shuffles, and a fixed order keeps example ids stable.

The builders stay out of TFDS's global registry (``skip_registration``), so importing this module twice
under different names cannot clash; use them through ``common.data.open_source`` or instantiate them with
``Builder(data_dir=...)`` and ``download_and_prepare(download_config=DownloadConfig(manual_dir=...))``.
``url_infos = None`` on every builder says there is nothing to download.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import gzip
import hashlib
import io
import json
import logging
import os
import pickle
import re
import struct
import zlib
import tarfile
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from common.datasets import codec
from common.datasets.errors import one_line

log = logging.getLogger('common.data')

_V1 = tfds.core.Version('1.0.0')
_NOTES = {'1.0.0': 'First version.'}
_TEN = [str(d) for d in range(10)]


class DataFileError(ValueError):
  """A manual file is malformed; ``common.data`` turns it into a ``DataError``. ``fix``: what to do (None when
  the message already says it)."""

  def __init__(self, message: str, fix: str | None = 'replace the file with the original one'):
    super().__init__(message)
    self.fix = fix


def _first(directory: Path, names) -> Path | None:
  for n in names:
    p = directory / n
    if p.exists():
      return p
  return None


def _natural_key(s: str):
  return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', s)]


class _Offline(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Common parts: version, no downloads, and the manual-file contract used by ``common.data``."""
  VERSION = _V1
  RELEASE_NOTES = _NOTES
  url_infos = None
  MANUAL_FILES = ''   # one line for error messages: which files to put in the manual dir

  def find_files(self, manual_dir: Path) -> dict | None:
    """The manual files this builder would read from ``manual_dir``, or None when they are not all there."""
    raise NotImplementedError

  def _files(self, dl_manager) -> dict:
    files = self.find_files(Path(dl_manager.manual_dir))
    if files is None:
      raise DataFileError(f'{self.name}: expected {self.MANUAL_FILES} in {dl_manager.manual_dir}')
    return files

  def _info_with(self, features: dict, supervised: bool = True, homepage: str | None = None):
    return tfds.core.DatasetInfo(
        builder=self, features=tfds.features.FeaturesDict(features),
        supervised_keys=('image', 'label') if supervised else None,
        disable_shuffling=True, homepage=homepage)


# -- digits (embedded) -------------------------------------------------------------------------------------


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's digits as uint8 [1797, 8, 8, 1] (values 0..16 -> round(v * 255 / 16)) and int labels."""
  from sklearn.datasets import load_digits
  d = load_digits()
  images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  return images, d.target.astype(np.int64)


class Digits(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Handwritten digits bundled with scikit-learn (UCI optdigits, 1797 8x8 grayscale images, 10 classes).

  Splits in scikit-learn's order: ``train`` = examples 0..1496, ``test`` = 1497..1796. No download ever.
  """
  name = 'digits'
  VERSION = _V1
  RELEASE_NOTES = _NOTES
  url_infos = None
  NUM_TRAIN = 1497

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({'image': tfds.features.Image(shape=(8, 8, 1)),
                                             'label': tfds.features.ClassLabel(names=_TEN)}),
        supervised_keys=('image', 'label'), disable_shuffling=True,
        homepage='https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset')

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(0, self.NUM_TRAIN),
            'test': self._generate_examples(self.NUM_TRAIN, None)}

  def _generate_examples(self, start, stop):
    images, labels = digits_arrays()
    for i in range(start, len(images) if stop is None else stop):
      yield i, {'image': codec.encode_png(images[i]), 'label': int(labels[i])}


# -- MNIST and Fashion-MNIST from idx files ----------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
  """An idx file (optionally gzipped) of unsigned bytes, as a numpy array with the file's dimensions."""
  opener = gzip.open if path.suffix == '.gz' else open
  try:
    with opener(path, 'rb') as f:
      data = f.read()
  except (OSError, EOFError, zlib.error) as e:      # truncated or not gzip at all
    raise DataFileError(f'{path} cannot be read ({type(e).__name__}: {e})') from None
  if len(data) < 4 or data[:2] != b'\0\0' or data[2] != 0x08:
    raise DataFileError(f'{path} is not an idx file of unsigned bytes')
  ndim = data[3]
  dims = struct.unpack(f'>{ndim}I', data[4:4 + 4 * ndim])
  arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if arr.size != int(np.prod(dims)):
    raise DataFileError(f'{path} holds {arr.size} bytes of data, its header says {dims}')
  return arr.reshape(dims)


class _Idx(_Offline, skip_registration=True):
  LABEL_NAMES = _TEN
  HOMEPAGE = None
  FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
           'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}
  MANUAL_FILES = ('train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, '
                  't10k-labels-idx1-ubyte.gz (or the same files uncompressed)')
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Put {MANUAL_FILES} in the manual dir.'

  def find_files(self, manual_dir):
    out = {}
    for split, names in self.FILES.items():
      paths = tuple(_first(manual_dir, (n + '.gz', n)) for n in names)
      if None in paths:
        return None
      out[split] = paths
    return out

  def _info(self):
    return self._info_with({'image': tfds.features.Image(shape=(28, 28, 1)),
                            'label': tfds.features.ClassLabel(names=self.LABEL_NAMES)}, homepage=self.HOMEPAGE)

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(*paths) for split, paths in self._files(dl_manager).items()}

  def _generate_examples(self, images_path, labels_path):
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1 or len(labels) != len(images):
      raise DataFileError(f'{images_path.name} {images.shape} and {labels_path.name} {labels.shape} are not '
                          'matching 28x28 images and labels')
    for i in range(len(images)):
      yield i, {'image': codec.encode_png(images[i]), 'label': int(labels[i])}


class MnistManual(_Idx, skip_registration=True):
  """MNIST from its original idx files (same features as TFDS ``mnist``)."""
  name = 'mnist_manual'
  HOMEPAGE = 'http://yann.lecun.com/exdb/mnist/'


class FashionMnistManual(_Idx, skip_registration=True):
  """Fashion-MNIST from its original idx files (same features as TFDS ``fashion_mnist``)."""
  name = 'fashion_mnist_manual'
  HOMEPAGE = 'https://github.com/zalandoresearch/fashion-mnist'
  LABEL_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag',
                 'Ankle boot']


# -- CIFAR-10 ----------------------------------------------------------------------------------------------

_CIFAR_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
_CIFAR_SPLITS = {'train': [f'data_batch_{i}' for i in range(1, 6)], 'test': ['test_batch']}


class _CifarUnpickler(pickle.Unpickler):
  """Unpickles CIFAR's python batches, allowing only what a numpy array needs (no arbitrary code)."""
  _ALLOWED = {('numpy', 'ndarray'), ('numpy', 'dtype'), ('numpy.core.multiarray', '_reconstruct'),
              ('numpy._core.multiarray', '_reconstruct'), ('numpy.core.multiarray', 'scalar'),
              ('numpy._core.multiarray', 'scalar'), ('_codecs', 'encode')}

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise DataFileError(f'unexpected object {module}.{name} in a CIFAR batch')
    if module.startswith('numpy.core') and hasattr(np, '_core'):
      module = 'numpy._core' + module[len('numpy.core'):]
    return super().find_class(module, name)


def _cifar_python_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
  d = _CifarUnpickler(io.BytesIO(data), encoding='bytes').load()
  images = np.asarray(d[b'data'], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  labels = np.asarray(d[b'labels'], np.int64)
  if len(images) != len(labels):
    raise DataFileError(f'CIFAR batch {name}: {len(images)} images but {len(labels)} labels')
  return images, labels


def _cifar_binary_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
  if len(data) % 3073:
    raise DataFileError(f'CIFAR batch {name}: {len(data)} bytes is not a whole number of 3073-byte records')
  rec = np.frombuffer(data, np.uint8).reshape(-1, 3073)
  return rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), rec[:, 0].astype(np.int64)


class Cifar10Manual(_Offline, skip_registration=True):
  """CIFAR-10 from ``cifar-10-python.tar.gz`` (or ``cifar-10-batches-py/``; the binary version works too)."""
  name = 'cifar10_manual'
  MANUAL_FILES = ('cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/, or cifar-10-binary.tar.gz '
                  '/ cifar-10-batches-bin/)')
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Put {MANUAL_FILES} in the manual dir.'
  _CANDIDATES = (('cifar-10-batches-py', 'python'), ('cifar-10-python.tar.gz', 'python'),
                 ('cifar-10-batches-bin', 'binary'), ('cifar-10-binary.tar.gz', 'binary'))

  def find_files(self, manual_dir):
    for name, kind in self._CANDIDATES:
      if (manual_dir / name).exists():
        return {'path': manual_dir / name, 'kind': kind}
    return None

  def _info(self):
    return self._info_with({'image': tfds.features.Image(shape=(32, 32, 3)),
                            'label': tfds.features.ClassLabel(names=_CIFAR_NAMES)},
                           homepage='https://www.cs.toronto.edu/~kriz/cifar.html')

  def _split_generators(self, dl_manager):
    files = self._files(dl_manager)
    return {split: self._generate_examples(files['path'], files['kind'], batches)
            for split, batches in _CIFAR_SPLITS.items()}

  def _read_batches(self, path: Path, kind: str, batches: list[str]) -> dict[str, bytes]:
    wanted = {b + ('.bin' if kind == 'binary' else ''): b for b in batches}
    found = {}
    if path.is_dir():
      for fname, b in wanted.items():
        if (path / fname).exists():
          found[b] = (path / fname).read_bytes()
    else:
      with tarfile.open(path, 'r:*') as tar:
        for member in tar:
          b = wanted.get(os.path.basename(member.name))
          if b is not None and member.isfile():
            found[b] = tar.extractfile(member).read()
    missing = [b for b in batches if b not in found]
    if missing:
      raise DataFileError(f'{path} lacks CIFAR-10 batches {", ".join(missing)}')
    return found

  def _generate_examples(self, path, kind, batches):
    raw = self._read_batches(path, kind, batches)
    parse = _cifar_python_batch if kind == 'python' else _cifar_binary_batch
    for b in batches:
      images, labels = parse(raw[b], b)
      for i in range(len(images)):
        yield f'{b}_{i}', {'image': codec.encode_png(images[i]), 'label': int(labels[i])}


# -- SVHN (cropped digits) ---------------------------------------------------------------------------------


class SvhnCroppedManual(_Offline, skip_registration=True):
  """SVHN cropped digits from ``train_32x32.mat`` and ``test_32x32.mat`` (and ``extra_32x32.mat`` if present).

  Label 10 in the .mat files means digit 0 (as in TFDS ``svhn_cropped``).
  """
  name = 'svhn_cropped_manual'
  MANUAL_FILES = 'train_32x32.mat and test_32x32.mat (extra_32x32.mat optional)'
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Put {MANUAL_FILES} in the manual dir.'

  def find_files(self, manual_dir):
    out = {s: manual_dir / f'{s}_32x32.mat' for s in ('train', 'test', 'extra')}
    if not (out['train'].exists() and out['test'].exists()):
      return None
    return {s: p for s, p in out.items() if p.exists()}

  def _info(self):
    return self._info_with({'image': tfds.features.Image(shape=(32, 32, 3)),
                            'label': tfds.features.ClassLabel(names=_TEN)},
                           homepage='http://ufldl.stanford.edu/housenumbers/')

  def _split_generators(self, dl_manager):
    return {s: self._generate_examples(p) for s, p in self._files(dl_manager).items()}

  def _generate_examples(self, path):
    import scipy.io
    try:
      mat = scipy.io.loadmat(path)
      x, y = mat['X'], mat['y']
    except Exception as e:  # noqa: BLE001 - any unreadable .mat
      raise DataFileError(f'{path} is not an SVHN .mat file with X and y ({e})') from None
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
      raise DataFileError(f'{path}: X {x.shape} and y {y.shape} are not 32x32x3xN images and N labels')
    images = np.asarray(x, np.uint8).transpose(3, 0, 1, 2)
    labels = np.asarray(y).reshape(-1).astype(np.int64) % 10
    for i in range(len(images)):
      yield i, {'image': codec.encode_png(images[i]), 'label': int(labels[i])}


# -- CelebA ------------------------------------------------------------------------------------------------

_IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.webp', '.bmp', '.gif', '.tif', '.tiff', '.ppm', '.pgm')
_PARTITIONS = {0: 'train', 1: 'validation', 2: 'test'}


class CelebAManual(_Offline, skip_registration=True):
  """CelebA's aligned faces from ``img_align_celeba/`` or ``img_align_celeba.zip``; unlabeled.

  With ``list_eval_partition.txt`` (or Kaggle's ``list_eval_partition.csv``) the splits are train /
  validation / test as published; without it every image is in ``train``. Original JPEG bytes are stored.
  """
  name = 'celeb_a_manual'
  MANUAL_FILES = 'img_align_celeba/ (or img_align_celeba.zip), and list_eval_partition.txt for the splits'
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Put {MANUAL_FILES} in the manual dir.'

  def find_files(self, manual_dir):
    images = _first(manual_dir, ('img_align_celeba', 'img_align_celeba.zip'))
    if images is None:
      return None
    return {'images': images,
            'partition': _first(manual_dir, ('list_eval_partition.txt', 'list_eval_partition.csv'))}

  def _info(self):
    return self._info_with({'image': tfds.features.Image(shape=(None, None, 3)), 'id': tfds.features.Text()},
                           supervised=False, homepage='https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html')

  @staticmethod
  def _members(images: Path) -> dict[str, str]:
    """basename -> path inside the dir or zip, for every image file."""
    out = {}
    if images.is_dir():
      for dirpath, dirnames, filenames in os.walk(images):
        dirnames[:] = [d for d in dirnames if not d.startswith('.')]
        for f in filenames:
          if f.lower().endswith(_IMAGE_EXTENSIONS) and not f.startswith('.'):
            out[f] = os.path.join(dirpath, f)
    else:
      with zipfile.ZipFile(images) as z:
        for n in z.namelist():
          base = n.rsplit('/', 1)[-1]
          if base.lower().endswith(_IMAGE_EXTENSIONS) and not base.startswith('.') and '__MACOSX' not in n:
            out[base] = n
    return out

  @staticmethod
  def _partition(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
      parts = line.replace(',', ' ').split()
      if len(parts) == 2 and parts[1].isdigit() and int(parts[1]) in _PARTITIONS:
        out[parts[0]] = _PARTITIONS[int(parts[1])]
    if not out:
      raise DataFileError(f'{path} has no "<image> <0|1|2>" lines')
    return out

  def _split_generators(self, dl_manager):
    files = self._files(dl_manager)
    members = self._members(files['images'])
    if not members:
      raise DataFileError(f'{files["images"]} holds no images')
    if files['partition'] is not None:
      part = self._partition(files['partition'])
      splits: dict[str, list[str]] = {}
      for base in sorted(members):
        if base in part:
          splits.setdefault(part[base], []).append(base)
      unlisted = len(members) - sum(map(len, splits.values()))
      if unlisted:
        log.warning('celeba: %d images are not in %s and are left out', unlisted, files['partition'].name)
    else:
      splits = {'train': sorted(members)}
    return {s: self._generate_examples(files['images'], [(b, members[b]) for b in names])
            for s, names in splits.items()}

  def _generate_examples(self, images, names):
    zf = None if images.is_dir() else zipfile.ZipFile(images)
    try:
      skipped = []
      for base, member in names:
        data = Path(member).read_bytes() if zf is None else zf.read(member)
        if codec.sniff(data) is None:
          skipped.append(base)
          continue
        yield base, {'image': data, 'id': base}
      if skipped:
        log.warning('celeba: skipped %d files that are not JPEG/PNG/WebP images (%s)', len(skipped),
                    ', '.join(skipped[:5]))
    finally:
      if zf is not None:
        zf.close()


# -- LSUN --------------------------------------------------------------------------------------------------

LSUN_SCENES = ('bedroom', 'bridge', 'church_outdoor', 'classroom', 'conference_room', 'dining_room', 'kitchen',
               'living_room', 'restaurant', 'tower')
LSUN_OBJECTS = ('airplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
                'dining_table', 'dog', 'horse', 'motorbike', 'person', 'potted_plant', 'sheep', 'sofa', 'train',
                'tv-monitor')


def _find_lmdb(root: Path) -> Path | None:
  """The directory holding ``data.mdb`` at or below ``root``."""
  if (root / 'data.mdb').exists():
    return root
  for dirpath, _, filenames in os.walk(root):
    if 'data.mdb' in filenames:
      return Path(dirpath)
  return None


class LsunManual(_Offline, skip_registration=True):
  """LSUN categories from the official LMDB exports (zip or extracted) or from a folder of their images.

  Scenes: ``<category>_train_lmdb.zip`` / ``<category>_train_lmdb/`` (and ``_val_`` for ``validation``);
  objects: ``<category>.zip`` / ``<category>/``. A directory without ``data.mdb`` is read as an image
  folder (e.g. the output of LSUN's ``data.py export``). The stored bytes are the LMDB values as they are
  (JPEG or WebP; Pillow decodes both). Reading an LMDB needs ``pip install lmdb``.
  """
  name = 'lsun_manual'
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=c) for c in LSUN_SCENES + LSUN_OBJECTS]

  @property
  def MANUAL_FILES(self):  # noqa: N802 - per config
    c = self.builder_config.name
    if c in LSUN_OBJECTS:
      return f'{c}.zip (or the extracted {c}/ LMDB directory, or a folder {c}/ of its images)'
    return (f'{c}_train_lmdb.zip (or the extracted {c}_train_lmdb/, or a folder {c}_train/ of its images; '
            f'{c}_val_lmdb.zip optional)')

  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Put <category>_train_lmdb.zip (from LSUN) in the manual dir.'

  def _candidates(self, split):
    c = self.builder_config.name
    if c in LSUN_OBJECTS:
      return (c, f'{c}.zip', f'{c}_lmdb') if split == 'train' else ()
    tag = 'train' if split == 'train' else 'val'
    return (f'{c}_{tag}_lmdb', f'{c}_{tag}_lmdb.zip', f'{c}_{tag}')

  def find_files(self, manual_dir):
    out = {}
    for split in ('train', 'validation'):
      p = _first(manual_dir, self._candidates(split))
      if p is not None:
        out[split] = p
    return out if 'train' in out else None

  def _info(self):
    return self._info_with({'image': tfds.features.Image(shape=(None, None, 3)), 'id': tfds.features.Text()},
                           supervised=False, homepage='https://www.yf.io/p/lsun')

  def _split_generators(self, dl_manager):
    out = {}
    for split, path in self._files(dl_manager).items():
      if path.suffix == '.zip':
        path = Path(dl_manager.extract(path))
      out[split] = self._generate_examples(path)
    return out

  def _generate_examples(self, path):
    lmdb_dir = _find_lmdb(path)
    skipped = []
    if lmdb_dir is None:   # an image folder
      items = _walk_files(path)
      if not items:
        raise DataFileError(f'{path} holds neither an LMDB (data.mdb) nor images')
      for rel in items:
        data = (path / rel).read_bytes()
        if codec.sniff(data) is None:
          skipped.append(rel)
          continue
        yield rel, {'image': data, 'id': rel}
    else:
      try:
        import lmdb
      except ImportError:
        raise DataFileError('reading LSUN LMDB files needs the lmdb package: pip install lmdb '
                            '(or pip install .[lsun])', fix=None) from None
      env = lmdb.open(str(lmdb_dir), readonly=True, lock=False, readahead=False, meminit=False)
      try:
        with env.begin(write=False) as txn:
          for key, value in txn.cursor():
            k = key.decode('utf-8', 'replace')
            if codec.sniff(value) is None:
              skipped.append(k)
              continue
            yield k, {'image': bytes(value), 'id': k}
      finally:
        env.close()
    if skipped:
      log.warning('lsun: skipped %d records that are not JPEG/PNG/WebP images (%s)', len(skipped),
                  ', '.join(skipped[:5]))


# -- ImageNet resized (Chrabaszcz et al. 2017) -------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class _SizeConfig(tfds.core.BuilderConfig):
  size: int = 32


class ImagenetResizedManual(_Offline, skip_registration=True):
  """Downsampled ImageNet from its npz archives (``Imagenet32_train_npz.zip``, ``Imagenet32_val_npz.zip``).

  The archives (image-net.org account needed) hold ``*.npz`` batches with ``data`` [N, 3*S*S] (CHW) and
  1-based ``labels``; splits ``train`` and ``validation``. Same features as TFDS ``imagenet_resized``.
  """
  name = 'imagenet_resized_manual'
  BUILDER_CONFIGS = [_SizeConfig(name=f'{s}x{s}', size=s) for s in (8, 16, 32, 64)]
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Put Imagenet32_train_npz.zip and Imagenet32_val_npz.zip in the manual dir.'

  @property
  def MANUAL_FILES(self):  # noqa: N802 - per config
    s = self.builder_config.size
    train = (f'Imagenet{s}_train_npz.zip' if s != 64 else
             'Imagenet64_train_part1_npz.zip, Imagenet64_train_part2_npz.zip')
    return f'{train} and Imagenet{s}_val_npz.zip (or the same names without .zip as extracted folders)'

  def find_files(self, manual_dir):
    s = self.builder_config.size
    stems = {'train': [f'Imagenet{s}_train_npz'] if s != 64 else
                      ['Imagenet64_train_part1_npz', 'Imagenet64_train_part2_npz'],
             'validation': [f'Imagenet{s}_val_npz']}
    out = {}
    for split, names in stems.items():
      paths = [_first(manual_dir, (n + '.zip', n)) for n in names]
      if None in paths:
        return None
      out[split] = paths
    return out

  def _info(self):
    names = tfds.core.tfds_path('image_classification/imagenet_resized_labels.txt')
    label = (tfds.features.ClassLabel(names_file=names) if names.exists()
             else tfds.features.ClassLabel(num_classes=1000))
    s = self.builder_config.size
    return self._info_with({'image': tfds.features.Image(shape=(s, s, 3)), 'label': label},
                           homepage='https://patrykchrabaszcz.github.io/Imagenet32/')

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(paths) for split, paths in self._files(dl_manager).items()}

  @staticmethod
  def _npz_members(path: Path) -> Iterator[tuple[str, bytes]]:
    if path.is_dir():
      for f in sorted((p for p in path.rglob('*.npz')), key=lambda p: _natural_key(p.name)):
        yield f.name, f.read_bytes()
    else:
      with zipfile.ZipFile(path) as z:
        for n in sorted((n for n in z.namelist() if n.endswith('.npz')), key=_natural_key):
          yield n.rsplit('/', 1)[-1], z.read(n)

  def _generate_examples(self, paths):
    s = self.builder_config.size
    count = 0
    for path in paths:
      for name, blob in self._npz_members(path):
        with np.load(io.BytesIO(blob), allow_pickle=False) as d:
          data, labels = d['data'], np.asarray(d['labels']).reshape(-1)
        if data.ndim != 2 or data.shape[1] != 3 * s * s or len(labels) != len(data):
          raise DataFileError(f'{name}: data {data.shape} and labels {labels.shape} are not N x {3 * s * s} '
                              'images and N labels')
        images = data.reshape(-1, 3, s, s).transpose(0, 2, 3, 1)
        for i in range(len(images)):
          yield f'{name}_{i}', {'image': codec.encode_png(images[i]), 'label': int(labels[i]) - 1}
          count += 1
    if not count:
      raise DataFileError(f'{", ".join(map(str, paths))} hold no .npz batches')


# -- any folder of images ----------------------------------------------------------------------------------


def _walk_files(root: Path) -> list[str]:
  """Relative paths of all non-hidden files below ``root``, sorted."""
  out = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
    rel_dir = os.path.relpath(dirpath, root)
    for f in sorted(filenames):
      if not f.startswith('.'):
        out.append(f if rel_dir == '.' else os.path.join(rel_dir, f))
  return sorted(out)


def folder_fingerprint(root: Path) -> tuple[str, list[str]]:
  """A hash of the names, sizes and modification times of all files below ``root`` (cheap: no reads)."""
  files = _walk_files(root)
  h = hashlib.sha1()
  for rel in files:
    st = os.stat(root / rel)
    h.update(f'{rel}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
  return h.hexdigest(), files


@dataclasses.dataclass
class FolderPlan:
  """What ``LocalImageFolder`` writes: the result of checking every file once."""
  root: str
  fingerprint: str
  splits: dict[str, list[tuple[str, int]]]          # split -> [(relative path, label or -1)]
  class_names: list[str] | None
  channels: int
  transcode: frozenset[str]                          # files stored re-encoded as PNG
  skipped: list[tuple[str, str]]                     # (relative path, reason)
  num_files: int

  def summary(self) -> dict:
    return {'root': self.root, 'fingerprint': self.fingerprint, 'class_names': self.class_names,
            'channels': self.channels, 'num_files': self.num_files, 'skipped': self.skipped,
            'splits': {s: len(v) for s, v in self.splits.items()}}


def _inspect_image(path: Path) -> tuple[str, str]:
  with Image.open(path) as im:
    im.load()
    return im.format, im.mode


def scan_folder(root: Path, *, num_threads: int | None = None) -> FolderPlan:
  """Lays out splits and classes of an image folder and decodes every file once to find unreadable ones.

  Layout: ``train/`` and ``test/`` at the top level are the splits (else every file is ``train``); inside a
  split, first-level subfolders are classes (sorted names -> labels 0..K-1), and files directly in the
  split folder are then skipped as unlabeled. Hidden files and folders are ignored.
  """
  fingerprint, files = folder_fingerprint(root)
  top = {p.split(os.sep, 1)[0] for p in files if os.sep in p}
  split_dirs = {'train', 'test'} <= top
  skipped: list[tuple[str, str]] = []
  placed: dict[str, list[tuple[str, str | None]]] = {}
  for rel in files:
    parts = rel.split(os.sep)
    if split_dirs:
      if parts[0] not in ('train', 'test') or len(parts) == 1:
        skipped.append((rel, 'outside train/ and test/'))
        continue
      split, parts = parts[0], parts[1:]
    else:
      split = 'train'
    placed.setdefault(split, []).append((rel, parts[0] if len(parts) > 1 else None))
  labeled = any(c is not None for items in placed.values() for _, c in items)
  class_names = sorted({c for items in placed.values() for _, c in items if c is not None}) if labeled else None
  index = {c: i for i, c in enumerate(class_names or [])}

  candidates = [rel for items in placed.values() for rel, c in items if not labeled or c is not None]
  if labeled:
    skipped += [(rel, 'not inside a class folder') for items in placed.values() for rel, c in items if c is None]
  results: dict[str, tuple[str, str] | str] = {}

  def check(rel):
    try:
      return rel, _inspect_image(root / rel)
    except Exception as e:  # noqa: BLE001 - every kind of unreadable file is skipped alike
      return rel, one_line(e, 200)

  workers = num_threads or min(8, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for rel, res in pool.map(check, candidates, chunksize=64):
      results[rel] = res
  good = {rel: res for rel, res in results.items() if isinstance(res, tuple)}
  skipped += [(rel, res) for rel, res in results.items() if isinstance(res, str)]
  channels = 1 if good and all(mode in codec.GRAYSCALE_MODES for _, mode in good.values()) else 3
  keep_modes = ('L',) if channels == 1 else ('L', 'RGB')
  transcode = frozenset(rel for rel, (fmt, mode) in good.items()
                        if fmt not in ('JPEG', 'PNG') or mode not in keep_modes)
  splits = {s: [(rel, index[c] if labeled else -1) for rel, c in items if rel in good]
            for s, items in placed.items()}
  splits = {s: v for s, v in splits.items() if v}
  return FolderPlan(root=str(root), fingerprint=fingerprint, splits=splits, class_names=class_names,
                    channels=channels, transcode=transcode, skipped=sorted(skipped), num_files=len(files))


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  plan: FolderPlan | None = dataclasses.field(default=None, repr=False)


SIDECAR = 'folder.json'


def folder_config_name(root: Path) -> str:
  """``<basename>-<hash of the absolute path>``: readable, and two folders never share a directory."""
  base = re.sub(r'[^a-z0-9_]+', '_', root.name.lower()).strip('_')[:40] or 'root'
  return f'{base}-{hashlib.sha1(str(root).encode()).hexdigest()[:12]}'


class LocalImageFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A directory tree of images, prepared once into array_record (see ``scan_folder`` for the layout).

  JPEG and PNG files in mode L/RGB are stored as they are; other formats and modes are re-encoded as PNG.
  ``folder.json`` beside the data records the folder's fingerprint and the skipped files.
  """
  name = 'image_folder_local'
  VERSION = _V1
  RELEASE_NOTES = _NOTES
  url_infos = None

  @property
  def plan(self) -> FolderPlan:
    return self.builder_config.plan

  def _info(self):
    features = {'image': tfds.features.Image(shape=(None, None, self.plan.channels)), 'id': tfds.features.Text()}
    if self.plan.class_names:
      features['label'] = tfds.features.ClassLabel(names=self.plan.class_names)
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features),
                                 disable_shuffling=True, description=f'Images from {self.plan.root}')

  def _split_generators(self, dl_manager):
    del dl_manager
    (self.data_path / SIDECAR).write_text(json.dumps(self.plan.summary()))
    return {s: self._generate_examples(items) for s, items in self.plan.splits.items()}

  def _generate_examples(self, items):
    root, plan = Path(self.plan.root), self.plan
    for rel, label in items:
      if rel in plan.transcode:
        with Image.open(root / rel) as im:
          data = codec.encode_png(np.asarray(codec.to_mode(im, plan.channels)))
      else:
        data = (root / rel).read_bytes()
      ex = {'image': data, 'id': rel}
      if plan.class_names:
        ex['label'] = label
      yield rel, ex
