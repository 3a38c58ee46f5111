"""The on-disk block: how one pipe read becomes one checksummed, self-delimiting block.

A segment file is a 16-byte file header followed by blocks.  A block is

    header (44 bytes, little-endian)       payload (``length`` bytes)
    magic "SLB\\x01" | hcrc | length | pcrc   the bytes as written: whole lines with their
    first_seq | time | nlines | source_id   newlines, and 16 KiB pieces of longer lines
    kind | flags | reserved

``hcrc`` covers the rest of the header and ``pcrc`` the payload, so a reader can both trust a
block and, after damage, find the next good one by looking for a magic with a valid ``hcrc``.

Why no line-offset table: the payload is self-delimiting.  A record ends after a newline, or
after 16 KiB without one (moby's ``copier.go`` rule), so the writer only needs the *number* of
lines (``bytes.count``, C speed) and the reader recovers the boundaries with ``bytes.split``.
Measured on 1,000,000 lines of 100 B in 64 KiB reads: building a uint32 table costs 0.11 s
with ``re.finditer`` (0.20 s with a ``find`` loop), more than count + crc32 + writev together
(0.09 s); it would also add 4 % to the file.

Flags: ``FLAG_CUT`` marks a block holding at least one 16 KiB piece (split with the slow
rule); ``FLAG_FINAL`` marks the block a source's ``flush`` writes at EOF: exactly one record,
the unterminated bytes (possibly empty, which ends a line whose pieces were all 16 KiB).
``FLAG_MARK`` marks a block whose payload ends with a 16-byte ``MARK`` trailer, not part
of the lines: the source's own position after this block (a tailed file's inode and the
offset its stored bytes end at).  Lines and position are then one atomic write, so a tailer
that resumes from ``LogStore.position`` after kill -9 neither loses nor repeats a line.
A ``KIND_SOURCE`` block declares ``source_id`` -> (container, source) for its segment and
holds no lines.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

import msgspec

MAGIC = b"SLB\x01"
SEGMENT_MAGIC = b"SUPERVISE-LOG\x00\x01\n"  # 16 bytes: "this is a segment, version 1"
_TAIL = struct.Struct("<IIQdIIBBH")  # everything after magic + hcrc
HEADER_SIZE = 8 + _TAIL.size  # 44
MAX_LINE = 16 * 1024  # moby's bufSize: a longer line is stored as pieces
_WINDOW = MAX_LINE // 2

KIND_LINES = 0
KIND_SOURCE = 1
FLAG_FINAL = 1
FLAG_CUT = 2
FLAG_MARK = 4
MARK = struct.Struct("<QQ")  # (inode, offset): where a tailed file's stored bytes end


class Header(NamedTuple):
    """A block header that passed its own checksum (the payload is not checked yet)."""

    length: int
    pcrc: int
    first_seq: int
    time: float
    nlines: int
    source_id: int
    kind: int
    flags: int

    @property
    def end_seq(self) -> int:
        """The seq after the block's last record."""
        return self.first_seq + self.nlines


def encode_header(hdr: Header) -> bytes:
    tail = _TAIL.pack(*hdr, 0)
    return MAGIC + zlib.crc32(tail).to_bytes(4, "little") + tail


def decode_header(buf: bytes | memoryview, off: int = 0) -> Header | None:
    """The header at ``buf[off:]``, or None if it is cut short or fails its checksum."""
    if len(buf) - off < HEADER_SIZE or buf[off:off + 4] != MAGIC:
        return None
    tail = buf[off + 8:off + HEADER_SIZE]
    if zlib.crc32(tail) != int.from_bytes(buf[off + 4:off + 8], "little"):
        return None
    length, pcrc, first_seq, time, count, source_id, kind, flags, _ = _TAIL.unpack(tail)
    return Header(length, pcrc, first_seq, time, count, source_id, kind, flags)


class Framed(NamedTuple):
    """What one append stores: ``parts`` concatenated are the payload."""

    parts: tuple[bytes | memoryview, ...]
    length: int
    nlines: int
    flags: int


def frame(held: bytes, data: bytes) -> tuple[Framed | None, bytes]:
    """Split ``held + data`` into what is stored now and what is held for the next read.

    Stored: every line completed by ``data`` and every 16 KiB piece of an unfinished line;
    held: the unfinished rest (< 16 KiB).  No Python object per line: one ``rfind``, one
    ``count``, eight ``find`` probes per 64 KiB, and the slow exact count only when a probe
    finds 8 KiB without a newline.
    """
    nl = data.rfind(b"\n")
    if nl < 0:
        buf = held + data if held else data
        pieces = len(buf) // MAX_LINE
        if not pieces:
            return None, bytes(buf)
        cut = pieces * MAX_LINE
        view = memoryview(buf)
        return Framed((view[:cut],), cut, pieces, FLAG_CUT), bytes(view[cut:])
    end = nl + 1
    first = data.find(b"\n")
    flags = 0
    if len(held) + first + 1 > MAX_LINE or _maybe_long(data, first + 1, end):
        count = count_records(held + data[:end])
        flags = FLAG_CUT if count != data.count(b"\n", 0, end) else 0
    else:
        count = data.count(b"\n", 0, end)
    pieces = (len(data) - end) // MAX_LINE
    if pieces:
        count += pieces
        flags = FLAG_CUT
    cut = end + pieces * MAX_LINE
    view = memoryview(data)
    parts: tuple[bytes | memoryview, ...] = (held, view[:cut]) if held else (view[:cut],)
    return Framed(parts, len(held) + cut, count, flags), bytes(view[cut:])


def _maybe_long(data: bytes, start: int, end: int) -> bool:
    """True if ``data[start:end]`` *may* hold a line longer than 16 KiB.

    Such a line has 16 KiB without a newline, which always contains a whole 8 KiB window
    aligned at ``start``: probing the windows is exact in one direction and cheap.
    """
    return any(data.find(b"\n", k, k + _WINDOW) < 0
               for k in range(start, end - _WINDOW + 1, _WINDOW))


def count_records(buf: bytes) -> int:
    """The number of records in a payload that ends on a record boundary (the exact rule)."""
    pos, count, size = 0, 0, len(buf)
    while pos < size:
        nl = buf.find(b"\n", pos, pos + MAX_LINE)
        pos = nl + 1 if nl >= 0 else pos + MAX_LINE
        count += 1
    return count


def strip_mark(payload: bytes, flags: int) -> tuple[bytes, tuple[int, int] | None]:
    """The lines' bytes of a payload, and its position mark if it has one."""
    if not flags & FLAG_MARK or len(payload) < MARK.size:
        return payload, None
    inode, offset = MARK.unpack_from(payload, len(payload) - MARK.size)
    return payload[:-MARK.size], (inode, offset)


def split_records(payload: bytes, flags: int) -> tuple[list[bytes], list[bool] | None]:
    """The lines of a payload without their newlines, and which ones had none.

    The second item is None when every record ended with a newline (the common case).
    """
    if flags & FLAG_FINAL:
        return [payload], [True]
    if not flags & FLAG_CUT:
        lines = payload.split(b"\n")
        lines.pop()  # the payload ends with a newline
        return lines, None
    lines, unterminated = [], []
    pos, size = 0, len(payload)
    while pos < size:
        nl = payload.find(b"\n", pos, pos + MAX_LINE)
        if nl >= 0:
            lines.append(payload[pos:nl])
            unterminated.append(False)
            pos = nl + 1
        else:
            lines.append(payload[pos:pos + MAX_LINE])
            unterminated.append(True)
            pos += MAX_LINE
    return lines, unterminated


def record_offset(payload: bytes, flags: int, index: int) -> int:
    """The byte offset in ``payload`` where record number ``index`` starts."""
    pos = 0
    for _ in range(index):
        nl = payload.find(b"\n", pos, pos + MAX_LINE) if flags & FLAG_CUT else \
            payload.find(b"\n", pos)
        pos = nl + 1 if nl >= 0 else pos + MAX_LINE
    return pos


def encode_source(container: str, source: str) -> bytes:
    return msgspec.json.encode([container, source])


def decode_source(payload: bytes) -> tuple[str, str]:
    container, source = msgspec.json.decode(payload, type=tuple[str, str])
    return container, source
