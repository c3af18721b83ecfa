"""The version of daskreg, in one place: pyproject.toml reads it (setuptools ``attr``).

A module of its own so that any part of the package can record the version without
importing ``daskreg/__init__`` (which imports the whole public API).
"""

__version__ = "0.1.0"
