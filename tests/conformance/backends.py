"""The backends the conformance suite runs against, behind one small interface.

The store itself.  The outputs (console, JSON-lines file, syslog over UDP/TCP/Unix, Loki,
Elasticsearch) have their cases in ``outputs.py`` and their suite in ``test_outputs.py``: the
store feeds each output through a forwarder, and what the output's receiver got is read back,
so every one is held to the same rotation, restart, where-to-start and receiver-down
behaviour (moby's ``loggertest`` idea).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from logging_bus.follow import follow
from logging_bus.record import Record
from logging_bus.store import LogStore

SMALL_SEGMENT = 64 << 10  # rotate every few dozen appends, so every test crosses segments


class Backend(Protocol):
    name: str

    def write(self, container: str, source: str, data: bytes, now: float | None = None
              ) -> None: ...

    def end(self, container: str, source: str) -> None:
        """The source reached EOF."""

    def history(self, *, since: float | None = None, until: float | None = None,
                tail: int | None = None, containers: set[str] | None = None
                ) -> list[Record]: ...

    def follow(self, start_seq: int, containers: set[str] | None = None
               ) -> AsyncIterator[Record]:
        """History from ``start_seq``, then live; ends at ``restart``."""

    def segment_count(self) -> int:
        """How many files the backend spreads its data over (rotation happened if > 1)."""

    def restart(self) -> None:
        """Close and reopen, as a supervisor restart does."""

    def close(self) -> None: ...


class StoreBackend:
    name = "store"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.store = LogStore.open(directory, fsync="never", segment_bytes=SMALL_SEGMENT)

    def write(self, container: str, source: str, data: bytes, now: float | None = None
              ) -> None:
        self.store.append(container, source, data, now=now)

    def end(self, container: str, source: str) -> None:
        self.store.flush(container, source)

    def history(self, *, since: float | None = None, until: float | None = None,
                tail: int | None = None, containers: set[str] | None = None
                ) -> list[Record]:
        start = 1 if since is None else self.store.seq_at(since)
        if tail is not None:
            start = max(start, self.store.tail_cursor(tail, containers))
        until_seq = None if until is None else self.store.seq_at(until)
        return list(self.store.read(start, containers=containers, until_seq=until_seq))

    def follow(self, start_seq: int, containers: set[str] | None = None
               ) -> AsyncIterator[Record]:
        return follow(self.store, start_seq, containers=containers, batch=500)

    def segment_count(self) -> int:
        return len(self.store.segments)

    def restart(self) -> None:
        self.store.close()
        self.store = LogStore.open(self.directory, fsync="never",
                                   segment_bytes=SMALL_SEGMENT)

    def close(self) -> None:
        self.store.close()
