"""BiGAN's objectives and optimiser (Donahue et al., 2017, sections 3, 4.1 and appendices B, C).

- ``bigan_losses``: D maximises V = log D(x, E(x)) + log(1 - D(G(z), z)); G and E minimise the inverse
  (label-swapped) objective -log(1 - D(x, E(x))) - log D(G(z), z) (appendix B). The authors' code averages the
  two terms (0.5 each); with Adam the scale cancels except against the coupled L2 decay, whose relative weight
  it doubles (2.5e-5 * w against gradients of order 1e-3: negligible), so the paper's V is kept and the logged
  losses are twice the authors' ``JD`` / ``E`` / ``G``.
- ``latent_regression_loss`` (section 4.1: "We use a sigmoid cross entropy loss L as it naturally maps to a
  uniformly distributed output space"): sigmoid cross-entropy of E's logits against (z + 1) / 2, averaged over
  dimensions (the authors' ``--encode_normalize``) and examples.
- ``optimizer`` (appendix C): Adam(2e-4, 0.5, 0.999); the step size held for the first half of training, then
  decayed exponentially to ``lr_final`` (2e-6; the authors decay once per epoch, this per step); L2 weight decay
  2.5e-5 added to the gradient of multiplicative weights only (kernels, not biases, not batchnorm scale/shift).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from common.config import Config
from common import gan
from common.gan import bce


def bigan_losses(logits_real, logits_fake):
  """(D's loss, G and E's loss) from D's logits on (x, E(x)) and on (G(z), z)."""
  d_loss = bce(logits_real, 1.0) + bce(logits_fake, 0.0)
  ge_loss = bce(logits_real, 0.0) + bce(logits_fake, 1.0)
  return d_loss, ge_loss


def latent_regression_loss(z_logits, z):
  """Sigmoid cross-entropy between E's logits and the targets (z + 1) / 2, for z in [-1, 1] (section 4.1)."""
  return optax.sigmoid_binary_cross_entropy(z_logits, (z + 1.0) / 2.0).mean()


def logits_to_z(z_logits):
  """E's linear output mapped into U(-1, 1)'s support: 2 sigmoid - 1 (the authors' ``logits_to_recon``)."""
  return 2.0 * jax.nn.sigmoid(z_logits) - 1.0


def reconstruction_loss(x_hat, x, kind: str = 'l2'):
  """Mean squared (l2) or absolute (l1) error per pixel."""
  d = x_hat - x
  if kind == 'l2':
    return jnp.mean(d * d)
  if kind == 'l1':
    return jnp.mean(jnp.abs(d))
  raise ValueError(f'unknown --recon_loss={kind!r}: use l2 or l1')


def decay_mask(params):
  """True for multiplicative weights (every 'kernel'); False for biases and batchnorm scale/shift."""
  return jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[-1], 'key', None) == 'kernel', params)


def lr_schedule(config: Config):
  """lr for the first half of the run's steps, then exponential decay reaching ``lr_final`` at the end
  (``--lr_decay``, default 'exponential')."""
  m = config.model
  return gan.lr_schedule(m.lr, config.loop.steps, m.lr_decay or 'exponential', config.bigan.lr_final)


def optimizer(config: Config) -> optax.GradientTransformation:
  """Appendix C: L2 weight decay on kernels added to the gradient, then Adam with the decaying step size."""
  m = config.model
  return optax.chain(optax.add_decayed_weights(m.weight_decay, mask=decay_mask),
                     optax.scale_by_adam(b1=m.beta1, b2=m.beta2),
                     optax.scale_by_learning_rate(lr_schedule(config)))
