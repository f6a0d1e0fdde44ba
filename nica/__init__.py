"""nica: nonlinear ICA and exact-likelihood density estimation with the relative gradient.

Conventions used everywhere in nica: rows are samples (``X`` has shape
``(n_samples, n_features)``); ``forward`` maps observations to sources; layer ``k`` acts as
``y = W z + b`` exactly as in Gresele et al. (NeurIPS 2020), so a batch computes
``Y = Z @ W.T + b``.

The public names are imported on first use (``nica.NonlinearICA``, ``from nica import
load``): ``import nica`` itself loads neither JAX nor scikit-learn, and the ``nica`` command
answers ``--help`` at once.
"""

from typing import TYPE_CHECKING

from nica._src import _lazy
from nica._src._version import VERSION as __version__  # noqa: F401 (every saved file records it)

if TYPE_CHECKING:  # the same names as _LAZY below, for type checkers and IDEs
    from nica import (
        activations,
        datasets,
        gradients,
        metrics,
        objectives,
        plotting,
        priors,
        transforms,
    )
    from nica._src.compilation_cache import enable_compilation_cache
    from nica._src.distributed import PeerFailure, initialize_distributed
    from nica._src.estimator import ConditionalNonlinearICA, NonlinearICA
    from nica._src.fitting import fit_to_data
    from nica._src.gradients import (
        Backprop,
        autodiff_gradient,
        backpropagated_errors,
        equivariant_gradient,
        euclidean_gradient,
        relative_gradient,
    )
    from nica._src.history import FitHistory, FitProgress
    from nica._src.network import (
        Layer,
        forward,
        forward_and_log_det,
        init_params,
        inverse,
        inverse_and_log_det,
        log_likelihood,
    )
    from nica._src.saving import load, save
    from nica._src.sharding import make_mesh, shard_params
    from nica._src.stopping import Decision, EarlyStopping, StoppingStatus
    from nica._src.training import TrainState, init_train_state, make_epoch, make_train_step
    from nica._src.transforms import transport

__all__ = [
    "Layer",
    "init_params",
    "forward",
    "inverse",
    "forward_and_log_det",
    "inverse_and_log_det",
    "log_likelihood",
    "relative_gradient",
    "equivariant_gradient",
    "transport",
    "euclidean_gradient",
    "autodiff_gradient",
    "backpropagated_errors",
    "Backprop",
    "TrainState",
    "init_train_state",
    "make_train_step",
    "make_epoch",
    "fit_to_data",
    "FitHistory",
    "FitProgress",
    "EarlyStopping",
    "StoppingStatus",
    "Decision",
    "make_mesh",
    "shard_params",
    "initialize_distributed",
    "PeerFailure",
    "NonlinearICA",
    "ConditionalNonlinearICA",
    "save",
    "load",
    "enable_compilation_cache",
    "activations",
    "priors",
    "objectives",
    "gradients",
    "transforms",
    "datasets",
    "metrics",
    "plotting",
]

# {public name: the module it is imported from, on first use}
_LAZY = {
    **{name: f"nica.{name}" for name in __all__[__all__.index("activations") :]},
    "enable_compilation_cache": "nica._src.compilation_cache",
    "NonlinearICA": "nica._src.estimator",
    "ConditionalNonlinearICA": "nica._src.estimator",
    "fit_to_data": "nica._src.fitting",
    **dict.fromkeys(
        [
            "Backprop",
            "autodiff_gradient",
            "backpropagated_errors",
            "equivariant_gradient",
            "euclidean_gradient",
            "relative_gradient",
        ],
        "nica._src.gradients",
    ),
    "FitHistory": "nica._src.history",
    "FitProgress": "nica._src.history",
    **dict.fromkeys(
        ["Layer", "forward", "forward_and_log_det", "init_params", "inverse", "inverse_and_log_det", "log_likelihood"],
        "nica._src.network",
    ),
    "load": "nica._src.saving",
    "save": "nica._src.saving",
    "make_mesh": "nica._src.sharding",
    "shard_params": "nica._src.sharding",
    "initialize_distributed": "nica._src.distributed",
    "PeerFailure": "nica._src.distributed",
    **dict.fromkeys(["Decision", "EarlyStopping", "StoppingStatus"], "nica._src.stopping"),
    **dict.fromkeys(["TrainState", "init_train_state", "make_epoch", "make_train_step"], "nica._src.training"),
    "transport": "nica._src.transforms",
}

__getattr__, __dir__ = _lazy.attach(__name__, _LAZY, __all__)
