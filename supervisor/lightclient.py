"""The control API for the CLI, with the standard library only: a command starts fast.

`supervise logs NAME > file` must finish in a fraction of `podman logs`' time, CLI start-up
included, and every verb pays its start-up once per command.  ``client.Client`` (httpx) costs
≈ 0.15 s of imports before its first request (httpcore imports trio and anyio); this one,
``http.client`` over the Unix socket, costs ≈ 10 ms.  It speaks the same small API as
``Client`` (``get``/``post``/``put``/``delete``/``request``, ``stream``, ``upgrade``) with the
same errors::

    SupervisorError                 (supervisor.errors; exit 1)
     ├── NoSupervisor               nothing answers on api.sock: missing socket or refused
     ├── ApiError                   the supervisor answered 4xx/5xx; .status, str(e) its message
     └── (itself)                   permission denied, a timeout, a connection cut mid-answer,
                                    an answer we cannot decode

A JSON answer is decoded with ``json`` (what the CLI gets are plain lists and dicts); any
other content type comes back as bytes.  ``client.Client`` stays the client of the TUI
(asyncio) and of scripts that want msgspec types.
"""

from __future__ import annotations

import errno
import http.client
import json
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

from supervisor.errors import ApiError, NoSupervisor, SupervisorError

__all__ = ["LightClient"]

MAX_HEAD = 64 * 1024
READ_SIZE = 1 << 20  # a raw logs stream comes in ~1 MiB chunks
_NOT_RUNNING = {errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR}


class _UnixConnection(http.client.HTTPConnection):
    """http.client's connection, connected to a Unix socket instead of a host."""

    def __init__(self, socket_path: str, timeout: float | None) -> None:
        super().__init__("supervise", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _builtins(value: object) -> object:
    """msgspec Structs (and what else json cannot encode) as plain data; msgspec is imported
    only if such a value comes."""
    import msgspec

    return msgspec.to_builtins(value)


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), default=_builtins)


def query_string(query: dict[str, object]) -> str:
    """Docker's conventions: booleans are 1/0, None is left out, a list repeats the parameter,
    a dict or Struct is sent as JSON (``filters``)."""
    out: list[tuple[str, str]] = []
    for name, value in query.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is None:
                continue
            if isinstance(item, bool):
                out.append((name, "1" if item else "0"))
            elif isinstance(item, str | int | float):
                out.append((name, str(item)))
            else:
                out.append((name, _json(item)))
    return urllib.parse.urlencode(out)


def _target(path: str, query: dict[str, object]) -> str:
    target = urllib.parse.quote(path, safe="/?=&%:")
    params = query_string(query)
    if params:
        target += ("&" if "?" in target else "?") + params
    return target


def _content(body: object) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    return _json(body).encode()


def _kind(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def _is_json(content_type: str) -> bool:
    kind = _kind(content_type)
    return kind == "application/json" or kind.endswith("+json")


def _is_lines(content_type: str) -> bool:
    kind = _kind(content_type)
    return _is_json(kind) or kind in ("application/x-ndjson", "application/jsonl", "text/plain")


def _error(status: int, content: bytes, what: str) -> ApiError:
    """The server's ``{"message": ...}``, or a line saying what came instead."""
    try:
        decoded = json.loads(content)
        message = decoded.get("message") if isinstance(decoded, dict) else None
    except ValueError:
        message = None
    if not isinstance(message, str) or not message:
        message = f"{what}: HTTP {status}"
    return ApiError(message, status)


def _decode(content: bytes, content_type: str, what: str) -> Any:
    if not content:
        return None
    if not _is_json(content_type):
        return content
    try:
        return json.loads(content)
    except ValueError as exc:
        raise SupervisorError(f"{what}: unexpected answer from the supervisor: {exc}") from exc


class LightClient:
    """The control API, synchronously, one connection kept open between requests.
    ``project`` only words the no-supervisor hint."""

    def __init__(self, socket_path: str, timeout: float | None = 30, *,
                 project: str | None = None) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.project = project
        self._conn: _UnixConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> LightClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- errors ---------------------------------------------------------------------------

    def no_supervisor(self) -> NoSupervisor:
        who = f"no supervisor for project '{self.project}'" if self.project else "no supervisor"
        return NoSupervisor(f"{who} is running (nothing answers on {self.socket_path}); "
                            "start one with 'supervise up'")

    def connect_failed(self, exc: OSError) -> SupervisorError:
        if exc.errno is None or exc.errno in _NOT_RUNNING:
            return self.no_supervisor()
        if exc.errno in (errno.EACCES, errno.EPERM):
            return SupervisorError(
                f"{self.socket_path}: permission denied, the control socket is root-only")
        return SupervisorError(f"{self.socket_path}: {exc.strerror or exc}")

    def _failed(self, exc: Exception, what: str) -> SupervisorError:
        if isinstance(exc, TimeoutError):
            return SupervisorError(
                f"{what}: no answer from the supervisor within {self.timeout:g} s")
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) \
            or type(exc).__name__
        return SupervisorError(f"{what}: the supervisor closed the connection ({reason})")

    # -- requests -------------------------------------------------------------------------

    def _send(self, method: str, path: str, body: object, query: dict[str, object],
              timeout: float | None) -> http.client.HTTPResponse:
        """The response with its head read; the body is the caller's to read."""
        what = f"{method} {path}"
        content = _content(body)
        headers = {"Host": "supervise", "Accept-Encoding": "identity"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        target = _target(path, query)
        for attempt in (1, 2):
            fresh = self._conn is None
            if self._conn is None:
                self._conn = _UnixConnection(self.socket_path, self.timeout)
                try:
                    self._conn.connect()
                except OSError as exc:
                    self._conn = None
                    raise self.connect_failed(exc) from exc
            conn = self._conn
            try:
                conn.request(method, target, body=content, headers=headers)
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError
                    ) as exc:
                self.close()  # a kept-alive connection the server had closed: once more
                if fresh or attempt == 2:
                    raise self._failed(exc, what) from exc
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise self._failed(exc, what) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def request(self, method: str, path: str, /, body: object = None,
                **query: object) -> Any:
        """Any method; the JSON answer decoded (bytes if not JSON, None if empty)."""
        what = f"{method} {path}"
        response = self._send(method, path, body, query, self.timeout)
        try:
            content = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise self._failed(exc, what) from exc
        if response.will_close:
            self.close()
        if response.status >= 300:
            raise _error(response.status, content, what)
        return _decode(content, response.getheader("content-type", ""), what)

    def get(self, path: str, /, **query: object) -> Any:
        return self.request("GET", path, **query)

    def post(self, path: str, /, body: object = None, **query: object) -> Any:
        return self.request("POST", path, body, **query)

    def put(self, path: str, /, body: object = None, **query: object) -> Any:
        return self.request("PUT", path, body, **query)

    def delete(self, path: str, /, **query: object) -> Any:
        return self.request("DELETE", path, **query)

    def stream(self, method: str, path: str, /, body: object = None,
               **query: object) -> Iterator[bytes]:
        """The body as it comes: NDJSON lines (without the newline), or raw chunks (up to
        1 MiB, each as soon as it arrived) when the server sends anything but JSON lines
        (``logs?raw=1``).  No read timeout: a stream may be quiet for hours."""
        what = f"{method} {path}"
        response = self._send(method, path, body, query, None)
        try:
            if response.status >= 300:
                raise _error(response.status, response.read(), what)
            lines = _is_lines(response.getheader("content-type", ""))
            rest = b""
            while True:
                try:
                    data = response.read1(READ_SIZE)
                except (OSError, http.client.HTTPException) as exc:
                    raise self._failed(exc, what) from exc
                if not data:
                    break
                if not lines:
                    yield data
                    continue
                *complete, rest = (rest + data).split(b"\n")
                yield from complete
            if rest:
                yield rest
        finally:
            self.close()  # whether read to its end or abandoned: never reused mid-body

    def raw_into(self, fd: int, path: str, /, **query: object) -> int:
        """A raw stream's body written to ``fd`` as it comes; returns the bytes written.
        The fast path of `logs NAME > file`: one read and one write per ~1 MiB chunk."""
        import os

        total = 0
        for data in self.stream("GET", path, **query):
            view = memoryview(data)
            while view:
                done = os.write(fd, view)
                view = view[done:]
            total += len(data)
        return total

    def upgrade(self, method: str, path: str, /, body: object = None,
                **query: object) -> socket.socket:
        """Docker's hijack: ask for ``Upgrade: tcp``, expect ``101``, return the raw socket.

        The response head is consumed exactly (peeked, then read to its end), so whatever
        the server sends right behind it is still in the socket for the caller's ``recv``.
        """
        what = f"{method} {path}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.socket_path)
            except OSError as exc:
                raise self.connect_failed(exc) from exc
            content = _content(body) or b""
            head = (f"{method} {_target(path, query)} HTTP/1.1\r\nHost: supervise\r\n"
                    "Connection: Upgrade\r\nUpgrade: tcp\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(content)}\r\n\r\n")
            try:
                sock.sendall(head.encode("ascii") + content)
                status, headers = read_head(sock, what)
                if status >= 300:
                    raise _error(status, read_body(sock, headers), what)
                if status != 101:
                    raise SupervisorError(f"{what}: expected the connection upgraded (101), "
                                          f"got HTTP {status}")
            except TimeoutError as exc:
                raise SupervisorError(
                    f"{what}: no answer from the supervisor within {self.timeout:g} s"
                ) from exc
            except OSError as exc:
                raise SupervisorError(
                    f"{what}: the supervisor closed the connection ({exc.strerror or exc})"
                ) from exc
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        return sock


def read_head(sock: socket.socket, what: str) -> tuple[int, dict[str, str]]:
    """Status and headers, reading not one byte past the blank line that ends them."""
    head = b""
    while True:
        peeked = sock.recv(65536, socket.MSG_PEEK)
        if not peeked:
            raise SupervisorError(f"{what}: the supervisor closed the connection before answering")
        end = (head + peeked).find(b"\r\n\r\n")
        if end >= 0:
            head += _recv_exactly(sock, end + 4 - len(head))
            break
        head += _recv_exactly(sock, len(peeked))  # no end in there: all of it is head
        if len(head) > MAX_HEAD:
            raise SupervisorError(
                f"{what}: unexpected answer from the supervisor: headers too long")
    return parse_head(head, what)


def parse_head(head: bytes, what: str) -> tuple[int, dict[str, str]]:
    """Status and headers of a response head (ending in the blank line)."""
    status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise SupervisorError(f"{what}: unexpected answer from the supervisor: {status_line!r}")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_body(sock: socket.socket, headers: dict[str, str]) -> bytes:
    """An error body: our server always sends one with a Content-Length."""
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        length = 0
    return _recv_exactly(sock, min(length, MAX_HEAD))
