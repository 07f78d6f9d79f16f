"""Forgetting to draw an object (DCGAN section 6.3.1, Figure 6).

The paper's recipe, step by step:

1. Draw boxes around the object on generated samples. Here: a JSON file mapping sample numbers of a numbered
   sheet (``launch/latent.py --sheet``) to lists of boxes ``[x0, y0, x1, y1]`` in the pixels of the generated
   image (G's resolution, not the upscaled sheet PNG: divide those by the sheet's scale, 64 // resolution),
   x to the right, y down, x1/y1 exclusive. A sample listed with ``[]`` has no object: it gives negatives only.
   ``{"3": [[10, 4, 30, 20]], "17": [[0, 0, 12, 12], [40, 40, 60, 64]], "21": []}``
2. Take G's activations at the "second highest convolution layer" for those samples (see
   :func:`default_layer`). A feature vector (all maps at one spatial position) is a positive if the centre
   of its cell lies inside a box (a box smaller than a cell marks the cell holding its centre), and
   negatives are random positions outside the boxes of the same images (as many as positives by default).
3. Fit a logistic regression (L2-regularised, Newton's method; features standardised for the fit, weights
   reported in the original units: same signs).
4. Drop every feature map with a positive weight, at all spatial locations (G's ``drop`` argument), and
   generate the same z with and without them.

"Second highest convolution layer": read as the second-highest *hidden* layer of G, i.e. 16x16x256 for the
64x64 model (4x4x1024 -> 8x8x512 -> 16x16x256 -> 32x32x128 -> image); the paper drops "200 in total", which
a 128-map layer could not give. For a 16x16 model that layer is the projection (4x4). ``layer=`` overrides.
"""
from __future__ import annotations

import functools
import json
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from common import features
from common import images as im
from common import visualize as vis


def hidden_layers(model) -> list[str]:
  """Names of G's hidden feature-map layers from 4x4 up (['project', 'conv1', ..., 'conv<n-1>'] for the conv G);
  ValueError when G has none (MLP generators)."""
  G = model.networks()['G']
  z = jnp.zeros((1, model.z_dim))
  y = jnp.zeros((1,), jnp.int32) if model.conditional else None
  args = (z, y) if model.conditional else (z,)
  variables = jax.eval_shape(lambda: G.init(jax.random.PRNGKey(0), *args, train=False))
  sown = features.sown_layers(G, variables, args)
  maps = [k[:-len('_act')] for k, shape in sorted(sown.items(), key=lambda kv: kv[1][1] * kv[1][2])
          if len(shape) == 4 and k.endswith('_act')]                  # from the smallest (4x4) map up
  if not maps:
    raise ValueError(f'--forget needs a G with feature maps; --model={model.config.model.name} has an MLP G')
  return maps


def default_layer(model) -> str:
  """The second-highest hidden layer of G (module docstring)."""
  hl = hidden_layers(model)
  return hl[-2] if len(hl) > 1 else hl[-1]


@functools.partial(jax.jit, static_argnums=(0, 4))
def activations(model, state, z, y, layer: str):
  """G's activations at ``layer`` (after ReLU, running batchnorm statistics): [N, h, w, C]."""
  G = model.networks()['G']
  if model.conditional and y is None:
    y = jnp.arange(z.shape[0]) % model.num_classes
  args = (z, y) if model.conditional else (z,)
  _, col = G.apply(state.variables('G'), *args, train=False, mutable=['intermediates'])
  return col['intermediates'][f'{layer}_act'][0]


# -- boxes -------------------------------------------------------------------------------------------------


def read_boxes(path: str) -> dict[int, list[tuple[float, float, float, float]]]:
  """The boxes file (module docstring) as {sample number: [(x0, y0, x1, y1), ...]}."""
  with open(path) as f:
    raw = json.load(f)
  return parse_boxes(raw, path)


def parse_boxes(raw, where: str = 'boxes') -> dict[int, list[tuple[float, float, float, float]]]:
  if not isinstance(raw, dict) or not raw:
    raise ValueError(f'{where}: expected a JSON object {{"sample number": [[x0, y0, x1, y1], ...]}}')
  out = {}
  for k, boxes in raw.items():
    if not str(k).strip().isdigit():
      raise ValueError(f'{where}: {k!r} is not a sample number')
    if not isinstance(boxes, list) or any(not isinstance(b, (list, tuple)) or len(b) != 4 for b in boxes):
      raise ValueError(f'{where}: sample {k}: expected a list of [x0, y0, x1, y1] boxes, got {boxes!r}')
    for b in boxes:
      if not (b[0] < b[2] and b[1] < b[3]):
        raise ValueError(f'{where}: sample {k}: box {b} needs x0 < x1 and y0 < y1')
    out[int(k)] = [tuple(float(v) for v in b) for b in boxes]
  if not any(out.values()):
    raise ValueError(f'{where}: no boxes at all: draw at least one box around the object')
  return out


def box_cells(boxes: Sequence, resolution: int, size: int) -> np.ndarray:
  """[size, size] bool: the cells of a ``size`` x ``size`` feature map (over a ``resolution``-pixel image)
  whose centre lies in one of ``boxes``; a box holding no centre marks the cell under its own centre."""
  s = resolution / size
  centres = (np.arange(size) + 0.5) * s
  inside = np.zeros((size, size), bool)
  for x0, y0, x1, y1 in boxes:
    rows = (centres >= y0) & (centres < y1)
    cols = (centres >= x0) & (centres < x1)
    cell = rows[:, None] & cols[None, :]
    if not cell.any():
      i = min(size - 1, max(0, int(((y0 + y1) / 2) // s)))
      j = min(size - 1, max(0, int(((x0 + x1) / 2) // s)))
      cell[i, j] = True
    inside |= cell
  return inside


def examples(acts, boxes_by_row: Sequence[Sequence], resolution: int, rng: np.random.Generator,
             negatives: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
  """Positives (positions inside boxes) and random negatives (outside boxes, same images).

  ``acts``: [N, h, w, C] for N images; ``boxes_by_row[n]``: boxes of image n. Returns features [P + Q, C]
  and targets [P + Q] (1 inside, 0 outside), with Q = round(negatives * P) (fewer if there are not enough
  outside positions).
  """
  acts = np.asarray(acts)
  n, h, w, c = acts.shape
  inside = np.stack([box_cells(b, resolution, h) for b in boxes_by_row])       # [N, h, w]
  pos = acts[inside]
  outside = np.flatnonzero(~inside.reshape(-1))
  q = min(len(outside), int(round(negatives * len(pos))))
  if not len(pos) or not q:
    raise ValueError(f'{len(pos)} positions inside boxes and {len(outside)} outside at this layer ({h}x{w}): '
                     'the boxes must cover part, not all, of the listed images (add samples without boxes)')
  neg = acts.reshape(-1, c)[rng.choice(outside, q, replace=False)]
  x = np.concatenate([pos, neg]).astype(np.float32)
  t = np.concatenate([np.ones(len(pos)), np.zeros(q)]).astype(np.float32)
  return x, t


@functools.partial(jax.jit, static_argnames=('iterations',))
def fit_logistic(x, t, l2: float = 1e-3, iterations: int = 25):
  """L2-regularised logistic regression by Newton's method: min mean(log-loss) + l2/2 |w|^2 (bias free).

  Features are standardised for the fit; returns ``(w, b)`` in the original units (constant features get
  weight 0) and the training accuracy.
  """
  mu = x.mean(0)
  sd = x.std(0)
  live = sd > 1e-8
  xs = jnp.where(live, (x - mu) / jnp.where(live, sd, 1.0), 0.0)
  xa = jnp.concatenate([xs, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
  d = xa.shape[1]
  reg = jnp.concatenate([jnp.full((d - 1,), l2), jnp.zeros((1,))])

  def newton(_, theta):
    p = jax.nn.sigmoid(xa @ theta)
    grad = xa.T @ (p - t) / len(t) + reg * theta
    hess = (xa * (p * (1 - p))[:, None]).T @ xa / len(t) + jnp.diag(reg + 1e-6)
    return theta - jnp.linalg.solve(hess, grad)

  theta = jax.lax.fori_loop(0, iterations, newton, jnp.zeros((d,), x.dtype))
  ws, bs = theta[:-1], theta[-1]
  w = jnp.where(live, ws / jnp.where(live, sd, 1.0), 0.0)
  b = bs - jnp.sum(w * mu)
  acc = jnp.mean(((x @ w + b) > 0) == (t > 0.5))
  return w, b, acc


def forget(model, state, sheet: dict, boxes: dict, *, layer: Optional[str] = None, seed: int = 0,
           negatives: float = 1.0, l2: float = 1e-3) -> dict:
  """Steps 2-3 of the module docstring for the boxed samples of a sheet (``latent_tools.load_sheet``).

  Returns {'layer', 'weights' [C], 'bias', 'mask' [C] (1.0 = drop: weight > 0), 'dropped' (count),
  'accuracy' (training), 'positives', 'negatives'}.
  """
  layer = layer or default_layer(model)
  if layer not in hidden_layers(model):
    raise ValueError(f'G has no hidden layer {layer!r}: choose one of {", ".join(hidden_layers(model))}')
  ids = sorted(boxes)
  n = len(sheet['z'])
  bad = [i for i in ids if not 0 <= i < n]
  if bad:
    raise ValueError(f'boxes name samples {bad} that are not on the sheet (0..{n - 1})')
  z = jnp.asarray(sheet['z'][ids])
  y = None if sheet.get('labels') is None else jnp.asarray(sheet['labels'][ids])
  acts = activations(model, state, z, y, layer)
  x, t = examples(acts, [boxes[i] for i in ids], model.resolution, np.random.default_rng(seed), negatives)
  w, b, acc = fit_logistic(jnp.asarray(x), jnp.asarray(t), l2)
  w = np.asarray(w)
  mask = (w > 0).astype(np.float32)
  return {'layer': layer, 'weights': w, 'bias': float(b), 'mask': mask, 'dropped': int(mask.sum()),
          'accuracy': float(acc), 'positives': int(t.sum()), 'negatives': int(len(t) - t.sum())}


def with_and_without(model, state, z, mask, layer: str, y=None, use_running_average: bool = True):
  """G(z) and G(z) with the maps in ``mask`` (1 = drop) of ``layer`` zeroed everywhere: (original, forgotten)."""
  z = jnp.asarray(z)
  original = model.generate(state, z, y, use_running_average=use_running_average)
  forgotten = model.generate(state, z, y, drop={layer: jnp.asarray(mask)}, use_running_average=use_running_average)
  return np.asarray(original), np.asarray(forgotten)


def figure(original, forgotten, layer: str, dropped: int, total: int, ncol: int = 8) -> np.ndarray:
  """Figure 6: rows of samples, each followed by the same samples with the maps dropped."""
  original, forgotten = np.asarray(original), np.asarray(forgotten)
  ncol = min(ncol, len(original))
  rows = []
  for k in range(0, len(original), ncol):
    rows += [original[k:k + ncol], forgotten[k:k + ncol]]
  cells = np.concatenate([np.concatenate([r, np.ones((ncol - len(r),) + r.shape[1:], r.dtype)]) for r in rows])
  s = max(1, 64 // original.shape[1])
  return vis.caption(vis.upscale(im.grid(cells, ncol=ncol), s),
                     f'odd rows: samples; even rows: same z, {dropped} of {total} maps of {layer} dropped')
