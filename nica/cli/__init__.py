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
:mod:`nica.objectives` when the parser is built.
"""

from nica.cli._commands import load_checkpoint
from nica.cli._files import CLIError, read_array, write_array
from nica.cli._main import build_parser, main
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
