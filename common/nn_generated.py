"""The DCGAN paper's nearest-neighbour test on generated samples (supplementary 8.1, Table 3): a 1-NN classifier
whose only reference set is class-conditional samples, streamed through a running nearest neighbour
(``metrics.StreamingNearestNeighbour``), so memory does not grow with the number of samples (10M fit)."""
from __future__ import annotations

import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from common import metrics
from common.gan import sample_z


def nn_generated(generate: Callable, num_classes: int, samples_per_class: int, test_x, test_y, *,
                 batch: int = 1000, seed: int = 0, log: Optional[Callable] = None) -> dict:
  """Test error of a 1-NN classifier (Euclidean, pixel space) whose only reference set is
  ``samples_per_class`` generated samples of each class: ``generate(key, labels) -> images``.

  Samples are produced ``batch`` at a time (labels cycling over the classes, so every class gets exactly
  ``samples_per_class``) and folded into a running nearest neighbour per test example; nothing else is kept, so
  memory does not depend on the number of samples (10M fit). Every call to ``generate`` has ``batch`` labels
  (one compilation); the surplus of the last batch is dropped.
  """
  stream = metrics.StreamingNearestNeighbour(np.asarray(test_x).reshape(len(test_x), -1))
  total = num_classes * samples_per_class
  key = jax.random.PRNGKey(seed)
  t0, last = time.time(), time.time()
  for b, s in enumerate(range(0, total, batch)):
    y = np.arange(s, s + batch) % num_classes
    images = generate(jax.random.fold_in(key, b), jnp.asarray(y, jnp.int32))
    k = min(batch, total - s)
    stream.update(jnp.asarray(images)[:k], y[:k])
    if log and time.time() - last > 30:
      log(f'{s + k:,}/{total:,} samples, {(s + k) / (time.time() - t0):,.0f}/s')
      last = time.time()
  return {'error': stream.error(test_y), 'samples': total, 'samples_per_class': samples_per_class,
          'stream_bytes': stream.nbytes, 'seconds': time.time() - t0}


def generator_fn(model, state, running: Optional[bool] = None) -> Callable:
  """``(key, labels) -> images`` of a label-conditioned model (cdcgan, mlp_gan); batchnorm with running
  averages, each batch's statistics, or (None) the run's ``--sample_bn``."""
  if not model.conditional:
    raise ValueError(f'--model={model.config.model.name} is not label-conditioned: train --model=cdcgan or '
                     '--model=mlp_gan')

  def generate(key, y):
    return model.generate(state, sample_z(key, y.shape[0], model.z_dim), y, use_running_average=running)
  return generate
