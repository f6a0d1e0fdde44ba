"""Measuring tools shared by the benchmark scripts: interleaved timing, XLA's flop count and
memory analysis, process memory from ``/proc``, measuring children, the stability statistic.

(The plumbing every script shares, command line, machine, JSON and targets, is ``_harness.py``.)
Standard library only at import time (no NumPy or JAX), so a parent process that only spawns
measuring children stays small.
"""

from __future__ import annotations

import ctypes
import gc
import json
import resource
import subprocess
import time


def max_rise(scores):
    """The largest drop of an epoch's validation score below the best so far (nats per
    sample; 0 when it never drops), for the stability target."""
    best, rise = None, 0.0
    for score in scores:
        if best is not None:
            rise = max(rise, best - score)
        best = score if best is None else max(best, score)
    return float(rise)


def flop_count(compiled):
    """XLA's own count of a compiled program's floating-point operations (a LAPACK call counts
    as none), or ``None`` where the backend reports none."""
    cost = compiled.cost_analysis() or {}
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"]) if cost and "flops" in cost else None


def time_interleaved(entries, names, seed=0):
    """Time compiled functions in rounds, one blocking call of each per round in a new random
    order (a permutation of ``names``, drawn with ``seed``), so that a change of load on the
    machine or of the allocator's state falls on all of them alike and no function always runs
    right after another.  ``entries`` maps a name to ``(compiled, args, n_calls)``; a name
    leaves the rounds after its ``n_calls``.  Garbage collection is off while timing.

    Returns ``(samples, faults)``: per name the seconds of each call, and the minor page
    faults of its calls in all (read outside the timed span)."""
    import jax
    import numpy as np

    samples = {name: [] for name in entries}
    faults = {name: 0 for name in entries}
    order = np.random.default_rng(seed)
    gc.collect()
    gc.disable()
    try:
        for round_ in range(max(entry[2] for entry in entries.values())):
            for name in order.permutation(names):
                compiled, args, n_calls = entries[name]
                if round_ >= n_calls:
                    continue
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                start = time.perf_counter()
                jax.block_until_ready(compiled(*args))
                samples[name].append(time.perf_counter() - start)
                faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    finally:
        gc.enable()
    return samples, faults


def _kb_field(path, field):
    """A ``kB`` field of a ``/proc`` file, in bytes, or ``None``."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def proc_status_bytes(field):
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes, or ``None``."""
    return _kb_field("/proc/self/status", field)


def mem_available_bytes():
    """``MemAvailable`` of ``/proc/meminfo`` in bytes, or ``None``."""
    return _kb_field("/proc/meminfo", "MemAvailable")


def reset_peak_rss():
    """Reset the kernel's RSS high-water mark (``VmHWM``); ``True`` on success (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def release_free_memory():
    """Collect garbage and hand freed heap pages back to the kernel (glibc's ``malloc_trim``)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def xla_memory(compiled):
    """Argument, output, temp and alias bytes of XLA's memory analysis of a compiled function,
    and their total (arguments + outputs + temporaries − aliased); ``None`` if XLA gives none."""
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    memory = {
        "argument_bytes": int(stats.argument_size_in_bytes),
        "output_bytes": int(stats.output_size_in_bytes),
        "temp_bytes": int(stats.temp_size_in_bytes),
        "alias_bytes": int(stats.alias_size_in_bytes),
    }
    memory["total_bytes"] = (
        memory["argument_bytes"] + memory["output_bytes"] + memory["temp_bytes"] - memory["alias_bytes"]
    )
    return memory


def run_json_child(command, timeout_s, stderr_chars, env=None):
    """Run ``command`` (a measuring child, in ``env`` if given) and parse the JSON object on its
    last stdout line.

    A child that times out or fails gives ``{"error": ...}`` (with the last ``stderr_chars``
    characters of its stderr) instead of raising, so one bad point does not end a sweep.
    """
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    if done.returncode != 0:
        return {"error": f"exit status {done.returncode}: {done.stderr.strip()[-stderr_chars:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])
