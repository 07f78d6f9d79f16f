"""Command-line tools: thin argument parsing over one library call each (``python launch/<tool>.py`` or, once
installed, ``dcgan-jax <tool>``)."""
