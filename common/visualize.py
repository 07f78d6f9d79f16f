"""Looking inside trained networks: guided backpropagation and first-layer filters.

Guided backpropagation (DCGAN section 6.2 and Figure 5; Springenberg et al., 2014)
---------------------------------------------------------------------------------
For each chosen feature map of D's last convolutional layer, find the real image and the spatial position
with the largest response over a set of images (the "maximal axis-aligned response"), and backpropagate
that single unit to the input with the guided rule: in the backward pass through every ReLU / LeakyReLU,
only positive gradients pass, and only where the forward input was positive,

    R_in = R_out * [x > 0] * [R_out > 0].

The same for a randomly initialised D gives the paper's baseline.

How the guided rule gets into a network without touching its code: :func:`guided` is a small jaxpr
interpreter (the pattern of JAX's "writing custom interpreters" guide). It traces the function once and
evaluates its jaxpr, replacing every call of ``jax.nn.relu`` / ``jax.nn.leaky_relu`` (which JAX records as
named sub-computations, ``relu`` and ``leaky_relu``) by :func:`guided_relu` / :func:`guided_leaky_relu`,
whose ``jax.custom_vjp`` backward applies the rule above. Everything else is evaluated as it is, so the
forward pass is bit-for-bit the network's own, with the same parameters and batch statistics, and it works
for any Flax module (DCGAN D, BiGAN E or D) that uses these activations, without an ``activation`` field on
the modules and without a second copy of the model. Activations written with ``jnp.maximum`` or inside
``lax.scan``/``cond`` bodies are left as they are. ``guided(f)`` is traceable: ``jax.jit``, ``jax.grad``
and ``jax.vmap`` compose with it.

Filters (BiGAN Figure 3)
------------------------
:func:`filter_tiles` turns a first-layer kernel into image tiles: a convolution kernel ``(k, k, C, F)`` gives F
tiles of ``k x k x C``; the output (fractionally-strided) convolution of G, ``(k, k, Cin, C)``, gives Cin
tiles, each the ``k x k x C`` patch that one input map paints (the kernel flipped in space: a transposed
convolution stamps the kernel reversed); a dense first layer ``(R*R*C, F)`` gives F tiles of ``R x R x C``.
Each tile is scaled to its own [min, max].
"""
from __future__ import annotations

import contextlib
import os
import re
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from common import checkpoint, data, parallel
from common import images as im


# -- guided activations ------------------------------------------------------------------------------------


def _guided_mask(x, g):
  return g * ((x > 0) & (g > 0)).astype(g.dtype)


@jax.custom_vjp
def guided_relu(x):
  """ReLU whose backward pass is the guided rule ``g * [x > 0] * [g > 0]``."""
  return jax.nn.relu(x)


guided_relu.defvjp(lambda x: (jax.nn.relu(x), x), lambda x, g: (_guided_mask(x, g),))


@jax.custom_vjp
def guided_leaky_relu(x, negative_slope=0.01):
  """LeakyReLU whose backward pass is the guided rule ``g * [x > 0] * [g > 0]`` (no gradient for the slope)."""
  return jax.nn.leaky_relu(x, negative_slope)


def _glr_fwd(x, negative_slope):
  return jax.nn.leaky_relu(x, negative_slope), (x, negative_slope)


def _glr_bwd(res, g):
  x, slope = res
  return _guided_mask(x, g), jnp.zeros_like(slope)


guided_leaky_relu.defvjp(_glr_fwd, _glr_bwd)

_CALLS = ('jit', 'pjit', 'closed_call', 'core_call')


def _call_name(eqn) -> Optional[str]:
  """'relu' / 'leaky_relu' / ... for a named call; for a custom_jvp_call (jax.nn.relu is one), the name of
  the single call it wraps."""
  if eqn.primitive.name == 'custom_jvp_call':
    inner = getattr(eqn.params.get('call_jaxpr'), 'jaxpr', None)
    eqns = getattr(inner, 'eqns', ())
    if len(eqns) == 1 and eqns[0].primitive.name in _CALLS:
      return eqns[0].params.get('name')
    return None
  return eqn.params.get('name')


def _eval_guided(jaxpr, consts, *args):
  """Evaluates ``jaxpr`` with relu / leaky_relu calls replaced by their guided versions."""
  from jax.extend import core as jcore
  env: dict = {}

  def read(v):
    return v.val if isinstance(v, jcore.Literal) else env[v]

  def write(v, val):
    if not isinstance(v, jcore.DropVar):
      env[v] = val

  for v, val in zip(jaxpr.constvars, consts):
    write(v, val)
  for v, val in zip(jaxpr.invars, args):
    write(v, val)
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    prim, name = eqn.primitive.name, _call_name(eqn)
    if name == 'relu' and prim in _CALLS + ('custom_jvp_call',):
      outs = [guided_relu(invals[-1])]
    elif name == 'leaky_relu' and prim in _CALLS:
      outs = [guided_leaky_relu(*invals)]
    elif prim in _CALLS + ('checkpoint', 'remat') and ('jaxpr' in eqn.params or 'call_jaxpr' in eqn.params):
      sub = eqn.params.get('jaxpr', eqn.params.get('call_jaxpr'))     # nested call (or remat): look inside
      sub_jaxpr, sub_consts = (sub.jaxpr, sub.consts) if hasattr(sub, 'consts') else (sub, ())
      outs = _eval_guided(sub_jaxpr, sub_consts, *invals)
    else:
      params = eqn.primitive.get_bind_params(eqn.params)
      subfuns = ()
      if isinstance(params, tuple):         # older JAX: (sub-functions, params)
        subfuns, params = params
      ctx = getattr(getattr(eqn, 'ctx', None), 'manager', None)
      with ctx if ctx is not None else contextlib.nullcontext():
        outs = eqn.primitive.bind(*subfuns, *invals, **params)
      if not eqn.primitive.multiple_results:
        outs = [outs]
    for v, val in zip(eqn.outvars, outs):
      write(v, val)
  return [read(v) for v in jaxpr.outvars]


def guided(fun: Callable) -> Callable:
  """``fun`` with every ReLU / LeakyReLU backpropagating by the guided rule (forward unchanged).

  ``fun``'s arguments must be pytrees of arrays (close over anything static, e.g. ``train=False``); pass
  parameters as arguments rather than closing over them when ``guided(fun)`` runs under ``jit``.
  """
  def wrapped(*args):
    flat, tree = jax.tree_util.tree_flatten(args)
    closed, out_shape = jax.make_jaxpr(lambda *xs: fun(*jax.tree_util.tree_unflatten(tree, xs)),
                                       return_shape=True)(*flat)
    outs = _eval_guided(closed.jaxpr, closed.consts, *flat)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), outs)
  return wrapped


# -- maximal responses and their guided backpropagation -----------------------------------------------------


def _natural(name: str):
  return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', name)]


def last_conv_layer(intermediates: dict) -> str:
  """Name of the highest ``conv<i>_act`` (4-D) activation among a network's sown intermediates."""
  names = [k for k, v in intermediates.items() if re.fullmatch(r'conv\d+_act', k) and jnp.ndim(v[0]) == 4]
  if not names:
    raise ValueError(f'no convolutional activations among {sorted(intermediates)}')
  return max(names, key=_natural)


def layer_fn(module, layer: str, **kwargs) -> Callable:
  """``f(variables, x, *extra) -> activation '<layer>'`` of a Flax module that sows its intermediates.

  ``kwargs`` go to the module call (default ``train=False``: running batchnorm statistics)."""
  kwargs = {'train': False, **kwargs}

  def f(variables, x, *extra):
    _, col = module.apply(variables, x, *extra, mutable=['intermediates'], **kwargs)
    if layer not in col['intermediates']:
      raise ValueError(f'--layer={layer}: {type(module).__name__} has no such layer; choose one of '
                       f'{", ".join(col["intermediates"])}')
    return col['intermediates'][layer][0]
  return f


def max_responses(acts, maps: Sequence[int]):
  """For each map c: ``(image, row, col, value)`` of the largest ``acts[n, i, j, c]``; acts is [N, H, W, C]."""
  a = jnp.asarray(acts)[..., jnp.asarray(maps)]                 # [N, H, W, M]
  n, h, w, m = a.shape
  flat = jnp.moveaxis(a, -1, 0).reshape(m, -1)
  best = jnp.argmax(flat, axis=1)
  b, rest = jnp.divmod(best, h * w)
  i, j = jnp.divmod(rest, w)
  return b, i, j, jnp.take_along_axis(flat, best[:, None], 1)[:, 0]


def unit_gradients(f: Callable, variables, x, units, *extra, use_guided: bool = True):
  """Gradient of single units of ``f(variables, x)`` (an [N, H, W, C] activation) w.r.t. the input images.

  ``x``: [M, ...] one input image per unit; ``units``: (rows, cols, maps), each [M]; ``extra``: per-unit
  extra inputs (e.g. labels, [M]). Returns [M, ...] like x. ``use_guided``: guided backpropagation
  (:func:`guided`) or plain gradients.
  """
  g = guided(f) if use_guided else f

  def one(xi, i, j, c, *ei):
    def unit(xi):
      return g(variables, xi[None], *[e[None] for e in ei])[0, i, j, c]
    return jax.grad(unit)(xi)

  return jax.vmap(one)(x, *units, *extra)


def maximal_response_backprop(module, variables, images, maps: Sequence[int], *, labels=None,
                              layer: Optional[str] = None, use_guided: bool = True) -> dict:
  """DCGAN Figure 5: guided backpropagation of each map's maximal response over ``images``.

  ``module`` is a discriminator-like Flax module sowing ``conv<i>_act`` (called as ``module(x[, labels],
  train=False)``); ``layer`` defaults to its last convolutional layer. Returns a dict of numpy arrays:
  ``gradients`` [M, H, W, C] (input-space), ``image`` / ``row`` / ``col`` / ``value`` [M] (where each map
  responds most), and ``layer``.
  """
  extra = () if labels is None else (jnp.asarray(labels),)
  images = jnp.asarray(images)
  if layer is None:
    _, col = module.apply(variables, images[:1], *[e[:1] for e in extra], train=False, mutable=['intermediates'])
    layer = last_conv_layer(col['intermediates'])
  f = layer_fn(module, layer)
  maps = [int(m) for m in maps]

  @jax.jit
  def run(variables, images, *extra):
    acts = f(variables, images, *extra)
    if max(maps) >= acts.shape[-1]:
      raise ValueError(f'layer {layer} has {acts.shape[-1]} maps; asked for map {max(maps)}')
    b, i, j, v = max_responses(acts, maps)
    grads = unit_gradients(f, variables, images[b], (i, j, jnp.asarray(maps)), *[e[b] for e in extra],
                           use_guided=use_guided)
    return grads, b, i, j, v

  grads, b, i, j, v = jax.device_get(run(variables, images, *extra))
  return {'gradients': grads, 'image': b, 'row': i, 'col': j, 'value': v, 'layer': layer}


def gradient_images(grads) -> np.ndarray:
  """Gradients -> displayable images in [-1, 1]: each divided by its largest magnitude (0 -> mid grey)."""
  g = np.asarray(grads, np.float32)
  m = np.abs(g).reshape(len(g), -1).max(axis=1).reshape((-1,) + (1,) * (g.ndim - 1))
  return g / np.maximum(m, 1e-12)


# -- filters -----------------------------------------------------------------------------------------------


def _scale_tiles(t) -> np.ndarray:
  """Each tile to [-1, 1] by its own min and max."""
  t = np.asarray(t, np.float32)
  axes = tuple(range(1, t.ndim))
  lo, hi = t.min(axis=axes, keepdims=True), t.max(axis=axes, keepdims=True)
  return 2.0 * (t - lo) / np.maximum(hi - lo, 1e-12) - 1.0


def filter_tiles(kernel, *, transposed: bool = False, channels: Optional[int] = None,
                 resolution: Optional[int] = None) -> np.ndarray:
  """A first (or output) layer's kernel as image tiles [T, h, w, C] in [-1, 1] (module docstring).

  ``kernel``: conv ``(k, k, Cin, F)`` -> F tiles (only the first ``channels`` input channels are shown: a
  conditional D's label channels are left out); ``transposed`` (G's output layer, ``(k, k, Cin, C)``) ->
  Cin tiles, flipped in space; dense ``(R*R*C, F)`` -> F tiles of ``R x R x C`` (needs ``resolution`` or a
  square), dense ``transposed`` ``(F, R*R*C)`` -> F tiles.
  """
  k = np.asarray(kernel, np.float32)
  if k.ndim == 4:
    if transposed:
      t = np.transpose(k[::-1, ::-1], (2, 0, 1, 3))           # (Cin, k, k, C)
    else:
      t = np.transpose(k[:, :, :channels or k.shape[2]], (3, 0, 1, 2))   # (F, k, k, C)
  elif k.ndim == 2:
    t = k if transposed else k.T                               # (F, R*R*C)
    c = channels or 1
    r = resolution or int(round(np.sqrt(t.shape[1] // c)))
    if r * r * c > t.shape[1]:
      raise ValueError(f'a dense kernel of {t.shape[1]} inputs does not hold {r}x{r}x{c} images')
    t = t[:, :r * r * c].reshape(-1, r, r, c)
  else:
    raise ValueError(f'expected a 2-D or 4-D kernel, got shape {k.shape}')
  return _scale_tiles(t)


def _kernels(tree, prefix=()):
  """(path, array) of every 'kernel' leaf of a params tree, in natural order of the path names."""
  out = []
  for name, sub in (tree or {}).items():
    if isinstance(sub, dict) or hasattr(sub, 'items'):
      out += _kernels(sub, prefix + (str(name),))
    elif str(name) == 'kernel':
      out.append(('/'.join(prefix), sub))
  return sorted(out, key=lambda p: _natural(p[0]))


def first_layer_kernel(params, channels: int, *, output: bool = False, resolution: Optional[int] = None):
  """``(path, kernel)`` of the layer that sees the image (or, ``output=True``, that makes it) in a params
  tree: the first (last) conv kernel whose input (output) channels match the image's ``channels`` (label
  channels of a conditional D allowed), or else a dense kernel of ``resolution**2 * channels`` inputs
  (outputs). ``None`` if there is none."""
  found = []
  for path, k in _kernels(params):
    shape = np.shape(k)
    if len(shape) == 4:
      ok = shape[3] == channels if output else shape[2] >= channels and 'z' not in path.split('/')[-1]
    elif len(shape) == 2 and resolution:
      ok = shape[1 if output else 0] == resolution * resolution * channels
    else:
      ok = False
    if ok:
      found.append((path, k))
  convs = [f for f in found if np.ndim(f[1]) == 4]
  found = convs or found            # a conv net's dense projection may match the image size by chance
  if not found:
    return None
  return found[-1] if output else found[0]


def network_filters(params: dict, channels: int, resolution: Optional[int] = None) -> dict:
  """Filter tiles of every network present in ``state.params``-like ``params``: 'D' and 'E' by their first
  layer, 'G' by its output layer. Returns {name: (layer path, tiles [T, h, w, C])}."""
  out = {}
  for name in ('D', 'G', 'E'):
    if name not in params:
      continue
    out_layer = name == 'G'
    hit = first_layer_kernel(params[name], channels, output=out_layer, resolution=resolution)
    if hit is None:
      continue
    path, k = hit
    if np.ndim(k) == 4 and out_layer:
      tiles = filter_tiles(k, transposed=True)
    elif np.ndim(k) == 2:
      tiles = filter_tiles(k, transposed=out_layer, channels=channels, resolution=resolution)
    else:
      tiles = filter_tiles(k, channels=channels)
    out[name] = (path, tiles)
  return out


# -- pictures ----------------------------------------------------------------------------------------------


def _font(size: int):
  from PIL import ImageFont
  try:
    return ImageFont.load_default(size=size)
  except TypeError:          # Pillow < 10.1: a fixed bitmap font
    return ImageFont.load_default()


def upscale(array: np.ndarray, scale: int) -> np.ndarray:
  """Nearest-neighbour upscaling of an HxWxC uint8 array."""
  return np.repeat(np.repeat(array, scale, axis=0), scale, axis=1) if scale > 1 else array


def to_rgb(array: np.ndarray) -> np.ndarray:
  return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array


def caption(array: np.ndarray, text: str, size: int = 12) -> np.ndarray:
  """A white band with ``text`` above an HxWxC uint8 picture (returned as RGB)."""
  from PIL import Image, ImageDraw
  a = to_rgb(array)
  font = _font(size)
  width = max(a.shape[1], int(ImageDraw.Draw(Image.new('RGB', (1, 1))).textlength(text, font=font)) + 6)
  band = Image.new('RGB', (width, size + 6), (255, 255, 255))
  ImageDraw.Draw(band).text((3, 2), text, fill=(0, 0, 0), font=font)
  a = np.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0)), constant_values=255)
  return np.concatenate([np.asarray(band), a], axis=0)


def stack(panels: Sequence[np.ndarray], axis: int = 0, gap: int = 6) -> np.ndarray:
  """Pictures (uint8 HxWx{1,3}) placed below (axis 0) or beside (axis 1) each other on white."""
  panels = [to_rgb(p) for p in panels]
  other = 1 - axis
  size = max(p.shape[other] for p in panels)
  parts = []
  for k, p in enumerate(panels):
    pad = [(0, 0), (0, 0), (0, 0)]
    pad[other] = (0, size - p.shape[other])
    parts.append(np.pad(p, pad, constant_values=255))
    if k + 1 < len(panels) and gap:
      shape = [0, 0, 3]
      shape[axis], shape[other] = gap, size
      parts.append(np.full(shape, 255, np.uint8))
  return np.concatenate(parts, axis=axis)


def draw_numbers(sheet: np.ndarray, n: int, cell: int, ncol: int, pad: int, start: int = 0,
                 size: Optional[int] = None) -> np.ndarray:
  """Writes the number of each cell (``start``, ``start + 1``, ...) in its top-left corner, white on a dark
  box, on a grid of ``n`` cells of ``cell`` pixels with ``pad`` pixels between them (as ``images.grid``
  makes, after upscaling both by the same factor). Returns RGB uint8."""
  from PIL import Image, ImageDraw
  img = Image.fromarray(to_rgb(sheet))
  draw = ImageDraw.Draw(img)
  font = _font(size or max(8, cell // 5))
  for k in range(n):
    r, q = divmod(k, ncol)
    x, y = pad + q * (cell + pad), pad + r * (cell + pad)
    text = str(start + k)
    box = draw.textbbox((x + 1, y), text, font=font)
    draw.rectangle((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1), fill=(0, 0, 0))
    draw.text((x + 1, y), text, fill=(255, 255, 255), font=font)
  return np.asarray(img)


def guided_backprop_figure(trained: dict, random: dict, images) -> np.ndarray:
  """Figure 5 as one picture: for each chosen map (columns), the real image where it responds most and its
  guided backpropagation, for the trained D (top two rows) and a random D (bottom two rows). Optional keys
  of ``trained``: 'maps' (numbers shown), 'net' (name shown, default 'D')."""
  imgs = np.asarray(images)
  m = len(trained['gradients'])
  h = imgs.shape[1]
  scale = max(1, 64 // h)
  rows = []
  net = trained.get('net', 'D')
  for name, r in ((f'trained {net}', trained), (f'random {net} (baseline)', random)):
    x = np.concatenate([imgs[r['image']], gradient_images(r['gradients'])], axis=0)
    rows.append(caption(upscale(im.grid(x, ncol=m), scale), f'{name}: {r["layer"]}, maps '
                        f'{",".join(map(str, r.get("maps", range(m))))} (top: image, bottom: guided backprop)'))
  return stack(rows)


def filters_figure(filters: dict, scale: Optional[int] = None, ncol: int = 16) -> np.ndarray:
  """BiGAN Figure 3 as one picture: the tiles of each network from :func:`network_filters`, captioned."""
  panels = []
  for name, (path, tiles) in filters.items():
    s = scale or max(1, 32 // tiles.shape[1])
    what = 'output layer' if name == 'G' else 'first layer'
    panels.append(caption(upscale(im.grid(tiles, ncol=min(ncol, len(tiles)), pad=1), s),
                          f'{name} {what} ({path}): {len(tiles)} filters'))
  if not panels:
    raise ValueError('no filters found')
  return stack(panels)


# -- the command line's picture --------------------------------------------------------------------------


def _real_images(model, config, n, split):
  d = config.data
  source, _ = data.open_source(d.dataset, split, data_dir=d.data_dir, manual_dir=d.manual_dir)
  opts = model.data_options(eval=True)
  n = min(n, len(source))
  with data.Batches(source, global_batch=n, seed=0, prefetch=0, cache=False, **opts) as it:
    return next(it)


def make_picture(a) -> str:
  """``launch/visualize.py``: the picture ``a.what`` ('guided_backprop' or 'filters') of the run in ``a.workdir``,
  with the command line's other fields; returns the PNG's path."""
  model, state, config = checkpoint.load(a.workdir, a.step)
  state = parallel.on_one_device(state)
  out = a.out or os.path.join(a.workdir, f'{a.what}.png')
  if a.what == 'filters':
    filters = network_filters(jax.device_get(state.params), model.channels, model.resolution)
    im.save_png(filters_figure(filters), out)
    print('filters: ' + ', '.join(f'{k} {p} ({len(t)})' for k, (p, t) in filters.items()))
  else:
    if a.net not in model.feature_nets:
      other = [n for n in model.feature_nets if n != a.net]
      raise ValueError(f'--model={config.model.name} has no {a.net} that sees images alone (a BiGAN D sees (x, z)): '
                       + (f'use --net={other[0]}' if other else 'nothing to visualise'))
    net = model.networks()[a.net]
    batch = _real_images(model, config, a.num_images, a.split)
    x = jnp.asarray(batch['image'])
    size = model.resolution if a.net == 'D' else model.config.bigan.encoder_resolution
    x = im.resize(x, size)
    labels = batch['label'] if a.net == 'D' and model.conditional else None
    trained = maximal_response_backprop(net, state.variables(a.net), x, a.maps, labels=labels,
                                                  layer=a.layer)
    init_args = (x[:2],) if labels is None else (x[:2], jnp.asarray(labels[:2]))
    random_vars = net.init(jax.random.PRNGKey(a.seed), *init_args, train=False)
    random = maximal_response_backprop(net, random_vars, x, a.maps, labels=labels, layer=a.layer)
    for r in (trained, random):
      r['maps'], r['net'] = a.maps, a.net
    im.save_png(guided_backprop_figure(trained, random, x), out)
    print(f"{trained['layer']}: maximal responses {', '.join(f'{v:.3g}' for v in trained['value'])} (trained), "
          f"{', '.join(f'{v:.3g}' for v in random['value'])} (random)")
  print(f'wrote {out}')
  return out
