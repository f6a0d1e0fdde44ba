"""Input checks shared by the functional core and the estimators: each refuses misuse before any
JAX tracing with a ``ValueError`` or ``TypeError`` that names the argument, what was expected
and what arrived (docs/reliability.rst lists the bad inputs tried).

Nothing here imports the rest of nica at module level, so that the activations and priors
modules can use the generic checks.
"""

from __future__ import annotations

import functools
import numbers

import numpy as np

__all__ = ["check_real", "check_static", "check_implements", "refuse_unusable", "check_optimizer",
           "check_verbose", "check_estimator_prior", "unique_labels", "labels_known",
           "optimizer_state_fits", "warm_start_changes", "prior_params_template", "check_prior_params",
           "check_aux"]


def check_real(value, name, *, owner, low=None, high=None):
    """``value`` as a float: a finite real number (not a bool, not text) in the open interval
    ``(low, high)`` (either bound may be None)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner} needs a real number {name}; got {value!r} of type {type(value).__name__}.")
    value = float(value)
    if not np.isfinite(value) or (low is not None and value <= low) or (high is not None and value >= high):
        left = "" if low is None else f"{low} < "
        right = "" if high is None else f" < {high}"
        raise ValueError(f"{owner} needs a finite {left}{name}{right}; got {name}={value!r}.")
    return value


def check_static(obj, kind):
    """Refuse an activation or prior that ``jax.jit`` cannot take as a static argument."""
    try:
        hash(obj)
    except TypeError as error:
        raise TypeError(
            f"{kind} {type(obj).__name__} is not hashable ({error}): nica passes {kind}s to "
            "jax.jit as static arguments, so a custom one must be hashable; declare it with "
            "@dataclasses.dataclass(frozen=True), as the built-in ones are."
        ) from None
    return obj


def check_implements(obj, base, kind, groups):
    """Refuse a subclass of ``base`` that leaves abstract methods undefined.

    ``groups``: tuples of method names of which at least one must be overridden each.
    """
    cls = type(obj)
    for group in groups:
        if all(getattr(cls, name) is getattr(base, name) for name in group):
            needed = " or ".join(group)
            raise TypeError(f"{kind} {cls.__name__} must define {needed} (see nica.{kind}s.{base.__name__}).")
    return obj


def refuse_unusable(obj, kind, base, names, factories=()):
    """The error for an object that is neither one of the registered ``names`` nor an instance of
    ``base``: a class, a factory function not called, or anything else."""
    if isinstance(obj, type) and issubclass(obj, base):
        return TypeError(f"{kind} must be an instance; got the class {obj.__name__}: pass {obj.__name__}(...).")
    if callable(obj) and getattr(obj, "__name__", None) in {*names, *factories}:
        return TypeError(f"{kind} must be an nica.{kind}s object; got the function {obj.__name__}: "
                         f"call it, {obj.__name__}(...).")
    return TypeError(f"{kind} must be a string in {sorted(names)} or an nica.{kind}s object; "
                     f"got {type(obj).__name__}.")


@functools.lru_cache(maxsize=64)
def _probe_optimizer(optimizer):
    """Initialise and update ``optimizer`` on a tiny parameter pair, abstractly (no computation)."""
    import jax
    import jax.numpy as jnp

    from nica._src.network import Layer

    params = ((Layer(jnp.eye(2), jnp.zeros(2)),), {"loc": jnp.zeros((2, 2))})
    state = jax.eval_shape(optimizer.init, params)
    jax.eval_shape(optimizer.update, params, state, params)


def check_optimizer(optimizer, spec):
    """``optimizer`` (or, if callable, what it returns) must be an optax ``GradientTransformation``
    that works on nica's parameter pairs ``(params, prior_params)``; ``spec`` is what the user
    passed, for the messages."""
    import optax

    if callable(optimizer) and not isinstance(optimizer, optax.GradientTransformation):
        try:
            optimizer = optimizer()
        except Exception as error:  # the factory a user named or passed failed: say which
            if isinstance(error, (ValueError, TypeError)) and str(error).startswith("optimizer"):
                raise  # nica's own messages name the parameter already
            raise TypeError(f"optimizer={spec!r} could not be built: {type(error).__name__}: {error}") from None
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax.GradientTransformation (e.g. optax.adam(1e-2)); "
                        f"got {type(optimizer).__name__}.")
    try:
        _probe_optimizer(optimizer)
    except Exception as error:  # any failure of a user's transformation, named and re-raised
        raise TypeError(
            f"optimizer={spec!r} does not work as an optax optimizer: initialising or updating it "
            f"on a parameter pytree raised {type(error).__name__}: {str(error)[:200]}"
        ) from None
    return optimizer


def check_verbose(verbose):
    """As scikit-learn's estimators: a bool or an integer >= 0."""
    ok = isinstance(verbose, (bool, np.bool_)) or (isinstance(verbose, numbers.Integral) and verbose >= 0)
    if not ok:
        raise ValueError(f"verbose must be a bool or an integer >= 0; got {verbose!r}.")


def check_estimator_prior(prior, owner):
    """The estimators take a factorized prior (the conditional one builds its conditional prior
    from it); refuse a conditional prior object before anything is traced."""
    from nica._src.priors import _LocationScaleConditional

    if isinstance(prior, _LocationScaleConditional):
        if owner == "NonlinearICA":
            hint = ("a conditional prior needs an auxiliary variable: use "
                    f"ConditionalNonlinearICA(prior={prior.base!r}) and pass u as y")
        else:
            hint = (f"{owner} builds the conditional prior itself from its base family; pass "
                    f"prior={prior.base!r} (and learn_location, hidden_units as parameters)")
        raise ValueError(f"{owner}'s prior must be a factorized family (a name or a factorized "
                         f"nica.priors object); got the conditional {type(prior).__name__}: {hint}.")
    return prior


def _label_kinds(y):
    def kind(v):
        if isinstance(v, (bool, np.bool_)):
            return "bool"
        if isinstance(v, (str, np.str_, bytes)):
            return "string"
        if isinstance(v, (numbers.Number, np.number)):
            return "number"
        return type(v).__name__
    return sorted({kind(v) for v in np.asarray(y, dtype=object).ravel()})


def unique_labels(y, name="y"):
    """``np.unique(y, return_counts=True)`` for discrete labels, refusing labels that cannot be
    sorted (a mix of numbers and strings, ``None``) with a message naming ``name``; scikit-learn
    refuses a mix of label types too."""
    try:
        return np.unique(y, return_counts=True)
    except TypeError:
        raise ValueError(f"{name} must hold labels of one kind, all numbers or all strings, that can be "
                         f"sorted; got labels of the kinds {_label_kinds(y)}.") from None


def labels_known(y, classes, name="y"):
    """``np.isin(y, classes)``, refusing labels that cannot be compared with the fitted ones."""
    try:
        return np.isin(y, classes)
    except TypeError:
        raise ValueError(f"{name} holds labels of kinds {_label_kinds(y)} that cannot be compared with "
                         f"the segment labels seen during fit ({_label_kinds(classes[:1])[0]}s such as "
                         f"{classes[:3].tolist()}).") from None


@functools.lru_cache(maxsize=64)
def prior_params_template(prior, n_features, dtype):
    """The shapes and dtypes of ``prior.init_params(key, n_features, dtype)``, made once per
    prior, size and dtype (eagerly, also while a step is being traced)."""
    import jax
    import jax.numpy as jnp

    with jax.ensure_compile_time_eval():
        params = prior.init_params(jax.random.key(0), n_features, dtype)
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), a.dtype), params)


def check_prior_params(prior, prior_params, n_features, dtype, *, name="prior_params", hint="",
                       check_dtype=False):
    """Refuse ``prior_params`` whose pytree structure or shapes (and, with ``check_dtype``,
    dtypes) are not those of ``prior.init_params(key, n_features, dtype)``."""
    import jax
    import jax.numpy as jnp

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


def check_aux(prior, u, n_samples, where):
    """``u`` checked against ``prior`` and the ``n_samples`` rows of ``X``: ``None`` for a
    factorized prior, for a conditional one an array of one entry per row that suits it
    (returned as an array; concrete segment ids are range-checked)."""
    import jax.numpy as jnp

    from nica._src.priors import _LocationScaleConditional

    conditional = isinstance(prior, _LocationScaleConditional)
    if u is not None and not conditional:
        raise ValueError(f"u is only used by a conditional prior; prior={prior!r} is factorized: "
                         "pass u=None.")
    if not conditional:
        return None
    if u is None:
        raise ValueError(f"prior={type(prior).__name__} is conditional: pass the auxiliary variable u "
                         f"(one entry per row of X) to {where}.")
    if jnp.shape(u)[:1] != (n_samples,):
        raise ValueError(f"u must have one entry per row of X ({n_samples}); got shape {jnp.shape(u)}.")
    return prior._check_u(u)


def optimizer_state_fits(optimizer, state):
    """Whether ``state.opt_state`` has the structure and shapes ``optimizer`` would give the
    state's parameters (abstractly: nothing is computed)."""
    import jax

    expected = jax.eval_shape(optimizer.init, (state.params, state.prior_params))
    leaves, tree = jax.tree_util.tree_flatten(state.opt_state)
    expected_leaves, expected_tree = jax.tree_util.tree_flatten(expected)
    return tree == expected_tree and all(
        np.shape(a) == b.shape for a, b in zip(leaves, expected_leaves))


def warm_start_changes(estimator, prior):
    """The hyperparameters changed since the fitted state was made that it cannot continue
    under (a new network or pre-processing is needed): their names, with old and new values."""
    from nica._src.priors import MLPConditional, _LocationScaleConditional

    state = estimator._state
    changed = []

    def compare(name, old, new):
        if old != new:
            changed.append(f"{name} ({old!r} -> {new!r})")

    compare("n_layers", len(state.params), int(estimator.n_layers))
    compare("bias", state.params[0].b is not None, bool(estimator.bias))
    compare("whiten", estimator.whiten_, estimator._resolve_whiten(estimator.n_features_in_))
    fitted = estimator.prior_
    if isinstance(fitted, _LocationScaleConditional):
        compare("prior", fitted.base, prior)
        compare("learn_location", fitted.learn_location, bool(estimator.learn_location))
        if isinstance(fitted, MLPConditional):
            compare("hidden_units", fitted.hidden_units, int(estimator.hidden_units))
        if estimator.aux_type != "auto":
            compare("aux_type", estimator.aux_type_, estimator.aux_type)
    else:
        compare("prior", fitted, prior)
    return changed
