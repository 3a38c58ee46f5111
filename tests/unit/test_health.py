"""The healthcheck state machine, with explicit times: a run starts at T = 1000.0."""

from __future__ import annotations

import pytest

from supervisor.config import Healthcheck
from supervisor.health import LOG_ENTRIES, OUTPUT_MAX, Health, HealthResult

T = 1000.0
CHECK = ["CMD", "true"]

# A step: (check starts at T+start, lasts `took`, exits `code`) -> (status, failing streak,
# next check due at T+due).  code None: the check timed out.
Step = tuple[float, float, int | None, str, int, float]


def play(check: Healthcheck, steps: list[Step]) -> Health:
    health = Health(check, started_at=T)
    for i, (start, took, code, status, streak, due) in enumerate(steps):
        got = health.record(started=T + start, ended=T + start + took, exit_code=code,
                            output=f"run {i}")  # fmt: skip
        due_at = round(health.next_check_at(T + start + took) - T, 6)
        after: tuple[str, int, float] = (got, health.failing_streak, due_at)
        assert after == (status, streak, due), f"step {i}"
    return health


def test_first_check_after_interval() -> None:
    health = Health(Healthcheck(test=CHECK), started_at=T)
    assert health.status == "starting" and health.failing_streak == 0 and health.log == []
    assert health.next_check_at(T) == T + 30.0  # Docker's default interval


def test_first_check_after_start_interval_in_a_start_period() -> None:
    health = Health(Healthcheck(test=CHECK, start_period=60.0), started_at=T)
    assert health.next_check_at(T) == T + 5.0  # Docker's default start_interval


@pytest.mark.parametrize(("check", "steps"), [
    pytest.param(Healthcheck(test=CHECK), [
        (30.0, 0.5, 0, "healthy", 0, 60.5),  # the next one interval after this one *ended*
        (60.5, 1.0, 1, "healthy", 1, 91.5),
        (91.5, 1.0, 1, "healthy", 2, 122.5),
        (122.5, 1.0, 1, "unhealthy", 3, 153.5),  # retries (3) failures in a row
        (153.5, 1.0, 7, "unhealthy", 4, 184.5),
        (184.5, 1.0, 0, "healthy", 0, 215.5),  # one success is enough to come back
    ], id="retries-then-recovery"),
    pytest.param(Healthcheck(test=CHECK), [
        (30.0, 1.0, 1, "starting", 1, 61.0),  # the first check counts: no grace by default
        (61.0, 1.0, 2, "starting", 2, 92.0),  # 2 (reserved) is a failure too
        (92.0, 30.0, None, "unhealthy", 3, 152.0),  # a timeout is a failure
    ], id="failing-from-the-start"),
    pytest.param(Healthcheck(test=CHECK, retries=1, interval=10.0), [
        (10.0, 0.1, 1, "unhealthy", 1, 20.1),
        (20.1, 0.1, 0, "healthy", 0, 30.2),
        (30.2, 0.1, 1, "unhealthy", 1, 40.3),
    ], id="retries-1"),
    pytest.param(Healthcheck(test=CHECK, start_period=30.0, start_interval=2.0, interval=10.0), [
        (2.0, 0.5, 1, "starting", 0, 4.5),  # in the start period: does not count
        (4.5, 0.5, None, "starting", 0, 7.0),  # nor does a timeout
        (7.0, 0.5, 1, "starting", 0, 9.5),
        (9.5, 0.5, 0, "healthy", 0, 20.0),  # a success ends the start period: interval now
        (20.0, 0.5, 1, "healthy", 1, 30.5),  # failures count again, even before T+30
        (30.5, 0.5, 1, "healthy", 2, 41.0),
        (41.0, 0.5, 1, "unhealthy", 3, 51.5),
    ], id="start-period-success-ends-it"),
    pytest.param(Healthcheck(test=CHECK, start_period=10.0, start_interval=3.0, interval=20.0), [
        (3.0, 1.0, 1, "starting", 0, 7.0),
        (7.0, 1.0, 1, "starting", 0, 11.0),  # ended at T+8, in the period: start_interval
        (9.9, 0.2, 1, "starting", 0, 30.1),  # started inside: not counted; ended after: interval
        (30.1, 0.5, 1, "starting", 1, 50.6),  # after the period failures count
        (50.6, 0.5, 1, "starting", 2, 71.1),
        (71.1, 0.5, 1, "unhealthy", 3, 91.6),
    ], id="start-period-runs-out"),
    pytest.param(Healthcheck(test=CHECK, start_period=10.0), [
        (10.0, 0.5, 1, "starting", 1, 40.5),  # a check starting at T+start_period counts
    ], id="start-period-boundary"),
])  # fmt: skip
def test_sequences(check: Healthcheck, steps: list[Step]) -> None:
    play(check, steps)


def test_log_keeps_the_last_five() -> None:
    health = Health(Healthcheck(test=CHECK, interval=1.0), started_at=T)
    for i in range(8):
        health.record(started=T + i, ended=T + i + 0.5, exit_code=0, output=f"run {i}")
    assert len(health.log) == LOG_ENTRIES == 5
    assert [r.output for r in health.log] == [f"run {i}" for i in range(3, 8)]
    assert health.log[-1] == HealthResult(start=T + 7, end=T + 7.5, exit_code=0, output="run 7")


def test_output_is_bounded_and_a_timeout_says_so() -> None:
    health = Health(Healthcheck(test=CHECK, timeout=2.0), started_at=T)
    health.record(started=T, ended=T + 1, exit_code=1, output="x" * 10_000)
    assert len(health.log[-1].output) == OUTPUT_MAX == 4096
    health.record(started=T + 31, ended=T + 33, exit_code=None, output="")
    assert health.log[-1] == HealthResult(start=T + 31, end=T + 33, exit_code=None,
                                          output="Health check exceeded timeout (2s)")
    health.record(started=T + 63, ended=T + 65, exit_code=None, output="partial")
    assert health.log[-1].output == "partial"


def test_an_overdue_check_is_due_now() -> None:
    health = Health(Healthcheck(test=CHECK, interval=10.0), started_at=T)
    assert health.next_check_at(T + 3) == T + 10
    assert health.next_check_at(T + 25) == T + 25
    health.record(started=T + 25, ended=T + 26, exit_code=0, output="")
    assert health.next_check_at(T + 26) == T + 36
    assert health.next_check_at(T + 40) == T + 40


@pytest.mark.parametrize("check", [Healthcheck(test=["NONE"]),
                                   Healthcheck(test=CHECK, disable=True)])  # fmt: skip
def test_a_disabled_check_has_no_state(check: Healthcheck) -> None:
    with pytest.raises(ValueError, match="disabled"):
        Health(check, started_at=T)
