"""The CLI's stdlib client against a real server: the same answers and errors as `Client`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from supervisor.errors import ApiError, NoSupervisor, SupervisorError
from supervisor.lightclient import LightClient
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


async def test_verbs_decode_json_and_bytes_on_one_connection(toy: Toy, sock_path: Path
                                                             ) -> None:
    def run() -> None:
        with LightClient(str(sock_path)) as c:
            assert c.get("/_ping") == b"OK"  # text/plain comes back as bytes
            sock = c._conn.sock if c._conn is not None else None
            assert c.get("/containers/json", all=True) == [{"name": "a", "n": 1},
                                                           {"name": "b", "n": 2}]
            assert c.get("/containers/json?all=1") == [{"name": "a", "n": 1},
                                                       {"name": "b", "n": 2}]
            assert c.post("/containers/create", CreateBody(image="s", cmd=["sh"])) == {
                "Id": "s", "Cmd": ["sh"]}  # a Struct body is encoded too
            assert c.post("/containers/create", {"image": "i"}) == {"Id": "i", "Cmd": []}
            assert c.delete("/containers/x", force=True) == {"force": True}
            assert c.post("/containers/x/stop", t=1) is None
            assert c.request("POST", "/echo-body", b"\x00raw") == b"\x00raw"
            assert c._conn is not None and c._conn.sock is sock  # kept alive throughout

    await in_thread(run)


async def test_query_encoding(toy: Toy, sock_path: Path) -> None:
    def run() -> Any:
        with LightClient(str(sock_path)) as c:
            return c.put("/echo-query", None, all=True, stream=False, t=0, skip=None,
                         names=["a", "b"], filters={"label": ["x=y"]}, row=Row("r", 1),
                         path="/etc/hosts")

    assert await in_thread(run) == {
        "all": ["1"], "stream": ["0"], "t": ["0"], "names": ["a", "b"],
        "filters": ['{"label":["x=y"]}'], "row": ['{"name":"r","n":1}'], "path": ["/etc/hosts"],
    }


async def test_api_errors_and_timeouts(toy: Toy, sock_path: Path) -> None:
    def run() -> list[SupervisorError]:
        errors = []
        with LightClient(str(sock_path), timeout=0.2) as c:
            for call in (lambda: c.get("/containers/missing/json"),
                         lambda: c.post("/containers/create", {"image": 3}),
                         lambda: c.get("/nope"),
                         lambda: list(c.stream("GET", "/events", n="x")),
                         lambda: c.get("/slow", s=2)):
                with pytest.raises(SupervisorError) as info:
                    call()
                errors.append(info.value)
            assert c.get("/_ping") == b"OK"  # usable again after each error
        return errors

    missing, bad, nope, stream, slow = await in_thread(run)
    assert isinstance(missing, ApiError) and isinstance(stream, ApiError)
    assert (missing.status, str(missing)) == (404, "No such container: missing")
    assert isinstance(bad, ApiError) and bad.status == 400 and "`$.image`" in str(bad)
    assert str(nope) == "page not found"
    assert (stream.status, str(stream)) == (
        400, "query parameter 'n': expected an integer, got 'x'")
    assert str(slow) == "GET /slow: no answer from the supervisor within 0.2 s"


def test_no_supervisor(tmp_path: Path) -> None:
    missing = tmp_path / "api.sock"
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale))  # bound, never listening: connection refused
    for path in (missing, stale):
        calls: list[Callable[[LightClient], object]] = [
            lambda c: c.get("/_ping"), lambda c: next(c.stream("GET", "/events")),
            lambda c: c.upgrade("POST", "/echo")]
        for call in calls:
            with pytest.raises(NoSupervisor) as info:
                call(LightClient(str(path), project="web"))
            assert str(info.value) == (f"no supervisor for project 'web' is running (nothing "
                                       f"answers on {path}); start one with 'supervise up'")


async def test_streams(toy: Toy, sock_path: Path, tmp_path: Path) -> None:
    def run() -> None:
        with LightClient(str(sock_path)) as c:
            assert [msgspec.json.decode(line, type=Row)
                    for line in c.stream("GET", "/events", n=3)] == [
                Row("event", 0), Row("event", 1), Row("event", 2)]
            assert b"".join(c.stream("GET", "/raw")) == b"no newline \x00\xffbinary"
            out = tmp_path / "out"
            fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                assert c.raw_into(fd, "/raw") == 19
            finally:
                os.close(fd)
            assert out.read_bytes() == b"no newline \x00\xffbinary"
            lines = c.stream("GET", "/forever")
            assert next(lines) == b'{"first":true}'  # at once, not when the stream ends
            lines.close()

    await in_thread(run)
    with trio.fail_after(5):
        await toy.stream_closed.wait()  # the server saw the client go


async def test_upgrade(toy: Toy, sock_path: Path) -> None:
    def run() -> bytes:
        with LightClient(str(sock_path)) as c, c.upgrade("POST", "/echo", b"you") as sock:
            greeting = sock.recv(65536)
            sock.sendall(b"x")
            sock.shutdown(socket.SHUT_WR)
            rest = b""
            while data := sock.recv(65536):
                rest += data
            return greeting + rest

    assert await in_thread(run) == b"hello you\nX"


def test_the_logs_verb_imports_neither_httpx_nor_trio() -> None:
    """`supervise logs` starts fast: no httpx (≈ 0.15 s with httpcore's trio and anyio)."""
    code = ("import sys; from supervisor.cli import build_parser, main; "
            "main(['-p', 'nosuchproject', 'logs', '--tail', '1', 'x']); "
            "print(sorted(m for m in ('httpx', 'trio', 'msgspec', 'supervisor.cli_api') "
            "if m in sys.modules))")
    env = dict(os.environ, SUPERVISE_RUN_DIR="/nonexistent-run",
               SUPERVISE_STATE_DIR="/nonexistent")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout + r.stderr
