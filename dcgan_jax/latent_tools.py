"""Latent-space tools (DCGAN sections 6.1 and 6.3.2; Figures 4, 7 and 8).

- :func:`walks`: sheets of latent walks between random points, linear and spherical (Figure 4).
- :func:`numbered_sheet` / :func:`save_sheet` / :func:`load_sheet`: numbered sample sheets that keep the z
  (and labels) of every cell in ``SHEET.npz`` beside ``SHEET.png``, so exemplars can be picked by number.
- :func:`vector_arithmetic`: the mean z of each exemplar set (the paper averages three), combined with signs
  (``Y = A - B + C``), rendered in the centre of a 3x3 whose 8 neighbours are ``Y + U(-0.25, 0.25)``; the
  same arithmetic on the images themselves (pixel space) for comparison (Figure 7, bottom rows).
- :func:`direction` / :func:`along`: a direction from two sets of exemplars (mean of the second minus mean
  of the first, the paper's "turn" vector) and walks of random samples along it (Figure 8).

The z arithmetic is exact (no clipping to [-1, 1]: the paper does not clip, and G accepts any z). Images are
generated with batchnorm's running statistics, so each image depends only on its own z. A conditional
model's result takes the label of the first exemplar of the first set unless a label is given. Any model
with ``generate(state, z)`` and ``z_dim`` works (DCGAN, conditional DCGAN, the BiGAN family).

Exemplar expressions (command line): ``"3,7,12 - 5,9,21 + 40,41,42"`` (sets of sheet numbers joined by
``+``/``-``; a leading set is positive) and ``"1,2,3 -> 4,5,6"`` (direction from the first set to the second).
"""
from __future__ import annotations

import functools
import math
import os
import re
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from common import checkpoint, latent, parallel
from common import images as im
from common import visualize as vis
from dcgan_jax import forget

NOISE_SCALE = 0.25   # Figure 7: "uniform noise sampled with scale +-0.25 was added to Y"


# -- expressions -------------------------------------------------------------------------------------------


def parse_ids(text: str) -> list[int]:
  """``"3, 7,12"`` -> [3, 7, 12]."""
  ids = [t for t in re.split(r'[\s,]+', text.strip()) if t]
  if not ids or not all(t.isdigit() for t in ids):
    raise ValueError(f'expected comma-separated sample numbers such as "3,7,12", got {text!r}')
  return [int(t) for t in ids]


def parse_arithmetic(expr: str) -> list[tuple[int, list[int]]]:
  """``"3,7,12 - 5,9,21 + 40,41,42"`` -> [(+1, [3, 7, 12]), (-1, [5, 9, 21]), (+1, [40, 41, 42])]."""
  parts = re.split(r'\s*([+-])\s*', expr.strip())
  if parts and parts[0] == '':
    parts = parts[1:]
  else:
    parts = ['+'] + parts
  if len(parts) < 2 or len(parts) % 2:
    raise ValueError(f'cannot parse {expr!r}: write sets of sample numbers joined by + and -, e.g. '
                     '"3,7,12 - 5,9,21 + 40,41,42"')
  return [(1 if sign == '+' else -1, parse_ids(ids)) for sign, ids in zip(parts[0::2], parts[1::2])]


def parse_direction(expr: str) -> tuple[list[int], list[int]]:
  """``"1,2,3 -> 4,5,6"`` -> ([1, 2, 3], [4, 5, 6])."""
  parts = expr.split('->')
  if len(parts) != 2:
    raise ValueError(f'cannot parse {expr!r}: write "FROM -> TO" with sets of sample numbers, e.g. "1,2,3 -> 4,5,6"')
  return parse_ids(parts[0]), parse_ids(parts[1])


# -- the z operations (jitted) -----------------------------------------------------------------------------


def combine(z_sets: Sequence, signs: Sequence[int]):
  """``Y = sum_k sign_k * mean(z_sets[k])`` (sets may differ in size): the paper's ``A - B + C``."""
  if len(z_sets) != len(signs) or not z_sets:
    raise ValueError('one sign per set, at least one set')
  return _combine(tuple(jnp.asarray(z) for z in z_sets), tuple(float(s) for s in signs))


@jax.jit
def _combine(z_sets, signs):
  return sum(s * jnp.mean(z, axis=0) for s, z in zip(signs, z_sets))


@functools.partial(jax.jit, static_argnames=('n',))
def neighbours(key, y, scale: float = NOISE_SCALE, n: int = 8):
  """``n`` points ``y + U(-scale, scale)^z_dim``."""
  return y + jax.random.uniform(key, (n,) + y.shape, minval=-scale, maxval=scale)


def arithmetic_grid(key, y, scale: float = NOISE_SCALE):
  """3x3 latents, row-major: ``y`` in the centre (index 4) and 8 noisy neighbours around it. [9, z_dim]."""
  nb = neighbours(key, y, scale)
  return jnp.concatenate([nb[:4], y[None], nb[4:]], axis=0)


def pixel_arithmetic(image_sets: Sequence, signs: Sequence[int]):
  """The same arithmetic on images (mean image of each set), clipped to [-1, 1]: the paper's comparison."""
  return jnp.clip(combine(image_sets, signs), -1.0, 1.0)


def direction(z_from, z_to):
  """Mean of ``z_to`` minus mean of ``z_from`` (Figure 8's "turn" vector)."""
  return combine([z_to, z_from], [1, -1])


@jax.jit
def _along(z, d, t):
  return z[:, None, :] + t[None, :, None] * d[None, None, :]


def along(z, d, steps: int, t0: float = 0.0, t1: float = 1.0):
  """Walks of each z along direction d: ``z_i + t * d`` for ``steps`` values of t from t0 to t1 (both
  included). [n, steps, z_dim]."""
  return _along(jnp.asarray(z), jnp.asarray(d), jnp.linspace(t0, t1, steps))


def walks(key, rows: int, steps: int, z_dim: int, methods: Sequence[str] = ('linear', 'spherical')):
  """Figure 4: ``rows`` pairs of random end points in U(-1, 1)^z_dim, each walked with every method in
  ``methods`` (consecutive rows share their end points). [rows * len(methods) * steps, z_dim]."""
  ends = jax.random.uniform(key, (rows, 2, z_dim), minval=-1.0, maxval=1.0)
  return jnp.concatenate([latent.interpolate(e[0], e[1], steps, m) for e in ends for m in methods], axis=0)


def generate(model, state, z, y=None, use_running_average: bool = True):
  """``model.generate`` for any model (DCGAN, conditional DCGAN, BiGAN family): labels are passed only to
  conditional models."""
  return model.generate(state, z, y if model.conditional else None, use_running_average=use_running_average)


# -- sheets ------------------------------------------------------------------------------------------------


def sheet_paths(path: str) -> tuple[str, str]:
  """``x.png`` or ``x.npz`` (or ``x``) -> (``x.png``, ``x.npz``)."""
  root, ext = os.path.splitext(path)
  if ext.lower() not in ('.png', '.npz'):
    root = path
  return root + '.png', root + '.npz'


def _scale_for(resolution: int) -> int:
  return max(1, 64 // resolution)


def numbered_grid(images, ncol: Optional[int] = None, scale: Optional[int] = None, start: int = 0) -> np.ndarray:
  """A grid (like ``images.grid``) with each cell's number drawn in its corner; upscaled so numbers fit."""
  images = np.asarray(images)
  n, h = len(images), images.shape[1]
  ncol = ncol or int(math.ceil(math.sqrt(n)))
  scale = scale or _scale_for(h)
  pad = 2
  g = vis.upscale(im.grid(images, ncol, pad=pad), scale)
  return vis.draw_numbers(g, n, h * scale, ncol, pad * scale, start=start)


def numbered_sheet(model, state, key, num: int, y=None, use_running_average: bool = True) -> dict:
  """``num`` samples with their z (and labels): {'z': [num, z_dim], 'labels': [num] or None, 'images'}."""
  z = jax.random.uniform(key, (num, model.z_dim), minval=-1.0, maxval=1.0)
  labels = None
  if model.conditional:
    labels = jnp.arange(num) % model.num_classes if y is None else jnp.asarray(y)
  images = generate(model, state, z, labels, use_running_average)
  return {'z': np.asarray(z), 'labels': None if labels is None else np.asarray(labels), 'images': np.asarray(images)}


def save_sheet(path: str, sheet: dict, ncol: Optional[int] = None, **meta) -> tuple[str, str]:
  """Writes the numbered ``SHEET.png`` and ``SHEET.npz`` (z, labels if any, and ``meta`` such as the
  workdir and step). Returns both paths."""
  png, npz = sheet_paths(path)
  im.save_png(numbered_grid(sheet['images'], ncol), png)
  arrays = {'z': np.asarray(sheet['z'], np.float32)}
  if sheet.get('labels') is not None:
    arrays['labels'] = np.asarray(sheet['labels'], np.int32)
  arrays.update({k: np.asarray(v) for k, v in meta.items() if v is not None})
  os.makedirs(os.path.dirname(os.path.abspath(npz)), exist_ok=True)
  tmp = npz + '.tmp.npz'
  np.savez(tmp, **arrays)
  os.replace(tmp, npz)
  return png, npz


def load_sheet(path: str, z_dim: Optional[int] = None) -> dict:
  """{'z', 'labels' (or None), ...} from ``SHEET.npz`` (``SHEET.png`` works too); checks ``z_dim``."""
  _, npz = sheet_paths(path)
  if not os.path.exists(npz):
    raise FileNotFoundError(f'{npz} not found: make a sheet first (launch/latent.py --sheet=...)')
  with np.load(npz) as f:
    out = {k: f[k] for k in f.files}
  out.setdefault('labels', None)
  if z_dim is not None and out['z'].shape[1] != z_dim:
    raise ValueError(f'{npz} holds z of dimension {out["z"].shape[1]}, the model needs {z_dim}: the sheet comes '
                     'from another model')
  return out


def pick(sheet: dict, ids: Sequence[int]):
  """z (and labels) of sheet cells ``ids``; raises on numbers not on the sheet."""
  n = len(sheet['z'])
  bad = [i for i in ids if not 0 <= i < n]
  if bad:
    raise ValueError(f'sample numbers {bad} are not on the sheet (0..{n - 1})')
  ids = np.asarray(ids)
  return sheet['z'][ids], None if sheet.get('labels') is None else sheet['labels'][ids]


# -- figures -----------------------------------------------------------------------------------------------


def _gen(model, state, z, label, use_running_average=True):
  y = None
  if model.conditional:
    y = jnp.full((len(z),), int(label), jnp.int32)
  return np.asarray(generate(model, state, jnp.asarray(z), y, use_running_average))


def vector_arithmetic(model, state, sheet: dict, terms: Sequence[tuple[int, Sequence[int]]], key,
                      scale: float = NOISE_SCALE, label: Optional[int] = None,
                      use_running_average: bool = True) -> dict:
  """Figure 7 from sheet exemplars. ``terms``: [(sign, ids), ...] as :func:`parse_arithmetic` gives.

  Returns {'y': [z_dim], 'grid_z': [9, z_dim] (Y at index 4), 'grid': [9, ...] images of G,
  'exemplars': [[images of set k]], 'set_means': [G(mean z of set k)], 'pixel_means': [mean image of set k],
  'pixel': the pixel-space result, 'signs', 'ids'}.
  """
  signs = [s for s, _ in terms]
  zs, labels = zip(*[pick(sheet, ids) for _, ids in terms])
  if label is None:
    label = int(labels[0][0]) if labels[0] is not None else 0
  y = combine(zs, signs)
  grid_z = arithmetic_grid(key, y, scale)
  g = lambda z: _gen(model, state, z, label, use_running_average)  # noqa: E731
  # The exemplars as they are on the sheet (their own labels), and the mean z of each set.
  exemplars = []
  for z, lab in zip(zs, labels):
    yy = None if lab is None else jnp.asarray(lab)
    exemplars.append(np.asarray(generate(model, state, jnp.asarray(z), yy, use_running_average)))
  means = g(np.stack([np.mean(z, axis=0) for z in zs]))
  pixel_means = [np.mean(e, axis=0) for e in exemplars]
  return {'y': np.asarray(y), 'grid_z': np.asarray(grid_z), 'grid': g(grid_z), 'exemplars': exemplars,
          'set_means': means, 'pixel_means': np.stack(pixel_means),
          'pixel': np.asarray(pixel_arithmetic(exemplars, signs)), 'signs': signs,
          'ids': [list(ids) for _, ids in terms], 'label': label}


def arithmetic_figure(result: dict) -> np.ndarray:
  """One picture: a row per set (sign, its exemplars, G(mean z), mean image), then the 3x3 of G(Y + noise)
  with G(Y) in the centre, then the pixel-space result beside the sets' mean images."""
  ex = result['exemplars']
  h = ex[0].shape[1]
  s = _scale_for(h)
  k = max(len(e) for e in ex)
  blank = np.ones_like(ex[0][:1])
  rows = []
  for sign, e, ids, m, pm in zip(result['signs'], ex, result['ids'], result['set_means'], result['pixel_means']):
    cells = np.concatenate([e] + [blank] * (k - len(e)) + [m[None], pm[None]], axis=0)
    rows.append(vis.caption(vis.upscale(im.grid(cells, ncol=len(cells)), s),
                            f'{"+" if sign > 0 else "-"} {",".join(map(str, ids))}: exemplars | G(mean z) | mean image'))
  left = vis.stack(rows)
  right = vis.caption(vis.upscale(im.grid(result['grid'], ncol=3), s), 'G(Y), Y = result (centre) + U(-0.25,0.25)')
  pixel = vis.caption(vis.upscale(im.grid(result['pixel'][None], ncol=1), s), 'same in pixel space')
  return vis.stack([left, vis.stack([right, pixel])], axis=1, gap=12)


def direction_walks(model, state, sheet: dict, ids_from: Sequence[int], ids_to: Sequence[int], key, num: int = 8,
                    steps: int = 8, t0: float = 0.0, t1: float = 1.0, use_running_average: bool = True) -> dict:
  """Figure 8: the direction mean(z[ids_to]) - mean(z[ids_from]) added, scaled by t in [t0, t1], to ``num``
  random samples. Returns {'direction', 'z': [num, steps, z_dim], 'images': [num * steps, ...], 'labels'}."""
  (za, la), (zb, _) = pick(sheet, ids_from), pick(sheet, ids_to)
  d = direction(za, zb)
  kz, ky = jax.random.split(key)
  z0 = jax.random.uniform(kz, (num, model.z_dim), minval=-1.0, maxval=1.0)
  zz = along(z0, d, steps, t0, t1)
  labels = None
  if model.conditional:
    labels = jax.random.randint(ky, (num,), 0, model.num_classes)
    y = jnp.repeat(labels, steps)
  else:
    y = None
  images = generate(model, state, zz.reshape(num * steps, -1), y, use_running_average)
  return {'direction': np.asarray(d), 'z': np.asarray(zz), 'images': np.asarray(images),
          'labels': None if labels is None else np.asarray(labels)}


# -- the command line's picture --------------------------------------------------------------------------


def make_picture(a) -> str:
  """``launch/latent.py``: the picture of ``a.mode`` ('sheet', 'walk', 'arithmetic', 'direction', 'forget') for
  the run in ``a.workdir``, with the command line's other fields; returns the PNG's path."""
  model, state, config = checkpoint.load(a.workdir, a.step)
  state = parallel.on_one_device(state)     # one device is plenty, and 1/n of the work
  running = a.batch_stats == 'running'
  key = jax.random.PRNGKey(a.seed)
  out = a.out or os.path.join(a.workdir, f'{a.mode}.png')
  sheet = load_sheet(a.from_sheet, model.z_dim) if a.from_sheet else None

  if a.mode == 'sheet':
    s = numbered_sheet(model, state, key, a.num or 64, use_running_average=running)
    png, npz = save_sheet(a.sheet, s, workdir=os.path.abspath(a.workdir), step=int(state.step), seed=a.seed)
    print(f'wrote {png} and {npz}')
    return png
  if a.mode == 'walk':
    methods = ('linear', 'spherical') if a.method == 'both' else (a.method,)
    z = walks(key, a.rows, a.steps, model.z_dim, methods)
    s = max(1, 64 // model.resolution)
    text = ('rows in pairs: linear, spherical (same end points)' if len(methods) == 2 else f'{methods[0]} walks')
    im.save_png(vis.caption(vis.upscale(
        im.grid(generate(model, state, z, None, running), ncol=a.steps), s), text), out)
  elif a.mode == 'arithmetic':
    r = vector_arithmetic(model, state, sheet, parse_arithmetic(a.arithmetic), key, a.scale, a.label,
                             use_running_average=running)
    im.save_png(arithmetic_figure(r), out)
    np.savez(os.path.splitext(out)[0] + '.npz', y=r['y'], grid_z=r['grid_z'])
  elif a.mode == 'direction':
    ids_from, ids_to = parse_direction(a.direction)
    r = direction_walks(model, state, sheet, ids_from, ids_to, key, a.num or 8, a.steps, *a.span,
                           use_running_average=running)
    s = max(1, 64 // model.resolution)
    im.save_png(vis.caption(vis.upscale(im.grid(r['images'], ncol=a.steps), s),
                                      f'z + t * (mean {ids_to} - mean {ids_from}), t = {a.span[0]:g} .. {a.span[1]:g}'),
                    out)
    np.savez(os.path.splitext(out)[0] + '.npz', direction=r['direction'], z=r['z'])
  elif a.mode == 'forget':
    boxes = forget.read_boxes(a.forget)
    r = forget.forget(model, state, sheet, boxes, layer=a.layer, seed=a.seed, negatives=a.negatives)
    print(f"{r['layer']}: {r['positives']} positives, {r['negatives']} negatives, training accuracy "
          f"{r['accuracy']:.3f}; dropping {r['dropped']} of {len(r['mask'])} maps")
    z = jax.random.uniform(key, (a.num or 8, model.z_dim), minval=-1.0, maxval=1.0)
    orig, forgot = forget.with_and_without(model, state, z, r['mask'], r['layer'], use_running_average=running)
    im.save_png(forget.figure(orig, forgot, r['layer'], r['dropped'], len(r['mask'])), out)
    np.savez(os.path.splitext(out)[0] + '.npz', mask=r['mask'], weights=r['weights'], layer=r['layer'], z=np.asarray(z))
  print(f'wrote {out}')
  return out
