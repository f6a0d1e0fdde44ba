"""One process of a multi-process fit, started by tests/test_distributed.py.

``python distributed_worker.py SCENARIO PROCESS_ID N_PROCESSES PORT OUT_DIR``: joins the job
(gloo collectives on the CPU, one device per process), fits on its own rows of the data the
scenario generates and writes what it fitted to ``OUT_DIR/<process id>.npz``.  With
``N_PROCESSES`` 0 it runs the same scenario alone, without jax.distributed, on every row (the
reference).  Exit status 3: the fit raised nica's PeerFailure (another process stopped); 4: it
raised a ValueError.
"""

import os
import sys

import jax
import numpy as np
from jax.experimental import multihost_utils

import nica
from nica._src.distributed import PeerFailure

SHARES = {2: [0.6, 0.4], 3: [0.5, 0.3, 0.2]}  # unequal row counts per process
N_ROWS = 600
SCENARIO, PROCESS, N_PROCESSES, OUT = "", 0, 0, ""


def rows(n_rows=N_ROWS, seed=0):
    """The global data, and this process's rows of it (every row alone)."""
    rng = np.random.default_rng(seed)
    S = rng.laplace(size=(n_rows, 3))
    X = np.tanh(S @ rng.normal(size=(3, 3))) + 0.5 * S @ rng.normal(size=(3, 3))
    y = np.repeat([f"segment-{k}" for k in range(6)], n_rows // 6)
    if not N_PROCESSES:
        return X, y
    bounds = np.round(np.cumsum([0.0] + SHARES[N_PROCESSES]) * n_rows).astype(int)
    own = slice(bounds[PROCESS], bounds[PROCESS + 1])
    return X[own], y[own]


def main():
    checkpoint_file = os.path.join(OUT, "..", "checkpoint.nica")  # one file for the job (process 0 writes it)
    X, y = rows()
    common = dict(parallel="data", max_iter=4, batch_size=48, random_state=0, n_iter_no_change=100)
    if SCENARIO == "nonlinear":
        model = nica.NonlinearICA(n_layers=2, **common).fit(X)
        extra = {}
    elif SCENARIO == "conditional":
        model = nica.ConditionalNonlinearICA(n_layers=2, **common).fit(X, y)
        extra = {"proba": model.predict_proba(X)}
    elif SCENARIO == "die":  # process 1 dies in the middle of the fit
        model = nica.NonlinearICA(
            n_layers=2, **{**common, "max_iter": 10**6, "early_stopping": False, "n_iter_no_change": 10**6}
        )
        if PROCESS == 1:
            import threading

            threading.Timer(4.0, lambda: os._exit(7)).start()
        try:
            model.fit(X)
        except PeerFailure as error:
            print("PeerFailure:", error, file=sys.stderr, flush=True)
            os._exit(3)
        raise AssertionError("the fit ended although a process died")
    elif SCENARIO == "functional":  # fit_to_data on a mesh over the processes
        import optax

        optimizer = optax.adam(1e-2)
        state = nica.init_train_state(optimizer, nica.init_params(jax.random.key(0), 3, 2))
        mesh = nica.make_mesh("data") if N_PROCESSES else None
        state, history = nica.fit_to_data(
            state, X, optimizer=optimizer, key=jax.random.key(1), batch_size=48, max_epochs=4, mesh=mesh
        )
        leaves = jax.tree_util.tree_leaves((state.params, state.prior_params))
        assert all(leaf.is_fully_addressable for leaf in leaves)  # each process's own copy
        np.savez(
            os.path.join(OUT, f"{PROCESS}.npz"),
            *leaves,
            loss_curve=np.asarray(history.loss_curve),
            validation_scores=np.asarray(history.validation_scores),
        )
        return
    elif SCENARIO in ("refused", "columns"):  # process 1's rows: a NaN, or a column too many
        if PROCESS == 1:
            X = X.copy()
            if SCENARIO == "refused":
                X[0, 0] = np.nan
            else:
                X = np.column_stack([X, X[:, 0]])
        try:
            nica.NonlinearICA(**common).fit(X)
        except PeerFailure as error:
            print("PeerFailure:", error, file=sys.stderr, flush=True)
            os._exit(3)
        except ValueError as error:
            print("ValueError:", error, file=sys.stderr, flush=True)
            os._exit(4)
        raise AssertionError("the fit was not refused")
    elif SCENARIO == "interrupt":  # every process stops after the checkpoint of epoch 3
        from nica._src import checkpoint, persistence

        write = persistence.write

        def counted(*args, **kwargs):  # the files this process writes
            with open(os.path.join(OUT, f"{PROCESS}.writes"), "a") as log:
                log.write(f"{args[1]}\n")
            return write(*args, **kwargs)

        persistence.write = counted

        epoch_start = checkpoint.Checkpointer.epoch_start

        def stop_after_three(self, estimator, *args):
            epoch_start(self, estimator, *args)
            if estimator.n_iter_ == 3:
                raise KeyboardInterrupt

        checkpoint.Checkpointer.epoch_start = stop_after_three
        model = nica.NonlinearICA(n_layers=2, **{**common, "max_iter": 6}, checkpoint_path=checkpoint_file)
        try:
            model.fit(X)
        except KeyboardInterrupt:
            return
        raise AssertionError("the fit was not interrupted")
    elif SCENARIO == "resume":  # continue the interrupted fit (alone: the uninterrupted one)
        if N_PROCESSES:
            model = nica.load(checkpoint_file).set_params(warm_start=True).fit(X)
        else:
            model = nica.NonlinearICA(n_layers=2, **{**common, "max_iter": 6}).fit(X)
        extra = {}
    else:
        raise SystemExit(f"unknown scenario {SCENARIO!r}")
    params = jax.tree_util.tree_leaves(model.network_params_)
    if N_PROCESSES:  # the same parameters in every process, bit for bit (a collective check)
        multihost_utils.assert_equal(params, "the fitted parameters differ between processes")
    np.savez(
        os.path.join(OUT, f"{PROCESS}.npz"),
        *params,
        transform=model.transform(X),
        score_samples=model.score_samples(X, y) if SCENARIO == "conditional" else model.score_samples(X),
        loss_curve=np.asarray(model.loss_curve_),
        validation_scores=np.asarray(model.validation_scores_),
        **extra,
    )


if __name__ == "__main__":
    SCENARIO, PROCESS, N_PROCESSES, PORT, OUT = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        sys.argv[4],
        sys.argv[5],
    )
    jax.config.update("jax_enable_x64", True)
    if N_PROCESSES:
        nica.initialize_distributed(
            f"localhost:{PORT}", N_PROCESSES, PROCESS, initialization_timeout=60, heartbeat_timeout_seconds=10
        )
    main()
