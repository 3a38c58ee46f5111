"""One suite every log backend passes: tail, since/until, follow across rotation and restart.

Follow is checked the way issue 4 states it: started mid-stream, history then live with no
gap and no duplicate, while a writer task appends concurrently.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import pytest
import trio

from logging_bus.record import Record
from tests.conformance.backends import Backend, StoreBackend

BACKENDS = {"store": StoreBackend}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b: Backend = BACKENDS[request.param](tmp_path / "logs")
    yield b
    b.close()


def numbered(name: str, start: int, stop: int) -> bytes:
    return b"".join(b"%s line %06d %s\n" % (name.encode(), i, b"-" * 40)
                    for i in range(start, stop))


def expected(name: str, start: int, stop: int) -> list[bytes]:
    return numbered(name, start, stop).split(b"\n")[:-1]


def write_numbered(b: Backend, name: str, start: int, stop: int, rng: random.Random,
                   now: float | None = None) -> None:
    data, pos = numbered(name, start, stop), 0
    while pos < len(data):
        n = rng.choice([3, 70, 1000, 8192, 65536])
        b.write(name, "stdout", data[pos:pos + n], now)
        pos += n


def fill(b: Backend) -> None:
    rng = random.Random(1)
    for i in range(60):
        for name in ("web", "db", "cache"):
            write_numbered(b, name, i * 20, i * 20 + 20, rng, now=1000.0 + i)


# -- history ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 7, 250, 10**6])
def test_tail(backend: Backend, n: int) -> None:
    fill(backend)
    everything = backend.history()
    assert [r.line for r in backend.history(tail=n)] == \
        ([r.line for r in everything[len(everything) - n:]] if n else [])
    web = [r.line for r in everything if r.container == "web"]
    assert [r.line for r in backend.history(tail=n, containers={"web"})] == \
        (web[len(web) - n:] if n else [])


def test_since_until(backend: Backend) -> None:
    fill(backend)
    got = backend.history(since=1010.0, until=1020.0, containers={"db"})
    assert [r.line for r in got] == expected("db", 200, 400)
    assert all(1010.0 <= r.time < 1020.0 for r in got)
    assert backend.history(since=2000.0) == []
    assert len(backend.history(until=1000.0)) == 0
    assert [r.line for r in backend.history(since=1059.0, tail=5, containers={"web"})] == \
        expected("web", 1195, 1200)


def test_history_survives_restart_and_rotation(backend: Backend) -> None:
    fill(backend)
    before = backend.history()
    backend.restart()
    assert backend.history() == before
    assert backend.segment_count() > 3
    assert [r.seq for r in before] == list(range(1, 3601))


# -- follow ----------------------------------------------------------------------------------


async def collect(b: Backend, start: int, want: int, out: list[Record],
                  containers: set[str] | None = None) -> None:
    """Follow from ``start`` into ``out`` until it holds ``want`` records."""
    async with aclosing(b.follow(start, containers)) as records:
        async for record in records:
            out.append(record)
            if len(out) == want:
                return


async def writer(b: Backend, name: str, start: int, stop: int, seed: int) -> None:
    rng = random.Random(seed)
    data, pos = numbered(name, start, stop), 0
    while pos < len(data):
        n = rng.choice([3, 70, 1000, 8192, 65536])
        b.write(name, "stdout", data[pos:pos + n])
        pos += n
        if rng.random() < 0.5:
            await trio.sleep(0)


async def test_follow_history_then_live_no_gap_no_duplicate(backend: Backend) -> None:
    write_numbered(backend, "web", 0, 1000, random.Random(2))
    start = backend.history(tail=300)[0].seq
    got: list[Record] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, backend, start, 300 + 5000, got)
        await trio.sleep(0)
        nursery.start_soon(writer, backend, "web", 1000, 6000, 3)
    assert [r.line for r in got] == expected("web", 700, 6000)
    assert [r.seq for r in got] == list(range(start, start + 5300))


async def test_follow_across_rotation(backend: Backend) -> None:
    got: list[Record] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, backend, 1, 8000, got)
        nursery.start_soon(writer, backend, "web", 0, 4000, 4)
        nursery.start_soon(writer, backend, "db", 0, 4000, 5)
    assert backend.segment_count() > 5
    assert [r.line for r in got if r.container == "web"] == expected("web", 0, 4000)
    assert [r.line for r in got if r.container == "db"] == expected("db", 0, 4000)
    assert [r.seq for r in got] == list(range(1, 8001))


async def test_follow_one_container_while_others_write(backend: Backend) -> None:
    got: list[Record] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, backend, 1, 3000, got, {"db"})
        nursery.start_soon(writer, backend, "web", 0, 3000, 6)
        nursery.start_soon(writer, backend, "db", 0, 3000, 7)
    assert [r.line for r in got] == expected("db", 0, 3000)


async def test_follow_across_restart(backend: Backend) -> None:
    write_numbered(backend, "web", 0, 500, random.Random(8))
    got: list[Record] = []
    async with aclosing(backend.follow(1)) as records:
        async for record in records:
            got.append(record)
            if len(got) == 200:
                write_numbered(backend, "web", 500, 900, random.Random(9))
                backend.restart()  # the follower drains what was stored, then ends
    assert len(got) == 900
    cursor = got[-1].seq + 1
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, backend, cursor, 3000, got)
        nursery.start_soon(writer, backend, "web", 900, 3000, 10)
    assert [r.line for r in got] == expected("web", 0, 3000)
    assert len({r.seq for r in got}) == 3000


async def test_follow_wakes_on_a_writer_in_another_thread(backend: Backend) -> None:
    def write_all() -> None:
        write_numbered(backend, "web", 0, 3000, random.Random(11))

    got: list[Record] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, backend, 1, 3000, got)
        await trio.sleep(0.01)
        await trio.to_thread.run_sync(write_all)
    assert [r.line for r in got] == expected("web", 0, 3000)


async def test_follow_joins_a_long_line_written_across_wakes(backend: Backend) -> None:
    long = b"L" * 50_000
    got: list[Record] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, backend, 1, 3, got)
        backend.write("web", "stdout", b"first\n" + long[:20_000])
        await trio.sleep(0.01)
        backend.write("web", "stderr", b"between\n")
        await trio.sleep(0.01)
        backend.write("web", "stdout", long[20_000:] + b"\n")
    assert [r.line for r in got] == [b"first", b"between", long]
    assert [r.seq for r in got] == sorted(r.seq for r in got)


async def test_a_follower_that_does_not_read_never_blocks_the_writer(backend: Backend) -> None:
    backend.write("web", "stdout", b"hello\n")
    async with aclosing(backend.follow(1)) as records:
        got = [await records.__anext__()]
        # The follower is parked; the writer goes on without waiting for it.
        write_numbered(backend, "web", 0, 20_000, random.Random(12))
        async for record in records:
            got.append(record)
            if len(got) == 20_001:
                break
    assert [r.line for r in got[1:]] == expected("web", 0, 20_000)
