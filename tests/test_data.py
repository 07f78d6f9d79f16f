"""common.data: offline preparation from original file formats, preprocessing, and the batch rules
(determinism, resume, process slicing, augmentation keyed by position) that exact resume relies on.

Every dataset is built here from tiny files in its original distribution format; nothing is downloaded
(the network check is patched to report no network)."""
import gzip
import io
import json
import logging
import multiprocessing
import os
import pickle
import shutil
import struct
import tarfile
import threading
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from common import data
from common.datasets import builders, prepare

FASHION_DIR = '/usr/share/datasets/fashion-mnist'   # Debian package dataset-fashion-mnist
REAL_NETWORK_CHECK = prepare.network_available


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
  monkeypatch.setattr(prepare, 'network_available', lambda hosts, timeout=0: False)


@pytest.fixture(scope='session')
def digits(data_dir):   # data_dir: the session's TFDS dir, from conftest.py
  return data.open_source('digits', data_dir=data_dir)


def one_line_error(excinfo) -> str:
  msg = str(excinfo.value)
  assert isinstance(excinfo.value, data.DataError) and msg and '\n' not in msg
  return msg


# -- writers of original formats ---------------------------------------------------------------------------


def rand_images(rng, n, h, w, c):
  return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)


def write_idx(path, arr):
  arr = np.asarray(arr, np.uint8)
  blob = struct.pack('>BBBB', 0, 0, 8, arr.ndim) + struct.pack(f'>{arr.ndim}I', *arr.shape) + arr.tobytes()
  with (gzip.open if str(path).endswith('.gz') else open)(path, 'wb') as f:
    f.write(blob)


def write_mnist_like(d, rng, gz=True, n_train=12, n_test=5):
  d.mkdir(parents=True, exist_ok=True)
  ext = '.gz' if gz else ''
  out = {}
  for prefix, n in (('train', n_train), ('t10k', n_test)):
    x, y = rand_images(rng, n, 28, 28, 1)[..., 0], rng.integers(0, 10, n)
    write_idx(d / f'{prefix}-images-idx3-ubyte{ext}', x)
    write_idx(d / f'{prefix}-labels-idx1-ubyte{ext}', y)
    out[prefix] = (x, y)
  return out


def jpeg_bytes(rng, h, w, mode='RGB'):
  buf = io.BytesIO()
  c = 3 if mode == 'RGB' else 1
  img = rand_images(rng, 1, h, w, c)[0]
  Image.fromarray(img if c == 3 else img[..., 0], mode).save(buf, format='JPEG', quality=90)
  return buf.getvalue()


def png_bytes(img):
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format='PNG')
  return buf.getvalue()


# -- sources -----------------------------------------------------------------------------------------------


def test_digits_embedded(digits, data_dir):
  src, info = digits
  assert info == data.DatasetInfo('digits', 'train', 1497, 10, 1)
  test_src, test_info = data.open_source('digits', 'test', data_dir=data_dir)
  assert (len(src), test_info.num_examples) == (1497, 300)
  images, labels = builders.digits_arrays()
  for i in (0, 1, 1496):
    ex = src[i]
    assert ex['image'].dtype == np.uint8 and ex['image'].shape == (8, 8, 1)
    np.testing.assert_array_equal(ex['image'], images[i])
    assert ex['label'] == labels[i]
  np.testing.assert_array_equal(test_src[0]['image'], images[1497])   # test = the last 300, in order
  assert images.max() == 255 and src[-1]['label'] == src[1496]['label']


def test_unknown_dataset_lists_known_names(data_dir):
  with pytest.raises(data.DataError) as e:
    data.open_source('mnits', data_dir=data_dir)
  msg = one_line_error(e)
  assert 'mnits' in msg and 'fashion_mnist' in msg and 'folder:PATH' in msg
  with pytest.raises(data.DataError) as e:
    data.open_source('lsun/bedrooms', data_dir=data_dir)
  assert 'church_outdoor' in one_line_error(e)


def test_unknown_split_lists_splits(digits, data_dir):
  with pytest.raises(data.DataError) as e:
    data.open_source('digits', 'validation', data_dir=data_dir)
  assert 'test, train' in one_line_error(e)
  src, info = data.open_source('digits', 'train[:100]', data_dir=data_dir)   # TFDS slices work
  assert info.num_examples == 100


def test_missing_data_without_network_names_manual_dir(tmp_path):
  for name, file in (('mnist', 'train-images-idx3-ubyte.gz'), ('cifar10', 'cifar-10-python.tar.gz'),
                     ('svhn', 'train_32x32.mat'), ('celeba', 'img_align_celeba'),
                     ('lsun', 'bedroom_train_lmdb.zip'), ('imagenet32', 'Imagenet32_train_npz.zip')):
    t = time.time()
    with pytest.raises(data.DataError) as e:
      data.open_source(name, data_dir=str(tmp_path / 'd'), manual_dir=str(tmp_path / 'manual'))
    msg = one_line_error(e)
    assert '--manual_dir' in msg and file in msg and str(tmp_path / 'manual') in msg, msg
    assert time.time() - t < 5
  with pytest.raises(data.DataError) as e:
    data.open_source('fashion_mnist', data_dir=str(tmp_path / 'd'), download=False)
  assert str(tmp_path / 'd' / 'downloads' / 'manual') in one_line_error(e)   # default manual dir


def test_failed_download_is_one_line_with_the_fix(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds

  def fail(self, *args, **kwargs):
    raise ConnectionError('host said no\nsecond line')

  monkeypatch.setattr(prepare, 'network_available', lambda hosts, timeout=0: True)
  monkeypatch.setattr(prepare, 'hide_tf_gpus', lambda: None)   # keep TensorFlow out of this test
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', fail)
  with pytest.raises(data.DataError) as e:
    data.open_source('mnist', data_dir=str(tmp_path / 'd'), manual_dir=str(tmp_path / 'm'))
  msg = one_line_error(e)
  assert 'host said no second line' in msg and '--manual_dir' in msg and 'could not be downloaded' in msg


def test_network_check_is_quick_and_local(monkeypatch):
  import socket
  for var in ('HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy'):
    monkeypatch.delenv(var, raising=False)
  server = socket.socket()
  server.bind(('127.0.0.1', 0))
  server.listen(1)
  port = server.getsockname()[1]
  try:
    assert REAL_NETWORK_CHECK([('127.0.0.1', port)], timeout=1.0)
  finally:
    server.close()
  t = time.time()
  assert not REAL_NETWORK_CHECK([('127.0.0.1', port)], timeout=1.0)   # nothing listens now
  assert time.time() - t < 2.0


# -- offline builders from original files ------------------------------------------------------------------


def check_batches(src, info, resolution=16):
  it = data.Batches(src, global_batch=4, resolution=resolution, seed=0, prefetch=0)
  b = next(it)
  it.close()
  assert b['image'].shape == (4, resolution, resolution, info.channels) and b['image'].dtype == np.float32
  assert -1.0 <= b['image'].min() and b['image'].max() <= 1.0 and b['label'].dtype == np.int32
  return b


@pytest.mark.parametrize('name,gz', [('mnist', True), ('fashion_mnist', False)])
def test_mnist_like_from_idx_files(tmp_path, name, gz):
  rng = np.random.default_rng(1)
  manual = tmp_path / 'manual'
  arrays = write_mnist_like(manual, rng, gz=gz)
  dd = str(tmp_path / 'd')
  src, info = data.open_source(name, data_dir=dd, manual_dir=str(manual))
  assert info == data.DatasetInfo(name, 'train', 12, 10, 1)
  x, y = arrays['train']
  for i in (0, 11):
    np.testing.assert_array_equal(src[i]['image'][..., 0], x[i])
    assert src[i]['label'] == y[i]
  test_src, test_info = data.open_source(name, 'test', data_dir=dd)   # prepared: no manual dir needed now
  assert test_info.num_examples == 5 and test_src[4]['label'] == arrays['t10k'][1][4]
  assert os.path.isdir(os.path.join(dd, f'{name}_manual', '1.0.0'))
  check_batches(src, info, 28)


def test_malformed_idx_file_is_a_data_error(tmp_path):
  rng = np.random.default_rng(0)
  manual = tmp_path / 'manual'
  write_mnist_like(manual, rng)
  (manual / 'train-labels-idx1-ubyte.gz').write_bytes(gzip.compress(b'not an idx file'))
  with pytest.raises(data.DataError) as e:
    data.open_source('mnist', data_dir=str(tmp_path / 'd'), manual_dir=str(manual))
  assert 'train-labels-idx1-ubyte.gz' in one_line_error(e)


def test_official_dataset_prepared_in_data_dir_is_preferred(tmp_path):
  """A dataset TFDS itself prepared (here: faked by renaming ours) wins over manual files."""
  rng = np.random.default_rng(2)
  dd = tmp_path / 'd'
  write_mnist_like(tmp_path / 'm1', rng, n_train=7)
  data.open_source('mnist', data_dir=str(dd), manual_dir=str(tmp_path / 'm1'))
  official = dd / 'mnist' / '3.0.1'
  shutil.copytree(dd / 'mnist_manual' / '1.0.0', official)
  for f in official.iterdir():
    f.rename(official / f.name.replace('mnist_manual-', 'mnist-'))
  meta = json.loads((official / 'dataset_info.json').read_text())
  meta['name'], meta['version'] = 'mnist', '3.0.1'
  (official / 'dataset_info.json').write_text(json.dumps(meta))
  shutil.rmtree(dd / 'mnist_manual')
  write_mnist_like(tmp_path / 'm2', rng, n_train=9)
  src, info = data.open_source('mnist', data_dir=str(dd), manual_dir=str(tmp_path / 'm2'))
  assert info.num_examples == 7 and not (dd / 'mnist_manual').exists()


def test_tfrecord_prepared_data_gets_array_record(tmp_path):
  dd = str(tmp_path / 'd')
  builders.Digits(data_dir=dd).download_and_prepare(file_format='tfrecord')
  src, info = data.open_source('digits', 'test', data_dir=dd)
  assert info.num_examples == 300
  np.testing.assert_array_equal(src[3]['image'], builders.digits_arrays()[0][1500])


def cifar_batch(rng, n, label_offset=0):
  x = rand_images(rng, n, 32, 32, 3)
  return x, {b'data': x.transpose(0, 3, 1, 2).reshape(n, 3072), b'labels': [(i + label_offset) % 10 for i in range(n)],
             b'batch_label': b'x', b'filenames': [b'f%d.png' % i for i in range(n)]}


def test_cifar10_from_python_tarball(tmp_path):
  rng = np.random.default_rng(3)
  manual = tmp_path / 'manual'
  manual.mkdir()
  firsts = []
  with tarfile.open(manual / 'cifar-10-python.tar.gz', 'w:gz') as tar:
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
      x, d = cifar_batch(rng, 2, label_offset=len(firsts))
      firsts.append(x[0])
      blob = pickle.dumps(d, protocol=2)
      ti = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
      ti.size = len(blob)
      tar.addfile(ti, io.BytesIO(blob))
  src, info = data.open_source('cifar10', data_dir=str(tmp_path / 'd'), manual_dir=str(manual))
  assert info == data.DatasetInfo('cifar10', 'train', 10, 10, 3)
  np.testing.assert_array_equal(src[0]['image'], firsts[0])
  np.testing.assert_array_equal(src[2]['image'], firsts[1])   # batches in order
  assert [src[i]['label'] for i in (0, 2, 4)] == [0, 1, 2]
  test_src, test_info = data.open_source('cifar10', 'test', data_dir=str(tmp_path / 'd'))
  np.testing.assert_array_equal(test_src[0]['image'], firsts[5])
  check_batches(src, info)


def test_cifar10_rejects_pickles_with_code(tmp_path):
  manual = tmp_path / 'manual' / 'cifar-10-batches-py'
  manual.mkdir(parents=True)
  for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
    (manual / name).write_bytes(pickle.dumps(os.system))   # a global that a loader must not resolve
  with pytest.raises(data.DataError) as e:
    data.open_source('cifar10', data_dir=str(tmp_path / 'd'), manual_dir=str(tmp_path / 'manual'))
  assert 'CIFAR' in one_line_error(e)


def test_svhn_from_mat_files(tmp_path):
  import scipy.io
  rng = np.random.default_rng(4)
  manual = tmp_path / 'manual'
  manual.mkdir()
  x = rand_images(rng, 6, 32, 32, 3)
  y = np.array([[10], [1], [2], [3], [10], [9]], np.uint8)
  scipy.io.savemat(manual / 'train_32x32.mat', {'X': x.transpose(1, 2, 3, 0), 'y': y})
  scipy.io.savemat(manual / 'test_32x32.mat', {'X': x[:2].transpose(1, 2, 3, 0), 'y': y[:2]})
  src, info = data.open_source('svhn', data_dir=str(tmp_path / 'd'), manual_dir=str(manual))
  assert info == data.DatasetInfo('svhn', 'train', 6, 10, 3)
  assert [src[i]['label'] for i in range(6)] == [0, 1, 2, 3, 0, 9]   # label 10 is digit 0
  np.testing.assert_array_equal(src[5]['image'], x[5])
  assert data.open_source('svhn', 'test', data_dir=str(tmp_path / 'd'))[1].num_examples == 2
  check_batches(src, info)


@pytest.mark.parametrize('as_zip', [False, True])
def test_celeba_from_aligned_images(tmp_path, as_zip):
  rng = np.random.default_rng(5)
  manual = tmp_path / 'manual'
  folder = manual / 'img_align_celeba'
  folder.mkdir(parents=True)
  for i in range(1, 8):
    (folder / f'{i:06d}.jpg').write_bytes(jpeg_bytes(rng, 27, 22))
  (folder / '000008.jpg').write_bytes(b'not a jpeg')
  if as_zip:
    with zipfile.ZipFile(manual / 'img_align_celeba.zip', 'w') as z:
      for f in sorted(folder.iterdir()):
        z.write(f, f'img_align_celeba/{f.name}')
    shutil.rmtree(folder)
  else:
    parts = [0, 0, 0, 0, 1, 2, 2, 0]
    (manual / 'list_eval_partition.txt').write_text(''.join(f'{i:06d}.jpg {p}\n' for i, p in enumerate(parts, 1)))
  src, info = data.open_source('celeba', data_dir=str(tmp_path / 'd'), manual_dir=str(manual))
  assert info.num_classes is None and info.channels == 3
  assert info.num_examples == (7 if as_zip else 4)   # the non-JPEG is skipped
  ex = src[0]
  assert ex['image'].shape == (27, 22, 3) and ex['label'] == -1
  if not as_zip:
    assert data.open_source('celeba', 'validation', data_dir=str(tmp_path / 'd'))[1].num_examples == 1
    assert data.open_source('celeba', 'test', data_dir=str(tmp_path / 'd'))[1].num_examples == 2
  b = check_batches(src, info)
  assert (b['label'] == -1).all()


@pytest.mark.parametrize('as_zip', [False, True])
def test_lsun_from_lmdb(tmp_path, as_zip):
  lmdb = pytest.importorskip('lmdb')
  rng = np.random.default_rng(6)
  manual = tmp_path / 'manual'
  db = manual / 'church_outdoor_train_lmdb'
  db.mkdir(parents=True)
  env = lmdb.open(str(db), map_size=1 << 22)
  with env.begin(write=True) as txn:
    for i in range(5):
      txn.put(f'{i:040x}'.encode(), jpeg_bytes(rng, 30 + i, 40))
  env.close()
  if as_zip:
    with zipfile.ZipFile(manual / 'church_outdoor_train_lmdb.zip', 'w') as z:
      for f in db.iterdir():
        z.write(f, f'church_outdoor_train_lmdb/{f.name}')
    shutil.rmtree(db)
  src, info = data.open_source('lsun/church_outdoor', data_dir=str(tmp_path / 'd'), manual_dir=str(manual))
  assert info == data.DatasetInfo('lsun/church_outdoor', 'train', 5, None, 3)
  assert [src[i]['image'].shape for i in range(5)] == [(30 + i, 40, 3) for i in range(5)]
  b = check_batches(src, info)   # variable sizes: resized and center-cropped
  assert b['image'].std() > 0.1


def test_imagenet32_from_npz_archives(tmp_path):
  rng = np.random.default_rng(7)
  manual = tmp_path / 'manual'
  manual.mkdir()
  train = []
  for name, n in (('Imagenet32_train_npz', 3), ('Imagenet32_val_npz', 2)):
    with zipfile.ZipFile(manual / f'{name}.zip', 'w') as z:
      for part in (('train_data_batch_1', 'train_data_batch_2') if 'train' in name else ('val_data',)):
        x = rand_images(rng, n, 32, 32, 3)
        train += [x] if 'train' in name else []
        buf = io.BytesIO()
        np.savez(buf, data=x.transpose(0, 3, 1, 2).reshape(n, -1), labels=np.arange(1, n + 1))
        z.writestr(f'{name}/{part}.npz', buf.getvalue())
  src, info = data.open_source('imagenet32', data_dir=str(tmp_path / 'd'), manual_dir=str(manual))
  assert info == data.DatasetInfo('imagenet32', 'train', 6, 1000, 3)
  np.testing.assert_array_equal(src[3]['image'], train[1][0])
  assert [src[i]['label'] for i in range(3)] == [0, 1, 2]   # 1-based labels -> 0-based
  _, val = data.open_source('imagenet32', 'test', data_dir=str(tmp_path / 'd'))   # no test: validation
  assert (val.split, val.num_examples) == ('validation', 2)


# -- folders -----------------------------------------------------------------------------------------------


def make_folder(root, rng, corrupt=True):
  for split, n in (('train', 3), ('test', 1)):
    for cls in ('cat', 'dog'):
      d = root / split / cls
      d.mkdir(parents=True)
      for i in range(n):
        (d / f'{i}.png').write_bytes(png_bytes(rand_images(rng, 1, 20, 24, 3)[0]))
  (root / 'train' / 'dog' / 'gray.jpg').write_bytes(jpeg_bytes(rng, 18, 18, 'L'))
  rgba = rand_images(rng, 1, 16, 16, 3)[0]
  Image.fromarray(np.dstack([rgba, rgba[..., :1]]), 'RGBA').save(root / 'train' / 'cat' / 'alpha.png')
  Image.fromarray(rgba).save(root / 'train' / 'cat' / 'pic.bmp')
  (root / 'train' / 'cat' / '.DS_Store').write_bytes(b'hidden files are ignored')
  if corrupt:
    (root / 'train' / 'dog' / 'notes.txt').write_text('not an image')
    good = png_bytes(rand_images(rng, 1, 20, 24, 3)[0])
    (root / 'train' / 'dog' / 'truncated.png').write_bytes(good[: len(good) // 2])


def test_folder_with_splits_and_classes(tmp_path, caplog):
  root = tmp_path / 'imgs'
  make_folder(root, np.random.default_rng(8))
  dd = str(tmp_path / 'd')
  with caplog.at_level(logging.WARNING, logger='common.data'):
    src, info = data.open_source(f'folder:{root}', data_dir=dd)
  assert info == data.DatasetInfo(f'folder:{root}', 'train', 9, 2, 3)
  warnings = [r.getMessage() for r in caplog.records if r.name == 'common.data']
  assert len(warnings) == 1 and 'skipped 2 of' in warnings[0]
  assert 'notes.txt' in warnings[0] and 'truncated.png' in warnings[0] and '\n' not in warnings[0]
  assert sorted(p for p, _ in src.skipped_files) == ['train/dog/notes.txt', 'train/dog/truncated.png']
  labels = [src[i]['label'] for i in range(len(src))]
  assert labels == [0] * 5 + [1] * 4     # cat: 0.png 1.png 2.png alpha.png pic.bmp; dog: 3 png + gray.jpg
  assert all(src[i]['image'].shape[-1] == 3 for i in range(len(src)))
  _, test_info = data.open_source(f'folder:{root}', 'test', data_dir=dd)
  assert test_info.num_examples == 2
  check_batches(src, info)
  with pytest.raises(data.DataError) as e:   # prepared non-strict; strict still reports the bad files
    data.open_source(f'folder:{root}', data_dir=dd, strict=True)
  assert 'train/dog/notes.txt' in one_line_error(e)


def test_folder_strict_names_the_bad_file(tmp_path):
  root = tmp_path / 'imgs'
  make_folder(root, np.random.default_rng(9))
  with pytest.raises(data.DataError) as e:
    data.open_source(f'folder:{root}', data_dir=str(tmp_path / 'd'), strict=True)
  msg = one_line_error(e)
  assert 'train/dog/notes.txt' in msg and 'strict=False' in msg
  assert not list((tmp_path / 'd').rglob('dataset_info.json'))   # nothing was prepared


def test_folder_flat_grayscale_unlabeled_and_changes(tmp_path):
  root = tmp_path / 'flat'
  root.mkdir()
  rng = np.random.default_rng(10)
  for i in range(3):
    Image.fromarray(rand_images(rng, 1, 12, 10, 1)[0, ..., 0], 'L').save(root / f'{i}.png')
  dd = str(tmp_path / 'd')
  src, info = data.open_source(f'folder:{root}', data_dir=dd)
  assert info == data.DatasetInfo(f'folder:{root}', 'train', 3, None, 1)
  assert src[0]['image'].shape == (12, 10, 1) and src[0]['label'] == -1
  Image.fromarray(rand_images(rng, 1, 12, 10, 1)[0, ..., 0], 'L').save(root / 'new.png')
  src, info = data.open_source(f'folder:{root}', data_dir=dd)   # changed folder: prepared again
  assert info.num_examples == 4
  assert len(list((tmp_path / 'd' / 'image_folder_local').iterdir())) == 1


def test_folder_errors(tmp_path):
  (tmp_path / 'empty' / 'sub').mkdir(parents=True)
  with pytest.raises(data.DataError) as e:
    data.open_source(f'folder:{tmp_path / "empty"}', data_dir=str(tmp_path / 'd'))
  assert 'no images' in one_line_error(e)
  (tmp_path / 'junk').mkdir()
  (tmp_path / 'junk' / 'a.jpg').write_bytes(b'\xff\xd8\xff garbage')
  with pytest.raises(data.DataError) as e:
    data.open_source(f'folder:{tmp_path / "junk"}', data_dir=str(tmp_path / 'd'))
  assert 'no readable images' in one_line_error(e)
  with pytest.raises(data.DataError) as e:
    data.open_source(f'folder:{tmp_path / "missing"}', data_dir=str(tmp_path / 'd'))
  assert 'not a directory' in one_line_error(e)


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason='apt-get install dataset-fashion-mnist')
def test_real_fashion_mnist_from_debian_package(tmp_path):
  src, info = data.open_source('fashion_mnist', data_dir=str(tmp_path), manual_dir=FASHION_DIR)
  assert info == data.DatasetInfo('fashion_mnist', 'train', 60000, 10, 1)
  raw = builders.read_idx(builders.Path(FASHION_DIR) / 'train-images-idx3-ubyte.gz')
  np.testing.assert_array_equal(src[59999]['image'][..., 0], raw[59999])
  assert src[0]['label'] == 9   # the first training image is an ankle boot
  _, test_info = data.open_source('fashion_mnist', 'test', data_dir=str(tmp_path))
  assert test_info.num_examples == 10000


# -- preprocessing -----------------------------------------------------------------------------------------


def test_preprocess_range_shape_and_channels():
  rng = np.random.default_rng(11)
  gray = rand_images(rng, 1, 8, 8, 1)[0]
  out = data.preprocess(gray, 8)
  assert out.dtype == np.float32 and out.shape == (8, 8, 1)
  np.testing.assert_array_equal(out, gray / np.float32(127.5) - 1)   # no resize: exact scaling
  assert data.preprocess(np.full((4, 4, 1), 255, np.uint8), 4).max() == 1.0
  assert data.preprocess(np.zeros((4, 4, 1), np.uint8), 4).min() == -1.0
  rgb = rand_images(rng, 1, 40, 60, 3)[0]
  out = data.preprocess(rgb, 32)
  assert out.shape == (32, 32, 3) and -1 <= out.min() and out.max() <= 1
  up = data.preprocess(gray, 32)
  assert up.shape == (32, 32, 1)


def test_preprocess_resize_shorter_edge_then_center_crop():
  img = np.zeros((20, 40, 1), np.uint8)
  img[:, 6:34] = 255                     # a white band around the center
  out = data.preprocess(img, 10)         # 20x40 -> 10x20, whose center 10x10 lies inside the band
  assert data.preprocess(img, 10, load_size=12).shape == (10, 10, 1)
  assert out.shape == (10, 10, 1) and out.min() == 1.0
  out = data.preprocess(img, 10, load_size=20)   # no resize, center 10x10 of the band
  assert out.min() == 1.0


def test_preprocess_random_crop_and_flip():
  img = np.arange(12 * 12, dtype=np.uint8).reshape(12, 12, 1)
  a = data.preprocess(img, 8, load_size=12, crop='random', flip=True, rng=np.random.default_rng([0, 5, 1]))
  b = data.preprocess(img, 8, load_size=12, crop='random', flip=True, rng=np.random.default_rng([0, 5, 1]))
  np.testing.assert_array_equal(a, b)
  crops = {data.preprocess(img, 8, load_size=12, crop='random', rng=np.random.default_rng(s))[0, 0, 0]
           for s in range(30)}
  assert len(crops) > 5
  flipped = [data.preprocess(img, 12, flip=True, rng=np.random.default_rng(s)) for s in range(20)]
  base = data.preprocess(img, 12)
  kinds = {bool(np.array_equal(f, base)) for f in flipped}
  assert kinds == {True, False} and all(np.array_equal(f, base) or np.array_equal(f, base[:, ::-1])
                                        for f in flipped)


def test_preprocess_errors_are_one_line():
  img = np.zeros((8, 8, 1), np.uint8)
  for kwargs in ({'crop': 'random'}, {'flip': True}, {'load_size': 4}, {'crop': 'corner'}):
    with pytest.raises(data.DataError) as e:
      data.preprocess(img, 8, **kwargs)
    one_line_error(e)
  with pytest.raises(data.DataError) as e:
    data.preprocess(img.astype(np.float32), 8)
  one_line_error(e)


# -- batches -----------------------------------------------------------------------------------------------


def take(it, k):
  out = [next(it) for _ in range(k)]
  it.close()
  return out


def assert_same(a, b):
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['image'], y['image'])
    np.testing.assert_array_equal(x['label'], y['label'])


def aug(resolution):
  return dict(load_size=resolution + 2, crop='random', flip=True)


def test_batches_shapes_and_epoch_coverage(digits):
  src, _ = digits
  it = data.Batches(src, global_batch=499, resolution=8, seed=3)   # 3 steps = exactly one epoch
  batches = take(it, 3)
  assert batches[0]['image'].shape == (499, 8, 8, 1) and batches[0]['label'].dtype == np.int32
  labels = np.concatenate([b['label'] for b in batches])
  images, all_labels = builders.digits_arrays()
  np.testing.assert_array_equal(np.sort(labels), np.sort(all_labels[:1497]))
  perm = np.random.default_rng([3, 0]).permutation(1497)
  np.testing.assert_array_equal(labels, all_labels[perm])
  np.testing.assert_array_equal(batches[0]['image'][0], data.preprocess(images[perm[0]], 8))


def test_batches_deterministic_and_seeded(digits):
  src, _ = digits
  kw = dict(global_batch=32, resolution=16, **aug(16))
  a = take(data.Batches(src, seed=1, **kw), 3)
  b = take(data.Batches(src, seed=1, workers=1, **kw), 3)
  c = take(data.Batches(src, seed=2, **kw), 3)
  assert_same(a, b)
  assert not np.array_equal(a[0]['label'], c[0]['label'])


@pytest.mark.parametrize('augment', [False, True])
def test_batches_resume(digits, augment):
  src, _ = digits
  kw = dict(global_batch=64, resolution=8, seed=5, **(aug(8) if augment else {}))
  it = data.Batches(src, **kw)
  full = take(it, 30)   # 30 * 64 > 1497: crosses an epoch boundary
  assert it.state() == {'step': 30, 'seed': 5}
  resumed = data.Batches(src, start_step=22, **kw)
  assert resumed.step == 22
  assert_same(full[22:], take(resumed, 8))


@pytest.mark.parametrize('procs', [2, 4])
@pytest.mark.parametrize('cache', [None, False])
def test_process_slices_concatenate_to_the_global_batch(digits, procs, cache):
  src, _ = digits
  kw = dict(global_batch=48, resolution=8, seed=7, cache=cache, workers=0, **aug(8))   # workers: test_input_pipeline
  single = take(data.Batches(src, **kw), 3)
  parts = [take(data.Batches(src, process_index=p, process_count=procs, **kw), 3) for p in range(procs)]
  for s in range(3):
    assert parts[0][s]['image'].shape[0] == 48 // procs
    np.testing.assert_array_equal(np.concatenate([p[s]['image'] for p in parts]), single[s]['image'])
    np.testing.assert_array_equal(np.concatenate([p[s]['label'] for p in parts]), single[s]['label'])


def test_augmentation_keyed_by_position(digits):
  src, _ = digits
  it = data.Batches(src, global_batch=8, resolution=8, seed=9, process_index=1, process_count=2, **aug(8))
  b = take(it, 2)[1]
  perm = np.random.default_rng([9, 0]).permutation(1497)
  for j in range(4):
    pos = 8 + 4 + j   # step 1, second half
    want = data.preprocess(src[int(perm[pos])]['image'], 8, rng=np.random.default_rng([9, pos, 1]), **aug(8))
    np.testing.assert_array_equal(b['image'][j], want)


def test_cached_equals_uncached_and_sync(digits):
  src, _ = digits
  for options in ({}, aug(12)):
    kw = dict(global_batch=40, resolution=12, seed=11, **options)
    a = take(data.Batches(src, cache=True, **kw), 2)
    b = take(data.Batches(src, cache=False, **kw), 2)
    c = take(data.Batches(src, prefetch=0, **kw), 2)
    assert_same(a, b)
    assert_same(a, c)


def test_indices_subset(digits):
  src, _ = digits
  _, labels = builders.digits_arrays()
  threes = np.flatnonzero(labels[:1497] == 3)
  it = data.Batches(src, global_batch=64, resolution=8, seed=0, indices=threes)
  assert it.num_examples == len(threes)
  batches = take(it, 4)
  assert all((b['label'] == 3).all() for b in batches)
  seen = np.concatenate([b['label'] for b in batches])
  assert len(seen) > len(threes)   # wrapped into the next epoch without leaving the subset


def test_batches_argument_errors(digits):
  src, _ = digits
  bad = [dict(global_batch=30, process_count=4), dict(global_batch=0), dict(process_index=2, process_count=2),
         dict(crop='corner'), dict(load_size=4), dict(seed=-1), dict(indices=[0, 5000]), dict(indices=[])]
  for kwargs in bad:
    kw = dict(global_batch=32, resolution=8, seed=0)
    kw.update(kwargs)
    with pytest.raises(data.DataError) as e:
      data.Batches(src, **kw)
    one_line_error(e)
  with pytest.raises(data.DataError) as e:
    data.Batches(src, global_batch=30, resolution=8, seed=0, process_count=4)
  assert 'divisible' in one_line_error(e)


def batches_threads():
  """The pipeline's threads and worker processes."""
  return (sum(t.name.startswith('Batches-') for t in threading.enumerate())
          + len(multiprocessing.active_children()))


def settle(want, timeout=5.0):
  deadline = time.time() + timeout
  while batches_threads() != want and time.time() < deadline:
    time.sleep(0.02)
  return batches_threads()


def test_close_stops_threads(digits):
  src, _ = digits
  before = batches_threads()
  it = data.Batches(src, global_batch=16, resolution=8, seed=0, workers=2, cache=False, **aug(8))
  next(it)
  assert batches_threads() == before + 3   # prefetcher + 2 workers
  it.close()
  it.close()
  assert settle(before) == before
  with pytest.raises(RuntimeError):
    next(it)
  with data.Batches(src, global_batch=16, resolution=8, seed=0) as it2:
    next(it2)
  assert settle(before) == before
  it3 = data.Batches(src, global_batch=16, resolution=8, seed=0, workers=2, cache=False, **aug(8))
  next(it3)
  del it3   # dropped without close(): the finalizer stops the threads
  assert settle(before) == before


def test_any_random_access_source_works():
  """Batches needs only len() and [i] -> {'image', 'label'}: e.g. a list, with images of any size."""
  rng = np.random.default_rng(12)
  items = [{'image': rand_images(rng, 1, 10 + i, 14, 3)[0], 'label': i} for i in range(10)]
  kw = dict(global_batch=5, resolution=8, seed=0)
  a = take(data.Batches(items, **kw), 4)
  b = take(data.Batches(items, cache=False, prefetch=0, **kw), 4)
  assert_same(a, b)
  assert sorted(np.concatenate([x['label'] for x in a[:2]]).tolist()) == list(range(10))
  with pytest.raises(data.DataError) as e:
    next(data.Batches(items, cache=True, crop='random', load_size=10, **kw))
  assert 'cache=True' in one_line_error(e)
