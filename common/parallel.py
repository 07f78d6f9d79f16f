"""Data parallelism in the pmap programming model, through ``jax.shard_map``.

A per-device step written with named-axis collectives over ``AXIS`` (``lax.pmean(grads, AXIS)``,
``nn.BatchNorm(axis_name=AXIS)``) runs over a 1-D mesh of every device of every process. The state is
replicated; batches are sharded along their leading axis.
"""
from __future__ import annotations

import functools
import logging

import jax
import numpy as np
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec as P

AXIS = 'data'


def maybe_initialize_distributed(coordinator_address=None, num_processes=None, process_id=None) -> None:
  """Starts ``jax.distributed`` for multi-process runs.

  Explicit when ``coordinator_address`` is given; otherwise automatic on the clusters JAX detects
  (TPU pods, SLURM, ...), where ``jax.distributed.initialize()`` finds its own arguments. A plain
  single-process run does nothing.
  """
  if coordinator_address or (num_processes or 1) > 1:
    # Cross-process collectives for CPU devices (no effect on GPU/TPU collectives).
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)
    return
  try:
    from jax._src import clusters  # detection only; initialize() does the work
    if any(c.is_env_present() for c in clusters.ClusterEnv._cluster_types):  # pylint: disable=protected-access
      jax.distributed.initialize()
  except Exception as e:  # pragma: no cover - depends on the cluster
    logging.debug('no cluster detected: %s', e)


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """1-D mesh over ``devices`` (default: every device of every process)."""
  if devices is None:
    return jax.make_mesh((jax.device_count(),), (AXIS,))
  return jax.sharding.Mesh(np.asarray(devices), (AXIS,))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def sharded(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXIS))


def global_batch(mesh, local: dict) -> dict:
  """Assembles process-local numpy batches into global arrays sharded over the data axis."""
  s = sharded(mesh)
  return jax.tree_util.tree_map(lambda x: jax.make_array_from_process_local_data(s, np.asarray(x)), local)


def to_host(x) -> np.ndarray:
  """A (replicated) array -> numpy on this host; works when the array spans several processes."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(x.addressable_data(0))
  return np.asarray(x)


def on_one_device(tree, device=None):
  """A (replicated, possibly multi-device) pytree on one device of this process (default the first): tools
  then run once, not once per device, and jit without the training mesh."""
  return jax.device_put(jax.tree_util.tree_map(to_host, tree), device or jax.local_devices()[0])


def replicate(mesh, tree):
  """Places a (host or single-device) pytree replicated on every device of the mesh."""
  s = replicated(mesh)
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(s, np.asarray(x)) if jax.process_count() > 1
      else jax.device_put(x, s), tree)


def data_parallel(step_fn, mesh, donate: bool = True):
  """jit(shard_map(step_fn)): state replicated in and out, batch split along its leading axis.

  ``step_fn(state, batch) -> (state, metrics)`` is the per-device body; it must reduce whatever it
  returns with collectives over ``AXIS`` so that the outputs are replicated.
  """
  mapped = jax.shard_map(step_fn, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P()),
                         check_vma=False)
  return jax.jit(mapped, donate_argnums=(0,) if donate else ())


def shard_slice(x_global, local_size: int):
  """Inside a step: this device's slice of an array drawn for the whole global batch.

  Drawing z for the global batch and slicing it makes the step independent of the device count.
  """
  i = lax.axis_index(AXIS)
  return lax.dynamic_slice_in_dim(x_global, i * local_size, local_size, axis=0)


def num_shards() -> int:
  """Inside a step: the number of devices along the data axis."""
  return lax.axis_size(AXIS)


pmean = functools.partial(lax.pmean, axis_name=AXIS)
