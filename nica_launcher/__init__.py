"""The ``nica`` console script's entry point: Ctrl-C handled before anything heavy is imported.

Importing anything in the ``nica`` package runs ``nica/__init__.py`` first; that imports its
names on first use, and the command line imports JAX, scikit-learn and SciPy (a second or more)
once a command runs, but a console script that starts in ``nica`` would still meet a Ctrl-C of
its first moments with Python's own traceback and a process killed by SIGINT.  So
the script starts here, outside the package, with the standard library only: :func:`main`
handles SIGINT first, then imports the command line (:func:`nica.cli._main.console`) inside
the function, on purpose (and :mod:`tempfile`, for the same reason: the less runs before the
handler, the shorter the moment a Ctrl-C is Python's own).  A Ctrl-C during the imports ends the process with
status 130 and one line, ``nica: interrupted``, as one at any later moment does.

Whatever the imports write to stderr is held meanwhile and written once they are done: an
extension module interrupted while it starts prints a traceback of its own (NumPy's
``import_array`` does) before it raises an ``ImportError``; after a Ctrl-C it is dropped.
"""

import os
import signal
import sys

__all__ = ["main"]

EXIT_INTERRUPTED = 130


def main():
    """Run the ``nica`` command on ``sys.argv[1:]`` and end the process with its status."""
    received = []

    def interrupt(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    def unraisable(report, previous=sys.unraisablehook):
        # a KeyboardInterrupt Python could not raise (in a garbage-collection callback): not
        # printed; the process ends once the imports are done
        if not isinstance(report.exc_value, KeyboardInterrupt):
            previous(report)

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not an ignored SIGINT
        signal.signal(signal.SIGINT, interrupt)
        sys.unraisablehook = unraisable
    held: list = []
    try:
        _hold_stderr(held)
        from nica.cli._main import console  # JAX and the rest, after the handler
    except BaseException:
        _release_stderr(held, write=not received)
        if received:  # also when an extension module's start-up turned it into an ImportError
            _interrupted()
        raise
    _release_stderr(held, write=not received)
    if received:  # a Ctrl-C whose KeyboardInterrupt was swallowed during the imports
        _interrupted()
    console(sys.argv[1:])


def _hold_stderr(held):
    """Send file descriptor 2 to a temporary file, once ``(the real stderr, the file)`` is in
    ``held``."""
    import tempfile  # after the handler

    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError, AttributeError):
        return
    file = tempfile.TemporaryFile()
    held.append((real, file))
    os.dup2(file.fileno(), 2)


def _release_stderr(held, write):
    """Stderr back to the real one, with what was held written to it (``write``) or dropped."""
    if not held:
        return
    real, file = held[0]
    try:
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
    os.dup2(real, 2)
    os.close(real)
    if write:
        file.seek(0)
        data = file.read()
        while data:
            try:
                data = data[os.write(2, data) :]
            except OSError:
                break
    file.close()


def _interrupted():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sys.stderr.write("nica: interrupted\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(EXIT_INTERRUPTED)
