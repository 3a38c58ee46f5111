"""Whether and when to run a container again: pure functions of its policy, its restart history
and how its last run ended, as moby's ``restartmanager`` and nomad's ``restarts.go``.

Nothing here reads a clock or sleeps: the caller passes how long the run lasted and gets back
a delay, so every schedule is tested as a table (tests/unit/test_restart.py) and the service
loop only sleeps through what ``decide`` says.

Docker's rules, with the backoff made tunable (``restart_backoff``):

- a run of at least ``reset_after`` (10 s) resets the delay, whatever the policy or exit;
- the first restart waits ``initial`` (100 ms), each later one twice the last, at most ``max``
  (1 min); ``initial = 0`` makes every restart immediate, since 0 doubled stays 0;
- ``always`` restarts; ``unless-stopped`` restarts; ``on-failure[:N]`` restarts after a
  non-zero exit or an OOM kill while fewer than N restarts were made (N = 0: no limit);
  ``no`` never does; and a container stopped by a user is never restarted, whatever its policy.

``restart_count`` counts the restarts since the container was last started explicitly and is
not reset by a long run (``on-failure:3`` is 3 restarts in all, as Docker's): an explicit start
(``start``, ``restart``, ``up``) begins again from ``RestartState()``, as Docker builds a new
restart manager then.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.config import Backoff, RestartPolicy


@dataclass(frozen=True)
class Decision:
    """Restart or not; after ``delay`` seconds; ``reason`` for events and ``inspect``."""

    restart: bool
    delay: float
    reason: str


@dataclass(frozen=True)
class RestartState:
    """What ``decide`` remembers between runs.

    ``delay`` is the last delay waited; None means reset, so the next restart waits
    ``backoff.initial``.  (0 cannot mean reset: with ``initial = 0`` it is a real delay.)
    """

    restart_count: int = 0
    delay: float | None = None


def decide(
    policy: RestartPolicy,
    backoff: Backoff,
    state: RestartState,
    *,
    exit_code: int,
    oom_killed: bool,
    stopped_by_user: bool,
    run_seconds: float,
) -> tuple[Decision, RestartState]:
    """The decision after a run ended, and the state to pass to the next call."""
    last = None if run_seconds >= backoff.reset_after else state.delay
    restart, reason = _policy_says(policy, state, exit_code, oom_killed, stopped_by_user)
    if not restart:
        # The reset is kept (Docker resets "regardless of status and policy"); the delay does
        # not grow, since nothing waited.
        return Decision(False, 0.0, reason), RestartState(state.restart_count, last)
    delay = backoff.initial if last is None else min(last * 2, backoff.max)
    return Decision(True, delay, reason), RestartState(state.restart_count + 1, delay)


def _policy_says(
    policy: RestartPolicy, state: RestartState, exit_code: int, oom_killed: bool,
    stopped_by_user: bool,
) -> tuple[bool, str]:  # fmt: skip
    if stopped_by_user:
        return False, "stopped by user"
    if policy.name == "no":
        return False, "policy no"
    if policy.name in ("always", "unless-stopped"):
        return True, f"policy {policy.name}"
    # on-failure: an OOM kill is a failure even if the exit code were somehow 0.
    how = f"exit {exit_code}" + (" (OOM)" if oom_killed else "")
    if exit_code == 0 and not oom_killed:
        return False, f"{how} under on-failure"
    if policy.max_retries and state.restart_count >= policy.max_retries:
        return False, f"max retries {policy.max_retries} reached"
    return True, f"{how} under on-failure"


def should_start_on_boot(policy: RestartPolicy, stopped_by_user: bool) -> bool:
    """Whether a supervisor starting up (again, after a crash or a reboot) starts a container
    it finds from before, as dockerd does when it starts.

    ``always`` does, even after a user stopped it (Docker: "restarted only when the daemon
    restarts"); ``unless-stopped`` does unless a user stopped it; ``on-failure`` and ``no`` do
    not.  This is only about bringing back what was there: a ``supervise up`` starts every
    container of the stack whatever its policy, as ``docker compose up`` does.
    """
    if policy.name == "always":
        return True
    return policy.name == "unless-stopped" and not stopped_by_user
