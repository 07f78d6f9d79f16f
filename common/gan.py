"""Pieces of the GAN objective both papers use: the uniform prior and the sigmoid cross-entropy."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def sample_z(key, n: int, z_dim: int):
  """z ~ U(-1, 1)^z_dim (DCGAN section 3; BiGAN section 4.2)."""
  return jax.random.uniform(key, (n, z_dim), minval=-1.0, maxval=1.0)


def bce(logits, label: float):
  """Mean sigmoid cross-entropy against a constant label (1 real, 0 fake)."""
  return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)).mean()


def gan_losses(logits_real, logits_fake):
  """(D's loss -log D(x) - log(1 - D(G(z))), G's non-saturating loss -log D(G(z)))."""
  return bce(logits_real, 1.0) + bce(logits_fake, 0.0), bce(logits_fake, 1.0)
