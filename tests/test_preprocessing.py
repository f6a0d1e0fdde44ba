"""The estimators' pre-processing and starting point (``nica/_src/estimator/preprocessing.py``):
whitening against its definition (the covariance of the whitened rows, the log-determinant),
the log-cosh contrast against quadrature, and the FastICA start against a naive recomputation
of the contrast of each of its starts."""

import warnings

import numpy as np
import pytest
from oracles import linear_problem
from scipy import integrate, stats
from sklearn.decomposition import FastICA
from sklearn.exceptions import ConvergenceWarning

import nica
from nica._src.estimator.preprocessing import discarded_log_density, fit_whitening, logcosh_contrast


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
    with pytest.warns(UserWarning, match=r"constant column\(s\) \[2\].*remove the constant"):
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


# ---------------------------------------------------------------------------------------------
# n_components: PCA whitening that keeps the directions of largest variance


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_reduced_whitening_keeps_the_principal_directions_and_knows_what_it_discards(dtype):
    rng = np.random.default_rng(3)
    X = (rng.laplace(size=(800, 5)) @ rng.normal(size=(5, 5)) * [3.0, 2.0, 1.0, 0.5, 0.2] + 1.0).astype(dtype)
    w = fit_whitening(X, "unit-variance", 3)
    X64 = X.astype(np.float64)
    eigval, eigvec = np.linalg.eigh(np.cov(X64, rowvar=False, bias=True))  # independent recomputation
    tol = 1e-9 if dtype == np.float64 else 1e-4
    assert w.matrix.shape == (3, 5) and w.discarded.shape == (5, 2) and w.matrix.dtype == dtype
    Z = (X64 - w.mean) @ w.matrix.T.astype(np.float64)
    np.testing.assert_allclose(np.cov(Z, rowvar=False, bias=True), np.eye(3), atol=tol * 10)
    # kept rows span the top three eigenvectors, the discarded columns the other two
    np.testing.assert_allclose(np.abs(w.discarded.T.astype(np.float64) @ eigvec[:, :2]), np.eye(2), atol=tol * 10)
    np.testing.assert_allclose(w.matrix.astype(np.float64) @ eigvec[:, :2], 0.0, atol=tol * 10)
    assert w.log_det == pytest.approx(-0.5 * np.sum(np.log(eigval[2:])), rel=tol)
    assert w.noise_variance == pytest.approx(np.mean(eigval[:2]), rel=tol * 10)
    # the discarded density: an isotropic Gaussian of the residual against scipy
    R = (X64 - w.mean) @ eigvec[:, :2]
    expected = stats.multivariate_normal(np.zeros(2), w.noise_variance * np.eye(2)).logpdf(R)
    got = discarded_log_density(X64, w.mean, w.discarded.astype(np.float64), w.noise_variance)
    np.testing.assert_allclose(got, expected, rtol=tol * 10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("whiten", ["unit-variance", "standardize"])
def test_whitening_is_scale_free(dtype, whiten):
    """Data in any unit is whitened alike: the variance floors are relative to the data's own
    scale (small data used to be floored into a wrong whitening)."""
    rng = np.random.default_rng(4)
    X = rng.laplace(size=(600, 4)) @ rng.normal(size=(4, 4))
    ref = fit_whitening(X.astype(dtype), whiten)
    Z_ref = (X - ref.mean) @ (ref.matrix.T if ref.matrix is not None else np.diag(ref.scale))
    for c in (1e-30, 1e-12, 1e-6, 1e6, 1e12) if dtype == np.float64 else (1e-12, 1e-6, 1e6, 1e12):
        Xc = (c * X).astype(dtype)
        w = fit_whitening(Xc, whiten)
        P = w.matrix if w.matrix is not None else np.diag(w.scale)
        Z = (Xc.astype(np.float64) - w.mean) @ P.T.astype(np.float64)
        np.testing.assert_allclose(Z, Z_ref, rtol=1e-4, atol=1e-4 if dtype == np.float32 else 1e-8, err_msg=f"c={c}")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda S: np.c_[S, S[:, 0] + S[:, 1]], r"1 direction\(s\) of \(numerically\) zero variance.*n_components=3"),
        (lambda S: np.c_[S, np.full(len(S), 2.5)], r"constant column\(s\) \[3\].*n_components=3"),
        (lambda S: S[:3], r"3 rows for 3 features.*n_components=2"),
    ],
)
def test_degenerate_data_is_named_with_the_fix(make, match):
    X = make(np.random.default_rng(5).laplace(size=(300, 3)))
    with pytest.warns(UserWarning, match=match):
        fit_whitening(X, "unit-variance")
    rank = np.linalg.matrix_rank(np.cov(X, rowvar=False))
    if rank < X.shape[1] and X.shape[0] > X.shape[1]:
        with warnings.catch_warnings():  # keeping only the directions that vary: nothing to say
            warnings.simplefilter("error")
            fit_whitening(X, "unit-variance", int(rank))


@pytest.fixture(scope="module")
def scale_free_data():
    rng = np.random.default_rng(0)
    return np.tanh(rng.laplace(size=(1000, 3)) @ rng.normal(size=(3, 3))) @ rng.normal(size=(3, 3))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("c", [1e-12, 1e-6, 1e6, 1e12])
def test_a_fit_is_scale_free(scale_free_data, dtype, c):
    """``fit(c·X)`` gives the sources of ``fit(X)`` (to rounding) and a log-likelihood lower by
    exactly ``D log c`` (the Jacobian of the change of units), in float32 and float64."""
    X = scale_free_data
    settings = dict(n_layers=2, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = nica.NonlinearICA(**settings).fit(X.astype(dtype))
        scaled = nica.NonlinearICA(**settings).fit((c * X).astype(dtype))
    atol, rtol = (1e-10, 1e-10) if dtype == np.float64 else (2e-5, 1e-5)
    np.testing.assert_allclose(scaled.transform((c * X).astype(dtype)), ref.transform(X.astype(dtype)), atol=atol)
    shift = X.shape[1] * np.log(c)
    assert scaled.score((c * X).astype(dtype)) + shift == pytest.approx(ref.score(X.astype(dtype)), rel=rtol, abs=atol)
