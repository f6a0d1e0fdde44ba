"""The defaults a user gets from ``fit(X)``, as a product: the learned source density, the
FastICA start and the options resolved by size, beside scikit-learn's ``FastICA`` on known
linear generators (``tests/oracles.py``, ``linear_problem``).  (The learned density itself:
tests/test_priors.py; the FastICA start: tests/test_preprocessing.py.)"""

import numpy as np
import pytest
from oracles import linear_problem
from sklearn.decomposition import FastICA

import nica
from nica.metrics import amari_distance, mean_corr_coef

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.mark.parametrize("kind", ["uniform", "bimodal", "laplace"])
def test_defaults_unmix_sub_and_super_gaussian_linear_mixtures(kind):
    """The textbook failure of a fixed super-Gaussian prior is gone with the learned density."""
    X_train, X_test, S_test, _ = linear_problem(kind)
    model = nica.NonlinearICA(n_layers=1, random_state=0).fit(X_train)
    assert mean_corr_coef(S_test, model.transform(X_test)) >= 0.99
    if kind != "laplace":  # the control: the old fixed Laplace prior cannot separate these
        fixed = nica.NonlinearICA(n_layers=1, prior="laplace", random_state=0).fit(X_train)
        assert mean_corr_coef(S_test, fixed.transform(X_test)) < 0.95


def test_linear_model_is_a_drop_in_for_fastica():
    X_train, X_test, S_test, A = linear_problem("laplace", d=3)
    model = nica.NonlinearICA(n_layers=1, random_state=0).fit(X_train)
    ref = FastICA(whiten="unit-variance", random_state=0).fit(X_train)
    for name in ("components_", "mixing_", "mean_"):
        assert getattr(model, name).shape == getattr(ref, name).shape
    S = model.transform(X_test)
    np.testing.assert_allclose((X_test - model.mean_) @ model.components_.T, S, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(S @ model.mixing_.T + model.mean_, X_test, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(model.inverse_transform(S), X_test, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(model.mixing_ @ model.components_, np.eye(3), atol=1e-10)
    # the same unmixing as FastICA, up to permutation and scale
    ours, theirs = amari_distance(model.components_, A), amari_distance(ref.components_, A)
    assert ours < 0.05 and theirs < 0.05 and ours <= theirs + 0.01
    assert mean_corr_coef(S_test, S) >= mean_corr_coef(S_test, ref.transform(X_test)) - 0.005
    deep = nica.NonlinearICA(n_layers=2, max_iter=2).fit(X_train)
    with pytest.raises(AttributeError, match="n_layers=1"):
        deep.components_
    with pytest.raises(AttributeError, match="n_layers=1"):
        deep.mixing_


def test_linear_ica_starts_at_the_fastica_rotation():
    """init="auto" is FastICA's rotation for linear ICA: before any training (a step of 1e-12)
    it already separates the generator's sources, which a random orthogonal start does not."""
    X_train, X_test, S_test, _ = linear_problem("laplace", d=4)
    frozen = dict(n_layers=1, learning_rate=1e-12, max_iter=1, early_stopping=False, random_state=0)
    start = nica.NonlinearICA(**frozen).fit(X_train)
    assert start.init_ == "fastica"
    assert mean_corr_coef(S_test, start.transform(X_test)) >= 0.99
    random = nica.NonlinearICA(init="random", **frozen).fit(X_train)
    assert random.init_ == "random"
    assert mean_corr_coef(S_test, random.transform(X_test)) < 0.9
    assert nica.NonlinearICA(n_layers=2, max_iter=1).fit(X_train).init_ == "random"
    assert nica.NonlinearICA(n_layers=1, whiten="standardize", max_iter=1).fit(X_train).init_ == "random"


def test_defaults_match_fastica_on_sixteen_uniform_sources():
    """Sixteen sub-Gaussian sources from 5,000 rows: from a random start the gradient stalls
    near the Gaussian mixture (MCC about 0.5 on some draws); the defaults are within 0.005 of
    FastICA."""
    X_train, X_test, S_test, _ = linear_problem("uniform", n=10000, d=16, seed=3)
    model = nica.NonlinearICA(n_layers=1, random_state=0).fit(X_train)
    ref = FastICA(whiten="unit-variance", random_state=0, max_iter=1000).fit(X_train)
    assert mean_corr_coef(S_test, model.transform(X_test)) >= mean_corr_coef(S_test, ref.transform(X_test)) - 0.005


def test_auto_options_resolve_by_size():
    X = np.random.default_rng(0).laplace(size=(200, 9))
    model = nica.NonlinearICA(n_layers=1, max_iter=2, batch_size=64).fit(X)
    assert model.whiten_ == "unit-variance" and model.gradient_ == "equivariant"
    model = nica.NonlinearICA(n_layers=1, max_iter=2, batch_size=2).fit(X)
    assert model.gradient_ == "relative"  # 9 features > 4 × batch of 2: the transport would dominate
    model = nica.NonlinearICA(n_layers=1, max_iter=2, whiten="standardize", gradient="relative").fit(X)
    assert model.whiten_ == "standardize" and model.gradient_ == "relative"


@pytest.mark.parametrize("n_features", [8, 64, 100, 256])
def test_the_automatic_rate_from_a_random_start_shrinks_as_one_over_sqrt_width_above_64(n_features):
    """Adam moves every entry of a D×D matrix by about the rate, so its step grows with D: from a
    random start ``learning_rate="auto"`` is 1e-2 up to 64 sources and 1e-2·sqrt(64/D) above
    (at D = 256 the full rate diverged in its first epoch in float32); the FastICA start's 1e-3
    and a rate given are left as they are."""
    X = np.random.default_rng(0).laplace(size=(max(2 * n_features, 300), n_features))
    model = nica.NonlinearICA(n_layers=2, max_iter=1, random_state=0).fit(X)
    assert model.learning_rate_ == pytest.approx(1e-2 * min(1.0, (64 / n_features) ** 0.5))
    given = nica.NonlinearICA(n_layers=2, max_iter=1, learning_rate=1e-2, random_state=0).fit(X)
    assert given.learning_rate_ == 1e-2
    linear = nica.NonlinearICA(n_layers=1, max_iter=1, random_state=0).fit(X)
    assert linear.init_ == "fastica" and linear.learning_rate_ == pytest.approx(1e-3)
