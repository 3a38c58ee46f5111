"""The syslog output: RFC 5424 messages over UDP, TCP or a Unix datagram socket.

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID
        [supervise@32473 project=".." seq=".." source=".."][fields@32473 KEY=".."] LINE

APP-NAME is the container, MSGID its source kind (stdout, stderr, file), the severity is
``err`` for stderr and ``info`` otherwise (as Docker's syslog driver), and the filters' fields
go into a structured-data element of their own.  32473 is the enterprise number RFC 5612
reserves for examples.  TCP uses octet-counting framing (RFC 6587 3.4.1: ``LEN SP MSG``), so a
message may hold newlines (multiline events).

What "delivered" means depends on the transport: TCP hands the batch to the kernel (a
connection the receiver closed is noticed and reopened before the next batch), UDP and
Unix datagrams are fire-and-forget (a refused send is retried, a lost datagram is not seen).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
import trio

from logging_bus.filters import Event
from logging_bus.sinks import SinkError
from logging_bus.specs import FACILITIES, SyslogOutput, syslog_address

MAX_DATAGRAM = 65000  # a UDP datagram holds at most 65507 bytes
_SD_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "]": "\\]"})


def _param_name(name: str) -> str:
    """An SD-NAME: printable ASCII but '=', ' ', ']', '"'; at most 32 characters."""
    return "".join(c if "!" <= c <= "~" and c not in '= ]"' else "_" for c in name)[:32] or "_"


def _param_value(value: object) -> str:
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text.translate(_SD_ESCAPES)


MAX_PARAM = 1024  # bytes of one structured-data value (a datagram must hold the header)


def _capped(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, on a character boundary."""
    raw = text.encode(errors="replace")
    return text if len(raw) <= limit else raw[:limit].decode(errors="ignore")


def format_message(event: Event, *, facility: int, hostname: str, project: str,
                   limit: int | None = None) -> bytes:
    """The RFC 5424 message; with `limit` (datagrams) the MSG part is cut to fit, on a
    character boundary, and each field value is capped, so the header and the
    structured data always arrive whole."""
    severity = 3 if event.source == "stderr" else 6
    stamp = datetime.fromtimestamp(event.time, UTC).isoformat(timespec="microseconds")
    msgid = "file" if event.source.startswith("file:") else (event.source or "-")
    sd = (f'[supervise@32473 project="{_param_value(project)}" seq="{event.seq}" '
          f'source="{_param_value(event.source)}"]')
    if event.fields:
        sd += "[fields@32473" + "".join(
            f' {_param_name(k)}="'
            f'{_param_value(_capped(v, MAX_PARAM) if limit and isinstance(v, str) else v)}"'
            for k, v in event.fields.items()) + "]"
    head = (f"<{facility * 8 + severity}>1 {stamp.replace('+00:00', 'Z')} {hostname} "
            f"{event.container[:48] or '-'} - {msgid[:32]} {sd} ").encode(errors="replace")
    line = event.line if limit is None else _capped(event.line, max(limit - len(head), 0))
    return head + line.encode(errors="replace")


class SyslogSink:
    def __init__(self, spec: SyslogOutput, *, project: str) -> None:
        self.address = spec.address
        self.scheme, self.host, self.port = syslog_address(spec.address)
        self.facility = FACILITIES[spec.facility]
        self.hostname = spec.hostname or socket.gethostname() or "-"
        self.project = project
        self._raw: socket.socket | None = None  # the stdlib socket, to peek for a close
        self._stream: trio.SocketStream | None = None
        self._dgram: trio.socket.SocketType | None = None

    def format(self, event: Event) -> bytes:
        return format_message(event, facility=self.facility, hostname=self.hostname,
                              project=self.project,
                              limit=None if self.scheme == "tcp" else MAX_DATAGRAM)

    async def send(self, events: Sequence[Event]) -> None:
        messages = [self.format(e) for e in events]
        try:
            if self.scheme == "tcp":
                stream = await self._tcp()
                await stream.send_all(b"".join(b"%d %s" % (len(m), m) for m in messages))
            else:
                sock = await self._datagram()
                for message in messages:
                    await sock.send(message[:MAX_DATAGRAM])
        except (OSError, trio.BrokenResourceError) as e:
            await self.aclose()
            cause = e.__cause__ if isinstance(e, trio.BrokenResourceError) else e
            errno = getattr(cause, "errno", None)
            if errno and errno > 0:
                what = os.strerror(errno).lower()
            else:  # gaierror's errno is negative: its own text ("Name or service not known")
                what = (getattr(cause, "strerror", None) or str(cause) or "connection lost")
                what = str(what).lower()
            raise SinkError(f"syslog {self.address}: {what}") from e

    async def _tcp(self) -> trio.SocketStream:
        if self._stream is not None and self._closed_by_peer():
            await self.aclose()
        if self._stream is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            raw = socket.socket(family, socket.SOCK_STREAM)
            sock = trio.socket.from_stdlib_socket(raw)
            try:
                await sock.connect((self.host, self.port))
            except BaseException:
                sock.close()
                raise
            self._raw, self._stream = raw, trio.SocketStream(sock)
        return self._stream

    def _closed_by_peer(self) -> bool:
        """A receiver that went away has sent its FIN by now: reconnect instead of writing
        into a socket whose bytes would be lost."""
        assert self._raw is not None
        try:
            return self._raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    async def _datagram(self) -> trio.socket.SocketType:
        if self._dgram is None:
            if self.scheme == "unix":
                sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                target: str | tuple[str, int] = self.host
            else:
                family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
                sock = trio.socket.socket(family, socket.SOCK_DGRAM)
                target = (self.host, self.port)
            try:
                await sock.connect(target)
            except BaseException:
                sock.close()
                raise
            self._dgram = sock
        return self._dgram

    async def aclose(self) -> None:
        if self._stream is not None:
            stream, self._stream, self._raw = self._stream, None, None
            with trio.CancelScope(shield=True):
                await stream.aclose()
        if self._dgram is not None:
            self._dgram.close()
            self._dgram = None
