"""One full train step, JAX against PyTorch on identical networks, side by side in one process.

  pip install -e '.[bench]'                 # PyTorch, benchmark only
  python benchmarks/train_step.py           # every configuration (several minutes on 2 CPU cores)
  python benchmarks/train_step.py --quick   # one small configuration, under a minute
  python benchmarks/train_step.py --configs=dcgan64 --batch_sizes=128 --torch_compile

For each configuration both frameworks run the same step as in training (DCGAN: one D update on a real
and a fake batch, then one G update with the non-saturating loss against the updated D, reusing G's
forward; BiGAN: D, G and E updated simultaneously from one forward pass, G/E with the inverse objective),
same layers, shapes, losses and Adam. After warm-up the two alternate, and the median of --reps timed
steps is reported. One JSON object per configuration goes to stdout:

  model, resolution, batch_size, jax_img_per_s, torch_img_per_s, torch_compile_img_per_s (null unless
  --torch_compile and it works), ratio (jax over the faster torch), jax_compile_s, jax_step_ms,
  torch_step_ms, pipeline_img_per_s (the input pipeline on the embedded digits data at that resolution,
  to show whether training would be input-bound), device, xla_flags (what XLA ran with: the project's
  defaults from common/xla_flags.py unless DCGAN_JAX_XLA_DEFAULTS=0).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LEGACY_BIGAN = dict(z_into_d='every_layer', layer_bias=True, z_into_g=False, data_range='symmetric',
                    encoder_output='linear', alexnet_pool5=True)
# name: (Config overrides, channels). DCGAN widths follow the paper (4x4x1024 at 64x64) unless noted.
CONFIGS = {
    'dcgan32': (dict(model='dcgan', resolution=32, width=128, kernel_size=5), 3),
    'dcgan64': (dict(model='dcgan', resolution=64, width=128, kernel_size=5), 3),
    'dcgan64_pytorch_example': (dict(model='dcgan', resolution=64, width=64, kernel_size=4), 3),   # ngf=ndf=64, 4x4
    # BiGAN with the networks the PyTorch halves below mirror: z added after BN at every layer and the logit,
    # biases, tanh G, linear E output, AlexNet pool5 (this project's networks before it followed the authors'
    # code; the step's cost is nearly the same).
    'bigan_mlp28': (dict(model='bigan', architecture='mlp', resolution=28, **LEGACY_BIGAN), 1),
    'bigan_conv64': (dict(model='bigan', architecture='conv', resolution=64, encoder='alexnet', **LEGACY_BIGAN), 3),
    'tiny': (dict(model='dcgan', resolution=8, width=8, kernel_size=5, z_dim=16), 1),                  # for tests
}
DEFAULT = 'dcgan32,dcgan64,dcgan64_pytorch_example,bigan_mlp28,bigan_conv64'


# -- JAX -------------------------------------------------------------------------------------------------------

def jax_step(name: str, batch_size: int, dtype: str = 'float32'):
  """(step() -> None that runs one full step and waits for it, compile seconds, model)."""
  import jax
  import numpy as np
  from common import parallel, registry
  from common.config import Config
  from common.model import DataFacts
  overrides, channels = CONFIGS[name]
  config = Config.make(**overrides, batch_size=batch_size, dtype=dtype, steps=10**6)
  model = registry.build(config, DataFacts(channels, 10))
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = jax.jit(model.init, out_shardings=parallel.replicated(mesh))(jax.random.PRNGKey(0))
  r = model.data_options()['resolution']
  rng = np.random.default_rng(0)
  batch = parallel.global_batch(mesh, {'image': rng.uniform(-1, 1, (batch_size, r, r, channels)).astype(np.float32),
                                       'label': rng.integers(0, 10, batch_size).astype(np.int32)})
  train_step = parallel.data_parallel(model.train_step, mesh)
  box = [state]

  def step():
    box[0], m = train_step(box[0], batch)
    jax.block_until_ready(m)

  t = time.perf_counter()
  step()
  return step, time.perf_counter() - t, model


# -- PyTorch: the same networks and steps ----------------------------------------------------------------------

def _torch_nets(name: str, model):
  import torch
  from torch import nn
  overrides, channels = CONFIGS[name]
  c = model.config

  def bn(n, affine=True):
    return nn.BatchNorm2d(n, momentum=0.1, eps=1e-5, affine=affine)

  def same_pad(k):  # for stride 2: out = in / 2 (PyTorch's DCGAN uses k=4, p=1; k=5 -> p=2)
    return (k - 1) // 2

  if overrides['model'] == 'dcgan':
    from common.networks import layer_widths
    w = layer_widths(model.resolution, c.model.width)
    k = c.model.kernel_size

    class G(nn.Module):
      def __init__(self):
        super().__init__()
        self.project = nn.Linear(model.z_dim, 16 * w[0], bias=False)
        self.bn0 = bn(w[0])
        ups = []
        for i, (a, b) in enumerate(zip(w, w[1:] + [channels])):
          last = i == len(w) - 1
          ups.append(nn.ConvTranspose2d(a, b, k, 2, padding=same_pad(k), output_padding=k % 2, bias=last))
          ups += [nn.Tanh()] if last else [bn(b), nn.ReLU()]
        self.ups = nn.Sequential(*ups)

      def forward(self, z):
        return self.ups(torch.relu(self.bn0(self.project(z).view(-1, w[0], 4, 4))))

    def disc():
      mods, cin = [], channels
      for i, cout in enumerate(w[::-1]):
        mods += [nn.Conv2d(cin, cout, k, 2, padding=same_pad(k), bias=i == 0)]
        mods += ([] if i == 0 else [bn(cout)]) + [nn.LeakyReLU(0.2)]
        cin = cout
      return nn.Sequential(*mods, nn.Flatten(), nn.Linear(16 * w[0], 1))
    return {'G': G(), 'D': disc()}

  # BiGAN
  zd = model.z_dim
  if model.architecture == 'mlp':
    hdim, npix = getattr(c, 'hidden', None) or 1024, model.resolution ** 2 * channels

    class MLPG(nn.Module):
      def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(zd, hdim), nn.Linear(hdim, hdim, bias=False)
        self.bn2, self.out = nn.BatchNorm1d(hdim, affine=False), nn.Linear(hdim, npix)

      def forward(self, z):
        return torch.tanh(self.out(torch.relu(self.bn2(self.fc2(torch.relu(self.fc1(z)))))))

    class MLPE(nn.Module):
      def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(npix, hdim), nn.Linear(hdim, hdim, bias=False)
        self.bn2, self.out = nn.BatchNorm1d(hdim, affine=False), nn.Linear(hdim, zd)

      def forward(self, x):
        h = nn.functional.leaky_relu(self.fc1(x.flatten(1)), 0.2)
        return self.out(nn.functional.leaky_relu(self.bn2(self.fc2(h)), 0.2))

    class MLPD(nn.Module):
      def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(npix, hdim), nn.Linear(hdim, hdim, bias=False)
        self.bn2, self.logit = nn.BatchNorm1d(hdim, affine=False), nn.Linear(hdim, 1)
        self.z1, self.z2, self.zl = (nn.Linear(zd, hdim, bias=False), nn.Linear(zd, hdim, bias=False),
                                     nn.Linear(zd, 1, bias=False))

      def forward(self, x, z):
        h = nn.functional.leaky_relu(self.fc1(x.flatten(1)) + self.z1(z), 0.2)
        h = nn.functional.leaky_relu(self.bn2(self.fc2(h)) + self.z2(z), 0.2)
        return self.logit(h) + self.zl(z)
    return {'G': MLPG(), 'D': MLPD(), 'E': MLPE()}

  from common.networks import layer_widths
  dc = _torch_nets('dcgan64', model)  # the conv G is DCGAN's generator (with this model's z_dim)
  w, k = layer_widths(model.resolution, c.model.width), c.model.kernel_size

  class JointD(nn.Module):
    def __init__(self):
      super().__init__()
      self.convs, self.bns, self.zs, cin = nn.ModuleList(), nn.ModuleList(), nn.ModuleList(), channels
      for i, cout in enumerate(w[::-1]):
        self.convs.append(nn.Conv2d(cin, cout, k, 2, padding=same_pad(k), bias=i == 0))
        self.bns.append(nn.Identity() if i == 0 else bn(cout))
        self.zs.append(nn.Linear(zd, cout, bias=False))
        cin = cout
      self.logit, self.zl = nn.Linear(16 * w[0], 1), nn.Linear(zd, 1, bias=False)

    def forward(self, x, z):
      h = x
      for conv, b, zl in zip(self.convs, self.bns, self.zs):
        h = nn.functional.leaky_relu(b(conv(h)) + zl(z)[:, :, None, None], 0.2)
      return self.logit(h.flatten(1)) + self.zl(z)

  def alexnet():
    from bigan_jax.models import ALEXNET
    mods, cin = [], channels
    for name_, kk, s, cout, g, pool in ALEXNET:
      mods += [nn.Conv2d(cin, cout, kk, s, padding=(kk - 1) // 2 if s == 1 else 4, groups=g, bias=False), bn(cout),
               nn.LeakyReLU(0.2)]
      mods += [nn.MaxPool2d(3, 2, padding=1)] if pool else []
      cin = cout
    res = model.data_options()['resolution']
    with torch.no_grad():
      n = nn.Sequential(*mods)(torch.zeros(2, channels, res, res)).flatten(1).shape[1]
    return nn.Sequential(*mods, nn.Flatten(), nn.Linear(n, zd))

  return {'G': dc['G'], 'D': JointD(), 'E': alexnet()}


def torch_step(name: str, model, batch_size: int, compile_: bool = False):
  import torch
  from torch import nn
  torch.manual_seed(0)
  nets = _torch_nets(name, model)
  for n in nets.values():
    for m in n.modules():
      if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
  if compile_:
    nets = {k: torch.compile(v) for k, v in nets.items()}
  c = model.config
  bce = nn.BCEWithLogitsLoss()
  r, ch = model.data_options()['resolution'], CONFIGS[name][1]
  x = torch.rand(batch_size, ch, r, r) * 2 - 1
  if CONFIGS[name][0]['model'] == 'dcgan':
    G, D = nets['G'], nets['D']
    opt_g = torch.optim.Adam(G.parameters(), lr=c.model.lr, betas=(c.model.beta1, c.model.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=c.model.lr, betas=(c.model.beta1, c.model.beta2))
    ones, zeros = torch.ones(batch_size, 1), torch.zeros(batch_size, 1)

    def step():  # PyTorch's examples/dcgan step
      z = torch.rand(batch_size, model.z_dim) * 2 - 1
      fake = G(z)
      opt_d.zero_grad(set_to_none=True)
      d_loss = bce(D(x), ones) + bce(D(fake.detach()), zeros)
      d_loss.backward()
      opt_d.step()
      opt_g.zero_grad(set_to_none=True)
      g_loss = bce(D(fake), ones)
      g_loss.backward()
      opt_g.step()
  else:
    G, D, E = nets['G'], nets['D'], nets['E']

    def groups(net):  # L2 weight decay on multiplicative weights only
      decay = [p for n_, p in net.named_parameters() if p.ndim > 1]
      rest = [p for n_, p in net.named_parameters() if p.ndim <= 1]
      return [{'params': decay, 'weight_decay': c.model.weight_decay}, {'params': rest, 'weight_decay': 0.0}]
    opt_d = torch.optim.Adam(groups(D), lr=c.model.lr, betas=(c.model.beta1, c.model.beta2))
    opt_ge = torch.optim.Adam(groups(G) + groups(E), lr=c.model.lr, betas=(c.model.beta1, c.model.beta2))
    ones, zeros = torch.ones(batch_size, 1), torch.zeros(batch_size, 1)
    d_params = list(D.parameters())
    ge_params = list(G.parameters()) + list(E.parameters())
    x_in = x.flatten(1) if model.architecture == 'mlp' else x

    def step():  # simultaneous update: every gradient at the current parameters
      z = torch.rand(batch_size, model.z_dim) * 2 - 1
      ez, gz = E(x_in), G(z)
      lr_, lf = D(x_in, ez), D(gz, z)
      d_loss = bce(lr_, ones) + bce(lf, zeros)
      ge_loss = bce(lr_, zeros) + bce(lf, ones)      # inverse objective
      gd = torch.autograd.grad(d_loss, d_params, retain_graph=True)
      gge = torch.autograd.grad(ge_loss, ge_params)
      for p, g in zip(d_params + ge_params, list(gd) + list(gge)):
        p.grad = g
      opt_d.step()
      opt_ge.step()
  t = time.perf_counter()
  step()
  return step, time.perf_counter() - t


def pipeline_img_per_s(resolution: int, batch_size: int, steps: int = 50) -> float:
  from common import data
  src, _ = data.open_source('digits', data_dir=os.environ.get('TFDS_DATA_DIR'))
  with data.Batches(src, global_batch=batch_size, resolution=resolution, seed=0) as it:
    next(it)
    t = time.perf_counter()
    for _ in range(steps):
      next(it)
    return steps * batch_size / (time.perf_counter() - t)


def _median_s(fn, reps):
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def run(name, batch_size, reps, torch_=True, compile_=False, dtype='float32', pipeline=True):
  import jax
  jstep, jcompile, model = jax_step(name, batch_size, dtype)
  tstep = cstep = None
  tcompile = None
  if torch_:
    tstep, _ = torch_step(name, model, batch_size)
    if compile_:
      try:
        cstep, tcompile = torch_step(name, model, batch_size, compile_=True)
      except Exception as e:  # torch.compile is not available everywhere
        print(f'torch.compile failed for {name}: {type(e).__name__}: {str(e)[:200]}', file=sys.stderr)
  jstep()
  for f in (tstep, cstep):
    if f:
      f()
  tj, tt, tc = [], [], []
  for _ in range(reps):   # alternate, so that both see the same machine state
    tj.append(_median_s(jstep, 1))
    if tstep:
      tt.append(_median_s(tstep, 1))
    if cstep:
      tc.append(_median_s(cstep, 1))
  ips = lambda ts: round(batch_size / statistics.median(ts), 1) if ts else None
  j, t, c = ips(tj), ips(tt), ips(tc)
  best_torch = max([v for v in (t, c) if v] or [0]) or None
  res = model.data_options()['resolution']
  return {'model': name, 'resolution': res, 'batch_size': batch_size, 'dtype': dtype,
          'jax_img_per_s': j, 'torch_img_per_s': t, 'torch_compile_img_per_s': c,
          'ratio': round(j / best_torch, 2) if best_torch else None,
          'jax_compile_s': round(jcompile, 2), 'torch_compile_s': round(tcompile, 1) if tcompile else None,
          'jax_step_ms': round(1000 * statistics.median(tj), 1),
          'torch_step_ms': round(1000 * statistics.median(tt), 1) if tt else None,
          'pipeline_img_per_s': round(pipeline_img_per_s(res, batch_size)) if pipeline else None,
          'device': f'{jax.devices()[0].platform}:{jax.devices()[0].device_kind}',
          'xla_flags': os.environ.get('XLA_FLAGS', '')}   # common/xla_flags.py's defaults included


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--configs', default=DEFAULT, help=f'comma list of {sorted(CONFIGS)}')
  p.add_argument('--batch_sizes', default='64,128')
  p.add_argument('--reps', type=int, default=7, help='timed steps per framework (median reported)')
  p.add_argument('--quick', action='store_true', help='one small configuration (dcgan32, batch 64), < 1 minute')
  p.add_argument('--jax_only', action='store_true', help='skip PyTorch (e.g. where it is not installed)')
  p.add_argument('--torch_compile', action='store_true', help='also time torch.compile (minutes of compiling)')
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'), help='JAX compute dtype')
  p.add_argument('--no_pipeline', action='store_true', help='skip the input-pipeline measurement')
  a = p.parse_args(argv)
  if a.quick:
    a.configs, a.batch_sizes, a.reps = 'dcgan32', '64', 2
  torch_ = not a.jax_only
  if torch_:
    try:
      import torch
      torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
      print('PyTorch is not installed (pip install -e .[bench]); timing JAX only', file=sys.stderr)
      torch_ = False
  out = []
  for name in a.configs.split(','):
    for b in map(int, a.batch_sizes.split(',')):
      r = run(name, b, a.reps, torch_, a.torch_compile, a.dtype, not a.no_pipeline)
      print(json.dumps(r), flush=True)
      out.append(r)
  return out


if __name__ == '__main__':
  main()
