"""What one relative-gradient evaluation costs beyond the matrix products it cannot avoid.

At one size (default ``D = 2048``, ``B = 100``, ``L = 2``, float32) the script compiles, and then
times *interleaved* (one call of each contender in turn, repeated, so that a change of load on
the machine affects all of them alike), with ``OPENBLAS_NUM_THREADS=1`` set before NumPy loads:

* ``relative``: ``nica.relative_gradient`` (the cheap grouping ``δᵀ(Y W) − W``);
* ``chain``: the products the relative gradient cannot avoid, run as one jitted chain with
  nothing else: the ``L`` forward products ``Z_k W_kᵀ`` (each layer's output feeding the next),
  the ``L − 1`` back-propagation products ``δ_k W_k``, and per layer ``Y_k W_k`` and
  ``δ_kᵀ (Y_k W_k)``, whose ``D×D`` results are returned (so nothing can be eliminated).  No
  activation, prior, bias or ``−W`` term: ``4L − 1`` products of ``2·B·D²`` flops, the floor.
  Each product is fenced (``jax.lax.optimization_barrier``) and ``δ_kᵀ`` is materialised, so
  XLA runs every product in its fastest form: left to itself it rewrites a chain of products
  into transposed forms that its CPU backend runs through a slower kernel, which made the
  unfenced chain (``chain_plain``, also timed) slower than the gradient it is the floor of.
  The last layer's error is a stand-in computed from the output but a distinct array, and the
  script stops unless XLA's own flop count of the compiled chain is ``4L − 1`` products: with
  the output itself as the stand-in (as in earlier versions of this script) ``δ_L W_L`` and ``Y_L W_L`` were one
  expression, computed once, and the chain was one product short of the floor;
* ``authors``: the same errors with the grouping of the authors' code, ``G = δᵀ Z`` first and
  then ``G (Wᵀ W) − W`` (``B·D² + 2·D³`` per layer), bias terms as in ``relative``;
* ``euclidean``: ``nica.euclidean_gradient`` (back-propagation and an explicit inverse);
* ``inverses``: the ``L`` explicit inverses ``jnp.linalg.inv(W_k)`` alone.  An ordinary
  gradient does ``3L − 1`` of the chain's products plus these inverses, so ``(inverses +
  (3L − 1)/(4L − 1) · chain) / chain`` is the ratio ``euclidean / relative`` would reach with a
  relative gradient exactly at its floor: the most the ``10 ×`` target can get on this machine
  (``(3L − 1)/(4L − 1) + 4LD / (3(4L − 1)B)`` when the inverse's ``8D³/3`` flops run as fast
  as the products').

The contenders share the weight arrays; each round calls them in a new random order, so that no
contender always finds the weights in cache (or evicted) because of the one before it.

Every function is compiled ahead of time and called once before timing; the script prints and
stores every sample, the medians, the minima, the ratios of medians (and the median of the
per-round ratios relative / chain), XLA's flop count of each program in products, the minor
page faults per call (fresh output buffers), and the checks (PASS /
MISS, never asserted): ``relative ≤ 1.1 × chain`` (and, for reference, ``× chain_plain``),
``authors ≥ 1.2 × relative``, ``euclidean ≥ 10 × relative``.  ``taskset -c 0`` in front of the
command measures one core.

Usage::

    python benchmarks/step_overhead.py                  # D = 2048: about a minute on 2 cores
    python benchmarks/step_overhead.py --dim 512 --repeats 50
    python benchmarks/step_overhead.py --quick          # D = 256, 10 rounds: seconds

Output: ``benchmarks/results/step_overhead[_quick].json`` (``--out``: elsewhere).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads (module docstring)

if __package__ in (None, ""):  # run as ``python benchmarks/step_overhead.py``
    import _bootstrap  # noqa: F401

from functools import partial  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import nica  # noqa: E402
from benchmarks import _harness  # noqa: E402
from benchmarks._common import flop_count, time_interleaved  # noqa: E402
from benchmarks._harness import Target  # noqa: E402
from nica import Layer  # noqa: E402

ACTIVATION = nica.activations.get("smooth_leaky_relu")
PRIOR = nica.priors.get("laplace")


def _ratio(numerator, denominator):
    return lambda result: result["median_seconds"][numerator] / result["median_seconds"][denominator]


TARGETS = (  # ratios of the median times
    Target("relative / chain", _ratio("relative", "chain"), "<=", 1.1),
    Target("relative / chain_plain", _ratio("relative", "chain_plain"), "<=", 1.1),
    Target("authors / relative", _ratio("authors", "relative"), ">=", 1.2),
    Target("euclidean / relative", _ratio("euclidean", "relative"), ">=", 10.0),
)


def chain(weights, X, fence=jax.lax.optimization_barrier):
    """The ``4L − 1`` unavoidable products as one chain, each fenced (module docstring)."""
    Z, inputs = X, []
    for W in weights:
        inputs.append(Z)
        Z = fence(Z @ W.T)
    preacts = inputs[1:] + [Z]
    # The last layer's error: a stand-in of the right shape, computed from Z but a distinct
    # array (with ``δ_L = Z`` the products ``δ_L W_L`` and ``Y_L W_L`` would be one expression,
    # which XLA computes once: a chain one product short of the floor).
    delta = fence(jnp.sign(Z) / Z.shape[0])
    deltas = [delta]
    for W in weights[:0:-1]:
        delta = fence(delta @ W)
        deltas.insert(0, delta)
    return tuple(fence(d.T) @ fence(Y @ W) for d, Y, W in zip(deltas, preacts, weights))


def chain_plain(weights, X):
    """The same products without fences: as XLA compiles them when left to itself."""
    return chain(weights, X, fence=lambda A: A)


def authors(params, X):
    """The relative gradient with the grouping ``(δᵀ Z)(Wᵀ W) − W`` of the authors' code (and
    nica's bias terms)."""
    _, deltas, inputs, _, _ = nica.backpropagated_errors(params, X, activation=ACTIVATION, prior=PRIOR)
    out = []
    for (W, b), delta, Z in zip(params, deltas, inputs):
        G, g = delta.T @ Z, jnp.sum(delta, axis=0)
        out.append(Layer(G @ (W.T @ W) + jnp.outer(g, b @ W) - W, G @ (W.T @ b) + g * (1.0 + b @ b) - b))
    return tuple(out)


FUNCTIONS = {
    "relative": partial(nica.relative_gradient, activation=ACTIVATION, prior=PRIOR),
    "chain": chain,  # these two take the weights alone
    "chain_plain": chain_plain,
    "authors": authors,
    "euclidean": partial(nica.euclidean_gradient, activation=ACTIVATION, prior=PRIOR),
    "inverses": lambda weights, X: tuple(jnp.linalg.inv(W) for W in weights),
}


def inputs(dim, batch, n_layers, seed=0):
    rng = np.random.default_rng(seed)
    weights = tuple(
        jnp.asarray(rng.standard_normal((dim, dim), dtype=np.float32) / np.float32(dim**0.5)) for _ in range(n_layers)
    )
    X = jnp.asarray(rng.standard_normal((batch, dim), dtype=np.float32))
    params = tuple(Layer(W, jnp.zeros((dim,), jnp.float32)) for W in weights)
    return weights, params, X


def main(argv=None):
    parser = _harness.parser(
        __doc__, "D = 256 and 10 rounds unless given: seconds", "benchmarks/results/step_overhead[_quick].json"
    )
    parser.add_argument("--dim", type=int, default=None, help="D (default 2048, quick 256)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 30, quick 10)")
    args = parser.parse_args(argv)
    dim = args.dim or (256 if args.quick else 2048)
    repeats = args.repeats or (10 if args.quick else 30)
    weights, params, X = inputs(dim, args.batch, args.layers)
    product_flops = 2 * args.batch * dim**2  # one (B×D)·(D×D) product
    calls, products = {}, {}
    for name, fn in FUNCTIONS.items():
        call_args = (weights, X) if name.startswith("chain") or name == "inverses" else (params, X)
        compiled = jax.jit(fn).lower(*call_args).compile()
        jax.block_until_ready(compiled(*call_args))  # warm-up
        calls[name] = (compiled, call_args)
        flops = flop_count(compiled)  # XLA's own count (a LAPACK call counts as none)
        products[name] = None if flops is None else flops / product_flops
    floor = 4 * args.layers - 1
    if products["chain"] is not None and abs(products["chain"] - floor) > 0.05:
        # e.g. two identical products merged by XLA: the chain would not be the floor it claims
        raise RuntimeError(
            f"the compiled chain does {products['chain']:.3f} products' worth of flops, not the {floor} of the floor"
        )
    # a fresh order each round: no contender always runs right after another (which leaves the
    # shared weights in cache for the next, or evicts them)
    samples, faults = time_interleaved({name: (*calls[name], repeats) for name in calls}, list(calls))
    medians = {name: float(np.median(s)) for name, s in samples.items()}
    # the same ratio paired by round (both calls a few hundred ms apart): robust to slow drifts
    paired = float(np.median(np.asarray(samples["relative"]) / np.asarray(samples["chain"])))
    # what euclidean / relative would be with the relative gradient exactly at its floor
    euclidean_bound = (medians["inverses"] + (3 * args.layers - 1) / floor * medians["chain"]) / medians["chain"]
    flops = 2 * (4 * args.layers - 1) * args.batch * dim**2
    record = {
        "dim": dim,
        "batch": args.batch,
        "layers": args.layers,
        "dtype": "float32",
        "repeats": repeats,
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "cpus": len(os.sched_getaffinity(0)),
        "median_seconds": medians,
        "min_seconds": {name: float(min(s)) for name, s in samples.items()},
        "chain_gflop_per_s": flops / medians["chain"] / 1e9,
        "products": products,
        "paired_relative_over_chain": paired,
        "euclidean_over_relative_at_the_floor": euclidean_bound,
        "page_faults_per_call": {name: n / repeats for name, n in faults.items()},
        "samples": samples,
    }
    print(f"D = {dim}, B = {args.batch}, L = {args.layers}, float32, {repeats} interleaved calls each")
    for name, m in medians.items():
        count = "" if products[name] is None else f", {products[name]:5.2f} products' flops"
        print(
            f"  {name:11s} median {1e3 * m:9.2f} ms  ({m / medians['chain']:.3f} × chain), "
            f"min {1e3 * min(samples[name]):9.2f} ms{count}, {faults[name] / repeats:6.0f} page faults/call"
        )
    print(f"  relative / chain, median of the ratios paired by round: {paired:.3f}")
    print(f"  euclidean / relative with the relative gradient at its floor: {euclidean_bound:.2f}")
    record["checks"] = _harness.report_targets(TARGETS, record)
    path = _harness.write_result(
        _harness.output_path(args, _harness.RESULTS, "step_overhead"), record, benchmark="step_overhead", argv=argv
    )
    print("wrote", path)


# ---------------------------------------------------------------------------------------------
# the page's table (docs/benchmarks.md)


def _ms(seconds):
    ms = 1e3 * seconds
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:,.0f} ms"


def tables(load):
    """The step against its floor on two threads and on one core (``taskset -c 0``)."""
    rows = []
    for name in ("step_overhead", "step_overhead_one_core"):
        result = load(name)
        ratio = {target.name: target.measured(result) for target in TARGETS}
        threads = f"{result['cpus']}" + (" (`taskset -c 0`)" if result["cpus"] == 1 else "")
        times = [_ms(result["median_seconds"][k]) for k in ("relative", "chain", "chain_plain", "authors", "euclidean")]
        rows.append(
            [
                threads,
                *times,
                f"**{ratio['relative / chain']:.2f}**",
                f"{ratio['authors / relative']:.1f}",
                f"{ratio['euclidean / relative']:.1f}",
            ]
        )
    header = [
        "threads",
        "relative",
        "fenced chain",
        "unfenced chain",
        "authors' grouping",
        "euclidean",
        "relative / fenced chain",
        "authors / relative",
        "euclidean / relative",
    ]
    return {"step_overhead/threads": _harness.markdown_table(header, rows)}


if __name__ == "__main__":
    main()
