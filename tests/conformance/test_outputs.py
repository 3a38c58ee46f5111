"""One suite every output passes, with the store feeding it for real: delivery across store
rotation, resuming from the saved cursor after a restart, a receiver down for a while
(acceptance 5), where a new output starts, which containers, filters on the way out.

Each output delivers to a real receiver: a file, a real rsyslogd (UDP, TCP, Unix socket),
an HTTP receiver that checks Loki's and Elasticsearch's payloads.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from logging_bus.filters import Pipeline
from logging_bus.forward import Forwarder, load_cursor
from logging_bus.specs import AddFieldsFilter, MultilineFilter, OutputSpec, RegexFilter
from logging_bus.store import LogStore
from tests.conformance.backends import SMALL_SEGMENT
from tests.conformance.outputs import CASES, FileCase, OutputCase
from tests.conformance.test_backends import expected, numbered
from tests.receivers import Got

REDIS = (r"^(?P<pid>\d+):(?P<role>[XCSM]) (?P<date>\d{1,2} \w{3} \d{4} [\d:.]+) "
         r"(?P<level>[.*#-]) (?P<msg>.*)$")


class Harness:
    """A store, an output's cursor file, and forwarders over them."""

    def __init__(self, case: OutputCase, folder: Path) -> None:
        self.case = case
        self.directory = folder / "logs"
        self.store = LogStore.open(self.directory, fsync="never", segment_bytes=SMALL_SEGMENT)
        self.cursor_file = folder / "outputs" / "out.cursor"
        self.notices: list[str] = []

    def forwarder(self, spec: OutputSpec, pipeline: Pipeline | None = None) -> Forwarder:
        return Forwarder(self.store, "out", spec, self.case.sink(spec, self.notices.append),
                         pipeline or Pipeline(), self.cursor_file, notice=self.notices.append,
                         first_delay=0.02)

    def write(self, name: str, start: int, stop: int, seed: int) -> None:
        rng, data, pos = random.Random(seed), numbered(name, start, stop), 0
        while pos < len(data):
            n = rng.choice([3, 70, 1000, 8192])
            self.store.append(name, "stdout", data[pos:pos + n])
            pos += n

    async def writer(self, name: str, start: int, stop: int, seed: int) -> None:
        rng = random.Random(seed)
        for i in range(start, stop, 50):
            self.write(name, i, min(i + 50, stop), seed + i)
            if rng.random() < 0.5:
                await trio.sleep(0)

    def restart(self) -> None:
        self.store.close()
        self.store = LogStore.open(self.directory, fsync="never", segment_bytes=SMALL_SEGMENT)


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OutputCase]:
    c = CASES[request.param](tmp_path)
    yield c
    c.close()


@pytest.fixture(params=sorted(n for n in CASES if n not in ("console", "file", "syslog-udp")))
def fallible(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OutputCase]:
    """The outputs whose receiver can be down in a way the sender sees."""
    c = CASES[request.param](tmp_path)
    assert c.can_go_down
    yield c
    c.close()


@pytest.fixture
def h(case: OutputCase, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(case, tmp_path)
    yield harness
    harness.store.close()


async def received(case: OutputCase, n: int, timeout: float = 30) -> list[Got]:
    """What the receiver got, once it holds ``n`` lines (a receiver is another process or
    thread: this polls it)."""
    with trio.fail_after(timeout):
        while len(got := case.got()) < n:
            await trio.sleep(0.02)
    return got


def lines_of(got: list[Got], container: str) -> list[bytes]:
    return [g.line.encode() for g in got if g.container == container]


async def test_every_line_once_in_order_across_rotation(case: OutputCase, h: Harness) -> None:
    fw = h.forwarder(case.spec(batch=500))
    async with trio.open_nursery() as nursery:
        await nursery.start(fw.run)
        nursery.start_soon(h.writer, "web", 0, 3000, 1)
        nursery.start_soon(h.writer, "db", 0, 3000, 2)
        got = await received(case, 6000)
        nursery.cancel_scope.cancel()
    assert len(h.store.segments) > 3
    if isinstance(case, FileCase):
        assert len(case.files()) > 2  # the output's own files rotated too
    assert lines_of(got, "web") == expected("web", 0, 3000)
    assert lines_of(got, "db") == expected("db", 0, 3000)
    assert len(got) == 6000
    assert {g.source for g in got} == {"stdout"}


async def test_resumes_from_its_saved_cursor_after_a_restart(case: OutputCase,
                                                             h: Harness) -> None:
    h.write("web", 0, 1000, 3)
    async with trio.open_nursery() as nursery:
        await nursery.start(h.forwarder(case.spec(batch=300)).run)
        await received(case, 1000)
        h.write("web", 1000, 1500, 4)
        h.restart()  # the forwarder delivers what was stored, then ends with the store
    assert load_cursor(h.cursor_file) == 1501
    h.write("web", 1500, 2500, 5)
    async with trio.open_nursery() as nursery:
        await nursery.start(h.forwarder(case.spec(batch=300)).run)
        got = await received(case, 2500)
        nursery.cancel_scope.cancel()
    assert lines_of(got, "web") == expected("web", 0, 2500)  # none lost, none twice


async def test_receiver_down_for_a_while_then_everything_arrives(fallible: OutputCase,
                                                                 tmp_path: Path) -> None:
    """Acceptance 5: refused connections (and 500s over HTTP), then all of it, once."""
    case, h = fallible, Harness(fallible, tmp_path)
    case.down()
    fw = h.forwarder(case.spec(batch=200))
    async with trio.open_nursery() as nursery:
        await nursery.start(fw.run)
        h.write("web", 0, 500, 6)
        with trio.fail_after(10):
            while fw.failing is None:
                await trio.sleep(0.01)
        h.write("web", 500, 1000, 7)
        case.up()
        if hasattr(case, "receiver"):
            case.receiver.fail(3)  # and then a few 500s
        got = await received(case, 1000)
        nursery.cancel_scope.cancel()
    h.store.close()
    assert lines_of(got, "web") == expected("web", 0, 1000)
    assert any("retrying" in n for n in h.notices), h.notices
    assert any("delivering again" in n for n in h.notices), h.notices


async def test_a_new_output_from_the_end_for_some_containers(case: OutputCase,
                                                             h: Harness) -> None:
    h.write("web", 0, 100, 8)
    h.write("db", 0, 100, 9)
    fw = h.forwarder(case.spec(start="end", containers=["db"]))
    async with trio.open_nursery() as nursery:
        await nursery.start(fw.run)
        h.write("web", 100, 200, 10)
        h.write("db", 100, 200, 11)
        with trio.fail_after(30):
            await fw.drain()
        got = await received(case, 100)
        nursery.cancel_scope.cancel()
    assert [g.line.encode() for g in got] == expected("db", 100, 200)


async def test_filters_fields_multiline_and_long_lines_arrive(case: OutputCase,
                                                              h: Harness) -> None:
    redis = (b"12345:M 04 Dec 2026 22:10:01.123 * Ready to accept connections tcp\n"
             b"12345:M 04 Dec 2026 22:10:02.001 # Warning: a two-line entry\n"
             b"   with its continuation\n")
    pipeline = Pipeline({"redis": [MultilineFilter(start=r"^\d+:", timeout=60.0),
                                   RegexFilter(pattern="(?s)" + REDIS)]},
                        [AddFieldsFilter(fields={"env": "test"})])
    long = "x" * 40_000
    fw = h.forwarder(case.spec(), pipeline)
    async with trio.open_nursery() as nursery:
        await nursery.start(fw.run)
        h.store.append("redis", "file:/var/log/redis/redis-server.log", redis)
        h.store.append("web", "stdout", long.encode()[:20_000])
        h.store.append("web", "stdout", long.encode()[20_000:] + b"\n")
        with trio.fail_after(30):
            await fw.drain()  # lets the held multiline event out
        got = await received(case, 3)
        nursery.cancel_scope.cancel()
    assert len(got) == 3
    first, second = (g for g in got if g.container == "redis")
    assert first.source == "file:/var/log/redis/redis-server.log"
    assert first.line == "12345:M 04 Dec 2026 22:10:01.123 * Ready to accept connections tcp"
    assert first.fields == {"pid": "12345", "role": "M", "date": "04 Dec 2026 22:10:01.123",
                            "level": "*", "msg": "Ready to accept connections tcp",
                            "env": "test"}
    assert second.line.endswith("a two-line entry\n   with its continuation")
    assert second.fields["level"] == "#" and second.fields["env"] == "test"
    [web] = (g for g in got if g.container == "web")
    assert (web.line, web.fields) == (long, {"env": "test"})


@pytest.mark.parametrize("kind", ["loki", "elasticsearch"])
async def test_http_auth_errors_are_retried_and_413_splits_the_batch(kind: str,
                                                                      tmp_path: Path) -> None:
    """A 401 (an expired token) or 404 is retried, never a reason to skip lines; a 413 sends
    the batch in halves until the receiver takes them."""
    case = CASES[kind](tmp_path)
    h = Harness(case, tmp_path)
    receiver = case.receiver  # type: ignore[attr-defined]
    receiver.fail(3, status=401)
    receiver.max_body = 4000  # a few dozen lines at most
    fw = h.forwarder(case.spec(batch=500))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(fw.run)
            h.write("web", 0, 300, 8)
            got = await received(case, 300)
            nursery.cancel_scope.cancel()
    finally:
        h.store.close()
        case.close()
    assert lines_of(got, "web") == expected("web", 0, 300)
    assert receiver.too_large > 0
    assert not any("skipped" in n for n in h.notices), h.notices
