"""nica's scikit-learn estimators: :class:`NonlinearICA` and :class:`ConditionalNonlinearICA`."""

from nica._src.estimator.conditional import ConditionalNonlinearICA
from nica._src.estimator.nonlinear import NonlinearICA

__all__ = ["NonlinearICA", "ConditionalNonlinearICA"]
