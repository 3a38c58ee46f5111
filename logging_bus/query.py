"""A `logs` question turned into cursors over the store: history, then (with follow) live.

`--tail N`, `--since T` and `--until T` become seqs through the store's index, so they cost
the same on a small log and a big one.  `--grep` and `--source file` are applied per record.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from dataclasses import dataclass

import trio

from logging_bus.errors import LogBusError
from logging_bus.follow import follow, stream_raw
from logging_bus.reader import Chunk
from logging_bus.record import Record
from logging_bus.store import LogStore

BATCH = 2048  # records between checkpoints, so a big history never starves other tasks


@dataclass(frozen=True)
class Query:
    containers: frozenset[str] | None = None  # None: the whole stack
    source: str | None = None  # "stdout", "stderr", "file" (any log file) or "file:/path"
    tail: int | None = None
    since: float | None = None
    until: float | None = None
    grep: str | None = None
    follow: bool = False

    def pattern(self) -> re.Pattern[bytes] | None:
        if self.grep is None:
            return None
        try:
            return re.compile(self.grep.encode())
        except re.error as e:
            raise LogBusError(f"grep: expected a regular expression, got {self.grep!r} ({e})"
                              ) from None

    def sources(self) -> set[str] | None:
        """Exact source names the store can filter on (not "file": a prefix)."""
        if self.source in ("stdout", "stderr") or (self.source or "").startswith("file:"):
            return {self.source}  # type: ignore[arg-type]
        return None

    def start(self, store: LogStore) -> int:
        containers = set(self.containers) if self.containers else None
        start = store.first_seq
        if self.since is not None:
            start = max(start, store.seq_at(self.since))
        if self.tail is not None:
            start = max(start, store.tail_cursor(self.tail, containers, self.sources()))
        return start

    def until_seq(self, store: LogStore) -> int | None:
        return None if self.until is None else store.seq_at(self.until)

    def keep(self, record: Record, pattern: re.Pattern[bytes] | None) -> bool:
        if self.source == "file" and not record.source.startswith("file:"):
            return False
        return pattern is None or pattern.search(record.line) is not None

    @property
    def plain(self) -> bool:
        """Nothing to filter per record: the raw block path may be used."""
        return self.grep is None and self.source != "file"


async def records(store: LogStore, query: Query) -> AsyncGenerator[Record, None]:
    """The records answering the query: history, then live ones if `follow`."""
    pattern = query.pattern()
    containers = set(query.containers) if query.containers else None
    start = query.start(store)
    if not query.follow:
        until = query.until_seq(store)
        for n, record in enumerate(store.read(start, containers=containers,
                                              sources=query.sources(), until_seq=until), 1):
            if query.keep(record, pattern):
                yield record
            if n % BATCH == 0:
                await trio.lowlevel.checkpoint()
        return
    async with aclosing(follow(store, start, containers=containers,
                               sources=query.sources())) as live:
        async for record in live:
            if query.until is not None and record.time > query.until:
                return
            if query.keep(record, pattern):
                yield record


async def raw_bytes(store: LogStore, query: Query, max_bytes: int = 1 << 20
                    ) -> AsyncGenerator[bytes, None]:
    """A plain query's bytes as written, in chunks of whole blocks (about ``max_bytes``):
    history, then live blocks with `follow`.  For ``query.plain`` queries only."""
    containers = set(query.containers) if query.containers else None
    async with aclosing(stream_raw(
            store, query.start(store), containers=containers, sources=query.sources(),
            until_seq=None if query.follow else query.until_seq(store),
            until_time=query.until if query.follow else None, live=query.follow,
            max_bytes=max_bytes)) as chunks:
        async for data in chunks:
            yield data


def raw_chunks(store: LogStore, query: Query) -> Iterator[Chunk]:
    """History as blocks of bytes as written (`logs NAME > file`): no per-line work."""
    containers = set(query.containers) if query.containers else None
    yield from store.read_raw(query.start(store), containers=containers,
                              sources=query.sources(), until_seq=query.until_seq(store))
