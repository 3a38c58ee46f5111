"""The log store: round trips, long lines, tail/since, rotation, retention, reopen, crashes."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from logging_bus.errors import StoreClosed, StoreError, StoreLocked
from logging_bus.framing import HEADER_SIZE, MAX_LINE, Header
from logging_bus.segment import SIDECAR, SUFFIX, BlockFile
from logging_bus.store import LogStore

SMALL = 64 << 10  # the smallest segment size: rotation every few dozen appends


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    s = LogStore.open(tmp_path / "logs", fsync="never")
    yield s
    s.close()


def numbered(prefix: str, start: int, stop: int) -> bytes:
    """Lines of 64 bytes, so a few hundred appends fill several 64 KiB segments."""
    return b"".join(b"%s %06d %s\n" % (prefix.encode(), i, b"." * (55 - len(prefix)))
                    for i in range(start, stop))


def lines_of(store: LogStore, **kw: object) -> list[bytes]:
    return [r.line for r in store.read(1, **kw)]  # type: ignore[arg-type]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*" + SUFFIX))


def crash(store: LogStore) -> None:
    """Like kill -9: nothing more reaches the files, the lock goes away."""
    store._release()
    store.closed = True


# -- round trips ---------------------------------------------------------------------------


def test_round_trip_two_sources(store: LogStore) -> None:
    assert store.append("web", "stdout", b"a\nb\n", now=10.0) == 2
    assert store.append("web", "stderr", b"oops\n", now=11.0) == 3
    records = list(store.read(1))
    assert [(r.seq, r.time, r.container, r.source, r.line, r.partial) for r in records] == [
        (1, 10.0, "web", "stdout", b"a", False), (2, 10.0, "web", "stdout", b"b", False),
        (3, 11.0, "web", "stderr", b"oops", False)]
    assert store.last_seq == 3 and store.first_seq == 1
    assert [r.line for r in store.read(2, until_seq=3)] == [b"b"]
    assert [r.line for r in store.read(1, sources={"stderr"})] == [b"oops"]
    assert [r.line for r in store.read(1, limit=2)] == [b"a", b"b"]
    assert b"".join(c.data for c in store.read_raw(1)) == b"a\nb\noops\n"
    assert b"".join(c.data for c in store.read_raw(2, until_seq=3)) == b"b\n"


def test_bytes_are_stored_as_written(store: LogStore) -> None:
    data = b"\xff\xfe not utf-8\r\n\x00nul\x1b[31mred\n"
    store.append("c", "stdout", data)
    assert b"".join(r.raw for r in store.read(1)) == data
    assert [r.line for r in store.read(1)] == [b"\xff\xfe not utf-8\r", b"\x00nul\x1b[31mred"]


def test_partial_tail_is_held_until_its_newline(store: LogStore) -> None:
    assert store.append("c", "stdout", b"hel") == 0
    assert store.append("c", "stdout", b"lo\nwor") == 1
    assert store.append("c", "stdout", b"ld\nbye") == 2
    assert store.flush("c", "stdout") == 3
    assert store.flush("c", "stdout") == 0
    assert [(r.line, r.partial) for r in store.read(1)] == [
        (b"hello", False), (b"world", False), (b"bye", True)]
    assert b"".join(r.raw for r in store.read(1)) == b"hello\nworld\nbye"


def test_long_lines_are_cut_at_16_kib_and_joined(store: LogStore) -> None:
    long = bytes(random.Random(1).choices(b"abcdef", k=40_000))
    data = b"short\n" + long + b"\nafter\n"
    for i in range(0, len(data), 1000):  # small reads: pieces are stored as they fill up
        store.append("c", "stdout", data[i:i + 1000])
    assert [r.line for r in store.read(1)] == [b"short", long, b"after"]
    pieces = list(store.read(1, join=False))
    assert [len(r.line) for r in pieces] == [5, MAX_LINE, MAX_LINE, 40_000 - 2 * MAX_LINE, 5]
    assert [r.partial for r in pieces] == [False, True, True, False, False]
    joined = next(r for r in store.read(1) if r.line == long)
    assert joined.seq == pieces[3].seq  # the seq of its last piece: seq + 1 resumes right
    assert [r.line for r in store.read(joined.seq + 1)] == [b"after"]
    assert b"".join(c.data for c in store.read_raw(1)) == data


def test_a_line_over_1_mib_is_joined_in_1_mib_records(store: LogStore) -> None:
    """A line with no end in sight (a progress bar with \\r, a blob) never makes a reader
    hold it whole: 64 pieces (1 MiB) at most per record, the first ones marked partial."""
    from logging_bus.reader import MAX_JOIN_PIECES

    huge = b"p" * (MAX_JOIN_PIECES * MAX_LINE * 2 + 1000)
    for i in range(0, len(huge), 65536):
        store.append("c", "stdout", huge[i:i + 65536])
    store.append("c", "stdout", b"\nafter\n")
    records = list(store.read(1))
    assert [len(r.line) for r in records] == [MAX_JOIN_PIECES * MAX_LINE] * 2 + [1000, 5]
    assert [r.partial for r in records] == [True, True, False, False]
    assert b"".join(r.line for r in records[:3]) == huge
    [first] = store.read(1, limit=1)
    assert first.line == huge[:MAX_JOIN_PIECES * MAX_LINE]


def test_long_line_without_newline_at_eof(store: LogStore) -> None:
    store.append("c", "stdout", b"x" * (2 * MAX_LINE))  # two pieces, nothing held
    assert store.flush("c", "stdout") == 3  # an empty last piece ends the line
    assert [(len(r.line), r.partial) for r in store.read(1)] == [(2 * MAX_LINE, True)]
    store.append("c", "stdout", b"next\n")
    assert [r.line for r in store.read(4)] == [b"next"]


def test_interleaved_long_lines_of_two_sources(store: LogStore) -> None:
    a, b = b"A" * 20_000, b"B" * 20_000
    store.append("c", "stdout", a[:17_000])
    store.append("c", "stderr", b + b"\n")
    store.append("c", "stdout", a[17_000:] + b"\n")
    assert sorted(lines_of(store)) == [a, b]
    assert [r.source for r in store.read(1)] == ["stderr", "stdout"]


def test_ten_sources_interleaved_every_line_once(store: LogStore) -> None:
    rng = random.Random(4)
    streams = {f"c{i}": numbered(f"c{i}", 0, 3000) for i in range(10)}
    pos = dict.fromkeys(streams, 0)
    while any(pos[c] < len(s) for c, s in streams.items()):
        c = rng.choice([c for c in streams if pos[c] < len(streams[c])])
        n = rng.choice([1, 7, 100, 4096, 65536])
        store.append(c, "stdout", streams[c][pos[c]:pos[c] + n])
        pos[c] += n
    for c in streams:
        assert store.flush(c, "stdout") == 0  # every stream ended with a newline
    seen: dict[str, list[bytes]] = {c: [] for c in streams}
    seqs = []
    for r in store.read(1):
        seen[r.container].append(r.line)
        seqs.append(r.seq)
    assert seqs == list(range(1, 30_001))
    for c, s in streams.items():
        assert seen[c] == s.split(b"\n")[:-1]
    assert len(list(store.read(1, containers={"c3", "c7"}))) == 6000


# -- cursors: tail and since ----------------------------------------------------------------


def test_tail_cursor(store: LogStore) -> None:
    for i in range(100):
        store.append("web" if i % 2 else "db", "stdout", numbered("x", i * 10, i * 10 + 10))
    assert store.tail_cursor(0) == store.last_seq + 1
    assert store.tail_cursor(3) == 998
    assert [r.seq for r in store.read(store.tail_cursor(15))] == list(range(986, 1001))
    web = store.tail_cursor(15, containers={"web"})
    assert len([r for r in store.read(web, containers={"web"})]) == 15
    assert store.tail_cursor(10_000) == 1
    assert store.tail_cursor(5, containers={"nobody"}) == 1


def test_tail_cursor_counts_a_long_line_once(store: LogStore) -> None:
    store.append("c", "stdout", b"a\n" + b"L" * 50_000 + b"\nb\n")
    cursor = store.tail_cursor(2)
    assert [len(r.line) for r in store.read(cursor)] == [50_000, 1]


def test_seq_at_time(store: LogStore) -> None:
    for i in range(50):
        store.append("c", "stdout", numbered("t", i * 3, i * 3 + 3), now=1000.0 + i)
    assert store.seq_at(0) == 1
    assert store.seq_at(1010.0) == 31
    assert store.seq_at(1010.5) == 34
    assert store.seq_at(5000.0) == store.last_seq + 1


def test_seeks_inside_a_big_segment_use_the_index(store: LogStore) -> None:
    rng = random.Random(3)
    for i in range(2000):  # ~2.5 MB in one segment: ~40 index entries
        store.append("c", "stdout", numbered("s", i * 20, i * 20 + 20), now=float(i))
    assert len(store.segments) == 1 and len(store.segments[0].offsets) > 30
    for seq in rng.sample(range(1, 40_001), 50):
        assert next(iter(store.read(seq))).seq == seq
        assert store.seq_at(float((seq - 1) // 20)) == (seq - 1) // 20 * 20 + 1
    assert store.tail_cursor(1234) == 40_000 - 1233


class CountingReads:
    """Counts the header reads of every BlockFile, to show what a query walks."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.headers = 0
        real = BlockFile.header

        def header(bf: BlockFile, off: int, end: int, min_seq: int = 0) -> Header | None:
            self.headers += 1
            return real(bf, off, end, min_seq)
        monkeypatch.setattr(BlockFile, "header", header)


def quiet_beside_chatty(d: Path, chatty_blocks: int) -> LogStore:
    """`quiet` writes 30 lines, then `chatty` writes many 64 KiB blocks after them."""
    s = LogStore.open(d, fsync="never", segment_bytes=1 << 20)
    for i in range(3):
        s.append("quiet", "stdout", numbered("q", i * 10, i * 10 + 10), now=float(i))
    block = numbered("c", 0, 1000)[:65536]
    block = block[:block.rfind(b"\n") + 1]
    for i in range(chatty_blocks):
        s.append("chatty", "stdout", block, now=10.0 + i)
    s.append("quiet", "stderr", b"late error\n", now=10.0 + chatty_blocks)
    return s


@pytest.mark.parametrize("reopen", [False, True])
def test_a_quiet_container_is_read_without_walking_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reopen: bool) -> None:
    """Point 7 (c): tail and reads of one container cost the same whatever others wrote
    after it: the per-source ranges let the reader jump (also from saved sidecars)."""
    d = tmp_path / "logs"
    s = quiet_beside_chatty(d, 200)  # 12.5 MB in 13 segments, 200 blocks of others
    if reopen:
        s.close()
        s = LogStore.open(d, fsync="never")
    with s:
        assert len(s.segments) > 10
        counter = CountingReads(monkeypatch)
        cursor = s.tail_cursor(3, containers={"quiet"})
        got = list(s.read(cursor, containers={"quiet"}))
        assert [r.line for r in got] == [b"q 000028 " + b"." * 54, b"q 000029 " + b"." * 54,
                                         b"late error"]
        assert counter.headers < 40, counter.headers
        counter.headers = 0
        out = list(s.read(1, containers={"quiet"}, sources={"stdout"}))
        assert len(out) == 30 and counter.headers < 40, counter.headers
        counter.headers = 0
        assert b"".join(c.data for c in s.read_raw(5, containers={"quiet"})) == \
            numbered("q", 4, 30) + b"late error\n"
        assert counter.headers < 40, counter.headers
        everything = list(s.read(1))
        assert len(everything) == 31 + 200 * len(numbered("c", 0, 1000)[:65536].split(b"\n")[:-1])


def test_a_follower_of_a_quiet_container_sees_its_later_lines(tmp_path: Path) -> None:
    """The reader jumps past the others to the end, and still sees what comes later."""
    s = quiet_beside_chatty(tmp_path / "logs", 40)
    with s, s.reader(1, containers={"quiet"}) as reader:
        assert len(list(reader.records())) == 31
        s.append("chatty", "stdout", b"noise\n" * 100)
        assert list(reader.records()) == []
        s.append("quiet", "stdout", b"again\n")
        for _ in range(30):
            s.append("chatty", "stdout", b"noise\n" * 10_000)
        s.append("quiet", "stdout", b"and again\n")
        assert [r.line for r in reader.records()] == [b"again", b"and again"]
        assert reader.cursor == s.last_seq + 1


def test_an_older_sidecar_without_ranges_is_rebuilt(tmp_path: Path) -> None:
    d = tmp_path / "logs"
    quiet_beside_chatty(d, 40).close()
    import msgspec

    for idx in d.glob("*" + SIDECAR):
        side = msgspec.msgpack.decode(idx.read_bytes())
        del side["ranges"]
        idx.write_bytes(msgspec.msgpack.encode(side))
    with LogStore.open(d, fsync="never") as s:
        assert all(seg.ranges for seg in s.segments if seg.has_lines)
        assert [r.line for r in s.read(s.tail_cursor(1, {"quiet"}), containers={"quiet"})] \
            == [b"late error"]


def test_fsync_1s_syncs_in_its_own_thread(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller of append (an event loop) never waits on fdatasync; lines are synced
    within a second, by the store's syncer thread, also when no more appends come."""
    import threading

    synced: list[str] = []
    done = threading.Event()
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(threading.current_thread().name)
        real(fd)
        done.set()
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    with LogStore.open(tmp_path / "logs", segment_bytes=SMALL) as s:
        for i in range(100):  # several rotations: each old segment is synced by the syncer
            s.append("c", "stdout", numbered("a", i * 20, i * 20 + 20))
        me = threading.current_thread().name
        assert me not in synced
        assert done.wait(10)
        s.sync()  # only asks
        assert me not in synced
        s.append("c", "stdout", b"last\n")
        s.sync(wait=True)
        assert me in synced
    assert synced and all(name.startswith("log-sync") for name in synced if name != me)


def test_time_never_goes_back(store: LogStore) -> None:
    store.append("c", "stdout", b"a\n", now=100.0)
    store.append("c", "stdout", b"b\n", now=50.0)  # the clock was stepped back
    assert [r.time for r in store.read(1)] == [100.0, 100.0]


# -- rotation, retention, reopen ------------------------------------------------------------


def test_rotation_reads_tails_and_seeks_across_segments(tmp_path: Path) -> None:
    d = tmp_path / "logs"
    with LogStore.open(d, fsync="never", segment_bytes=SMALL) as s:
        for i in range(400):
            s.append("c", "stdout", numbered("r", i * 20, i * 20 + 20), now=float(i))
        assert len(segments(d)) > 5
        names = [int(p.stem) for p in segments(d)]
        assert names[0] == 1 and names == sorted(names)
        assert [r.line for r in s.read(1)] == numbered("r", 0, 8000).split(b"\n")[:-1]
        assert s.tail_cursor(25) == 8000 - 24
        assert s.seq_at(399.0) == 7981
        assert [r.seq for r in s.read(4321, limit=3)] == [4321, 4322, 4323]
    assert all(p.with_suffix(SIDECAR).exists() for p in segments(d))


def test_retention_by_size_and_age(tmp_path: Path) -> None:
    d = tmp_path / "logs"
    with LogStore.open(d, fsync="never", segment_bytes=SMALL, retain_bytes=4 * SMALL) as s:
        for i in range(600):
            s.append("c", "stdout", numbered("k", i * 20, i * 20 + 20), now=float(i))
        total = sum(p.stat().st_size for p in segments(d))
        assert total <= 4 * SMALL + SMALL  # at most one segment over, before it rotates
        first = s.first_seq
        assert first > 1 and next(iter(s.read(1))).seq == first
        assert s.tail_cursor(10**6) == first
    with LogStore.open(d, fsync="never", segment_bytes=SMALL, retain_seconds=100,
                       clock=lambda: 600.0) as s:
        assert s.segments[0].last_time >= 500.0 or len(s.segments) == 1
        assert s.last_seq == 12_000


def test_reopen_continues_seq_and_uses_saved_indexes(tmp_path: Path) -> None:
    d = tmp_path / "logs"
    with LogStore.open(d, fsync="always", segment_bytes=SMALL) as s:
        for i in range(100):
            s.append("c", "stdout", numbered("a", i * 20, i * 20 + 20))
    sealed = segments(d)[:-1]
    assert sealed and all(p.with_suffix(SIDECAR).exists() for p in sealed)
    with LogStore.open(d, fsync="1s", segment_bytes=SMALL) as s:
        assert s.notices == [] and s.last_seq == 2000
        assert s.append("c", "stdout", b"more\n") == 2001
        assert s.append("new", "stdout", b"other\n") == 2002
    with LogStore.open(d) as s:
        assert [r.container for r in s.read(2001)] == ["c", "new"]
        assert len(lines_of(s)) == 2002


def test_stale_or_missing_index_is_rebuilt(tmp_path: Path) -> None:
    d = tmp_path / "logs"
    with LogStore.open(d, fsync="never", segment_bytes=SMALL) as s:
        for i in range(100):
            s.append("c", "stdout", numbered("a", i * 20, i * 20 + 20))
    idx = segments(d)[0].with_suffix(SIDECAR)
    idx.write_bytes(b"garbage")
    segments(d)[1].with_suffix(SIDECAR).unlink()
    with LogStore.open(d, fsync="never") as s:
        assert len(lines_of(s)) == 2000 and s.tail_cursor(1) == 2000


def test_seq_never_repeats_across_reopens(tmp_path: Path) -> None:
    d = tmp_path / "logs"
    rng = random.Random(7)
    for _round in range(6):
        s = LogStore.open(d, fsync="never", segment_bytes=SMALL)
        for _ in range(rng.randint(0, 40)):
            s.append("c", rng.choice(["stdout", "stderr"]), numbered("z", 0, rng.randint(1, 90)))
        if rng.random() < 0.5:
            s.close()
        else:
            crash(s)
    with LogStore.open(d) as s:
        seqs = [r.seq for r in s.read(1)]
    assert seqs == sorted(set(seqs))


def test_one_writer_per_store(store: LogStore) -> None:
    with pytest.raises(StoreLocked, match="open in another process"):
        LogStore.open(store.directory)


def test_bad_options_and_use_after_close(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="fsync: expected one of"):
        LogStore.open(tmp_path / "x", fsync="sometimes")
    s = LogStore.open(tmp_path / "y")
    s.close()
    with pytest.raises(StoreClosed):
        s.append("c", "stdout", b"late\n")


def test_on_append_hook(store: LogStore) -> None:
    seen: list[int] = []
    remove = store.on_append(seen.append)
    store.append("c", "stdout", b"a\nb\n")
    store.append("c", "stdout", b"par")  # nothing stored, nobody woken
    remove()
    store.append("c", "stdout", b"t\n")
    assert seen == [2]


# -- crashes ------------------------------------------------------------------------------


def _store_with_blocks(d: Path, blocks: int) -> list[int]:
    """Write ``blocks`` blocks; return the file size after each."""
    sizes = []
    s = LogStore.open(d, fsync="never")
    for i in range(blocks):
        s.append("c", "stdout", numbered("b", i * 3, i * 3 + 3))
        sizes.append(s.segments[-1].size)
    crash(s)
    return sizes


def test_torn_tail_is_trimmed_at_every_cut(tmp_path: Path) -> None:
    master = tmp_path / "master"
    sizes = _store_with_blocks(master, 5)
    start, end = sizes[-2], sizes[-1]
    seg = segments(master)[0]
    work = tmp_path / "work"
    for cut in range(start, end):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(master, work)
        os.truncate(work / seg.name, cut)
        with LogStore.open(work, fsync="never") as s:
            torn = cut > start
            assert len(s.notices) == torn, (cut, s.notices)
            if torn:
                assert "torn write" in s.notices[0]
            assert (work / seg.name).stat().st_size == start
            assert s.last_seq == 12
            assert lines_of(s) == numbered("b", 0, 12).split(b"\n")[:-1]
            assert s.append("c", "stdout", b"after\n") == 13
        with LogStore.open(work) as s:
            assert s.notices == [] and lines_of(s)[-1] == b"after"


def test_bad_checksum_in_last_block_is_trimmed(tmp_path: Path) -> None:
    sizes = _store_with_blocks(tmp_path / "logs", 4)
    seg = segments(tmp_path / "logs")[0]
    with seg.open("r+b") as f:
        f.seek(sizes[-1] - 3)
        f.write(b"!")
    with LogStore.open(tmp_path / "logs") as s:
        assert len(s.notices) == 1 and "trimmed" in s.notices[0]
        assert s.last_seq == 9


def test_corrupt_old_block_is_skipped_and_reported(tmp_path: Path) -> None:
    d = tmp_path / "logs"
    with LogStore.open(d, fsync="never", segment_bytes=SMALL) as s:
        for i in range(200):
            s.append("c", "stdout", numbered("o", i * 20, i * 20 + 20))
        victim = s.segments[0]
        off = [o for o, _ in s._headers(victim, victim.offsets[0])][5]  # a block in the middle
    with victim.path.open("r+b") as f:
        f.seek(off + HEADER_SIZE + 5)
        f.write(b"#")
    with LogStore.open(d, fsync="never") as s:
        assert s.notices == []  # sealed segments are trusted on open (their index is saved)
        got = lines_of(s)
        assert len(got) == 4000 - 20
        assert len(s.notices) == 1 and "fails its checksum" in s.notices[0]
        list(s.read(1))
        assert len(s.notices) == 1  # reported once


def test_corrupt_header_in_active_segment_is_skipped_on_open(tmp_path: Path) -> None:
    sizes = _store_with_blocks(tmp_path / "logs", 6)
    seg = segments(tmp_path / "logs")[0]
    with seg.open("r+b") as f:
        f.seek(sizes[2] + 12)  # the length field of block 4
        f.write(b"\xff\xff")
    with LogStore.open(tmp_path / "logs") as s:
        assert len(s.notices) == 1 and "damaged (lines 10-12 lost)" in s.notices[0]
        assert s.last_seq == 18
        assert len(lines_of(s)) == 15


def test_crash_in_the_middle_of_a_long_line(tmp_path: Path) -> None:
    d = tmp_path / "logs"
    s = LogStore.open(d)
    s.append("c", "stdout", b"before\n" + b"p" * 20_000)  # one piece stored, the rest held
    crash(s)
    with LogStore.open(d) as s:
        s.append("c", "stdout", b"fresh\n")
        got = [(len(r.line), r.partial) for r in s.read(1)]
        assert got == [(6, False), (MAX_LINE, True), (5, False)]


def test_segment_cut_short_at_creation_or_foreign(tmp_path: Path) -> None:
    d = tmp_path / "logs"
    _store_with_blocks(d, 2)
    (d / "00000000000000000007.seg").write_bytes(b"SUPER")  # crash right after creating it
    with LogStore.open(d) as s:
        assert s.notices == [] and s.append("c", "stdout", b"x\n") == 7
    crash_file = d / "00000000000000000008.seg"
    crash_file.write_bytes(b"this is not a segment at all\n")
    with LogStore.open(d) as s:
        assert "not a log segment" in s.notices[0]
        assert (d / (crash_file.name + ".damaged")).exists()
        assert s.append("c", "stdout", b"y\n") == 8
        assert lines_of(s)[-2:] == [b"x", b"y"]


# -- positions of tailed files ---------------------------------------------------------------


def test_position_is_stored_with_the_lines(store: LogStore) -> None:
    assert store.position("redis", "file:/var/log/r.log") is None
    store.append("redis", "file:/var/log/r.log", b"one\ntw", mark=(42, 6))
    assert store.position("redis", "file:/var/log/r.log") == (42, 4)  # "tw" is only held
    assert store.append("redis", "file:/var/log/r.log", b"o", mark=(42, 7)) == 0
    assert store.position("redis", "file:/var/log/r.log") == (42, 4)
    store.append("redis", "file:/var/log/r.log", b"\n" + b"x" * 20_000, mark=(42, 20_008))
    assert store.position("redis", "file:/var/log/r.log") == (42, 8 + MAX_LINE)
    assert lines_of(store, join=False) == [b"one", b"two", b"x" * MAX_LINE]
    assert b"".join(c.data for c in store.read_raw(1)) == b"one\ntwo\n" + b"x" * MAX_LINE
    assert store.tail_cursor(1) == 2  # the last *finished* line; the piece waits for its end


@pytest.mark.parametrize("how", ["close", "crash", "no-sidecars"])
def test_a_tailer_resumes_exactly_after_restart(tmp_path: Path, how: str) -> None:
    """Each round reads the 'file' from the stored position: every line once, none lost."""
    d = tmp_path / "logs"
    content = numbered("f", 0, 4000)
    rng = random.Random(hash(how) & 0xFFFF)
    for _round in range(8):
        s = LogStore.open(d, fsync="never", segment_bytes=SMALL)
        ino, pos = s.position("app", "file:/app.log") or (7, 0)
        for _ in range(rng.randint(1, 30)):
            n = rng.choice([10, 333, 4096, 20_000])
            s.append("app", "file:/app.log", content[pos:pos + n], mark=(ino, pos + n))
            pos = min(pos + n, len(content))
        if how == "close":
            s.close()
        else:
            crash(s)
            if how == "no-sidecars":
                for idx in d.glob("*" + SIDECAR):
                    idx.unlink()
    with LogStore.open(d) as s:
        got = lines_of(s)
        ino, pos = s.position("app", "file:/app.log") or (0, 0)
    assert got == content[:pos].split(b"\n")[:-1]
    assert len(got) > 100


async def test_stream_raw_history_then_live_in_even_chunks(tmp_path: Path) -> None:
    """The bytes as written, one container's only, history then live across rotations;
    history comes in chunks of exactly ``max_bytes`` (see follow.stream_raw)."""
    import trio

    from logging_bus.follow import stream_raw

    with LogStore.open(tmp_path / "logs", fsync="never", segment_bytes=SMALL) as s:
        for i in range(40):
            s.append("web", "stdout", numbered("w", i * 20, i * 20 + 20))
            s.append("db", "stdout", numbered("d", i * 20, i * 20 + 20))
        history = [c async for c in stream_raw(s, 1, containers={"web"}, max_bytes=10_000)]
        assert b"".join(history) == numbered("w", 0, 800)
        assert {len(c) for c in history[:-1]} == {10_000}
        got = bytearray()

        async def follow_web() -> None:
            async for data in stream_raw(s, 1, containers={"web"}, live=True,
                                         max_bytes=10_000):
                got.extend(data)
                if len(got) >= len(numbered("w", 0, 1600)):
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow_web)
            for i in range(40, 80):
                await trio.sleep(0)
                s.append("db", "stdout", numbered("d", i * 20, i * 20 + 20))
                s.append("web", "stdout", numbered("w", i * 20, i * 20 + 20))
        assert bytes(got) == numbered("w", 0, 1600)
        assert len(s.segments) > 2
        until = [c async for c in stream_raw(s, 1, containers={"web"}, until_seq=41)]
        assert b"".join(until) == numbered("w", 0, 20)


def test_a_store_has_an_id_of_its_own_kept_across_opens(tmp_path: Path) -> None:
    a = LogStore.open(tmp_path / "a", fsync="never")
    b = LogStore.open(tmp_path / "b", fsync="never")
    first = a.id
    a.close()
    b.close()
    assert len(first) == 16 and first != b.id
    again = LogStore.open(tmp_path / "a", fsync="never")
    assert again.id == first
    again.close()
