"""The console output: events as JSON lines on the supervisor's standard output.

Written by ``os.write`` in a worker thread: a terminal or pipe that does not read makes this
output wait, never the trio loop (and so never a container).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import msgspec
import trio

from logging_bus.filters import Event
from logging_bus.sinks import SinkError


def encode_lines(events: Sequence[Event]) -> bytes:
    """JSON lines: ``{"seq":..,"time":..,"container":..,"source":..,"line":..,"fields":{..}}``."""
    encoder = msgspec.json.Encoder()
    buf = bytearray()
    for event in events:
        encoder.encode_into(event, buf, -1)
        buf += b"\n"
    return bytes(buf)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class ConsoleSink:
    def __init__(self, fd: int = 1) -> None:
        self.fd = fd

    async def send(self, events: Sequence[Event]) -> None:
        data = encode_lines(events)
        try:
            # Abandoned on cancel: a stdout nobody reads (`up | less` paused, Ctrl-S) must not
            # hold up a shutdown; the cursor was not saved, so a restart repeats, never loses.
            await trio.to_thread.run_sync(write_all, self.fd, data, abandon_on_cancel=True)
        except OSError as e:
            raise SinkError(f"standard output: {e.strerror or e}") from e

    async def aclose(self) -> None:
        pass
