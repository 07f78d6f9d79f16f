"""Sample quality of this project's DCGAN against PyTorch's examples/dcgan recipe, at equal steps.

  pip install torch==2.13.0      # CPU build; benchmark only
  python benchmarks/quality_vs_torch.py --dataset=fashion_mnist --manual_dir=/usr/share/datasets/fashion-mnist \\
      --data_dir=/work/tfds_shared --seeds=0,1,2 --steps=2100 --num_samples=10000 --out=q.json
  python benchmarks/quality_vs_torch.py --quick          # JAX half only, tiny, on the embedded digits data

Every system trains the network of PyTorch's example at 32x32 (G: z -> 4x4x256 -> 8x8x128 -> 16x16x64 -> 32x32xC,
4x4 kernels, stride 2; D mirrored; batch 64, z of 100) on the same data for the same number of steps:

- ``torch``: our own PyTorch code of examples/dcgan's architecture and recipe (ConvTranspose2d/Conv2d 4x4 stride 2
  padding 1, no biases, batchnorm, ReLU / LeakyReLU(0.2), tanh, sigmoid + BCE; weights N(0, 0.02), batchnorm
  weight N(1, 0.02) and bias 0; Adam(2e-4, betas (0.5, 0.999)), no weight decay; per step D on a real then a
  fake batch, one optimizer step, then G with the non-saturating loss against the updated D, reusing the fake
  batch; z ~ N(0, 1)^100; data: the dataset's idx files, every image resized to 32 with Pillow's bilinear filter
  as torchvision's Resize does, scaled to [-1, 1], reshuffled every epoch, the last partial batch kept as the
  example's DataLoader does). ``torch.set_num_threads(--torch_threads)``.
- ``jax``: this project through its command line with its defaults (the DCGAN authors' recipe, Newmu/dcgan_code:
  alternate G/D updates, weight decay 1e-5 on every parameter, no biases, batchnorm scale N(1, 0.02), the
  projection's batchnorm per unit, z ~ U(-1, 1), sampling with batch statistics):
  ``launch/train.py --model=dcgan --resolution=32 --width=64 --kernel_size=4 --batch_size=64 --z_dim=100``.
- ``jax_torchlike``: the same command with every recipe choice of PyTorch's example that has a flag
  (``TORCHLIKE_FLAGS`` below: z ~ N(0, 1), D then G on D's fake batch, no weight decay, batchnorm scale
  N(1, 0.02), the projection's batchnorm per channel over the 4x4 map as BatchNorm2d after the 1x1 -> 4x4
  ConvTranspose2d, no biases, PyTorch's batchnorm momentum 0.1 and epsilon 1e-5, sampling with batch statistics).

``--jax_flags`` adds launch/train.py flags to every JAX system (an experiment arm). Each JAX run is one
``launch/train.py`` subprocess (in-process under ``--quick``) whose environment puts this checkout first on
``PYTHONPATH``.

Every run is scored with the project's own FID and KID (features of its trained classifier for the dataset,
``common.feature_net``) of ``--num_samples`` generated images against the whole TEST split, with G's batchnorm
in both modes: running averages (``running``; generated 500 at a time) and the statistics of each generated
batch of ``--batch_size`` images (``batch``: what the DCGAN authors' code, this project's default and PyTorch's
example, which never calls ``netG.eval()``, sample with). The same latent seeds score every run.

The table (markdown, stdout) has one row per system and sampling mode: steps, seconds, FID and KID (x 10^3)
mean ± standard deviation over seeds, and the per-seed values. Seconds are the training loop's (torch: the loop;
JAX: the CLI's own loop time after its first, compiling step); each JAX run's whole-process seconds are in the
JSON. ``--out`` writes every run as JSON after each run; an ``--out`` that already holds runs of the same
settings is resumed (those runs are kept, not retrained).

All calls into the project's Python API are in the section "project API" below; training goes through the CLI.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# The architecture under test (PyTorch examples/dcgan at 32x32).
ARCH = dict(resolution=32, width=64, kernel_size=4, batch_size=64, z_dim=100)
QUICK_ARCH = dict(resolution=8, width=8, kernel_size=4, batch_size=16, z_dim=16)

# launch/train.py flags of PyTorch's example recipe, where this project has a flag for the choice.
TORCHLIKE_FLAGS = ('--z_prior=normal', '--update_order=joint', '--weight_decay=0', '--bn_scale_init=normal',
                   '--sample_bn=batch', '--project_bn=channel', '--layer_bias=false', '--bn_momentum=0.9',
                   '--bn_epsilon=1e-5', '--lr=2e-4', '--beta1=0.5', '--beta2=0.999', '--lr_decay=none')
# System name -> extra launch/train.py flags (None: the PyTorch re-implementation).
SYSTEMS = {'torch': None, 'jax': (), 'jax_torchlike': TORCHLIKE_FLAGS}
MODES = ('running', 'batch')


# ================================================================================================================
# project API: every call into this project's Python modules is in this section (training uses the CLI)
# ================================================================================================================

def api_feature_net(dataset, data_dir, manual_dir, feature_net_dir=None, train_steps=None):
  """The project's feature network for ``dataset`` (its classifier; trained now when missing)."""
  from common import feature_net
  return feature_net.open_net(dataset=dataset, data_dir=data_dir, manual_dir=manual_dir,
                              feature_net_dir=feature_net_dir, steps=train_steps, verbose=False)


def api_real_stats(net, dataset, split, resolution, data_dir, manual_dir):
  """Feature statistics of the whole ``split`` (cached by the project under <data_dir>/fid_stats)."""
  from common import quality
  return quality.real_statistics(net, dataset, split, resolution=resolution, data_dir=data_dir,
                                 manual_dir=manual_dir, max_examples=None, log=None)


def api_score(net, real, sample, n, batch, seed=0, kid_subsets=100):
  """{'fid', 'kid', 'kid_stderr'} of ``n`` images from ``sample(key, batch) -> NHWC images in [-1, 1]``."""
  from common import quality
  feats = quality.generated_features(net, sample, n, batch=batch, seed=seed)
  q = quality.quality(real, feats, ('fid', 'kid'), kid_subsets=kid_subsets, kid_subset_size=min(1000, n),
                      seed=seed)
  return {'fid': float(q['fid']), 'kid': float(q['kid']), 'kid_stderr': float(q['kid_stderr'])}


def api_jax_sampler(workdir):
  """(sample(key, n, running) -> images, step, resolved model flags) of the latest checkpoint of a run."""
  import dataclasses
  from common import checkpoint
  model, state, config = checkpoint.load(workdir, warn=lambda m: print(m, file=sys.stderr))
  flags = {k: v for k, v in dataclasses.asdict(config.model).items()
           if k in ('z_prior', 'update_order', 'weight_decay', 'bn_scale_init', 'layer_bias', 'project_bn',
                    'sample_bn', 'bn_momentum', 'bn_epsilon', 'lr', 'beta1', 'beta2', 'lr_decay', 'variant')}
  return (lambda key, n, running: model.sample(state, key, n, use_running_average=running)), int(state.step), flags


def api_train_in_process(argv):
  """launch/train.py's main(argv) in this process: (exit status, its output)."""
  from launch import train as launch_train
  buf = io.StringIO()
  with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
    rc = launch_train.main(argv)
  return rc, buf.getvalue()


# ================================================================================================================
# PyTorch: our own code of examples/dcgan's network and recipe
# ================================================================================================================

def read_idx_images(manual_dir, split):
  """uint8 (N, 28, 28) images of an MNIST-format split ('train' or 'test') from its idx file (.gz or not), read
  by the project's own reader (``common.datasets.builders.read_idx``)."""
  from pathlib import Path
  from common.datasets.builders import read_idx
  stem = 'train-images-idx3-ubyte' if split == 'train' else 't10k-images-idx3-ubyte'
  for name in (stem + '.gz', stem):
    path = os.path.join(manual_dir, name)
    if os.path.exists(path):
      return read_idx(Path(path))
  raise FileNotFoundError(f'no {stem}(.gz) in {manual_dir}')


def torch_data(manual_dir, resolution):
  """float32 tensor (N, 1, R, R) in [-1, 1]: torchvision's Resize(R) (Pillow bilinear), ToTensor, Normalize(.5, .5)."""
  import numpy as np
  import torch
  from PIL import Image
  imgs = read_idx_images(manual_dir, 'train')
  if imgs.shape[1] != resolution:
    imgs = np.stack([np.asarray(Image.fromarray(a).resize((resolution, resolution), Image.Resampling.BILINEAR))
                     for a in imgs])
  x = torch.from_numpy(imgs.astype(np.float32) / 255.0).unsqueeze(1)
  return x * 2 - 1


def torch_nets(z_dim, width, channels, resolution):
  """examples/dcgan's G and D for ``resolution`` = 4 * 2^n: widths width * 2^(n-1) ... width, 4x4 kernels."""
  from torch import nn
  n = int(math.log2(resolution // 4))
  widths = [width * 2 ** (n - 1 - i) for i in range(n)]          # [256, 128, 64] at 32x32, width 64
  g = [nn.ConvTranspose2d(z_dim, widths[0], 4, 1, 0, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(True)]
  for cin, cout in zip(widths[:-1], widths[1:]):
    g += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
  g += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
  rev = widths[::-1]
  d = [nn.Conv2d(channels, rev[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
  for cin, cout in zip(rev[:-1], rev[1:]):
    d += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True)]
  d += [nn.Conv2d(rev[-1], 1, 4, 1, 0, bias=False), nn.Sigmoid()]
  G, D = nn.Sequential(*g), nn.Sequential(*d)

  def init(m):          # the example's weights_init
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
      nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
      nn.init.normal_(m.weight, 1.0, 0.02)
      nn.init.zeros_(m.bias)
  G.apply(init)
  D.apply(init)
  return G, D


class TorchDCGAN:
  """One run of the example's recipe (z ~ N(0, 1) as the example)."""

  def __init__(self, arch, channels, seed, data=None):
    import torch
    torch.manual_seed(seed)
    self.arch, self.data = arch, data
    self.G, self.D = torch_nets(arch['z_dim'], arch['width'], channels, arch['resolution'])
    betas = (0.5, 0.999)
    self.opt_g = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=betas)
    self.opt_d = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=betas)
    self.bce = torch.nn.BCELoss()
    self.gen = torch.Generator().manual_seed(seed)
    self.order, self.pos = None, 0

  def noise(self, n, generator=None):
    import torch
    return torch.randn((n, self.arch['z_dim'], 1, 1), generator=generator)

  def next_batch(self):
    import torch
    n, b = len(self.data), self.arch['batch_size']
    if self.order is None or self.pos >= n:            # new epoch: reshuffle (DataLoader(shuffle=True))
      self.order, self.pos = torch.randperm(n, generator=self.gen), 0
    idx = self.order[self.pos:self.pos + b]             # last batch of an epoch may be short (drop_last=False)
    self.pos += b
    return self.data[idx]

  def step(self, x):
    import torch
    G, D = self.G, self.D
    b = x.shape[0]
    ones, zeros = torch.ones(b), torch.zeros(b)
    D.zero_grad()
    out_real = D(x).view(-1)
    err_real = self.bce(out_real, ones)
    err_real.backward()
    fake = G(self.noise(b))
    out_fake = D(fake.detach()).view(-1)
    err_fake = self.bce(out_fake, zeros)
    err_fake.backward()
    self.opt_d.step()
    G.zero_grad()
    err_g = self.bce(D(fake).view(-1), ones)          # against the updated D
    err_g.backward()
    self.opt_g.step()
    return (err_real.item() + err_fake.item(), err_g.item(), out_real.mean().item(), out_fake.mean().item())

  def train(self, steps, log_every=0):
    t0 = time.time()
    last = None
    for i in range(steps):
      last = self.step(self.next_batch())
      if not all(math.isfinite(v) for v in last):
        raise FloatingPointError(f'torch step {i + 1}: non-finite loss {last}')
      if log_every and (i + 1) % log_every == 0:
        print(f'  torch step {i + 1}/{steps} | D loss {last[0]:.3f} G loss {last[1]:.3f} D(x) {last[2]:.3f} '
              f'D(G(z)) {last[3]:.3f} | {(i + 1) * self.arch["batch_size"] / (time.time() - t0):.0f} img/s',
              flush=True)
    return time.time() - t0, last

  def sampler(self):
    """sample(key, n, running) -> NHWC numpy images; batch mode uses each call's batch statistics."""
    import copy
    import torch

    def sample(key, n, running):
      import numpy as np
      seed = int(np.asarray(key).ravel()[-1])
      G = copy.deepcopy(self.G)
      G.train(not running)               # a copy: batch-mode sampling must not touch the running averages
      with torch.no_grad():
        x = G(self.noise(n, torch.Generator().manual_seed(seed)))
      return x.permute(0, 2, 3, 1).numpy()
    return sample


# ================================================================================================================
# the benchmark
# ================================================================================================================

def parse(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--dataset', default='fashion_mnist')
  p.add_argument('--data_dir', default=None, help='TFDS data_dir shared by every run (prepared once)')
  p.add_argument('--manual_dir', default=None, help='original idx files (torch reads them directly)')
  p.add_argument('--feature_net_dir', default=None, help="the project's feature classifier (default: the "
                                                         "project's, under --data_dir; trained on first use)")
  p.add_argument('--feature_steps', type=int, default=None,
                 help='train steps of the feature classifier when it is trained here (default: its own; '
                      '--quick: 200)')
  p.add_argument('--seeds', default='0,1,2', help='comma-separated seeds, one run per system each')
  p.add_argument('--steps', type=int, default=2100, help='train steps of every run')
  p.add_argument('--num_samples', type=int, default=10000, help='generated images per score')
  p.add_argument('--kid_subsets', type=int, default=100, help='KID: random subsets of 1000 (or --num_samples) images')
  p.add_argument('--systems', default='torch,jax,jax_torchlike', help=f'which systems: {", ".join(SYSTEMS)}')
  p.add_argument('--modes', default='running,batch', help="G's batchnorm when sampling: running, batch or both")
  p.add_argument('--jax_flags', default='', help='extra launch/train.py flags for every JAX system')
  p.add_argument('--label', default='', help='name of this arm in the table and JSON')
  p.add_argument('--workroot', default='runs/quality_vs_torch', help='JAX workdirs go under here')
  p.add_argument('--torch_threads', type=int, default=2, help='torch.set_num_threads for the torch runs')
  p.add_argument('--log_every', type=int, default=0, help='training progress lines every N steps (0: steps/5)')
  p.add_argument('--quick', action='store_true', help='JAX systems only, tiny: digits, 8x8, 20 steps, 2 seeds')
  p.add_argument('--out', default=None, help='write every run and the table rows as JSON here (resumed if present)')
  p.add_argument('--merge', default=None, help='comma-separated --out files of earlier invocations (arms): print '
                                               'their rows as one table and train nothing')
  a = p.parse_args(argv)
  if a.quick:
    a.dataset = 'digits'
    a.systems = ','.join(s for s in a.systems.split(',') if s != 'torch') or 'jax'
    a.steps = a.steps if a.steps != 2100 else 20
    a.num_samples = min(a.num_samples, 128)
    a.kid_subsets = min(a.kid_subsets, 10)
    a.seeds = a.seeds if a.seeds != '0,1,2' else '0,1'
  a.seed_list = [int(s) for s in a.seeds.split(',') if s.strip()]
  a.system_list = [s for s in a.systems.split(',') if s]
  a.mode_list = [m for m in a.modes.split(',') if m]
  bad = [s for s in a.system_list if s not in SYSTEMS] + [m for m in a.mode_list if m not in MODES]
  if bad:
    p.error(f'unknown system or mode {bad}: systems {", ".join(SYSTEMS)}; modes {", ".join(MODES)}')
  return a


def jax_argv(a, arch, system, seed, workdir):
  argv = ['--model=dcgan', f'--dataset={a.dataset}', f'--workdir={workdir}', f'--steps={a.steps}', f'--seed={seed}',
          f'--resolution={arch["resolution"]}', f'--width={arch["width"]}', f'--kernel_size={arch["kernel_size"]}',
          f'--batch_size={arch["batch_size"]}', f'--z_dim={arch["z_dim"]}', '--sample_every=0',
          f'--checkpoint_every={a.steps}', f'--log_every={a.log_every or max(a.steps // 5, 1)}']
  argv += [f'--data_dir={a.data_dir}'] if a.data_dir else []
  argv += [f'--manual_dir={a.manual_dir}'] if a.manual_dir else []
  return argv + list(SYSTEMS[system]) + a.jax_flags.split()


def train_jax_cli(a, argv):
  """launch/train.py for one run (a subprocess; in-process under --quick); returns (seconds, its output)."""
  t0 = time.time()
  if a.quick:
    rc, log = api_train_in_process(argv)
  else:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'train.py')] + argv, capture_output=True,
                       text=True, env=env, cwd=ROOT)
    rc, log = r.returncode, r.stdout + r.stderr
  if rc != 0:
    raise RuntimeError(f'launch/train.py {" ".join(argv)} failed ({rc}):\n{log[-3000:]}')
  return time.time() - t0, log


def _duration(text: str) -> float:
  """Seconds of the loop's format_duration ('45s', '12m05s', '3h07m', '2d04h')."""
  units = {'d': 86400, 'h': 3600, 'm': 60, 's': 1}
  return float(sum(int(n) * units[u] for n, u in re.findall(r'(\d+)([dhms])', text)))


def loop_seconds(log: str):
  """Seconds of the CLI's training loop after its compiling first step, from its own 'done' and 'compile' lines."""
  done = re.search(r'done: \d+ steps in ([0-9dhms]+)', log)
  comp = re.search(r'first step \(compile\) took ([\d.]+)s', log)
  if not done:
    return None
  return _duration(done.group(1)) - (float(comp.group(1)) if comp else 0.0)


def last_progress(log: str) -> str:
  lines = [ln for ln in log.splitlines() if re.search(r'\bstep\b.*loss|d_loss|g_loss', ln)]
  return lines[-1].strip() if lines else ''


def score_run(a, net, real, sample, batch):
  out = {}
  for mode in a.mode_list:
    running = mode == 'running'
    # batch mode: statistics of batches of the training batch size, as G saw during training
    out[mode] = api_score(net, real, lambda key, b: sample(key, b, running), a.num_samples,
                          batch=min(500, a.num_samples) if running else batch, seed=1234, kid_subsets=a.kid_subsets)
  return out


def summarize(runs, a):
  rows = []
  sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
  for system in [s for s in SYSTEMS if any(r['system'] == s for r in runs)]:
    rs = sorted((r for r in runs if r['system'] == system), key=lambda r: r['seed'])
    for mode in [m for m in MODES if m in a.mode_list]:
      fids = [r['scores'][mode]['fid'] for r in rs]
      kids = [1e3 * r['scores'][mode]['kid'] for r in rs]
      rows.append(dict(system=system + (f' [{a.label}]' if a.label and system != 'torch' else ''), mode=mode,
                       steps=sorted({r['steps'] for r in rs}), seconds=statistics.mean(r['seconds'] for r in rs),
                       seconds_each=[r['seconds'] for r in rs],
                       fid_mean=statistics.mean(fids), fid_std=sd(fids), kid_mean=statistics.mean(kids),
                       kid_std=sd(kids), seeds=[r['seed'] for r in rs], fid=fids, kid=kids))
  return rows


def print_table(rows, a, wall):
  print(f'\nSample quality on {a.dataset} (test split), {a.num_samples:,} samples per score; the project\'s '
        'classifier features; KID x 10^3; mean ± std over seeds\n')
  print('| system | G batchnorm | steps | seconds | FID | KID x10^3 | FID per seed | KID per seed |')
  print('|---|---|---|---:|---:|---:|---|---|')
  for r in rows:
    print(f'| {r["system"]} | {r["mode"]} | {"/".join(map(str, r["steps"]))} | {r["seconds"]:.0f} '
          f'({", ".join(f"{s:.0f}" for s in r["seconds_each"])}) | {r["fid_mean"]:.3f} ± {r["fid_std"]:.3f} | '
          f'{r["kid_mean"]:.2f} ± {r["kid_std"]:.2f} | '
          + ', '.join(f'{s}: {v:.3f}' for s, v in zip(r['seeds'], r['fid'])) + ' | '
          + ', '.join(f'{s}: {v:.2f}' for s, v in zip(r['seeds'], r['kid'])) + ' |')
  print(f'\nseconds: mean (per seed) of the training loop (JAX: the CLI loop after its compiling step); '
        f'whole benchmark {wall:.0f}s')


def merge(paths):
  """One table of the rows of several --out files (e.g. the arms of an experiment, each its own invocation)."""
  print('| arm | system | G batchnorm | steps | FID | KID x10^3 | FID per seed | KID per seed |')
  print('|---|---|---|---|---:|---:|---|---|')
  for path in paths:
    with open(path) as f:
      r = json.load(f)
    for row in r['rows']:
      print(f'| {r.get("label") or "-"} | {row["system"]} | {row["mode"]} | {"/".join(map(str, row["steps"]))} | '
            f'{row["fid_mean"]:.3f} ± {row["fid_std"]:.3f} | {row["kid_mean"]:.2f} ± {row["kid_std"]:.2f} | '
            f'{", ".join(f"{v:.3f}" for v in row["fid"])} | {", ".join(f"{v:.2f}" for v in row["kid"])} |')


def _settings(a, arch):
  return dict(dataset=a.dataset, steps=a.steps, num_samples=a.num_samples, kid_subsets=a.kid_subsets, arch=arch,
              jax_flags=a.jax_flags, modes=a.mode_list)


def _write(a, result):
  if a.out:
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + '.tmp'
    with open(tmp, 'w') as f:
      json.dump(result, f, indent=1)
    os.replace(tmp, a.out)


def main(argv=None):
  a = parse(argv)
  if a.merge:
    return merge([p for p in a.merge.split(',') if p])
  t_start = time.time()
  arch = QUICK_ARCH if a.quick else ARCH
  channels = 1 if a.dataset in ('fashion_mnist', 'mnist', 'digits') else 3
  if 'torch' in a.system_list and not a.manual_dir:
    raise SystemExit('the torch runs read the idx files: give --manual_dir')
  settings = _settings(a, arch)
  runs = []
  if a.out and os.path.exists(a.out):
    with open(a.out) as f:
      old = json.load(f)
    if old.get('settings') == settings:
      runs = [r for r in old['runs'] if r['system'] in a.system_list and r['seed'] in a.seed_list]
      print(f'resuming {a.out}: {len(runs)} runs kept', flush=True)
    else:
      print(f'{a.out} holds runs of other settings: starting afresh', flush=True)
  net = api_feature_net(a.dataset, a.data_dir, a.manual_dir, a.feature_net_dir, train_steps=a.feature_steps or (200 if a.quick else None))
  real = api_real_stats(net, a.dataset, 'test', arch['resolution'], a.data_dir, a.manual_dir)
  data = None
  if 'torch' in a.system_list:
    import torch
    torch.set_num_threads(a.torch_threads)
  result = dict(settings=settings, runs=runs, label=a.label, feature_net=net.name, real_stats=real.path,
                real_n=real.n, root=ROOT, python=sys.executable, argv=sys.argv[1:] if argv is None else list(argv))

  for seed in a.seed_list:
    for system in a.system_list:
      if any(r['system'] == system and r['seed'] == seed for r in runs):
        continue
      t_run = time.time()
      extra = {}
      if system == 'torch':
        if data is None:
          data = torch_data(a.manual_dir, arch['resolution'])
        t = TorchDCGAN(arch, channels, seed, data=data)
        secs, last = t.train(a.steps, log_every=a.log_every or max(a.steps // 5, 1))
        sample, loop_s, proc_s = t.sampler(), secs, secs
        extra = dict(torch_threads=a.torch_threads, last_losses=dict(zip(('d_loss', 'g_loss', 'd_real', 'd_fake'),
                                                                         last)))
      else:
        tag = (system + (f'-{a.label}' if a.label else '')).replace('/', '_')
        wd = os.path.abspath(os.path.join(a.workroot, f'{tag}-steps{a.steps}-seed{seed}'))
        argv_j = jax_argv(a, arch, system, seed, wd)
        proc_s, log = train_jax_cli(a, argv_j)
        jax_sample, done, flags = api_jax_sampler(wd)
        assert done == a.steps, (done, a.steps)
        sample = lambda key, n, running, s=jax_sample: s(key, n, running)  # noqa: E731
        loop_s = loop_seconds(log)
        loop_s = proc_s if loop_s is None else loop_s
        extra = dict(workdir=wd, argv=argv_j, resolved=flags, last_progress=last_progress(log))
      t_score = time.time()
      scores = score_run(a, net, real, sample, arch['batch_size'])
      r = dict(system=system, seed=seed, steps=a.steps, seconds=loop_s, process_seconds=proc_s,
               score_seconds=time.time() - t_score, scores=scores, label=a.label, **extra)
      runs.append(r)
      print(f'{system} seed {seed}: {a.steps} steps, {loop_s:.0f}s loop ({proc_s:.0f}s process, '
            f'{time.time() - t_run:.0f}s with scoring) | ' + ' | '.join(
                f'{m}: FID {q["fid"]:.3f} KID {1e3 * q["kid"]:.2f}' for m, q in scores.items()), flush=True)
      result['rows'] = summarize(runs, a)
      _write(a, result)

  rows = summarize(runs, a)
  wall = time.time() - t_start
  print_table(rows, a, wall)
  result.update(rows=rows, wall_s=wall)
  _write(a, result)
  return result


if __name__ == '__main__':
  main()
