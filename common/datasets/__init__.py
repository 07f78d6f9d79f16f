"""Dataset plumbing behind ``common.data``: ``builders`` (TFDS builders for the embedded ``digits`` set and
for offline preparation from original files; imports ``tensorflow_datasets``) and ``codec`` (image bytes <->
arrays with Pillow). ``common.data`` imports both lazily.
"""
