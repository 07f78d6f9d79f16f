"""Preparation policy: which prepared copy of a dataset to use, and how to make one when there is none.

``prepare(name, split, ...)`` returns a TFDS builder whose data is on disk in array_record (random access),
preparing it into ``data_dir`` on first use. For a named dataset, in order:
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
     dataset's host (``network_available``); when it fails, a ``DataError`` names the files to put in
     ``manual_dir``.
``digits`` never downloads: it comes with scikit-learn. ImageNet is never downloaded (it needs an account).

``folder:PATH`` is prepared into array_record too (builder ``image_folder_local``, one directory per
folder, named by a hash of its absolute path) rather than read with PIL on the fly: files are checked
once (unreadable ones skipped and counted, or an error with ``strict=True``), random access is one read
from one file instead of a directory lookup, and every dataset then reads through the same path. A
fingerprint of file names, sizes and times detects a changed folder, which is then prepared again.

Preparation of one dataset is serialised between the processes of a machine (``preparation_lock``).
TensorFlow is imported only to download official datasets or convert tfrecord data; when it is, its
GPUs are hidden (``hide_tf_gpus``) so that it never takes JAX's accelerator.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import socket
import struct
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Sequence

from common.datasets.errors import DataError, one_line

log = logging.getLogger('common.data')

NETWORK_TIMEOUT_S = 3.0        # reachability check before an official download


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
    from common.datasets import builders  # lazy: imports TensorFlow Datasets (seconds)
    category = key[len('lsun/'):]
    if category in builders.LSUN_SCENES + builders.LSUN_OBJECTS:
      return _Spec(key, key, 'LsunManual', config=category, hosts=(('dl.yf.io', 80),), needs='tensorflow_io')
    raise DataError(f'unknown LSUN category {category!r}: choose one of '
                    f'{", ".join(builders.LSUN_SCENES + builders.LSUN_OBJECTS)}')
  raise DataError(f'unknown dataset {name!r}: choose one of {", ".join(KNOWN_DATASETS)}')


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
  """The absolute data directory: ``data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
  return Path(data_dir or os.environ.get('TFDS_DATA_DIR') or '~/tensorflow_datasets').expanduser().absolute()


@contextlib.contextmanager
def preparation_lock(data_dir: str | os.PathLike, key: str):
  """Serialises work on ``key`` (e.g. preparing one dataset) between the processes of this machine.

  An exclusive ``fcntl`` lock on ``<data_dir>/.<key>.lock``; no lock where ``fcntl`` is missing (not POSIX).
  """
  data_dir = Path(data_dir)
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


_tf_gpus_hidden = False


def hide_tf_gpus() -> None:
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


def tfds():
  """``tensorflow_datasets``, with TensorFlow's GPUs hidden if TensorFlow is already imported."""
  import tensorflow_datasets
  if 'tensorflow' in sys.modules:
    hide_tf_gpus()
  return tensorflow_datasets


def network_available(hosts: Sequence[tuple[str, int]], timeout: float = NETWORK_TIMEOUT_S) -> bool:
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


def _prepare_with(builder, manual_dir: Path | None, what: str) -> None:
  """``builder.download_and_prepare`` into array_record; every failure becomes a one-line ``DataError``."""
  tf_datasets = tfds()
  from common.datasets import builders  # lazy: imports TensorFlow Datasets (seconds)
  log.info('preparing %s into %s%s', what, builder.data_dir, f' from {manual_dir}' if manual_dir else '')
  config = tf_datasets.download.DownloadConfig(manual_dir=str(manual_dir) if manual_dir else None,
                                               try_download_gcs=False)
  try:
    builder.download_and_prepare(file_format='array_record', download_config=config)
  except DataError:
    raise
  except builders.DataFileError as e:
    raise DataError(f'{what}: {e}' + (f': {e.fix}' if e.fix else '')) from None
  except Exception as e:  # noqa: BLE001 - anything TFDS or a reader raises
    raise DataError(f'preparing {what} failed ({one_line(e)})') from e
  finally:
    if 'tensorflow' in sys.modules:
      hide_tf_gpus()


def _prepared_builder(spec: _Spec, data_dir: Path, manual_dir: Path, download: bool):
  """A prepared TFDS builder for ``spec``, preparing or downloading it if needed (module docstring)."""
  tf_datasets = tfds()
  from common.datasets import builders  # lazy: imports TensorFlow Datasets (seconds)
  cls = getattr(builders, spec.builder)
  make_ours = lambda: cls(data_dir=str(data_dir), config=spec.config)  # noqa: E731
  make_official = lambda: tf_datasets.builder(spec.official, data_dir=str(data_dir))  # noqa: E731
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
    with preparation_lock(data_dir, ours.name):
      if not make_ours().is_prepared():
        _prepare_with(make_ours(), None, spec.name)
    return make_ours()
  if manual_dir.is_dir() and ours.find_files(manual_dir) is not None:
    with preparation_lock(data_dir, f'{ours.name}-{spec.config}'):
      if not make_ours().is_prepared():
        _prepare_with(make_ours(), manual_dir, spec.name)
    return make_ours()
  if not download:
    reason = 'downloads are off'
  elif spec.no_download:
    reason = spec.no_download
  elif spec.needs and importlib.util.find_spec(spec.needs) is None:
    reason = f'the official TFDS builder needs the {spec.needs} package'
  elif not network_available(spec.hosts):
    reason = f'no network: {", ".join(h for h, _ in spec.hosts)} is unreachable'
  else:
    try:
      with preparation_lock(data_dir, spec.official):
        official = make_official()
        if not official.is_prepared():
          hide_tf_gpus()
          _prepare_with(official, manual_dir, spec.name)
      return make_official()
    except DataError as e:
      reason = str(e)
  raise DataError(f'{spec.name} is not prepared in {data_dir} and could not be downloaded ({reason}): put '
                  f'{ours.MANUAL_FILES} in {manual_dir} (--manual_dir) and run again')


# -- folder: -----------------------------------------------------------------------------------------------


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
  from common.datasets import builders  # lazy: imports TensorFlow Datasets (seconds)
  try:
    if (version_dir / 'dataset_info.json').exists():
      return json.loads((version_dir / builders.SIDECAR).read_text())
  except (OSError, ValueError):
    pass
  return None


def _unreadable(name: str, skipped: Sequence) -> DataError:
  rel, why = skipped[0]
  return DataError(f'{name}: {rel} is not a readable image ({why}): fix or remove it, or leave out --strict_data '
                   '(strict=False) to skip unreadable files')


def _skipped_message(where: str, skipped: list, total: int) -> str:
  names = ', '.join(rel for rel, _ in skipped[:5]) + (', ...' if len(skipped) > 5 else '')
  return (f'{where}: skipped {len(skipped)} of {total} files that are not readable images ({names}); '
          'pass --strict_data=true (strict=True) to fail on them instead')


def _folder_builder(path: str, data_dir: Path, strict: bool):
  """(prepared builder, skipped files, canonical name) for ``folder:PATH``."""
  if not path.strip():
    raise DataError('folder: needs a path, e.g. --dataset=folder:/data/images')
  root = Path(path).expanduser().resolve()
  name = f'folder:{root}'
  if not root.is_dir():
    raise DataError(f'{name} is not a directory: give the path of a folder of PNG/JPEG images')
  tf_datasets = tfds()
  from common.datasets import builders  # lazy: imports TensorFlow Datasets (seconds)
  config_name = builders.folder_config_name(root)
  version_dir = data_dir / builders.LocalImageFolder.name / config_name / str(builders.LocalImageFolder.VERSION)
  fingerprint, files = builders.folder_fingerprint(root)
  if not files:
    raise DataError(f'{name} contains no images: put PNG/JPEG files in it (optionally under train/ and test/, '
                    'and in one subfolder per class)')
  summary = _read_sidecar(version_dir)
  if summary is None or summary.get('fingerprint') != fingerprint:
    with preparation_lock(data_dir, f'{builders.LocalImageFolder.name}-{config_name}'):
      summary = _read_sidecar(version_dir)
      if summary is None or summary.get('fingerprint') != fingerprint:
        if version_dir.exists():
          log.warning('%s changed since it was prepared into %s: preparing it again', name, version_dir)
          shutil.rmtree(version_dir)
        plan = builders.scan_folder(root)
        if strict and plan.skipped:
          raise _unreadable(name, plan.skipped)
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
      raise _unreadable(name, skipped)
    log.warning(_skipped_message(name, skipped, summary.get('num_files', len(files))))
  return tf_datasets.builder_from_directory(str(version_dir)), skipped, name


# -- splits and random access ------------------------------------------------------------------------------


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
  tf_datasets = tfds()
  from tensorflow_datasets.core import file_adapters
  random_access = set(file_adapters.FileFormat.with_random_access())
  if builder.info.available_file_formats() & random_access:
    return builder
  version_dir = Path(builder.data_dir)
  stored = tf_datasets.builder_from_directory(str(version_dir))   # code builders ignore alternative formats
  if stored.info.available_file_formats() & random_access:
    return stored
  log.warning('%s in %s is stored as %s: adding array_record files for random access (once)', name,
              version_dir, builder.info.file_format.value)
  try:
    with preparation_lock(version_dir.parent, f'convert-{version_dir.name}'):
      if not tf_datasets.builder_from_directory(str(version_dir)).info.available_file_formats() & random_access:
        _add_array_record(version_dir)
  except Exception as e:  # noqa: BLE001
    raise DataError(f'{name} in {version_dir} is stored as {builder.info.file_format.value}, and adding '
                    f'array_record files failed ({one_line(e)}): make the directory writable, or delete it '
                    'and run again') from e
  return tf_datasets.builder_from_directory(str(version_dir))


@dataclasses.dataclass(frozen=True)
class Prepared:
  """A dataset split ready for random access: ``builder.as_data_source(split=split)`` reads it."""
  builder: object              # a TFDS builder whose data is in array_record
  name: str                    # canonical: 'digits', 'mnist', 'lsun/bedroom', 'folder:/abs/path', ...
  split: str                   # as TFDS reads it ('test' may have become 'validation')
  skipped: tuple = ()          # (path, reason) of files left out of a folder: dataset


def prepare(name: str, split: str = 'train', *, data_dir: str | None = None, manual_dir: str | None = None,
            strict: bool = False, download: bool = True) -> Prepared:
  """Finds or makes a prepared copy of ``name`` in ``data_dir`` following the module docstring's order."""
  if not isinstance(name, str) or not name.strip():
    raise DataError(f'dataset name must be a non-empty string, got {name!r}: choose one of '
                    f'{", ".join(KNOWN_DATASETS)}')
  if not isinstance(split, str) or not split:
    raise DataError(f'split must be a non-empty string such as "train", got {split!r}')
  root = data_root(data_dir)
  skipped: list = []
  if name.startswith('folder:'):
    builder, skipped, canonical = _folder_builder(name[len('folder:'):], root, strict)
  else:
    spec = _spec(name)
    canonical = spec.name
    manual = Path(manual_dir).expanduser().absolute() if manual_dir else root / 'downloads' / 'manual'
    builder = _prepared_builder(spec, root, manual, download)
  split = _pick_split(builder, split, canonical)
  return Prepared(_random_access(builder, canonical), canonical, split, tuple(tuple(s) for s in skipped))
