"""What the shell knows of the stack, fed by the API's streams and read by the views.

Pure state, no I/O and no prompt_toolkit: the feed (`feed.py`) writes it, the full-screen
views (`view.py`) read it, and the tests drive it directly.  Every buffer is bounded.
"""

from __future__ import annotations

import bisect
import re
import time
from collections import deque
from dataclasses import dataclass, field

from logging_bus.record import LogLine
from supervisor.protocol import ContainerSummary, Event, StatsView
from supervisor.tui import fmt

HISTORY_SECONDS = 300.0  # the sparklines' span: the last five minutes, one sample a second
MAX_LOG_ENTRIES = 5000
MAX_OUTPUT_LINES = 2000


@dataclass
class Stats:
    """One container's latest sample and its recent history."""

    latest: StatsView | None = None
    history: deque[tuple[float, float, int]] = field(
        default_factory=lambda: deque(maxlen=int(HISTORY_SECONDS) * 2))

    def add(self, sample: StatsView, now: float) -> None:
        self.latest = sample
        self.history.append((now, sample.cpu_percent, sample.memory_usage))

    def cpu(self, since: float = 0.0) -> list[tuple[float, float]]:
        return [(t, c) for t, c, _ in self._since(since)]

    def memory(self, since: float = 0.0) -> list[tuple[float, float]]:
        return [(t, float(m)) for t, _, m in self._since(since)]

    def _since(self, since: float) -> list[tuple[float, float, int]]:
        """The samples from `since` on, walking back from the newest (a redraw asks for
        the last minute of each row: 60 samples, not the whole history)."""
        out = []
        for sample in reversed(self.history):
            if sample[0] < since:
                break
            out.append(sample)
        out.reverse()
        return out


@dataclass(frozen=True)
class Entry:
    """One line of the log pane: a container's log line, an event, or a note of ours."""

    kind: str  # "log" | "event" | "note"
    time: float
    container: str
    text: str
    stderr: bool = False


def event_text(event: Event) -> str:
    attrs = " ".join(f"{k}={v}" for k, v in sorted(event.attributes.items())
                     if k != "next_attempt")
    return f"{event.action}" + (f" {attrs}" if attrs else "")


class LogPane:
    """The log pane's lines, its position (following the newest, or held at a line) and its
    search.  Positions are absolute indexes (`dropped` + index), so they survive the oldest
    lines falling off the bounded buffer."""

    def __init__(self, limit: int = MAX_LOG_ENTRIES) -> None:
        self.entries: deque[Entry] = deque(maxlen=limit)
        self.dropped = 0
        self.last_seq = 0  # the newest log seq shown: a resumed stream skips what we have
        self.last_time = 0.0
        self.following = True
        self.bottom = 0  # absolute index of the line at the bottom when not following
        self.unseen = 0  # lines that arrived while paused
        self.pattern: re.Pattern[str] | None = None
        self.query = ""
        self.match: int | None = None  # absolute index of the current match
        self._matches: tuple[tuple[str, int, int], list[int]] | None = None

    # -- content ------------------------------------------------------------------------

    @property
    def end(self) -> int:
        return self.dropped + len(self.entries)

    def _append(self, entry: Entry) -> None:
        if len(self.entries) == self.entries.maxlen:
            self.entries.popleft()
            self.dropped += 1
        # Logs and events come on two streams (the log one read in batches): a line that
        # arrives after an event it preceded goes before it, in the supervisor's time order.
        i = len(self.entries)
        while i > 0 and self.entries[i - 1].time > entry.time and len(self.entries) - i < 64:
            i -= 1
        self.entries.insert(i, entry)
        if not self.following:
            self.unseen += 1

    def add_log(self, line: LogLine) -> bool:
        """A log record; False when already shown (a resumed stream repeats some)."""
        if line.seq <= self.last_seq:
            return False
        self.last_seq = line.seq
        self.last_time = max(self.last_time, line.time)
        self._append(Entry("log", line.time, line.container, fmt.clean(line.line),
                           stderr=line.source == "stderr"))
        return True

    def add_event(self, event: Event) -> None:
        self._append(Entry("event", event.time, event.container, event_text(event)))

    def add_note(self, text: str) -> None:
        self._append(Entry("note", time.time(), "", text))

    def clear(self) -> None:
        self.entries.clear()
        self.dropped = 0
        self.last_seq = 0
        self.last_time = 0.0
        self.following = True
        self.unseen = 0
        self.match = None

    def get(self, index: int) -> Entry | None:
        i = index - self.dropped
        return self.entries[i] if 0 <= i < len(self.entries) else None

    # -- position -----------------------------------------------------------------------

    def bottom_index(self) -> int:
        """Absolute index of the last line to show (exclusive end)."""
        if self.following:
            return self.end
        return max(self.dropped, min(self.bottom, self.end))

    def pause(self) -> None:
        if self.following:
            self.following = False
            self.bottom = self.end
            self.unseen = 0

    def resume(self) -> None:
        self.following = True
        self.unseen = 0

    def toggle(self) -> None:
        if self.following:
            self.pause()
        else:
            self.resume()

    def scroll(self, lines: int) -> None:
        """Up (negative) or down by log lines; scrolling up holds the view (no following)."""
        self.pause()
        self.bottom = max(self.dropped + 1, min(self.end, self.bottom_index() + lines))
        if self.bottom >= self.end and lines > 0:
            self.resume()

    # -- search -------------------------------------------------------------------------

    def search(self, query: str, origin: int | None = None) -> None:
        """Incremental search: the newest match at or above `origin` (default: the bottom).
        Smart case, as less and vim: case-insensitive unless the query has a capital."""
        self.query = query
        if not query:
            self.pattern = None
            self.match = None
            return
        flags = 0 if any(c.isupper() for c in query) else re.IGNORECASE
        self.pattern = re.compile(re.escape(query), flags)
        start = self.bottom_index() if origin is None else origin
        self.match = self._find(start - 1, -1)
        if self.match is None:  # nothing above: the newest of all
            self.match = self._find(self.end - 1, -1)
        if self.match is not None:
            self._show(self.match)

    def next(self, direction: int) -> bool:
        """n (direction -1: older) and N (+1: newer), wrapping round; False when none."""
        if self.pattern is None:
            return False
        here = self.match if self.match is not None else self.bottom_index()
        found = self._find(here + direction, direction)
        if found is None:
            found = self._find(self.end - 1 if direction < 0 else self.dropped, direction)
        if found is None:
            return False
        self.match = found
        self._show(found)
        return True

    def _find(self, start: int, direction: int) -> int | None:
        if self.pattern is None:
            return None
        i = start
        while self.dropped <= i < self.end:
            entry = self.entries[i - self.dropped]
            if self.pattern.search(entry.text) or (entry.container and
                                                   self.pattern.search(entry.container)):
                return i
            i += direction
        return None

    def _show(self, index: int) -> None:
        """Hold the view so that `index` is on screen (a little above the bottom)."""
        self.following = False
        self.unseen = 0
        self.bottom = min(self.end, index + 3)

    def match_count(self) -> tuple[int, int]:
        """(the current match's rank from the oldest, matches in all); recounted only when
        the lines or the query changed, not on every redraw."""
        if self.pattern is None:
            return 0, 0
        key = (self.query, self.dropped, self.end)
        if self._matches is None or self._matches[0] != key:
            found = [i for i, e in enumerate(self.entries, start=self.dropped)
                     if self.pattern.search(e.text)
                     or (e.container and self.pattern.search(e.container))]
            self._matches = (key, found)
        found = self._matches[1]
        rank = bisect.bisect_right(found, self.match) if self.match is not None else 0
        return rank, len(found)


@dataclass
class Status:
    text: str = ""
    error: bool = False
    at: float = 0.0


class Model:
    """The stack as the shell sees it."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.rows: dict[str, ContainerSummary] = {}
        self.stats: dict[str, Stats] = {}
        self.selected: str | None = None
        self.target: str | None = None  # the container the log pane follows; None: all
        self.logs = LogPane()
        self.events: deque[Event] = deque(maxlen=200)
        self.connected = False
        self.status = Status()
        self.output: deque[tuple[str, bool]] = deque(maxlen=MAX_OUTPUT_LINES)
        self.output_title = ""
        self.output_shown = False
        self.running: str | None = None  # the command line running now
        self.memory_total = _memory_total()

    # -- rows -----------------------------------------------------------------------------

    def set_rows(self, rows: list[ContainerSummary]) -> None:
        self.rows = {r.name: r for r in rows}
        for name in list(self.stats):
            if name not in self.rows:
                del self.stats[name]
        if self.selected not in self.rows:
            self.selected = next(iter(self.rows), None)

    def names(self) -> list[str]:
        return list(self.rows)

    def select(self, step: int) -> None:
        names = self.names()
        if not names:
            return
        i = names.index(self.selected) if self.selected in names else 0
        self.selected = names[max(0, min(len(names) - 1, i + step))]

    def add_stats(self, sample: StatsView, now: float | None = None) -> None:
        if sample.name not in self.rows:
            return
        self.stats.setdefault(sample.name, Stats()).add(sample, time.time() if now is None
                                                        else now)

    def add_event(self, event: Event) -> None:
        self.events.append(event)
        if self.target is None or event.container == self.target:
            self.logs.add_event(event)

    # -- status and output ----------------------------------------------------------------

    def say(self, text: str, *, error: bool = False) -> None:
        """One line in the status bar (the latest wins)."""
        first = text.strip().splitlines()[0] if text.strip() else ""
        self.status = Status(first, error, time.time())

    def start_output(self, title: str) -> None:
        self.output.clear()
        self.output_title = title
        self.output_shown = True

    def add_output(self, text: str, *, stderr: bool = False) -> None:
        for line in text.splitlines() or [""]:
            self.output.append((fmt.clean(line), stderr))

    def follow(self, target: str | None) -> None:
        """Follow one container's logs (None: all); the pane starts over."""
        self.target = target
        self.logs.clear()


def _memory_total() -> int:
    """The host's memory: the bar's scale for a container without a memory limit (as
    `docker stats` shows it)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
