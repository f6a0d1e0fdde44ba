"""Where an estimator computes: the device mesh of ``parallel`` for a fit, over the devices of
every process after ``jax.distributed.initialize`` (nica._src.distributed), and this process's
own devices for a fitted model's transforms and scores."""

from __future__ import annotations

from typing import Any

import jax

from nica._src.distributed import gather_rows, spans_processes, together
from nica._src.estimator.inference import precision
from nica._src.sharding import make_mesh, place

__all__ = ["Placement"]


class Placement:
    """Mixin of the estimators: the meshes they fit and predict on, and a fit's data when it
    spans several processes."""

    parallel: Any  # the estimator's parameter
    _dtype: Any  # the dtype it fits in

    def _mesh(self):
        """The device mesh for ``parallel`` (every device of the default backend: of every
        process after ``jax.distributed.initialize``), or None."""
        return None if self.parallel is None else make_mesh(self.parallel)

    def _inference_mesh(self):
        """The mesh that transforms and scores run on: ``parallel``'s, but only this process's
        own devices when it spans several processes (a fitted model is then a model of each
        process, and each transforms its own rows)."""
        mesh = self._mesh()
        if not spans_processes(mesh):
            return mesh
        return make_mesh(self.parallel, jax.local_devices())

    def _distributed(self):
        """Whether a fit spans several processes (``parallel`` over the devices of several)."""
        return self.parallel is not None and spans_processes(self._mesh())

    def _collectively(self, what, fn, *args):
        """``fn(*args)``; in a fit over several processes, an error in one raised in all
        (``what`` names the work in their message)."""
        if not self._distributed():
            return fn(*args)
        return together(lambda: fn(*args), what)

    def _process_rows(self, validate, names):
        """``validate()``, a tuple of this process's checked arrays; in a fit over several
        processes the union of every process's rows of each (every process checks its own
        first, and a refusal in one stops them all: see nica._src.distributed)."""
        if not self._distributed():
            return validate()
        return gather_rows(together(validate, "Checking the input"), names)

    def _on_device(self, state, fitting=True):
        """``state`` on the device, or sharded over the ``parallel`` mesh (``fitting=False``:
        over this process's devices of it); arrays already placed so are returned as they are
        (no copy)."""
        with precision(self._dtype):
            return place(state, self._mesh() if fitting else self._inference_mesh())
