"""Restart decisions as tables: policy x how the run ended -> restart or not, and the delay."""

from __future__ import annotations

import pytest

from supervisor.config import Backoff, RestartPolicy, parse_restart
from supervisor.restart import Decision, RestartState, decide, should_start_on_boot

DOCKER = Backoff()  # 100 ms doubling to 1 min, reset after a 10 s run
FRESH = RestartState()


def run(policy: str, state: RestartState = FRESH, *, exit_code: int = 1,
        oom: bool = False, by_user: bool = False, ran: float = 1.0,
        backoff: Backoff = DOCKER) -> tuple[Decision, RestartState]:  # fmt: skip
    return decide(parse_restart(policy), backoff, state, exit_code=exit_code, oom_killed=oom,
                  stopped_by_user=by_user, run_seconds=ran)  # fmt: skip


# -- which policy restarts what -------------------------------------------------------------


@pytest.mark.parametrize(("policy", "exit_code", "oom", "by_user", "restart", "reason"), [
    ("no", 1, False, False, False, "policy no"),
    ("no", 0, False, False, False, "policy no"),
    ("no", 137, True, False, False, "policy no"),
    ("always", 0, False, False, True, "policy always"),
    ("always", 1, False, False, True, "policy always"),
    ("always", 143, False, True, False, "stopped by user"),
    ("unless-stopped", 0, False, False, True, "policy unless-stopped"),
    ("unless-stopped", 2, False, False, True, "policy unless-stopped"),
    ("unless-stopped", 0, False, True, False, "stopped by user"),
    ("on-failure", 0, False, False, False, "exit 0 under on-failure"),
    ("on-failure", 1, False, False, True, "exit 1 under on-failure"),
    ("on-failure", 137, True, False, True, "exit 137 (OOM) under on-failure"),
    ("on-failure", 0, True, False, True, "exit 0 (OOM) under on-failure"),  # OOM is a failure
    ("on-failure", 1, False, True, False, "stopped by user"),
    ("on-failure:3", 1, False, False, True, "exit 1 under on-failure"),
    ("on-failure:3", 0, False, False, False, "exit 0 under on-failure"),
])  # fmt: skip
def test_policy(policy: str, exit_code: int, oom: bool, by_user: bool, restart: bool,
                reason: str) -> None:  # fmt: skip
    decision, state = run(policy, exit_code=exit_code, oom=oom, by_user=by_user)
    assert (decision.restart, decision.reason) == (restart, reason)
    assert decision.delay == (0.1 if restart else 0.0)
    assert state.restart_count == (1 if restart else 0)  # counts restarts only


@pytest.mark.parametrize("policy", ["no", "always", "unless-stopped", "on-failure",
                                    "on-failure:5"])  # fmt: skip
@pytest.mark.parametrize("exit_code", [0, 1, 137])
def test_stopped_by_user_is_never_restarted(policy: str, exit_code: int) -> None:
    decision, state = run(policy, RestartState(2, 0.4), exit_code=exit_code, by_user=True)
    assert decision == Decision(False, 0.0, "stopped by user")
    assert state == RestartState(2, 0.4)


# -- on-failure:N ---------------------------------------------------------------------------


def test_on_failure_3_gives_exactly_3_restarts() -> None:
    state, delays = RestartState(), []
    for _ in range(10):
        decision, state = run("on-failure:3", state, exit_code=1)
        if not decision.restart:
            break
        delays.append(decision.delay)
    assert delays == [0.1, 0.2, 0.4]
    assert decision == Decision(False, 0.0, "max retries 3 reached")
    assert state.restart_count == 3


def test_on_failure_count_survives_long_runs() -> None:
    """As Docker's RestartCount: a long run resets the delay, not the count of restarts."""
    state = RestartState()
    for _ in range(2):
        decision, state = run("on-failure:2", state, ran=60.0)
        assert decision.restart and decision.delay == 0.1
    decision, state = run("on-failure:2", state, ran=60.0)
    assert decision == Decision(False, 0.0, "max retries 2 reached")


def test_on_failure_without_a_limit_goes_on() -> None:
    state = RestartState()
    for _ in range(100):
        decision, state = run("on-failure", state)
        assert decision.restart
    assert state.restart_count == 100 and decision.delay == 60.0


# -- the backoff ----------------------------------------------------------------------------

DOUBLING_MS = [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000, 60000]


@pytest.mark.parametrize("policy", ["always", "unless-stopped", "on-failure"])
def test_docker_schedule_doubles_to_a_minute(policy: str) -> None:
    state, delays = RestartState(), []
    for _ in DOUBLING_MS:
        decision, state = run(policy, state, ran=0.5)
        delays.append(round(decision.delay * 1000))
    assert delays == DOUBLING_MS


@pytest.mark.parametrize(("ran", "delay"), [
    (9.999, 0.8),  # short of reset_after: keeps doubling
    (10.0, 0.1),  # a run of reset_after or more resets to initial
    (3600.0, 0.1),
])  # fmt: skip
def test_reset_after_a_long_run(ran: float, delay: float) -> None:
    decision, state = run("always", RestartState(3, 0.4), exit_code=0, ran=ran)
    assert decision.delay == pytest.approx(delay)
    assert state == RestartState(4, decision.delay)


def test_reset_applies_when_not_restarting_too() -> None:
    """Docker resets "regardless of status and policy"; nothing waited, so no doubling."""
    decision, state = run("on-failure", RestartState(3, 6.4), exit_code=0, ran=20.0)
    assert not decision.restart and state == RestartState(3, None)
    decision, state = run("on-failure", RestartState(3, 6.4), exit_code=0, ran=2.0)
    assert state == RestartState(3, 6.4)


@pytest.mark.parametrize(("backoff", "expected"), [
    (Backoff(initial=0.0), [0.0] * 6),  # 0 doubled stays 0: always immediate
    (Backoff(initial=0.0, max=0.0), [0.0] * 6),
    (Backoff(initial=1.0, max=5.0), [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]),
    (Backoff(initial=0.3, max=0.3), [0.3] * 6),
    (Backoff(initial=0.25, max=1.0), [0.25, 0.5, 1.0, 1.0, 1.0, 1.0]),
])  # fmt: skip
def test_tunable_backoff(backoff: Backoff, expected: list[float]) -> None:
    state, delays = RestartState(), []
    for _ in expected:
        decision, state = run("always", state, backoff=backoff, ran=0.01)
        delays.append(decision.delay)
    assert delays == expected


def test_reset_after_zero_resets_every_time() -> None:
    backoff = Backoff(reset_after=0.0)
    state = RestartState()
    for _ in range(5):
        decision, state = run("always", state, backoff=backoff, ran=0.0)
        assert decision.delay == 0.1


def test_crash_loop_then_recovery() -> None:
    """A sequence as a service would see it: crashes, a long healthy run, crashes again."""
    state = RestartState()
    seen = []
    for ran, code in [(0.1, 1), (0.1, 1), (0.1, 1), (30.0, 1), (0.1, 1), (0.2, 0)]:
        decision, state = run("always", state, exit_code=code, ran=ran)
        seen.append(decision.delay)
    assert seen == [0.1, 0.2, 0.4, 0.1, 0.2, 0.4]
    assert state.restart_count == 6


# -- starting up again -----------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "by_user", "start"), [
    ("always", False, True), ("always", True, True),
    ("unless-stopped", False, True), ("unless-stopped", True, False),
    ("on-failure", False, False), ("on-failure:3", False, False),
    ("no", False, False), ("no", True, False),
])  # fmt: skip
def test_should_start_on_boot(policy: str, by_user: bool, start: bool) -> None:
    assert should_start_on_boot(parse_restart(policy), by_user) is start


def test_policy_struct_default_is_no() -> None:
    assert run("no")[0].restart is False
    assert RestartPolicy().name == "no"
