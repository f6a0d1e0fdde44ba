"""The fit loop's policy after each epoch (``nica/_src/stopping.py``): ``EarlyStopping.update``
on sequences of scores written by hand, and its settings' checks.  (What the loop does with each
decision is tested in tests/test_fitting.py.)"""

import dataclasses

import pytest

import nica
from nica import Decision, EarlyStopping, StoppingStatus


def run(policy, scores):
    """The decisions and the last status for a sequence of epoch scores."""
    status, decisions = StoppingStatus(), []
    for epoch, score in enumerate(scores, start=1):
        status, decision = policy.update(status, score, epoch)
        decisions.append(decision)
    return status, decisions


def test_a_new_best_is_kept_and_the_count_of_epochs_without_change_resets():
    status, decisions = run(EarlyStopping(patience=3, tol=0.1), [-2.0, -1.0, -0.95, -0.5])
    assert [d.improved for d in decisions] == [True, True, True, True]
    assert [d.action for d in decisions] == ["continue"] * 4
    assert status == StoppingStatus(best_score=-0.5, best_epoch=4, no_change=0, reductions=0)
    # -0.95 improved on -1.0 by less than tol: it is the best, but the count did not reset
    status, _ = run(EarlyStopping(patience=3, tol=0.1), [-1.0, -0.95])
    assert (status.best_score, status.best_epoch, status.no_change) == (-0.95, 2, 1)


def test_a_plateau_lowers_the_rate_until_the_reductions_are_spent_then_stops():
    policy = EarlyStopping(patience=2, tol=0.0, max_rate_reductions=2)
    status, decisions = run(policy, [-1.0] * 7)
    assert [d.action for d in decisions] == ["continue", "continue", "reduce", "continue", "reduce", "continue", "stop"]
    assert decisions[0].improved and not any(d.improved for d in decisions[1:])
    assert status.reductions == 2 and status.best_epoch == 1
    _, decisions = run(dataclasses.replace(policy, schedule="constant"), [-1.0] * 3)
    assert [d.action for d in decisions] == ["continue", "continue", "stop"]  # no rate cut first


def test_a_drop_of_more_than_spike_nats_is_a_spike_that_keeps_the_best():
    policy = EarlyStopping(patience=10, spike_nats=0.25)
    status, decisions = run(policy, [-1.0, -1.3, -1.2])
    assert decisions[1] == Decision(False, "spike")
    assert decisions[2] == Decision(False, "continue")  # -1.2 is within 0.25 nats of the best
    assert (status.best_score, status.best_epoch, status.no_change) == (-1.0, 1, 2)
    _, decisions = run(policy, [-1.0, -1.25])  # exactly spike_nats below: not a spike
    assert decisions[1].action == "continue"


def test_the_defaults_are_the_documented_ones():
    assert EarlyStopping() == EarlyStopping(
        patience=10, tol=1e-4, schedule="plateau", rate_factor=0.2, max_rate_reductions=2, spike_nats=0.25
    )
    assert StoppingStatus() == StoppingStatus(float("-inf"), 0, 0, 0)
    assert hash(EarlyStopping()) == hash(EarlyStopping())  # frozen: the loop's static setting
    assert nica.EarlyStopping is EarlyStopping


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"patience": 0}, ValueError, "patience must be an integer >= 1; got 0"),
        ({"patience": 1.5}, ValueError, "patience must be an integer >= 1; got 1.5"),
        ({"tol": -1e-3}, ValueError, "tol must be a finite number >= 0; got -0.001"),
        ({"tol": float("inf")}, ValueError, "tol must be a finite number >= 0; got inf"),
        ({"schedule": "cosine"}, ValueError, r"schedule must be one of \('plateau', 'constant'\); got 'cosine'"),
        ({"rate_factor": 1.0}, ValueError, r"rate_factor must be a number in \(0, 1\); got 1.0"),
        ({"rate_factor": 0}, ValueError, r"rate_factor must be a number in \(0, 1\); got 0"),
        ({"max_rate_reductions": -1}, ValueError, "max_rate_reductions must be an integer >= 0; got -1"),
        ({"spike_nats": 0.0}, ValueError, "spike_nats must be a finite number > 0; got 0.0"),
        ({"spike_nats": "big"}, TypeError, "spike_nats must be a finite number > 0; got 'big'"),
    ],
)
def test_bad_settings_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        EarlyStopping(**kwargs)
