"""Device meshes and shardings (``nica/_src/sharding.py``): fits on several devices against the
one-device fits, the layouts of the parameters and optimizer state, and a job of two processes.
(The memory of a step and an epoch: tests/test_training.py; streaming a memory-mapped file:
tests/test_nonlinear.py.)

The multi-device checks need JAX to start with several (forced) CPU devices, which is decided
when JAX initialises, before any test runs.  They therefore run once, in a fresh interpreter
with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (module fixture ``four_devices``),
which prints its measurements as JSON for the tests below to check.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest
from sklearn.exceptions import ConvergenceWarning

import nica
from nica._src.training import init_train_state, make_epoch

N_DEVICES = 4

# Runs in the subprocess: fits on one device and on the four-device meshes, in float64.
FOUR_DEVICE_SCRIPT = textwrap.dedent(
    """
    import json, warnings
    import numpy as np
    import jax, jax.numpy as jnp, optax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    from jax.sharding import NamedSharding, PartitionSpec
    import nica
    from nica._src.training import init_train_state, make_epoch, make_train_step

    warnings.simplefilter("ignore")  # ConvergenceWarning after 3 epochs
    out = {"n_devices": jax.device_count()}

    def max_rel_diff(a, b):
        a, b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
        return max(float(np.max(np.abs(x - y)) / np.max(np.abs(x))) for x, y in zip(a, b))

    rng = np.random.default_rng(0)
    S = rng.laplace(size=(640, 8))
    X = np.tanh(S @ rng.normal(size=(8, 8))) + 0.1 * S
    u = np.repeat(np.arange(8), 80)
    kw = dict(n_layers=2, max_iter=3, batch_size=64, learning_rate=1e-2, random_state=0)

    one = nica.NonlinearICA(**kw).fit(X)
    for parallel in ("data", "model"):
        many = nica.NonlinearICA(parallel=parallel, **kw).fit(X)
        out[parallel] = {
            "params": max_rel_diff(one.params_, many.params_),
            "loss_curve": max_rel_diff(np.array(one.loss_curve_), np.array(many.loss_curve_)),
            "score_samples": max_rel_diff(one.score_samples(X), many.score_samples(X)),
            "transform": max_rel_diff(one.transform(X), many.transform(X)),
            "n_iter": [one.n_iter_, many.n_iter_],
        }
    one = nica.NonlinearICA(gradient="equivariant", **kw).fit(X)
    for parallel in ("data", "model"):
        many = nica.NonlinearICA(gradient="equivariant", parallel=parallel, **kw).fit(X)
        out["equivariant_" + parallel] = max_rel_diff(one.params_, many.params_)
    one = nica.ConditionalNonlinearICA(**kw).fit(X, u)
    many = nica.ConditionalNonlinearICA(parallel="data", **kw).fit(X, u)
    out["conditional_data"] = max_rel_diff((one.params_, one.prior_params_),
                                           (many.params_, many.prior_params_))

    # the functional core: where the arrays live after a sharded epoch
    opt = optax.adam(1e-2)
    Xj = jnp.asarray(X)
    for parallel in ("data", "model"):
        mesh = nica.make_mesh(parallel)
        state = nica.shard_params(init_train_state(opt, nica.init_params(jax.random.key(0), 8, 2)),
                                  mesh)
        epoch = make_epoch(opt, nica.activations.get("smooth_leaky_relu"),
                           nica.priors.get("laplace"), "relative", 64, mesh)
        data = jax.device_put(Xj, NamedSharding(mesh, PartitionSpec()))
        state, _ = epoch(state, data, None, jax.random.key(1))
        W, b, mu = state.params[0].W, state.params[0].b, state.opt_state[0].mu[0][0].W
        out[parallel + "_layout"] = {
            "W_spec": list(W.sharding.spec), "b_spec": list(b.sharding.spec),
            "mu_spec": list(mu.sharding.spec),
            "count_spec": list(state.opt_state[0].count.sharding.spec),
            "W_shards": sorted({tuple(s.data.shape) for s in W.addressable_shards}),
            "W_devices": len(W.sharding.device_set),
        }
        step = jax.jit(make_train_step(opt, mesh=mesh), donate_argnums=0)
        hlo = step.lower(state, data[:64]).compile().as_text()
        out[parallel + "_layout"]["all_reduce"] = "all-reduce" in hlo

    # a two-dimensional mesh: batches split over "data", layer rows over "model"
    from jax.sharding import AxisType, Mesh
    hybrid = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model"),
                  axis_types=(AxisType.Auto, AxisType.Auto))
    states = []
    for mesh in (None, hybrid):
        state = init_train_state(opt, nica.init_params(jax.random.key(0), 8, 2))
        data = Xj
        if mesh is not None:
            state = nica.shard_params(state, mesh)
            data = jax.device_put(Xj, NamedSharding(mesh, PartitionSpec()))
        epoch = make_epoch(opt, nica.activations.get("smooth_leaky_relu"),
                           nica.priors.get("laplace"), "relative", 64, mesh)
        for i in range(3):
            state, _ = epoch(state, data, None, jax.random.key(i))
        states.append(state)
    W = states[1].params[0].W
    out["hybrid"] = {"params": max_rel_diff(states[0].params, states[1].params),
                     "W_spec": list(W.sharding.spec),
                     "W_shards": sorted({tuple(s.data.shape) for s in W.addressable_shards})}

    # a chunk smaller than one batch is used whole, rounded down to a multiple of 4 rows
    small = nica.NonlinearICA(parallel="data", batch_size=64, random_state=0).partial_fit(X[:30])
    out["small_chunk_finite"] = bool(np.all(np.isfinite(small.params_[0].W)))

    errors = {}
    for name, call in {
        "epoch_batch": lambda: make_epoch(opt, nica.activations.get("smooth_leaky_relu"),
                                          nica.priors.get("laplace"), "relative", 30,
                                          nica.make_mesh("data")),
        "estimator_batch": lambda: nica.NonlinearICA(parallel="data", batch_size=30).fit(X),
        "model_features": lambda: nica.NonlinearICA(parallel="model", max_iter=1).fit(X[:, :6]),
    }.items():
        try:
            call()
            errors[name] = None
        except ValueError as error:
            errors[name] = str(error)
    out["errors"] = errors
    print(json.dumps(out))
    """
)


# Runs in each of two processes of one multi-process ("multi-host") JAX job on this machine.
TWO_PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.distributed.initialize(coordinator_address=f"localhost:{sys.argv[2]}", num_processes=2,
                               process_id=int(sys.argv[1]))
    import numpy as np
    import nica

    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(640, 8))
    X = np.tanh(S @ rng.normal(size=(8, 8))) + 0.1 * S
    out = {"process_index": jax.process_index(), "devices": jax.device_count(),
           "local_devices": jax.local_device_count()}
    for parallel in ("data", "model"):
        # each process passes its own half of the rows; the fit is on their union
        own = X[320 * jax.process_index():][:320]
        model = nica.NonlinearICA(n_layers=2, max_iter=3, batch_size=64, learning_rate=1e-2,
                                  random_state=0, parallel=parallel).fit(own)
        out[parallel] = {"W": [layer.W.tolist() for layer in model.params_],
                         "loss_curve": model.loss_curve_,
                         "transform": model.transform(X[:10]).tolist()}
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices():
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={N_DEVICES}", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICE_SCRIPT], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# several devices (subprocess)


def test_subprocess_sees_four_devices(four_devices):
    assert four_devices["n_devices"] == N_DEVICES


@pytest.mark.parametrize("parallel", ["data", "model"])
def test_parallel_fit_matches_single_device_fit(four_devices, parallel):
    result = four_devices[parallel]
    assert result["n_iter"][0] == result["n_iter"][1]
    for key in ("params", "loss_curve", "score_samples", "transform"):
        assert result[key] < 1e-10, (key, result[key])


@pytest.mark.parametrize("parallel", ["data", "model"])
def test_equivariant_parallel_fit_matches_single_device_fit(four_devices, parallel):
    assert four_devices["equivariant_" + parallel] < 1e-10


def test_conditional_data_parallel_fit_matches_single_device_fit(four_devices):
    assert four_devices["conditional_data"] < 1e-9


def test_data_parallel_layout_replicates_parameters_and_reduces(four_devices):
    layout = four_devices["data_layout"]
    assert layout["W_spec"] == layout["b_spec"] == layout["mu_spec"] == []  # replicated
    assert layout["W_shards"] == [[8, 8]]  # a full copy on every device
    assert layout["W_devices"] == N_DEVICES
    assert layout["all_reduce"]  # the batch-summed gradient is reduced across devices


def test_model_parallel_layout_splits_layer_rows(four_devices):
    layout = four_devices["model_layout"]
    assert layout["W_spec"] == layout["mu_spec"] == ["model", None]
    assert layout["b_spec"] == ["model"]
    assert layout["count_spec"] == []
    assert layout["W_shards"] == [[8 // N_DEVICES, 8]]
    assert layout["W_devices"] == N_DEVICES


def test_two_dimensional_mesh_matches_single_device(four_devices):
    hybrid = four_devices["hybrid"]
    assert hybrid["params"] < 1e-10
    assert hybrid["W_spec"] == ["model", None]
    assert hybrid["W_shards"] == [[4, 8]]  # rows split in two, replicated over "data"


def test_data_parallel_chunk_smaller_than_a_batch(four_devices):
    assert four_devices["small_chunk_finite"]


def test_uneven_splits_raise_clear_errors(four_devices):
    errors = four_devices["errors"]
    assert "batch_size=30 must be a multiple of the 4 devices" in errors["epoch_batch"]
    assert "batch_size=30 must be a multiple of the number of devices (4)" in errors["estimator_batch"]
    assert "n_features=6 is not a multiple of 4" in errors["model_features"]


@pytest.mark.slow
def test_two_process_job_matches_single_process_fit():
    """``jax.distributed.initialize`` on localhost: 2 processes × 2 CPU devices, gloo collectives;
    each process fits its own rows, and both get the model of a one-process fit on all of them
    (tests/test_distributed.py covers the rest of the multi-process fit)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TWO_PROCESS_SCRIPT, str(i), str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    for proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, stderr[-3000:]
        outputs.append(json.loads(stdout.strip().splitlines()[-1]))

    rng = np.random.default_rng(0)
    S = rng.laplace(size=(640, 8))
    X = np.tanh(S @ rng.normal(size=(8, 8))) + 0.1 * S
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        single = nica.NonlinearICA(n_layers=2, max_iter=3, batch_size=64, learning_rate=1e-2, random_state=0).fit(X)
    for out in outputs:
        assert (out["devices"], out["local_devices"]) == (4, 2)
        for parallel in ("data", "model"):
            result = out[parallel]
            for W, layer in zip(result["W"], single.params_):
                np.testing.assert_allclose(W, layer.W, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(result["loss_curve"], single.loss_curve_, rtol=1e-10)
            np.testing.assert_allclose(result["transform"], single.transform(X[:10]), rtol=1e-9, atol=1e-12)
    assert sorted(out["process_index"] for out in outputs) == [0, 1]


# --------------------------------------------------------------------------------------------
# one device (this process)


def test_make_mesh_and_shard_params_on_the_available_devices():
    mesh = nica.make_mesh("model")
    assert mesh.axis_names == ("model",) and mesh.size == jax.device_count()
    params = nica.shard_params(nica.init_params(jax.random.key(0), 4 * mesh.size, 2), mesh)
    assert params[0].W.sharding.spec == jax.sharding.PartitionSpec("model", None)
    with pytest.raises(ValueError, match="parallel must be 'data' or 'model'"):
        nica.make_mesh("pipeline")
    with pytest.raises(ValueError, match="parallel must be one of"):
        nica.NonlinearICA(parallel="pipeline").fit(np.random.default_rng(0).normal(size=(20, 2)))


@pytest.mark.parametrize("parallel", ["data", "model"])
def test_one_device_mesh_gives_the_unsharded_epoch(parallel):
    opt = optax.adam(1e-2)
    X = jax.random.laplace(jax.random.key(1), (100, 4))
    act, prior = nica.activations.get("tanh_linear"), nica.priors.get("laplace")
    mesh = nica.make_mesh(parallel, devices=jax.devices()[:1])
    plain = make_epoch(opt, act, prior, "relative", 20)(
        init_train_state(opt, nica.init_params(jax.random.key(0), 4, 2)), X, None, jax.random.key(2)
    )
    sharded = make_epoch(opt, act, prior, "relative", 20, mesh)(
        nica.shard_params(init_train_state(opt, nica.init_params(jax.random.key(0), 4, 2)), mesh),
        X,
        None,
        jax.random.key(2),
    )
    for a, b in zip(jax.tree_util.tree_leaves(plain), jax.tree_util.tree_leaves(sharded)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
