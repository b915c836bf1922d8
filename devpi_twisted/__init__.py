"""devpi-twisted: a package index server (PyPI mirror and private indexes) on Twisted."""

__version__ = "0.1.0"
