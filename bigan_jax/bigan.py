"""BiGAN (Donahue, Kraehenbuehl & Darrell, 2017): G, E and the joint D(x, z), all updated simultaneously from one
batch (section 3.4, appendix B). D maximises V = log D(x, E(x)) + log(1 - D(G(z), z)); G and E minimise the
inverse (label-swapped) objective -log(1 - D(x, E(x))) - log D(G(z), z). Networks, optimiser and the
trained-model API are the family's (``bigan_jax.family``)."""
from __future__ import annotations

import dataclasses

import jax

from bigan_jax.family import BiGANFamily, apply
from bigan_jax.objectives import bigan_losses
from common import images, parallel
from common.state import TrainState


@dataclasses.dataclass(frozen=True)
class BiGAN(BiGANFamily):
  """``--model=bigan``."""

  def train_step(self, state: TrainState, batch: dict):
    """Per-device body of the data-parallel step; collectives over ``parallel.AXIS``."""
    nets = self.networks(parallel.AXIS)
    G, D, E = nets['G'], nets['D'], nets['E']
    p, bs = state.params, state.batch_stats
    x = self.to_model(batch['image'])          # at the encoder resolution, in the networks' range
    z = self._z(state, x.shape[0])
    x_d = images.resize(x, self.resolution)    # g_X (section 3.5): identity unless E sees a larger image

    fake, g_vjp, bs_g = jax.vjp(lambda pg: self._g(G, pg, bs['G'], z, train=True), p['G'], has_aux=True)
    ez, e_vjp, bs_e = jax.vjp(lambda pe: self._e_train(E, pe, bs['E'], x), p['E'], has_aux=True)

    def d_forward(pd, ez, fake):
      logits_real, b = apply(D, pd, bs['D'], x_d, ez, train=True)
      logits_fake, b = apply(D, pd, b, fake, z, train=True)
      return (logits_real, logits_fake), b

    logits, d_vjp, bs_d = jax.vjp(d_forward, p['D'], ez, fake, has_aux=True)
    # All gradients at the current parameters: D's from V, G's and E's from the inverse objective.
    (d_loss, ge_loss) = bigan_losses(*logits)
    ct_d = jax.grad(lambda lg: bigan_losses(*lg)[0])(logits)
    ct_ge = jax.grad(lambda lg: bigan_losses(*lg)[1])(logits)
    d_grads = d_vjp(ct_d)[0]
    _, ez_ct, fake_ct = d_vjp(ct_ge)
    grads = {'D': d_grads, 'G': g_vjp(fake_ct)[0], 'E': e_vjp(ez_ct)[0]}
    lr, lf = logits
    metrics = {'d_loss': d_loss, 'g_loss': ge_loss,
               'd_real': jax.nn.sigmoid(lr).mean(),   # D(x, E(x))
               'd_fake': jax.nn.sigmoid(lf).mean(),   # D(G(z), z)
               'd_acc': 0.5 * ((lr > 0).mean() + (lf < 0).mean())}
    return self._update(state, grads, {'G': bs_g, 'D': bs_d, 'E': bs_e}, metrics)
