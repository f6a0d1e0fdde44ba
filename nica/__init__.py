"""nica: nonlinear ICA and exact-likelihood density estimation with the relative gradient.

Conventions used everywhere in nica: rows are samples (``X`` has shape
``(n_samples, n_features)``); ``forward`` maps observations to sources; layer ``k`` acts as
``y = W z + b`` exactly as in Gresele et al. (NeurIPS 2020), so a batch computes
``Y = Z @ W.T + b``.
"""

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
from nica._src.persistence import VERSION as __version__  # noqa: F401 (every saved file records it)
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
    "NonlinearICA",
    "ConditionalNonlinearICA",
    "save",
    "load",
    "activations",
    "priors",
    "objectives",
    "gradients",
    "transforms",
    "datasets",
    "metrics",
    "plotting",
]
