"""Orbax checkpoints of the whole run: train state, data position and configuration.

Layout: ``WORKDIR/checkpoints/<step>/{state,data,config}``. Orbax writes each checkpoint to a temporary
directory and renames it when complete, so a kill during a write never leaves a checkpoint that looks
finished; ``latest_step`` only sees finished ones. The state is restored with the shardings of the current
mesh, so a checkpoint written on 8 devices restores onto 1 or 4.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from common import parallel, registry
from common.config import Config
from common.model import DataFacts


class Checkpointer:
  """Saves and restores ``(state, data_state, config)`` under ``workdir/checkpoints``."""

  def __init__(self, workdir: str, keep: int = 3, async_save: bool = True, keep_every: int = 0):
    """``keep``: the newest checkpoints kept; ``keep_every``: also keep every checkpoint whose step is a
    multiple of it (milestones for evaluating a long run later; 0: none)."""
    from orbax.checkpoint import checkpoint_managers as policies
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    keep_policy = policies.LatestN(keep)
    if keep_every:
      keep_policy = policies.AnyPreservationPolicy([keep_policy, policies.EveryNSteps(keep_every)])
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(preservation_policy=keep_policy, create=True,
                                             cleanup_tmp_directories=True, enable_async_checkpointing=async_save))

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def delete_from(self, step: int) -> None:
    """Deletes every checkpoint at ``step`` or later (e.g. a best checkpoint a resumed run has gone back past)."""
    for s in self.all_steps():
      if s >= step:
        self.manager.delete(s)

  def save(self, step: int, state, data_state: dict, config: dict, force: bool = False) -> bool:
    """Starts an (asynchronous) save; every process must call it. Returns whether a save was started.

    ``data_state`` holds the input position and the dataset facts the model was built for
    (channels, num_classes), so that a checkpoint alone is enough to rebuild the model.
    """
    return self.manager.save(step, force=force, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state), config=ocp.args.JsonSave(config)))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def read_config(self, step: Optional[int] = None) -> Optional[dict]:
    """The run configuration saved with a checkpoint (latest by default), or None if there is none."""
    return self.read_json('config', step)

  def read_json(self, item: str, step: Optional[int] = None) -> Optional[dict]:
    """A JSON item ('config' or 'data') of a checkpoint (latest by default), or None if there is none."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    return self.manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.JsonRestore()}))[item]

  def restore(self, abstract_state, step: Optional[int] = None) -> tuple[Any, dict, dict]:
    """Restores onto the shardings given by ``abstract_state`` (a pytree of ShapeDtypeStruct or arrays)."""
    step = self.latest_step() if step is None else step
    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, 'sharding', None)), abstract_state)
    out = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore(), config=ocp.args.JsonRestore()))
    return out['state'], out['data'], out['config']

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def load(workdir: str, step: Optional[int] = None, **overrides):
  """(model, state, config) from a run's checkpoint, restored replicated onto this process's devices.

  ``overrides`` replace flags that do not change the parameters (e.g. ``upsample_impl``).
  """
  ckpt = Checkpointer(workdir, async_save=False)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {ckpt.directory}: train first with launch/train.py '
                              f'--workdir={workdir}')
    config = Config.from_dict(ckpt.read_config(step)).replace(**overrides)
    facts = ckpt.read_json('data', step)
    model = registry.build(config, DataFacts(channels=facts['channels'], num_classes=facts.get('num_classes'),
                                             name=facts.get('dataset', '')))
    mesh = parallel.make_mesh()
    abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=parallel.replicated(mesh)), abstract)
    state, _, _ = ckpt.restore(abstract, step)
  finally:
    ckpt.close()
  return model, state, model.config
