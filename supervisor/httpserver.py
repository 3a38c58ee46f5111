"""A small HTTP/1.1 server on a Unix socket (trio + h11), knowing nothing of containers.

supervisor/api.py declares routes on a `Router`; `serve_unix` answers them. A handler is
``async def handler(request: Request) -> Response | Stream | Upgrade | object``: anything
that is not one of the three is encoded as a JSON body with status 200 (``None`` is 204).

    HTTPError(status, message)   raised by a handler -> ``{"message": ...}`` with that status

The wire follows the Docker Engine API: error bodies are ``{"message": "..."}``, an unknown
path is 404 ``page not found``, a ``/v1.41`` version prefix is ignored, streams are chunked
(NDJSON by default), and an interactive endpoint hijacks the connection with
``101 UPGRADED`` (``Connection: Upgrade``, ``Upgrade: tcp``) and hands the raw byte stream
to its handler.

A handler validates before it returns a `Stream` or an `Upgrade`: once the status line is on
the wire an error can no longer become a 4xx, so a failing stream is cut short (the client
sees an incomplete chunked body) and the error is logged.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import stat
import urllib.parse
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

import h11
import msgspec
import trio

from supervisor.errors import SupervisorError

__all__ = [
    "MAX_BODY",
    "HTTPError",
    "Request",
    "Response",
    "Router",
    "Stream",
    "Upgrade",
    "serve_unix",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BODY = 16 * 1024 * 1024
MAX_HEADERS = 64 * 1024  # request line + headers (Go allows 1 MiB; ours are tiny)
RECEIVE_SIZE = 64 * 1024
# While a stream runs we read the socket only to notice the client leaving; pipelined bytes
# beyond this are left in the kernel (we stop watching) rather than buffered without bound.
MAX_PIPELINED = 64 * 1024
TEARDOWN_SECONDS = 2.0  # bound on closing an iterator or a socket once a request is over
DRAIN_SECONDS = 5.0  # how long we swallow an unwanted request body so the client reads our 413
DRAIN_IDLE_SECONDS = 0.5  # ... unless the client pauses this long
DRAIN_BYTES = 64 * 1024 * 1024
VERSION_PREFIX = re.compile(r"^/v[0-9]+(?:\.[0-9]+)?(?=/)")
PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
SERVER_HEADER = ("Server", "supervise")


class HTTPError(Exception):
    """Raised by a handler: the client gets ``status`` and ``{"message": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- requests ---------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, version prefix stripped
    params: dict[str, str]  # from the route pattern's {name} segments
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased; repeated headers joined with ", "
    body: bytes

    def json(self, type: type[T]) -> T:
        """The body decoded into ``type``; an empty body is ``{}`` (a Struct's defaults)."""
        if not self.body.strip():
            try:
                return msgspec.json.decode(b"{}", type=type)
            except msgspec.ValidationError as exc:
                raise HTTPError(400, f"request body: empty, {_lower_first(str(exc))}") from exc
        try:
            return msgspec.json.decode(self.body, type=type)
        except msgspec.ValidationError as exc:
            raise HTTPError(400, f"request body: {_lower_first(str(exc))}") from exc
        except msgspec.DecodeError as exc:
            raise HTTPError(400, f"request body: {_lower_first(str(exc))}") from exc

    def query_str(self, name: str, default: str = "") -> str:
        """The first value of a query parameter (Go's ``Form.Get``), else ``default``."""
        values = self.query.get(name)
        return values[0] if values else default

    def query_list(self, name: str) -> list[str]:
        return list(self.query.get(name, ()))

    def query_bool(self, name: str, default: bool = False) -> bool:
        """Docker's booleans: ``1/true/yes/on`` and ``0/false/no/off`` or empty."""
        values = self.query.get(name)
        if not values:
            return default
        value = values[0].strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("", "0", "false", "no", "off", "none"):
            return False
        raise HTTPError(400, f"query parameter '{name}': expected 1 or 0, got {values[0]!r}")

    def query_int(self, name: str, default: int) -> int:
        values = self.query.get(name)
        if not values:
            return default
        try:
            return int(values[0])
        except ValueError:
            raise HTTPError(
                400, f"query parameter '{name}': expected an integer, got {values[0]!r}"
            ) from None

    def query_json(self, name: str, type: type[T], default: T) -> T:
        """A JSON-valued parameter, as Docker's ``filters={"label":["a=b"]}``."""
        values = self.query.get(name)
        if not values or not values[0]:
            return default
        try:
            return msgspec.json.decode(values[0], type=type)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise HTTPError(400, f"query parameter '{name}': {_lower_first(str(exc))}") from exc


def _lower_first(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].lower() + text[1:]


# --- what handlers return -----------------------------------------------------------------


@dataclass
class Response:
    """A whole body at once. ``body`` bytes are sent as they are; anything else is JSON."""

    body: Any = None
    status: int = 200
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stream:
    """A chunked body, sent chunk by chunk as the iterator yields.

    A chunk that is bytes is sent as it is; anything else is encoded as one NDJSON line.
    The stream ends when the iterator ends; if the client goes away first, the iterator is
    cancelled and closed (its ``finally`` runs).
    """

    chunks: AsyncIterable[Any]
    content_type: str = "application/x-ndjson"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Upgrade:
    """Hijack the connection (Docker's attach/exec start): 101, then raw bytes both ways.

    The handler owns the stream until it returns; the connection is closed afterwards.
    """

    handler: Callable[[trio.abc.HalfCloseableStream, Request], Awaitable[None]]


Handler = Callable[[Request], Awaitable[object]]
H = TypeVar("H", bound=Handler)


# --- routing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: str
    segments: tuple[str | None, ...]  # None is a {param}
    names: tuple[str, ...]
    handler: Handler

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.segments):
            return None
        params: dict[str, str] = {}
        names = iter(self.names)
        for want, got in zip(self.segments, parts, strict=True):
            if want is None:
                if not got:
                    return None
                params[next(names)] = got
            elif want != got:
                return None
        return params

    @property
    def specificity(self) -> tuple[bool, ...]:
        """Literal segments win over parameters, left to right."""
        return tuple(s is not None for s in self.segments)


class Router:
    """Routes by method and path pattern; ``{name}`` matches one non-empty segment."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []

    def route(self, method: str, pattern: str) -> Callable[[H], H]:
        method = method.upper()
        if not pattern.startswith("/"):
            raise ValueError(f"route {pattern!r}: expected a path starting with '/'")
        segments: list[str | None] = []
        names: list[str] = []
        for part in pattern[1:].split("/"):
            found = PARAM.fullmatch(part)
            if found:
                if found[1] in names:
                    raise ValueError(f"route {pattern!r}: parameter {found[1]!r} twice")
                names.append(found[1])
                segments.append(None)
            elif "{" in part or "}" in part:
                raise ValueError(f"route {pattern!r}: expected '{{name}}' as a whole segment")
            else:
                segments.append(part)
        for existing in self._routes:
            if existing.method == method and existing.segments == tuple(segments):
                raise ValueError(f"route {method} {pattern}: already taken by {existing.pattern}")

        def register(handler: H) -> H:
            self._routes.append(
                _Route(method, pattern, tuple(segments), tuple(names), handler)
            )
            return handler

        return register

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and path parameters, or HTTPError 404 / 405."""
        parts = path[1:].split("/")
        best: tuple[_Route, dict[str, str]] | None = None
        allowed: set[str] = set()
        for route in self._routes:
            params = route.match(parts)
            if params is None:
                continue
            if route.method != method:
                allowed.add(route.method)
                continue
            if best is None or route.specificity > best[0].specificity:
                best = (route, params)
        if best is not None:
            return best[0].handler, best[1]
        if allowed:
            raise HTTPError(
                405, f"{method} {path}: method not allowed, expected {', '.join(sorted(allowed))}"
            )
        raise HTTPError(404, "page not found")


def _parse_target(target: bytes) -> tuple[str, dict[str, list[str]]]:
    """Path (percent-decoded per segment, version prefix gone) and query of a request target."""
    text = target.decode("ascii", "replace")  # h11 admits only visible ASCII anyway
    if not text.startswith("/"):
        split = urllib.parse.urlsplit(text)
        if not (split.scheme and split.path.startswith("/")):
            raise HTTPError(400, f"request target: expected a path such as /_ping, got {text!r}")
        raw_path, raw_query = split.path, split.query
    else:
        raw_path, _, raw_query = text.partition("?")
        raw_path = raw_path.partition("#")[0]
    raw_path = VERSION_PREFIX.sub("", raw_path, count=1)
    try:
        # Decode each segment on its own so an encoded '/' cannot forge a separator.
        path = "/".join(
            urllib.parse.unquote(part, errors="strict") for part in raw_path.split("/")
        )
        query = urllib.parse.parse_qs(
            raw_query, keep_blank_values=True, errors="strict", max_num_fields=1000
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPError(400, f"request target: {_lower_first(str(exc))}") from exc
    return path, query


# --- the connection -----------------------------------------------------------------------


class _ClientGone(Exception):
    pass


class _Connection:
    def __init__(self, stream: trio.SocketStream, router: Router) -> None:
        self.stream = stream
        self.router = router
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        self.method = b""  # of the request being answered
        self.mid_send = False  # a cancelled send_all leaves the framing unknown

    async def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            self.mid_send = True
            await self.stream.send_all(data)
            self.mid_send = False

    async def next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            if self.h11.they_are_waiting_for_100_continue:
                await self.send(h11.InformationalResponse(status_code=100, headers=[]))
            self.h11.receive_data(await self.stream.receive_some(RECEIVE_SIZE))

    async def serve(self) -> None:
        try:
            while await self.serve_one():
                self.h11.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, _ClientGone):
            pass  # the client went away; nothing to tell it
        except h11.LocalProtocolError as exc:
            log.error("HTTP: %s", exc)  # our own bug; drop the connection, keep serving
        except Exception:
            log.exception("HTTP connection failed")  # likewise: one connection, not the server
        finally:
            with trio.move_on_after(TEARDOWN_SECONDS, shield=True):
                await self.stream.aclose()

    async def serve_one(self) -> bool:
        """Answer one request; whether the connection may carry another."""
        self.method = b""
        try:
            found = await self.read_request()
        except h11.RemoteProtocolError as exc:
            # Malformed HTTP: say so and close, whatever h11's hint (501 for an unknown
            # Transfer-Encoding): the client sent something we will not parse, a 4xx.
            hint = exc.error_status_hint
            await self.send_error(hint if 400 <= hint < 500 else 400,
                                  f"bad request: {_lower_first(str(exc))}")
            return False
        except HTTPError as exc:  # a bad target, an unknown path or method
            await self.send_error(exc.status, exc.message)
            return self.reusable()
        if found is None:
            return False
        request, handler = found
        try:
            result = await handler(request)
        except HTTPError as exc:
            if exc.status >= 500:
                log.warning("%s: %s", _describe(request), exc.message)
            await self.send_error(exc.status, exc.message)
            return self.reusable()
        except Exception as exc:
            log.exception("%s: handler failed", _describe(request))
            await self.send_error(500, f"internal error: {_one_line(exc)}")
            return self.reusable()
        return await self.send_result(request, result)

    async def read_request(self) -> tuple[Request, Handler] | None:
        """The next request and its handler; None when the connection is over."""
        event = await self.next_event()
        if isinstance(event, h11.ConnectionClosed):
            return None
        assert isinstance(event, h11.Request), event
        self.method = event.method
        body = await self.read_body(event)
        if body is None:
            return None
        path, query = _parse_target(event.target)
        method = event.method.decode("ascii")
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("latin-1")  # h11 lower-cases names
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        handler, params = self.router.resolve(method, path)
        return Request(method, path, params, query, headers, body), handler

    async def read_body(self, head: h11.Request) -> bytes | None:
        """The whole body, or None once a 413 was sent (the connection must close)."""
        for name, value in head.headers:
            if name == b"content-length" and int(value) > MAX_BODY:
                await self.refuse_body()
                return None
        body = bytearray()
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    await self.refuse_body()
                    return None
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            else:  # h11 reports a body cut short as RemoteProtocolError; this is belt and braces
                raise _ClientGone

    async def refuse_body(self) -> None:
        await self.send_error(413, f"request body: larger than {MAX_BODY // (1024 * 1024)} MiB")
        # A client still writing the body would see EPIPE and never read our 413 (httpx
        # sends the whole body first): swallow what it sends while it keeps sending, then close.
        received = 0
        with trio.move_on_after(DRAIN_SECONDS):
            while received < DRAIN_BYTES:
                with trio.move_on_after(DRAIN_IDLE_SECONDS) as idle:
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                if idle.cancelled_caught or not data:
                    break
                received += len(data)

    def reusable(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    async def send_error(self, status: int, message: str) -> None:
        if self.h11.our_state is not h11.SEND_RESPONSE and self.h11.our_state is not h11.IDLE:
            return  # a response is already under way; nothing coherent can be said
        await self.send_response(Response({"message": message}, status=status))

    async def send_response(self, response: Response) -> None:
        if isinstance(response.body, bytes | bytearray | memoryview):
            body = bytes(response.body)
        elif response.body is None:
            body = b""
        else:
            body = msgspec.json.encode(response.body)
        no_body = response.status in (204, 304) or 100 <= response.status < 200
        headers = [SERVER_HEADER, *response.headers.items()]
        if not no_body:
            headers += [("Content-Type", response.content_type), ("Content-Length", str(len(body)))]
        if self.h11.their_state is h11.ERROR or self.h11.their_state is h11.SEND_BODY:
            headers.append(("Connection", "close"))
        await self.send(_response(response.status, headers))
        if body and not no_body and self.method != b"HEAD":
            await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())

    async def send_result(self, request: Request, result: object) -> bool:
        if isinstance(result, Stream):
            return await self.send_stream(request, result)
        if isinstance(result, Upgrade):
            await self.upgrade(request, result)
            return False
        if not isinstance(result, Response):
            result = Response(result, status=204 if result is None else 200)
        try:
            await self.send_response(result)
        except (TypeError, msgspec.EncodeError) as exc:  # the handler returned something odd
            log.error("%s: cannot encode the response: %s", _describe(request), exc)
            await self.send_error(500, f"internal error: {_one_line(exc)}")
        return self.reusable()

    async def send_stream(self, request: Request, stream: Stream) -> bool:
        chunks = aiter(stream.chunks)
        ended = "cancelled"  # until the loop says otherwise: cancelled from outside
        try:
            headers = [SERVER_HEADER, ("Content-Type", stream.content_type),
                       *stream.headers.items()]
            await self.send(_response(stream.status, headers))
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    nonlocal ended
                    if await self.wait_client_gone():
                        ended = "gone"
                        nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                # Errors are caught here, in the body, before the nursery groups them.
                try:
                    async for chunk in chunks:
                        if self.method == b"HEAD":
                            break
                        data = _chunk_bytes(chunk)
                        if data:
                            await self.send(h11.Data(data=data))
                    ended = "done"
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    ended = "gone"
                except Exception:
                    log.exception("%s: stream failed", _describe(request))
                    ended = "failed"  # no EndOfMessage: the client sees an incomplete body
                nursery.cancel_scope.cancel()
            if ended != "done":
                return False
            await self.send(h11.EndOfMessage())
            return self.reusable()
        finally:
            await _aclose(chunks)
            if ended == "cancelled" and not self.mid_send:
                # The server is shutting down: end the stream cleanly if the client is quick.
                with trio.move_on_after(0.5, shield=True):
                    try:
                        await self.send(h11.EndOfMessage())
                    except (trio.BrokenResourceError, trio.ClosedResourceError,
                            h11.LocalProtocolError):
                        pass

    async def wait_client_gone(self) -> bool:
        """Read while a response is sent: True on EOF or error, False if we stop watching."""
        buffered = 0
        while buffered < MAX_PIPELINED:
            try:
                data = await self.stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return True
            if not data:
                return True  # like Go's server: EOF while we answer means the client left
            self.h11.receive_data(data)  # a pipelined request, kept for the next cycle
            buffered += len(data)
        return False

    async def upgrade(self, request: Request, upgrade: Upgrade) -> None:
        if "upgrade" not in request.headers:  # h11 then cannot switch; Docker would answer 200
            await self.send_error(
                400, f"{request.path}: expected the headers 'Connection: Upgrade', 'Upgrade: tcp'"
            )
            return
        await self.send(h11.InformationalResponse(
            status_code=101,
            reason=b"UPGRADED",
            headers=[("Content-Type", "application/vnd.docker.raw-stream"),
                     ("Connection", "Upgrade"), ("Upgrade", "tcp")],
        ))
        leftover, _closed = self.h11.trailing_data
        raw = _PrefixedStream(bytes(leftover), self.stream)
        try:
            await upgrade.handler(raw, request)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:
            log.exception("%s: upgraded handler failed", _describe(request))


class _PrefixedStream(trio.abc.HalfCloseableStream):
    """The hijacked socket, giving first the bytes h11 had already read past the request."""

    def __init__(self, prefix: bytes, stream: trio.SocketStream) -> None:
        self._prefix = prefix
        self._stream = stream

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._stream.aclose()


def _response(status: int, headers: list[tuple[str, str]]) -> h11.Response:
    try:
        reason = HTTPStatus(status).phrase.encode()
    except ValueError:
        reason = b""
    return h11.Response(status_code=status, headers=headers, reason=reason)


def _chunk_bytes(chunk: object) -> bytes:
    if isinstance(chunk, bytes | bytearray | memoryview):
        return bytes(chunk)
    return msgspec.json.encode(chunk) + b"\n"


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    """Close a stream's iterator so its ``finally`` runs now, shielded and time-bounded."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is None:
        return
    with trio.move_on_after(TEARDOWN_SECONDS, shield=True):
        try:
            await aclose()
        except Exception:
            log.exception("closing a stream's iterator failed")


def _describe(request: Request | None) -> str:
    return "HTTP request" if request is None else f"{request.method} {request.path}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- the listener -------------------------------------------------------------------------


async def serve_unix(
    router: Router, path: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``router`` on a root-only Unix socket at ``path`` until cancelled.

    A stale socket file is replaced; a live one (something answers on it) is an error.
    On cancellation the listener is closed and the socket file removed.
    """
    sock = await _bind_unix(path)
    identity = os.stat(path)
    try:
        listener = trio.SocketListener(sock)
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS):
                        raise
                    log.error("%s: accept: %s; retrying in 100 ms", path, exc.strerror)
                    await trio.sleep(0.1)
                    continue
                nursery.start_soon(_Connection(stream, router).serve)
    finally:
        sock.close()
        try:
            now = os.stat(path)
            if (now.st_dev, now.st_ino) == (identity.st_dev, identity.st_ino):
                os.unlink(path)
        except OSError:
            pass


async def _bind_unix(path: str) -> trio.socket.SocketType:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(mode):
            raise SupervisorError(f"{path}: exists and is not a socket")
        if await _answers(path):
            raise SupervisorError(f"{path}: another supervisor is listening on it")
        os.unlink(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        # Not yet listening, so nobody can connect before the mode is root-only.
        os.chmod(path, 0o600)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise SupervisorError(f"{path}: cannot listen: {exc.strerror or exc}") from exc
    return sock


async def _answers(path: str) -> bool:
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True
