"""The backends the conformance suite runs against, behind one small interface.

For now the store itself; each output (JSON-lines file, syslog, Loki, Elasticsearch) will add
a backend here that feeds the store and reads back what the output delivered, so every one
of them is held to the same tail, since/until, follow, rotation and restart behaviour
(moby's ``loggertest`` idea).
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
