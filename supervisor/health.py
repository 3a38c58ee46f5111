"""The healthcheck state machine of one container run, as moby's ``daemon/health.go``.

Pure: the caller runs the check (an exec in the container, bounded by ``timeout``), passes in
when it started and ended, and asks when the next one is due.  So the schedule, and the rules
of the start period, are tested with explicit times.

Docker's rules (reference-semantics.md §1, moby ``monitor`` and ``handleProbeResult``):

- a run starts ``starting``; a passing check (exit 0) makes it ``healthy`` and clears the
  failing streak; ``retries`` failures in a row make it ``unhealthy`` (the first check counts);
  any other exit code, and a check that outran ``timeout``, is a failure;
- during ``start_period`` failures do not count while the container is still ``starting``;
  a success inside the start period ends it (the container is ``healthy`` from then on);
- the next check is due ``interval`` after the previous one ended (after the run started, for
  the first), or ``start_interval`` instead while inside the start period and ``starting``;
- the last 5 results are kept, each output at most 4096 characters.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from supervisor.config import Healthcheck
from supervisor.units import format_duration

HealthStatus = Literal["starting", "healthy", "unhealthy"]

LOG_ENTRIES = 5  # moby maxLogEntries
OUTPUT_MAX = 4096  # moby maxOutputLen


@dataclass(frozen=True)
class HealthResult:
    """One check, named as Docker's ``State.Health.Log`` entries (Start, End, ExitCode,
    Output); ``exit_code`` None means it timed out (Docker shows -1)."""

    start: float
    end: float
    exit_code: int | None
    output: str


class Health:
    """The health of one container run; make a new one for each run, as Docker does."""

    def __init__(self, check: Healthcheck, started_at: float) -> None:
        if not check.enabled:
            raise ValueError("a disabled healthcheck has no state: the container has no check")
        self.check = check
        self.started_at = started_at
        self.status: HealthStatus = "starting"
        self.failing_streak = 0
        self._log: deque[HealthResult] = deque(maxlen=LOG_ENTRIES)
        self._last_end: float | None = None

    @property
    def log(self) -> list[HealthResult]:
        """The last results, oldest first."""
        return list(self._log)

    def in_start_period(self, at: float) -> bool:
        """Whether a check started at ``at`` falls in the start period, which lasts
        ``start_period`` from the start of the run and ends early at the first success."""
        return self.status == "starting" and at - self.started_at < self.check.start_period

    def next_check_at(self, now: float) -> float:
        """When the next check should start: ``start_interval`` or ``interval`` after the
        previous check ended (after the run started, for the first one), the choice made at
        that moment as Docker resets its timer then.  Never before ``now``: an overdue check
        (the caller was busy) is due at once, not in the past."""
        base = self.started_at if self._last_end is None else self._last_end
        wait = self.check.start_interval if self.in_start_period(base) else self.check.interval
        return max(base + wait, now)

    def record(self, *, started: float, ended: float, exit_code: int | None,
               output: str) -> HealthStatus:  # fmt: skip
        """Takes one check's result and returns the status after it."""
        if exit_code is None and not output:
            output = f"Health check exceeded timeout ({format_duration(self.check.timeout)})"
        self._log.append(HealthResult(started, ended, exit_code, output[:OUTPUT_MAX]))
        self._last_end = ended
        if exit_code == 0:
            self.failing_streak = 0
            self.status = "healthy"
        elif not self.in_start_period(started):
            self.failing_streak += 1
            if self.failing_streak >= self.check.retries:
                self.status = "unhealthy"
        return self.status
