"""Source priors (docs/theory.rst, "Priors" and "Learned source densities").

A prior is a small frozen (hashable, picklable) object; :class:`Prior` declares what every
prior provides, so callers never branch:

* ``conditional_log_prob(prior_params, S, u=None)``: ``Σ_i log p_i(s_i | u)`` per row, the first
  term of eqs. (3) and (4);
* ``conditional_sample(prior_params, key, u, n_components)``: draws, one row per row of ``u``;
* ``init_params(key, n_components, dtype)``: the prior's own learned parameters (a pytree kept
  outside the object and trained beside the network; ``()`` for a fixed density);
* ``conditional``: whether the density depends on an auxiliary variable ``u``.

A fixed factorized density (:class:`Gaussian`, ...) defines ``log_density(s)`` (elementwise)
and, to sample, ``_standard_sample``; a learned one (:class:`LearnedPrior`:
:class:`LogisticMixture`, and the conditional priors of :mod:`nica._src.conditional`) defines
``init_params``, ``param_log_density`` and ``param_sample`` instead.  Every density is written in
a numerically stable form (no overflow for large ``|s|``).

A new factorized prior is one class and one ``register("name", factory)`` line: the estimators'
``prior``, the command line's ``--prior`` and the tests read the registry.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
import numbers
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from nica._src._checks import check_int
from nica._src._registry import Registry, names_doc, register_doc

__all__ = [
    "Prior",
    "LearnedPrior",
    "Gaussian",
    "Laplace",
    "Logistic",
    "HypSecant",
    "LogisticMixture",
    "gaussian",
    "laplace",
    "logistic",
    "hypsecant",
    "logistic_mixture",
    "get",
    "register",
    "names",
    "check_prior_params",
    "prior_params_template",
    "check_aux",
    "as_aux_array",
]

_LOG_2PI = math.log(2.0 * math.pi)
_SQRT2 = math.sqrt(2.0)


def _check_shape(shape):
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of non-negative integers; got {shape!r}.") from None
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, (bool, np.bool_)) and n >= 0 for n in shape):
        raise ValueError(f"shape must be a tuple of non-negative integers; got {shape!r}.")
    return tuple(int(n) for n in shape)


def as_aux_array(u):
    """``u`` as an array (JAX arrays and tracers as they are; text or objects refused)."""
    if isinstance(u, jax.Array):
        return u
    arr = np.asarray(u)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"u must be a numeric array; got dtype {arr.dtype}.")
    return jnp.asarray(arr)


class Prior(abc.ABC):
    """Base class of nica's priors: a fixed factorized density, unless a subclass says otherwise.

    A fixed density defines :meth:`log_density` (required) and, to be sampled,
    ``_standard_sample(key, shape, dtype)``; :meth:`score` and the parametrised interface
    (``param_log_density``, ``conditional_log_prob``, ...) follow from them.  Learned densities
    derive from :class:`LearnedPrior`, conditional ones from ``nica.priors.ConditionalPrior``.

    Attributes
    ----------
    conditional : bool
        Whether the density depends on an auxiliary variable ``u`` (eq. 4); ``False`` here.
    variance : float
        The variance of each component.
    """

    name: ClassVar[str] = "prior"
    conditional: ClassVar[bool] = False
    variance: float = 1.0

    @abc.abstractmethod
    def log_density(self, s):  # pragma: no cover - abstract
        """Elementwise ``log p(s)``.

        Parameters
        ----------
        s : array

        Returns
        -------
        array of the same shape
        """

    def score(self, s):
        """Elementwise score ``d log p(s) / ds`` (by automatic differentiation unless a subclass
        gives it in closed form).

        Parameters
        ----------
        s : array

        Returns
        -------
        array of the same shape
        """
        s = jnp.asarray(s)
        return jnp.vectorize(jax.grad(self.log_density))(s)

    def _standard_sample(self, key, shape, dtype):
        raise NotImplementedError(
            f"{type(self).__name__} does not define _standard_sample(key, shape, dtype): it cannot be sampled."
        )

    def log_prob(self, S):
        """Sum of :meth:`log_density` over the last axis (the components): shape ``S.shape[:-1]``."""
        return jnp.sum(self.log_density(S), axis=-1)

    def sample(self, key, shape, dtype=jnp.float32):
        """Independent draws of the given shape, as a JAX array of ``dtype``."""
        return self._standard_sample(key, _check_shape(shape), dtype)

    # The parametrised and conditional interface (eq. 4).  A fixed factorized prior has no
    # parameters of its own and ignores the auxiliary variable, so callers never branch.

    def init_params(self, key, n_components, dtype=jnp.float32):
        """The prior's own learnable parameters: none for a fixed factorized prior."""
        return ()

    def param_log_density(self, prior_params, s):
        """Elementwise ``log p(s)`` with the prior's parameters (ignored by a fixed prior).

        ``s`` has the components on its last axis."""
        return self.log_density(s)

    def param_sample(self, prior_params, key, shape, dtype=jnp.float32):
        """Independent draws of ``shape`` (components on the last axis) with the prior's parameters."""
        return self.sample(key, shape, dtype)

    def conditional_log_prob(self, prior_params, S, u=None):
        """``Σ_i log p_i(s_i | u)``; a factorized prior ignores ``u``."""
        return jnp.sum(self.param_log_density(prior_params, S), axis=-1)

    def conditional_sample(self, prior_params, key, u, n_components, dtype=jnp.float32):
        """Draws ``s ~ p(s | u)``, one row per row of ``u``."""
        return self.param_sample(prior_params, key, (jnp.shape(u)[0], n_components), dtype)

    def check_aux(self, u):
        """``u`` checked for this prior: a factorized prior takes none."""
        if u is not None:
            raise ValueError(f"u is only used by a conditional prior; prior={self!r} is factorized: pass u=None.")
        return None


@dataclasses.dataclass(frozen=True)
class Gaussian(Prior):
    """Standard normal, ``p(s) = exp(−s²/2)/√(2π)``."""

    name: ClassVar[str] = "gaussian"
    variance = 1.0

    def log_density(self, s):
        return -0.5 * s**2 - 0.5 * _LOG_2PI

    def score(self, s):
        return -s

    def _standard_sample(self, key, shape, dtype):
        return jax.random.normal(key, shape, dtype)


@dataclasses.dataclass(frozen=True)
class Laplace(Prior):
    """Unit-variance Laplace, ``p(s) = exp(−√2·|s|)/√2``."""

    name: ClassVar[str] = "laplace"
    variance = 1.0

    def log_density(self, s):
        return -_SQRT2 * jnp.abs(s) - 0.5 * math.log(2.0)

    def score(self, s):
        return -_SQRT2 * jnp.sign(s)

    def _standard_sample(self, key, shape, dtype):
        return jax.random.laplace(key, shape, dtype) / _SQRT2


def _logistic_log_density(z):
    """``log f(z)`` of the standard logistic, stable for large ``|z|``."""
    a = jnp.abs(z)
    return -a - 2.0 * jnp.log1p(jnp.exp(-a))


@dataclasses.dataclass(frozen=True)
class Logistic(Prior):
    """Standard logistic, ``p(s) = e^{−s}/(1 + e^{−s})²`` (scale 1, variance π²/3)."""

    name: ClassVar[str] = "logistic"
    variance = math.pi**2 / 3.0

    def log_density(self, s):
        return _logistic_log_density(s)

    def score(self, s):
        return -jnp.tanh(0.5 * s)

    def _standard_sample(self, key, shape, dtype):
        return jax.random.logistic(key, shape, dtype)


@dataclasses.dataclass(frozen=True)
class HypSecant(Prior):
    """Unit-variance hyperbolic secant, ``p(s) = ½ sech(πs/2)``."""

    name: ClassVar[str] = "hypsecant"
    variance = 1.0

    def log_density(self, s):
        # log(½ sech z) = −|z| − log(1 + e^{−2|z|}) with z = πs/2.
        a = 0.5 * math.pi * jnp.abs(s)
        return -a - jnp.log1p(jnp.exp(-2.0 * a))

    def score(self, s):
        return -0.5 * math.pi * jnp.tanh(0.5 * math.pi * s)

    def _standard_sample(self, key, shape, dtype):
        # Inverse CDF: F(s) = (2/π)·arctan(exp(πs/2))  ⇒  s = (2/π)·log(tan(πu/2)).
        u = jax.random.uniform(key, shape, dtype, minval=jnp.finfo(dtype).tiny, maxval=1.0)
        return (2.0 / math.pi) * jnp.log(jnp.tan(0.5 * math.pi * u))


class LearnedPrior(Prior):
    """Base class of the priors with learned parameters (the prior's own pytree ``prior_params``).

    A subclass defines :meth:`init_params`, :meth:`param_log_density` and
    :meth:`param_sample` (and ``_required_keys``, the keys of its parameter dict); the
    parameter-free methods (``log_density``, ``log_prob``, ``score``, ``sample``) refuse
    clearly instead of evaluating some arbitrary shape.
    """

    @abc.abstractmethod
    def init_params(self, key, n_components, dtype=jnp.float32):  # pragma: no cover - abstract
        """The prior's initial parameters for ``n_components`` sources (a pytree of arrays)."""

    @abc.abstractmethod
    def param_log_density(self, prior_params, s):  # pragma: no cover - abstract
        """Elementwise ``log p(s)`` with the prior's parameters (components on the last axis)."""

    @abc.abstractmethod
    def param_sample(self, prior_params, key, shape, dtype=jnp.float32):  # pragma: no cover - abstract
        """Independent draws of ``shape`` (components on the last axis) with the prior's parameters."""

    def _required_keys(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_prior_params(self, prior_params):
        """Refuse prior parameters that are not this prior's (e.g. ``()`` or another prior's)."""
        keys = self._required_keys()
        if not isinstance(prior_params, dict) or not set(keys) <= set(prior_params):
            got = (
                f"a dict with keys {sorted(prior_params)}"
                if isinstance(prior_params, dict)
                else type(prior_params).__name__
            )
            raise TypeError(
                f"{type(self).__name__} needs its prior_params, a dict with keys {sorted(keys)} from "
                f"init_params(key, n_components) or a fitted estimator's prior_params_; got {got}."
            )
        return prior_params

    def _refuse(self, what):
        raise TypeError(
            f"{type(self).__name__} has learned parameters: {what} needs them. Use "
            f"param_log_density(prior_params, s) / conditional_log_prob(prior_params, S) / "
            f"conditional_sample(prior_params, key, u, n_components), with prior_params from "
            f"init_params(key, n_components) or a fitted estimator's prior_params_."
        )

    def log_density(self, s):
        self._refuse("log_density(s)")

    def log_prob(self, S):
        self._refuse("log_prob(S)")

    def score(self, s):
        self._refuse("score(s)")

    def sample(self, key, shape, dtype=jnp.float32):
        self._refuse("sample(key, shape)")


@dataclasses.dataclass(frozen=True)
class LogisticMixture(LearnedPrior):
    r"""A learned source density: per component, a mixture of ``n_mixtures`` logistics.

    .. math::

        p_i(s) = \sum_{k=1}^{K} \pi_{ik}\, \frac{1}{\sigma_{ik}}
                 f\!\left(\frac{s - \mu_{ik}}{\sigma_{ik}}\right),
        \qquad f(z) = \frac{e^{-z}}{(1 + e^{-z})^2},
        \qquad \pi_{i\cdot} = \operatorname{softmax}(a_{i\cdot}),

    normalised in closed form, with weights (logits ``a``), locations ``μ`` and log-scales
    ``log σ`` learned for each source by exact likelihood beside the network (ordinary
    gradients).  It can be super-Gaussian (peaked, heavy-tailed), sub-Gaussian (flat, bounded
    looking), skewed or multimodal, so that sources of either kind are separated; a fixed
    super-Gaussian prior cannot separate sub-Gaussian sources.  Sampling is exact (a component,
    then a logistic draw).  The cost is ``O(B·D·K)`` per step, negligible next to the
    network's ``O(L·B·D²)``.

    The parameters live outside the object (``init_params``), so the parameter-free methods
    (``log_prob(S)``, ``sample``) raise; use ``conditional_log_prob(prior_params, S)`` and
    ``conditional_sample``.  The initial shape (``init_params``) is a smooth unit-variance
    density close to a logistic.

    Parameters
    ----------
    n_mixtures : int, default=4
        Number of logistic components ``K`` per source.  Two already model sub-Gaussian
        (bimodal or flat), super-Gaussian (a scale mixture) and skewed sources, which is what
        separation needs; four model sharp-edged (uniform-like) and heavy-tailed densities
        well enough that linear ICA with 64 sources from 5,000 rows is as accurate as FastICA
        (with two: MCC 0.986 against 0.996).  Started far from the solution, a mixture with
        more than two components can also fit the multimodal marginal of two bimodal sources
        still mixed at 45°, a spurious optimum; the estimators' FastICA start (linear ICA)
        avoids it (docs/benchmarks.md, "Defaults").
    """

    n_mixtures: int = 4
    name: ClassVar[str] = "logistic_mixture"

    def __post_init__(self):
        check_int(self.n_mixtures, "n_mixtures")

    def init_params(self, key, n_components, dtype=jnp.float32):
        """``{"logits", "loc", "log_scale"}``, each of shape ``(n_components, n_mixtures)``.

        Deterministic (``key`` is not used): equal weights, locations evenly spread over
        ``[−c, c]`` and one common scale of half their spacing, rescaled so that the density
        has unit variance.
        """
        K = self.n_mixtures
        if K == 1:
            loc = jnp.zeros((1,), dtype)
            scale = math.sqrt(3.0) / math.pi
        else:
            spacing = 2.0 * _INIT_HALF_WIDTH / (K - 1)
            loc = jnp.linspace(-_INIT_HALF_WIDTH, _INIT_HALF_WIDTH, K, dtype=dtype)
            scale = _INIT_SCALE_PER_SPACING * spacing
            # rescale so that the mixture has unit variance: mean(μ²) + σ²π²/3 = 1
            total = float(jnp.mean(loc.astype(jnp.float32) ** 2)) + scale**2 * math.pi**2 / 3.0
            loc = loc / math.sqrt(total)
            scale = scale / math.sqrt(total)
        shape = (n_components, K)
        return {
            "logits": jnp.zeros(shape, dtype),
            "loc": jnp.broadcast_to(loc, shape).astype(dtype),
            "log_scale": jnp.full(shape, math.log(scale), dtype),
        }

    def _required_keys(self):
        return ("logits", "loc", "log_scale")

    def param_log_density(self, prior_params, s):
        self._check_prior_params(prior_params)
        lead = (1,) * (jnp.ndim(s) - 1)  # explicit broadcasting over the leading (sample) axes
        log_w, loc, log_scale = (
            jnp.reshape(a, lead + jnp.shape(a))
            for a in (
                jax.nn.log_softmax(prior_params["logits"], axis=-1),
                prior_params["loc"],
                prior_params["log_scale"],
            )
        )
        z = (s[..., None] - loc) * jnp.exp(-log_scale)  # (..., D, K)
        return jax.nn.logsumexp(log_w + _logistic_log_density(z) - log_scale, axis=-1)

    def param_sample(self, prior_params, key, shape, dtype=jnp.float32):
        self._check_prior_params(prior_params)
        shape = _check_shape(shape)
        key_component, key_noise = jax.random.split(key)
        k = jax.random.categorical(key_component, prior_params["logits"], axis=-1, shape=shape)

        def chosen(table):  # each draw's component's entry of a (D, K) table
            return jnp.take_along_axis(jnp.broadcast_to(table, (*shape, self.n_mixtures)), k[..., None], -1)[..., 0]

        eps = jax.random.logistic(key_noise, shape, dtype)
        return (chosen(prior_params["loc"]) + jnp.exp(chosen(prior_params["log_scale"])) * eps).astype(dtype)


_INIT_HALF_WIDTH = 1.0  # initial locations evenly spread over [−1, 1] (before rescaling)
_INIT_SCALE_PER_SPACING = 0.5  # initial logistic scale, in units of the spacing of the locations


def logistic_mixture(n_mixtures=4) -> LogisticMixture:
    """A learned source density: per source, a mixture of ``n_mixtures`` logistics.

    The shape of each source's density (weights, locations, scales) is fitted with the network
    by exact likelihood, so sub-Gaussian (uniform, bimodal), super-Gaussian and skewed sources
    are all modelled; see :class:`LogisticMixture`.

    Parameters
    ----------
    n_mixtures : int, default=4

    Returns
    -------
    LogisticMixture

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from nica import priors
    >>> prior = priors.logistic_mixture(4)
    >>> theta = prior.init_params(jax.random.key(0), n_components=3)
    >>> theta["loc"].shape
    (3, 4)
    >>> prior.conditional_log_prob(theta, jnp.zeros((5, 3))).shape
    (5,)
    """
    return LogisticMixture(check_int(n_mixtures, "n_mixtures"))


def gaussian() -> Gaussian:
    """Standard normal prior.

    Returns
    -------
    Gaussian

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from nica import priors
    >>> round(float(priors.gaussian().log_prob(jnp.zeros((1, 2)))[0]), 4)
    -1.8379
    """
    return Gaussian()


def laplace() -> Laplace:
    """Unit-variance Laplace prior (super-Gaussian; the usual ICA choice).

    Returns
    -------
    Laplace

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from nica import priors
    >>> priors.laplace().log_prob(jnp.zeros((3, 4))).shape
    (3,)
    """
    return Laplace()


def logistic() -> Logistic:
    """Standard logistic prior (scale 1, variance π²/3).

    Returns
    -------
    Logistic

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from nica import priors
    >>> round(float(priors.logistic().log_density(jnp.array(0.0))), 4)
    -1.3863
    """
    return Logistic()


def hypsecant() -> HypSecant:
    """Unit-variance hyperbolic-secant prior ``½ sech(πs/2)``.

    Returns
    -------
    HypSecant

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from nica import priors
    >>> round(float(priors.hypsecant().log_density(jnp.array(0.0))), 4)
    -0.6931
    """
    return HypSecant()


_REGISTRY = Registry("prior", Prior, factories=("segment_conditional", "mlp_conditional"))
_REGISTRY.register("gaussian", gaussian)
_REGISTRY.register("laplace", laplace)
_REGISTRY.register("logistic", logistic)
_REGISTRY.register("hypsecant", hypsecant)
_REGISTRY.register("logistic_mixture", logistic_mixture)


def get(prior) -> Prior:
    """Return a :class:`Prior` from an object or one of the registered names.

    Parameters
    ----------
    prior : str or Prior
        A registered factorized family (:func:`names`: ``"gaussian"``, ``"laplace"``,
        ``"logistic"``, ``"hypsecant"``, ``"logistic_mixture"``, a learned density with the
        default number of mixture components) or a prior object, returned unchanged.

    Returns
    -------
    Prior

    Examples
    --------
    >>> from nica import priors
    >>> priors.get("laplace")
    Laplace()
    """
    return _REGISTRY.get(prior)


def register(name: str, factory, *, overwrite: bool = False):
    return _REGISTRY.register(name, factory, overwrite=overwrite)


register.__doc__ = register_doc(
    "a factorized prior",
    "The estimators' ``prior``, the command line's ``--prior`` and :func:`get`",
    "a factorized :class:`Prior`",
    """\
    >>> import dataclasses, math, jax, jax.numpy as jnp
    >>> from nica import priors
    >>> @dataclasses.dataclass(frozen=True)
    ... class UnitLogistic(priors.Prior):              # logistic with unit variance
    ...     def log_density(self, s):
    ...         z = s * math.pi / math.sqrt(3.0)
    ...         return -jnp.abs(z) - 2 * jnp.log1p(jnp.exp(-jnp.abs(z))) + math.log(math.pi / math.sqrt(3.0))
    >>> _ = priors.register("unit_logistic_example", UnitLogistic)
    >>> priors.get("unit_logistic_example")
    UnitLogistic()
""",
)


def names() -> list[str]:
    return _REGISTRY.names()


names.__doc__ = names_doc(
    "factorized prior",
    """\
    >>> from nica import priors
    >>> "logistic_mixture" in priors.names()
    True
""",
)


# ---------------------------------------------------------------------------------------------
# checks of a prior's parameters and auxiliary variable


@functools.lru_cache(maxsize=64)
def prior_params_template(prior, n_features, dtype):
    """The shapes and dtypes of ``prior.init_params(key, n_features, dtype)``, made once per
    prior, size and dtype (eagerly, also while a step is being traced)."""
    with jax.ensure_compile_time_eval():
        params = prior.init_params(jax.random.key(0), n_features, dtype)
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), a.dtype), params)


def check_prior_params(prior, prior_params, n_features, dtype, *, name="prior_params", hint="", check_dtype=False):
    """Refuse ``prior_params`` whose pytree structure or shapes (and, with ``check_dtype``,
    dtypes) are not those of ``prior.init_params(key, n_features, dtype)``."""
    expected = prior_params_template(prior, n_features, np.dtype(dtype))
    got_leaves, got_tree = jax.tree_util.tree_flatten(prior_params)
    want_leaves, want_tree = jax.tree_util.tree_flatten(expected)
    if got_tree != want_tree or any(jnp.shape(a) != b.shape for a, b in zip(got_leaves, want_leaves)):
        raise ValueError(
            f"{name} do not match prior={type(prior).__name__} for {n_features} features: "
            f"expected {jax.tree_util.tree_map(lambda a: a.shape, expected)}, got "
            f"{jax.tree_util.tree_map(jnp.shape, prior_params)}; build them with "
            f"prior.init_params(key, n_features){hint}."
        )
    if check_dtype:
        dtypes = sorted({str(jnp.result_type(a)) for a in got_leaves} - {str(np.dtype(dtype))})
        if dtypes:
            raise TypeError(
                f"{name} have dtype {', '.join(dtypes)} but the network's parameters are "
                f"{np.dtype(dtype)}; build them with prior.init_params(key, n_features, dtype) "
                "(nica never changes dtypes silently)."
            )
    return prior_params


def check_aux(prior, u, n_samples, where) -> Any:
    """``u`` checked against ``prior`` and the ``n_samples`` rows of ``X``: ``None`` for a
    factorized prior, for a conditional one an array of one entry per row that suits it
    (returned as an array; concrete segment ids are range-checked)."""
    if not prior.conditional:
        return prior.check_aux(u)
    if u is None:
        raise ValueError(
            f"prior={type(prior).__name__} is conditional: pass the auxiliary variable u "
            f"(one entry per row of X) to {where}."
        )
    if jnp.shape(u)[:1] != (n_samples,):
        raise ValueError(f"u must have one entry per row of X ({n_samples}); got shape {jnp.shape(u)}.")
    return prior.check_aux(u)
