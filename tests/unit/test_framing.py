"""The block format and the write-side framing, against a model of moby's 16 KiB rule."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from logging_bus.framing import (
    FLAG_CUT,
    HEADER_SIZE,
    MAX_LINE,
    Header,
    count_records,
    decode_header,
    encode_header,
    frame,
    record_offset,
    split_records,
)


def model_records(stream: bytes) -> list[bytes]:
    """Records as the rule defines them: up to a newline, or 16 KiB without one."""
    out, pos = [], 0
    while pos < len(stream):
        nl = stream.find(b"\n", pos, pos + MAX_LINE)
        end = nl + 1 if nl >= 0 else pos + MAX_LINE
        if nl < 0 and end > len(stream):
            break  # an unfinished tail: held, not a record
        out.append(stream[pos:end])
        pos = end
    return out


def run_frames(chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    """Feed chunks through frame(); return the stored records and what is still held."""
    held, records = b"", []
    for chunk in chunks:
        framed, held = frame(held, chunk)
        if framed is None:
            continue
        payload = b"".join(bytes(p) for p in framed.parts)
        assert len(payload) == framed.length
        lines, unterminated = split_records(payload, framed.flags)
        assert len(lines) == framed.nlines == count_records(payload)
        assert (unterminated is not None) == bool(framed.flags & FLAG_CUT)
        ends = unterminated or [False] * len(lines)
        records += [line if cut else line + b"\n" for line, cut in zip(lines, ends, strict=True)]
        assert len(held) < MAX_LINE
    return records, held


def test_header_round_trip_and_damage() -> None:
    hdr = Header(10, 123, 7, 1.5, 3, 2, 0, FLAG_CUT)
    raw = encode_header(hdr)
    assert len(raw) == HEADER_SIZE and decode_header(raw) == hdr
    assert decode_header(raw[:-1]) is None
    broken = bytearray(raw)
    broken[20] ^= 1
    assert decode_header(bytes(broken)) is None


def test_common_case_is_one_block_without_cuts() -> None:
    framed, held = frame(b"ab", b"c\nde\nf")
    assert framed is not None and held == b"f"
    assert framed.nlines == 2 and framed.flags == 0
    assert b"".join(bytes(p) for p in framed.parts) == b"abc\nde\n"


def test_no_newline_is_held_until_16_kib() -> None:
    assert frame(b"", b"x" * (MAX_LINE - 1)) == (None, b"x" * (MAX_LINE - 1))
    framed, held = frame(b"x" * (MAX_LINE - 1), b"yz")
    assert framed is not None and framed.nlines == 1 and framed.flags == FLAG_CUT
    assert held == b"z"


def test_boundaries_at_exactly_16_kib() -> None:
    fits = b"a" * (MAX_LINE - 1) + b"\n"  # 16 KiB with its newline: one record
    over = b"b" * MAX_LINE + b"\n"  # one byte more: a piece and a lone newline
    records, held = run_frames([fits + over])
    assert records == [fits, b"b" * MAX_LINE, b"\n"] and held == b""


def test_record_offset_matches_split() -> None:
    payload = b"one\n" + b"x" * MAX_LINE + b"two\n"
    lines, _ = split_records(payload, FLAG_CUT)
    assert lines == [b"one", b"x" * MAX_LINE, b"two"]
    assert record_offset(payload, FLAG_CUT, 2) == 4 + MAX_LINE


@settings(max_examples=150, deadline=None)
@given(lengths=st.lists(st.sampled_from([0, 1, 5, 100, 8191, 8192, 16383, 16384, 16385, 40000]),
                        max_size=12),
       cuts=st.lists(st.integers(1, 70000), max_size=20), tail=st.integers(0, 20000))
def test_any_chunking_gives_the_model_records(lengths: list[int], cuts: list[int],
                                               tail: int) -> None:
    stream = b"".join(bytes([97 + i % 26]) * n + b"\n" for i, n in enumerate(lengths))
    stream += b"t" * tail
    chunks, pos = [], 0
    for c in cuts:
        chunks.append(stream[pos:pos + c])
        pos += c
    chunks.append(stream[pos:])
    records, held = run_frames(chunks)
    expected = model_records(stream)
    assert records == expected
    assert b"".join(records) + held == stream
