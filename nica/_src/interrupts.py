"""Ctrl-C (SIGINT) that is never lost: held to a safe point during a fit, counted in the command
line.

Python turns SIGINT into a ``KeyboardInterrupt`` raised wherever the main thread is when the
signal is handled.  Where that is a garbage-collection callback (JAX registers one) or a
``__del__`` method, Python prints ``Exception ignored in ...`` and carries on: the interruption
is lost and the work runs to its end.  Two handlers keep it:

* :class:`DeferredInterrupts`, around the estimators' fits: the first SIGINT is held (nothing is
  raised) and handed to the handler it replaced at the next safe point, the start of an epoch,
  once the checkpoint of that epoch is written; a second SIGINT is handed over at once.
* :class:`CountingInterrupts`, the command line's handler: it raises ``KeyboardInterrupt`` at
  once and counts.  One that Python could not raise (it reaches ``sys.unraisablehook``) is not
  printed; :meth:`~CountingInterrupts.check` raises it again at the next safe point: when a fit
  starts, at each epoch's start (:class:`DeferredInterrupts` calls it) and when the command
  ends.

Both act in the main thread only, and only where SIGINT is handled by a Python function (the
default ``signal.default_int_handler`` or another): an ignored SIGINT stays ignored.
"""

from __future__ import annotations

import signal
import sys
import threading

__all__ = ["DeferredInterrupts", "CountingInterrupts"]


def _python_handler():
    """The SIGINT handler when it is a Python function and this is the main thread, else None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    handler = signal.getsignal(signal.SIGINT)
    return handler if callable(handler) else None


def _check(handler):
    """Let a :class:`CountingInterrupts` raise an interruption it lost."""
    check = getattr(handler, "check", None)
    if callable(check):
        check()


class CountingInterrupts:
    """A SIGINT handler that raises ``KeyboardInterrupt`` and counts the signals, installed by
    ``with`` (and the previous handler restored after).

    ``missed()`` says whether a signal arrived whose ``KeyboardInterrupt`` has not reached the
    code that acknowledges it (``acknowledge()``): one that Python swallowed on the way."""

    def __init__(self):
        self.received = 0
        self.acknowledged = 0
        self._previous = None
        self._previous_hook = None

    def __call__(self, signum, frame):
        self.received += 1
        raise KeyboardInterrupt

    def _unraisable(self, unraisable):
        # raised in a garbage-collection callback or a __del__: missed(), for check() to raise
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            self._previous_hook(unraisable)

    def missed(self):
        return self.received > self.acknowledged

    def acknowledge(self):
        self.acknowledged = self.received

    def check(self):
        """Raise ``KeyboardInterrupt`` for a signal whose own was lost."""
        if self.missed():
            self.acknowledge()
            raise KeyboardInterrupt

    def ignore_further(self):
        """Ignore SIGINT until the ``with`` block ends (while the last line is written)."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    def __enter__(self):
        self._previous = _python_handler()
        if self._previous is not None:
            signal.signal(signal.SIGINT, self)
            self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            sys.unraisablehook = self._previous_hook
            self._previous = self._previous_hook = None
        return False


class DeferredInterrupts:
    """Hold SIGINT while a fit runs (a ``with`` block): :meth:`deliver`, at each safe point, hands
    a held signal to the handler this one replaced (which raises ``KeyboardInterrupt``, by
    default); a second signal is handed over at once; one still held when the block ends is
    handed over then.  Outside the main thread, or when SIGINT is ignored, nothing changes."""

    def __init__(self):
        self.pending = False
        self._previous = None

    def __enter__(self):
        previous = _python_handler()
        if previous is not None:
            _check(previous)  # one lost before the fit began
            self._previous = previous
            signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum, frame):
        if self.pending:  # pressed again: at once
            self._previous(signum, frame)
        self.pending = True

    def deliver(self):
        """A safe point: a held signal goes to the previous handler now."""
        if self._previous is None:
            return
        if self.pending:
            self.pending = False
            self._previous(signal.SIGINT, None)
        _check(self._previous)

    def __exit__(self, kind, value, traceback):
        previous, self._previous = self._previous, None
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
            if self.pending and not (kind is not None and issubclass(kind, KeyboardInterrupt)):
                self.pending = False
                previous(signal.SIGINT, None)  # (in place of an error that ended the block meanwhile)
        return False
