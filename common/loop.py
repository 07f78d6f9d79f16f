"""The training loop every model shares: mesh, input, init or resume, update, log, sample, checkpoint.

Reads top to bottom. The only model-specific code is behind the interface in ``common.registry``.
Per-step metrics stay on device and are fetched in one transfer every ``log_every`` steps (and before
every checkpoint), so the loop has no host round-trip per step; each fetched step is checked for NaN/Inf
before anything is saved.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from common import checkpoint as ckpt_lib
from common import data, images, parallel, registry
from common.config import Config, diff_identity, to_json

log = logging.getLogger('train')


class ResumeError(ValueError):
  """The workdir holds a checkpoint of a different run configuration."""


class DivergenceError(RuntimeError):
  """A loss or parameter became NaN/Inf."""


class _StopSignal:
  """SIGTERM/SIGINT (preemption, Ctrl-C) -> finish the step, checkpoint, exit. A second signal aborts."""

  def __init__(self):
    self.received: Optional[str] = None
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread (e.g. inside some test runners): no handler
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


def _host(x):
  """A replicated global array -> numpy on this host (works in multi-process runs)."""
  return np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else np.asarray(x)


def _fmt(m: dict) -> str:
  names = {'d_loss': 'D loss', 'g_loss': 'G loss', 'd_real': 'D(x)', 'd_fake': 'D(G(z))', 'd_acc': 'D acc'}
  order = [k for k in names if k in m] + sorted(k for k in m if k not in names)
  return ' '.join(f'{names.get(k, k)} {m[k]:.3f}' for k in order)


def train(config: Config) -> dict:
  """Trains (or resumes) the run described by ``config``; returns a summary dict."""
  # -- mesh ------------------------------------------------------------------------------------------------
  parallel.maybe_initialize_distributed(config.coordinator_address, config.num_processes, config.process_id)
  mesh = parallel.make_mesh()
  if config.batch_size % jax.device_count():
    raise ValueError(f'--batch_size={config.batch_size} is not divisible by the {jax.device_count()} devices: '
                     'choose a multiple of the device count')
  workdir = os.path.abspath(config.workdir)
  is_main = jax.process_index() == 0

  # -- input -----------------------------------------------------------------------------------------------
  source, info = data.open_source(config.dataset, config.split, data_dir=config.data_dir,
                                  manual_dir=config.manual_dir)
  model = registry.build_model(config, channels=info.channels, num_classes=info.num_classes)
  indices = _read_indices(config.dedup) if config.dedup else None

  # -- init or resume --------------------------------------------------------------------------------------
  ckpt = ckpt_lib.Checkpointer(workdir, keep=config.keep_checkpoints)
  key = jax.random.PRNGKey(config.seed)
  init = jax.jit(model.init, out_shardings=parallel.replicated(mesh))
  start = ckpt.latest_step()
  if start is None:
    state = init(key)
  else:
    saved = ckpt.read_config(start)
    diffs = diff_identity(saved, config.to_dict())
    if diffs:
      raise ResumeError(f'{workdir} holds a checkpoint of a different run ({"; ".join(diffs)}): '
                        'use another --workdir or the original flags')
    abstract = jax.eval_shape(init, key)
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=parallel.replicated(mesh)), abstract)
    state, _, _ = ckpt.restore(abstract, start)
    _print(f'resumed from {ckpt.directory}/{start}')
  step = int(_host(state.step))
  if is_main:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(to_json(config))

  batches = data.Batches(source, global_batch=config.batch_size, seed=config.seed, start_step=step,
                         process_index=jax.process_index(), process_count=jax.process_count(),
                         indices=indices, **registry.data_options(model, config))

  # -- update ----------------------------------------------------------------------------------------------
  train_step = parallel.data_parallel(model.train_step, mesh)
  sample_key = jax.random.fold_in(key, 0x5A3)  # fixed z for every grid, so grids are comparable over time
  writer = _summary_writer(workdir) if is_main else None
  metrics_file = open(os.path.join(workdir, 'metrics.jsonl'), 'a') if is_main else None
  _print(f'{config.model} on {info.name} ({info.num_examples} examples, {info.channels} channels) | '
         f'{jax.device_count()} devices, {jax.process_count()} processes | global batch {config.batch_size} | '
         f'steps {step} -> {config.steps} | workdir {workdir}')

  pending: list[tuple[int, dict]] = []   # (step, on-device metrics) not yet fetched
  last_good = start
  t_log, n_log, t_start = time.time(), 0, time.time()
  compile_s = None

  def flush() -> Optional[dict]:
    """Fetches pending metrics, checks them, logs them; returns the last step's values."""
    nonlocal pending
    if not pending:
      return None
    # One stacked transfer per metric (replicated arrays; works when they span several processes).
    stacked = {k: _host(v) for k, v in _stack([m for _, m in pending]).items()}
    rows = []
    for i, (s, _) in enumerate(pending):
      m = {k: float(v[i]) for k, v in stacked.items()}
      if not all(np.isfinite(v) for v in m.values()):
        pending = []
        raise DivergenceError(f'non-finite loss at step {s} ({_fmt(m)}); the last good checkpoint is '
                              f'{last_good}: lower --lr or change --seed, then run again')
      rows.append((s, m))
    pending = []
    if is_main:
      for s, m in rows:
        metrics_file.write(json.dumps({'step': s, **m}) + '\n')
      metrics_file.flush()
      s, m = rows[-1]
      if writer is not None:
        for k, v in m.items():
          writer.add_scalar(f'train/{k}', v, s)
    return rows[-1][1]

  def save(step: int) -> None:
    nonlocal last_good
    flush()
    if not _all_finite(state.params):
      raise DivergenceError(f'non-finite parameters at step {step}; the last good checkpoint is {last_good}')
    ckpt.save(step, state, {**batches.state(), 'step': step, 'channels': info.channels,
                            'num_classes': info.num_classes, 'dataset': info.name}, config.to_dict(), force=True)
    last_good = step

  def write_samples(step: int) -> None:
    x = _host(model.sample(state, sample_key, config.num_samples))
    if is_main:
      images.save_grid(x, os.path.join(workdir, 'samples', f'step_{step:07d}.png'))
      images.save_grid(x, os.path.join(workdir, 'samples.png'))

  # -- loop ------------------------------------------------------------------------------------------------
  stopped_by = None
  with _StopSignal() as stop:
    try:
      while step < config.steps:
        batch = parallel.global_batch(mesh, next(batches))
        state, metrics = train_step(state, batch)
        step += 1
        pending.append((step, metrics))
        if compile_s is None:
          jax.block_until_ready(metrics)
          compile_s = time.time() - t_start
          _print(f'first step (compile) took {compile_s:.1f}s')
          t_log, n_log = time.time(), 0
          flush()
        else:
          n_log += 1
        if step % config.log_every == 0 or step == config.steps:
          m = flush()
          dt = time.time() - t_log
          if m is not None and n_log:
            ips = n_log * config.batch_size / dt
            eta = (config.steps - step) * dt / n_log
            _print(f'step {step:>7d}/{config.steps} | {_fmt(m)} | {ips:,.0f} img/s | eta {eta:,.0f}s')
            if writer is not None:
              writer.add_scalar('train/img_per_s', ips, step)
          t_log, n_log = time.time(), 0
        if config.sample_every and step % config.sample_every == 0:
          write_samples(step)
        if config.checkpoint_every and step % config.checkpoint_every == 0:
          save(step)
        if stop.received:
          stopped_by = stop.received
          break
      if ckpt.latest_step() != step:
        save(step)
      write_samples(step)
    finally:
      ckpt.close()
      batches.close()
      if writer is not None:
        writer.close()
      if metrics_file is not None:
        metrics_file.close()
  if stopped_by:
    _print(f'{stopped_by}: saved checkpoint at step {step} in {workdir}; run the same command to resume')
  else:
    _print(f'done: {step} steps in {time.time() - t_start:.0f}s; samples {workdir}/samples.png; '
           f'checkpoint {workdir}/checkpoints/{step}')
  return {'step': step, 'stopped_by': stopped_by, 'compile_s': compile_s, 'state': state}


@jax.jit
def _stack(metrics: list[dict]) -> dict:
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *metrics)


def _all_finite(tree) -> bool:
  return all(bool(np.all(np.isfinite(_host(x)))) for x in jax.tree_util.tree_leaves(tree)
             if np.issubdtype(x.dtype, np.floating))


def _read_indices(path: str) -> np.ndarray:
  try:
    ids = np.loadtxt(path, dtype=np.int64, ndmin=1)
  except (OSError, ValueError) as e:
    raise ValueError(f'cannot read --dedup={path} ({e}): pass the kept.txt written by launch/dedup.py') from e
  return ids


def _summary_writer(workdir: str):
  try:
    from tensorboardX import SummaryWriter
  except ImportError:  # pragma: no cover
    log.warning('tensorboardX is not installed: no TensorBoard logs')
    return None
  return SummaryWriter(os.path.join(workdir, 'tb'))
