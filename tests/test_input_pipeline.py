"""common.input_pipeline on Grain: batches equal a direct computation of the documented rules for any
number of worker processes, failures in workers, Ctrl-C, the shared cache, device prefetch; and
common.preprocess's reduced-scale JPEG decoding against full decoding."""
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from common import input_pipeline, preprocess
from common.datasets import codec, sources, synthetic
from common.datasets.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- reduced-scale JPEG decoding ---------------------------------------------------------------------------


@pytest.fixture(scope='module')
def photos():
  rng = np.random.default_rng(0)
  return [synthetic.photo_like_jpeg(rng, h, w) for h, w in synthetic.lsun_like_sizes(rng, 12)]


@pytest.mark.parametrize('size', [64, 72, 100])   # 1/4, 1/2 and 1/2 scale for a 256 px shorter edge
def test_draft_decoding_within_tolerance_of_full_decoding(photos, size):
  diffs = []
  for data in photos:
    full = preprocess.resize_shorter(codec.decode(data, 3), size)
    np.testing.assert_array_equal(preprocess.decode_resized(data, 3, size, draft=False), full)
    fast = preprocess.decode_resized(data, 3, size)
    assert fast.shape == full.shape
    diffs.append(np.abs(fast.astype(np.float32) - full).mean())
    assert diffs[-1] > 0   # the draft path was taken
  assert np.mean(diffs) < preprocess.JPEG_DRAFT_TOLERANCE, diffs
  assert max(diffs) < 3 * preprocess.JPEG_DRAFT_TOLERANCE, diffs


def test_draft_decoding_only_where_it_reduces_by_two(photos):
  data = photos[0]
  short = min(Image.open(io.BytesIO(data)).size)
  for size in (short // 2 + 1, short, short + 20):   # no 1/2-scale decode would keep the shorter edge >= size
    np.testing.assert_array_equal(preprocess.decode_resized(data, 3, size),
                                  preprocess.resize_shorter(codec.decode(data, 3), size))
  gray = codec.decode(data, 1)
  png = io.BytesIO()
  Image.fromarray(gray[..., 0]).save(png, format='PNG')
  np.testing.assert_array_equal(preprocess.decode_resized(png.getvalue(), 1, 32),   # PNG: never drafted
                                preprocess.resize_shorter(gray, 32))


# -- batches against the rules -----------------------------------------------------------------------------


@pytest.fixture(scope='module')
def folder_source(tmp_path_factory):
  """A folder: dataset of small JPEG and PNG images of varied sizes (RGB and grayscale files), two classes."""
  root = tmp_path_factory.mktemp('imgs')
  rng = np.random.default_rng(1)
  for cls in ('a', 'b'):
    (root / cls).mkdir()
    for i in range(23):
      h, w = int(rng.integers(14, 40)), int(rng.integers(14, 40))
      img = synthetic.photo_like(rng, h, w)
      img = img if i % 4 else img.mean(-1).astype(np.uint8)
      Image.fromarray(img).save(root / cls / f'{i}.{"jpg" if i % 3 else "png"}', quality=90)
  return sources.open_source(f'folder:{root}', data_dir=str(tmp_path_factory.mktemp('tfds')))[0]


def reference_batch(src, step, *, global_batch, process_index, process_count, seed, indices=None, **options):
  """The documented rules, computed directly: positions -> permutation of the epoch -> example ->
  ``preprocess`` with the position's generator."""
  ids = np.arange(len(src)) if indices is None else np.asarray(indices)
  n, lb = len(ids), global_batch // process_count
  images, labels = [], []
  for i in range(step * global_batch + process_index * lb, step * global_batch + (process_index + 1) * lb):
    ex = src[int(ids[np.random.default_rng([seed, i // n]).permutation(n)[i % n]])]
    images.append(preprocess.preprocess(ex['image'], rng=np.random.default_rng([seed, i, 1]), **options))
    labels.append(ex['label'])
  return np.stack(images), np.array(labels, np.int32)


@pytest.mark.parametrize('workers', [0, 1, 2])
def test_batches_equal_the_rules_for_any_number_of_workers(folder_source, workers):
  options = dict(resolution=16, load_size=20, crop='random', flip=True)
  indices = np.arange(3, 41)
  layouts = [dict(process_index=0, process_count=1), dict(process_index=1, process_count=2, indices=indices)]
  for layout in layouts:
    kw = dict(global_batch=12, seed=4, **layout, **options)
    with input_pipeline.Batches(folder_source, start_step=2, workers=workers, cache=False, **kw) as it:
      for step in range(2, 6):   # 4 steps * 12 > 38: crosses an epoch boundary
        b = next(it)
        images, labels = reference_batch(folder_source, step, **kw)
        np.testing.assert_array_equal(b['image'], images)
        np.testing.assert_array_equal(b['label'], labels)
        assert b['image'].dtype == np.float32 and b['label'].dtype == np.int32
      assert json.loads(json.dumps(it.state())) == {'step': 6, 'seed': 4}


def test_cache_is_shared_by_batches_over_one_source(folder_source):
  kw = dict(global_batch=8, resolution=12, seed=0, workers=0)
  with input_pipeline.Batches(folder_source, **kw) as a, input_pipeline.Batches(folder_source, seed=1, **{
      k: v for k, v in kw.items() if k != 'seed'}) as b:
    next(a), next(b)
    assert a.cached and b.cached
    assert a._maker.cache[0] is b._maker.cache[0]   # noqa: SLF001 - one copy in memory
  with input_pipeline.Batches(folder_source, load_size=14, **kw) as c:
    next(c)
    assert c._maker.cache[0] is not a._maker.cache[0]   # noqa: SLF001 - other preprocessing, other cache


# -- failures, Ctrl-C, close -------------------------------------------------------------------------------


class CorruptSource:
  """A source whose example ``bad`` holds bytes that are not an image (picklable: workers import it)."""

  channels, num_classes, image_shape = 3, None, (None, None, 3)

  def __init__(self, n, bad):
    self.n, self.bad = n, bad

  def __len__(self):
    return self.n

  def read_records(self, ids):
    rng = np.random.default_rng(0)
    return [{'image': b'\xff\xd8\xff not a jpeg' if i == self.bad else synthetic.photo_like_jpeg(rng, 20, 24)}
            for i in ids]

  def decode_record(self, record, resize_to=None, draft=True):
    return {'image': preprocess.decode_resized(record['image'], 3, resize_to, draft=draft), 'label': -1}

  def __repr__(self):
    return 'CorruptSource'


def test_worker_failure_is_the_original_one_line_data_error():
  with input_pipeline.Batches(CorruptSource(8, bad=5), global_batch=8, resolution=16, seed=0, workers=1,
                              cache=False) as it:   # uncached: made in the worker
    for _ in range(2):   # reported again on the next call
      with pytest.raises(DataError) as e:
        next(it)
      msg = str(e.value)
      assert 'example 5 of CorruptSource is not a readable image' in msg and '\n' not in msg
      assert not getattr(e.value, '__notes__', None) and e.value.__cause__ is None


class DyingSource(CorruptSource):
  """A source whose worker process exits abruptly (as if killed) when it reads."""

  def read_records(self, ids):
    import multiprocessing
    if multiprocessing.parent_process() is not None:
      os._exit(3)
    return super().read_records(ids)


def test_a_worker_that_dies_is_a_data_error():
  with input_pipeline.Batches(DyingSource(8, bad=-1), global_batch=8, resolution=16, seed=0, workers=1,
                              cache=False) as it:
    with pytest.raises(DataError) as e:
      next(it)
  assert 'worker process died' in str(e.value) and 'exit code 3' in str(e.value) and '\n' not in str(e.value)


def test_unpicklable_worker_error_still_arrives():
  class Local(Exception):   # a local class cannot be pickled: Grain could not send it
    pass
  err = input_pipeline._picklable(Local('boom'))   # noqa: SLF001
  assert isinstance(err, RuntimeError) and 'Local: boom' in str(err)


def _pids_in_group(pgid):
  out = []
  for d in os.listdir('/proc'):
    if d.isdigit():
      try:
        with open(f'/proc/{d}/stat') as f:
          fields = f.read().rsplit(')', 1)[1].split()
      except OSError:
        continue
      if int(fields[2]) == pgid and fields[0] != 'Z':
        out.append(int(d))
  return out


@pytest.mark.skipif(not os.path.isdir('/proc'), reason='reads /proc')
def test_ctrl_c_stops_the_main_process_and_its_workers():
  script = textwrap.dedent(f'''
      import sys
      sys.path.insert(0, {ROOT!r})
      import numpy as np
      from common.input_pipeline import Batches
      if __name__ == '__main__':
        items = [{{'image': np.full((20, 20, 3), i, np.uint8), 'label': i}} for i in range(50)]
        with Batches(items, global_batch=10, resolution=8, seed=0, workers=2, cache=False) as it:
          next(it), next(it)   # steps 0 and 1: both workers started (a Ctrl-C while one is still importing
          print('ready', flush=True)   # modules raises KeyboardInterrupt there too, before it can ignore it)
          while True:
            next(it)
  ''')
  proc = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True)
  try:
    assert proc.stdout.readline().strip() == 'ready'
    assert len(_pids_in_group(proc.pid)) >= 3   # main + 2 workers (+ multiprocessing's resource tracker)
    t = time.time()
    os.killpg(proc.pid, signal.SIGINT)   # what a terminal sends on Ctrl-C: to the whole group
    _, err = proc.communicate(timeout=60)
    assert time.time() - t < 30
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)
  assert proc.returncode != 0 and err.count('KeyboardInterrupt') == 1, err   # from the main process only
  deadline = time.time() + 10
  while _pids_in_group(proc.pid) and time.time() < deadline:
    time.sleep(0.1)
  assert not _pids_in_group(proc.pid)


# -- device prefetch ---------------------------------------------------------------------------------------


def test_prefetch_to_device_keeps_depth_transfers_ahead():
  import jax
  pulled = []

  def batches():
    for i in range(5):
      pulled.append(i)
      yield {'x': np.full((2,), i, np.float32)}

  out = input_pipeline.prefetch_to_device(batches(), jax.device_put, depth=2)
  first = next(out)
  assert isinstance(first['x'], jax.Array) and float(first['x'][0]) == 0 and pulled == [0, 1]
  assert float(next(out)['x'][0]) == 1 and pulled == [0, 1, 2]   # refilled when the consumer asks again
  assert [float(b['x'][0]) for b in out] == [2, 3, 4]
  with pytest.raises(DataError):
    next(input_pipeline.prefetch_to_device(batches(), jax.device_put, depth=0))


# -- the benchmark -----------------------------------------------------------------------------------------


def test_input_pipeline_benchmark_runs_on_a_tiny_set(tmp_path, capsys):
  import importlib.util
  spec = importlib.util.spec_from_file_location('bench_input_pipeline', os.path.join(ROOT, 'benchmarks',
                                                                                     'input_pipeline.py'))
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  out = bench.main([f'--workdir={tmp_path}', '--images=24', '--short=40', '--batch_size=8', '--resolution=16',
                    '--steps=2', '--warmup=1', '--workers=1', '--flops', '--flops_config=tiny'])
  runs = {(r['layout'], r['pipeline']) for r in out['throughput']}
  assert runs == {(s, p) for s in ('folder', 'lmdb') for p in ('old threads', 'new grain')}
  assert all(r['img_per_s'] > 0 and r['num_examples'] == 24 for r in out['throughput'])
  assert out['flops'][0]['flops_per_step'] > 0 and len(out['h100']) == 2
  assert '| lmdb | new grain | 1 |' in capsys.readouterr().err
