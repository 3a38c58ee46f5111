"""The one client of the control API: the CLI, the TUI and scripts all talk through it.

HTTP/1.1 over the project's Unix socket (httpx), JSON by msgspec. `Client` is synchronous
(the CLI), `AsyncClient` runs on asyncio (the TUI; no trio here). What can go wrong::

    SupervisorError                 (supervisor.errors; exit 1)
     ├── NoSupervisor               nothing answers on api.sock: missing socket or refused
     ├── ApiError                   the supervisor answered 4xx/5xx; .status, str(e) its message
     └── (itself)                   permission denied, a timeout, a connection cut mid-answer,
                                    an answer we cannot decode

Query keywords become parameters: ``True``/``False`` are ``1``/``0`` (Docker's booleans),
``None`` is left out, a list repeats the parameter, a dict or Struct is sent as JSON (Docker's
``filters``). A JSON answer is decoded; any other content type comes back as bytes.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import urllib.parse
from collections.abc import AsyncGenerator, Generator
from types import TracebackType
from typing import Any, TypeVar

import httpx
import msgspec

from supervisor.errors import ApiError, NoSupervisor, SupervisorError
from supervisor.lightclient import parse_head  # stdlib: one copy

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")

BASE_URL = "http://supervise"
MAX_HEAD = 64 * 1024
_NOT_RUNNING = {errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR}


# --- shared by both clients ---------------------------------------------------------------


def _params(query: dict[str, object]) -> httpx.QueryParams | None:
    """None without parameters, so a query written into the path itself survives."""
    out: list[tuple[str, str | int | float | bool | None]] = []
    for name, value in query.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is None:
                continue
            if isinstance(item, bool):
                out.append((name, "1" if item else "0"))
            elif isinstance(item, dict | msgspec.Struct):
                out.append((name, msgspec.json.encode(item).decode()))
            else:
                out.append((name, str(item)))
    return httpx.QueryParams(out) if out else None


def _content(body: object) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    return msgspec.json.encode(body)


def _is_json(content_type: str) -> bool:
    kind = content_type.partition(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _is_lines(content_type: str) -> bool:
    kind = content_type.partition(";")[0].strip().lower()
    return _is_json(kind) or kind in ("application/x-ndjson", "application/jsonl", "text/plain")


def _error(status: int, content: bytes, what: str) -> ApiError:
    """The server's ``{"message": ...}``, or a line saying what came instead."""
    try:
        message = msgspec.json.decode(content, type=dict[str, Any]).get("message")
    except (msgspec.DecodeError, msgspec.ValidationError):
        message = None
    if not isinstance(message, str) or not message:
        message = f"{what}: HTTP {status}"
    return ApiError(message, status)


def _decode(content: bytes, content_type: str, what: str, type: Any = None) -> Any:
    if type is None and not content:
        return None
    if type is None and not _is_json(content_type):
        return content
    try:
        return msgspec.json.decode(content) if type is None else msgspec.json.decode(
            content, type=type
        )
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SupervisorError(f"{what}: unexpected answer from the supervisor: {exc}") from exc


def _oserror(exc: BaseException) -> OSError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class _Common:
    def __init__(self, socket_path: str, timeout: float | None, project: str | None) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.project = project

    def no_supervisor(self) -> NoSupervisor:
        who = f"no supervisor for project '{self.project}'" if self.project else "no supervisor"
        return NoSupervisor(
            f"{who} is running (nothing answers on {self.socket_path}); start one with "
            "'supervise up'"
        )

    def connect_failed(self, exc: BaseException) -> SupervisorError:
        cause = _oserror(exc)
        if cause is None or cause.errno in _NOT_RUNNING:
            return self.no_supervisor()
        if cause.errno in (errno.EACCES, errno.EPERM):
            return SupervisorError(
                f"{self.socket_path}: permission denied, the control socket is root-only"
            )
        return SupervisorError(f"{self.socket_path}: {cause.strerror or cause}")

    def transport_failed(self, exc: httpx.TransportError, what: str) -> SupervisorError:
        if isinstance(exc, httpx.ConnectError):
            return self.connect_failed(exc)
        if isinstance(exc, httpx.TimeoutException):
            return SupervisorError(
                f"{what}: no answer from the supervisor within {self.timeout:g} s"
            )
        reason = str(exc) or type(exc).__name__
        return SupervisorError(f"{what}: the supervisor closed the connection ({reason})")

    def stream_timeout(self) -> httpx.Timeout:
        # A stream may be quiet for hours (logs -f, events): no read timeout.
        return httpx.Timeout(self.timeout, read=None)


def _split_lines(buffer: bytearray, chunk: bytes) -> list[bytes]:
    buffer += chunk
    *lines, rest = bytes(buffer).split(b"\n")
    buffer[:] = rest
    return lines


# --- sync ---------------------------------------------------------------------------------


class Client(_Common):
    """The control API, synchronously. ``project`` only words the no-supervisor hint."""

    def __init__(
        self,
        socket_path: str,
        timeout: float | None = 30,
        *,
        project: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(socket_path, timeout, project)
        self._http = httpx.Client(
            # verify=False: no TLS on a Unix socket, and loading the CA bundle costs ~30 ms.
            transport=transport or httpx.HTTPTransport(uds=socket_path, verify=False),
            base_url=BASE_URL,
            timeout=timeout,
            trust_env=False,  # no proxy or .netrc settings from the environment, ever
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def request(self, method: str, path: str, /, body: object = None,
                **query: object) -> Any:
        """Any method; the JSON answer decoded (bytes if not JSON, None if empty)."""
        return self._call(method, path, body, query, None)

    def _call(self, method: str, path: str, body: object, query: dict[str, object],
              type: Any) -> Any:
        what = f"{method} {path}"
        try:
            response = self._http.request(
                method, path, content=_content(body), params=_params(query)
            )
        except httpx.TransportError as exc:
            raise self.transport_failed(exc, what) from exc
        if response.status_code >= 300:
            raise _error(response.status_code, response.content, what)
        return _decode(response.content, response.headers.get("content-type", ""), what, type)

    def get(self, path: str, /, **query: object) -> Any:
        return self.request("GET", path, **query)

    def get_as(self, path: str, type: type[T], /, **query: object) -> T:
        result: T = self._call("GET", path, None, query, type)
        return result

    def post(self, path: str, /, body: object = None, **query: object) -> Any:
        return self.request("POST", path, body, **query)

    def put(self, path: str, /, body: object = None, **query: object) -> Any:
        return self.request("PUT", path, body, **query)

    def delete(self, path: str, /, **query: object) -> Any:
        return self.request("DELETE", path, **query)

    def stream(self, method: str, path: str, /, body: object = None,
               **query: object) -> Generator[bytes, None, None]:
        """The body as it comes: NDJSON lines (without the newline), or raw chunks when the
        server sends anything but JSON lines (``logs?raw=1``). Ends with the server's stream;
        closing the iterator (or Ctrl-C) closes the connection."""
        what = f"{method} {path}"
        try:
            with self._http.stream(method, path, content=_content(body), params=_params(query),
                                   timeout=self.stream_timeout()) as response:
                if response.status_code >= 300:
                    raise _error(response.status_code, response.read(), what)
                if not _is_lines(response.headers.get("content-type", "")):
                    yield from response.iter_raw()
                    return
                buffer = bytearray()
                for chunk in response.iter_raw():
                    yield from _split_lines(buffer, chunk)
                if buffer:
                    yield bytes(buffer)
        except httpx.TransportError as exc:
            raise self.transport_failed(exc, what) from exc

    def stream_as(self, method: str, path: str, type: type[T], /, body: object = None,
                  **query: object) -> Generator[T, None, None]:
        """An NDJSON stream, each line decoded into ``type``."""
        for line in self.stream(method, path, body, **query):
            if line.strip():
                yield _decode(line, "application/json", f"{method} {path}", type)

    def upgrade(self, method: str, path: str, /, body: object = None,
                **query: object) -> socket.socket:
        """Docker's hijack: ask for ``Upgrade: tcp``, expect ``101``, return the raw socket.

        The response head is consumed exactly (peeked, then read to its end), so whatever
        the server sends right behind it is still in the socket for the caller's ``recv``.
        """
        from supervisor.lightclient import LightClient  # the one copy of the hijack

        return LightClient(self.socket_path, self.timeout, project=self.project).upgrade(
            method, path, body, **query)


# --- asyncio ------------------------------------------------------------------------------


class AsyncClient(_Common):
    """The control API on asyncio, for the TUI."""

    def __init__(
        self,
        socket_path: str,
        timeout: float | None = 30,
        *,
        project: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(socket_path, timeout, project)
        self._http = httpx.AsyncClient(
            transport=transport or httpx.AsyncHTTPTransport(uds=socket_path, verify=False),
            base_url=BASE_URL,
            timeout=timeout,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def request(self, method: str, path: str, /, body: object = None,
                      **query: object) -> Any:
        """Any method; the JSON answer decoded (bytes if not JSON, None if empty)."""
        return await self._call(method, path, body, query, None)

    async def _call(self, method: str, path: str, body: object, query: dict[str, object],
                    type: Any) -> Any:
        what = f"{method} {path}"
        try:
            response = await self._http.request(
                method, path, content=_content(body), params=_params(query)
            )
        except httpx.TransportError as exc:
            raise self.transport_failed(exc, what) from exc
        if response.status_code >= 300:
            raise _error(response.status_code, response.content, what)
        return _decode(response.content, response.headers.get("content-type", ""), what, type)

    async def get(self, path: str, /, **query: object) -> Any:
        return await self.request("GET", path, **query)

    async def get_as(self, path: str, type: type[T], /, **query: object) -> T:
        result: T = await self._call("GET", path, None, query, type)
        return result

    async def post(self, path: str, /, body: object = None, **query: object) -> Any:
        return await self.request("POST", path, body, **query)

    async def put(self, path: str, /, body: object = None, **query: object) -> Any:
        return await self.request("PUT", path, body, **query)

    async def delete(self, path: str, /, **query: object) -> Any:
        return await self.request("DELETE", path, **query)

    async def stream(self, method: str, path: str, /, body: object = None,
                     **query: object) -> AsyncGenerator[bytes, None]:
        """As `Client.stream`; ``aclose()`` the iterator (or cancel) to close the connection."""
        what = f"{method} {path}"
        try:
            async with self._http.stream(
                method, path, content=_content(body), params=_params(query),
                timeout=self.stream_timeout(),
            ) as response:
                if response.status_code >= 300:
                    raise _error(response.status_code, await response.aread(), what)
                if not _is_lines(response.headers.get("content-type", "")):
                    async for chunk in response.aiter_raw():
                        yield chunk
                    return
                buffer = bytearray()
                async for chunk in response.aiter_raw():
                    for line in _split_lines(buffer, chunk):
                        yield line
                if buffer:
                    yield bytes(buffer)
        except httpx.TransportError as exc:
            raise self.transport_failed(exc, what) from exc

    async def stream_as(self, method: str, path: str, type: type[T], /, body: object = None,
                        **query: object) -> AsyncGenerator[T, None]:
        async for line in self.stream(method, path, body, **query):
            if line.strip():
                yield _decode(line, "application/json", f"{method} {path}", type)

    async def lines(self, path: str, /, *, pace: float = 0.0,
                    **query: object) -> AsyncGenerator[bytes, None]:
        """A GET NDJSON stream line by line (without the newline), as `stream`, but on
        asyncio's own streams: for streams read for hours at hundreds of lines a second (the
        shell's logs, stats and events), where httpx's path per chunk (anyio, httpcore, h11)
        costs several times more.  Chunks that arrive together are handled in one wake-up;
        with `pace`, the reader waits that long after each read, so that a chatty stream is
        read in batches (a screen redrawn 3 times a second needs no more than 10 reads).
        Errors as `stream`'s; ``aclose()`` the iterator (or cancel) to close the connection.
        """
        what = f"GET {path}"
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_unix_connection(self.socket_path)
        except (OSError, TimeoutError) as exc:
            raise self.connect_failed(exc) from exc
        try:
            params = _params(query)
            target = urllib.parse.quote(path, safe="/?=&%") + (f"?{params}" if params else "")
            writer.write(f"GET {target} HTTP/1.1\r\nHost: supervise\r\n"
                         "Accept: application/x-ndjson\r\n\r\n".encode("ascii"))
            async with asyncio.timeout(self.timeout):
                head = await reader.readuntil(b"\r\n\r\n")
            status, headers = parse_head(head, what)
            chunked = "chunked" in headers.get("transfer-encoding", "").lower()
            if status >= 300:
                async with asyncio.timeout(self.timeout):
                    body = await _read_all(reader, headers, chunked)
                raise _error(status, body, what)
            framing = _Chunks() if chunked else None
            pending = bytearray()
            while True:
                data = await reader.read(65536)
                if framing is not None:
                    data, done = framing.feed(data)
                else:
                    done = not data
                for line in _split_lines(pending, data):
                    yield line
                if done:
                    if pending:
                        yield bytes(pending)
                    return
                if not data and framing is not None and framing.eof:
                    raise SupervisorError(f"{what}: the supervisor closed the connection "
                                          "(in the middle of the stream)")
                if pace and isinstance(writer.transport, asyncio.ReadTransport):
                    writer.transport.pause_reading()  # no wake-ups meanwhile: the bytes
                    await asyncio.sleep(pace)  # wait in the socket
                    writer.transport.resume_reading()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise SupervisorError(f"{what}: the supervisor closed the connection "
                                  f"({getattr(exc, 'strerror', None) or exc})") from exc
        except TimeoutError as exc:
            raise SupervisorError(
                f"{what}: no answer from the supervisor within {self.timeout:g} s") from exc
        finally:
            writer.close()


async def _read_all(reader: asyncio.StreamReader, headers: dict[str, str],
                    chunked: bool) -> bytes:
    """An error answer's body (small: our server's one-line message)."""
    if chunked:
        framing, body = _Chunks(), bytearray()
        while not framing.done:
            data = await reader.read(65536)
            out, _ = framing.feed(data)
            body += out
            if not data:
                break
        return bytes(body[:MAX_HEAD])
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        length = 0
    return await reader.readexactly(min(length, MAX_HEAD)) if length else b""


class _Chunks:
    """HTTP/1.1 chunked transfer coding, decoded incrementally from whatever arrived."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.done = False
        self.eof = False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """The payload now complete, and whether the last chunk came."""
        if not data:
            self.eof = True
        self._buffer += data
        out = bytearray()
        while not self.done:
            end = self._buffer.find(b"\r\n")
            if end < 0:
                break
            try:
                size = int(bytes(self._buffer[:end]).split(b";")[0], 16)
            except ValueError:
                raise OSError("bad chunk size in the stream") from None
            if size == 0:
                self.done = True
                break
            if len(self._buffer) < end + 2 + size + 2:
                break
            out += self._buffer[end + 2:end + 2 + size]
            del self._buffer[:end + 2 + size + 2]
        return bytes(out), self.done
