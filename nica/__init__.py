"""nica: nonlinear ICA and exact-likelihood density estimation with the relative gradient.

Conventions used everywhere in nica: rows are samples (``X`` has shape
``(n_samples, n_features)``); ``forward`` maps observations to sources; layer ``k`` acts as
``y = W z + b`` exactly as in Gresele et al. (NeurIPS 2020), so a batch computes
``Y = Z @ W.T + b``.
"""

from nica import activations, priors
from nica._src.gradients import (
    autodiff_gradient,
    equivariant_gradient,
    euclidean_gradient,
    relative_gradient,
    transport,
)
from nica._src.estimator import ConditionalNonlinearICA, NonlinearICA
from nica._src.network import (
    Layer,
    forward,
    forward_and_log_det,
    init_params,
    inverse,
    inverse_and_log_det,
    log_likelihood,
)
from nica._src.training import (
    FitHistory,
    FitProgress,
    TrainState,
    fit_to_data,
    init_train_state,
    make_mesh,
    make_train_step,
    shard_params,
)

__version__ = "0.1.0"

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
    "TrainState",
    "init_train_state",
    "make_train_step",
    "fit_to_data",
    "FitHistory",
    "FitProgress",
    "make_mesh",
    "shard_params",
    "NonlinearICA",
    "ConditionalNonlinearICA",
    "activations",
    "priors",
]

try:  # standalone NumPy/SciPy modules; present once written
    from nica import datasets, metrics, plotting  # noqa: F401

    __all__ += ["datasets", "metrics", "plotting"]
except ImportError:  # pragma: no cover
    pass
