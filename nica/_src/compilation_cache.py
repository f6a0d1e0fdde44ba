"""JAX's persistent compilation cache: compiled programs kept on disk, so that the next process
that runs the same computation loads them instead of compiling them again."""

from __future__ import annotations

import os
import pathlib

import jax
from jax.experimental.compilation_cache import compilation_cache

__all__ = ["enable_compilation_cache", "default_cache_dir"]


def default_cache_dir() -> pathlib.Path:
    """``$XDG_CACHE_HOME/nica/jax``, or ``~/.cache/nica/jax`` (``%LOCALAPPDATA%\\nica\\jax`` on
    Windows)."""
    base = os.environ.get("XDG_CACHE_HOME") or (os.environ.get("LOCALAPPDATA") if os.name == "nt" else None)
    return pathlib.Path(base or pathlib.Path.home() / ".cache") / "nica" / "jax"


def enable_compilation_cache(path=None, *, min_compile_time=0.0) -> pathlib.Path:
    """Keep the programs JAX compiles in a folder on disk, for later processes to reuse.

    A fit, ``transform`` or ``score`` compiles its programs (the jitted epoch, the forward
    pass, ...) the first time they run in a process, for the shapes and settings they meet:
    seconds, often more than the computation itself on small data.  With the cache on, a
    process that runs the same computation again (the same shapes, settings, JAX version and
    device) reads the compiled program from disk instead.  The ``nica`` command turns it on by
    default (``--no-compilation-cache`` turns it off); this function does the same in a Python
    process.  It sets JAX's ``jax_compilation_cache_dir`` and
    ``jax_persistent_cache_min_compile_time_secs``; call it before the computations to cache.

    The folder holds compiled code that JAX runs: do not share it with users you do not trust.
    It grows with every new computation and may be deleted at any time.

    Parameters
    ----------
    path : str or path-like, optional
        The folder, created if missing.  Default: ``$XDG_CACHE_HOME/nica/jax``, or
        ``~/.cache/nica/jax`` when ``XDG_CACHE_HOME`` is not set (``%LOCALAPPDATA%\\nica\\jax``
        on Windows).
    min_compile_time : float, default=0.0
        Programs that compiled in less time (seconds) are not written.

    Returns
    -------
    pathlib.Path
        The folder.

    Raises
    ------
    OSError
        If the folder cannot be created.

    Examples
    --------
    >>> import tempfile
    >>> import nica
    >>> folder = nica.enable_compilation_cache(tempfile.mkdtemp())  # doctest: +SKIP
    """
    folder = pathlib.Path(default_cache_dir() if path is None else os.fspath(path)).expanduser()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time))
    compilation_cache.reset_cache()  # a process that compiled already takes the new folder too
    return folder
