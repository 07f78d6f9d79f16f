"""The input pipeline: ``Batches`` turns a random-access source into an endless, resumable stream of
process-local batches, decoded and preprocessed in Grain worker processes; ``prefetch_to_device``
overlaps the host -> device copy with the train step.

Determinism (exact resume, multi-host equivalence): the data is an endless sequence of positions
i = 0, 1, 2, ...; position i is example ``perm_e[i % n]`` with ``e = i // n`` and
``perm_e = np.random.default_rng([seed, e]).permutation(n)``. Global step s covers positions
[s*GB, (s+1)*GB); process p of P reads only [s*GB + p*LB, s*GB + (p+1)*LB) with LB = GB // P. Random
crops and flips of position i draw from ``np.random.default_rng([seed, i, 1])`` (the trailing 1 keeps
these keys apart from the permutation keys, which SeedSequence pads with zeros), so they depend neither
on the process count nor on where a run resumed, nor on the number of workers.

How the work is split: the batch of step s is a pure function of s (``_BatchMaker``). Grain maps it over
``MapDataset.range(start_step, ...)`` and, with ``workers > 0``, ``mp_prefetch`` runs it in worker
processes (spawned; each takes every workers-th step and Grain interleaves them back in order). Workers
send uint8 batches (4x fewer bytes than float32 through the pipe); the main process scales them to
[-1, 1] on a prefetch thread. Why some parts are ours rather than Grain's:
  - The shuffle is ours (the rule above) so that batches stay identical to earlier versions and to any
    number of processes; Grain's ``shuffle`` uses a different permutation.
  - The resume state is ours, ``Batches.state() = {'step', 'seed'}`` (JSON), restored with
    ``start_step``: the step alone fixes every later batch, so Grain's iterator state is not needed.
  - The host-side prefetch thread is ours: it turns a worker's failure into the original one-line
    ``DataError`` (Grain re-raises it with a note and a rebuilt traceback), remembers it, and stops with a
    bounded join.
  - Small splits are cached in memory as preprocessed uint8 images (``CACHE_BYTES``) in the main process;
    batches are then a gather, so they are made in-process and ``workers`` only speeds up building the
    cache of a large split.
"""
from __future__ import annotations

import atexit
import collections
import contextlib
import gc
import itertools
import logging
import operator
import os
import pickle
import queue
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import weakref
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from common import preprocess as pp
from common.datasets.errors import DataError, one_line

log = logging.getLogger('common.data')

CACHE_BYTES = 1 << 30          # auto-cache preprocessed uint8 images of a split up to this size (per process)
PARALLEL_CACHE_S = 10.0        # build the cache in worker processes when one process would take longer
WORKER_BUFFER = 2              # batches each worker process keeps ready


def default_workers() -> int:
  """Worker processes ``Batches`` uses by default: the cores this process may run on, at most 8."""
  try:
    cores = len(os.sched_getaffinity(0))
  except AttributeError:   # not Linux
    cores = os.cpu_count() or 1
  return max(1, min(8, cores))


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


def _picklable(e: BaseException) -> BaseException:
  """``e``, or a RuntimeError with its one-line text when ``e`` cannot cross a process boundary (Grain's
  worker would otherwise fail to send it, and the consumer would wait forever)."""
  try:
    pickle.loads(pickle.dumps(e))
    return e
  except Exception:  # noqa: BLE001 - any pickling failure
    return RuntimeError(one_line(e))


# -- the batch of a step -----------------------------------------------------------------------------------


class _BatchMaker:
  """Everything needed to make the process-local batch of any step: a pure, picklable function of the step.

  ``maker(step) -> {'image': uint8 [LB, R, R, C], 'label': int32 [LB]}``. Runs in Grain worker processes
  (it is pickled with its source; the cache never is) or in the main process.
  """

  def __init__(self, source, *, global_batch, local_batch, offset, resolution, seed, load_size, crop, flip,
               indices, jpeg_draft):
    self.source = source
    self.global_batch, self.local_batch, self.offset = global_batch, local_batch, offset
    self.resolution, self.seed, self.load_size, self.crop, self.flip = resolution, seed, load_size, crop, flip
    self.indices, self.jpeg_draft = indices, jpeg_draft
    self.n = len(indices) if indices is not None else len(source)
    self.random = crop == 'random' or flip
    self.batched = hasattr(source, 'read_records') and hasattr(source, 'decode_record')
    self.cache = None        # (stage-1 uint8 images [n, ...], int32 labels [n]) in the main process
    self._perms: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()

  def __getstate__(self):
    state = dict(self.__dict__)
    state['cache'], state['_perms'] = None, collections.OrderedDict()
    return state

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

  def source_id(self, row: int) -> int:
    return int(self.indices[row]) if self.indices is not None else int(row)

  def stage1(self, rows: Iterable[int]) -> list[tuple[np.ndarray, int]]:
    """(stage-1 uint8 image, label) of ``rows``, read in one batched call when the source supports it."""
    ids = [self.source_id(r) for r in rows]
    r, size, out = self.resolution, self.load_size, []
    records = self.source.read_records(ids) if self.batched else ids
    for i, rec in zip(ids, records):
      if self.batched:
        try:   # decoded with the shorter edge resized already (at reduced scale where possible)
          ex = self.source.decode_record(rec, resize_to=size, draft=self.jpeg_draft)
        except DataError:
          raise
        except (OSError, ValueError, SyntaxError, EOFError) as e:   # what Pillow raises for bad image data
          raise DataError(f'example {i} of {self.source!r} is not a readable image ({one_line(e)}): '
                          'prepare the dataset again from intact files') from None
        img = pp.as_image(ex['image'])
        img = pp.center_crop(img, r) if self.crop == 'center' else img
      else:
        ex = self.source[i]
        img = pp.stage1(pp.as_image(ex['image']), r, size, self.crop)
      out.append((img, int(ex['label'])))
    return out

  def _rng(self, position) -> np.random.Generator:
    return np.random.default_rng([self.seed, int(position), 1])

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    try:
      return self._make(int(step))
    except DataError:
      raise
    except Exception as e:  # noqa: BLE001 - must reach the consumer, whatever it is
      raise _picklable(e) from None

  def _make(self, step: int) -> dict[str, np.ndarray]:
    pos = self.positions(step)
    rows = self.rows(pos)
    r = self.resolution
    if self.cache is not None:
      cached, cached_labels = self.cache
      if not self.random:
        return {'image': cached[rows], 'label': cached_labels[rows]}
      examples = ((cached[row], cached_labels[row]) for row in rows)
    else:
      examples = self.stage1(rows)
    images, labels = None, np.empty(self.local_batch, np.int32)
    for j, (img, label) in enumerate(examples):
      if self.random:
        img = pp.stage2(img, r, self.crop, self.flip, self._rng(pos[j]))
      if images is None:
        images = np.empty((self.local_batch,) + img.shape, np.uint8)
      images[j] = img
      labels[j] = label
    return {'image': images, 'label': labels}


# -- the in-memory cache -----------------------------------------------------------------------------------

_SHARED_CACHES: 'weakref.WeakKeyDictionary' = weakref.WeakKeyDictionary()   # source -> {key: cache}
_SHARED_CACHES_LOCK = threading.Lock()


def _cache_key(maker: _BatchMaker):
  idx = None if maker.indices is None else hash(maker.indices.tobytes())
  size = None if maker.crop == 'random' else maker.resolution   # random crops cache the resized image only
  return (maker.load_size, maker.crop, size, idx, maker.jpeg_draft)


def _decide_cache(maker: _BatchMaker, mode: bool | None, workers: int, closed: threading.Event) -> None:
  """Sets ``maker.cache`` when ``mode`` asks for it (True) or allows it (None) and the images fit."""
  if mode is False:
    return
  shape = getattr(maker.source, 'image_shape', None)
  fixed = maker.crop == 'center' or (shape is not None and None not in shape)
  if not fixed:
    if mode:
      raise DataError("cache=True needs crop='center' or a dataset whose images all have one size")
    return
  t0 = time.perf_counter()
  first = maker.stage1([0])[0][0]
  per_example_s = time.perf_counter() - t0
  if mode is None and maker.n * first.nbytes > CACHE_BYTES:
    return
  try:
    with _SHARED_CACHES_LOCK:
      shared = _SHARED_CACHES.setdefault(maker.source, {})
  except TypeError:   # a source that cannot be weakly referenced (e.g. a list): not shared
    shared = {}
  key = _cache_key(maker)
  with _SHARED_CACHES_LOCK:
    cache = shared.get(key)
  if cache is None:
    parallel = workers > 0 and maker.n * per_example_s > PARALLEL_CACHE_S
    cache = _build_cache(maker, first.shape, workers if parallel else 0, closed)
    with _SHARED_CACHES_LOCK:
      cache = shared.setdefault(key, cache)
  maker.cache = cache


class _Stage1Chunk:
  """Chunk c -> stage-1 images and labels of rows [c * size, (c + 1) * size): the cache's unit of work."""

  def __init__(self, maker: _BatchMaker, size: int, shape: tuple):
    self.maker, self.size, self.shape = maker, size, tuple(shape)

  def __call__(self, c: int) -> dict[str, np.ndarray]:
    lo = c * self.size
    examples = self.maker.stage1(range(lo, min(lo + self.size, self.maker.n)))
    for k, (img, _) in enumerate(examples):
      if img.shape != self.shape:
        raise DataError(f'example {self.maker.source_id(lo + k)} is {img.shape} after resizing, unlike the first '
                        f'example {self.shape}: use cache=False')
    return {'image': np.stack([e[0] for e in examples]), 'label': np.array([e[1] for e in examples], np.int32)}


def _build_cache(maker: _BatchMaker, shape, workers: int, closed: threading.Event) -> tuple[np.ndarray, np.ndarray]:
  chunk = 512
  images = np.empty((maker.n,) + tuple(shape), np.uint8)
  labels = np.empty(maker.n, np.int32)
  num_chunks = -(-maker.n // chunk)
  log.info('caching %d preprocessed images (%.0f MiB)%s', maker.n, images.nbytes / 2**20,
           f' with {workers} worker processes' if workers else '')
  with contextlib.closing(_GrainIterator(_Stage1Chunk(maker, chunk, shape), 0, num_chunks, workers)) as it:
    for c, part in enumerate(it):
      if closed.is_set():   # Batches.close() while caching: stop between chunks
        raise _Closed()
      lo = c * chunk
      images[lo:lo + len(part['image'])] = part['image']
      labels[lo:lo + len(part['label'])] = part['label']
  return images, labels


# -- Grain -------------------------------------------------------------------------------------------------


_WRAPPER: list = []


def _worker_executable() -> Optional[str]:
  """A tiny shell wrapper that starts this Python with SIGINT ignored (POSIX; None elsewhere). A disposition of
  SIG_IGN survives exec and Python then installs no KeyboardInterrupt handler, so a terminal's Ctrl-C (sent to
  the whole process group) never reaches a worker, even while it is still importing; the main process stops
  the workers itself."""
  if os.name != 'posix' or not os.path.exists('/bin/sh'):
    return None
  if not _WRAPPER or not os.path.exists(_WRAPPER[0]):     # (again if a /tmp cleaner removed it)
    _WRAPPER.clear()
    directory = tempfile.mkdtemp(prefix='batches-worker-')
    path = os.path.join(directory, 'python')
    with open(path, 'w') as f:
      f.write(f"#!/bin/sh\ntrap '' INT\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    os.chmod(path, 0o755)
    _WRAPPER.append(path)
    atexit.register(shutil.rmtree, directory, ignore_errors=True)   # one per process, gone at exit
  return _WRAPPER[0]


@contextlib.contextmanager
def _interrupts_held():
  """While Grain spawns its workers: they start through ``_worker_executable`` (SIGINT ignored from their
  first instruction on)."""
  import multiprocessing
  from multiprocessing import spawn
  wrapper, original = _worker_executable(), spawn.get_executable()
  if wrapper:
    multiprocessing.set_executable(wrapper)
  try:
    yield
  finally:
    if wrapper:
      multiprocessing.set_executable(original)


def _ignore_sigint(worker_index: int, worker_count: int) -> None:
  """Worker processes leave Ctrl-C to the main process, which stops them (no traceback from each)."""
  del worker_index, worker_count
  signal.signal(signal.SIGINT, signal.SIG_IGN)


class _GrainIterator:
  """``fn(start), fn(start + 1), ...`` (up to ``stop``) computed by Grain, in ``workers`` processes or here.

  Worker failures come out as a fresh one-line ``DataError`` (Grain's note and rebuilt traceback dropped);
  a worker that dies becomes a ``DataError`` too. ``close()`` stops the processes and collects Grain's
  multiprocessing iterators at once (left to the garbage collector at interpreter exit they print errors).
  """

  def __init__(self, fn: Callable[[int], dict], start: int, stop: int, workers: int):
    import grain
    ds = grain.MapDataset.range(start, stop).map(fn)
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    if workers:
      from absl import flags
      if not flags.FLAGS.is_parsed():   # mp_prefetch reads an absl flag (google/grain#1355)
        flags.FLAGS.mark_as_parsed()
      # Send arrays through the pipe rather than shared memory: with uint8 batches this costs about the same
      # and leaves no shared-memory blocks to leak when a consumer keeps a batch.
      it_ds = grain.experimental.WithOptionsIterDataset(
          it_ds, grain.experimental.DatasetOptions(min_shm_size=1 << 62))
      options = grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=WORKER_BUFFER)
      it_ds = it_ds.mp_prefetch(options, worker_init_fn=_ignore_sigint)
    with _interrupts_held():
      self._it = iter(it_ds)
    self.workers = workers
    self._started = not workers

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    try:
      if not self._started:         # Grain spawns its workers on the first batch
        self._started = True
        with _interrupts_held():
          return next(self._it)
      return next(self._it)
    except DataError as e:
      raise DataError(str(e)) from None
    except RuntimeError as e:
      if 'Worker process was terminated' in str(e):
        raise DataError(f'a Batches worker process died ({one_line(e, 200)}): look above for its error; if '
                        'it ran out of memory, pass fewer workers') from None
      raise

  def close(self) -> None:
    it, self._it = self._it, None
    if it is not None:
      it.close()
      del it
      if self.workers:   # only mp_prefetch's iterators print errors when collected at exit; a collection
        gc.collect()     # here also runs other objects' finalizers (e.g. Orbax's), so not more often


class _Stream:
  """Float32 batches of steps ``start, start + 1, ...``; opened on first use (cache decided, Grain started)."""

  def __init__(self, maker: _BatchMaker, start_step: int, workers: int, cache_mode: bool | None):
    self.maker, self.step, self.workers, self.cache_mode = maker, start_step, workers, cache_mode
    self._it: _GrainIterator | None = None
    self.closed = threading.Event()

  def next(self) -> dict[str, np.ndarray]:
    if self._it is None:
      _decide_cache(self.maker, self.cache_mode, self.workers, self.closed)
      if self.closed.is_set():
        raise _Closed()
      workers = 0 if self.maker.cache is not None else self.workers
      self._it = _GrainIterator(self.maker, self.step, sys.maxsize, workers)
    b = next(self._it)
    self.step += 1
    return {'image': pp.to_float(b['image']), 'label': np.asarray(b['label'], np.int32)}

  def close(self) -> None:
    self.closed.set()
    if self._it is not None:
      self._it.close()
      self._it = None


class _Closed(Exception):
  """The stream was closed while it was being opened."""


class _Failure:
  def __init__(self, error: BaseException):
    self.error = error


class _Prefetcher:
  """A daemon thread pulling batches from a ``_Stream`` into a queue of ``depth`` batches."""

  def __init__(self, stream: _Stream, depth: int):
    self._queue: queue.Queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._stream = stream
    self._thread = threading.Thread(target=self._run, daemon=True, name='Batches-prefetch')
    self._thread.start()

  def _put(self, item) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _run(self):
    try:
      while not self._stop.is_set():
        if not self._put(self._stream.next()):
          return
    except _Closed:
      return
    except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
      self._put(_Failure(e))
    finally:
      self._stream.close()   # Grain's iterators belong to this thread

  def get(self) -> dict[str, np.ndarray]:
    while True:
      try:
        item = self._queue.get(timeout=1.0)
      except queue.Empty:
        if not self._thread.is_alive() and self._queue.empty():
          raise RuntimeError('the Batches prefetch thread stopped') from None
        continue
      if isinstance(item, _Failure):
        raise item.error
      return item

  def close(self, timeout: float = 30.0):
    self._stop.set()
    self._stream.closed.set()
    with contextlib.suppress(queue.Empty):
      while True:
        self._queue.get_nowait()
    self._thread.join(timeout)
    if self._thread.is_alive():
      log.warning('the Batches prefetch thread did not stop within %.0f s; its worker processes end with the '
                  'interpreter', timeout)


def _shutdown(stream: _Stream, prefetcher: _Prefetcher | None) -> None:
  if prefetcher is not None:
    prefetcher.close()
  else:
    stream.close()


class Batches:
  """Deterministic, resumable iterator of process-local batches (rules in the module docstring).

  ``next(it) -> {'image': float32 [global_batch // process_count, R, R, C], 'label': int32 [same]}``.
  ``it.step`` is the index of the next step to be produced; ``it.state() -> {'step', 'seed'}``; resume by
  constructing with ``start_step=state['step']``. Decoding and preprocessing run in ``workers`` Grain
  worker processes (default ``default_workers()``; 0: in this process) and a daemon thread keeps
  ``prefetch`` batches ready (``prefetch=0``: no thread, and ``workers`` then defaults to 0: everything on
  the caller's thread). With deterministic preprocessing, or fixed-size images, the resized uint8 images
  of the whole split are cached in memory once when they fit in ``CACHE_BYTES`` (``cache=None``; True
  forces, False disables), shared by all ``Batches`` over the same ``Source``; batches are then a gather
  made in this process. ``indices``: example ids to draw from (e.g. after de-duplication).
  ``jpeg_draft``: decode JPEGs at reduced scale when the target is at most half their size
  (``common.preprocess.decode_resized``). Call ``close()`` (or use ``with``) to stop the thread and the
  processes; dropping the iterator stops them too, and so does interpreter exit.
  """

  def __init__(self, source, *, global_batch: int, resolution: int, seed: int, start_step: int = 0,
               process_index: int = 0, process_count: int = 1, load_size: int | None = None,
               crop: str = 'center', flip: bool = False, indices: Sequence[int] | np.ndarray | None = None,
               workers: int | None = None, prefetch: int = 2, cache: bool | None = None,
               jpeg_draft: bool = True):
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
    load_size = pp.check_options(resolution, load_size, crop)
    prefetch = _int(prefetch, 'prefetch', 0)
    if workers is None:
      workers = default_workers() if prefetch else 0
    workers = _int(workers, 'workers', 0)
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
    self.workers = workers
    self.num_examples = len(indices) if indices is not None else n_source
    self._maker = _BatchMaker(source, global_batch=global_batch, local_batch=local_batch,
                              offset=process_index * local_batch, resolution=int(resolution), seed=seed,
                              load_size=load_size, crop=crop, flip=bool(flip), indices=indices,
                              jpeg_draft=bool(jpeg_draft))
    self._stream = _Stream(self._maker, start_step, workers, cache)
    self._prefetcher = _Prefetcher(self._stream, prefetch) if prefetch > 0 else None
    self._closed = False
    self._failure: BaseException | None = None
    self._finalizer = weakref.finalize(self, _shutdown, self._stream, self._prefetcher)

  @property
  def steps_per_epoch(self) -> float:
    return self.num_examples / self.global_batch

  @property
  def cached(self) -> bool:
    """Whether batches come from the in-memory cache (known once the first batch was asked for)."""
    return self._maker.cache is not None

  def state(self) -> dict[str, int]:
    return {'step': self.step, 'seed': self.seed}

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._closed:
      raise RuntimeError('this Batches iterator is closed: make a new one (start_step=it.step) to go on')
    if self._failure is not None:   # the stream stopped at a failure: every later call reports it
      raise self._failure
    try:
      batch = self._prefetcher.get() if self._prefetcher is not None else self._stream.next()
    except Exception as e:
      self._failure = e
      raise
    self.step += 1
    return batch

  def close(self) -> None:
    """Stops the prefetch thread and the worker processes (idempotent)."""
    self._closed = True
    self._finalizer()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def prefetch_to_device(iterator: Iterable, put_fn: Callable, depth: int = 2) -> Iterator:
  """Yields ``put_fn(batch)`` for the batches of ``iterator``, keeping ``depth`` transfers started ahead.

  JAX copies to the device asynchronously, so calling ``put_fn`` (e.g. ``parallel.global_batch`` or
  ``jax.device_put``) early overlaps the copy of the next batches with the current step. The iterator is
  read ``depth`` batches ahead: checkpoint the train step (as ``common.loop`` does), not
  ``Batches.state()``, when resuming.
  """
  depth = _int(depth, 'depth', 1)
  it = iter(iterator)
  ahead: collections.deque = collections.deque(put_fn(b) for b in itertools.islice(it, depth))
  while ahead:
    yield ahead.popleft()
    for b in itertools.islice(it, 1):
      ahead.append(put_fn(b))
