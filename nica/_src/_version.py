"""nica's version, in a module that imports nothing: ``nica.__version__`` and ``nica --version``
read it without loading JAX, and every saved file records it (:mod:`nica._src.persistence`)."""

__all__ = ["VERSION"]

VERSION = "0.2.0"  # keep equal to pyproject.toml's version
