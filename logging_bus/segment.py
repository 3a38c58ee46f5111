"""One segment file: its in-memory index, reading its blocks, and scanning it on open.

Segments are named by the seq they start at (``00000000000000000001.seg``) and are never
renamed (moby#19440): a reader holds a segment by its file descriptor, so rotation and
retention never pull a file out from under it.

The index is sparse on purpose: one entry (offset, first seq, time) for the first block that
starts in each 64 KiB of file, whatever the block sizes.  A lookup is two bisects and a scan
of at most ~64 KiB of headers, and the index stays ~24 bytes per 64 KiB (400 kB per GB) even
for a store of one-line blocks.  When a segment is sealed its index is saved beside it
(``.idx``), so opening a big store reads the sidecars and scans only the last segment.

Per source, the index also lists the 64 KiB ranges (entry numbers of the sparse index) in
which that source has lines: 4 bytes per range it writes in.  So a reader of one quiet
container beside a chatty one jumps from one of its ranges to the next, and ``tail`` walks
its ranges backwards, at a cost that does not depend on what the others wrote.

Sync, no trio: the store calls this from whichever thread owns it.
"""

from __future__ import annotations

import os
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from pathlib import Path

import msgspec

from logging_bus.framing import (
    FLAG_CUT,
    FLAG_FINAL,
    FLAG_MARK,
    HEADER_SIZE,
    KIND_LINES,
    KIND_SOURCE,
    MARK,
    SEGMENT_MAGIC,
    Header,
    decode_header,
    decode_source,
    strip_mark,
)

FILE_HEADER = len(SEGMENT_MAGIC)
INDEX_STRIDE = 64 << 10
_WINDOW = 256 << 10  # one pread serves every small block in it
SUFFIX = ".seg"
SIDECAR = ".idx"


def segment_name(base_seq: int) -> str:
    return f"{base_seq:020d}{SUFFIX}"


class Segment:
    """What the store knows about one segment without reading it again."""

    __slots__ = ("_mark", "base_seq", "first_seq", "first_time", "has_lines", "last_time",
                 "marks", "next_seq", "offsets", "path", "ranges", "sealed", "seqs", "size",
                 "sources", "tails", "times")

    def __init__(self, path: Path, base_seq: int) -> None:
        self.path = path
        self.base_seq = base_seq  # from the name: the store's next seq when it was created
        self.first_seq = base_seq
        self.next_seq = base_seq
        self.first_time = 0.0
        self.last_time = 0.0
        self.has_lines = False
        self.size = FILE_HEADER  # committed end: readers never read past it
        self.sealed = False
        self.sources: dict[int, tuple[str, str]] = {}  # declared in this segment
        # source id -> its last record here is a 16 KiB piece whose line goes on
        self.tails: dict[int, bool] = {}
        self.marks: dict[int, tuple[int, int]] = {}  # source id -> its last position mark
        self.offsets = array("q")
        self.seqs = array("q")
        self.times = array("d")
        # source id -> the sparse index entries (ascending) whose range holds its lines
        self.ranges: dict[int, array[int]] = {}
        self._mark = 0

    def add(self, off: int, hdr: Header, open_piece: bool = False,
            mark: tuple[int, int] | None = None) -> None:
        """Account for the block written or found at ``off``."""
        if off >= self._mark:
            self.offsets.append(off)
            self.seqs.append(hdr.first_seq)
            self.times.append(hdr.time)
            self._mark = off + INDEX_STRIDE
        if hdr.kind == KIND_LINES and hdr.nlines:
            if not self.has_lines:
                self.has_lines = True
                self.first_seq = hdr.first_seq
                self.first_time = hdr.time
            self.next_seq = hdr.end_seq
            self.last_time = hdr.time
            self.tails[hdr.source_id] = open_piece
            if mark is not None:
                self.marks[hdr.source_id] = mark
            ranges = self.ranges.get(hdr.source_id)
            if ranges is None:
                ranges = self.ranges[hdr.source_id] = array("i")
            entry = len(self.offsets) - 1
            if not ranges or ranges[-1] != entry:
                ranges.append(entry)
        self.size = off + HEADER_SIZE + hdr.length

    def entry_of(self, off: int) -> int:
        """The sparse index entry whose range holds the block at ``off`` (-1: none yet)."""
        return bisect_right(self.offsets, off) - 1

    def next_range(self, entry: int, allowed: Callable[[int], bool]) -> int | None:
        """The first entry >= ``entry`` whose range holds lines of an ``allowed`` source."""
        best: int | None = None
        for source_id, ranges in list(self.ranges.items()):  # a writer may add one
            if allowed(source_id):
                k = bisect_left(ranges, entry)
                if k < len(ranges) and (best is None or ranges[k] < best):
                    best = ranges[k]
        return best

    def ranges_of(self, allowed: Callable[[int], bool] | None) -> list[int]:
        """Every entry whose range holds lines of an ``allowed`` source, ascending."""
        if allowed is None:
            return list(range(len(self.offsets)))
        chosen = [r for k, r in list(self.ranges.items()) if allowed(k)]
        if len(chosen) == 1:
            return list(chosen[0])
        return sorted(set().union(*chosen))

    # -- sidecar ---------------------------------------------------------------------------

    def save_index(self) -> None:
        """Write the sidecar atomically; a missing or stale one only costs a rescan."""
        side = _Sidecar(
            size=self.size, base_seq=self.base_seq, first_seq=self.first_seq,
            next_seq=self.next_seq, first_time=self.first_time, last_time=self.last_time,
            has_lines=self.has_lines,
            sources=[(k, c, s) for k, (c, s) in self.sources.items()],
            open_tails=[k for k, v in self.tails.items() if v],
            closed_tails=[k for k, v in self.tails.items() if not v],
            marks=[(k, ino, pos) for k, (ino, pos) in self.marks.items()],
            offsets=self.offsets.tobytes(), seqs=self.seqs.tobytes(),
            times=self.times.tobytes(),
            ranges=[(k, v.tobytes()) for k, v in self.ranges.items()])
        tmp = self.path.with_suffix(".idx.tmp")
        tmp.write_bytes(msgspec.msgpack.encode(side))
        tmp.replace(self.path.with_suffix(SIDECAR))

    @classmethod
    def load_index(cls, path: Path, base_seq: int, size: int) -> Segment | None:
        """The segment from its sidecar, or None if there is none or it does not match."""
        try:
            side = msgspec.msgpack.decode(path.with_suffix(SIDECAR).read_bytes(),
                                          type=_Sidecar)
        except (OSError, msgspec.DecodeError):
            return None
        if side.size != size or side.base_seq != base_seq or side.ranges is None:
            return None  # stale, or saved before per-source ranges existed: rescan
        seg = cls(path, base_seq)
        seg.size, seg.first_seq, seg.next_seq = side.size, side.first_seq, side.next_seq
        seg.first_time, seg.last_time = side.first_time, side.last_time
        seg.has_lines = side.has_lines
        seg.sources = {k: (c, s) for k, c, s in side.sources}
        seg.tails = {k: True for k in side.open_tails} | {k: False for k in side.closed_tails}
        seg.marks = {k: (ino, pos) for k, ino, pos in side.marks}
        seg.offsets.frombytes(side.offsets)
        seg.seqs.frombytes(side.seqs)
        seg.times.frombytes(side.times)
        for k, raw in side.ranges:
            seg.ranges[k] = array("i")
            seg.ranges[k].frombytes(raw)
        seg._mark = (seg.offsets[-1] + INDEX_STRIDE) if seg.offsets else 0
        return seg


class _Sidecar(msgspec.Struct, frozen=True, kw_only=True):
    size: int
    base_seq: int
    first_seq: int
    next_seq: int
    first_time: float
    last_time: float
    has_lines: bool
    sources: list[tuple[int, str, str]]
    open_tails: list[int]
    closed_tails: list[int]
    marks: list[tuple[int, int, int]]
    offsets: bytes
    seqs: bytes
    times: bytes
    ranges: list[tuple[int, bytes]] | None = None  # None: an older sidecar


class BlockFile:
    """A segment opened for reading, through a read-ahead window."""

    __slots__ = ("_at", "_buf", "fd", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._buf = b""
        self._at = 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _view(self, off: int, n: int, end: int) -> memoryview:
        """Up to ``n`` bytes at ``off`` (fewer at ``end``), reading a new window if needed."""
        rel = off - self._at
        if rel < 0 or rel + n > len(self._buf):
            want = max(min(n, end - off), min(_WINDOW, end - off))
            self._buf = os.pread(self.fd, max(want, 0), off)
            self._at, rel = off, 0
        return memoryview(self._buf)[rel:rel + n]

    def header(self, off: int, end: int, min_seq: int = 0) -> Header | None:
        """The valid header at ``off`` whose block ends by ``end``, else None."""
        hdr = decode_header(self._view(off, HEADER_SIZE, end))
        if hdr is None or off + HEADER_SIZE + hdr.length > end or hdr.first_seq < min_seq:
            return None
        return hdr

    def payload(self, off: int, hdr: Header) -> bytes:
        start = off + HEADER_SIZE
        return bytes(self._view(start, hdr.length, start + hdr.length))

    def checked_payload(self, off: int, hdr: Header) -> bytes | None:
        payload = self.payload(off, hdr)
        return payload if zlib.crc32(payload) == hdr.pcrc else None

    def resync(self, off: int, end: int, min_seq: int, verify: bool) -> int | None:
        """The next offset after damage at ``off`` where a good block starts, if any.

        A candidate must have a valid header, fit in the file, not go back in seq (which
        rules out a copy of a block inside some line's bytes) and, if ``verify``, a good
        payload.
        """
        pos = off + 1
        while pos < end:
            view = self._view(pos, _WINDOW, end)
            hit = bytes(view).find(b"SLB\x01")
            if hit < 0:
                pos += max(len(view) - 3, 1)
                continue
            cand = pos + hit
            hdr = self.header(cand, end, min_seq)
            if hdr is not None and (not verify or self.checked_payload(cand, hdr) is not None):
                return cand
            pos = cand + 1
        return None


def scan(path: Path, base_seq: int, *, verify: bool) -> tuple[Segment, list[str], int | None]:
    """Rebuild a segment's index by walking its blocks.

    Returns the segment, notices about damaged ranges skipped, and the offset where a torn
    tail starts (nothing good follows it), which the caller trims from the active segment.
    ``verify`` checks every payload's crc (the active segment, where torn writes live);
    otherwise only headers are read and bad payloads are found and skipped when read.
    """
    seg = Segment(path, base_seq)
    notices: list[str] = []
    bf = BlockFile(path)
    try:
        end = os.fstat(bf.fd).st_size
        if end < FILE_HEADER or bytes(bf._view(0, FILE_HEADER, end)) != SEGMENT_MAGIC:
            return seg, notices, 0
        off = FILE_HEADER
        while off < end:
            hdr = bf.header(off, end, seg.next_seq)
            payload = None
            if hdr is not None and (verify or hdr.kind == KIND_SOURCE or hdr.flags & FLAG_CUT):
                payload = bf.checked_payload(off, hdr)
                if payload is None:
                    hdr = None
            if hdr is None:
                nxt = bf.resync(off, end, seg.next_seq, verify)
                if nxt is None:
                    return seg, notices, off
                lost = _lost(seg.next_seq, bf.header(nxt, end))
                notices.append(f"{path}: bytes {off}-{nxt - 1} are damaged{lost}; skipped")
                off = nxt
                continue
            if hdr.kind == KIND_SOURCE:
                assert payload is not None
                seg.sources[hdr.source_id] = decode_source(payload)
            mark = None
            if payload is not None:
                payload, mark = strip_mark(payload, hdr.flags)
            elif hdr.flags & FLAG_MARK:
                end_of_block = off + HEADER_SIZE + hdr.length
                trailer = bytes(bf._view(end_of_block - MARK.size, MARK.size, end))
                mark = MARK.unpack(trailer) if len(trailer) == MARK.size else None
            open_piece = payload is not None and \
                hdr.flags & (FLAG_CUT | FLAG_FINAL) == FLAG_CUT and payload[-1:] != b"\n"
            seg.add(off, hdr, open_piece, mark)
            off += HEADER_SIZE + hdr.length
        return seg, notices, None
    finally:
        bf.close()


def _lost(next_seq: int, hdr: Header | None) -> str:
    if hdr is None or hdr.first_seq <= next_seq:
        return ""
    return f" (lines {next_seq}-{hdr.first_seq - 1} lost)"
