"""``python -m nica``: the command line (see :mod:`nica.cli`), ended as the ``nica`` command ends
(:func:`nica.cli._main.console`).  Python imports the ``nica`` package before this module runs,
so a Ctrl-C during those first imports is Python's own; the ``nica`` command handles it too
(``nica_launcher``)."""

from nica.cli._main import console

if __name__ == "__main__":
    console()
