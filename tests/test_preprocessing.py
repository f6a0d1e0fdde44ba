"""The estimators' pre-processing and starting point (``nica/_src/estimator/preprocessing.py``):
whitening against its definition (the covariance of the whitened rows, the log-determinant),
the log-cosh contrast against quadrature, and the FastICA start against a naive recomputation
of the contrast of each of its starts."""

import numpy as np
import pytest
from oracles import linear_problem
from scipy import integrate, stats
from sklearn.decomposition import FastICA

import nica
from nica._src.estimator.preprocessing import fit_whitening, logcosh_contrast


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unit_variance_whitening_decorrelates_and_knows_its_log_determinant(dtype):
    rng = np.random.default_rng(0)
    X = (rng.laplace(size=(500, 3)) @ np.array([[3.0, 1.0, 0.0], [0.5, 0.7, 0.2], [0.0, 0.3, 2.0]]).T + 5.0).astype(
        dtype
    )
    w = fit_whitening(X, "unit-variance")
    assert w.scale is None and w.matrix.dtype == dtype
    Z = (X.astype(np.float64) - w.mean) @ w.matrix.T.astype(np.float64)
    tol = 1e-10 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=tol)
    np.testing.assert_allclose(np.cov(Z, rowvar=False, bias=True), np.eye(3), atol=tol * 10)
    assert w.log_det == pytest.approx(np.linalg.slogdet(w.matrix.astype(np.float64))[1], rel=tol)
    assert w.log_det == pytest.approx(
        -0.5 * np.linalg.slogdet(np.cov(X.astype(np.float64), rowvar=False, bias=True))[1], rel=tol * 10
    )


def test_standardize_scales_each_feature_and_leaves_constant_ones():
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.normal(2.0, 3.0, 400), rng.normal(-1.0, 0.5, 400), np.full(400, 7.0)])
    w = fit_whitening(X, "standardize")
    assert w.matrix is None
    np.testing.assert_allclose((X - w.mean) * w.scale, (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0))
    assert w.scale[2] == 1.0  # a constant feature is only centred
    assert w.log_det == pytest.approx(np.sum(np.log(w.scale)))
    none = fit_whitening(X, False)
    np.testing.assert_array_equal(none.mean, 0.0)
    np.testing.assert_array_equal(none.scale, 1.0)
    assert none.log_det == 0.0


def test_logcosh_contrast_against_quadrature():
    """``Σᵢ (E log cosh yᵢ − E log cosh ν)²`` of unit-variance columns, ``ν`` standard normal (its
    expectation by quadrature here); zero in expectation for Gaussian columns."""
    rng = np.random.default_rng(2)
    Y = np.column_stack([rng.laplace(size=20000), rng.uniform(-1, 1, 20000), rng.normal(size=20000)])
    gauss = integrate.quad(lambda x: np.log(np.cosh(x)) * stats.norm.pdf(x), -30, 30)[0]
    Z = Y / Y.std(axis=0)
    expected = np.sum((np.log(np.cosh(Z)).mean(axis=0) - gauss) ** 2)
    assert logcosh_contrast(3.0 * Y) == pytest.approx(expected, rel=1e-9)  # scale-free
    assert logcosh_contrast(rng.normal(size=(20000, 2))) < 1e-4


def test_fastica_start_keeps_the_start_with_the_largest_contrast(monkeypatch):
    """Of its several FastICA starts, init="fastica" keeps the fixed point with the largest
    log-cosh contrast Σᵢ (E log cosh yᵢ − E log cosh ν)², here recomputed naively with the
    Gaussian reference value by quadrature."""
    import nica._src.estimator.preprocessing as est_module

    fitted = []

    class RecordingFastICA(FastICA):
        def fit(self, X, y=None):
            super().fit(X)
            fitted.append(self.components_.copy())
            return self

    monkeypatch.setattr(est_module, "FastICA", RecordingFastICA)
    X_train, _, _, _ = linear_problem("laplace", d=6)
    frozen = dict(n_layers=1, learning_rate=1e-12, max_iter=1, early_stopping=False, random_state=3)
    model = nica.NonlinearICA(**frozen).fit(X_train)
    assert len(fitted) >= 2
    gauss = integrate.quad(lambda x: np.log(np.cosh(x)) * stats.norm.pdf(x), -30, 30)[0]
    Z = (X_train - X_train.mean(axis=0)) @ model.whitening_.T

    def contrast(W):
        Y = Z @ W.T
        Y = Y / Y.std(axis=0)
        return np.sum((np.log(np.cosh(Y)).mean(axis=0) - gauss) ** 2)

    best = fitted[int(np.argmax([contrast(W) for W in fitted]))]
    np.testing.assert_allclose(model.network_params_[0].W, best, rtol=1e-9, atol=1e-9)


def test_data_too_large_to_whiten_is_refused_clearly():
    X = np.random.default_rng(0).laplace(size=(100, 3)) * 1e160
    for whiten in ("unit-variance", "standardize"):
        with pytest.raises(
            ValueError,
            match=r"X has values too large to whiten in float64 \(largest \|x\| = "
            r"\d\.\d+e\+16\d: its variance overflows\); rescale X",
        ):
            nica.NonlinearICA(n_layers=1, whiten=whiten, max_iter=1).fit(X)
