"""Orbax checkpoints of the whole run: train state, data position and configuration. This module owns Orbax:
nothing else in the project talks to a ``CheckpointManager``.

Layout: ``WORKDIR/checkpoints/<step>/{state,data,config}``. Orbax writes each checkpoint to a temporary
directory and renames it when complete, so a kill during a write never leaves a checkpoint that looks
finished. A checkpoint that exists but cannot be read (truncated array data, a missing item) is named in a
warning and the newest readable one is used (``restore_readable``); the unreadable one is moved aside to
``WORKDIR/checkpoints.unreadable/<step>`` (kept, never deleted, and out of the way of the run's next saves).
Resuming from an older step on purpose (``--resume_step``) moves the newer ones to
``WORKDIR/checkpoints.superseded/``. The state is restored with the shardings of the current mesh, so a
checkpoint written on 8 devices restores onto 1 or 4.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Any, Callable, Optional

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from common import parallel, registry
from common.config import Config
from common.model import DataFacts


class Unreadable(Exception):
  """A checkpoint that exists but cannot be read; ``step`` and a one-line ``reason``."""

  def __init__(self, step: int, reason: str):
    super().__init__(f'checkpoint {step} is unreadable ({reason})')
    self.step, self.reason = step, reason


@dataclasses.dataclass
class Restored:
  step: int
  state: Any
  data: dict          # the input position and the dataset facts the model was built for
  config: dict        # the run configuration saved with it (``Config.to_dict()`` or an older flat form)


def _reason(e: BaseException) -> str:
  text = ' '.join(str(e).split()) or type(e).__name__
  return text if len(text) <= 200 else text[:200] + '...'


class Checkpointer:
  """Saves and restores ``(state, data_state, config)`` under ``workdir/checkpoints``."""

  def __init__(self, workdir: str, keep: int = 3, async_save: bool = True, keep_every: int = 0,
               create: bool = True):
    """``keep``: the newest checkpoints kept (at least 1); ``keep_every``: also keep every checkpoint whose step
    is a multiple of it (milestones for evaluating a long run later; 0: none); ``create=False`` for readers,
    which never make directories."""
    if keep < 1:
      raise ValueError(f'--keep_checkpoints={keep}: must be at least 1')
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, 'checkpoints')
    keep_policy = policies.LatestN(keep)
    if keep_every:
      keep_policy = policies.AnyPreservationPolicy([keep_policy, policies.EveryNSteps(keep_every)])
    self._async = async_save
    self._options = ocp.CheckpointManagerOptions(preservation_policy=keep_policy, create=create,
                                                 cleanup_tmp_directories=create,
                                                 enable_async_checkpointing=async_save)
    self.manager = ocp.CheckpointManager(self.directory, options=self._options)

  # -- what is there ---------------------------------------------------------------------------------------

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def _check_exists(self, step: int) -> None:
    if step not in self.all_steps():
      have = ', '.join(map(str, self.all_steps())) or 'none'
      raise FileNotFoundError(f'no checkpoint {step} in {self.directory}: the steps there are {have}')

  # -- writing ---------------------------------------------------------------------------------------------

  def save(self, step: int, state, data_state: dict, config: dict, force: bool = False) -> bool:
    """Starts an (asynchronous) save; every process must call it. Returns whether a save was started.

    ``data_state`` holds the input position and the dataset facts the model was built for
    (channels, num_classes), so that a checkpoint alone is enough to rebuild the model.
    """
    return self.manager.save(step, force=force, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state), config=ocp.args.JsonSave(config)))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def delete_from(self, step: int) -> None:
    """Deletes every checkpoint at ``step`` or later (e.g. a best checkpoint a resumed run has gone back past)."""
    for s in self.all_steps():
      if s >= step:
        self.manager.delete(s)

  def set_aside(self, steps, why: str) -> str:
    """Moves checkpoints ``steps`` to ``WORKDIR/checkpoints.<why>/<step>`` (nothing is deleted); returns that
    directory. Only process 0 moves files; every process reloads its view."""
    dest = os.path.join(self.workdir, f'checkpoints.{why}')
    if jax.process_index() == 0:
      os.makedirs(dest, exist_ok=True)
      for s in steps:
        src = os.path.join(self.directory, str(s))
        target, n = os.path.join(dest, str(s)), 1
        while os.path.exists(target):
          target, n = os.path.join(dest, f'{s}.{n}'), n + 1
        if os.path.exists(src):
          shutil.move(src, target)
    self.manager.close()
    self.manager = ocp.CheckpointManager(self.directory, options=self._options)
    return dest

  # -- reading ---------------------------------------------------------------------------------------------

  def read_json(self, item: str, step: Optional[int] = None) -> Optional[dict]:
    """A JSON item ('config' or 'data') of a checkpoint (latest by default), or None if there is none;
    ``Unreadable`` when it cannot be read."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    try:
      return self.manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.JsonRestore()}))[item]
    except Exception as e:  # noqa: BLE001 - whatever Orbax / tensorstore / json raise for a damaged file
      raise Unreadable(step, f'its {item}: {_reason(e)}') from e

  def read_config(self, step: Optional[int] = None) -> Optional[dict]:
    """The run configuration saved with a checkpoint (latest by default), or None if there is none."""
    return self.read_json('config', step)

  def read(self, step: int, make_target: Callable[[dict, dict], Any]) -> Restored:
    """Checkpoint ``step``: its config and data items, then its state restored onto ``make_target(config,
    data)`` (a pytree of ShapeDtypeStruct with shardings, or of arrays). ``Unreadable`` if any part cannot be
    read; errors of ``make_target`` itself (e.g. a refused configuration) pass through."""
    config, data = self.read_json('config', step), self.read_json('data', step)
    if not isinstance(config, dict) or not isinstance(data, dict):
      raise Unreadable(step, 'its config or data item is not a JSON object')
    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, 'sharding', None)),
        make_target(config, data))
    try:
      out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    except Exception as e:  # noqa: BLE001 - truncated array data, a missing state item, ...
      raise Unreadable(step, f'its state: {_reason(e)}') from e
    return Restored(step, out['state'], data, config)

  def restore_readable(self, make_target: Callable[[dict, dict], Any], step: Optional[int] = None,
                       warn: Callable[[str], None] = print) -> tuple[Restored, list[Unreadable]]:
    """The newest readable checkpoint (or exactly ``step``), and the newer ones that could not be read, each
    named in a warning. FileNotFoundError when there is none; ``Unreadable`` when ``step`` itself cannot be
    read."""
    if step is not None:
      self._check_exists(step)
      return self.read(step, make_target), []
    bad = []
    for s in reversed(self.all_steps()):
      try:
        restored = self.read(s, make_target)
      except Unreadable as e:
        warn(f'warning: {e} in {self.directory}; trying the one before it')
        bad.append(e)
        continue
      if bad:
        warn(f'warning: using checkpoint {s}, the newest readable one in {self.directory}')
      return restored, bad
    if bad:
      raise FileNotFoundError(f'no readable checkpoint in {self.directory}: ' + '; '.join(map(str, bad)))
    raise FileNotFoundError(f'no checkpoint in {self.directory}')

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def load(workdir: str, step: Optional[int] = None, warn: Callable[[str], None] = print, **overrides):
  """(model, state, config) from a run's checkpoint (``step``, default the newest readable one), restored
  replicated onto this process's devices.

  ``overrides`` replace flags that do not change the parameters (e.g. ``upsample_impl``).
  """
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    raise FileNotFoundError(f'no checkpoint in {os.path.abspath(workdir)}: train first with launch/train.py '
                            f'--workdir={workdir}')
  ckpt = Checkpointer(workdir, async_save=False, create=False)
  built = {}

  def target(config: dict, data: dict):
    cfg = Config.from_dict(config).replace(**overrides)
    model = registry.build(cfg, DataFacts(channels=data['channels'], num_classes=data.get('num_classes'),
                                          name=data.get('dataset', '')))
    built['model'] = model
    mesh = parallel.make_mesh()
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=parallel.replicated(mesh)),
                                  jax.eval_shape(model.init, jax.random.PRNGKey(0)))

  try:
    if not ckpt.all_steps():
      raise FileNotFoundError(f'no checkpoint in {ckpt.directory}: train first with launch/train.py '
                              f'--workdir={workdir}')
    restored, _ = ckpt.restore_readable(target, step, warn=warn)
  except Unreadable as e:
    raise ValueError(f'{e} in {ckpt.directory}: pick another with --step (steps: '
                     f'{", ".join(map(str, ckpt.all_steps()))})') from None
  finally:
    ckpt.close()
  model = built['model']
  return model, restored.state, model.config
