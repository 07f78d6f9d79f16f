"""The data layer's public names in one place (kept for existing callers; new code may import the modules).

  common.datasets.prepare   preparation policy: official / ours / manual_dir / download; ``data_root``,
                            ``preparation_lock``, ``KNOWN_DATASETS``
  common.datasets.sources   ``open_source`` -> (``Source``, ``DatasetInfo``)
  common.datasets.errors    ``DataError``
  common.preprocess         ``preprocess`` (resize, crop, flip, scale to [-1, 1])
  common.input_pipeline     ``Batches`` (deterministic, resumable, Grain workers), ``prefetch_to_device``
"""
from common.datasets.errors import DataError
from common.datasets.prepare import KNOWN_DATASETS, data_root, preparation_lock
from common.datasets.sources import DatasetInfo, Source, open_source
from common.input_pipeline import CACHE_BYTES, Batches, default_workers, prefetch_to_device
from common.preprocess import preprocess

__all__ = ['CACHE_BYTES', 'KNOWN_DATASETS', 'Batches', 'DataError', 'DatasetInfo', 'Source', 'data_root',
           'default_workers', 'open_source', 'prefetch_to_device', 'preparation_lock', 'preprocess']
