"""Datasets: ``prepare`` (which prepared copy to use, or how to make one: official TFDS data, our offline
builders, manual files, download), ``sources`` (``open_source`` -> random-access ``Source``), ``builders``
(TFDS builders for the embedded ``digits`` set and for offline preparation from original files; imports
``tensorflow_datasets``), ``codec`` (image bytes <-> arrays with Pillow), ``synthetic`` (photo-like images
for tests and benchmarks) and ``errors`` (``DataError``). ``common.data`` re-exports the public names.
"""
