"""The benchmark scripts of nica, as one package on a shared harness (``_harness.py``).

Run one as ``python benchmarks/NAME.py`` or ``python -m benchmarks.NAME`` from the repository
root; ``python -m benchmarks.report`` writes the tables of ``docs/benchmarks.md`` from the
committed results in ``benchmarks/results/`` (``--check``: only compare).
"""
