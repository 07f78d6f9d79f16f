"""The one pytree a train step consumes and returns."""
from __future__ import annotations

from typing import Any

import jax
from flax import struct


@struct.dataclass
class TrainState:
  """Everything that changes during training, per network name ('G', 'D', 'E').

  step: int32 scalar, number of updates done.
  key: the run's base PRNG key; per-step keys are ``fold_in(key, step)``, so it never changes.
  params / batch_stats / opt_state: dicts keyed by network name.
  """
  step: jax.Array
  key: jax.Array
  params: dict[str, Any]
  batch_stats: dict[str, Any]
  opt_state: dict[str, Any]

  def variables(self, name: str) -> dict[str, Any]:
    """Flax variables of one network, ready for ``module.apply``."""
    v = {'params': self.params[name]}
    if self.batch_stats.get(name):
      v['batch_stats'] = self.batch_stats[name]
    return v


def count_params(tree) -> int:
  return sum(x.size for x in jax.tree_util.tree_leaves(tree))
