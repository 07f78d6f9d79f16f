"""Progress lines of long work: count, rate and ETA every few seconds; silent for short work."""
import io

from common import metrics
from common.progress import Progress, format_duration

import numpy as np


def test_format_duration_reads_as_people_write_it():
  assert [format_duration(s) for s in (0, 45, 725, 11220, 187200)] == ['0s', '45s', '12m05s', '3h07m', '2d04h']


def test_progress_prints_count_rate_eta_then_a_final_line():
  out = io.StringIO()
  bar = Progress('k-NN', 100, unit='rows', every=0.0, stream=out)
  for _ in range(4):
    bar.update(25)
  bar.close()
  lines = out.getvalue().splitlines()
  assert lines[0].startswith('k-NN: 25/100 rows (25%)') and 'rows/s, eta ' in lines[0]
  assert len(lines) == 4 and lines[-1].startswith('k-NN: 100 rows in ')


def test_progress_is_silent_for_short_work_or_without_a_name():
  out = io.StringIO()
  bar = Progress('quick', 10, every=60.0, stream=out)
  bar.update(10)
  bar.close()
  silent = Progress(None, 10, every=0.0, stream=out)
  silent.update(5)
  silent.close()
  assert out.getvalue() == ''


def test_knn_reports_progress_and_the_same_answer(capsys, monkeypatch):
  monkeypatch.setattr(Progress.__init__, '__defaults__', ('images', 0.0, None))   # print at every update
  rng = np.random.default_rng(0)
  train, test = rng.normal(size=(300, 4)).astype(np.float32), rng.normal(size=(50, 4)).astype(np.float32)
  labels = rng.integers(0, 3, 300)
  a = metrics.knn_predict(train, labels, test, metric='l2', chunk=16)
  b = metrics.knn_predict(train, labels, test, metric='l2', chunk=16, progress='k-NN')
  assert np.array_equal(a, b)
  err = capsys.readouterr().err
  assert 'k-NN: 16/50 queries' in err and 'k-NN: 50 queries in' in err
