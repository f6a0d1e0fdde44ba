"""The ``nica`` command line.

::

    nica demo [--quick] [--figure PATH]
    nica fit DATA [--aux U] --model OUT [estimator options] [--checkpoint FILE] [--resume FILE]
    nica transform MODEL DATA -o OUT
    nica inverse-transform MODEL DATA -o OUT
    nica score MODEL DATA [--aux U] [-o OUT]
    nica sample MODEL [-n N] -o OUT [--aux U | --label L]

Data files are ``.npy``, ``.npz`` (the array named ``X``, or the only one; ``file.npz:key``
picks another) or ``.csv`` (comma-separated numbers, an optional header line).  Every error,
whatever its cause (a bad option, a missing, unreadable or corrupt file, an unknown label, a
model written by another nica version, running out of memory), prints one line on stderr and
exits with status 2 (130 when interrupted); nothing prints a traceback.  Outputs are written to
a temporary file that replaces the destination only once complete.

Ctrl-C, at any moment (the console script starts in ``nica_launcher``, which handles it before
JAX is imported), ends the process with status 130 and one line; an interrupted ``fit`` stops
when its running epoch ends, and the line names the checkpoint written then (``--checkpoint``)
and the command that resumes it, or says that nothing was saved.

The choices of ``--activation``, ``--prior``, ``--gradient`` and ``--objective-term`` are the
names registered in :mod:`nica.activations`, :mod:`nica.priors`, :mod:`nica.gradients` and
:mod:`nica.objectives` when the parser is built, or nica's own names when those modules are not
loaded yet: the parser is built, and ``--help`` or a bad command line answered, before JAX,
scikit-learn and SciPy are imported; they are imported once a command runs.

Every command that computes keeps JAX's compiled programs on disk for the next runs
(:func:`nica.enable_compilation_cache`): in ``--compilation-cache DIR``, else in
``$NICA_COMPILATION_CACHE``, else in ``$XDG_CACHE_HOME/nica/jax`` (``~/.cache/nica/jax``);
``--no-compilation-cache`` or ``NICA_COMPILATION_CACHE=off`` turns that off.
"""

from typing import TYPE_CHECKING

from nica._src import _lazy
from nica.cli._files import CLIError, read_array, write_array
from nica.cli._main import build_parser, main

if TYPE_CHECKING:  # the same names as _LAZY below, for type checkers and IDEs
    from nica.cli._commands import load_checkpoint
    from nica.cli._models import load_model, save_model

__all__ = [
    "main",
    "build_parser",
    "CLIError",
    "read_array",
    "write_array",
    "load_model",
    "save_model",
    "load_checkpoint",
]

# {public name: the module it is imported from, on first use}: these load JAX
_LAZY = {
    "load_model": "nica.cli._models",
    "save_model": "nica.cli._models",
    "load_checkpoint": "nica.cli._commands",
}

__getattr__, __dir__ = _lazy.attach(__name__, _LAZY, __all__)
