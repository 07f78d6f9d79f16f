"""The threaded input pipeline that ``common.input_pipeline`` replaced (commit 028fab8), frozen as the
baseline of benchmarks/input_pipeline.py. Not used by the project.

Same rules and same batches as ``common.input_pipeline.Batches`` with ``jpeg_draft=False``; decoding and
preprocessing run on ``num_threads`` daemon threads of one process (Pillow releases the GIL while it
decodes and resizes, Python code between calls does not), and a daemon thread prefetches.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import operator
import os
import queue
import threading
import weakref
from typing import Sequence

import numpy as np

from common.datasets.errors import DataError
from common.preprocess import as_image as _as_image, check_options as _check_options
from common.preprocess import stage1 as _stage1, stage2 as _stage2

# uint8 -> [-1, 1] exactly (0 -> -1.0, 255 -> 1.0), as a gather.
_TO_FLOAT = (np.arange(256, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)).astype(np.float32)

CACHE_BYTES = 1 << 30          # auto-cache preprocessed uint8 images of a split up to this size (per process)

_SHARED_CACHES: 'weakref.WeakKeyDictionary' = weakref.WeakKeyDictionary()   # source -> {key: cache}
_SHARED_CACHES_LOCK = threading.Lock()


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
    try:
      with _SHARED_CACHES_LOCK:
        shared = _SHARED_CACHES.setdefault(self.source, {})
    except TypeError:   # a source that cannot be weakly referenced (e.g. a list): not shared
      self._cache = self._build_cache(first.shape)
      return
    with _SHARED_CACHES_LOCK:
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
