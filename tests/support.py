"""Helpers shared by several test files (not oracles: those are in tests/oracles.py).

* fitted estimators: a snapshot of their parameters, to check that a refused call changed nothing;
* checkpoints: an interruption after the n-th checkpoint, and the equality of two fits;
* the command line: running ``nica.cli.main`` and checking that an error is one clear line;
* the estimators' misuse tables, tried on both estimators.

The command line's shared files and tiny fitted models are the session fixture ``cli_env`` of
tests/conftest.py.
"""

import signal

import jax
import jax.numpy as jnp
import joblib
import numpy as np
import optax
import scipy.sparse

from nica import activations, priors
from nica._src import checkpoint as _checkpoint
from nica.cli import main

# ---------------------------------------------------------------------------------------------
# fitted estimators


def snapshot(model):
    """Copies of everything a refused ``fit`` must leave as it was."""
    return [np.array(leaf) for leaf in jax.tree_util.tree_leaves((model.params_, model.prior_params_))] + [
        np.array(model.mean_),
        model.n_features_in_,
    ]


def assert_unchanged(model, before):
    after = snapshot(model)
    assert len(after) == len(before)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def params_of(model):
    return [np.array(leaf) for leaf in jax.tree_util.tree_leaves((model.params_, model.prior_params_))]


def assert_same(before, after):
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# checkpoints


class Interrupt(KeyboardInterrupt):
    pass


def interrupt_after_checkpoints(monkeypatch, n):
    """The process 'dies' right after the n-th checkpoint written during the fit."""
    real = _checkpoint.Checkpointer.epoch_start
    calls = {"written": 0}

    def epoch_start(self, estimator, *args):
        before = self.last_iter
        real(self, estimator, *args)
        if self.last_iter is not None and before is not None and self.last_iter != before:
            calls["written"] += 1
            if calls["written"] == n:
                raise Interrupt

    monkeypatch.setattr(_checkpoint.Checkpointer, "epoch_start", epoch_start)
    return calls


def assert_same_fit(a, b):
    assert a.n_iter_ == b.n_iter_ and a.best_iter_ == b.best_iter_
    np.testing.assert_array_equal(a.loss_curve_, b.loss_curve_)
    np.testing.assert_array_equal(a.validation_scores_, b.validation_scores_)
    for la, lb in zip(a.params_, b.params_):
        np.testing.assert_array_equal(la.W, lb.W)
        np.testing.assert_array_equal(la.b, lb.b)
    np.testing.assert_array_equal(
        a.prior_params_["loc"] if isinstance(a.prior_params_, dict) else 0,
        b.prior_params_["loc"] if isinstance(b.prior_params_, dict) else 0,
    )


# ---------------------------------------------------------------------------------------------
# the command line

N, D = 40, 3  # the rows and features of the session's data file (tests/conftest.py, cli_env)
FIT_FAST = ["--max-iter", "1", "--n-layers", "1", "--batch-size", "64", "--random-state", "0"]


def run(argv, capsys):
    """``nica ARGV`` in this process: ``(status, stdout, stderr)``."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out, err, *fragments, status=2):
    assert code == status, (code, err)
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("nica: error: ") or lines[0] == "nica: interrupted", err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def write_bytes(path, data):
    path.write_bytes(data)
    return path


def model_payload(path, **entries):
    """A model file with a chosen header (the layout save_model writes)."""
    joblib.dump(entries, path)
    return path


# ---------------------------------------------------------------------------------------------
# the estimators' misuse tables, tried on both estimators (tests/test_nonlinear.py,
# tests/test_conditional_estimator.py; docs/reliability.rst tabulates them)

TINY = dict(n_layers=2, max_iter=2, batch_size=64, random_state=0)  # fits of 200 x 3 rows in a few epochs


class UnhashableActivation(activations.Activation):
    """A custom activation that cannot be a static argument of jit."""

    __hash__ = None

    def fn(self, x):
        return x

    def inverse(self, y):
        return y

    def log_derivative(self, x):
        return jnp.zeros_like(x)


BAD_X = [  # (name, X, error, message fragment): refused by fit, partial_fit and every fitted method
    ("NaN", np.array([[1.0, np.nan, 0.0]] * 4), ValueError, "Input X contains NaN"),
    ("infinity", np.array([[1.0, np.inf, 0.0]] * 4), ValueError, "Input X contains infinity"),
    ("no rows", np.empty((0, 3)), ValueError, r"Found array with 0 sample\(s\) \(shape=\(0, 3\)\)"),
    ("no columns", np.empty((5, 0)), ValueError, r"Found array with 0 feature\(s\) \(shape=\(5, 0\)\)"),
    ("1-D", np.ones(5), ValueError, "Expected 2D array, got 1D array instead"),
    ("3-D", np.ones((4, 3, 1)), ValueError, "Found array with dim 3"),
    ("scalar", 3.0, ValueError, "Expected 2D array, got scalar array instead"),
    ("None", None, ValueError, "Expected 2D array, got scalar array instead"),
    ("complex", np.ones((4, 3)) + 1j, ValueError, "Complex data not supported"),
    ("text", np.array([["a", "b", "c"]] * 4), ValueError, "could not convert string to float: .*'a'"),
    ("object with None", np.array([[1.0, None, 2.0]] * 4, dtype=object), ValueError, "Input X contains NaN"),
    ("ragged list", [[1.0, 2.0, 3.0], [1.0]], ValueError, "inhomogeneous"),
    ("sparse", scipy.sparse.csr_matrix(np.eye(3)), TypeError, "Sparse data was passed"),
]

BAD_HYPERPARAMETERS = [  # (params, error, message fragment): refused by fit before any data or JAX work
    ({"n_layers": 0}, ValueError, "n_layers must be an integer >= 1; got 0"),
    ({"n_layers": "3"}, ValueError, "n_layers must be an integer >= 1; got '3'"),
    ({"n_layers": True}, ValueError, "n_layers must be an integer >= 1; got True"),
    ({"learning_rate": float("nan")}, ValueError, "learning_rate must be a finite number > 0 or 'auto'; got nan"),
    ({"learning_rate": -1.0}, ValueError, "learning_rate must be a finite number > 0 or 'auto'; got -1.0"),
    ({"learning_rate": "0.1"}, ValueError, "learning_rate must be a finite number > 0 or 'auto'; got '0.1'"),
    ({"tol": -1.0}, ValueError, "tol must be a finite number >= 0; got -1.0"),
    ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1; got 0"),
    ({"batch_size": 2.5}, ValueError, "batch_size must be an integer >= 1; got 2.5"),
    ({"max_iter": 2.5}, ValueError, r"max_iter must be an integer in \[1, 2147483647\]; got 2.5"),
    ({"n_iter_no_change": 0}, ValueError, "n_iter_no_change must be an integer >= 1; got 0"),
    ({"n_init": 0}, ValueError, r"n_init must be an integer in \[1, 2147483647\]; got 0"),
    ({"validation_fraction": 1.0}, ValueError, r"validation_fraction must be a number in \(0, 1\); got 1.0"),
    ({"validation_fraction": 1.5}, ValueError, r"validation_fraction must be a number in \(0, 1\); got 1.5"),
    ({"gradient": "natural"}, ValueError, r"gradient must be one of \('auto', .*'relative'.*\); got 'natural'"),
    ({"whiten": True}, ValueError, "whiten must be one of .*; got True"),
    ({"whiten": "pca"}, ValueError, "whiten must be one of .*; got 'pca'"),
    ({"n_components": 0}, ValueError, "n_components must be"),
    ({"n_components": 2.5}, TypeError, "n_components must be"),
    ({"n_components": 2, "whiten": "standardize"}, ValueError, "n_components=2 needs PCA whitening .*'standardize'"),
    ({"schedule": None}, ValueError, r"schedule must be one of \('plateau', 'constant'\); got None"),
    ({"schedule": "cosine"}, ValueError, r"schedule must be one of \('plateau', 'constant'\); got 'cosine'"),
    ({"init": "pca"}, ValueError, r"init must be one of \('auto', 'fastica', 'random'\); got 'pca'"),
    ({"averaging": -0.5}, ValueError, "averaging must be a finite number >= 0 or 'auto'; got -0.5"),
    ({"averaging": "often"}, ValueError, "averaging must be a finite number >= 0 or 'auto'; got 'often'"),
    ({"averaging": float("nan")}, ValueError, "averaging must be a finite number >= 0 or 'auto'; got nan"),
    ({"averaging": True}, ValueError, "averaging must be a finite number >= 0 or 'auto'; got True"),
    ({"bias": "yes"}, TypeError, "bias must be a bool; got 'yes'"),
    ({"early_stopping": None}, TypeError, "early_stopping must be a bool; got None"),
    ({"warm_start": 1}, TypeError, "warm_start must be a bool; got 1"),
    ({"parallel": "both"}, ValueError, r"parallel must be one of \(None, 'data', 'model'\); got 'both'"),
    ({"verbose": "loud"}, ValueError, "verbose must be a bool or an integer >= 0; got 'loud'"),
    ({"verbose": -1}, ValueError, "verbose must be a bool or an integer >= 0; got -1"),
    ({"random_state": "a"}, ValueError, "'a' cannot be used to seed"),
    ({"activation": "relu"}, ValueError, "Unknown activation 'relu'"),
    ({"activation": activations.SmoothLeakyReLU}, TypeError, "got the class SmoothLeakyReLU"),
    ({"activation": UnhashableActivation()}, TypeError, "activation UnhashableActivation is not hashable"),
    ({"prior": "cauchy"}, ValueError, "Unknown prior 'cauchy'"),
    ({"prior": priors.laplace}, TypeError, "got the function laplace: call it"),
    ({"objective": "mse"}, ValueError, "Unknown objective 'mse'"),
    ({"optimizer": "sgdx"}, ValueError, "optimizer='sgdx' is not an optax optimizer"),
    ({"optimizer": "chain"}, TypeError, "optimizer='chain' could not be built"),
    ({"optimizer": "GradientTransformation"}, TypeError, "optimizer='GradientTransformation' could not be built"),
    (
        {"optimizer": 3},
        TypeError,
        "optimizer must be an optax name, an optax factory or an optax.GradientTransformation",
    ),
    ({"optimizer": lambda lr: 3}, TypeError, "must return an optax.GradientTransformation"),
    ({"optimizer": optax.lbfgs()}, TypeError, "does not work as an optax optimizer"),
]
BAD_HYPERPARAMETER_IDS = [f"{next(iter(p))}-{i}" for i, (p, _, _) in enumerate(BAD_HYPERPARAMETERS)]


def default_sigint():
    """``preexec_fn`` of the Ctrl-C tests' child processes: SIGINT takes its default action in
    the child, whatever the test process has (a background job inherits an ignored SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
