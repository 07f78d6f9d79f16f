"""Pictures of a trained run's generator: sample grids, latent walks and, for encoder models, reconstructions
(``launch/sample.py``)."""
from __future__ import annotations

import os
from typing import Optional

import jax

from common import checkpoint, data, images, latent, parallel


def write(workdir: str, *, out: Optional[str] = None, num: int = 64, seed: int = 0, step: Optional[int] = None,
          interpolate: bool = False, rows: int = 8, steps: int = 10, method: str = 'linear',
          reconstruct: bool = False, batch_stats: Optional[str] = None) -> str:
  """Writes a PNG of the run in ``workdir`` (its checkpoint ``step``, default the newest): ``num`` samples, or
  ``rows`` latent walks of ``steps`` points (``interpolate``), or ``num`` test images beside G(E(x))
  (``reconstruct``); returns its path (default WORKDIR/sample.png, walk.png or recon.png)."""
  model, state, config = checkpoint.load(workdir, step)
  state = parallel.on_one_device(state)
  key = jax.random.PRNGKey(seed)
  running = None if batch_stats is None else batch_stats == 'running'   # None: the run's --sample_bn
  if reconstruct:
    if not model.has_encoder:
      raise ValueError(f'--reconstruct needs a model with an encoder; {config.model.name} has none')
    d = config.data
    source, _ = data.open_source(d.dataset, 'test', data_dir=d.data_dir, manual_dir=d.manual_dir)
    with data.Batches(source, global_batch=num, seed=seed, prefetch=0, **model.data_options(eval=True)) as it:
      x = next(it)['image']
    out = out or os.path.join(workdir, 'recon.png')
    return images.save_grid(images.interleave(model.display(x), model.reconstruct(state, x)), out, ncol=8)
  if interpolate:
    z = latent.walk_sheet(key, rows, steps, model.z_dim, method)
    out = out or os.path.join(workdir, 'walk.png')
    return images.save_grid(model.generate(state, z, use_running_average=running), out, ncol=steps)
  out = out or os.path.join(workdir, 'sample.png')
  return images.save_grid(model.sample(state, key, num, use_running_average=running), out)
