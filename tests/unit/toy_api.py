"""A toy router for the HTTP server and client tests, and a fixture-like server runner;
a fake supervisor (our own API's shapes and streams) for the shell's tests."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import trio

from logging_bus.record import LogLine
from supervisor.httpserver import HTTPError, Request, Response, Router, Stream, Upgrade, serve_unix
from supervisor.protocol import ContainerState, ContainerSummary, Event, StatsView


class CreateBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    image: str
    cmd: list[str] = []
    tty: bool = False


class Options(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    force: bool = False


class Item(msgspec.Struct):
    name: str
    n: int


@dataclass
class Toy:
    """What the toy handlers record, for the tests to look at."""

    stream_closed: trio.Event = field(default_factory=trio.Event)
    stream_started: trio.Event = field(default_factory=trio.Event)
    upgraded: list[bytes] = field(default_factory=list)


def make_router(toy: Toy, *, with_failures: bool = True) -> Router:
    r = Router()

    @r.route("GET", "/_ping")
    async def ping(req: Request) -> Response:
        return Response(b"OK", content_type="text/plain")

    @r.route("GET", "/containers/json")
    async def listing(req: Request) -> list[Item]:
        return [Item("a", 1), Item("b", 2)] if req.query_bool("all") else [Item("a", 1)]

    @r.route("GET", "/containers/{name}/json")
    async def inspect(req: Request) -> dict[str, str]:
        if req.params["name"] == "missing":
            raise HTTPError(404, "No such container: missing")
        return {"name": req.params["name"]}

    @r.route("GET", "/things/{name}")
    async def thing(req: Request) -> str:
        return f"param {req.params['name']}"

    @r.route("GET", "/things/special")
    async def special(req: Request) -> str:
        return "literal"

    @r.route("POST", "/containers/{name}/stop")
    async def stop(req: Request) -> None:
        req.query_int("t", 10)

    @r.route("POST", "/containers/create")
    async def create(req: Request) -> Response:
        body = req.json(CreateBody)
        return Response({"Id": body.image, "Cmd": body.cmd}, status=201)

    @r.route("DELETE", "/containers/{name}")
    async def remove(req: Request) -> dict[str, bool]:
        return {"force": req.json(Options).force or req.query_bool("force")}

    @r.route("PUT", "/echo-query")
    async def echo_query(req: Request) -> dict[str, list[str]]:
        return req.query

    @r.route("POST", "/echo-body")
    async def echo_body(req: Request) -> Response:
        return Response(req.body, content_type="application/octet-stream")

    @r.route("GET", "/events")
    async def events(req: Request) -> Stream:
        count = req.query_int("n", 3)

        async def gen() -> AsyncIterator[Item]:
            for i in range(count):
                yield Item("event", i)
                await trio.sleep(0)

        return Stream(gen())

    @r.route("GET", "/raw")
    async def raw(req: Request) -> Stream:
        async def gen() -> AsyncIterator[bytes]:
            yield b"no newline "
            yield b"\x00\xffbinary"

        return Stream(gen(), content_type="application/octet-stream")

    @r.route("GET", "/forever")
    async def forever(req: Request) -> Stream:
        async def gen() -> AsyncIterator[bytes]:
            try:
                yield b'{"first":true}\n'
                toy.stream_started.set()
                await trio.sleep_forever()
                yield b"never"
            finally:
                toy.stream_closed.set()

        return Stream(gen())

    @r.route("GET", "/slow")
    async def slow(req: Request) -> str:
        await trio.sleep(req.query_int("s", 1))
        return "late"

    @r.route("POST", "/echo")
    async def echo(req: Request) -> Upgrade:
        async def handler(stream: trio.abc.HalfCloseableStream, r: Request) -> None:
            await stream.send_all(b"hello " + r.body + b"\n")  # right behind the 101
            got = b""
            while data := await stream.receive_some(65536):
                got += data
                await stream.send_all(data.upper())
            toy.upgraded.append(got)

        return Upgrade(handler)

    if with_failures:

        @r.route("GET", "/boom")
        async def boom(req: Request) -> None:
            raise RuntimeError("kaboom\nsecond line")

        @r.route("GET", "/unencodable")
        async def unencodable(req: Request) -> object:
            return object()

        @r.route("GET", "/broken-stream")
        async def broken_stream(req: Request) -> Stream:
            async def gen() -> AsyncIterator[bytes]:
                yield b'{"ok":1}\n'
                raise RuntimeError("mid-stream failure")

            return Stream(gen())

    return r


async def start_server(nursery: trio.Nursery, path: Path, toy: Toy, **kw: bool) -> None:
    await nursery.start(serve_unix, make_router(toy, **kw), str(path))


# -- a fake supervisor: our own API's shapes and streams, for the shell's tests -------------


def fake_row(name: str, *, status: str = "running", restarts: int = 0,
             ports: tuple[str, ...] = ()) -> ContainerSummary:
    import time as _time

    return ContainerSummary(
        name=name, image="busybox", command="sh", created="2026-01-01T00:00:00+00:00",
        status="Up", ports=list(ports),
        state=ContainerState(
            status=status, running=status == "running", paused=False,
            restarting=status == "restarting", oom_killed=False, pid=100, exit_code=None,
            error="", started_at=datetime.fromtimestamp(_time.time() - 90, UTC).isoformat(),
            finished_at=None, restart_count=restarts,
            next_restart_at=_time.time() + 5 if status == "restarting" else None,
            stopped_by_user=False))


@dataclass
class FakeStack:
    """What a fake supervisor serves; the test changes it from its own thread through
    `ServerThread.call`, and each change wakes the streams."""

    rows: dict[str, ContainerSummary] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    def poke(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def event(self, action: str, container: str, **attributes: str) -> None:
        import time as _time

        self.events.append(Event(seq=len(self.events) + 1, time=_time.time(), action=action,
                                 container=container, attributes=attributes))
        self.poke()

    def log(self, container: str, line: str, source: str = "stdout") -> None:
        import time as _time

        self.logs.append(LogLine(seq=len(self.logs) + 1, time=_time.time(),
                                 container=container, source=source, line=line))
        self.poke()


def make_stack_router(fake: FakeStack) -> Router:
    """The paths the shell and the CLI verbs it runs use, in the shapes of docs/api.md."""
    r = Router()

    def row(req: Request) -> ContainerSummary:
        found = fake.rows.get(req.params["name"])
        if found is None:
            raise HTTPError(404, f"No such container: {req.params['name']}")
        return found

    async def follow(items: list[Any], start: int, keep: Callable[[Any], bool]
                     ) -> AsyncIterator[Any]:
        i = start
        while True:
            while i < len(items):
                if keep(items[i]):
                    yield items[i]
                i += 1
            await fake.changed.wait()

    @r.route("GET", "/_ping")
    async def ping(req: Request) -> Response:
        return Response(b"OK", content_type="text/plain")

    @r.route("GET", "/containers/json")
    async def listing(req: Request) -> list[ContainerSummary]:
        return [fake.rows[n] for n in sorted(fake.rows)]

    @r.route("POST", "/containers/{name}/restart")
    async def restart(req: Request) -> Response:
        old = row(req)
        fake.requests.append(f"restart {old.name}")
        state = msgspec.structs.replace(old.state, restart_count=old.state.restart_count + 1)
        fake.rows[old.name] = msgspec.structs.replace(old, state=state)
        fake.event("die", old.name, exitCode="143")
        fake.event("start", old.name)
        return Response(status=204)

    @r.route("GET", "/events")
    async def events(req: Request) -> Stream:
        since = float(req.query_str("since") or 0)
        return Stream(follow(fake.events, 0, lambda e: e.time >= since))

    @r.route("GET", "/containers/{name}/stats")
    async def stats(req: Request) -> Stream:
        name = row(req).name

        async def samples() -> AsyncIterator[StatsView]:
            n = 0
            while True:
                n += 1
                yield StatsView(name=name, read=n, cpu_usage_ns=n * 10**7,
                                cpu_percent=float(n % 7), memory_usage=(20 + n % 5) << 20,
                                memory_limit=64 << 20, pids=3, nr_throttled=0)
                await trio.sleep(0.2)

        return Stream(samples())

    def logs(req: Request, names: list[str]) -> Stream:
        tail = req.query_str("tail") or "all"
        start = 0 if tail == "all" else max(0, len(fake.logs) - int(tail))

        def keep(line: LogLine) -> bool:
            return not names or line.container in names

        async def history() -> AsyncIterator[LogLine]:
            for line in fake.logs[start:]:
                if keep(line):
                    yield line

        records = follow(fake.logs, start, keep) if req.query_bool("follow") else history()
        if req.query_bool("raw"):  # the bytes as written
            async def raw() -> AsyncIterator[bytes]:
                async for line in records:
                    yield line.line.encode() + b"\n"

            return Stream(raw(), content_type="application/octet-stream")
        return Stream(records)

    @r.route("GET", "/logs")
    async def logs_all(req: Request) -> Stream:
        return logs(req, req.query_list("container"))

    @r.route("GET", "/containers/{name}/logs")
    async def logs_one(req: Request) -> Stream:
        return logs(req, [row(req).name])

    return r


class ServerThread:
    """A trio server on a Unix socket in a thread of its own, for a test that runs asyncio
    (the shell) in its main thread.  ``stop()`` closes the socket and every connection, as
    a supervisor that went away; ``start()`` again is one that came back."""

    def __init__(self, path: Path, router: Router) -> None:
        self.path = path
        self.router = router
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None

    def start(self) -> ServerThread:
        ready = threading.Event()

        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as scope:
                self._cancel = scope
                async with trio.open_nursery() as nursery:
                    await nursery.start(serve_unix, self.router, str(self.path))
                    ready.set()

        self._thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
        self._thread.start()
        assert ready.wait(10), "the fake supervisor did not start"
        return self

    def call(self, fn: Callable[[], object]) -> None:
        """Runs `fn` in the server's trio thread (where the FakeStack lives)."""
        trio.from_thread.run_sync(fn, trio_token=self._token)

    def stop(self) -> None:
        if self._thread is None:
            return
        scope = self._cancel
        assert scope is not None
        trio.from_thread.run_sync(scope.cancel, trio_token=self._token)
        self._thread.join(10)
        self._thread = None
