"""Model names -> factories: one table, the only place a model is named.

Each entry is ``name -> (factory, one-line description)``. A factory is ``factory(config, facts) -> Model``
(``common.model``): it fills the model's defaults into the config (the resolved config is what a run saves)
and raises ValueError on settings the model cannot take. Built-in factories are named by import path
(``'package.module:attribute'``) and imported when first used, as big_vision finds models by name: ``common``
stays below the model packages, and ``--help`` does not import JAX models. The command-line choices, the
``--help`` text and README's model table come from this table.

Adding a model is one module with a factory and one ``register`` call (tests/test_registry.py does it).
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable, Union

from common.config import Config


@dataclasses.dataclass(frozen=True)
class Entry:
  factory: Union[str, Callable]     # 'module:attr[.attr]' or the callable itself
  description: str


_TABLE: dict[str, Entry] = {
    'dcgan': Entry('dcgan_jax.dcgan:DCGAN.create',
                   'DCGAN (Radford et al., section 3): conv G and D, the main model'),
    'cdcgan': Entry('dcgan_jax.dcgan:DCGAN.create_conditional',
                    "label-conditioned DCGAN: the authors' conditional MNIST network (default) or section 3's conv "
                    'nets (DCGAN supplementary 8.1)'),
    'mlp_gan': Entry('dcgan_jax.mlp_gan:MLPGAN.create',
                     'conditional permutation-invariant MLP GAN (DCGAN Table 3 baseline)'),
    'bigan': Entry('bigan_jax.bigan:BiGAN.create',
                   'BiGAN (Donahue et al.): G, E and the joint D(x, z), MLP or conv'),
    'latent_regressor': Entry('bigan_jax.baselines:LatentRegressor.create',
                              "BiGAN baseline: E regresses z from a trained GAN's frozen G (--gan_workdir)"),
    'joint_latent_regressor': Entry('bigan_jax.baselines:JointLatentRegressor.create',
                                    'BiGAN baseline: a GAN and E trained jointly on the latent regression loss'),
    'autoencoder': Entry('bigan_jax.baselines:Autoencoder.create',
                         'BiGAN baseline: E and G as an l2 or l1 autoencoder (--recon_loss)'),
}


def register(name: str, factory: Union[str, Callable], description: str, replace: bool = False) -> None:
  """Adds a model: ``factory(config, facts) -> Model`` (or its import path) under ``name``."""
  if not name or not name.replace('_', '').isalnum():
    raise ValueError(f'model name {name!r}: use letters, digits and underscores')
  if name in _TABLE and not replace:
    raise ValueError(f'model {name!r} is already registered (pass replace=True to replace it)')
  _TABLE[name] = Entry(factory, description)


def unregister(name: str) -> None:
  _TABLE.pop(name, None)


def names() -> tuple[str, ...]:
  return tuple(_TABLE)


def describe() -> dict[str, str]:
  """{name: one-line description}, in table order."""
  return {k: e.description for k, e in _TABLE.items()}


def factory(name: str) -> Callable:
  entry = _TABLE.get(name)
  if entry is None:
    raise ValueError(f'unknown --model={name!r}: choose one of {", ".join(_TABLE)}')
  if callable(entry.factory):
    return entry.factory
  module, _, attr = entry.factory.partition(':')
  obj = importlib.import_module(module)
  for part in attr.split('.'):
    obj = getattr(obj, part)
  return obj


def build(config: Config, facts):
  """The model ``config.model.name`` for data described by ``facts`` (``common.model.DataFacts``), its
  config resolved."""
  return factory(config.model.name)(config, facts)
