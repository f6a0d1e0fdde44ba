"""nica's estimator files: a fitted estimator as arrays and a JSON header in one NumPy ``.npz``
archive, read back without unpickling anything (so a crafted file cannot run code).

The archive holds ``__header__`` (the header's UTF-8 JSON, as an array of bytes) and the arrays
the header names.  The header records the format and its version, the nica version that wrote
the file, the estimator's class, its constructor parameters, its fitted attributes, the network
and prior parameters and the optimizer state (as lists of array names), and for a checkpoint
the record that resumes the interrupted fit.  Parameters and attributes are encoded by
:mod:`nica._src.encoding` (names, numbers, arrays, registered components); what it cannot
describe is refused when the file is written (a ``TypeError`` naming the parameter or
attribute), so a file that is written can always be read.

Reading rebuilds the pytrees without trusting the file for their structure: the prior's
parameters get the structure of ``prior_.init_params``, the optimizer state that of the fit
state the estimator's own settings make (``init_fit_state(init_train_state(optimizer, params,
prior_params), gradient_, averaged=...)``); the stored arrays must match it leaf for leaf, in
number, shape and dtype.  NumPy reads the archive with ``allow_pickle=False`` only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import zipfile

import jax
import numpy as np

from nica._src import priors as _priors
from nica._src._version import VERSION  # nica's version (nica.__version__ is this one)
from nica._src.encoding import ARRAY_KINDS, Corrupt, Decoder, Encoder, Unregistered, Unsavable, typed
from nica._src.fit_state import init_fit_state, is_fit_state
from nica._src.io import write_atomically
from nica._src.network import Layer
from nica._src.training import TrainState, init_train_state

__all__ = ["FORMAT", "FORMAT_VERSION", "VERSION", "CLASS_NAMES", "Payload", "encode", "check_params", "dump"]
__all__ += ["write", "file_kind", "read"]

FORMAT = "nica-estimator"
FORMAT_VERSION = 1
CLASS_NAMES = ("NonlinearICA", "ConditionalNonlinearICA")
_HEADER = "__header__"
# joblib's compressed files (zlib, gzip, bz2, xz, lzma, lz4): pickles inside a compressor
_COMPRESSED = (
    b"\x78\x01",
    b"\x78\x5e",
    b"\x78\x9c",
    b"\x78\xda",
    b"\x1f\x8b",
    b"BZh",
    b"\xfd7zXZ",
    b"\x5d\x00",
    b"\x04\x22\x4d\x18",
)
_SAVED_AS = "nica.save, 'nica fit --model' and checkpoint_path write those"


def _precision(dtype):
    """JAX in float64 for a float64 estimator (as its own calls run), without touching the global flag."""
    return jax.enable_x64(True) if np.dtype(dtype) == np.float64 else contextlib.nullcontext()


def _parse_version(text):
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(\S*)", text) if isinstance(text, str) else None
    return None if match is None else tuple(int(g or 0) for g in match.groups()[:3])


# ---------------------------------------------------------------------------------------------
# writing


@dataclasses.dataclass
class Payload:
    """An estimator's file contents: the header (JSON-ready) and the arrays it names."""

    header: dict
    arrays: dict


_PARAMETER_HINTS = {
    "optimizer": "give optimizer an optax name ('adam') or an optax factory (optax.adam)",
    "activation": "give a registered name or an object of a registered class",
    "prior": "give a registered name or an object of a registered class",
    "objective": "give a registered name, or objects of registered classes combined with + and *",
}


def _encode_params(encoder, estimator):
    params = {}
    cls = type(estimator).__name__
    for name, value in estimator.get_params(deep=False).items():
        try:
            params[name] = encoder.value(value, f"params.{name}")
        except Unsavable as why:
            hint = _PARAMETER_HINTS.get(name, "give a name or a number")
            raise TypeError(
                f"cannot save {cls} in nica's file format: its parameter {name}={value!r} is {why}, which "
                f"the format cannot describe without pickle; {hint} (or pickle the estimator with "
                "joblib.dump, to be loaded only where the file is trusted)."
            ) from None
    return params


def check_params(estimator) -> None:
    """Refuse (``TypeError`` naming the parameter) an estimator whose constructor parameters
    the format cannot describe: before a fit that writes checkpoints starts."""
    _check_class(estimator)
    _encode_params(Encoder(), estimator)


def _check_class(estimator):
    if type(estimator).__name__ not in CLASS_NAMES or not hasattr(estimator, "get_params"):
        raise TypeError(
            f"nica's file format holds a NonlinearICA or a ConditionalNonlinearICA; got {type(estimator).__name__}."
        )


def _leaf_names(encoder, leaves, name):
    return [encoder.array(leaf, f"{name}.{i}")["name"] for i, leaf in enumerate(leaves)]


def encode(estimator) -> Payload:
    """The file contents of ``estimator`` (a ``TypeError`` for what the format cannot describe)."""
    _check_class(estimator)
    encoder = Encoder()
    cls = type(estimator).__name__
    params = _encode_params(encoder, estimator)
    attributes = {}
    for name, value in estimator.__dict__.items():
        if name in params or name in ("_state", "_resume"):
            continue
        try:
            attributes[name] = encoder.value(value, name)
        except Unsavable as why:
            raise TypeError(f"cannot save {cls} in nica's file format: its attribute {name} holds {why}.") from None
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "nica_version": VERSION,
        "class": cls,
        "params": params,
        "attributes": attributes,
        "state": None,
        "resume": None,
    }
    state = estimator.__dict__.get("_state")
    if state is not None:
        state = TrainState(*state)
        opt_leaves, opt_tree = jax.tree_util.tree_flatten(state.opt_state)
        fits = is_fit_state(state.opt_state) and (opt_tree, _specs(opt_leaves)) == _optimizer_template(
            estimator, state.params, state.prior_params, list(state.opt_state)
        )
        if not fits:
            raise ValueError(
                f"cannot save {cls}: its optimizer state does not have the structure that "
                f"optimizer={estimator.optimizer!r} and gradient_={estimator.gradient_!r} make (were they "
                "changed after the fit?); set them back or fit again."
            )
        header["state"] = {
            "layers": [
                {
                    "W": encoder.array(layer.W, f"state.params.{k}.W")["name"],
                    "b": None if layer.b is None else encoder.array(layer.b, f"state.params.{k}.b")["name"],
                }
                for k, layer in enumerate(state.params)
            ],
            "prior_params": _leaf_names(encoder, jax.tree_util.tree_leaves(state.prior_params), "state.prior_params"),
            "optimizer_state": {
                "entries": list(state.opt_state),
                "leaves": _leaf_names(encoder, opt_leaves, "state.optimizer_state"),
            },
        }
    resume = estimator.__dict__.get("_resume")
    if resume is not None and state is not None:
        record = {k: v for k, v in resume.items() if k not in ("params", "prior_params", "best")}
        header["resume"] = {
            "params": _leaf_names(encoder, jax.tree_util.tree_leaves(resume["params"]), "resume.params"),
            "prior_params": _leaf_names(encoder, jax.tree_util.tree_leaves(resume["prior_params"]), "resume.prior"),
            "record": encoder.value(record, "resume"),
        }
    header["arrays"] = list(encoder.arrays)
    return Payload(header, encoder.arrays)


def dump(payload: Payload, stream) -> None:
    """Write ``payload`` to a binary stream as one ``.npz`` archive (nothing pickled)."""
    text = json.dumps(payload.header, separators=(",", ":"))
    header = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    np.savez(stream, allow_pickle=False, **{_HEADER: header}, **payload.arrays)


def write(estimator, path, *, name="file") -> None:
    """Save ``estimator`` at ``path`` atomically (``name`` names the path in the messages of
    :func:`nica._src.io.check_writable`)."""
    payload = encode(estimator)  # refused before the file is touched
    write_atomically(path, lambda stream: dump(payload, stream), make_dirs=False, name=name)


# ---------------------------------------------------------------------------------------------
# the pytrees' structures, from the estimator's own settings


def _specs(leaves):
    return [(tuple(np.shape(a)), np.dtype(a.dtype)) for a in leaves]


def _prior_template(estimator, n_sources):
    """The structure and ``(shape, dtype)`` of the leaves of ``prior_.init_params`` for the
    estimator's sources and dtype."""
    dtype = np.dtype(estimator._dtype)
    with _precision(dtype), jax.ensure_compile_time_eval():
        template = estimator.prior_.init_params(jax.random.key(0), n_sources, dtype)
    leaves, tree = jax.tree_util.tree_flatten(template)
    return tree, _specs(leaves)


def _optimizer_template(estimator, params, prior_params, entries):
    """The structure and ``(shape, dtype)`` of the leaves of the optimizer state of the fit state
    that the estimator's settings (``optimizer``, ``learning_rate``, ``gradient_``; averaged when
    ``entries`` has ``"average"``) make for ``params`` and ``prior_params`` (abstractly)."""
    optimizer = estimator._resolve_optimizer()
    averaged = "average" in entries

    def fit_state(p, q):
        return init_fit_state(init_train_state(optimizer, p, q), estimator.gradient_, averaged=averaged).opt_state

    with _precision(estimator._dtype):
        leaves, tree = jax.tree_util.tree_flatten(jax.eval_shape(fit_state, params, prior_params))
    return tree, _specs(leaves)


# ---------------------------------------------------------------------------------------------
# reading


def file_kind(path) -> str:
    """``"npz"`` (a zip archive), ``"pickle"``, ``"joblib"`` (a compressed joblib file) or
    ``"other"``, from the file's first bytes (an ``OSError`` when it cannot be read)."""
    with open(path, "rb") as handle:
        start = handle.read(8)
    if start[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "npz"
    if len(start) >= 2 and start[0] == 0x80 and 2 <= start[1] <= 5:
        return "pickle"
    if any(start.startswith(magic) for magic in _COMPRESSED):
        return "joblib"
    return "other"


def _pickle_message(kind, path):
    what = (
        "a pickle (such as a model file or checkpoint of an earlier nica, or a joblib file)"
        if kind == "pickle"
        else "a compressed joblib file (a pickle)"
    )
    return (
        f"is {what}, not a nica estimator file: nica no longer unpickles models and checkpoints, because "
        "unpickling runs code stored in the file. If you trust the file (you wrote it), convert it once "
        f"in Python: nica.save(nica.load({os.fspath(path)!r}, allow_pickle=True), 'model.nica')"
    )


def _read_archive(path):
    """The header (a dict) and the arrays of the archive at ``path``; ``_Refused(text)`` otherwise."""
    kind = file_kind(path)
    if kind in ("pickle", "joblib"):
        raise _Refused(_pickle_message(kind, path))
    if kind != "npz":
        raise _Refused(f"is not a nica estimator file; {_SAVED_AS}")
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            names = list(archive.files)
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise _Refused(
                    f"holds the array name(s) {repeated} more than once; each array of a nica estimator "
                    "file has one name (the file is corrupt or was modified)"
                )
            if _HEADER not in names:
                raise _Refused(f"is not a nica estimator file (a NumPy archive without nica's header); {_SAVED_AS}")
            raw = archive[_HEADER]
            if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1:
                raise _Refused("has a corrupt or modified header: it is not an array of bytes")
            try:
                header = json.loads(raw.tobytes().decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as error:
                raise _Refused(f"has a corrupt or modified header: it is not JSON ({error})") from None
            except RecursionError:
                raise _Refused("has a corrupt or modified header: its JSON is nested too deeply") from None
            if not isinstance(header, dict):
                raise _Refused("has a corrupt or modified header: it is not a JSON object")
            _check_header(header, path)
            listed = header.get("arrays")
            if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
                raise _Refused("has a corrupt or modified header: 'arrays' is not a list of names")
            missing = sorted(set(listed) - set(names))
            extra = sorted(set(names) - set(listed) - {_HEADER})
            if missing or extra:
                what = f"it lacks the arrays {missing} its header lists" if missing else ""
                what += "; " if missing and extra else ""
                what += f"it holds arrays its header does not list: {extra}" if extra else ""
                raise _Refused(f"does not match its header: {what} (the file is corrupt or was modified)")
            arrays = {name: _read_member(archive, name) for name in listed}
    except _Refused:
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, KeyError, OSError) as error:
        if isinstance(error, ValueError) and "allow_pickle" in str(error):
            raise _Refused("holds pickled Python objects (an object array); nica never unpickles them") from None
        if isinstance(error, OSError) and not isinstance(error, EOFError) and error.errno is not None:
            raise  # the file system's own error (permission denied, ...)
        detail = " ".join(str(error).split())[:200]
        raise _Refused(f"is truncated or corrupt ({type(error).__name__}{': ' + detail if detail else ''})") from None
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype.kind not in ARRAY_KINDS or a.dtype.fields is not None:
            kind = f"dtype {a.dtype}" if isinstance(a, np.ndarray) else "no NumPy array"
            raise _Refused(
                f"does not match its header: its entry {name!r} is {kind} (the file is corrupt or was modified)"
            )
    return header, arrays


def _read_member(archive, name):
    """The array ``name`` of ``archive``, once its ``.npy`` header claims no more bytes than it stores
    (a modified shape would make NumPy allocate it before reading: a ``MemoryError``)."""
    member = archive.zip.getinfo(name + ".npy" if name + ".npy" in archive.zip.namelist() else name)
    with archive.zip.open(member) as stream:
        magic = stream.read(len(np.lib.format.MAGIC_PREFIX) + 2)
        read = {b"\x01\x00": np.lib.format.read_array_header_1_0, b"\x02\x00": np.lib.format.read_array_header_2_0}
        if magic[:-2] == np.lib.format.MAGIC_PREFIX and magic[-2:] in read:  # else NumPy's own refusal below
            shape, _, dtype = read[magic[-2:]](stream)
            claimed = math.prod(shape) * dtype.itemsize
            if claimed > member.file_size:
                raise _Refused(
                    f"is truncated or corrupt: its array {name!r} claims shape {shape} of {dtype} "
                    f"({claimed} bytes), but the file stores {member.file_size} bytes for it"
                )
    return archive[name]


class _Refused(Exception):
    """A refusal; the caller prefixes the file's description."""


def _check_header(header, path):
    if header.get("format") != FORMAT:
        raise _Refused(f"is not a nica estimator file (its header names the format {header.get('format')!r})")
    written = header.get("nica_version")
    version, running = _parse_version(written), _parse_version(VERSION)
    if version is None:
        raise _Refused(f"has a corrupt or modified header: nica_version {written!r} is not a version")
    fmt = header.get("format_version")
    if type(fmt) is not int or fmt < 1:
        raise _Refused(f"has a corrupt or modified header: format_version {fmt!r} is not a version")
    if fmt > FORMAT_VERSION:
        raise _Refused(
            f"is in nica estimator format {fmt}, written by nica {written}; this is nica {VERSION}, which reads "
            f"format {FORMAT_VERSION}: upgrade nica to read it"
        )
    if version[:2] > running[:2]:
        raise _Refused(f"was written by nica {written}, newer than this nica {VERSION}: upgrade nica to read it")
    if header.get("class") not in CLASS_NAMES:
        raise _Refused(
            f"holds a {header.get('class')!r}; nica reads only {' and '.join(CLASS_NAMES)} (its header may have been modified)"
        )


def _leaves(decoder, names, specs, what):
    """The arrays ``names`` (a list in the header), checked against ``specs`` (shape, dtype)."""
    arrays = [decoder.array(name, what) for name in typed(names, list)]
    if len(arrays) != len(specs):
        raise _Mismatch(f"{what} has {len(arrays)} arrays where the estimator's settings make {len(specs)}")
    for i, (a, (shape, dtype)) in enumerate(zip(arrays, specs)):
        if (a.shape, a.dtype) != (shape, dtype):
            raise _Mismatch(
                f"{what} array {i} has shape {a.shape} and dtype {a.dtype} where the estimator's settings "
                f"make shape {shape} and dtype {dtype}"
            )
    return arrays


class _Mismatch(Exception):
    """Stored arrays that do not fit the structure the estimator's settings make."""


def _restore_state(estimator, decoder, state, resume):
    dtype = getattr(estimator, "_dtype", None)
    if not isinstance(dtype, np.dtype) or dtype not in (np.float32, np.float64):
        raise Corrupt(f"the fitted attribute _dtype is {dtype!r}, not float32 or float64")
    if not isinstance(getattr(estimator, "prior_", None), _priors.Prior):
        raise Corrupt("the fitted attribute prior_ is not a prior")
    n = int(getattr(estimator, "n_components_", getattr(estimator, "n_features_in_", 0)))
    layers = []
    for k, layer in enumerate(typed(state["layers"], list)):
        if type(layer) is not dict or set(layer) != {"W", "b"}:
            raise Corrupt(f"layer {k} is not a pair of arrays W, b")
        W = decoder.array(layer["W"], f"layer {k}'s W")
        b = None if layer["b"] is None else decoder.array(layer["b"], f"layer {k}'s b")
        for name, a, shape in (("W", W, (n, n)), ("b", b, (n,))):
            if a is not None and (a.shape, a.dtype) != (shape, dtype):
                raise _Mismatch(
                    f"layer {k}'s {name} has shape {a.shape} and dtype {a.dtype} where the estimator's "
                    f"{n} sources make shape {shape} and dtype {dtype}"
                )
        layers.append(Layer(W, b))
    if not layers or len({layer.b is None for layer in layers}) != 1:
        raise Corrupt("the network has no layers, or biases in some layers only")
    params = tuple(layers)
    opt = state["optimizer_state"]
    entries = typed(opt["entries"], list)
    try:
        prior_tree, prior_specs = _prior_template(estimator, n)
        abstract_prior = jax.tree_util.tree_unflatten(prior_tree, [jax.ShapeDtypeStruct(*spec) for spec in prior_specs])
        opt_tree, opt_specs = _optimizer_template(estimator, params, abstract_prior, entries)
    except Exception as error:  # a prior, optimizer or gradient the header names that cannot be built
        raise Corrupt(f"its settings do not make a fit state ({type(error).__name__}: {error})") from None
    prior_leaves = _leaves(decoder, state["prior_params"], prior_specs, "the prior's parameters")
    prior_params = jax.tree_util.tree_unflatten(prior_tree, prior_leaves)
    opt_state = jax.tree_util.tree_unflatten(
        opt_tree, _leaves(decoder, opt["leaves"], opt_specs, "the optimizer state")
    )
    if list(opt_state) != entries:
        raise _Mismatch(f"the optimizer state's entries {entries} are not {list(opt_state)}")
    estimator._state = TrainState(params, prior_params, opt_state)
    if resume is not None:
        record = decoder.value(resume["record"])
        if type(record) is not dict:
            raise Corrupt("the resume record is not a dict")
        param_tree = jax.tree_util.tree_structure(params)
        param_leaves = _leaves(
            decoder, resume["params"], _specs(jax.tree_util.tree_leaves(params)), "the resumed fit's network"
        )
        resumed_prior = _leaves(decoder, resume["prior_params"], prior_specs, "the resumed fit's prior")
        record["params"] = jax.tree_util.tree_unflatten(param_tree, param_leaves)
        record["prior_params"] = jax.tree_util.tree_unflatten(prior_tree, resumed_prior)
        estimator._resume = record


def read(path, classes: dict, what: str = "file"):
    """The estimator saved at ``path`` by :func:`write`, made with ``classes[name]`` (the class
    named in the header: ``NonlinearICA`` or ``ConditionalNonlinearICA``).  Nothing in the file
    is unpickled; a file that is not such an estimator file, or that does not match its header,
    is refused with a ``ValueError`` that names it as ``what`` (an ``OSError`` of the file
    system propagates)."""
    shown = f"{what} {os.fspath(path)!r}"
    try:
        header, arrays = _read_archive(path)
        decoder = Decoder(arrays)
        cls = classes[header["class"]]
        estimator = cls()
        known = estimator.get_params(deep=False)
        params, attributes = header["params"], header["attributes"]
        if type(params) is not dict or type(attributes) is not dict:
            raise Corrupt("'params' or 'attributes' is not a JSON object")
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise Corrupt(f"{cls.__name__} has no parameter(s) {unknown}")
        estimator.set_params(**{name: decoder.value(v) for name, v in params.items()})
        for name, v in attributes.items():
            if not name.isidentifier() or name in known or name in ("_state", "_resume") or hasattr(cls, name):
                raise Corrupt(f"the attribute name {name!r}")
            setattr(estimator, name, decoder.value(v))
        state, resume = header["state"], header["resume"]  # null when there is none
        if state is None and resume is not None:
            raise Corrupt("a resume record without a fitted state")
        if state is not None:
            if type(state) is not dict or type(state.get("optimizer_state")) is not dict:
                raise Corrupt("'state' is not a JSON object with an optimizer state")
            if resume is not None and type(resume) is not dict:
                raise Corrupt("'resume' is not a JSON object")
            _restore_state(estimator, decoder, state, resume)
    except (_Refused, Unregistered) as refused:
        raise ValueError(f"{shown} {refused}") from None
    except _Mismatch as error:
        raise ValueError(f"{shown} does not match its header: {error} (the file is corrupt or was modified)") from None
    except (Corrupt, KeyError, TypeError, ValueError) as error:  # a field missing or of another type
        detail = f"a field is missing: {error}" if isinstance(error, KeyError) else str(error)
        raise ValueError(f"{shown} has a corrupt or modified header: {detail}") from None
    return estimator
