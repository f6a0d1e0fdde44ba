"""Files: where nica may write, atomic writes, and a look at a pickle's opening without
unpickling it.

Shared by the checkpoints and the command line, so that every file nica writes is checked in one
place before any long computation, is written only to a regular file, appears whole or not at
all, and a file is inspected before any code in it could run.

Temporary files.  A file is written under a temporary name in its own folder,
``.NAME.WRITER-PID.XXXXXXXX.part`` (``WRITER``: 8 hex digits naming this machine and process
namespace, ``PID`` the writing process), then renamed onto ``NAME``.  A failed or interrupted
write removes its temporary file.  One left by a writer killed outright (``kill -9``, a power
cut) is removed by the next write of the same ``NAME`` when it is *stale*: its writer ran on this
machine and ``PID`` no longer runs, or (any writer, or the earlier ``.NAME.XXXXXXXX.part``
naming) it has not been modified for :data:`STALE_SECONDS`.  A live writer on another machine
sharing the folder keeps modifying its file, so it is never taken for stale.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import pickletools
import re
import socket
import stat
import tempfile
import time
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["check_writable", "write_atomically", "remove_stale_temporaries", "pickle_opening", "STALE_SECONDS"]

STALE_SECONDS = 3600.0  # a temporary file not modified for this long is a dead writer's
_NAME_MAX = 255  # when the file system does not say (os.pathconf)
_PATH_MAX = 4096
_RANDOM = 8  # the random characters tempfile.mkstemp adds
_SUFFIX = ".part"
_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


@functools.lru_cache(maxsize=1)
def _writer_id() -> str:
    """8 hex digits naming this machine and process namespace (a process id is only meaningful
    there)."""
    namespace = ""
    with contextlib.suppress(OSError, AttributeError):
        namespace = os.readlink("/proc/self/ns/pid")
    return hashlib.sha256(f"{socket.gethostname()}|{namespace}".encode()).hexdigest()[:8]


def _temp_prefix(name: str) -> str:
    return f".{name}.{_writer_id()}-{os.getpid()}."


def _temp_pattern(name: str):
    return re.compile(
        rf"\.{re.escape(name)}\.(?:(?P<writer>[0-9a-f]{{8}})-(?P<pid>[0-9]{{1,10}})\.)?[a-z0-9_]{{{_RANDOM}}}{re.escape(_SUFFIX)}"
    )


def _pathconf(folder, name, fallback):
    try:
        value = os.pathconf(folder, name)
    except (OSError, ValueError, AttributeError):
        return fallback
    return value if value and value > 0 else fallback


def _kind(mode) -> str | None:
    """What a file of ``mode`` is when it is neither a regular file nor a directory."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else f"not a regular file (mode {stat.filemode(mode)})"


def _nearest_existing(folder):
    """``folder`` or its nearest existing ancestor."""
    while not os.path.exists(folder):
        up = os.path.dirname(folder)
        if up == folder:
            break
        folder = up
    return folder


def check_writable(path, name: str, *, make_dirs: bool = False) -> str:
    """The file that writing ``path`` would replace (symbolic links followed), or a ``ValueError``
    ``cannot write NAME 'PATH': REASON`` when nica must not or cannot write it.

    Refused: an empty path or one ending with a separator; an existing target that is not a
    regular file (a directory, a FIFO, a device, a socket, or a symbolic link to one, which
    would be replaced by a regular file); a read-only existing file; a missing folder (unless
    ``make_dirs``), a file where a folder should be, a folder this process may not write in; a
    file name or path too long for the file system (``NAME_MAX`` of the folder, for the name of
    the temporary file too, which is longer than ``NAME``).  Nothing is created or changed.
    """
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text:
        raise ValueError(f"no {name} given (an empty path)")

    def refuse(reason):
        return ValueError(f"cannot write {name} {text!r}: {reason}")

    if text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)):
        raise refuse("the path ends with a separator: it names a directory, not a file")
    target = os.path.realpath(text)
    linked = os.path.islink(text)
    try:
        info = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        info = None
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:  # else the lengths are told below
            raise refuse(exc.strerror or type(exc).__name__) from None
        info = None
    if info is not None:
        link = f"a symbolic link to {target!r}, which is " if linked else ""
        if stat.S_ISDIR(info.st_mode):
            raise refuse(f"it is {link}a directory" if linked else "it is a directory")
        kind = _kind(info.st_mode)
        if kind is not None:
            raise refuse(f"it is {link}{kind}, not a regular file; nica writes only regular files")
        if not os.access(target, os.W_OK):
            raise refuse("the existing file is read-only")

    folder = os.path.dirname(target)
    existing = _nearest_existing(folder)
    if not os.path.isdir(existing):
        raise refuse(f"{existing!r} is a file, not a directory")
    if existing != folder and not make_dirs:
        shown = folder if linked else os.path.dirname(text) or folder
        raise refuse(f"directory {shown!r} does not exist")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise refuse(f"permission denied in directory {existing!r}")

    name_max = _pathconf(existing, "PC_NAME_MAX", _NAME_MAX)
    missing = os.path.relpath(target, existing).split(os.sep)
    for part in missing[:-1]:
        if len(os.fsencode(part)) > name_max:
            raise refuse(f"the folder name {part!r} is longer than the {name_max} bytes the file system allows")
    base = os.fsencode(missing[-1])
    temporary = len(os.fsencode(_temp_prefix(missing[-1]))) + _RANDOM + len(_SUFFIX)
    if len(base) > name_max:
        raise refuse(f"the file name is {len(base)} bytes long; the file system allows at most {name_max}")
    if temporary > name_max:
        room = name_max - (temporary - len(base))
        raise refuse(
            f"the file name is {len(base)} bytes long and its temporary file's ({_temp_prefix('NAME')}"
            f"XXXXXXXX{_SUFFIX}, written first) {temporary}; the file system allows {name_max}: use a "
            f"name of at most {room} bytes"
        )
    path_max = _pathconf(existing, "PC_PATH_MAX", _PATH_MAX)
    longest = len(os.fsencode(os.path.join(folder, "x" * temporary)))
    if longest >= path_max:
        raise refuse(f"the path of its temporary file is {longest} bytes long; the system allows {path_max - 1}")
    return target


def _pid_runs(pid: int) -> bool:
    """Whether process ``pid`` runs here (True when that cannot be told)."""
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # another user's process, or out of range
        return True
    return True


def remove_stale_temporaries(target) -> list[str]:
    """Remove the stale temporary files of ``target`` (module docstring); returns their paths."""
    folder, name = os.path.split(os.path.realpath(target))
    pattern = _temp_pattern(name)
    removed: list[str] = []
    try:
        entries = os.listdir(folder)
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = pattern.fullmatch(entry)
        if match is None:
            continue
        path = os.path.join(folder, entry)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        dead = match["writer"] == _writer_id() and not _pid_runs(int(match["pid"]))
        if dead or now - info.st_mtime > STALE_SECONDS:
            with contextlib.suppress(OSError):
                os.unlink(path)
                removed.append(path)
    return removed


def _file_mode(target):
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomically(path, write: Callable[[BinaryIO], object], *, make_dirs: bool = True, name: str = "file") -> None:
    """Write through ``write(binary_handle)`` to a temporary file beside ``path`` (module
    docstring), then rename it onto ``path`` (its permissions those of the file it replaces).

    ``path`` is checked first (:func:`check_writable`; ``name`` names it in the ``ValueError``):
    only a regular file is ever replaced, following symbolic links.  The folder is made with
    ``make_dirs``; the stale temporary files of ``path`` are removed.  A failed or interrupted
    write (``KeyboardInterrupt`` included) leaves ``path`` as it was and no temporary file; the
    error (an ``OSError`` of the file system, or whatever ``write`` raised) propagates.
    """
    target = check_writable(path, name, make_dirs=make_dirs)
    directory = os.path.dirname(target)
    if make_dirs:
        os.makedirs(directory, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(os.path.basename(target)), suffix=_SUFFIX, dir=directory)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        with contextlib.suppress(OSError):
            os.chmod(tmp, _file_mode(target))
        check_writable(path, name)  # not made a FIFO or a device meanwhile
        os.replace(tmp, target)
    except BaseException:
        if tmp is not None:
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
