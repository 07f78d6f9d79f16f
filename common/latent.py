"""Latent-space interpolation (DCGAN section 6.1: walking in the latent space)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def lerp(z0, z1, t):
  return (1.0 - t) * z0 + t * z1


def slerp(z0, z1, t, eps: float = 1e-7):
  """Spherical interpolation; falls back to linear when the two points are (anti)parallel."""
  n0 = z0 / (jnp.linalg.norm(z0, axis=-1, keepdims=True) + eps)
  n1 = z1 / (jnp.linalg.norm(z1, axis=-1, keepdims=True) + eps)
  omega = jnp.arccos(jnp.clip(jnp.sum(n0 * n1, axis=-1, keepdims=True), -1.0, 1.0))
  so = jnp.sin(omega)
  safe = so > 1e-4
  so = jnp.where(safe, so, 1.0)
  s = jnp.where(safe, jnp.sin((1.0 - t) * omega) / so * z0 + jnp.sin(t * omega) / so * z1, lerp(z0, z1, t))
  return s


def interpolate(z0, z1, steps: int, method: str = 'linear'):
  """Points from z0 to z1 inclusive: [steps, ...]. ``method`` is 'linear' or 'spherical'."""
  if method not in ('linear', 'spherical'):
    raise ValueError(f"unknown interpolation {method!r}: use 'linear' or 'spherical'")
  t = jnp.linspace(0.0, 1.0, steps)[:, None]
  f = lerp if method == 'linear' else slerp
  return jax.vmap(lambda ti: f(z0, z1, ti))(t)


def walk_sheet(key, rows: int, steps: int, z_dim: int, method: str = 'linear'):
  """Latents for a sheet of ``rows`` walks between random points of U(-1, 1)^z_dim: [rows * steps, z_dim]."""
  ends = jax.random.uniform(key, (rows, 2, z_dim), minval=-1.0, maxval=1.0)
  return jnp.concatenate([interpolate(e[0], e[1], steps, method) for e in ends], axis=0)
