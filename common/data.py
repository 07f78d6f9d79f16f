"""Datasets and the input pipeline: TFDS random-access sources -> preprocessing -> deterministic batches.

``open_source(name, split)`` returns a random-access ``Source`` over a TFDS dataset stored as array_record
(``tfds`` ``as_data_source``), preparing it into ``data_dir`` on first use, and a ``DatasetInfo``.
``Batches`` turns a source into an endless, resumable stream of process-local batches.

Names: ``digits`` (embedded, the default), ``mnist``, ``fashion_mnist``, ``cifar10``, ``svhn``, ``celeba``,
``lsun`` (= ``lsun/bedroom``), ``lsun/<category>``, ``imagenet32``, ``imagenet64``, ``folder:PATH``.

How a dataset gets prepared, in order:
  1. TFDS's official dataset already prepared in ``data_dir`` (e.g. by ``tfds.load``): used as it is
     (converted once to array_record if it was prepared as tfrecord).
  2. Our offline build already prepared in ``data_dir`` (``<name>_manual/``): used.
  3. The original distribution files in ``manual_dir`` (default ``<data_dir>/downloads/manual``): prepared
     by our builder (``common/datasets/builders.py``), with TFDS's features; no network needed:
       mnist, fashion_mnist  train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz
                             t10k-labels-idx1-ubyte.gz (or uncompressed)
       cifar10               cifar-10-python.tar.gz or cifar-10-batches-py/ (binary version also accepted)
       svhn                  train_32x32.mat test_32x32.mat [extra_32x32.mat]
       celeba                img_align_celeba/ or img_align_celeba.zip [+ list_eval_partition.txt]
       lsun/<category>       <category>_train_lmdb.zip or <category>_train_lmdb/ or a folder
                             <category>_train/ of its images [+ the _val_ ones]; LMDB needs `pip install lmdb`
       imagenet32            Imagenet32_train_npz.zip Imagenet32_val_npz.zip (or extracted folders)
  4. Otherwise TFDS's official download, tried only after a quick (3 s) reachability check of the
     dataset's host; when it fails, a ``DataError`` names the files to put in ``manual_dir``.
``digits`` never downloads: it comes with scikit-learn. ImageNet is never downloaded (it needs an account).

``folder:PATH`` is prepared into array_record too (builder ``image_folder_local``, one directory per
folder, named by a hash of its absolute path) rather than read with PIL on the fly: files are checked
once (unreadable ones skipped and counted, or an error with ``strict=True``), random access is one read
from one file instead of a directory lookup, and every dataset then reads through the same path. A
fingerprint of file names, sizes and times detects a changed folder, which is then prepared again.

Determinism (exact resume, multi-host equivalence): the data is an endless sequence of positions
i = 0, 1, 2, ...; position i is example ``perm_e[i % n]`` with ``e = i // n`` and
``perm_e = np.random.default_rng([seed, e]).permutation(n)``. Global step s covers positions
[s*GB, (s+1)*GB); process p of P reads only [s*GB + p*LB, s*GB + (p+1)*LB) with LB = GB // P. Random
crops and flips of position i draw from ``np.random.default_rng([seed, i, 1])`` (the trailing 1 keeps
these keys apart from the permutation keys, which SeedSequence pads with zeros), so they depend neither
on the process count nor on where a run resumed.

TensorFlow is imported only to download official datasets or convert tfrecord data; when it is, its
GPUs are hidden (``tf.config.set_visible_devices([], 'GPU')``) so that it never takes JAX's accelerator.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import importlib.util
import json
import logging
import operator
import os
import queue
import re
import shutil
import socket
import struct
import sys
import threading
import urllib.parse
import weakref
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger('common.data')

CACHE_BYTES = 1 << 30          # auto-cache preprocessed uint8 images of a split up to this size (per process)
NETWORK_TIMEOUT_S = 3.0        # reachability check before an official download


class DataError(ValueError):
  """A problem with the data or the arguments; the message is one line naming the problem and the fix."""

  def __init__(self, message: str):
    super().__init__(re.sub(r'\s*[\r\n]+\s*', ' ', str(message)).strip())


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  name: str                 # canonical: 'digits', 'mnist', 'lsun/bedroom', 'folder:/abs/path', ...
  split: str
  num_examples: int         # in this split
  num_classes: int | None   # None when unlabeled
  channels: int             # 1 (grayscale) or 3


# -- datasets ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Spec:
  name: str                              # canonical name
  official: str | None                   # TFDS name[/config] of the official builder
  builder: str                           # our builder class in common.datasets.builders
  config: str | None = None              # its config
  hosts: tuple[tuple[str, int], ...] = ()  # what the official download connects to
  no_download: str | None = None         # why the official download is never tried
  needs: str | None = None               # module the official download needs


_SPECS = {
    'digits': _Spec('digits', None, 'Digits', no_download='it is embedded'),
    'mnist': _Spec('mnist', 'mnist', 'MnistManual', hosts=(('storage.googleapis.com', 443),)),
    'fashion_mnist': _Spec('fashion_mnist', 'fashion_mnist', 'FashionMnistManual',
                           hosts=(('fashion-mnist.s3-website.eu-central-1.amazonaws.com', 80),)),
    'cifar10': _Spec('cifar10', 'cifar10', 'Cifar10Manual', hosts=(('www.cs.toronto.edu', 443),)),
    'svhn': _Spec('svhn', 'svhn_cropped', 'SvhnCroppedManual', hosts=(('ufldl.stanford.edu', 80),)),
    'celeba': _Spec('celeba', 'celeb_a', 'CelebAManual', hosts=(('drive.google.com', 443),)),
    'imagenet32': _Spec('imagenet32', 'imagenet_resized/32x32', 'ImagenetResizedManual', config='32x32',
                        no_download='image-net.org downloads need an account'),
    'imagenet64': _Spec('imagenet64', 'imagenet_resized/64x64', 'ImagenetResizedManual', config='64x64',
                        no_download='image-net.org downloads need an account'),
}
_ALIASES = {'lsun': 'lsun/bedroom', 'svhn_cropped': 'svhn', 'celeb_a': 'celeba',
            'imagenet_resized/32x32': 'imagenet32', 'imagenet_resized/64x64': 'imagenet64'}
KNOWN_DATASETS = ('digits', 'mnist', 'fashion_mnist', 'cifar10', 'svhn', 'celeba', 'lsun', 'lsun/<category>',
                  'imagenet32', 'imagenet64', 'folder:PATH')


def _spec(name: str) -> _Spec:
  key = _ALIASES.get(name.strip().lower(), name.strip().lower())
  if key in _SPECS:
    return _SPECS[key]
  if key.startswith('lsun/'):
    from common.datasets import builders
    category = key[len('lsun/'):]
    if category in builders.LSUN_SCENES + builders.LSUN_OBJECTS:
      return _Spec(key, key, 'LsunManual', config=category, hosts=(('dl.yf.io', 80),), needs='tensorflow_io')
    raise DataError(f'unknown LSUN category {category!r}: choose one of '
                    f'{", ".join(builders.LSUN_SCENES + builders.LSUN_OBJECTS)}')
  raise DataError(f'unknown dataset {name!r}: choose one of {", ".join(KNOWN_DATASETS)}')


def _default_data_dir() -> Path:
  return Path(os.environ.get('TFDS_DATA_DIR') or '~/tensorflow_datasets').expanduser().absolute()


_tf_gpus_hidden = False


def _hide_tf_gpus() -> None:
  """Imports TensorFlow and hides the GPUs from it (JAX owns the accelerator); once per process."""
  global _tf_gpus_hidden
  if _tf_gpus_hidden:
    return
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], 'GPU')
  except (RuntimeError, ValueError):   # TF's devices are already initialised: too late to change
    if tf.config.list_physical_devices('GPU'):
      log.warning('TensorFlow was initialised before common.data could hide the GPUs from it')
  _tf_gpus_hidden = True


def _tfds():
  import tensorflow_datasets as tfds
  if 'tensorflow' in sys.modules:
    _hide_tf_gpus()
  return tfds


def _network_available(hosts: Sequence[tuple[str, int]], timeout: float = NETWORK_TIMEOUT_S) -> bool:
  """Whether any of ``hosts`` (or the configured proxy) accepts a TCP connection within ``timeout`` s.

  Runs in a daemon thread so that a slow DNS lookup cannot block longer than the timeout either.
  """
  targets = list(hosts)
  for var in ('HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy'):
    if os.environ.get(var):
      u = urllib.parse.urlsplit(os.environ[var] if '://' in os.environ[var] else 'http://' + os.environ[var])
      if u.hostname:
        targets = [(u.hostname, u.port or 80)]
        break
  ok = threading.Event()

  def probe():
    for host, port in targets:
      try:
        socket.create_connection((host, port), timeout=timeout).close()
        ok.set()
        return
      except OSError:
        continue

  t = threading.Thread(target=probe, daemon=True, name='network-check')
  t.start()
  t.join(timeout * max(1, len(targets)) + 0.5)
  return ok.is_set()


@contextlib.contextmanager
def _lock(data_dir: Path, key: str):
  """Serialises preparation of one dataset between processes of this machine (e.g. several local hosts)."""
  data_dir.mkdir(parents=True, exist_ok=True)
  try:
    import fcntl
  except ImportError:  # not POSIX: no lock
    yield
    return
  with open(data_dir / f'.{key.replace("/", "_")}.lock', 'w') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _one_line(e: BaseException, limit: int = 300) -> str:
  text = ' '.join(f'{type(e).__name__}: {e}'.split())
  return text if len(text) <= limit else text[:limit] + '...'


def _prepare_with(builder, manual_dir: Path | None, what: str) -> None:
  """``builder.download_and_prepare`` into array_record; every failure becomes a one-line ``DataError``."""
  tfds = _tfds()
  from common.datasets import builders
  log.info('preparing %s into %s%s', what, builder.data_dir, f' from {manual_dir}' if manual_dir else '')
  config = tfds.download.DownloadConfig(manual_dir=str(manual_dir) if manual_dir else None,
                                        try_download_gcs=False)
  try:
    builder.download_and_prepare(file_format='array_record', download_config=config)
  except DataError:
    raise
  except builders.DataFileError as e:
    raise DataError(f'{what}: {e}: replace the file with the original one') from None
  except Exception as e:  # noqa: BLE001 - anything TFDS or a reader raises
    raise DataError(f'preparing {what} failed ({_one_line(e)})') from e
  finally:
    if 'tensorflow' in sys.modules:
      _hide_tf_gpus()


def _prepared_builder(spec: _Spec, data_dir: Path, manual_dir: Path, download: bool):
  """A prepared TFDS builder for ``spec``, preparing or downloading it if needed (module docstring)."""
  tfds = _tfds()
  from common.datasets import builders
  cls = getattr(builders, spec.builder)
  make_ours = lambda: cls(data_dir=str(data_dir), config=spec.config)  # noqa: E731
  make_official = lambda: tfds.builder(spec.official, data_dir=str(data_dir))  # noqa: E731
  if spec.official:
    try:
      official = make_official()
    except Exception as e:  # noqa: BLE001 - an unknown or broken official builder counts as absent
      log.debug('official builder %s unavailable: %s', spec.official, e)
      official = None
    if official is not None and official.is_prepared():
      return official
  ours = make_ours()
  if ours.is_prepared():
    return ours
  if spec.official is None:   # embedded data
    with _lock(data_dir, ours.name):
      if not make_ours().is_prepared():
        _prepare_with(make_ours(), None, spec.name)
    return make_ours()
  if manual_dir.is_dir() and ours.find_files(manual_dir) is not None:
    with _lock(data_dir, f'{ours.name}-{spec.config}'):
      if not make_ours().is_prepared():
        _prepare_with(make_ours(), manual_dir, spec.name)
    return make_ours()
  if not download:
    reason = 'downloads are off'
  elif spec.no_download:
    reason = spec.no_download
  elif spec.needs and importlib.util.find_spec(spec.needs) is None:
    reason = f'the official TFDS builder needs the {spec.needs} package'
  elif not _network_available(spec.hosts):
    reason = f'no network: {", ".join(h for h, _ in spec.hosts)} is unreachable'
  else:
    try:
      with _lock(data_dir, spec.official):
        official = make_official()
        if not official.is_prepared():
          _hide_tf_gpus()
          _prepare_with(official, manual_dir, spec.name)
      return make_official()
    except DataError as e:
      reason = str(e)
  raise DataError(f'{spec.name} is not prepared in {data_dir} and could not be downloaded ({reason}): put '
                  f'{ours.MANUAL_FILES} in {manual_dir} (--manual_dir) and run again')


@contextlib.contextmanager
def _absl_filter(prefix: str):
  """Drops absl log records starting with ``prefix`` inside the block."""
  class _Drop(logging.Filter):
    def filter(self, record):
      return not str(record.msg).startswith(prefix)
  absl_logger, drop = logging.getLogger('absl'), _Drop()
  absl_logger.addFilter(drop)
  try:
    yield
  finally:
    absl_logger.removeFilter(drop)


def _read_sidecar(version_dir: Path) -> dict | None:
  from common.datasets import builders
  try:
    if (version_dir / 'dataset_info.json').exists():
      return json.loads((version_dir / builders.SIDECAR).read_text())
  except (OSError, ValueError):
    pass
  return None


def _skipped_message(where: str, skipped: list, total: int) -> str:
  names = ', '.join(rel for rel, _ in skipped[:5]) + (', ...' if len(skipped) > 5 else '')
  return (f'{where}: skipped {len(skipped)} of {total} files that are not readable images ({names}); '
          'pass strict=True to fail on them instead')


def _folder_builder(path: str, data_dir: Path, strict: bool):
  """(prepared builder, skipped files, canonical name) for ``folder:PATH``."""
  if not path.strip():
    raise DataError('folder: needs a path, e.g. --dataset=folder:/data/images')
  root = Path(path).expanduser().resolve()
  name = f'folder:{root}'
  if not root.is_dir():
    raise DataError(f'{name} is not a directory: give the path of a folder of PNG/JPEG images')
  tfds = _tfds()
  from common.datasets import builders
  config_name = builders.folder_config_name(root)
  version_dir = data_dir / builders.LocalImageFolder.name / config_name / str(builders.LocalImageFolder.VERSION)
  fingerprint, files = builders.folder_fingerprint(root)
  if not files:
    raise DataError(f'{name} contains no images: put PNG/JPEG files in it (optionally under train/ and test/, '
                    'and in one subfolder per class)')
  summary = _read_sidecar(version_dir)
  if summary is None or summary.get('fingerprint') != fingerprint:
    with _lock(data_dir, f'{builders.LocalImageFolder.name}-{config_name}'):
      summary = _read_sidecar(version_dir)
      if summary is None or summary.get('fingerprint') != fingerprint:
        if version_dir.exists():
          log.warning('%s changed since it was prepared into %s: preparing it again', name, version_dir)
          shutil.rmtree(version_dir)
        plan = builders.scan_folder(root)
        if strict and plan.skipped:
          rel, why = plan.skipped[0]
          raise DataError(f'{name}: {rel} is not a readable image ({why}): fix or remove it, or pass '
                          'strict=False to skip unreadable files')
        if not plan.splits:
          raise DataError(f'{name} contains no readable images ({len(plan.skipped)} files skipped, e.g. '
                          f'{plan.skipped[0][0]}: {plan.skipped[0][1]}): add PNG/JPEG files')
        config = builders.FolderConfig(name=config_name, version=str(builders.LocalImageFolder.VERSION),
                                       description=f'images in {root}', plan=plan)
        with _absl_filter('Using custom data configuration'):   # the config is custom by design
          builder = builders.LocalImageFolder(data_dir=str(data_dir), config=config)
        _prepare_with(builder, None, name)
        summary = json.loads(json.dumps(plan.summary()))
  skipped = [tuple(s) for s in summary.get('skipped', [])]
  if skipped:
    if strict:
      rel, why = skipped[0]
      raise DataError(f'{name}: {rel} is not a readable image ({why}): fix or remove it, or pass strict=False '
                      'to skip unreadable files')
    log.warning(_skipped_message(name, skipped, summary.get('num_files', len(files))))
  return tfds.builder_from_directory(str(version_dir)), skipped, name


def _pick_split(builder, split: str, name: str) -> str:
  splits = sorted(builder.info.splits.keys())
  base = split.split('[', 1)[0]
  if base in splits:
    return split
  if base == 'test' and 'validation' in splits:
    log.info('%s has no test split: using validation', name)
    return 'validation' + split[len(base):]
  raise DataError(f'{name} has no split {split!r}: choose one of {", ".join(splits)}')


def _tfrecord_records(path: Path):
  """The raw records of a TFRecord file (8-byte length, 4-byte CRC, data, 4-byte CRC each)."""
  with open(path, 'rb') as f:
    while True:
      head = f.read(12)
      if not head:
        return
      (length,) = struct.unpack('<Q', head[:8]) if len(head) == 12 else (-1,)
      data = f.read(length) if length >= 0 else b''
      if length < 0 or len(data) != length or len(f.read(4)) != 4:
        raise ValueError(f'{path} is truncated')
      yield data


def _add_array_record(version_dir: Path) -> None:
  """Writes an array_record copy of a dataset prepared as tfrecord (same records, same shard names) and
  lists array_record among its formats, as ``tfds convert_format`` would (that one needs Apache Beam)."""
  from array_record.python import array_record_module
  info_path = version_dir / 'dataset_info.json'
  info = json.loads(info_path.read_text())
  shards = sorted(version_dir.glob('*.tfrecord-*-of-*'))
  if not shards:
    raise ValueError(f'no tfrecord files in {version_dir}')
  for shard in shards:
    out = shard.with_name(shard.name.replace('.tfrecord-', '.array_record-'))
    tmp = out.with_name(out.name + '.incomplete')
    writer = array_record_module.ArrayRecordWriter(str(tmp), 'group_size:1')
    try:
      for record in _tfrecord_records(shard):
        writer.write(record)
    finally:
      writer.close()
    tmp.replace(out)
  formats = info.setdefault('alternativeFileFormats', [])
  if 'array_record' not in formats:
    formats.append('array_record')
  tmp = info_path.with_name(info_path.name + '.incomplete')
  tmp.write_text(json.dumps(info, indent=2))
  tmp.replace(info_path)


def _random_access(builder, name: str):
  """``builder`` itself if its data is in array_record, else after adding array_record files (once)."""
  tfds = _tfds()
  from tensorflow_datasets.core import file_adapters
  random_access = set(file_adapters.FileFormat.with_random_access())
  if builder.info.available_file_formats() & random_access:
    return builder
  version_dir = Path(builder.data_dir)
  stored = tfds.builder_from_directory(str(version_dir))   # code builders ignore alternative formats
  if stored.info.available_file_formats() & random_access:
    return stored
  log.warning('%s in %s is stored as %s: adding array_record files for random access (once)', name,
              version_dir, builder.info.file_format.value)
  try:
    with _lock(version_dir.parent, f'convert-{version_dir.name}'):
      if not tfds.builder_from_directory(str(version_dir)).info.available_file_formats() & random_access:
        _add_array_record(version_dir)
  except Exception as e:  # noqa: BLE001
    raise DataError(f'{name} in {version_dir} is stored as {builder.info.file_format.value}, and adding '
                    f'array_record files failed ({_one_line(e)}): make the directory writable, or delete it '
                    'and run again') from e
  return tfds.builder_from_directory(str(version_dir))


def open_source(name: str, split: str = 'train', *, data_dir: str | None = None,
                manual_dir: str | None = None, strict: bool = False,
                download: bool = True) -> tuple['Source', DatasetInfo]:
  """Random-access source of one split: ``len(src)``; ``src[i] -> {'image': uint8 HxWxC, 'label': int}``.

  Prepares the dataset into ``data_dir`` (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``) on first
  use, offline from ``manual_dir`` (default ``<data_dir>/downloads/manual``) or embedded data where possible
  (see the module docstring). ``strict`` (``folder:`` only): fail on unreadable files instead of skipping.
  ``download=False`` never tries an official download. ``split`` may be a TFDS slice ('train[:90%]');
  'test' falls back to 'validation' for datasets without a test split (LSUN, ImageNet).
  """
  if not isinstance(name, str) or not name.strip():
    raise DataError(f'dataset name must be a non-empty string, got {name!r}: choose one of '
                    f'{", ".join(KNOWN_DATASETS)}')
  if not isinstance(split, str) or not split:
    raise DataError(f'split must be a non-empty string such as "train", got {split!r}')
  data_root = Path(data_dir).expanduser().absolute() if data_dir else _default_data_dir()
  skipped: list = []
  if name.startswith('folder:'):
    builder, skipped, canonical = _folder_builder(name[len('folder:'):], data_root, strict)
  else:
    spec = _spec(name)
    canonical = spec.name
    manual = Path(manual_dir).expanduser().absolute() if manual_dir else data_root / 'downloads' / 'manual'
    builder = _prepared_builder(spec, data_root, manual, download)
  split = _pick_split(builder, split, canonical)
  builder = _random_access(builder, canonical)
  tfds = _tfds()
  ds = builder.as_data_source(split=split, decoders={'image': tfds.decode.SkipDecoding()})
  source = Source(ds, builder.info.features, name=canonical, split=split, skipped=skipped)
  return source, source.info


class Source:
  """Random access to one split: ``len(src)``; ``src[i] -> {'image': uint8 HxWxC, 'label': int}``.

  ``label`` is -1 for unlabeled data; C is ``src.channels`` (1 or 3). Images are decoded with Pillow from
  the stored bytes. Thread-safe (``Batches`` reads from several threads). Attributes: ``info``
  (``DatasetInfo``), ``channels``, ``num_classes``, ``image_shape`` (from the TFDS feature; None for
  variable sizes), ``skipped_files`` ((path, reason) pairs left out when a folder was prepared).
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
    self._batch_cache: dict = {}            # preprocessed images shared by Batches over this source
    self._batch_cache_lock = threading.Lock()

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

  def decode_record(self, record) -> dict[str, Any]:
    """A stored record -> ``{'image': uint8 HxWxC, 'label': int}``."""
    from common.datasets import codec
    return {'image': codec.decode(record['image'], self.channels),
            'label': int(record['label']) if self.num_classes is not None else -1}

  def get_many(self, ids: Sequence[int]) -> list[dict[str, Any]]:
    """``[src[i] for i in ids]`` with one batched read."""
    return [self.decode_record(r) for r in self.read_records(ids)]

  def __repr__(self) -> str:
    i = self.info
    return f'Source({i.name!r}, split={i.split!r}, n={i.num_examples}, channels={i.channels})'


# -- preprocessing -----------------------------------------------------------------------------------------

# uint8 -> [-1, 1] exactly (0 -> -1.0, 255 -> 1.0), as a gather.
_TO_FLOAT = (np.arange(256, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)).astype(np.float32)


def _as_image(image) -> np.ndarray:
  a = np.asarray(image)
  if a.ndim == 2:
    a = a[..., None]
  if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] not in (1, 3) or 0 in a.shape:
    raise DataError(f'expected a uint8 HxWxC image with C=1 or 3, got {a.dtype} {a.shape}: decode it to '
                    'uint8 grayscale or RGB first')
  return a


def _check_options(resolution, load_size, crop) -> int:
  """Validated ``load_size`` (default ``resolution``)."""
  if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
    raise DataError(f'resolution must be a positive integer, got {resolution!r}')
  if crop not in ('center', 'random'):
    raise DataError(f"crop must be 'center' or 'random', got {crop!r}")
  if load_size is None:
    return int(resolution)
  if isinstance(load_size, bool) or not isinstance(load_size, (int, np.integer)) or load_size < resolution:
    raise DataError(f'load_size={load_size!r} must be an integer >= resolution={resolution}: the shorter edge '
                    'is resized to load_size, then a resolution x resolution crop is taken')
  return int(load_size)


def _resize_shorter(image: np.ndarray, size: int) -> np.ndarray:
  """Shorter edge -> ``size`` (Pillow bilinear; antialiased when shrinking); aspect ratio kept."""
  h, w = image.shape[:2]
  if min(h, w) == size:
    return image
  if h <= w:
    nh, nw = size, max(size, int(round(w * size / h)))
  else:
    nh, nw = max(size, int(round(h * size / w))), size
  from PIL import Image
  pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  out = np.asarray(pil.resize((nw, nh), Image.Resampling.BILINEAR))
  return out[..., None] if out.ndim == 2 else out


def _stage1(image: np.ndarray, resolution: int, load_size: int, crop: str) -> np.ndarray:
  """The deterministic part: resize the shorter edge to ``load_size``; center crop if ``crop='center'``."""
  x = _resize_shorter(image, load_size)
  if crop == 'center':
    h, w = x.shape[:2]
    top, left = (h - resolution) // 2, (w - resolution) // 2
    x = x[top:top + resolution, left:left + resolution]
  return x


def _stage2(x: np.ndarray, resolution: int, crop: str, flip: bool, rng) -> np.ndarray:
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
  image = _as_image(image)
  load_size = _check_options(resolution, load_size, crop)
  if (crop == 'random' or flip) and rng is None:
    raise DataError("crop='random' and flip=True need rng=np.random.default_rng(...)")
  return _TO_FLOAT[_stage2(_stage1(image, int(resolution), load_size, crop), int(resolution), crop, flip, rng)]


# -- batches -----------------------------------------------------------------------------------------------


class _Closed(Exception):
  """Raised inside workers when the iterator was closed mid-batch."""


class _DaemonPool:
  """A minimal thread pool of daemon threads (they never block interpreter exit)."""

  def __init__(self, num_threads: int):
    self.num_threads = num_threads
    self._tasks: queue.SimpleQueue = queue.SimpleQueue()
    self._threads: list[threading.Thread] = []

  def _worker(self):
    while True:
      item = self._tasks.get()
      if item is None:
        return
      fn, args, fut = item
      if fut.set_running_or_notify_cancel():
        try:
          fut.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
          fut.set_exception(e)

  def run(self, fn, arg_list: list[tuple]) -> list:
    """``[fn(*args) for args in arg_list]``, in parallel; re-raises the first failure."""
    if self.num_threads <= 1 or len(arg_list) <= 1:
      return [fn(*args) for args in arg_list]
    while len(self._threads) < self.num_threads:
      t = threading.Thread(target=self._worker, daemon=True, name=f'Batches-worker-{len(self._threads)}')
      t.start()
      self._threads.append(t)
    futures = []
    for args in arg_list:
      fut: concurrent.futures.Future = concurrent.futures.Future()
      self._tasks.put((fn, args, fut))
      futures.append(fut)
    return [f.result() for f in futures]

  def close(self):
    for _ in self._threads:
      self._tasks.put(None)
    self._threads = []


class _Plan:
  """Everything needed to make the batch of any step; used by one producer thread (or the caller)."""

  def __init__(self, source, *, global_batch, local_batch, offset, resolution, seed, load_size, crop, flip,
               indices, num_threads, cache):
    self.source = source
    self.global_batch, self.local_batch, self.offset = global_batch, local_batch, offset
    self.resolution, self.seed, self.load_size, self.crop, self.flip = resolution, seed, load_size, crop, flip
    self.indices = indices
    self.n = len(indices) if indices is not None else len(source)
    self.random = crop == 'random' or flip
    self.pool = _DaemonPool(num_threads)
    self.closed = threading.Event()
    self.cache_mode = cache          # None (auto), True, False
    self._cache = None               # (stage-1 uint8 images [n, ...], int32 labels [n]) once built
    self._cache_decided = False
    self._perms: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
    self.channels = getattr(source, 'channels', None)
    self.batched = hasattr(source, 'read_records') and hasattr(source, 'decode_record')

  # positions -> rows (indices into the example set) -> source ids
  def _perm(self, epoch: int) -> np.ndarray:
    p = self._perms.get(epoch)
    if p is None:
      p = np.random.default_rng([self.seed, epoch]).permutation(self.n)
      self._perms[epoch] = p
      while len(self._perms) > 4:
        self._perms.popitem(last=False)
    return p

  def positions(self, step: int) -> np.ndarray:
    start = step * self.global_batch + self.offset
    return np.arange(start, start + self.local_batch, dtype=np.int64)

  def rows(self, pos: np.ndarray) -> np.ndarray:
    epochs, offs = np.divmod(pos, self.n)
    first, last = int(epochs[0]), int(epochs[-1])
    if first == last:
      return self._perm(first)[offs]
    rows = np.empty_like(pos)
    for e in range(first, last + 1):
      m = epochs == e
      rows[m] = self._perm(e)[offs[m]]
    return rows

  def _source_id(self, row: int) -> int:
    return int(self.indices[row]) if self.indices is not None else int(row)

  def _rng(self, position: int) -> np.random.Generator:
    return np.random.default_rng([self.seed, int(position), 1])

  def _read(self, rows) -> list | None:
    """Stored records of ``rows`` in one batched read, when the source supports it (else None)."""
    if not self.batched:
      return None
    return self.source.read_records([self._source_id(r) for r in rows])

  def _example(self, row: int, record=None) -> tuple[np.ndarray, int]:
    """Stage-1 image and label of ``row`` (from its ``record`` when already read)."""
    ex = self.source[self._source_id(row)] if record is None else self.source.decode_record(record)
    return _stage1(_as_image(ex['image']), self.resolution, self.load_size, self.crop), int(ex['label'])

  def _chunks(self, count: int) -> list[tuple[int, int]]:
    k = min(count, max(1, self.pool.num_threads * 4))
    bounds = np.linspace(0, count, k + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

  # the cache of stage-1 images
  def _cache_key(self):
    idx = None if self.indices is None else hash(self.indices.tobytes())
    size = None if self.crop == 'random' else self.resolution   # random crops cache the resized image only
    return (self.load_size, self.crop, size, idx)

  def _decide_cache(self) -> None:
    self._cache_decided = True
    if self.cache_mode is False:
      return
    shape = getattr(self.source, 'image_shape', None)
    fixed = self.crop == 'center' or (shape is not None and None not in shape)
    if not fixed:
      if self.cache_mode:
        raise DataError("cache=True needs crop='center' or a dataset whose images all have one size")
      return
    first, _ = self._example(0)
    nbytes = self.n * first.nbytes
    if self.cache_mode is None and nbytes > CACHE_BYTES:
      return
    shared = getattr(self.source, '_batch_cache', None)
    if shared is None:
      self._cache = self._build_cache(first.shape)
      return
    with self.source._batch_cache_lock:
      key = self._cache_key()
      if key not in shared:
        shared[key] = self._build_cache(first.shape)
      self._cache = shared[key]

  def _build_cache(self, shape) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((self.n,) + tuple(shape), np.uint8)
    labels = np.empty(self.n, np.int32)

    def work(lo, hi):
      records = self._read(range(lo, hi))
      for r in range(lo, hi):
        if self.closed.is_set():
          raise _Closed()
        img, labels[r] = self._example(r, None if records is None else records[r - lo])
        if img.shape != images.shape[1:]:
          raise DataError(f'example {self._source_id(r)} is {img.shape} after resizing, unlike the first '
                          f'example {images.shape[1:]}: use cache=False')
        images[r] = img

    step = 512
    self.pool.run(work, [(a, min(a + step, self.n)) for a in range(0, self.n, step)])
    return images, labels

  def make(self, step: int) -> dict[str, np.ndarray]:
    if not self._cache_decided:
      self._decide_cache()
    pos = self.positions(step)
    rows = self.rows(pos)
    lb, r = self.local_batch, self.resolution
    if self._cache is not None:
      cached, cached_labels = self._cache
      c = cached.shape[-1]
      images = np.empty((lb, r, r, c), np.float32)
      labels = cached_labels[rows]
      if not self.random:
        np.take(_TO_FLOAT, cached[rows], out=images)
      else:
        def work(lo, hi):
          for j in range(lo, hi):
            images[j] = _TO_FLOAT[_stage2(cached[rows[j]], r, self.crop, self.flip, self._rng(pos[j]))]
        self.pool.run(work, self._chunks(lb))
      return {'image': images, 'label': labels}

    if self.channels is None:
      self.channels = self._example(0)[0].shape[-1]
    images = np.empty((lb, r, r, self.channels), np.float32)
    labels = np.empty(lb, np.int32)
    records = self._read(rows)

    def work(lo, hi):
      for j in range(lo, hi):
        if self.closed.is_set():
          raise _Closed()
        img, labels[j] = self._example(rows[j], None if records is None else records[j])
        if self.random:
          img = _stage2(img, r, self.crop, self.flip, self._rng(pos[j]))
        images[j] = _TO_FLOAT[img]

    self.pool.run(work, self._chunks(lb))
    return {'image': images, 'label': labels}

  def close(self):
    self.closed.set()
    self.pool.close()


class _Failure:
  def __init__(self, error: BaseException):
    self.error = error


class _Prefetcher:
  """A daemon thread making batches step, step+1, ... into a queue of ``depth`` batches."""

  def __init__(self, plan: _Plan, start_step: int, depth: int):
    self._queue: queue.Queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._failure: _Failure | None = None
    self._thread = threading.Thread(target=self._run, args=(plan, start_step), daemon=True,
                                    name='Batches-prefetch')
    self._thread.start()

  def _put(self, item) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _run(self, plan: _Plan, step: int):
    try:
      while not self._stop.is_set():
        if not self._put(plan.make(step)):
          return
        step += 1
    except _Closed:
      return
    except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
      self._put(_Failure(e))

  def get(self) -> dict[str, np.ndarray]:
    if self._failure is not None:
      raise self._failure.error
    while True:
      try:
        item = self._queue.get(timeout=1.0)
      except queue.Empty:
        if not self._thread.is_alive() and self._queue.empty():
          raise RuntimeError('the Batches prefetch thread stopped') from None
        continue
      if isinstance(item, _Failure):
        self._failure = item
        raise item.error
      return item

  def close(self, timeout: float = 10.0):
    self._stop.set()
    with contextlib.suppress(queue.Empty):
      while True:
        self._queue.get_nowait()
    self._thread.join(timeout)


def _shutdown(plan: _Plan, prefetcher: _Prefetcher | None) -> None:
  plan.closed.set()
  if prefetcher is not None:
    prefetcher.close()
  plan.close()


def _int(value, what: str, minimum: int = 0) -> int:
  if isinstance(value, bool):
    raise DataError(f'{what} must be an integer >= {minimum}, got {value!r}')
  try:
    v = operator.index(value)
  except TypeError:
    raise DataError(f'{what} must be an integer >= {minimum}, got {value!r}') from None
  if v < minimum:
    raise DataError(f'{what} must be an integer >= {minimum}, got {value!r}')
  return v


class Batches:
  """Deterministic, resumable iterator of process-local batches (rules in the module docstring).

  ``next(it) -> {'image': float32 [global_batch // process_count, R, R, C], 'label': int32 [same]}``.
  ``it.step`` is the index of the next step to be produced; ``it.state() -> {'step', 'seed'}``; resume by
  constructing with ``start_step=state['step']``. Decoding and preprocessing run on ``num_threads``
  daemon threads (default: the CPU count, at most 8) and a daemon thread keeps ``prefetch`` batches
  ready (``prefetch=0``: everything on the caller's thread). With deterministic preprocessing, or
  fixed-size images, the resized uint8 images of the whole split are cached in memory once when they fit
  in ``CACHE_BYTES`` (``cache=None``; True forces, False disables), shared by all ``Batches`` over the same
  ``Source``; batches are then a gather. ``indices``: example ids to draw from (e.g. after de-duplication).
  Call ``close()`` (or use ``with``) to stop the threads; dropping the iterator stops them too.
  """

  def __init__(self, source, *, global_batch: int, resolution: int, seed: int, start_step: int = 0,
               process_index: int = 0, process_count: int = 1, load_size: int | None = None,
               crop: str = 'center', flip: bool = False, indices: Sequence[int] | np.ndarray | None = None,
               num_threads: int | None = None, prefetch: int = 2, cache: bool | None = None):
    global_batch = _int(global_batch, 'global_batch', 1)
    process_count = _int(process_count, 'process_count', 1)
    process_index = _int(process_index, 'process_index', 0)
    if process_index >= process_count:
      raise DataError(f'process_index={process_index} must be < process_count={process_count}')
    if global_batch % process_count:
      raise DataError(f'global_batch={global_batch} is not divisible by process_count={process_count}: '
                      'choose a global batch that is a multiple of the number of processes')
    seed = _int(seed, 'seed', 0)
    if seed >= 2**32:
      raise DataError(f'seed must be < 2**32, got {seed}')
    start_step = _int(start_step, 'start_step', 0)
    load_size = _check_options(resolution, load_size, crop)
    num_threads = _int(num_threads, 'num_threads', 1) if num_threads is not None else min(8, os.cpu_count() or 1)
    prefetch = _int(prefetch, 'prefetch', 0)
    n_source = len(source)
    if n_source == 0:
      raise DataError(f'{source!r} has no examples: choose another split or dataset')
    if indices is not None:
      indices = np.asarray(indices)
      if indices.ndim != 1 or indices.size == 0 or not np.issubdtype(indices.dtype, np.integer):
        raise DataError(f'indices must be a non-empty 1-D sequence of example ids, got {indices.dtype} '
                        f'{indices.shape}')
      if indices.min() < 0 or indices.max() >= n_source:
        raise DataError(f'indices must lie in [0, {n_source}) for this source, got '
                        f'[{indices.min()}, {indices.max()}]: build them from the same dataset and split')
      indices = indices.astype(np.int64)
    local_batch = global_batch // process_count
    self.seed, self.step = seed, start_step
    self.global_batch, self.local_batch = global_batch, local_batch
    self.process_index, self.process_count = process_index, process_count
    self.num_examples = len(indices) if indices is not None else n_source
    self._plan = _Plan(source, global_batch=global_batch, local_batch=local_batch,
                       offset=process_index * local_batch, resolution=int(resolution), seed=seed,
                       load_size=load_size, crop=crop, flip=bool(flip), indices=indices,
                       num_threads=num_threads, cache=cache)
    self._prefetcher = _Prefetcher(self._plan, start_step, prefetch) if prefetch > 0 else None
    self._closed = False
    self._finalizer = weakref.finalize(self, _shutdown, self._plan, self._prefetcher)

  @property
  def steps_per_epoch(self) -> float:
    return self.num_examples / self.global_batch

  def state(self) -> dict[str, int]:
    return {'step': self.step, 'seed': self.seed}

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._closed:
      raise RuntimeError('this Batches iterator is closed: make a new one (start_step=it.step) to go on')
    if self._prefetcher is not None:
      batch = self._prefetcher.get()
    else:
      batch = self._plan.make(self.step)
    self.step += 1
    return batch

  def close(self) -> None:
    """Stops the prefetch and worker threads (idempotent)."""
    self._closed = True
    self._finalizer()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
