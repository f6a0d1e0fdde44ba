"""Training features as optax ``GradientTransformation``\\ s with their own states: the
equivariant transport, a rate scale the fit loop lowers at plateaus, and parameter averaging."""

from nica._src.transforms import (
    ParamAverageState,
    RateScaleState,
    average_params,
    equivariant_transport,
    scale_by_rate,
)

__all__ = ["equivariant_transport", "scale_by_rate", "RateScaleState", "average_params", "ParamAverageState"]
