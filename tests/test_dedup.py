"""De-duplication with the hashing autoencoder (DCGAN 4.1.1): grouping, planted near-duplicates, the CLI."""
import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from common import dedup


def planted_dataset(n_distinct=300, n_copies=60, size=64, channels=1, sigma=8.0, quality=75, seed=0):
  """``n_distinct`` distinct images (2x2 mosaics of random digits, random foreground/background tones) and
  ``n_copies`` near-duplicates of some of them: every other one with Gaussian pixel noise (std ``sigma``
  grey levels), the others re-encoded as JPEG (``quality``). Returns (uint8 images, true pairs (i, copy),
  kind of each pair)."""
  from sklearn.datasets import load_digits
  rng = np.random.default_rng(seed)
  digits = (load_digits().images * 255 / 16).astype(np.uint8)
  q = size // 2

  def mosaic():
    out = np.zeros((size, size, channels), np.float32)
    for y in (0, q):
      for x in (0, q):
        d = np.asarray(Image.fromarray(digits[rng.integers(len(digits))]).resize((q, q), Image.BILINEAR), np.float32)
        d = d[..., None] / 255
        out[y:y + q, x:x + q] = d * rng.uniform(0, 255, channels) + (1 - d) * rng.uniform(0, 255, channels)
    return out.astype(np.uint8)

  images = [mosaic() for _ in range(n_distinct)]
  pairs, kinds = [], []
  for k, i in enumerate(rng.choice(n_distinct, n_copies, replace=False)):
    a = images[i]
    if k % 2 == 0:
      b, kind = np.clip(a + rng.normal(0, sigma, a.shape), 0, 255).astype(np.uint8), 'noise'
    else:
      buf = io.BytesIO()
      Image.fromarray(a[..., 0] if channels == 1 else a).save(buf, format='JPEG', quality=quality)
      b, kind = np.asarray(Image.open(buf)).reshape(a.shape), 'jpeg'
    pairs.append((int(i), len(images)))
    kinds.append(kind)
    images.append(b)
  return images, pairs, kinds


def test_grouping_is_by_equal_codes_in_one_pass():
  codes = np.array([[1, 0, 1], [0, 0, 0], [1, 0, 1], [0, 1, 0], [1, 0, 1], [0, 0, 0]], bool)
  groups = dedup.group(dedup.hash_bytes(codes), ids=[10, 11, 12, 13, 14, 15])
  assert groups == [[10, 12, 14], [11, 15], [13]]
  assert dedup.kept(groups) == [10, 11, 13]
  assert dedup.duplicate_groups(groups) == [[10, 12, 14], [11, 15]]
  assert dedup.pairs(groups) == {(10, 12), (10, 14), (12, 14), (11, 15)}
  p, r, n = dedup.precision_recall(groups, [(12, 10), (13, 15)])
  assert (p, r, n) == (0.25, 0.5, 4)


def test_hash_finds_planted_near_duplicates():
  """Precision and recall of the detected pairs on 300 distinct images + 60 planted near-duplicates."""
  images, true, kinds = planted_dataset()
  x = dedup.prepare(images)
  assert x.shape == (360, 32 * 32)                        # grayscale: 1024 inputs
  hasher = dedup.train_on_array(x, dedup.HashConfig(steps=1000, seed=0))
  bits = hasher.bits(x)
  assert bits.shape == (360, 128)
  groups = dedup.group(dedup.hash_bytes(bits))
  precision, recall, found = dedup.precision_recall(groups, true)
  found_pairs = dedup.pairs(groups)
  by_kind = {k: np.mean([p in found_pairs for p, kk in zip(true, kinds) if kk == k]) for k in ('noise', 'jpeg')}
  print(f'planted near-duplicates: precision {precision:.3f} recall {recall:.3f} ({found} pairs found; recall '
        f'noise {by_kind["noise"]:.2f}, jpeg {by_kind["jpeg"]:.2f})')
  assert precision >= 0.95                                # the paper: false positives under 1 in 100
  assert recall >= 0.65


def test_save_and_load_give_the_same_hash(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (40, 32 * 32 * 3)).astype(np.float32)
  hasher = dedup.train_on_array(x, dedup.HashConfig(steps=20, batch_size=8))
  assert hasher.config.inputs == 3072                     # the paper's 3072-128-3072 for colour images
  dedup.save(hasher, str(tmp_path))
  assert dedup.exists(str(tmp_path))
  again = dedup.load(str(tmp_path))
  assert again.config == hasher.config
  np.testing.assert_array_equal(again.codes(x), hasher.codes(x))
  with pytest.raises(ValueError, match='3072 inputs'):
    again.codes(x[:, :1024])


def test_cli_writes_kept_groups_and_picture_then_reloads(tmp_path, data_dir, load_cli):
  cli = load_cli('dedup')
  out = tmp_path / 'dedup'
  args = ['--dataset=digits', f'--data_dir={data_dir}', f'--out={out}', '--steps=100', '--batch_size=32']
  text = io.StringIO()
  with contextlib.redirect_stdout(text):
    assert cli.main(args) == 0
  summary = json.loads((out / 'groups.json').read_text())
  kept = np.loadtxt(out / 'kept.txt', dtype=np.int64, ndmin=1)
  assert summary['num_examples'] == 1497 and summary['num_kept'] == len(kept)
  assert np.all(np.diff(kept) > 0) and kept.min() >= 0 and kept.max() < 1497
  removed = {i for g in summary['groups'] for i in g[1:]}
  assert set(kept.tolist()) | removed == set(range(1497)) and not set(kept.tolist()) & removed
  assert Image.open(out / 'groups.png').size[0] > 0
  assert np.load(out / 'codes.npy').shape == (1497, 16)
  # Same command again: the trained autoencoder is loaded, the result is the same.
  with contextlib.redirect_stdout(text):
    assert cli.main(args) == 0
  assert 'loaded the autoencoder' in text.getvalue()
  assert np.array_equal(np.loadtxt(out / 'kept.txt', dtype=np.int64, ndmin=1), kept)
  # kept.txt is what launch/train.py --dedup reads, and data.Batches draws only those examples.
  from common import data, loop
  ids = loop._read_indices(str(out / 'kept.txt'))
  source, _ = data.open_source('digits', 'train', data_dir=data_dir)
  with data.Batches(source, global_batch=16, resolution=8, seed=0, indices=ids, prefetch=0) as it:
    assert it.num_examples == len(kept) and next(it)['image'].shape == (16, 8, 8, 1)


@pytest.mark.slow
def test_hash_finds_planted_near_duplicates_colour_many_seeds():
  """The 3072-input model on colour mosaics, several seeds (slow)."""
  for seed in range(3):
    images, true, _ = planted_dataset(n_distinct=600, n_copies=120, channels=3, seed=seed)
    x = dedup.prepare(images)
    hasher = dedup.train_on_array(x, dedup.HashConfig(steps=2000, seed=seed))
    precision, recall, _ = dedup.precision_recall(dedup.group(dedup.hash_bytes(hasher.bits(x))), true)
    print(f'seed {seed}: precision {precision:.3f} recall {recall:.3f}')
    assert precision >= 0.95 and recall >= 0.55
