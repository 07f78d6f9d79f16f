"""Pieces of the GAN objective both papers use: the uniform prior and the sigmoid cross-entropy."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def sample_z(key, n: int, z_dim: int):
  """z ~ U(-1, 1)^z_dim (DCGAN section 3; BiGAN section 4.2)."""
  return jax.random.uniform(key, (n, z_dim), minval=-1.0, maxval=1.0)


def sample_prior(key, n: int, z_dim: int, prior: str = 'uniform'):
  """z from the prior: 'uniform' U(-1, 1)^z_dim (the papers) or 'normal' N(0, 1)^z_dim (PyTorch's example)."""
  if prior == 'normal':
    return jax.random.normal(key, (n, z_dim))
  if prior != 'uniform':
    raise ValueError(f'unknown --z_prior={prior!r}: use uniform or normal')
  return sample_z(key, n, z_dim)


def lr_schedule(lr: float, steps: int, decay: str, final: float = 0.0):
  """The step size over ``steps`` updates: constant ('none'), held for the first half and then linear to 0
  ('linear', the DCGAN authors' MNIST script) or exponential to ``final`` ('exponential', BiGAN appendix C)."""
  half = steps // 2
  if decay == 'none':
    return optax.constant_schedule(lr)
  if decay == 'linear':
    return optax.join_schedules([optax.constant_schedule(lr),
                                 optax.linear_schedule(lr, 0.0, max(steps - half, 1))], [half])
  if decay == 'exponential':
    return optax.exponential_decay(lr, transition_steps=max(steps - half, 1), decay_rate=final / lr,
                                   transition_begin=half, end_value=final)
  raise ValueError(f'unknown --lr_decay={decay!r}: use none, linear or exponential')


def bce(logits, label: float):
  """Mean sigmoid cross-entropy against a constant label (1 real, 0 fake)."""
  return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)).mean()


def gan_losses(logits_real, logits_fake):
  """(D's loss -log D(x) - log(1 - D(G(z))), G's non-saturating loss -log D(G(z)))."""
  return bce(logits_real, 1.0) + bce(logits_fake, 0.0), bce(logits_fake, 1.0)
