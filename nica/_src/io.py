"""Files: atomic writes, and a look at a pickle's opening without unpickling it.

Shared by the checkpoints and the command line, so that every file nica writes appears whole or
not at all, and a file is inspected before any code in it could run.
"""

from __future__ import annotations

import contextlib
import os
import pickletools
import stat
import tempfile
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["write_atomically", "pickle_opening"]


def _file_mode(target):
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomically(path, write: Callable[[BinaryIO], object], *, make_dirs: bool = True) -> None:
    """Write through ``write(binary_handle)`` to a temporary file beside ``path`` (``.NAME.*.part``),
    then rename it onto ``path`` (its permissions those of the file it replaces).

    An interrupted or failed write leaves ``path`` as it was and no temporary file; the error
    (an ``OSError`` of the file system, or whatever ``write`` raised) propagates.
    """
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    if make_dirs:
        os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        with contextlib.suppress(OSError):
            os.chmod(tmp, _file_mode(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_BUILDS = ("GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "BUILD", "STOP")


def pickle_opening(path, *, stop=_BUILDS, limit: int = 200):
    """The opening opcodes of the pickle at ``path``, read without unpickling anything.

    Returns ``(opcodes, complete)``: ``(opcode name, argument)`` pairs up to and including the
    first opcode named in ``stop`` (by default the first that names, builds or calls anything)
    or the ``limit``-th after the first; ``complete`` is ``False`` when the file is not a pickle
    or ends before that.
    """
    opening = []
    with open(path, "rb") as handle:
        try:
            for i, (op, arg, _) in enumerate(pickletools.genops(handle)):
                opening.append((op.name, arg))
                if op.name in stop or i >= limit:
                    break
        except Exception:  # not a pickle, or one that ends early
            return opening, False
    return opening, True
