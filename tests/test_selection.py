"""Candidate priors (``ConditionalNonlinearICA(prior=[...])``): the kept model is the candidate
fitted alone whose validation log-likelihood is highest; the oracle is each candidate fitted on
its own with the same settings and ``random_state``."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone

import nica
from nica.datasets import make_segmented_mixture

SETTINGS = dict(n_layers=2, max_iter=6, batch_size=128, random_state=0)
CANDIDATES = ["laplace", "logistic_mixture"]


@pytest.fixture(scope="module")
def data():
    # skewed, zero-inflated sources (a point mass and an exponential), which a Laplace fits badly
    mixture = make_segmented_mixture(n_segments=6, n_per_segment=200, n_components=2, n_layers=1, random_state=0)
    rng = np.random.default_rng(0)
    S = np.where(rng.uniform(size=mixture.S_train.shape) < 0.4, 0.0, rng.exponential(size=mixture.S_train.shape))
    S = S * np.exp(rng.normal(size=(6, 2)))[mixture.u_train]
    return S @ np.array([[1.0, 0.6], [0.3, 1.0]]).T, mixture.u_train


def fit(data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nica.ConditionalNonlinearICA(**{**SETTINGS, **kw}).fit(*data)


@pytest.fixture(scope="module")
def chosen(data):
    return fit(data, prior=CANDIDATES)


@pytest.fixture(scope="module")
def alone(data):
    return [fit(data, prior=prior) for prior in CANDIDATES]


def test_the_kept_model_is_the_best_candidate_fitted_alone(data, chosen, alone):
    scores = [model.validation_log_likelihoods_[model.best_iter_ - 1] for model in alone]
    np.testing.assert_allclose(chosen.candidate_scores_, scores, rtol=1e-12)
    assert int(np.argmax(scores)) == 1  # the learned family fits the zero-inflated sources better
    best = alone[1]
    assert chosen.prior_ == best.prior_
    assert chosen.prior == CANDIDATES  # the parameter is left as given
    np.testing.assert_array_equal(chosen.transform(data[0]), best.transform(data[0]))
    np.testing.assert_array_equal(chosen.score_samples(*data), best.score_samples(*data))
    assert chosen.n_iter_ == best.n_iter_ and chosen.contrastive_weight_ == best.contrastive_weight_


def test_the_validation_log_likelihood_is_what_score_gives_the_validation_rows(data, alone):
    # the score compared is the exact log-likelihood, the same quantity for every family: the
    # hybrid Laplace model's validation objective is lower than its log-likelihood
    laplace, mixture = alone
    assert laplace.contrastive_weight_ == 2.0 and mixture.contrastive_weight_ == 0.0
    assert (
        laplace.validation_scores_[laplace.best_iter_ - 1] < laplace.validation_log_likelihoods_[laplace.best_iter_ - 1]
    )
    assert mixture.validation_scores_[mixture.best_iter_ - 1] == pytest.approx(
        mixture.validation_log_likelihoods_[mixture.best_iter_ - 1], rel=1e-9
    )


def test_a_refit_forgets_the_previous_choice(data, chosen):
    model = clone(chosen).set_params(prior=["logistic_mixture", "gaussian"])
    first = fit(data, prior=CANDIDATES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first.set_params(prior=["logistic_mixture", "gaussian"]).fit(*data)
        model.fit(*data)
    assert first.candidate_scores_ == model.candidate_scores_
    np.testing.assert_array_equal(first.transform(data[0]), model.transform(data[0]))


def test_the_chosen_model_pickles_and_saves(data, chosen, tmp_path):
    again = pickle.loads(pickle.dumps(chosen))
    np.testing.assert_array_equal(again.transform(data[0]), chosen.transform(data[0]))
    nica.save(chosen, tmp_path / "m.nica")
    loaded = nica.load(tmp_path / "m.nica")
    np.testing.assert_array_equal(loaded.transform(data[0]), chosen.transform(data[0]))


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(prior=["laplace"]), "at least two candidate"),
        (dict(prior=[]), "at least two candidate"),
        (dict(prior=["laplace", "no_such_prior"]), "no_such_prior"),
        (dict(prior=CANDIDATES, early_stopping=False), "early_stopping=True"),
        (dict(prior=CANDIDATES, checkpoint_path="ck.nica"), "checkpoint_path"),
    ],
)
def test_lists_that_cannot_be_fitted_are_refused_before_fitting(data, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        nica.ConditionalNonlinearICA(**{**SETTINGS, **kw}).fit(*data)


def test_a_list_is_not_continued(data, chosen):
    model = pickle.loads(pickle.dumps(chosen)).set_params(warm_start=True)
    with pytest.raises(ValueError, match="warm_start and partial_fit"):
        model.fit(*data)
    with pytest.raises(ValueError, match="warm_start and partial_fit"):
        pickle.loads(pickle.dumps(chosen)).partial_fit(*data)
