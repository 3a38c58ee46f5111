"""Sources: a pipe pumped into the store, and files tailed through rotation and restarts."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import trio

from logging_bus.sources import pump, tail_files
from logging_bus.store import LogStore


def lines(prefix: str, start: int, stop: int) -> bytes:
    return b"".join(b"%s %05d\n" % (prefix.encode(), i) for i in range(start, stop))


def stored(store: LogStore) -> list[bytes]:
    return [r.line for r in store.read(1)]


async def until(check: Callable[[], bool]) -> None:
    with trio.fail_after(5):
        while not check():
            await trio.sleep(0.005)


async def test_pump_stores_a_pipe_until_eof(tmp_path: Path) -> None:
    r, w = os.pipe()
    with LogStore.open(tmp_path / "logs") as store:
        async with trio.open_nursery() as nursery:
            stream = trio.lowlevel.FdStream(r)
            nursery.start_soon(pump, stream, store, "web", "stdout")
            os.write(w, b"one\ntw")
            await until(lambda: store.last_seq == 1)
            os.write(w, b"o\nno newline at the end")
            os.close(w)
        assert [(r.line, r.partial) for r in store.read(1)] == [
            (b"one", False), (b"two", False), (b"no newline at the end", True)]
        await stream.aclose()


async def test_tail_follows_appends_rename_rotation_and_copytruncate(tmp_path: Path) -> None:
    logdir = tmp_path / "vol"
    logdir.mkdir()
    log = logdir / "redis.log"
    with LogStore.open(tmp_path / "logs") as store:
        async with trio.open_nursery() as nursery:
            await nursery.start(tail_files, store, "redis", logdir, "/var/log/redis",
                                ["*.log"])
            with log.open("ab", buffering=0) as f:  # created after the tailer started
                f.write(lines("a", 0, 100))
                f.write(b"half a li")
                await until(lambda: store.last_seq == 100)
                f.write(b"ne\n")
                await until(lambda: store.last_seq == 101)
                log.rename(logdir / "redis.log.1")  # rotation by rename...
                f.write(lines("late", 0, 3))  # ...while the writer still has the old file
            with log.open("ab", buffering=0) as f:
                f.write(lines("b", 0, 50))
                await until(lambda: store.last_seq == 154)
                os.truncate(log, 0)  # copytruncate, after the copy was read
                await trio.sleep(0.05)
                f.write(lines("c", 0, 20))
                await until(lambda: store.last_seq == 174)
            nursery.cancel_scope.cancel()
        expected = (lines("a", 0, 100) + b"half a line\n" + lines("late", 0, 3)
                    + lines("b", 0, 50) + lines("c", 0, 20)).split(b"\n")[:-1]
        assert stored(store) == expected
        assert {r.source for r in store.read(1)} == {"file:/var/log/redis/redis.log"}


async def test_tail_resumes_after_restart_without_loss_or_repeat(tmp_path: Path) -> None:
    logdir = tmp_path / "vol"
    logdir.mkdir()
    log = logdir / "app.log"
    written = b""

    async def run_tailer(expect_lines: int) -> None:
        with LogStore.open(tmp_path / "logs") as store:
            async with trio.open_nursery() as nursery:
                await nursery.start(tail_files, store, "app", logdir, "/logs", ["app.log"])
                await until(lambda: store.last_seq >= expect_lines)
                nursery.cancel_scope.cancel()

    with log.open("ab", buffering=0) as f:
        f.write(lines("x", 0, 500) + b"unfinish")
        written += lines("x", 0, 500)
        await run_tailer(500)
        f.write(b"ed\n" + lines("y", 0, 100))  # while no tailer runs
        written += b"unfinished\n" + lines("y", 0, 100)
        await run_tailer(601)
        f.write(lines("z", 0, 10))
        written += lines("z", 0, 10)
    log.rename(logdir / "app.log.1")  # rotated while no tailer runs
    log.write_bytes(lines("new", 0, 5))
    written += lines("new", 0, 5)
    await run_tailer(616)
    with LogStore.open(tmp_path / "logs") as store:
        assert stored(store) == written.split(b"\n")[:-1]


async def test_tail_waits_for_the_directory(tmp_path: Path) -> None:
    logdir = tmp_path / "not-yet"
    with LogStore.open(tmp_path / "logs") as store:
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: tail_files(
                store, "c", logdir, "/l", ["*.log"], tick=0.02, task_status=task_status))
            logdir.mkdir()
            (logdir / "x.log").write_bytes(b"hello\n")
            (logdir / "x.txt").write_bytes(b"not matched\n")
            await until(lambda: store.last_seq == 1)
            nursery.cancel_scope.cancel()
        assert stored(store) == [b"hello"]
