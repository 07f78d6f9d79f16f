"""Latent-space tools (DCGAN 6.1, 6.3; Figures 4, 6, 7, 8): what each operation computes, and the CLI."""
import contextlib
import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import parallel
from dcgan_jax import forget
from dcgan_jax import latent_tools as lt


@pytest.fixture(scope='module')
def tiny(tiny_dcgan_run):
  from common import checkpoint
  model, state, _ = checkpoint.load(tiny_dcgan_run)
  return model, parallel.on_one_device(state)


# -- expressions and z arithmetic ---------------------------------------------------------------------------


def test_parse_expressions():
  assert lt.parse_arithmetic('3,7,12 - 5,9,21 + 40,41,42') == [(1, [3, 7, 12]), (-1, [5, 9, 21]), (1, [40, 41, 42])]
  assert lt.parse_arithmetic('-1,2 + 3') == [(-1, [1, 2]), (1, [3])]
  assert lt.parse_direction(' 1, 2,3 -> 4,5,6') == ([1, 2, 3], [4, 5, 6])
  for bad in ('3,a - 4', '3,7 -', ''):
    with pytest.raises(ValueError):
      lt.parse_arithmetic(bad)
  with pytest.raises(ValueError):
    lt.parse_direction('1,2,3')


def test_arithmetic_is_exact_and_neighbours_lie_within_the_noise_scale():
  rng = np.random.default_rng(0)
  a, b, c = (rng.uniform(-1, 1, (k, 100)).astype(np.float32) for k in (3, 3, 2))
  y = np.asarray(lt.combine([a, b, c], [1, -1, 1]))
  np.testing.assert_allclose(y, a.mean(0) - b.mean(0) + c.mean(0), rtol=0, atol=1e-6)
  grid = np.asarray(lt.arithmetic_grid(jax.random.PRNGKey(0), jnp.asarray(y), 0.25))
  assert grid.shape == (9, 100)
  assert np.array_equal(grid[4], y)                                  # Y itself in the centre
  others = np.delete(grid, 4, axis=0)
  assert np.all(np.abs(others - y) <= 0.25) and np.abs(others - y).max() > 0.2   # U(-0.25, 0.25) around Y
  assert len({tuple(r) for r in others}) == 8
  px = np.asarray(lt.pixel_arithmetic([np.ones((2, 4, 4, 1)), -np.ones((3, 4, 4, 1))], [1, 1]))
  assert np.all(px == 0)


def test_direction_and_walk_endpoints():
  rng = np.random.default_rng(1)
  za, zb = rng.uniform(-1, 1, (3, 8)), rng.uniform(-1, 1, (4, 8))
  d = np.asarray(lt.direction(za, zb))
  np.testing.assert_allclose(d, zb.mean(0) - za.mean(0), atol=1e-6)
  z0 = rng.uniform(-1, 1, (5, 8)).astype(np.float32)
  w = np.asarray(lt.along(z0, d, steps=6))
  assert w.shape == (5, 6, 8)
  np.testing.assert_allclose(w[:, 0], z0, atol=1e-6)
  np.testing.assert_allclose(w[:, -1], z0 + d, atol=1e-6)
  np.testing.assert_allclose(np.diff(w, axis=1), np.broadcast_to(d / 5, (5, 5, 8)), atol=1e-5)  # evenly spaced
  walks = np.asarray(lt.walks(jax.random.PRNGKey(0), rows=2, steps=5, z_dim=8))
  assert walks.shape == (2 * 2 * 5, 8)
  lin, sph = walks[:5], walks[5:10]                   # one pair of end points, both paths
  np.testing.assert_allclose(lin[[0, -1]], sph[[0, -1]], atol=1e-5)
  assert not np.allclose(lin[2], sph[2])


# -- sheets on a trained run --------------------------------------------------------------------------------


def test_sheet_keeps_the_z_that_regenerate_its_images(tiny, tmp_path):
  model, state = tiny
  sheet = lt.numbered_sheet(model, state, jax.random.PRNGKey(3), 12)
  png, npz = lt.save_sheet(str(tmp_path / 'sheet.png'), sheet, workdir='x', step=40)
  assert os.path.getsize(png) > 0 and npz.endswith('sheet.npz')
  loaded = lt.load_sheet(png, model.z_dim)
  assert loaded['labels'] is None and loaded['z'].shape == (12, model.z_dim) and int(loaded['step']) == 40
  again = np.asarray(model.generate(state, jnp.asarray(loaded["z"]), use_running_average=True))
  np.testing.assert_array_equal(again, sheet['images'])
  # The numbers are drawn on the cells: the numbered sheet differs from the plain grid only in cell corners.
  numbered = lt.numbered_grid(sheet['images'], ncol=4)
  from common import images, visualize
  plain = visualize.to_rgb(visualize.upscale(images.grid(sheet['images'], 4), 4))
  assert numbered.shape == plain.shape and not np.array_equal(numbered, plain)
  with pytest.raises(ValueError, match='dimension'):
    lt.load_sheet(png, model.z_dim + 1)
  with pytest.raises(ValueError, match='not on the sheet'):
    lt.pick(loaded, [0, 12])


def test_vector_arithmetic_on_sheet_exemplars(tiny, tmp_path):
  model, state = tiny
  sheet = lt.numbered_sheet(model, state, jax.random.PRNGKey(4), 16)
  terms = lt.parse_arithmetic('0,1,2 - 3,4,5 + 6,7,8')
  r = lt.vector_arithmetic(model, state, sheet, terms, jax.random.PRNGKey(0))
  z = sheet['z']
  np.testing.assert_allclose(r['y'], z[0:3].mean(0) - z[3:6].mean(0) + z[6:9].mean(0), atol=1e-6)
  assert np.array_equal(r['grid_z'][4], r['y'])
  np.testing.assert_allclose(r['grid'][4], np.asarray(model.generate(state, jnp.asarray(r["y"])[None], use_running_average=True))[0], atol=1e-6)
  np.testing.assert_allclose(r['exemplars'][0], sheet['images'][0:3], atol=1e-6)
  px = np.clip(sheet['images'][0:3].mean(0) - sheet['images'][3:6].mean(0) + sheet['images'][6:9].mean(0), -1, 1)
  np.testing.assert_allclose(r['pixel'], px, atol=1e-5)
  fig = lt.arithmetic_figure(r)
  assert fig.ndim == 3 and fig.shape[2] == 3


# -- forgetting ---------------------------------------------------------------------------------------------


def test_box_cells():
  inside = forget.box_cells([(0, 0, 8, 8)], resolution=16, size=4)     # the top-left quarter
  assert inside.sum() == 4 and inside[:2, :2].all()
  tiny_box = forget.box_cells([(5, 9, 6, 10)], resolution=16, size=4)   # holds no cell centre: its own cell
  assert tiny_box.sum() == 1 and tiny_box[2, 1]
  with pytest.raises(ValueError, match='x0 < x1'):
    forget.parse_boxes({'1': [[5, 5, 2, 8]]})
  with pytest.raises(ValueError, match='no boxes'):
    forget.parse_boxes({'1': []})


def test_logistic_regression_selects_the_maps_that_fire_in_the_boxes():
  """Synthetic activations: maps 0-3 are high inside the boxes, 4-7 low there, 8-15 noise."""
  rng = np.random.default_rng(0)
  n, h, c = 12, 8, 16
  acts = rng.uniform(0, 1, (n, h, h, c)).astype(np.float32)
  boxes = []
  for _ in range(n):
    x0, y0 = (int(v) for v in rng.integers(0, 6, 2) * 4)
    boxes.append([(x0, y0, x0 + 12, y0 + 12)])              # 3x3 cells of 4 px
  for k in range(n):
    m = forget.box_cells(boxes[k], resolution=32, size=h)
    acts[k][m, :4] += 1.0
    acts[k][m, 4:8] *= 0.2
  x, t = forget.examples(acts, boxes, 32, rng)
  assert t.sum() == len(t) - t.sum() > 0                              # balanced positives and negatives
  w, b, acc = forget.fit_logistic(jnp.asarray(x), jnp.asarray(t))
  w = np.asarray(w)
  assert float(acc) > 0.95
  assert np.all(w[:4] > 0) and np.all(w[4:8] < 0)                    # drop the "object" maps, keep the others
  assert set(np.argsort(-w)[:4]) == {0, 1, 2, 3}


def test_dropped_maps_are_zero_in_the_forward_pass_and_change_the_output(tiny, tmp_path):
  model, state = tiny
  sheet = lt.numbered_sheet(model, state, jax.random.PRNGKey(5), 8)
  r = forget.forget(model, state, sheet, {0: [(0, 0, 8, 8)], 1: [(8, 8, 16, 16)], 2: []})
  layer, mask = r['layer'], r['mask']
  assert layer == forget.default_layer(model) == 'project'           # 16x16: hidden layers project, conv1
  assert 0 < r['dropped'] == mask.sum() < len(mask) and r['positives'] > 0
  assert np.array_equal(mask, (r['weights'] > 0).astype(np.float32))
  G = model.networks()['G']
  z = jnp.asarray(sheet['z'])
  _, col = G.apply(state.variables('G'), z, train=False, drop={layer: jnp.asarray(mask)}, mutable=['intermediates'])
  acts = np.asarray(col['intermediates'][f'{layer}_act'][0])
  assert np.all(acts[..., mask > 0] == 0)
  kept_acts = np.asarray(forget.activations(model, state, z, None, layer))[..., mask == 0]
  np.testing.assert_allclose(acts[..., mask == 0], kept_acts, atol=1e-5)        # the other maps untouched
  orig, forgot = forget.with_and_without(model, state, z, mask, layer)
  assert np.array_equal(orig, np.asarray(model.generate(state, z, use_running_average=True)))
  assert np.abs(orig - forgot).max() > 1e-3


# -- command line -------------------------------------------------------------------------------------------


def test_cli_every_operation_writes_pngs(tiny_dcgan_run, tmp_path, load_cli):
  cli = load_cli('latent')
  wd, d = tiny_dcgan_run, tmp_path
  sheet = str(d / 'sheet.png')

  def run(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      assert cli.main([f'--workdir={wd}', *args]) == 0
    return out.getvalue()

  run(f'--sheet={sheet}', '--num=16')
  assert os.path.exists(sheet) and os.path.exists(d / 'sheet.npz')
  run('--walk', '--rows=2', '--steps=4', f'--out={d / "walk.png"}')
  run('--arithmetic=0,1,2 - 3,4,5 + 6,7,8', f'--from_sheet={sheet}', f'--out={d / "arith.png"}')
  z = np.load(d / 'sheet.npz')['z']
  y = np.load(d / 'arith.npz')['y']
  np.testing.assert_allclose(y, z[0:3].mean(0) - z[3:6].mean(0) + z[6:9].mean(0), atol=1e-6)
  run('--direction=0,1 -> 2,3', f'--from_sheet={d / "sheet.npz"}', '--num=3', '--steps=4', f'--out={d / "dir.png"}')
  (d / 'boxes.json').write_text(json.dumps({'0': [[0, 0, 8, 8]], '5': [[4, 4, 12, 12]], '7': []}))
  text = run(f'--forget={d / "boxes.json"}', f'--from_sheet={sheet}', '--num=4', f'--out={d / "forget.png"}')
  assert 'dropping' in text
  for name in ('walk', 'arith', 'dir', 'forget'):
    assert os.path.getsize(d / f'{name}.png') > 0, name
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    assert cli.main([f'--workdir={wd}', '--arithmetic=0,99 - 1', f'--from_sheet={sheet}']) == 1
  assert 'not on the sheet' in err.getvalue()
  err = io.StringIO()
  with contextlib.redirect_stderr(err):                              # refused at parse time: exit status 1
    assert cli.main([f'--workdir={wd}', '--arithmetic=0 - 1']) == 1   # needs --from_sheet
  assert '--from_sheet' in err.getvalue()
