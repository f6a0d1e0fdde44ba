"""nica's file format (``nica/_src/persistence.py``, ``encoding.py``, ``saving.py``): ``nica.save``
and ``nica.load`` give back the estimator bit for bit, in float32 and float64, for both
estimators; parameters are stored by registered names and numbers, and what cannot be described
so is refused when saving; a file that is not such a file, or does not match its header, is
refused with one clear message; and nothing in a file is ever unpickled.  Checkpoints, which are
the same format: tests/test_checkpoint.py; the command line's model files:
tests/test_cli_models.py."""

import dataclasses
import datetime
import json
import os
import pathlib
import pickle
import warnings
import zipfile

import jax
import jax.numpy as jnp
import joblib
import numpy as np
import optax
import pytest
from sklearn.decomposition import FastICA
from support import Interrupt, interrupt_after_checkpoints

import nica
from nica import activations, objectives, priors
from nica._src import activations as activations_module
from nica._src import persistence

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N, D = 160, 3
TINY = dict(max_iter=2, batch_size=64, random_state=0)
PICKLE = (
    "is a pickle (such as a model file or checkpoint of an earlier nica, or a joblib file), not a nica "
    "estimator file: nica no longer unpickles models and checkpoints, because unpickling runs code stored in "
    "the file. If you trust the file (you wrote it), convert it once in Python: "
)


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(N, D))
    return np.tanh(S @ rng.uniform(-1, 1, (D, D)).T) + 0.1 * S


def labels(kind):
    if kind == "str":
        return np.array([f"s{i % 4}" for i in range(N)])
    if kind == "int":
        return np.arange(N) % 4 - 1
    return np.random.default_rng(1).normal(size=(N, 2))


CASES = {
    # linear ICA: the FastICA start, the bias folded into mean_
    "linear": lambda: (nica.NonlinearICA(n_layers=1, **TINY), None),
    # a learned prior, fewer sources than features (the discarded directions' Gaussian)
    "two_layers_reduced": lambda: (nica.NonlinearICA(n_layers=2, n_components=2, **TINY), None),
    # text segment labels, the hybrid objective, the parameter average in the optimizer state
    "segments_str": lambda: (nica.ConditionalNonlinearICA(n_layers=2, **TINY), "str"),
    # integer labels, fewer sources than features, no biases
    "segments_int_reduced": lambda: (
        nica.ConditionalNonlinearICA(n_layers=1, n_components=2, bias=False, **TINY),
        "int",
    ),
    # a continuous u: the prior's own network
    "continuous": lambda: (nica.ConditionalNonlinearICA(n_layers=2, whiten="standardize", **TINY), "continuous"),
}


@pytest.fixture(scope="module", params=[(case, dtype) for case in CASES for dtype in ("float32", "float64")])
def fitted(request, X):
    case, dtype = request.param
    model, kind = CASES[case]()
    Xd = X.astype(dtype)
    y = None if kind is None else labels(kind)
    model.fit(Xd) if y is None else model.fit(Xd, y)
    return model, Xd, y


def same(a, b):
    """Whether two attribute values are the same, arrays bit for bit (dtype included)."""
    if isinstance(a, np.random.RandomState):
        return isinstance(b, np.random.RandomState) and same(a.get_state(), b.get_state())
    if isinstance(a, (np.ndarray, jax.Array)) or isinstance(b, (np.ndarray, jax.Array)):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return type(a) is type(b) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def assert_same_estimator(loaded, model):
    assert type(loaded) is type(model)
    assert list(loaded.__dict__) == list(model.__dict__) or set(loaded.__dict__) == set(model.__dict__)
    for name, value in model.__dict__.items():
        if name in ("_state", "_resume"):
            continue
        assert same(loaded.__dict__[name], value), name
    assert same(loaded.get_params(deep=False), model.get_params(deep=False))
    if "_state" in model.__dict__:
        a, b = jax.tree_util.tree_flatten(loaded._state), jax.tree_util.tree_flatten(model._state)
        assert a[1] == b[1]
        assert all(same(x, y) for x, y in zip(a[0], b[0]))


def save_and_load(model, tmp_path, name="m.nica"):
    nica.save(model, tmp_path / name)
    return nica.load(tmp_path / name)


# ---------------------------------------------------------------------------------------------
# round trips


def test_a_fitted_estimator_comes_back_bit_for_bit(fitted, tmp_path):
    model, X, y = fitted
    loaded = save_and_load(model, tmp_path)
    assert_same_estimator(loaded, model)
    assert same(loaded.transform(X), model.transform(X))
    S = model.transform(X)
    assert same(loaded.inverse_transform(S), model.inverse_transform(S))
    if y is None:
        assert same(loaded.score_samples(X), model.score_samples(X))
        assert same(loaded.sample(7, random_state=3), model.sample(7, random_state=3))
        return
    assert same(loaded.score_samples(X, y), model.score_samples(X, y))
    if model.aux_type_ == "discrete":
        assert same(loaded.score_samples(X), model.score_samples(X))  # the marginal over the segments
        assert same(loaded.predict_proba(X), model.predict_proba(X))
        assert same(loaded.sample(7, random_state=3), model.sample(7, random_state=3))
        assert same(loaded.sample(3, y=y[1], random_state=4), model.sample(3, y=y[1], random_state=4))
    else:
        assert same(loaded.sample(5, y=y[:5], random_state=3), model.sample(5, y=y[:5], random_state=3))


def test_a_loaded_estimator_continues_as_the_original_would(fitted, tmp_path):
    """The optimizer state comes back too: a warm start from the file equals one from memory."""
    model, X, y = fitted
    loaded = save_and_load(model, tmp_path)
    a = loaded.set_params(warm_start=True, max_iter=1)
    b = pickle.loads(pickle.dumps(model)).set_params(warm_start=True, max_iter=1)
    a.fit(X) if y is None else a.fit(X, y)
    b.fit(X) if y is None else b.fit(X, y)
    assert same(a.transform(X), b.transform(X)) and a.loss_curve_ == b.loss_curve_


def test_the_header_says_what_the_file_holds(X, tmp_path):
    model = nica.NonlinearICA(n_layers=1, **TINY).fit(X)
    nica.save(model, tmp_path / "m.nica")
    header = read_header(tmp_path / "m.nica")
    assert {k: header[k] for k in ("format", "format_version", "nica_version", "class")} == {
        "format": "nica-estimator",
        "format_version": 1,
        "nica_version": nica.__version__,
        "class": "NonlinearICA",
    }
    assert header["params"]["max_iter"] == 2 and header["params"]["whiten"] == "auto"
    assert header["attributes"]["whiten_"] == "unit-variance"
    assert header["attributes"]["activation_"] == {
        "kind": "component",
        "registry": "activation",
        "name": "smooth_leaky_relu",
        "fields": {"alpha": 0.3},
    }
    assert header["attributes"]["_dtype"] == {"kind": "dtype", "name": "float64"}
    assert header["state"]["optimizer_state"]["entries"] == ["optimizer", "rate_scale", "form"]
    assert header["resume"] is None and nica.__version__ == persistence.VERSION


def test_parameters_are_stored_by_name_and_number(X, tmp_path):
    model = nica.ConditionalNonlinearICA(
        n_layers=1,
        activation=activations.tanh_linear(0.25),
        prior=priors.logistic_mixture(3),
        objective=objectives.likelihood() + 3.0 * objectives.label_cross_entropy(),
        optimizer=optax.adamw,
        learning_rate=np.float32(0.005),
        averaging=0.5,
        random_state=np.random.RandomState(7),
        max_iter=2,
        batch_size=64,
    ).fit(X, labels("int"))
    loaded = save_and_load(model, tmp_path)
    assert_same_estimator(loaded, model)
    assert loaded.optimizer is optax.adamw and type(loaded.learning_rate) is np.float32
    assert same(loaded.transform(X), model.transform(X))
    params = read_header(tmp_path / "m.nica")["params"]
    assert params["optimizer"] == {"kind": "optax", "name": "adamw"}
    assert params["prior"] == {
        "kind": "component",
        "registry": "prior",
        "name": "logistic_mixture",
        "fields": {"n_mixtures": 3},
    }
    assert params["objective"]["kind"] == "objective_sum"
    assert [w for w, _ in params["objective"]["terms"]] == [1.0, 3.0]


def test_an_unfitted_estimator_with_paths_and_timedeltas_comes_back(tmp_path):
    model = nica.NonlinearICA(
        checkpoint_path=pathlib.Path("runs/fit.nica"), checkpoint_every=datetime.timedelta(minutes=10, microseconds=3)
    )
    loaded = save_and_load(model, tmp_path)
    assert loaded.get_params() == model.get_params() and "_state" not in loaded.__dict__
    assert same(loaded.__dict__, model.__dict__)


@dataclasses.dataclass(frozen=True)
class ScaledLeaky(activations.Activation):
    """A user's activation (a leaky ReLU of another slope), registered for one test."""

    slope: float = 0.5

    def fn(self, x):
        return jnp.where(x >= 0, x, self.slope * x)

    def log_derivative(self, x):
        return jnp.where(x >= 0, 0.0, jnp.log(self.slope)) + 0.0 * x

    def inverse(self, y):
        return jnp.where(y >= 0, y, y / self.slope)


def test_a_registered_component_of_the_user_is_stored_by_its_name(tmp_path, monkeypatch):
    monkeypatch.setitem(activations_module._REGISTRY._factories, "persistence_test_leaky", ScaledLeaky)
    model = nica.NonlinearICA(activation=ScaledLeaky(0.125))
    nica.save(model, tmp_path / "m.nica")
    assert read_header(tmp_path / "m.nica")["params"]["activation"] == {
        "kind": "component",
        "registry": "activation",
        "name": "persistence_test_leaky",
        "fields": {"slope": 0.125},
    }
    assert nica.load(tmp_path / "m.nica").activation == ScaledLeaky(0.125)
    monkeypatch.undo()  # a process that has not registered it
    refuse(
        tmp_path / "m.nica",
        "names the activation 'persistence_test_leaky', which is not registered in this process: register it "
        "(nica.activations.register) before loading",
    )


def test_a_checkpoint_keeps_its_resume_record_through_a_save(X, tmp_path, monkeypatch):
    interrupt_after_checkpoints(monkeypatch, 1)
    with pytest.raises(Interrupt):
        nica.NonlinearICA(
            n_layers=2, max_iter=5, batch_size=64, random_state=0, checkpoint_path=tmp_path / "c.nica"
        ).fit(X)
    monkeypatch.undo()
    checkpoint = nica.load(tmp_path / "c.nica")
    assert checkpoint.epochs_left_ == 4 and read_header(tmp_path / "c.nica")["resume"] is not None
    again = save_and_load(checkpoint, tmp_path, "again.nica")
    assert_same_estimator(again, checkpoint)
    assert same(again._resume, checkpoint._resume)
    assert isinstance(again._resume["rng_state"], tuple) and again._resume["rng_state"][1].dtype == np.uint32


# ---------------------------------------------------------------------------------------------
# what cannot be saved: refused before the file is touched


@dataclasses.dataclass(frozen=True)
class Unregistered(activations.Activation):
    def fn(self, x):
        return x

    def log_derivative(self, x):
        return 0.0 * x

    def inverse(self, y):
        return y


def test_what_the_format_cannot_describe_is_refused_when_saving(X, tmp_path):
    ready = optax.adam(1e-3)
    tail = ", which the format cannot describe without pickle; {} (or pickle the estimator with joblib.dump, to be loaded only where the file is trusted)."
    cases = [
        (
            nica.NonlinearICA(optimizer=ready),
            TypeError,
            f"cannot save NonlinearICA in nica's file format: its parameter optimizer={ready!r} is a "
            f"{type(ready).__name__}"
            + tail.format("give optimizer an optax name ('adam') or an optax factory (optax.adam)"),
        ),
        (
            nica.NonlinearICA(activation=Unregistered()),
            TypeError,
            "cannot save NonlinearICA in nica's file format: its parameter activation=Unregistered() is a "
            "Unregistered that no name registered in nica.activations rebuilds (register its class with "
            "nica.activations.register and pass the name or an object of it)"
            + tail.format("give a registered name or an object of a registered class"),
        ),
        (FastICA(), TypeError, "nica's file format holds a NonlinearICA or a ConditionalNonlinearICA; got FastICA."),
    ]
    with_note = nica.NonlinearICA(n_layers=1, **TINY).fit(X)
    with_note.note = lambda: None
    cases.append(
        (with_note, TypeError, "cannot save NonlinearICA in nica's file format: its attribute note holds a function.")
    )
    changed = nica.NonlinearICA(n_layers=1, **TINY).fit(X).set_params(optimizer="sgd")
    cases.append(
        (
            changed,
            ValueError,
            "cannot save NonlinearICA: its optimizer state does not have the structure that optimizer='sgd' and "
            "gradient_='equivariant' make (were they changed after the fit?); set them back or fit again.",
        )
    )
    (tmp_path / "m.nica").write_bytes(b"the file as it was")
    for model, error, message in cases:
        with pytest.raises(error) as refused:
            nica.save(model, tmp_path / "m.nica")
        assert str(refused.value) == message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nica"]
    assert (tmp_path / "m.nica").read_bytes() == b"the file as it was"
    with pytest.raises(
        ValueError, match=f"^cannot write file '{tmp_path}/no/m.nica': directory '{tmp_path}/no' does not exist$"
    ):
        nica.save(nica.NonlinearICA(), tmp_path / "no" / "m.nica")


# ---------------------------------------------------------------------------------------------
# files that are refused when loading


def read_header(path):
    with np.load(path, allow_pickle=False) as archive:
        return json.loads(archive["__header__"].tobytes())


def rewrite(source, target, change_header=None, change_arrays=None, raw_header=None):
    """A copy of the archive ``source`` at ``target``, its header and arrays changed."""
    with np.load(source, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(arrays.pop("__header__").tobytes())
    if change_header is not None:
        change_header(header)
    if change_arrays is not None:
        change_arrays(arrays, header)
    text = json.dumps(header).encode() if raw_header is None else raw_header
    with open(target, "wb") as handle:
        np.savez(handle, __header__=np.frombuffer(text, np.uint8), **arrays)
    return target


def refuse(path, text):
    with pytest.raises(ValueError) as refused:
        nica.load(path)
    assert str(refused.value) == f"file '{path}' {text}"


@pytest.fixture(scope="module")
def good(X, tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "m.nica"
    nica.save(nica.NonlinearICA(n_layers=2, **TINY).fit(X), path)
    return path


def test_a_pickle_is_refused_with_the_way_to_convert_it(good, tmp_path):
    model = nica.load(good)
    joblib.dump(model, tmp_path / "m.joblib")
    refuse(
        tmp_path / "m.joblib", PICKLE + f"nica.save(nica.load('{tmp_path}/m.joblib', allow_pickle=True), 'model.nica')"
    )
    joblib.dump(model, tmp_path / "z.joblib", compress=3)
    refuse(
        tmp_path / "z.joblib",
        PICKLE.replace(
            "a pickle (such as a model file or checkpoint of an earlier nica, or a joblib file)",
            "a compressed joblib file (a pickle)",
        )
        + f"nica.save(nica.load('{tmp_path}/z.joblib', allow_pickle=True), 'model.nica')",
    )
    # the conversion the message names, for a trusted file
    for path in (tmp_path / "m.joblib", tmp_path / "z.joblib"):
        nica.save(nica.load(path, allow_pickle=True), tmp_path / "converted.nica")
        assert same(nica.load(tmp_path / "converted.nica").transform(np.eye(3)), model.transform(np.eye(3)))
    joblib.dump(
        {"format": "nica-model", "version": "0.2.0", "estimator": model}, tmp_path / "old.nica"
    )  # the old CLI's
    assert same(nica.load(tmp_path / "old.nica", allow_pickle=True).transform(np.eye(3)), model.transform(np.eye(3)))
    joblib.dump([1, 2], tmp_path / "list.joblib")
    with pytest.raises(
        ValueError,
        match=rf"^file '{tmp_path}/list.joblib' holds a list, not a NonlinearICA or a ConditionalNonlinearICA$",
    ):
        nica.load(tmp_path / "list.joblib", allow_pickle=True)
    assert same(nica.load(good, allow_pickle=True).transform(np.eye(3)), model.transform(np.eye(3)))


POWER_MODEL = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "power_model.joblib"


@pytest.mark.skipif(not POWER_MODEL.exists(), reason="the committed POWER model is not in this checkout")
def test_a_model_pickled_by_an_earlier_nica_converts_bit_for_bit(tmp_path):
    """The committed POWER model (a joblib pickle of an earlier nica, without the parameters added
    since and with an optimizer state of an older layout) converts, and the converted file gives
    the same numbers as the pickle."""
    with pytest.warns(UserWarning, match="its optimizer state has the layout of an earlier nica and was made anew"):
        converted = nica.load(POWER_MODEL, allow_pickle=True)
    assert converted.averaging == "auto" and converted.objective == "auto"
    nica.save(converted, tmp_path / "power.nica")
    loaded, original = nica.load(tmp_path / "power.nica"), joblib.load(POWER_MODEL)
    X = np.random.default_rng(0).normal(size=(50, original.n_features_in_)).astype(np.float32)
    assert same(loaded.score_samples(X), original.score_samples(X))
    assert same(loaded.transform(X), original.transform(X))
    assert same(loaded.sample(5, random_state=1), original.sample(5, random_state=1))


def test_files_of_other_kinds_are_refused(good, tmp_path):
    (tmp_path / "X.csv").write_text("1,2,3\n")
    np.save(tmp_path / "X.npy", np.zeros((2, 3)))
    (tmp_path / "empty.nica").write_bytes(b"")
    for name in ("X.csv", "X.npy", "empty.nica"):
        refuse(
            tmp_path / name,
            "is not a nica estimator file; nica.save, 'nica fit --model' and checkpoint_path write those",
        )
    np.savez(tmp_path / "X.npz", X=np.zeros((2, 3)))
    refuse(
        tmp_path / "X.npz",
        "is not a nica estimator file (a NumPy archive without nica's header); nica.save, 'nica fit --model' and "
        "checkpoint_path write those",
    )
    with pytest.raises(FileNotFoundError):
        nica.load(tmp_path / "missing.nica")
    with pytest.raises(IsADirectoryError):
        nica.load(tmp_path)


def test_a_truncated_file_is_refused(good, tmp_path):
    data = good.read_bytes()
    for n, cut in enumerate((len(data) // 2, 40, len(data) - 1)):
        (tmp_path / f"t{n}.nica").write_bytes(data[:cut])
        refuse(tmp_path / f"t{n}.nica", "is truncated or corrupt (BadZipFile: File is not a zip file)")
    for n, at in enumerate((len(data) // 3, len(data) // 2, 2 * len(data) // 3)):  # a flipped byte: the CRC tells
        flipped = bytearray(data)
        flipped[at] ^= 0xFF
        (tmp_path / f"f{n}.nica").write_bytes(bytes(flipped))
        with pytest.raises(ValueError, match=rf"^file '{tmp_path}/f{n}.nica' is truncated or corrupt \(BadZipFile: "):
            nica.load(tmp_path / f"f{n}.nica")


def test_a_newer_format_or_nica_and_another_class_are_refused(good, tmp_path):
    def header(**fields):
        return lambda h: h.update(fields)

    version = nica.__version__
    major, minor = (int(part) for part in version.split(".")[:2])
    cases = [
        (
            header(format_version=2),
            f"is in nica estimator format 2, written by nica {version}; this is nica {version}, which reads "
            "format 1: upgrade nica to read it",
        ),
        (
            header(nica_version=f"{major}.{minor + 1}.0"),
            f"was written by nica {major}.{minor + 1}.0, newer than this nica {version}: upgrade nica to read it",
        ),
        (
            header(nica_version=f"{major + 1}.0.0rc1"),
            f"was written by nica {major + 1}.0.0rc1, newer than this nica {version}: upgrade nica to read it",
        ),
        (
            header(**{"class": "FastICA"}),
            "holds a 'FastICA'; nica reads only NonlinearICA and ConditionalNonlinearICA (its header may have been modified)",
        ),
        (header(format="nica-model"), "is not a nica estimator file (its header names the format 'nica-model')"),
    ]
    for n, (change, text) in enumerate(cases):
        refuse(rewrite(good, tmp_path / f"{n}.nica", change), text)
    # an older nica, or another patch release, with the same format: read as it is
    for n, written in enumerate(["0.0.1", f"{major}.{minor}.99"]):
        loaded = nica.load(rewrite(good, tmp_path / f"ok{n}.nica", header(nica_version=written)))
        assert same(loaded.transform(np.eye(3)), nica.load(good).transform(np.eye(3)))


def test_a_modified_header_is_refused(good, tmp_path):
    not_json = b'{"format": "nica-estimator", '
    try:
        json.loads(not_json)
    except ValueError as error:
        json_error = str(error)

    def params(**values):
        return lambda h: h["params"].update(values)

    cases = [
        (dict(raw_header=not_json), f"has a corrupt or modified header: it is not JSON ({json_error})"),
        (
            dict(raw_header=b"\xff\xfe"),
            "has a corrupt or modified header: it is not JSON ('utf-8' codec can't decode byte 0xff in position 0: invalid start byte)",
        ),
        (
            dict(change_header=params(activation={"kind": "pickle", "data": "gASV"})),
            "has a corrupt or modified header: a value of the unknown kind 'pickle'",
        ),
        (
            dict(change_header=params(optimizer={"kind": "optax", "name": "__builtins__"})),
            "has a corrupt or modified header: optax has no factory '__builtins__'",
        ),
        (
            dict(change_header=params(prior={"kind": "component", "registry": "os", "name": "system", "fields": {}})),
            "has a corrupt or modified header: a component of the unknown registry 'os'",
        ),
        (
            dict(change_header=params(no_such_parameter=1)),
            "has a corrupt or modified header: NonlinearICA has no parameter(s) ['no_such_parameter']",
        ),
        (
            dict(change_header=lambda h: h["attributes"].update(transform="not a method")),
            "has a corrupt or modified header: the attribute name 'transform'",
        ),
        (
            dict(change_header=lambda h: h["attributes"].update(_dtype={"kind": "dtype", "name": "int8"})),
            "has a corrupt or modified header: the fitted attribute _dtype is dtype('int8'), not float32 or float64",
        ),
        (
            dict(change_header=lambda h: h.pop("state")),
            "has a corrupt or modified header: a field is missing: 'state'",
        ),
        (
            dict(change_header=lambda h: h["arrays"].append("nowhere")),
            "does not match its header: it lacks the arrays ['nowhere'] its header lists (the file is corrupt or was modified)",
        ),
        (
            dict(change_arrays=lambda arrays, h: arrays.update(extra=np.zeros(2))),
            "does not match its header: it holds arrays its header does not list: ['extra'] (the file is corrupt or was modified)",
        ),
        (
            # JSON nested beyond Python's recursion limit: a ValueError, not a RecursionError
            dict(raw_header=b"[" * 100_000 + b"]" * 100_000),
            "has a corrupt or modified header: its JSON is nested too deeply",
        ),
    ]
    for n, (change, text) in enumerate(cases):
        refuse(rewrite(good, tmp_path / f"{n}.nica", **change), text)


def test_an_array_whose_header_claims_more_bytes_than_stored_is_refused_before_allocating(good, tmp_path):
    # a .npy header modified to claim 10**12 float64 entries: NumPy would allocate 7.28 TiB first
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }"
    header += b" " * (117 - len(header)) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(8)
    target = tmp_path / "claims.nica"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(target, "w") as copy:
        for name in source.namelist():
            copy.writestr(name, member if name == "mean_.npy" else source.read(name))
    refuse(
        target,
        "is truncated or corrupt: its array 'mean_' claims shape (1000000000000,) of float64 (8000000000000 bytes), "
        f"but the file stores {len(member)} bytes for it",
    )


def test_an_archive_with_an_array_name_twice_is_refused(good, tmp_path):
    # a zip archive may hold two members of one name; which one NumPy reads is not the file's to choose
    target = tmp_path / "twice.nica"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(target, "w") as copy, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name"
        members = [(member.filename, source.read(member.filename)) for member in source.infolist()]
        for name, data in [*members, *(member for member in members if member[0] == "mean_.npy")]:
            copy.writestr(name, data)
    refuse(
        target,
        "holds the array name(s) ['mean_'] more than once; each array of a nica estimator file has one name "
        "(the file is corrupt or was modified)",
    )


def test_arrays_that_do_not_fit_the_estimators_settings_are_refused(good, tmp_path):
    header = read_header(good)
    leaves = header["state"]["optimizer_state"]["leaves"]
    W = header["state"]["layers"][0]["W"]
    prior = header["state"]["prior_params"][0]

    def replace(name, value):
        return lambda arrays, h: arrays.update({name: value})

    def drop_last_leaf(arrays, h):
        name = h["state"]["optimizer_state"]["leaves"].pop()
        h["arrays"].remove(name)
        del arrays[name]

    tail = " (the file is corrupt or was modified)"
    cases = [
        (
            dict(change_arrays=replace(leaves[1], np.zeros(2))),
            "does not match its header: the optimizer state array 1 has shape (2,) and dtype float64 where the "
            "estimator's settings make shape (3, 3) and dtype float64" + tail,
        ),
        (
            dict(change_arrays=replace(leaves[1], np.zeros((3, 3), np.float32))),
            "does not match its header: the optimizer state array 1 has shape (3, 3) and dtype float32 where the "
            "estimator's settings make shape (3, 3) and dtype float64" + tail,
        ),
        (
            dict(change_arrays=drop_last_leaf),
            f"does not match its header: the optimizer state has {len(leaves) - 1} arrays where the estimator's "
            f"settings make {len(leaves)}" + tail,
        ),
        (
            dict(change_arrays=replace(W, np.zeros((2, 2)))),
            "does not match its header: layer 0's W has shape (2, 2) and dtype float64 where the estimator's 3 "
            "sources make shape (3, 3) and dtype float64" + tail,
        ),
        (
            dict(change_arrays=replace(prior, np.zeros((3, 5)))),
            "does not match its header: the prior's parameters array 0 has shape (3, 5) and dtype float64 where "
            "the estimator's settings make shape (3, 4) and dtype float64" + tail,
        ),
        (
            dict(change_header=lambda h: h["params"].update(optimizer="sgd")),
            "does not match its header: the optimizer state has 16 arrays where the estimator's settings make 1" + tail,
        ),
    ]
    for n, (change, text) in enumerate(cases):
        refuse(rewrite(good, tmp_path / f"{n}.nica", **change), text)


# ---------------------------------------------------------------------------------------------
# nothing is ever unpickled


class Boom:
    """Unpickling this makes a folder: a file that runs code when it is unpickled."""

    def __init__(self, folder):
        self.folder = folder

    def __reduce__(self):
        return (os.mkdir, (str(self.folder),))


@pytest.fixture
def no_pickle(monkeypatch):
    """pickle's readers fail loudly: nica.load must never reach them."""

    def refuse(*args, **kwargs):
        raise AssertionError("nica.load unpickled something")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)


def test_no_file_runs_code_when_loaded(good, tmp_path, no_pickle):
    boom = tmp_path / "made_by_unpickling"
    with open(tmp_path / "boom.pkl", "wb") as handle:
        handle.write(pickle.dumps({"estimator": Boom(boom)}))
    joblib.dump(Boom(boom), tmp_path / "boom.joblib", compress=3)
    listed = rewrite(
        good,
        tmp_path / "listed.nica",
        change_arrays=lambda arrays, h: (
            arrays.update(boom=np.array([Boom(boom)], dtype=object)),
            h["arrays"].append("boom"),
        ),
    )
    with open(tmp_path / "header.nica", "wb") as handle:
        np.savez(handle, __header__=np.array([Boom(boom)], dtype=object))
    expected = {
        "boom.pkl": PICKLE + f"nica.save(nica.load('{tmp_path}/boom.pkl', allow_pickle=True), 'model.nica')",
        "boom.joblib": "is a compressed joblib file (a pickle), not a nica estimator file",
        "listed.nica": "holds pickled Python objects (an object array); nica never unpickles them",
        "header.nica": "holds pickled Python objects (an object array); nica never unpickles them",
    }
    for name, text in expected.items():
        with pytest.raises(ValueError) as refused:
            nica.load(tmp_path / name)
        assert str(refused.value).startswith(f"file '{tmp_path}/{name}' {text}")
    assert not boom.exists()
    assert listed.exists() and nica.load(good).n_iter_ == 2  # a good file loads with pickle unavailable
