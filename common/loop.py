"""The training loop every model shares: mesh, input, init or resume, update, log, sample, checkpoint.

``train`` reads top to bottom; the bookkeeping (metrics, checkpoints, sample grids) lives in ``_Run``.
Nothing is written to the workdir before the run is known to be valid: the model is built (and its flags
checked) and a resume is checked against the saved configuration first, so a refused run changes nothing.
The only model-specific code is behind the interface of ``common.model`` (models found by name in
``common.registry``).

- Per-step metrics stay on device and are fetched in one transfer every ``log_every`` steps (and before
  every checkpoint): no host round-trip per step. Every fetched step is checked for NaN/Inf before anything
  is saved, and parameters are checked before each checkpoint, so a non-finite state is never written.
- SIGTERM/SIGINT (preemption, Ctrl-C) at any moment: during start-up (data preparation, compilation) the run
  stops before its first step without writing anything; later it finishes the current step, checkpoints and
  returns; the same command resumes. A second signal aborts at once (the last checkpoint stays intact).
- Orbax writes checkpoints atomically; a kill during a write leaves the previous one as the latest. An
  unreadable newest checkpoint is named in a warning and the newest readable one is used (``common.checkpoint``).
- After a resume, ``metrics.jsonl`` holds exactly one row per step (rows past the restored step, written before
  a kill, are dropped) and TensorBoard is told to purge the steps past it, so neither shows a gap or a duplicate.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import signal
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from tensorboardX import SummaryWriter

from common import checkpoint as ckpt_lib
from common import data, images, parallel, quality, registry, signals
from common.config import Config, identity_diff, to_json
from common.model import DataFacts
from common.progress import format_duration

log = logging.getLogger('train')
MAX_ROLLBACKS = 3          # --on_nan=rollback gives up after this many
COLLAPSE_RATIO = 0.25      # warn when sample diversity falls below this fraction of the data's (after
                           # having been at least twice that)


class ResumeError(ValueError):
  """The workdir holds a checkpoint of a different run configuration."""


class DivergenceError(RuntimeError):
  """A loss or parameter became NaN/Inf."""


class StorageError(OSError):
  """A checkpoint or sample grid could not be written (e.g. the disk is full)."""


class _StopSignal:
  """SIGTERM/SIGINT -> finish the step, checkpoint, return. A second signal aborts at once."""

  def __init__(self):
    self.received: Optional[str] = None
    self._old = {}

  def __enter__(self):
    self.received = signals.pending()    # a signal that arrived while the tool was still importing
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: no handler
        pass
    return self

  def _handle(self, signum, frame):
    if self.received:
      raise KeyboardInterrupt
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


def _print(msg: str) -> None:
  if jax.process_index() == 0:
    print(msg, flush=True)


def _fmt(m: dict) -> str:
  names = {'d_loss': 'D loss', 'g_loss': 'G loss', 'd_real': 'D(x)', 'd_fake': 'D(G(z))', 'd_acc': 'D acc'}
  order = [k for k in names if k in m] + sorted(k for k in m if k not in names)
  return ' '.join(f'{names.get(k, k)} {m[k]:.3f}' for k in order)


def train(config: Config) -> dict:
  """Trains (or resumes) the run described by ``config``; returns a summary dict with the final state."""
  with _StopSignal() as stop:
    return _train(config, stop)


def _interrupted(stop, where: str, run=None) -> dict:
  kept = ('nothing was written' if run is None or run.last_good is None
          else f'checkpoint {run.last_good} in {run.workdir} is unchanged')
  _print(f'{stop.received} during {where}: stopped before the first step, {kept}; run the same command to start')
  return {'step': None if run is None else run.last_good, 'stopped_by': stop.received, 'compile_s': None,
          'rollbacks': 0, 'state': None}


def _train(config: Config, stop: '_StopSignal') -> dict:
  # -- mesh ------------------------------------------------------------------------------------------------
  d, lp = config.dist, config.loop
  parallel.maybe_initialize_distributed(d.coordinator_address, d.num_processes, d.process_id)
  mesh = parallel.make_mesh()
  if lp.batch_size % jax.device_count():
    raise ValueError(f'--batch_size={lp.batch_size} is not divisible by the {jax.device_count()} devices: '
                     'choose a multiple of the device count')

  # -- input and model -------------------------------------------------------------------------------------
  source, info = data.open_source(config.data.dataset, config.data.split, data_dir=config.data.data_dir,
                                  manual_dir=config.data.manual_dir, strict=config.data.strict_data)
  model = registry.build(config, DataFacts(channels=info.channels, num_classes=info.num_classes, name=info.name))
  config = model.config                      # resolved: what the run saves and a resume compares
  indices = _read_indices(config.data.dedup) if config.data.dedup else None
  if stop.received:
    return _interrupted(stop, 'start-up')

  def batches_from(step: int) -> data.Batches:
    return data.Batches(source, global_batch=lp.batch_size, seed=lp.seed, start_step=step,
                        process_index=jax.process_index(), process_count=jax.process_count(), indices=indices,
                        workers=config.data.data_workers, **model.data_options())

  def feed(batches: data.Batches):
    """Global device batches, the next ones' host-to-device copies started while a step runs."""
    return data.prefetch_to_device(batches, lambda b: parallel.global_batch(mesh, b), depth=2)

  # -- init or resume (checks first: a refused run writes nothing) ------------------------------------------
  run = _Run(config, model, info, mesh)
  state = run.init_or_restore()
  step = int(parallel.to_host(state.step))
  if stop.received:
    run.close()
    return _interrupted(stop, 'start-up', run)
  run.open_logs(step)
  batches = batches_from(step)
  device_batches = feed(batches)

  # -- update ----------------------------------------------------------------------------------------------
  train_step = parallel.data_parallel(model.train_step, mesh)
  _print(f'{config.model.name} on {info.name} ({info.num_examples} examples, {info.channels} channels) | '
         f'{jax.device_count()} devices, {jax.process_count()} processes | global batch {lp.batch_size} | '
         f'steps {step} -> {lp.steps} | workdir {run.workdir}')

  # -- loop ------------------------------------------------------------------------------------------------
  t_start = t_log = time.time()
  n_log, compile_s, rollbacks, stopped_by = 0, None, 0, None
  try:
    while step < lp.steps:
      try:
        state, metrics = train_step(state, next(device_batches))
        step += 1
        run.pending.append((step, metrics))
        if compile_s is None:
          run.flush()
          compile_s = time.time() - t_start
          _print(f'first step (compile) took {compile_s:.1f}s')
          t_log, n_log = time.time(), 0
        else:
          n_log += 1
        if step % lp.log_every == 0 or step == lp.steps:
          m = run.flush()
          if m is not None and n_log:
            dt = time.time() - t_log
            run.progress(step, m, n_log * lp.batch_size / dt, (lp.steps - step) * dt / n_log)
          t_log, n_log = time.time(), 0
        if lp.sample_every and step % lp.sample_every == 0:
          run.samples(state, step)
        if lp.checkpoint_every and step % lp.checkpoint_every == 0:
          run.save(state, step)
        if config.eval.eval_every and step % config.eval.eval_every == 0:
          run.evaluate(state, step)
      except DivergenceError as e:
        if lp.on_nan != 'rollback' or run.last_good is None or rollbacks >= MAX_ROLLBACKS:
          raise
        rollbacks += 1
        state = run.rollback(state, rollbacks)
        step = run.last_good
        batches.close()
        batches = batches_from(step)
        device_batches = feed(batches)
        _print(f'{e} -> rollback {rollbacks}/{MAX_ROLLBACKS} to step {step} with a fresh key')
      if stop.received:
        stopped_by = stop.received
        break
    if run.ckpt.latest_step() != step:
      run.save(state, step)
    run.samples(state, step)
    run.wait()
  finally:
    run.close()
    batches.close()
  if stopped_by:
    _print(f'{stopped_by}: saved checkpoint at step {step} in {run.workdir}; run the same command to resume')
  else:
    _print(f'done: {step} steps in {format_duration(time.time() - t_start)}; samples {run.workdir}/samples.png; '
           f'checkpoint {run.ckpt.directory}/{step}')
  return {'step': step, 'stopped_by': stopped_by, 'compile_s': compile_s, 'rollbacks': rollbacks, 'state': state}


class _Run:
  """Bookkeeping of one run: checkpoints, metrics log, TensorBoard, sample grids, collapse monitor."""

  def __init__(self, config: Config, model, info, mesh):
    self.config, self.model, self.info, self.mesh = config, model, info, mesh
    self.workdir = os.path.abspath(config.loop.workdir)
    self.is_main = jax.process_index() == 0
    self.ckpt = ckpt_lib.Checkpointer(self.workdir, keep=config.loop.keep_checkpoints,
                                      keep_every=config.loop.keep_every)
    self.key = jax.random.PRNGKey(config.loop.seed)
    self.sample_key = jax.random.fold_in(self.key, 0x5A3)  # fixed z: grids comparable over training
    self.pending: list[tuple[int, dict]] = []            # (step, on-device metrics) not yet fetched
    self.last_good: Optional[int] = None
    self.real_diversity: Optional[float] = None
    self.real_images, self.real_logged = None, False
    self.best_diversity = 0.0
    self.writer = self.metrics_file = None
    self.evaluator = self.best_ckpt = None               # --eval_every: common.quality, WORKDIR/best

  def open_logs(self, step: int) -> None:
    """config.json, metrics.jsonl (rows past ``step`` dropped: a kill after them lost their checkpoint) and
    the TensorBoard writer (told to purge steps past ``step``), once the run is known to go ahead."""
    if not self.is_main:
      return
    try:
      _write_atomic(os.path.join(self.workdir, 'config.json'), to_json(self.config))
      path = os.path.join(self.workdir, 'metrics.jsonl')
      if os.path.exists(path):
        _write_atomic(path, ''.join(line for line in _read_lines(path) if _row_step(line) <= step))
      self.metrics_file = open(path, 'a')
    except OSError as e:
      raise self._storage_error('metrics log', e) from e
    self.writer = _summary_writer(self.workdir, purge_step=step + 1 if step else None)

  # -- state -----------------------------------------------------------------------------------------------

  def _abstract_state(self):
    init = jax.jit(self.model.init, out_shardings=parallel.replicated(self.mesh))
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=parallel.replicated(self.mesh)),
        jax.eval_shape(init, self.key))

  def _check_resume(self, saved: dict, facts: dict):
    """The abstract state to restore into, once the saved run is known to be this one (else ResumeError)."""
    saved = registry.build(Config.from_dict(saved), DataFacts(facts['channels'], facts.get('num_classes'))).config
    diffs = identity_diff(saved, self.config)
    if diffs:
      raise ResumeError(f'{self.workdir} holds a checkpoint of a different run ({"; ".join(diffs)}): '
                        'use another --workdir or the original flags')
    return self._abstract_state()

  def init_or_restore(self):
    """A fresh state, or the newest readable checkpoint's (or --resume_step's). Unreadable newer checkpoints
    and, with --resume_step, newer readable ones are moved aside (not deleted) so that new saves can take
    their steps."""
    want = self.config.loop.resume_step
    if not self.ckpt.all_steps():
      if want is not None:
        raise FileNotFoundError(f'--resume_step={want}: there is no checkpoint in {self.ckpt.directory}')
      return jax.jit(self.model.init, out_shardings=parallel.replicated(self.mesh))(self.key)
    try:
      restored, bad = self.ckpt.restore_readable(self._check_resume, want, warn=_print)
    except ckpt_lib.Unreadable as e:
      raise ValueError(f'--resume_step={want}: {e}: choose another of the steps in {self.ckpt.directory} '
                       f'({", ".join(map(str, self.ckpt.all_steps()))})') from None
    if bad:
      where = self.ckpt.set_aside([b.step for b in bad], 'unreadable')
      _print(f'moved the unreadable checkpoint(s) {", ".join(str(b.step) for b in bad)} to {where}')
    newer = [s for s in self.ckpt.all_steps() if s > restored.step]
    if newer:
      where = self.ckpt.set_aside(newer, 'superseded')
      _print(f'--resume_step={restored.step}: moved the newer checkpoint(s) {", ".join(map(str, newer))} to {where}')
    self.last_good = restored.step
    _print(f'resumed from {self.ckpt.directory}/{restored.step}')
    return restored.state

  def rollback(self, bad_state, n: int):
    """The last good checkpoint with a fresh key (so the same divergence is not replayed)."""
    self.pending = []
    del bad_state
    restored = self.ckpt.read(self.last_good, lambda c, d: self._abstract_state())
    return restored.state.replace(key=jax.jit(jax.random.fold_in, static_argnums=1)(restored.state.key, 0x0DD + n))

  def save(self, state, step: int) -> None:
    self.flush()
    if not _all_finite(state.params):
      raise DivergenceError(f'non-finite parameters at step {step}; the last good checkpoint is {self.last_good}')
    try:
      self.ckpt.save(step, state, self._data_state(step), self.config.to_dict(), force=True)
      self.ckpt.wait()
      if self.writer is not None:
        self.writer.flush()          # TensorBoard holds every point up to the checkpoint
    except (OSError, ValueError) as e:  # tensorstore reports a full disk as ValueError(RESOURCE_EXHAUSTED)
      raise self._storage_error(f'checkpoint at step {step}', e) from e
    self.last_good = step

  def _data_state(self, step: int) -> dict:
    return {'step': step, 'seed': self.config.loop.seed, 'channels': self.info.channels,
            'num_classes': self.info.num_classes, 'dataset': self.info.name}

  def evaluate(self, state, step: int) -> None:
    """--eval_every: measures --eval_metric (common.quality.TrainingEvaluator), logs it to TensorBoard
    ('eval/<metric>') and WORKDIR/eval.jsonl, and saves the state to WORKDIR/best when it is the best so far
    (one checkpoint, same layout: ``checkpoint.load(WORKDIR + '/best')``). The best value survives a resume."""
    if self.evaluator is None:
      self.evaluator = quality.TrainingEvaluator(self.config, self.model, log=_print)
      self.best_ckpt = ckpt_lib.Checkpointer(os.path.join(self.workdir, 'best'), keep=1, async_save=False)
      saved = self.best_ckpt.read_json('data')
      if saved and saved.get('eval_metric') == self.evaluator.metric:
        self.evaluator.best = saved.get('eval_value')
    self.flush()
    t = time.time()
    values = self.evaluator.measure(state)
    value = values[self.evaluator.metric]
    best = self.evaluator.improves(value) and _all_finite(state.params)
    if best:
      self.best_ckpt.delete_from(step)         # a resumed run may come back below the kept step
      data_state = {**self._data_state(step), 'eval_metric': self.evaluator.metric, 'eval_value': value}
      try:
        self.best_ckpt.save(step, state, data_state, self.config.to_dict(), force=True)
        self.best_ckpt.wait()
      except (OSError, ValueError) as e:
        raise self._storage_error(f'best checkpoint at step {step}', e) from e
      self.evaluator.best = value
    note = 'best so far: saved to best/' if best else f'best {self.evaluator.best:.4g}'
    _print(f'eval step {step}: ' + ' '.join(f'{k} {v:.4g}' for k, v in values.items() if isinstance(v, float))
           + f' ({note}) | {time.time() - t:.1f}s')
    if self.is_main:
      if self.writer is not None:
        for k, v in values.items():
          self.writer.add_scalar(f'eval/{k}', v, step)
      try:
        with open(os.path.join(self.workdir, 'eval.jsonl'), 'a') as f:
          f.write(json.dumps({'step': step, **values, 'best': best}) + '\n')
      except OSError as e:
        raise self._storage_error('evaluation log', e) from e

  def wait(self) -> None:
    try:
      self.ckpt.wait()
    except (OSError, ValueError) as e:
      raise self._storage_error('checkpoint', e) from e

  def _storage_error(self, what: str, e: Exception) -> StorageError:
    full = getattr(e, 'errno', None) == errno.ENOSPC or 'No space left' in str(e)
    why = 'no space left on device' if full else (getattr(e, 'strerror', None) or str(e).splitlines()[0][:200])
    return StorageError(getattr(e, 'errno', None) or errno.EIO, f'could not write the {what} in {self.workdir} ({why}); the last complete '
                        f'checkpoint ({self.last_good}) is intact: free space and run the same command to resume')

  # -- logging ---------------------------------------------------------------------------------------------

  def flush(self) -> Optional[dict]:
    """Fetches pending metrics in one transfer, checks them, logs them; returns the last step's values."""
    if not self.pending:
      return None
    pending, self.pending = self.pending, []
    stacked = {k: parallel.to_host(v) for k, v in _stack([m for _, m in pending]).items()}
    rows = []
    for i, (s, _) in enumerate(pending):
      m = {k: float(v[i]) for k, v in stacked.items()}
      if not all(np.isfinite(v) for v in m.values()):
        raise DivergenceError(f'non-finite loss at step {s} ({_fmt(m)}); the last good checkpoint is '
                              f'{self.last_good}: lower --lr, change --seed or use --on_nan=rollback')
      rows.append((s, m))
    if self.is_main:
      try:
        self.metrics_file.write(''.join(json.dumps({'step': s, **m}) + '\n' for s, m in rows))
        self.metrics_file.flush()
      except OSError as e:
        raise self._storage_error('metrics log', e) from e
      if self.writer is not None:    # every step, as metrics.jsonl: no gap at a (re)start's compile step
        for s, m in rows:
          for k, v in m.items():
            self.writer.add_scalar(f'train/{k}', v, s)
    return rows[-1][1]

  def progress(self, step: int, m: dict, img_per_s: float, eta_s: float) -> None:
    _print(f'step {step:>7d}/{self.config.loop.steps} | {_fmt(m)} | {img_per_s:,.0f} img/s | '
           f'eta {format_duration(eta_s)}')
    if self.writer is not None:
      self.writer.add_scalar('train/img_per_s', img_per_s, step)

  def samples(self, state, step: int) -> None:
    """Writes the grid of the fixed z and checks sample diversity against the data's (collapse monitor)."""
    x = parallel.to_host(self.model.sample(state, self.sample_key, self.config.loop.num_samples))
    if not self.is_main:
      return
    try:
      images.save_grid(x, os.path.join(self.workdir, 'samples', f'step_{step:07d}.png'))
      images.save_grid(x, os.path.join(self.workdir, 'samples.png'))
    except OSError as e:
      raise self._storage_error(f'sample grid at step {step}', e) from e
    ratio = self._diversity_ratio(x)
    self.best_diversity = max(self.best_diversity, ratio)
    if self.writer is not None:
      self.writer.add_scalar('train/sample_diversity', ratio, step)
      self.writer.add_image('samples', images.grid(x), step, dataformats='HWC')   # the same z every time
      if not self.real_logged:
        self.writer.add_image('real', images.grid(self.real_images), step, dataformats='HWC')
        self.real_logged = True
    # Collapse: diversity fell far below the data's after G had reached some (a fresh G is always uniform).
    if ratio < COLLAPSE_RATIO <= self.best_diversity / 2:
      _print(f'warning: possible mode collapse at step {step}: sample diversity is {ratio:.2f} of the data\'s '
             f'(threshold {COLLAPSE_RATIO}); compare the samples with earlier checkpoints')

  def _diversity_ratio(self, x) -> float:
    if self.real_diversity is None:
      opts, d = self.model.data_options(), self.config.data
      source, _ = data.open_source(d.dataset, d.split, data_dir=d.data_dir, manual_dir=d.manual_dir)
      with data.Batches(source, global_batch=len(x), seed=self.config.loop.seed + 1, resolution=self.model.resolution,
                        load_size=opts.get('load_size'), prefetch=0) as it:
        self.real_images = next(it)['image']
        self.real_diversity = _diversity(self.real_images)
    return _diversity(x) / max(self.real_diversity, 1e-8)

  def close(self) -> None:
    for what, closer in (('checkpoint', self.ckpt.close), ('best checkpoint', self.best_ckpt and self.best_ckpt.close),
                         ('TensorBoard log', self.writer and self.writer.close),
                         ('metrics log', self.metrics_file and self.metrics_file.close)):
      try:
        if closer:
          closer()
      except (OSError, ValueError) as e:  # already failing (e.g. a full disk): report, don't mask the cause
        log.error('%s', self._storage_error(what, e))


def _diversity(x) -> float:
  """Mean pairwise Euclidean distance between images of a batch."""
  f = np.asarray(x, np.float64).reshape(len(x), -1)
  sq = (f * f).sum(1)
  d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * f @ f.T, 0))
  n = len(f)
  return float(d.sum() / max(n * (n - 1), 1))


@jax.jit
def _stack(metrics: list[dict]) -> dict:
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *metrics)


def _all_finite(tree) -> bool:
  return all(bool(np.all(np.isfinite(parallel.to_host(x)))) for x in jax.tree_util.tree_leaves(tree)
             if np.issubdtype(x.dtype, np.floating))


def _read_indices(path: str) -> np.ndarray:
  try:
    return np.loadtxt(path, dtype=np.int64, ndmin=1)
  except (OSError, ValueError) as e:
    raise ValueError(f'cannot read --dedup={path} ({e}): pass the kept.txt written by launch/dedup.py') from e


def _summary_writer(workdir: str, purge_step: Optional[int] = None):
  """TensorBoard events in WORKDIR/tb; ``purge_step``: TensorBoard drops the points of earlier event files at
  or past it (a resumed run re-logs them)."""
  return SummaryWriter(os.path.join(workdir, 'tb'), purge_step=purge_step, flush_secs=30)


def _write_atomic(path: str, text: str) -> None:
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def _read_lines(path: str) -> list[str]:
  with open(path) as f:
    return [line for line in f if line.strip()]


def _row_step(line: str) -> int:
  """The step of a metrics.jsonl row (a torn last line, from a kill mid-write, counts as past every step)."""
  try:
    return int(json.loads(line)['step'])
  except (ValueError, KeyError, TypeError):
    return 1 << 62
