"""A toy router for the HTTP server and client tests, and a fixture-like server runner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import trio

from supervisor.httpserver import HTTPError, Request, Response, Router, Stream, Upgrade, serve_unix


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
