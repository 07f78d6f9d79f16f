"""De-duplication of training data with a hashing autoencoder (DCGAN section 4.1.1).

The paper: "We fit a 3072-128-3072 de-noising dropout regularized RELU autoencoder on 32x32 downsampled
center-crops of training examples. The resulting code layer activations are then binarized via thresholding
the ReLU activation [...] and provides a convenient form of semantic-hashing, allowing for linear time
de-duplication."

Here:
- Input: the 32x32 center crop after resizing the shorter edge to 32 (``data.preprocess(image, 32)``, pixels
  in [-1, 1]), flattened: 32*32*3 = 3072 inputs for colour data, 32*32 = 1024 for grayscale (channels are
  not replicated: copies would add no information), minus the per-pixel mean of the training data (stored
  with the model; without it most ReLU units of [-1, 1] images sit on one side of zero and carry no bits).
- Autoencoder: ``Dense(128) -> ReLU`` (the code) ``-> dropout -> Dense(inputs)``, squared error against
  the clean input.
- Denoising: Gaussian noise of std ``noise`` is added to the input during training.
- Dropout (rate ``dropout``) on the code during training.
- ``code_noise``: Gaussian noise added to the code units' pre-activations during training (the semantic
  hashing trick of Salakhutdinov & Hinton): units that carry information must sit far from the threshold,
  so small changes of an image (noise, re-encoding) rarely flip a bit. 0 turns it off.
- Hash: the 128 bits ``code > 0``, packed into 16 bytes; images with equal bytes form a group (one pass,
  a dict from bytes to ids: linear time). ``kept`` is the first (lowest) id of every group.

Measured on planted near-duplicates (tests/test_dedup.py): see the README section "De-duplication".
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import os
import time
from typing import Callable, Iterable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import serialization

from common import data
from common import images as im
from common import visualize as vis

SIZE = 32          # 32x32 crops
CODE = 128         # code units (bits)
MODEL_FILE = 'hash_autoencoder.msgpack'
CONFIG_FILE = 'hash_autoencoder.json'


@dataclasses.dataclass(frozen=True)
class HashConfig:
  inputs: int = SIZE * SIZE * 3
  code: int = CODE
  noise: float = 0.2          # denoising: input noise std (pixels in [-1, 1])
  dropout: float = 0.1        # on the code
  code_noise: float = 8.0     # pre-activation noise of the code units (0: off)
  lr: float = 1e-3
  batch_size: int = 64
  steps: int = 2000
  seed: int = 0


class HashAutoencoder(nn.Module):
  """``inputs -> code (ReLU) -> inputs``; returns (reconstruction, code)."""
  inputs: int
  code: int = CODE
  dropout: float = 0.1
  code_noise: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    a = nn.Dense(self.code, name='encoder')(x)
    if train and self.code_noise:
      a = a + self.code_noise * jax.random.normal(self.make_rng('noise'), a.shape, a.dtype)
    h = nn.relu(a)
    d = nn.Dropout(self.dropout, deterministic=not train)(h)
    return nn.Dense(self.inputs, name='decoder')(d), h


@dataclasses.dataclass
class Hasher:
  """A trained hashing autoencoder: parameters, the input mean it subtracts, and its configuration."""
  params: dict
  mean: np.ndarray
  config: HashConfig

  @property
  def module(self) -> HashAutoencoder:
    c = self.config
    return HashAutoencoder(c.inputs, c.code, c.dropout, c.code_noise)

  def codes(self, x, chunk: int = 4096) -> np.ndarray:
    """ReLU code activations of flattened inputs [N, inputs] in [-1, 1]: [N, code] float32."""
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    if x.shape[1] != self.config.inputs:
      raise ValueError(f'the autoencoder takes {self.config.inputs} inputs, got {x.shape[1]}: it was trained on '
                       'images with another number of channels')
    out = [np.asarray(_encode(self.module, self.params, jnp.asarray(self.mean), jnp.asarray(x[i:i + chunk])))
           for i in range(0, len(x), chunk)]
    return np.concatenate(out) if out else np.zeros((0, self.config.code), np.float32)

  def bits(self, x, chunk: int = 4096) -> np.ndarray:
    """The hash: ``code > 0``, [N, code] bool."""
    return self.codes(x, chunk) > 0



@functools.partial(jax.jit, static_argnums=(0,))
def _encode(module, params, mean, x):
  return nn.relu(nn.Dense(module.code).apply({'params': params['encoder']}, x - mean))


# -- training ----------------------------------------------------------------------------------------------


def train(next_batch: Callable[[int], np.ndarray], mean: np.ndarray, config: HashConfig,
          log: Optional[Callable[[str], None]] = None) -> Hasher:
  """Trains the autoencoder for ``config.steps`` steps on ``next_batch(step) -> [B, inputs]`` in [-1, 1]."""
  module = HashAutoencoder(config.inputs, config.code, config.dropout, config.code_noise)
  key = jax.random.PRNGKey(config.seed)
  params = module.init(key, jnp.zeros((1, config.inputs)))['params']
  tx = optax.adam(config.lr)
  opt = tx.init(params)
  mean_j = jnp.asarray(mean, jnp.float32)

  @jax.jit
  def step(params, opt, x, i):
    k_in, k_drop, k_code = jax.random.split(jax.random.fold_in(key, i), 3)
    x = x - mean_j

    def loss_fn(p):
      noisy = x + config.noise * jax.random.normal(k_in, x.shape, x.dtype)
      recon, _ = module.apply({'params': p}, noisy, train=True, rngs={'dropout': k_drop, 'noise': k_code})
      return jnp.mean((recon - x) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  for i in range(config.steps):
    params, opt, loss = step(params, opt, jnp.asarray(next_batch(i), jnp.float32), i)
    if log and (i + 1) % max(1, config.steps // 10) == 0:
      log(f'autoencoder step {i + 1}/{config.steps}: reconstruction error {float(loss):.4f}')
  return Hasher(jax.device_get(params), np.asarray(mean, np.float32), config)


def train_on_array(x, config: HashConfig = HashConfig(), log=None) -> Hasher:
  """Trains on flattened images ``x`` [N, inputs] in [-1, 1] (batches drawn with replacement)."""
  x = np.asarray(x, np.float32).reshape(len(x), -1)
  config = dataclasses.replace(config, inputs=x.shape[1])
  rng = np.random.default_rng(config.seed)
  return train(lambda i: x[rng.integers(0, len(x), config.batch_size)], x.mean(axis=0), config, log)


def train_on_source(source, config: HashConfig = HashConfig(), ids: Optional[Sequence[int]] = None,
                    log=None, mean_examples: int = 4096) -> Hasher:
  """Trains on a ``data.Source`` through ``data.Batches`` (32x32 center crops, the paper's preprocessing).

  The input mean comes from the first ``mean_examples`` examples of the shuffled stream."""
  first = source[int(ids[0]) if ids is not None else 0]['image']
  config = dataclasses.replace(config, inputs=SIZE * SIZE * first.shape[-1])
  with data.Batches(source, global_batch=config.batch_size, resolution=SIZE, seed=config.seed, crop='center',
                    flip=False, indices=ids) as it:
    flat = lambda b: b['image'].reshape(len(b['image']), -1)  # noqa: E731
    n_mean = max(1, min(mean_examples, it.num_examples) // config.batch_size)
    mean = np.mean([flat(next(it)).mean(axis=0) for _ in range(n_mean)], axis=0)
    return train(lambda i: flat(next(it)), mean, config, log)


# -- hashing and grouping ----------------------------------------------------------------------------------


def downsample(image) -> np.ndarray:
  """uint8 HxWxC -> the 32x32 center crop in [-1, 1] (shorter edge resized to 32)."""
  return data.preprocess(image, SIZE)


def prepare(images: Iterable) -> np.ndarray:
  """uint8 images (any sizes) -> flattened 32x32 crops [N, 32*32*C] in [-1, 1]."""
  return np.stack([downsample(np.asarray(a)).reshape(-1) for a in images])


def source_inputs(source, ids: Optional[Sequence[int]] = None, chunk: int = 1024,
                  threads: Optional[int] = None) -> Iterable[tuple[np.ndarray, np.ndarray]]:
  """(ids, flattened crops) of a ``data.Source`` in chunks, in id order, decoded on ``threads`` threads."""
  ids = np.arange(len(source)) if ids is None else np.asarray(ids)
  threads = threads or min(8, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    for lo in range(0, len(ids), chunk):
      part = ids[lo:lo + chunk]
      examples = source.get_many([int(i) for i in part])
      crops = list(pool.map(lambda e: downsample(e['image']).reshape(-1), examples))
      yield part, np.stack(crops)


def hash_bytes(bits) -> list[bytes]:
  """[N, code] bool -> N keys of code / 8 bytes."""
  return [row.tobytes() for row in np.packbits(np.asarray(bits, bool), axis=1)]


def group(keys: Iterable, ids: Optional[Iterable[int]] = None) -> list[list[int]]:
  """Groups ids by equal keys in one pass (a dict: linear time). Groups come in order of first appearance,
  members in the order given; singletons included."""
  table: dict = {}
  for i, k in zip(ids if ids is not None else range(10**18), keys):
    table.setdefault(bytes(k) if not isinstance(k, bytes) else k, []).append(int(i))
  return list(table.values())


def kept(groups: Sequence[Sequence[int]]) -> list[int]:
  """The first id of every group, ascending: what to train on."""
  return sorted(min(g) for g in groups)


def duplicate_groups(groups: Sequence[Sequence[int]]) -> list[list[int]]:
  """Groups of two or more, largest first."""
  return sorted((sorted(g) for g in groups if len(g) > 1), key=lambda g: (-len(g), g[0]))


def pairs(groups: Sequence[Sequence[int]]) -> set[tuple[int, int]]:
  """Every unordered pair (i < j) inside a group: the detected duplicate pairs."""
  out = set()
  for g in groups:
    g = sorted(g)
    out.update((a, b) for k, a in enumerate(g) for b in g[k + 1:])
  return out


def precision_recall(groups, true_pairs: Iterable[tuple[int, int]]) -> tuple[float, float, int]:
  """Precision and recall of the detected pairs against the true duplicate pairs; and the detected count."""
  found = pairs(groups)
  true = {(min(a, b), max(a, b)) for a, b in true_pairs}
  hit = len(found & true)
  return (hit / len(found) if found else 1.0), (hit / len(true) if true else 1.0), len(found)


# -- saving ------------------------------------------------------------------------------------------------


def save(hasher: Hasher, directory: str) -> None:
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, MODEL_FILE), 'wb') as f:
    f.write(serialization.to_bytes({'params': hasher.params, 'mean': hasher.mean}))
  with open(os.path.join(directory, CONFIG_FILE), 'w') as f:
    json.dump(dataclasses.asdict(hasher.config), f, indent=2)


def exists(directory: str) -> bool:
  return all(os.path.exists(os.path.join(directory, n)) for n in (MODEL_FILE, CONFIG_FILE))


def load(directory: str) -> Hasher:
  with open(os.path.join(directory, CONFIG_FILE)) as f:
    config = HashConfig(**{k: v for k, v in json.load(f).items() if k in HashConfig.__dataclass_fields__})
  module = HashAutoencoder(config.inputs, config.code, config.dropout, config.code_noise)
  template = {'params': jax.device_get(module.init(jax.random.PRNGKey(0), jnp.zeros((1, config.inputs)))['params']),
              'mean': np.zeros((config.inputs,), np.float32)}
  with open(os.path.join(directory, MODEL_FILE), 'rb') as f:
    restored = serialization.from_bytes(template, f.read())
  return Hasher(restored['params'], np.asarray(restored['mean'], np.float32), config)


# -- the picture -------------------------------------------------------------------------------------------


def groups_figure(groups: Sequence[Sequence[int]], crops: Callable[[Sequence[int]], np.ndarray],
                  max_groups: int = 16, max_members: int = 8) -> np.ndarray:
  """A sheet of duplicate groups, one per row (up to ``max_members`` of each, as 32x32 crops), largest
  groups first; ``crops(ids) -> [n, 32, 32, C]`` in [-1, 1]."""
  dups = duplicate_groups(groups)[:max_groups]
  if not dups:
    blank = np.ones((1, SIZE, SIZE, 3), np.float32)
    return vis.caption(vis.upscale(im.grid(blank, ncol=1), 2), 'no duplicate groups found')
  cells = []
  for g in dups:
    x = np.asarray(crops(g[:max_members]), np.float32)
    cells.append(np.concatenate([x, np.ones((max_members - len(x),) + x.shape[1:], np.float32)]))
  sheet = vis.upscale(im.grid(np.concatenate(cells), ncol=max_members), 2)
  return vis.caption(sheet, f'{len(dups)} largest duplicate groups (one per row, up to {max_members} members)')


# -- the command line's job -------------------------------------------------------------------------------


def run(a) -> dict:
  """``launch/dedup.py``: trains (or loads) the hashing autoencoder in ``a.out``, hashes every example of
  ``a.split`` of ``a.dataset``, writes kept.txt, groups.json, groups.png and codes.npy; returns the summary."""
  source, info = data.open_source(a.dataset, a.split, data_dir=a.data_dir, manual_dir=a.manual_dir)
  os.makedirs(a.out, exist_ok=True)
  t0 = time.time()
  if exists(a.out) and not a.retrain:
    hasher = load(a.out)
    if hasher.config.inputs != SIZE * SIZE * info.channels:
      raise ValueError(f'the autoencoder in {a.out} takes {hasher.config.inputs} inputs, {info.name} has '
                       f'{info.channels} channels: pass --retrain or another --out')
    print(f'loaded the autoencoder from {a.out}')
  else:
    config = HashConfig(noise=a.noise, dropout=a.dropout, code_noise=a.code_noise, lr=a.lr,
                              batch_size=a.batch_size, steps=a.steps, seed=a.seed)
    hasher = train_on_source(source, config, log=print)
    save(hasher, a.out)
  t1 = time.time()
  ids, keys = [], []
  for part, x in source_inputs(source):
    ids.append(part)
    keys.append(np.packbits(hasher.bits(x), axis=1))
  ids, keys = np.concatenate(ids), np.concatenate(keys)
  groups = group((k.tobytes() for k in keys), ids)
  keep_ids = kept(groups)
  dups = duplicate_groups(groups)
  np.save(os.path.join(a.out, 'codes.npy'), keys)
  with open(os.path.join(a.out, 'kept.txt'), 'w') as f:
    f.write(''.join(f'{i}\n' for i in keep_ids))
  summary = {'dataset': info.name, 'split': info.split, 'num_examples': int(len(ids)), 'num_kept': len(keep_ids),
             'num_removed': int(len(ids) - len(keep_ids)), 'num_groups': len(dups),
             'distinct_codes': len(groups), 'groups': dups}
  with open(os.path.join(a.out, 'groups.json'), 'w') as f:
    json.dump(summary, f)
  crops = lambda g: np.stack([downsample(source[int(i)]['image']) for i in g])  # noqa: E731
  im.save_png(groups_figure(groups, crops, max_groups=a.show), os.path.join(a.out, 'groups.png'))
  print(f'{info.name} {info.split}: {len(ids)} examples, {len(dups)} duplicate groups, {len(ids) - len(keep_ids)} '
        f'removed, {len(keep_ids)} kept (autoencoder {t1 - t0:.0f}s, hashing {time.time() - t1:.0f}s)')
  print(f'wrote {a.out}/kept.txt, groups.json, groups.png; train with --dedup={os.path.join(a.out, "kept.txt")}')
  return summary
