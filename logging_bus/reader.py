"""Reading the store forward from a cursor: records (lines) or raw chunks (bytes as written).

A ``Reader`` is a position in the store that can be polled again after more is appended:
``follow`` and the forwarders keep one alive and call ``records()`` each time the store says
something new arrived.  It holds its current segment open by file descriptor, so rotation
and retention never pull a file out from under it, and it moves to the next segment by seq,
not by name.

Joining: a line longer than 16 KiB is stored as pieces (``framing``).  The reader keeps the
pieces of each source until the piece that ends the line, and emits the joined line there,
with the seq of that last piece, so the records a reader emits are always in seq order and
``seq + 1`` is always a correct place to resume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from logging_bus.framing import (
    FLAG_FINAL,
    HEADER_SIZE,
    KIND_LINES,
    Header,
    record_offset,
    split_records,
    strip_mark,
)
from logging_bus.record import Record
from logging_bus.segment import FILE_HEADER, INDEX_STRIDE, BlockFile, Segment

if TYPE_CHECKING:
    from types import TracebackType

    from logging_bus.store import LogStore



MAX_JOIN_PIECES = 64  # 16 KiB pieces joined into one record at most: 1 MiB

class Chunk(NamedTuple):
    """Consecutive records of one block: ``data`` is their bytes exactly as written."""

    first_seq: int
    nlines: int
    time: float
    container: str
    source: str
    data: bytes


class Reader:
    """A resumable read position.  Use as a context manager (it holds a file open)."""

    def __init__(self, store: LogStore, start_seq: int, *, containers: set[str] | None,
                 sources: set[str] | None, join: bool) -> None:
        self._store = store
        self._allowed = store.source_filter(containers, sources)
        self._join = join
        self._seq = max(start_seq, 1)  # the next seq to look at
        self._pending: dict[int, tuple[int, list[bytes]]] = {}  # source id -> (seq, pieces)
        index, off = store.locate(self._seq)
        self._seg: Segment = store.segments[index]
        self._bf = BlockFile(self._seg.path)
        self._off = off
        self._look_at = 0  # with a filter: the offset at which to look for a jump again

    @property
    def cursor(self) -> int:
        """Where to resume later without losing anything: the next seq not yet emitted,
        or the first piece of a line still being joined (at-least-once)."""
        return min([self._seq, *(seq for seq, _ in self._pending.values())])

    def close(self) -> None:
        self._bf.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _next_block(self, until: int | None) -> tuple[int, Header, bytes] | None:
        """The next block with records to emit, without moving past it; None at the end."""
        store, allowed = self._store, self._allowed
        while True:
            seg, off = self._seg, self._off
            end = seg.size
            if allowed is not None and off >= self._look_at and off < end:
                self._jump(seg, off, allowed)
                continue
            if off >= end:
                if not seg.sealed or not self._next_segment():
                    return None
                continue
            hdr = self._bf.header(off, end)
            if hdr is None:
                nxt = self._bf.resync(off, end, 0, False)
                self._off = end if nxt is None else nxt
                store.notice(seg.path, off, f"{seg.path}: bytes {off}-{self._off - 1} are "
                                            f"damaged; skipped")
                continue
            nxt_off = off + HEADER_SIZE + hdr.length
            if hdr.kind != KIND_LINES:
                self._off = nxt_off
                continue
            if until is not None and hdr.first_seq >= until:
                return None
            if hdr.end_seq <= self._seq or (allowed is not None and not allowed(hdr.source_id)):
                self._seq = max(self._seq, hdr.end_seq)
                self._off = nxt_off
                continue
            payload = self._bf.checked_payload(off, hdr)
            if payload is None:
                store.notice(seg.path, off, f"{seg.path}: block at offset {off} fails its "
                                            f"checksum (lines {hdr.first_seq}-"
                                            f"{hdr.end_seq - 1} lost); skipped")
                self._seq = max(self._seq, hdr.end_seq)
                self._off = nxt_off
                continue
            return nxt_off, hdr, strip_mark(payload, hdr.flags)[0]

    def _jump(self, seg: Segment, off: int, allowed: Callable[[int], bool]) -> None:
        """Skip the index ranges in which no source we read wrote a line.

        Every block between here and the next range of ours belongs to others, so the
        cursor moves on to that range's first seq (or past the segment's last line).
        """
        entry = seg.entry_of(off)
        if entry < 0:  # a block the index does not hold yet: read it
            self._look_at = off + INDEX_STRIDE
            return
        nxt = seg.next_range(entry, allowed)
        if nxt is None and seg.sealed:  # nothing of ours in the rest of this segment
            self._seq = max(self._seq, seg.next_seq)
            self._off = seg.size
            self._look_at = seg.size
            return
        if nxt is None:
            # The active segment: its size and next seq may move (the writer may be another
            # thread), so jump only to its last range, where the index is consistent, and
            # walk that range's headers.
            nxt = len(seg.seqs) - 1  # seqs is appended after offsets
        if nxt > entry:
            self._seq = max(self._seq, seg.seqs[nxt])
            self._off = seg.offsets[nxt]
            self._look_at = self._off + INDEX_STRIDE
        else:  # ours is in this very range: read it block by block up to the next range
            self._look_at = seg.offsets[entry] + INDEX_STRIDE

    def _next_segment(self) -> bool:
        base = self._seg.base_seq
        # A copy: the writer (maybe another thread) may drop the oldest segment meanwhile.
        nxt = next((s for s in list(self._store.segments) if s.base_seq > base), None)
        if nxt is None:
            return False
        self._bf.close()
        self._seg, self._bf, self._off = nxt, BlockFile(nxt.path), FILE_HEADER
        self._look_at = 0
        return True

    def records(self, *, until_seq: int | None = None, limit: int | None = None
                ) -> Iterator[Record]:
        """Records from the cursor to ``until_seq`` (excluded) or to what is stored now.

        Stopping early (``limit``, or the consumer breaking off) leaves the reader exactly
        after the last record yielded; a later call goes on from there.
        """
        left = -1 if limit is None else limit
        names, join, pending = self._store.names, self._join, self._pending
        while left:
            got = self._next_block(until_seq)
            if got is None:
                return
            nxt_off, hdr, payload = got
            container, source = names.get(hdr.source_id, ("", ""))
            first, t = hdr.first_seq, hdr.time
            lines, unterminated = split_records(payload, hdr.flags)
            count = min(hdr.nlines, len(lines))
            stop = count if until_seq is None else min(count, until_seq - first)
            k = max(self._seq - first, 0)
            if unterminated is None and hdr.source_id not in pending:
                while k < stop and left:  # the common case: whole lines, nothing to join
                    self._seq = first + k + 1
                    left -= 1
                    yield Record(seq=first + k, time=t, container=container, source=source,
                                 line=lines[k])
                    k += 1
            else:
                while k < stop and left:
                    seq, line = first + k, lines[k]
                    partial = unterminated is not None and unterminated[k]
                    self._seq = seq + 1
                    k += 1
                    held = pending.get(hdr.source_id) if join else None
                    if join and partial and not hdr.flags & FLAG_FINAL:  # a piece: keep it
                        if held is None:
                            pending[hdr.source_id] = held = (seq, [line])
                        else:
                            held[1].append(line)
                        if len(held[1]) < MAX_JOIN_PIECES:
                            continue
                        # A line with no end in sight (a progress bar, a blob): out in 1 MiB
                        # records marked partial, so memory stays bounded.
                        del pending[hdr.source_id]
                        left -= 1
                        yield Record(seq=seq, time=t, container=container, source=source,
                                     line=b"".join(held[1]), partial=True)
                        continue
                    if held is not None:
                        del pending[hdr.source_id]
                        line = b"".join([*held[1], line])
                    left -= 1
                    yield Record(seq=seq, time=t, container=container, source=source,
                                 line=line, partial=partial)
            if k < count:
                return  # until_seq or limit reached inside this block
            self._off = nxt_off
            self._seq = max(self._seq, hdr.end_seq)

    def chunks(self, *, until_seq: int | None = None) -> Iterator[Chunk]:
        """The bytes as written, one block (or the part of it in range) at a time.

        No record objects: this is what plain ``logs`` output and ``?raw=1`` stream.
        """
        names = self._store.names
        while True:
            got = self._next_block(until_seq)
            if got is None:
                return
            nxt_off, hdr, payload = got
            container, source = names.get(hdr.source_id, ("", ""))
            first = hdr.first_seq
            k = max(self._seq - first, 0)
            stop = hdr.nlines if until_seq is None else min(hdr.nlines, until_seq - first)
            start_b = record_offset(payload, hdr.flags, k) if k else 0
            end_b = len(payload) if stop == hdr.nlines else \
                record_offset(payload, hdr.flags, stop)
            data = payload if start_b == 0 and end_b == len(payload) else payload[start_b:end_b]
            self._seq = first + stop
            if stop == hdr.nlines:
                self._off = nxt_off
            yield Chunk(first + k, stop - k, hdr.time, container, source, data)
            if stop < hdr.nlines:
                return
