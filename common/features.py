"""Features of images from a network's sown activations: the DCGAN paper's section-5.1 recipe ("maxpooling each
layers representation to produce a 4 x 4 spatial grid", flattened and concatenated) and plain layer picks.

Networks sow each hidden activation as ``'<layer>_act'`` in the 'intermediates' collection; ``sown_features``
runs a module once in inference mode and returns the chosen activations, each max-pooled to a grid (4-D maps,
when ``grid``), flattened and concatenated. Models build their ``features`` on it.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from flax import traverse_util

GRID = 4                        # section 5.1: "a 4 x 4 spatial grid"


def adaptive_max_pool(h, grid: int = GRID):
  """(N, H, W, C) -> (N, grid, grid, C): the max over each cell of a grid x grid partition of the map.

  Cell (i, j) covers rows [floor(i H / grid), ceil((i + 1) H / grid)) and the same for columns (PyTorch's
  adaptive max pool); for H divisible by grid these are the non-overlapping H/grid x W/grid windows. Maps
  smaller than the grid repeat their values, so every layer always gives grid * grid * C features.
  """
  n, hh, ww, c = h.shape
  if hh % grid == 0 and ww % grid == 0:
    return h.reshape(n, grid, hh // grid, grid, ww // grid, c).max(axis=(2, 4))
  rows = [(i * hh // grid, -(-(i + 1) * hh // grid)) for i in range(grid)]
  cols = [(j * ww // grid, -(-(j + 1) * ww // grid)) for j in range(grid)]
  return jnp.stack([jnp.stack([h[:, r0:r1, c0:c1].max(axis=(1, 2)) for c0, c1 in cols], axis=1)
                    for r0, r1 in rows], axis=1)


def pool_concat(acts: Sequence, grid: Optional[int] = GRID):
  """Every 4-D activation (N, H, W, C) max-pooled to a grid x grid map (``grid`` None or 0: not pooled), every
  activation flattened, all concatenated: (N, sum of dims), float32."""
  parts = []
  for a in acts:
    if a.ndim == 4 and grid:
      a = adaptive_max_pool(a, grid)
    parts.append(a.reshape(a.shape[0], -1).astype(jnp.float32))
  return jnp.concatenate(parts, axis=-1)


def split_layers(layer: Optional[str]) -> Optional[tuple]:
  """'conv1_act,conv2_act' -> ('conv1_act', 'conv2_act'); None or '' -> None."""
  return tuple(s for s in layer.split(',') if s) if layer else None


def flat_intermediates(inter) -> dict:
  """{'conv1_act': array, ...}; activations sown by submodules get 'sub/...' names (network order kept)."""
  flat = traverse_util.flatten_dict(dict(inter['intermediates']), sep='/')
  return {k: v[0] for k, v in flat.items()}


def resolve(name: str, acts: dict) -> str:
  """The sown name ``name`` refers to (exactly, or as the last part of a submodule's name)."""
  if name in acts:
    return name
  hits = [k for k in acts if k.rsplit('/', 1)[-1] == name]
  if len(hits) != 1:
    raise ValueError(f'unknown feature layer {name!r}: choose from {", ".join(acts)}')
  return hits[0]


def sown_features(module, variables, args: tuple, layers: Optional[Sequence[str]] = None,
                  grid: Optional[int] = GRID, extra: Optional[dict] = None):
  """``module.apply(variables, *args, train=False)``'s sown activations -> ``pool_concat`` features.

  ``layers``: names of sown activations (default: every ``'*_act'`` one, in network order); ``extra``: a
  function of the module's output adding named features (e.g. {'z': ...}). Jitted per (module, layers, grid).
  """
  return _sown_features(module, tuple(layers) if layers else None, grid or None,
                        tuple(sorted((extra or {}).items())), variables, args)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _sown_features(module, layers, grid, extra, variables, args):
  out, inter = module.apply(variables, *args, train=False, mutable=['intermediates'])
  acts = flat_intermediates(inter)
  for name, fn in extra:
    acts[name] = fn(out)
  names = [resolve(n, acts) for n in layers] if layers else [k for k in acts if k.endswith('_act')]
  return pool_concat([acts[n] for n in names], grid)


def sown_layers(module, variables, args: tuple) -> dict:
  """{name: shape} of every activation the module sows (no computation: shapes only)."""
  _, inter = jax.eval_shape(lambda v, a: module.apply(v, *a, train=False, mutable=['intermediates']),
                            variables, args)
  return {k: tuple(v.shape) for k, v in flat_intermediates(inter).items()}


def recompute_batch_stats(module, state, net: str, inputs, max_batches: int = 1000):
  """``state`` with ``net``'s batchnorm running statistics replaced by the average of each batch's statistics
  over ``inputs`` (an iterable of input batches, at most ``max_batches``): the authors' inference statistics
  (DCGAN's ``infer_bnorm_stats``, BiGAN's 1000 "deploy" batches) instead of running averages. ``module`` must
  take a ``bn`` (``common.networks.BNSpec``) field: it runs with momentum 0, so each call returns exactly its
  batch's statistics."""
  if not state.batch_stats.get(net):
    return state
  probe = module.clone(bn=dataclasses.replace(module.bn, momentum=0.0))
  apply = jax.jit(lambda v, x: probe.apply(v, x, train=True, mutable=['batch_stats'])[1]['batch_stats'])
  total, n = None, 0
  for x in inputs:
    stats = apply(state.variables(net), jnp.asarray(x))
    total = stats if total is None else jax.tree_util.tree_map(jnp.add, total, stats)
    n += 1
    if n >= max_batches:
      break
  if not n:
    raise ValueError('recompute_batch_stats: no input batches')
  mean = jax.tree_util.tree_map(lambda t: t / n, total)
  return state.replace(batch_stats={**state.batch_stats, net: mean})
