"""The shape of one log line, shared by the store, the API and its clients.

A record is a line (conventions.md, "Logs").  ``line`` holds the bytes as the container wrote
them, without the newline that ended them.  ``partial`` says the bytes were *not* ended by a
newline: either a piece of a line longer than 16 KiB (seen only when a reader asks for pieces
unjoined; the next record of the same source continues it) or the last bytes a source wrote
before it closed.  So the bytes as written are ``line + (b"" if partial else b"\\n")``.

``seq`` is the cursor: a reader that has handled a record resumes at ``seq + 1``.  A line the
store kept as several pieces carries the seq of its last piece, so that rule holds for joined
lines too.
"""

from __future__ import annotations

import msgspec


class Record(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One line of one source of one container."""

    seq: int
    time: float  # seconds since the epoch, when the supervisor read the line
    container: str
    source: str  # "stdout", "stderr" or "file:/var/log/redis/redis-server.log"
    line: bytes
    partial: bool = False

    @property
    def raw(self) -> bytes:
        """The bytes as written, newline included where there was one."""
        return self.line if self.partial else self.line + b"\n"


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    """A record on the wire (`logs --json`, the API's NDJSON): the line as text, invalid
    UTF-8 replaced with U+FFFD (conventions.md); `?raw=1` streams the bytes instead."""

    seq: int
    time: float
    container: str
    source: str
    line: str
    partial: bool = False

    @classmethod
    def of(cls, record: Record) -> LogLine:
        return cls(seq=record.seq, time=record.time, container=record.container,
                   source=record.source, line=record.line.decode(errors="replace"),
                   partial=record.partial)
