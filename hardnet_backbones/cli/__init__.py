"""Command-line entry points (``hardnet-classify``, ...); ``tools/*.py`` are thin wrappers around them."""
