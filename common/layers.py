"""Stride-2 (de)convolution layers that avoid XLA:CPU's slow convolution gradients.

Why this module exists
----------------------
On XLA:CPU, gradients of stride-2 transposed convolutions
(``lax.conv_transpose`` = a convolution with ``lhs_dilation=2``) are lowered to
convolutions with ``rhs_dilation``/``rhs_reversal`` in a non-canonical layout,
which XLA:CPU runs with a naive loop instead of its fast (YNNPACK/Eigen)
convolution: at DCGAN sizes (B=64) forward+backward is 10-50x the forward, and
for a 4x4 input even the forward takes about a minute. The *input* gradient of
a stride-2 downsampling conv hits the same path when the output is tiny
(8x8 -> 4x4 in a DCGAN discriminator: ~25 s vs ~0.3 s forward).

:class:`ConvTranspose2x` computes *exactly* the same function as::

    nn.ConvTranspose(features, (k, k), strides=(2, 2), padding='SAME')

and :class:`Conv2x` the same as::

    nn.Conv(features, (k, k), strides=(2, 2), padding='SAME')

with the same parameters ('kernel' ``(k, k, Cin, features)``, 'bias'
``(features,)``, same initialisers and creation order), so checkpoints are
interchangeable between the implementations and with the plain Flax layers.

Formulations
------------
``ConvTranspose2x(impl='subpixel')``: with ``P`` the low padding lax uses for
stride 2 / 'SAME' (``ceil(k/2)`` for ``k >= 3``), output ``o = 2m + a`` is
``sum_d x[m + d] * w[2d + P - a]`` (no kernel flip), i.e. each of the four
output phases ``(a_y, a_x)`` is a small *stride-1* correlation of the
un-dilated input with a strided slice of the kernel. Two exact variants:

* ``'phase'``: four stride-1 convs (exactly the FLOPs of the transposed conv),
  stacked and interleaved (depth-to-space).
* ``'fused'``: ONE stride-1 conv with a ``win x win x Cin x 4F`` kernel built
  from the 'kernel' parameter by a static gather (zeros where a phase has no
  tap; 1.44x the FLOPs for k=5, 2.25x for k=4), then depth-to-space.

``variant='auto'`` (what the module uses) picks 'fused' for ``F < 16``
output features (e.g. the image layer; per-phase GEMMs are too narrow there)
and 'phase' otherwise; see :func:`subpixel_variant`. Everything involved
(stride-1 'SAME'-like convs and their gradients, slicing/gather,
transpose/reshape) runs on XLA:CPU's fast paths. (Grouping even-kernel phases
as output pairs ``(2m-1, 2m)`` would shrink the fused window, but needs a conv
whose output is larger than its input, whose weight gradient again hits the
slow path - avoided on purpose.)

``Conv2x(impl='subpixel')``: the forward pass and the weight gradient are
XLA's own strided convolution (both fast on CPU); only the input gradient,
which is a stride-2 transposed conv of the output cotangent with the flipped,
in/out-swapped kernel, is computed with the sub-pixel formulation above
(``jax.custom_vjp``: reverse mode only, grad-of-grad such as gradient
penalties works, ``jax.jvp``/``jacfwd`` through this layer do not).
Space-to-depth + stride-1 conv and a 4-phase polyphase sum were also tried and
were slower than XLA's strided conv for forward and backward on XLA:CPU.

``impl='auto'`` (the default) is decided per *lowering platform*, not at
trace time: :func:`jax.lax.platform_dependent` stages both forms (a ``cond``
on ``platform_index``) and lowering keeps one branch: the CPU form
('subpixel'; 'split' / 'slices' for :func:`grouped_conv` / :func:`max_pool`;
measured in ``benchmarks/``) for CPU, XLA's native op for CUDA, ROCm and TPU,
where cuDNN / the TPU emitter run lhs-dilated (transposed) and strided convs
and their gradients natively and the sub-pixel forms would only add layout
shuffles (and, for 'fused', zero-tap FLOPs). A step traced on one machine and
run or exported (``jax.export``) for another platform thus gets that
platform's form; a multi-platform export holds both and picks at compile time.
Autodiff goes through the ``cond``: the CPU branch keeps Conv2x's custom_vjp,
the other branch is plain ``lax`` with JAX's own gradients. On XLA:CPU the
optimised HLO of a train step equals the 'subpixel' one (the kept branch is
inlined, the other branch's zero residuals are removed); tracing does both
branches, and since the custom_vjp branch is always traced,
``Conv2x(impl='auto')`` is reverse-mode only on every platform (``impl='xla'``
for ``jax.jvp``). CPU forms run under ``jax.named_scope`` (:data:`SCOPES`),
which shows in StableHLO / HLO locations and profiles. An explicit ``impl`` applies on
every platform; :func:`backend_default_impl` says what 'auto' becomes on one.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.linen.dtypes import promote_dtype
from jax import lax

__all__ = [
    'ConvTranspose2x',
    'Conv2x',
    'CPU_FAST_PLATFORMS',
    'SCOPES',
    'backend_default_impl',
    'subpixel_variant',
    'conv_transpose_2x_xla',
    'conv_transpose_2x_subpixel',
    'conv_2x_xla',
    'conv_2x_subpixel',
    'GroupedConv',
    'grouped_conv',
    'max_pool',
]

_DN = ('NHWC', 'HWIO', 'NHWC')

SCOPES = {'subpixel': 'cpu_subpixel', 'split': 'cpu_split_groups', 'slices': 'cpu_pool_slices'}
"""``jax.named_scope`` around each CPU form: its ops carry the name in StableHLO locations (and profiles)."""


def _scoped(name):
  """Decorator: runs the function under ``jax.named_scope(name)``."""
  def deco(fn):
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
      with jax.named_scope(name):
        return fn(*args, **kwargs)
    return wrapped
  return deco


CPU_FAST_PLATFORMS = ('cpu',)
"""Lowering platforms on which ``impl='auto'`` uses a layer's CPU-fast form (XLA's native op elsewhere)."""


def backend_default_impl(backend: str | None = None) -> str:
  """What ``impl='auto'`` lowers to on ``backend``: 'subpixel' on CPU, 'xla' elsewhere.

  ``backend`` defaults to ``jax.default_backend()``. Informational: 'auto' itself is resolved per lowering
  platform by :func:`jax.lax.platform_dependent`, not by this function.
  """
  backend = backend or jax.default_backend()
  return 'subpixel' if backend in CPU_FAST_PLATFORMS else 'xla'


def _check_impl(impl: str, cpu_form: str) -> str:
  allowed = ('auto', cpu_form, 'xla')
  if impl not in allowed:
    raise ValueError(f'impl must be one of {allowed}, got {impl!r}')
  return impl


def _dispatch(impl: str, cpu_form: str, cpu_fn, xla_fn, *args):
  """``cpu_fn(*args)`` for ``impl=cpu_form``, ``xla_fn(*args)`` for 'xla'; 'auto' stages both.

  'auto' is ``lax.platform_dependent(*args, cpu=cpu_fn, default=xla_fn)``: both branches are traced (and
  differentiated: a ``cond`` whose transforms keep the platform choice), and lowering for a platform keeps
  only that platform's branch, so one traced or exported program runs the CPU form on CPU and XLA's native
  op on CUDA / ROCm / TPU, wherever it was traced. ``args`` are arrays; bind static options into the
  callables.
  """
  impl = _check_impl(impl, cpu_form)
  if impl == 'xla':
    return xla_fn(*args)
  if impl == cpu_form:
    return cpu_fn(*args)
  return lax.platform_dependent(*args, default=xla_fn, **{p: cpu_fn for p in CPU_FAST_PLATFORMS})


# --------------------------------------------------------------------------
# Transposed convolution (upsampling by 2)
# --------------------------------------------------------------------------


def _transpose_same_pad_lo(k: int) -> int:
  """Low-side padding lax.conv_transpose uses for stride 2, 'SAME' (per dim).

  Mirrors ``jax._src.lax.convolution._conv_transpose_padding``: the transposed
  conv is a stride-1 correlation (no kernel flip) of the 2x zero-dilated input
  padded by ``(pad_lo, k - pad_lo)``; ``pad_lo = k - 1`` if ``k < 3`` else
  ``ceil(k / 2)``. The output length is ``2 * n``.
  """
  s = 2
  if s > k - 1:
    return k - 1
  return -(-(k + s - 2) // 2)


def _phase_taps(k: int, a: int):
  """Input offsets ``d`` and taps ``t`` feeding output phase ``a`` (one axis).

  Output ``o = 2m + a`` is ``sum_d x[m + d] * w[2d + pad_lo - a]`` over the
  ``d`` whose tap lies in ``[0, k)``. Returns ``(d_min, d_max, t_min)``; the
  taps are ``t_min, t_min + 2, ...`` (empty when ``d_min > d_max``, k == 1).
  """
  p = _transpose_same_pad_lo(k)
  d_min = -((p - a) // 2)            # ceil((a - p) / 2)
  d_max = (k - 1 + a - p) // 2
  return d_min, d_max, 2 * d_min + p - a


def _fused_plan(k: int):
  """Window of the fused conv along one axis: offsets ``[lo, hi]`` and taps.

  ``idx[j, a]`` is the tap used by window position ``j`` (offset ``lo + j``)
  for output phase ``a``; ``k`` marks "no tap" (indexes an appended zero row).
  The conv padding is ``(-lo, hi)``, i.e. ``win - 1`` in total, so the output
  has the input's spatial size (a 'SAME'-like stride-1 conv).
  """
  ranges = [_phase_taps(k, a) for a in (0, 1)]
  lo = min(r[0] for r in ranges)
  hi = max(r[1] for r in ranges)
  p = _transpose_same_pad_lo(k)
  idx = np.full((hi - lo + 1, 2), k, dtype=np.int32)
  for j in range(hi - lo + 1):
    for a in (0, 1):
      t = 2 * (lo + j) + p - a
      if 0 <= t < k:
        idx[j, a] = t
  return lo, hi, idx


def subpixel_kernel(kernel: jax.Array) -> jax.Array:
  """Rearranges a ``(kh, kw, Cin, F)`` ConvTranspose kernel for the fused conv.

  Returns ``(win_h, win_w, Cin, 4 * F)``; output channel ``(a_y * 2 + a_x) * F
  + f`` is output phase ``(a_y, a_x)`` of feature ``f``. Differentiable (a
  gather with static indices; its transpose is a tiny scatter-add).
  """
  kh, kw, cin, f = kernel.shape
  _, _, iy = _fused_plan(kh)
  _, _, ix = _fused_plan(kw)
  kp = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
  g = kp[iy[:, None, :, None], ix[None, :, None, :]]   # (wh, ww, 2, 2, Cin, F)
  g = jnp.transpose(g, (0, 1, 4, 2, 3, 5))
  return g.reshape(iy.shape[0], ix.shape[0], cin, 4 * f)


def _depth_to_space(y, f):
  """``(B, H, W, 2*2*F)`` with channel order ``(a_y, a_x, f)`` -> ``(B, 2H, 2W, F)``."""
  b, h, w, _ = y.shape
  y = y.reshape(b, h, w, 2, 2, f)
  return jnp.transpose(y, (0, 1, 3, 2, 4, 5)).reshape(b, 2 * h, 2 * w, f)


def conv_transpose_2x_xla(x, kernel, precision=None):
  """``lax.conv_transpose(x, kernel, (2, 2), 'SAME')`` (what nn.ConvTranspose does)."""
  return lax.conv_transpose(
      x, kernel, (2, 2), 'SAME', dimension_numbers=_DN, precision=precision)


def subpixel_variant(features: int) -> str:
  """Heuristic used by ``variant='auto'``, measured on XLA:CPU (2 cores).

  'phase' (four exact-FLOP convs) wins forward+backward for ``F >= 16``
  output features (1.2-2x over 'fused' at DCGAN sizes); 'fused' (one conv
  with ``4F`` outputs and up to 2.25x zero-tap FLOPs) wins for very narrow
  outputs such as the RGB / grey-scale image layer (up to 3x for F = 1..3;
  about even at F = 8), where per-phase GEMMs with only ``F`` columns are
  inefficient.
  """
  return 'phase' if features >= 16 else 'fused'


@_scoped(SCOPES['subpixel'])
def conv_transpose_2x_subpixel(x, kernel, precision=None, variant='auto'):
  """Exact equivalent of :func:`conv_transpose_2x_xla` via stride-1 convs.

  ``x``: ``(B, H, W, Cin)``; ``kernel``: ``(kh, kw, Cin, F)``. Returns
  ``(B, 2H, 2W, F)``. ``variant``: 'fused' (one conv with the
  :func:`subpixel_kernel`, ``4F`` outputs), 'phase' (one exact conv per output
  phase, each with a strided slice of ``kernel``), or 'auto'
  (:func:`subpixel_variant`). Both end in the same depth-to-space interleave.
  """
  kh, kw, _, f = kernel.shape
  b, h, w, _ = x.shape
  if variant == 'auto':
    variant = subpixel_variant(f)
  if variant == 'fused':
    loy, hiy, _ = _fused_plan(kh)
    lox, hix, _ = _fused_plan(kw)
    y = lax.conv_general_dilated(
        x, subpixel_kernel(kernel), (1, 1), ((-loy, hiy), (-lox, hix)),
        dimension_numbers=_DN, precision=precision)
    return _depth_to_space(y, f)
  if variant != 'phase':
    raise ValueError(f'unknown subpixel variant {variant!r}')
  phases = []
  for ay in (0, 1):
    y0, y1, ty = _phase_taps(kh, ay)
    for ax in (0, 1):
      x0, x1, tx = _phase_taps(kw, ax)
      if y0 > y1 or x0 > x1:      # no taps (k == 1): this phase is all zeros
        dt = jnp.result_type(x, kernel)
        phases.append(jnp.zeros((b, h, w, f), dt))
        continue
      k_phase = kernel[ty:ty + 2 * (y1 - y0) + 1:2, tx:tx + 2 * (x1 - x0) + 1:2]
      phases.append(lax.conv_general_dilated(
          x, k_phase, (1, 1), ((-y0, y1), (-x0, x1)),
          dimension_numbers=_DN, precision=precision))
  y = jnp.stack(phases, axis=3)          # (B, H, W, 4, F), phase order (ay, ax)
  return _depth_to_space(y.reshape(b, h, w, 4 * f), f)


def _flatten_batch(inputs, n_spatial=2):
  """Flax-style batch handling: any number of batch dims (including none)."""
  nb = inputs.ndim - (n_spatial + 1)
  if nb == 1:
    return inputs, lambda y: y
  batch_shape = inputs.shape[:nb]
  flat = jnp.reshape(inputs, (-1,) + inputs.shape[nb:])
  return flat, lambda y: jnp.reshape(y, batch_shape + y.shape[1:])


class _Stride2Conv(nn.Module):
  """Shared fields / parameter creation (mirrors flax.linen.linear)."""

  features: int
  kernel_size: int | tuple[int, int] = 5
  use_bias: bool = True
  kernel_init: Any = nn.initializers.normal(0.02)
  bias_init: Any = nn.initializers.zeros_init()
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None
  impl: str = 'auto'

  def _op(self, inputs, kernel):
    raise NotImplementedError

  @nn.compact
  def __call__(self, inputs):
    ks = self.kernel_size
    kh, kw = (ks, ks) if isinstance(ks, int) else tuple(ks)
    inputs, restore = _flatten_batch(inputs)
    cin = jnp.shape(inputs)[-1]
    # Same names, shapes, dtypes and creation order as nn.ConvTranspose /
    # nn.Conv, hence identical parameters for the same init rng.
    kernel = self.param('kernel', self.kernel_init, (kh, kw, cin, self.features),
                        self.param_dtype)
    bias = (self.param('bias', self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    inputs, kernel, bias = promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    y = self._op(inputs, kernel)
    if bias is not None:
      y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
    return restore(y)


class ConvTranspose2x(_Stride2Conv):
  """2x upsampling; exactly ``nn.ConvTranspose(features, (k, k), strides=(2, 2), padding='SAME')``.

  Attributes:
    features: output channels.
    kernel_size: ``k`` or ``(kh, kw)``, any size >= 1 (DCGAN uses 4 or 5).
    use_bias, kernel_init, bias_init, param_dtype, precision: as in Flax
      (note the DCGAN default ``kernel_init=normal(0.02)``, not Flax's).
    dtype: compute dtype (e.g. ``jnp.bfloat16``), promoted like Flax does;
      parameters stay ``param_dtype`` (float32).
    impl: 'xla' (``lax.conv_transpose``, Flax's math), 'subpixel' (stride-1
      phase convs + depth-to-space, see module docstring) or 'auto'
      ('subpixel' when lowered for CPU, 'xla' for GPU/TPU; module docstring).

  Input ``(..., H, W, Cin)`` -> output ``(..., 2H, 2W, features)``; parameters
  'kernel' ``(k, k, Cin, features)`` and 'bias' ``(features,)``.
  """

  def _op(self, inputs, kernel):
    return _dispatch(self.impl, 'subpixel',
                     functools.partial(conv_transpose_2x_subpixel, precision=self.precision),
                     functools.partial(conv_transpose_2x_xla, precision=self.precision), inputs, kernel)


# --------------------------------------------------------------------------
# Strided convolution (downsampling by 2)
# --------------------------------------------------------------------------


def _conv_same_pads(n: int, k: int, s: int = 2):
  """'SAME' padding of lax.conv_general_dilated (``lax.padtype_to_pads``)."""
  out = -(-n // s)
  total = max((out - 1) * s + k - n, 0)
  return out, total // 2, total - total // 2


def conv_2x_xla(x, kernel, precision=None):
  """``lax.conv_general_dilated(x, kernel, (2, 2), 'SAME')`` (what nn.Conv does)."""
  return lax.conv_general_dilated(
      x, kernel, (2, 2), 'SAME', dimension_numbers=_DN, precision=precision)


def _conv_2x_dx(dy, kernel, in_hw, precision):
  """Input gradient of :func:`conv_2x_xla` via the sub-pixel transposed conv.

  With forward SAME low pad ``lo``, ``dx[n] = sum_{2m + t = n + lo} dy[m] w[t]``,
  which is ``Y[n + lo + P - k + 1]`` for ``Y = conv_transpose_2x(dy, w')``,
  ``w' = flip(kernel)`` with in/out channels swapped and ``P`` the transposed
  conv's SAME low pad; ``Y`` (length ``2 * out``) is cropped / zero-extended to
  the input size.
  """
  kh, kw = kernel.shape[:2]
  wt = jnp.swapaxes(jnp.flip(kernel, (0, 1)), 2, 3)
  y = conv_transpose_2x_subpixel(dy, wt, precision)
  cfg = []
  for n, k, yl in ((in_hw[0], kh, y.shape[1]), (in_hw[1], kw, y.shape[2])):
    _, lo, _ = _conv_same_pads(n, k)
    delta = lo + _transpose_same_pad_lo(k) - k + 1
    cfg.append((-delta, n + delta - yl, 0))
  return lax.pad(y, jnp.zeros((), y.dtype), ((0, 0, 0), cfg[0], cfg[1], (0, 0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_2x_subpixel(x, kernel, precision=None):
  """Exact :func:`conv_2x_xla`: XLA forward and dW, sub-pixel input gradient.

  A ``jax.custom_vjp`` function: reverse mode (incl. grad-of-grad) only, no
  ``jax.jvp``.
  """
  return conv_2x_xla(x, kernel, precision)


def _conv_2x_subpixel_fwd(x, kernel, precision):
  return conv_2x_xla(x, kernel, precision), (x, kernel)


def _conv_2x_subpixel_bwd(precision, res, dy):
  x, kernel = res
  _, vjp_w = jax.vjp(lambda w: conv_2x_xla(x, w, precision), kernel)
  (dw,) = vjp_w(dy)
  dx = _conv_2x_dx(dy, kernel, x.shape[1:3], precision)
  return dx.astype(x.dtype), dw.astype(kernel.dtype)


conv_2x_subpixel.defvjp(_conv_2x_subpixel_fwd, _conv_2x_subpixel_bwd)


class Conv2x(_Stride2Conv):
  """2x downsampling; exactly ``nn.Conv(features, (k, k), strides=(2, 2), padding='SAME')``.

  Same attributes as :class:`ConvTranspose2x`. ``impl``: 'xla' (strided
  ``lax.conv_general_dilated``, Flax's math), 'subpixel' (same forward, input
  gradient via the sub-pixel transposed conv; ``jax.custom_vjp``, so
  reverse-mode only) or 'auto' ('subpixel' when lowered for CPU, 'xla' for GPU/TPU;
  reverse-mode only too, as both branches are traced).

  Input ``(..., H, W, Cin)`` -> output ``(..., ceil(H/2), ceil(W/2), features)``.
  """

  def _op(self, inputs, kernel):
    return _dispatch(self.impl, 'subpixel',
                     functools.partial(conv_2x_subpixel, precision=self.precision),
                     functools.partial(conv_2x_xla, precision=self.precision), inputs, kernel)


# --------------------------------------------------------------------------
# Grouped convolution (AlexNet's two filter groups)
# --------------------------------------------------------------------------


def grouped_conv(x, kernel, strides: int, groups: int, impl: str = 'auto', precision=None):
  """``lax.conv_general_dilated(x, kernel, strides, 'SAME', feature_group_count=groups)``.

  ``impl='split'`` (what 'auto' lowers to on CPU) runs one ordinary conv per group on its slice of the input
  channels and of the kernel's output features, then concatenates: the same function, but XLA:CPU's
  gradients of ``feature_group_count > 1`` convs are slow (the AlexNet encoder's fwd+bwd at B=64, 64x64
  took 395 ms grouped, 192 ms with the groups removed, 93 ms in PyTorch).
  """
  conv = functools.partial(lax.conv_general_dilated, window_strides=(strides, strides), padding='SAME',
                           dimension_numbers=_DN, precision=precision)
  _check_impl(impl, 'split')
  if groups == 1:
    return conv(x, kernel)

  def split(x, kernel):
    with jax.named_scope(SCOPES['split']):
      xs, ks = jnp.split(x, groups, axis=-1), jnp.split(kernel, groups, axis=-1)
      return jnp.concatenate([conv(xi, ki) for xi, ki in zip(xs, ks)], axis=-1)
  return _dispatch(impl, 'split', split, functools.partial(conv, feature_group_count=groups), x, kernel)


class GroupedConv(nn.Module):
  """Exactly ``nn.Conv(features, (k, k), strides=(s, s), padding='SAME', use_bias=False,
  feature_group_count=groups)``: the same 'kernel' parameter ``(k, k, Cin / groups, features)`` and init, so
  checkpoints are interchangeable; computed by :func:`grouped_conv` (``impl``: 'auto', 'split' or 'xla')."""
  features: int
  kernel_size: int
  strides: int = 1
  groups: int = 1
  kernel_init: Any = nn.initializers.normal(0.02)
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param('kernel', self.kernel_init, (k, k, x.shape[-1] // self.groups, self.features),
                        self.param_dtype)
    x, kernel = promote_dtype(x, kernel, dtype=self.dtype)
    return grouped_conv(x, kernel, self.strides, self.groups, self.impl, self.precision)


def max_pool(x, window: int = 3, stride: int = 2, impl: str = 'auto'):
  """``nn.max_pool(x, (w, w), strides=(s, s), padding='SAME')`` (NHWC).

  ``impl='slices'`` (what 'auto' lowers to on CPU) takes the elementwise maximum of the ``w * w`` strided views of
  the padded input: the same forward values; the same gradient except where window entries tie exactly (then
  ``jnp.maximum`` shares the gradient, reduce_window's select-and-scatter gives it to one). XLA:CPU's
  select-and-scatter is slow: AlexNet's pool1 gradient (B=64, 16x16x96) 25 ms vs 3 ms.
  """
  def slices(x):
    with jax.named_scope(SCOPES['slices']):
      _, h, w, _ = x.shape
      (oh, th_lo, th_hi), (ow, tw_lo, tw_hi) = _conv_same_pads(h, window, stride), _conv_same_pads(w, window, stride)
      xp = jnp.pad(x, ((0, 0), (th_lo, th_hi), (tw_lo, tw_hi), (0, 0)), constant_values=-jnp.inf)
      views = [xp[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
               for i in range(window) for j in range(window)]
      return functools.reduce(jnp.maximum, views)

  def reduce_window(x):
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding='SAME')
  return _dispatch(impl, 'slices', slices, reduce_window, x)
