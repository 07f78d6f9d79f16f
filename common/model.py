"""The interface every model implements: what the loop, the checkpoints, the evaluations and the tools use.

A model is a frozen object bound to a resolved ``Config`` and the dataset's shape (``DataFacts``). It owns its
networks (Flax modules, by name: 'G', 'D', 'E'), makes the state pytree, runs the per-device train step and
answers the questions tools ask of a trained run (samples, G(z), features, E(x)). Code outside a model never
looks at a model's type or at the signature of its methods: it asks the interface below, including the
capability flags ``conditional`` and ``has_encoder``.

Registering a model (``common.registry.register``) makes it available to every tool; ``tests/test_registry.py``
defines a small one in the test file and runs it through train, resume, sample and the evaluations.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Optional, Protocol, Sequence

import jax
from flax import linen as nn

from common.config import Config
from common.state import TrainState


@dataclasses.dataclass(frozen=True)
class DataFacts:
  """What a model needs to know of its dataset to build its networks."""
  channels: int                    # 1 (grayscale) or 3
  num_classes: Optional[int] = None
  name: str = ''


class Model(Protocol):
  """A GAN-family model (DCGAN, BiGAN and its baselines, or your own; see ``common.registry``)."""

  config: Config          # resolved: every model-dependent default filled in
  channels: int
  num_classes: int

  @property
  def z_dim(self) -> int: ...

  @property
  def resolution(self) -> int:
    """The image size G makes (and D sees)."""

  @property
  def conditional(self) -> bool:
    """Whether G and D take a class label y (then ``sample``/``generate``/``features`` need or make labels)."""

  @property
  def has_encoder(self) -> bool:
    """Whether the model has an encoder E (``encode``, ``reconstruct``, E features)."""

  @property
  def feature_nets(self) -> tuple[str, ...]:
    """Networks whose activations ``features`` can give for images alone ('D', 'E'), preferred first."""

  def networks(self, axis_name: Optional[str] = None) -> Mapping[str, nn.Module]:
    """{'G': ..., 'D': ..., 'E': ...} (those the model has); ``axis_name`` syncs batchnorm across devices."""

  def init(self, key: jax.Array) -> TrainState:
    """A fresh state: params, batch statistics and optimiser states of every network, step 0."""

  def train_step(self, state: TrainState, batch: Mapping[str, jax.Array]) -> tuple[TrainState, dict]:
    """The per-device body of one update: collectives over ``common.parallel.AXIS``; pure."""

  def data_options(self, eval: bool = False) -> dict:  # pylint: disable=redefined-builtin
    """The input pipeline's preprocessing: resolution, load_size, crop, flip (``eval``: no augmentation)."""

  def sample(self, state: TrainState, key: jax.Array, n: int, y=None, use_running_average: Optional[bool] = None):
    """n images in [-1, 1], NHWC, from z drawn from the prior (labels cycle over classes when conditional);
    batchnorm statistics as ``generate``."""

  def generate(self, state: TrainState, z, y=None, drop: Optional[Mapping[str, Any]] = None,
               use_running_average: Optional[bool] = None, axis_name: Optional[str] = None):
    """G(z) in [-1, 1]. ``drop`` zeroes G's feature maps per layer (models whose G has none raise ValueError);
    ``use_running_average``: True uses batchnorm's running averages, False this batch's statistics (synced over
    ``axis_name``), None the run's ``--sample_bn``."""

  def features(self, state: TrainState, x, net: Optional[str] = None, layer: Optional[str] = None,
               pool: Optional[int] = None, y=None):
    """Flattened activations of images x (in [-1, 1]) in network ``net`` (default ``feature_nets[0]``):
    ``layer`` names sown layers, comma-separated (default: the net's default feature layer); 4-D maps
    max-pooled to ``pool`` x ``pool`` first when ``pool``. Conditional nets need the labels ``y``."""

  def feature_layers(self, net: Optional[str] = None) -> Sequence[str]:
    """Layer names ``features`` accepts for ``net``."""

  def default_feature_layer(self, net: Optional[str] = None) -> str:
    """The layer(s) ``features`` uses by default for ``net`` (comma-separated)."""

  def recompute_batch_stats(self, state: TrainState, batches: Iterable, net: Optional[str] = None) -> TrainState:
    """``state`` with feature net ``net``'s batchnorm statistics averaged over ``batches`` of real images in
    [-1, 1] (the authors' inference statistics for features); nets without batchnorm return ``state``."""

  def encode(self, state: TrainState, x):
    """E(x) for images in [-1, 1] (models without an encoder raise ValueError)."""

  def reconstruct(self, state: TrainState, x):
    """G(E(x)) in [-1, 1] (models without an encoder raise ValueError)."""

  def display(self, x):
    """Real images as G would make them (e.g. resized to G's resolution), for side-by-side pictures."""


def no_encoder(model) -> ValueError:
  """The error a model without an encoder raises from ``encode``/``reconstruct``."""
  return ValueError(f'--model={model.config.model.name} has no encoder E: use a BiGAN-family model')


def check_net(model, net: Optional[str]) -> str:
  """``net`` (default: the model's first feature net) if ``features`` can use it, else a clear ValueError."""
  nets = model.feature_nets
  if net is None:
    return nets[0]
  if net not in nets:
    what = 'plain discriminator D(x) that sees images alone' if net == 'D' else 'encoder E'
    hint = f'use --net={nets[0]}' if nets else 'it has no feature network'
    raise ValueError(f'--model={model.config.model.name} has no {what} to take features from: {hint}')
  return net
