"""The API client, sync and asyncio, against a real server (and httpx's mock transport)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio

from supervisor.client import AsyncClient, Client
from supervisor.errors import ApiError, NoSupervisor, SupervisorError
from tests.unit.toy_api import CreateBody, Toy, start_server


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "api.sock"


@pytest.fixture
async def toy(nursery: trio.Nursery, sock_path: Path) -> Toy:
    toy = Toy()
    await start_server(nursery, sock_path, toy)
    return toy


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await trio.to_thread.run_sync(fn)


class Row(msgspec.Struct, frozen=True):
    name: str
    n: int


# --- sync ---------------------------------------------------------------------------------


async def test_verbs_decode_json_and_bytes(toy: Toy, sock_path: Path) -> None:
    def run() -> None:
        with Client(str(sock_path)) as c:
            assert c.get("/_ping") == b"OK"  # text/plain comes back as bytes
            assert c.get_as("/containers/json", list[Row], all=True) == [Row("a", 1), Row("b", 2)]
            assert c.get("/containers/json?all=1") == [{"name": "a", "n": 1},
                                                       {"name": "b", "n": 2}]
            assert c.post("/containers/create", CreateBody(image="s", cmd=["sh"])) == {
                "Id": "s", "Cmd": ["sh"]}  # a Struct body is encoded by msgspec
            assert c.post("/containers/create", {"image": "i"}) == {"Id": "i", "Cmd": []}
            assert c.delete("/containers/x", force=True) == {"force": True}
            assert c.post("/containers/x/stop", t=1) is None
            assert c.request("POST", "/echo-body", b"\x00raw") == b"\x00raw"

    await in_thread(run)


async def test_query_encoding(toy: Toy, sock_path: Path) -> None:
    def run() -> Any:
        with Client(str(sock_path)) as c:
            return c.put("/echo-query", None, all=True, stream=False, t=0, skip=None,
                         names=["a", "b"], filters={"label": ["x=y"]}, row=Row("r", 1),
                         path="/etc/hosts")  # `path` is free for the query (docker cp)

    assert await in_thread(run) == {
        "all": ["1"], "stream": ["0"], "t": ["0"], "names": ["a", "b"],
        "filters": ['{"label":["x=y"]}'], "row": ['{"name":"r","n":1}'], "path": ["/etc/hosts"],
    }


async def test_api_errors_carry_status_and_message(toy: Toy, sock_path: Path) -> None:
    def run() -> list[ApiError]:
        errors = []
        with Client(str(sock_path)) as c:
            for call in (lambda: c.get("/containers/missing/json"),
                         lambda: c.post("/containers/create", {"image": 3}),
                         lambda: c.get("/nope"),
                         lambda: list(c.stream("GET", "/events", n="x"))):
                with pytest.raises(ApiError) as info:
                    call()
                errors.append(info.value)
        return errors

    missing, bad, nope, stream = await in_thread(run)
    assert (missing.status, str(missing)) == (404, "No such container: missing")
    assert bad.status == 400 and "`$.image`" in str(bad)
    assert (nope.status, str(nope)) == (404, "page not found")
    assert (stream.status, str(stream)) == (
        400, "query parameter 'n': expected an integer, got 'x'")
    assert missing.exit_code == 1 and isinstance(missing, SupervisorError)


async def test_unexpected_answers(toy: Toy, sock_path: Path) -> None:
    def run() -> tuple[SupervisorError, SupervisorError]:
        with Client(str(sock_path), timeout=0.2) as c:
            with pytest.raises(SupervisorError) as mismatch:
                c.get_as("/containers/json", list[int])
            with pytest.raises(SupervisorError) as slow:
                c.get("/slow", s=2)
        return mismatch.value, slow.value

    mismatch, slow = await in_thread(run)
    assert str(mismatch).startswith("GET /containers/json: unexpected answer from the supervisor")
    assert str(slow) == "GET /slow: no answer from the supervisor within 0.2 s"


def test_no_supervisor(tmp_path: Path) -> None:
    missing = tmp_path / "api.sock"
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale))  # bound, never listening: connection refused
    for path in (missing, stale):
        c = Client(str(path), project="web")
        calls: list[Callable[[Client], object]] = [
            lambda c: c.get("/_ping"), lambda c: next(c.stream("GET", "/events")),
            lambda c: c.upgrade("POST", "/echo")]
        for call in calls:
            with pytest.raises(NoSupervisor) as info:
                call(c)
            assert str(info.value) == (f"no supervisor for project 'web' is running (nothing "
                                       f"answers on {path}); start one with 'supervise up'")
            assert info.value.exit_code == 1
    with pytest.raises(NoSupervisor, match=r"^no supervisor is running"):
        Client(str(missing)).get("/_ping")


def test_mock_transport_and_non_json_errors() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/gateway":
            return httpx.Response(502, text="<html>bad gateway</html>")
        return httpx.Response(200, json={"path": request.url.path,
                                         "query": str(request.url.query, "ascii")})

    c = Client("/nonexistent.sock", transport=httpx.MockTransport(answer))
    assert c.get("/v1.41/info", all=True) == {"path": "/v1.41/info", "query": "all=1"}
    with pytest.raises(ApiError) as info:
        c.get("/gateway")
    assert (info.value.status, str(info.value)) == (502, "GET /gateway: HTTP 502")


async def test_streams(toy: Toy, sock_path: Path) -> None:
    def run() -> None:
        with Client(str(sock_path)) as c:
            assert list(c.stream_as("GET", "/events", Row, n=3)) == [
                Row("event", 0), Row("event", 1), Row("event", 2)]
            assert b"".join(c.stream("GET", "/raw")) == b"no newline \x00\xffbinary"

    await in_thread(run)


async def test_upgrade(toy: Toy, sock_path: Path) -> None:
    def run() -> tuple[bytes, ApiError, SupervisorError]:
        with Client(str(sock_path)) as c:
            sock = c.upgrade("POST", "/echo", b"you")
            with sock:
                # The greeting was sent right behind the 101, probably in the same segment:
                # the client read the head exactly, so the greeting is still in the socket.
                greeting = sock.recv(65536)
                sock.sendall(b"x")
                sock.shutdown(socket.SHUT_WR)
                rest = b""
                while data := sock.recv(65536):
                    rest += data
            with pytest.raises(ApiError) as refused:
                c.upgrade("POST", "/nope")
            with pytest.raises(SupervisorError) as not_upgraded:
                c.upgrade("POST", "/containers/create", {"image": "i"})
            return greeting + rest, refused.value, not_upgraded.value

    echoed, refused, not_upgraded = await in_thread(run)
    assert echoed == b"hello you\nX"
    assert (refused.status, str(refused)) == (404, "page not found")
    assert str(not_upgraded) == ("POST /containers/create: expected the connection upgraded "
                                 "(101), got HTTP 201")


# --- asyncio ------------------------------------------------------------------------------


async def test_async_client(toy: Toy, sock_path: Path) -> None:
    async def main() -> None:
        async with AsyncClient(str(sock_path)) as c:
            assert await c.get("/_ping") == b"OK"
            assert await c.get_as("/containers/json", list[Row]) == [Row("a", 1)]
            assert await c.post("/containers/create", {"image": "i"}) == {"Id": "i", "Cmd": []}
            assert await c.put("/echo-query", None, a=True) == {"a": ["1"]}
            assert await c.delete("/containers/x") == {"force": False}
            assert [line async for line in c.stream("GET", "/events", n=2)] == [
                b'{"name":"event","n":0}', b'{"name":"event","n":1}']
            assert [r async for r in c.stream_as("GET", "/events", Row, n=1)] == [Row("event", 0)]
            with pytest.raises(ApiError, match=r"^No such container: missing$"):
                await c.get("/containers/missing/json")
            lines = c.stream("GET", "/forever")
            assert await lines.__anext__() == b'{"first":true}'
            await lines.aclose()  # what the TUI does when a pane closes
        with pytest.raises(NoSupervisor):
            await AsyncClient(str(sock_path) + ".missing").get("/_ping")

    await in_thread(lambda: asyncio.run(main()))
    with trio.fail_after(2):
        await toy.stream_closed.wait()
