"""Multi-process data parallelism (``jax.distributed``, gloo collectives on the CPU): each test
starts 2 or 3 local processes of ``tests/distributed_worker.py``, one CPU device each, on a free
port, and checks what they fitted against each other (bit for bit) and against one process
fitting the union of their rows alone (float64, tight tolerance)."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

import nica
from nica.cli import main

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")
TIMEOUT = 240  # seconds for a whole job; every failure test must end well within it

pytestmark = pytest.mark.slow


def _free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def run_job(scenario, n_processes, out):
    """Start the job's processes (``n_processes`` 0: the one-process reference) and wait for all
    of them; their exit statuses, stderr and the seconds the last took."""
    os.makedirs(out, exist_ok=True)
    port = str(_free_port())
    codes, _, errors, seconds = run_processes(
        [[WORKER, scenario, str(i), str(n_processes), port, str(out)] for i in range(max(1, n_processes))]
    )
    return codes, errors, seconds


def run_processes(arguments, cwd=None):
    """``python ARGUMENTS`` for each in ``arguments``, at once, one CPU device each; their exit
    statuses, stdout, stderr and the seconds the last took."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    start = time.monotonic()
    # output to files, not pipes: a process blocked on a full pipe would hold the others of its
    # job at their exit (JAX's shutdown waits for every process)
    files = [(tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")) for _ in arguments]
    procs = [
        subprocess.Popen([sys.executable, *args], env=env, cwd=cwd, stdout=out, stderr=err, text=True)
        for args, (out, err) in zip(arguments, files)
    ]
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, TIMEOUT - (time.monotonic() - start)))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    seconds = time.monotonic() - start
    outputs, errors = [], []
    for out, err in files:
        for stream, texts in ((out, outputs), (err, errors)):
            stream.seek(0)
            texts.append(stream.read())
            stream.close()
    return [proc.returncode for proc in procs], outputs, errors, seconds


def _results(out, n):
    return [dict(np.load(os.path.join(out, f"{i}.npz"))) for i in range(n)]


def _check_job_matches_reference(tmp_path, scenario, n_processes, row_wise=("transform", "score_samples", "proba")):
    codes, errors, _ = run_job(scenario, n_processes, tmp_path / "job")
    assert codes == [0] * n_processes, errors[0][-3000:] + errors[-1][-3000:]
    codes, errors, _ = run_job(scenario, 0, tmp_path / "alone")
    assert codes == [0], errors[0][-3000:]
    job, (alone,) = _results(tmp_path / "job", n_processes), _results(tmp_path / "alone", 1)
    for name, reference in alone.items():
        if name in row_wise:  # each process transformed (scored) its own rows
            np.testing.assert_allclose(np.concatenate([r[name] for r in job]), reference, rtol=1e-9, atol=1e-12)
            continue
        for result in job[1:]:
            np.testing.assert_array_equal(result[name], job[0][name])  # the same model everywhere
        np.testing.assert_allclose(job[0][name], reference, rtol=1e-9, atol=1e-12)
    return job


def test_two_processes_fit_the_union_of_their_rows(tmp_path):
    job = _check_job_matches_reference(tmp_path, "nonlinear", 2)
    assert [len(r["transform"]) for r in job] == [360, 240]  # unequal shares


def test_three_processes_fit_a_conditional_model_on_labels_some_never_see(tmp_path):
    # the segments are cut by rows: process 2 holds the last two only, process 0 the first three
    _check_job_matches_reference(tmp_path, "conditional", 3)


def test_fit_to_data_takes_each_process_rows_on_a_mesh_over_the_processes(tmp_path):
    _check_job_matches_reference(tmp_path, "functional", 2)


def test_an_interrupted_job_resumes_from_the_checkpoint_process_0_wrote(tmp_path):
    codes, errors, _ = run_job("interrupt", 2, tmp_path / "job")
    assert codes == [0, 0], errors[0][-3000:] + errors[1][-3000:]
    # only process 0 wrote, a checkpoint at the start of epochs 2 and 3 ... then the interrupt
    assert not (tmp_path / "job" / "1.writes").exists()
    writes = (tmp_path / "job" / "0.writes").read_text().split()
    assert len(writes) >= 1 and set(writes) == {str(tmp_path / "job" / ".." / "checkpoint.nica")}
    _check_job_matches_reference(tmp_path, "resume", 2)  # resumed = the uninterrupted fit


def test_a_process_that_dies_stops_the_others_with_a_clear_error(tmp_path):
    """The survivor raises nica's PeerFailure when its collective fails; if it is still waiting
    when JAX's coordination service notices the death (the heartbeat timeout, 10 s here), the
    service ends it with its own message (seen once in about ten runs, on a loaded machine)."""
    codes, errors, seconds = run_job("die", 2, tmp_path / "job")
    assert codes[1] == 7, errors[1][-3000:]
    if codes[0] == 3:
        assert "Another process of this 2-process fit stopped (this is process 0)" in errors[0]
    else:
        assert codes[0] == -signal.SIGABRT, errors[0][-3000:]
        assert "the JAX distributed service detected fatal errors" in errors[0]
        assert "another task died" in errors[0]
    assert seconds < TIMEOUT / 2


def test_input_refused_in_one_process_is_an_error_in_every_process(tmp_path):
    codes, errors, _ = run_job("refused", 2, tmp_path / "refused")
    assert codes == [3, 4], errors[0][-3000:] + errors[1][-3000:]
    assert "Input X contains NaN" in errors[1]
    assert "Checking the input failed in process(es) [1] of 2" in errors[0]
    codes, errors, _ = run_job("columns", 2, tmp_path / "columns")
    assert codes == [4, 4], errors[0][-3000:] + errors[1][-3000:]
    for stderr in errors:
        assert "Every process of a multi-process fit must give the same dtype and columns of X" in stderr


def test_the_command_line_fits_each_process_share_of_one_file(tmp_path):
    rng = np.random.default_rng(0)
    S = rng.laplace(size=(900, 3))
    np.save(tmp_path / "x.npy", np.tanh(S @ rng.normal(size=(3, 3))) + 0.5 * S)
    np.savetxt(tmp_path / "u.csv", np.repeat([f"s{k}" for k in range(6)], 150), fmt="%s")
    common = ["-m", "nica", "fit", "x.npy", "--aux", "u.csv", "--max-iter", "3", "--n-layers", "2"]
    common += ["--random-state", "0", "--no-compilation-cache"]
    port = str(_free_port())
    job = [
        [*common, "--model", "job.nica", "--coordinator", f"localhost:{port}", "--num-processes", "2"]
        + ["--process-id", str(i), "--rows", "share"]
        for i in range(2)
    ]
    codes, outputs, errors, _ = run_processes([*job, [*common, "--model", "alone.nica"]], cwd=tmp_path)
    assert codes == [0, 0, 0], errors
    assert "450 samples × 3 features (this process's rows; process 1 of 2)" in outputs[1]
    assert "process 0 saved it to job.nica" in outputs[1]
    together, alone = nica.load(tmp_path / "job.nica"), nica.load(tmp_path / "alone.nica")
    for a, b in zip(together.params_, alone.params_):
        np.testing.assert_allclose(a.W, b.W, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(together.loss_curve_, alone.loss_curve_, rtol=1e-10)


def test_command_line_job_options_are_checked(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(50, 2)))
    status = main(["fit", str(tmp_path / "x.npy"), "--model", str(tmp_path / "m.nica"), "--rows", "share"])
    assert status == 2 and "--rows needs --distributed" in capsys.readouterr().err
    status = main(["fit", str(tmp_path / "x.npy"), "--model", str(tmp_path / "m.nica"), "--num-processes", "0"])
    assert status == 2 and "--num-processes must be at least 1; got 0" in capsys.readouterr().err
