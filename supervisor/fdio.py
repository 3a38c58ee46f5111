"""Pipes and ptys from trio: read to EOF, write all, without blocking the event loop.

One home for the non-blocking read/write loops that container output, exec, attach and
healthchecks all need.  Every function here owns the fd it is given and closes it (after
`notify_closing`, so no other task stays parked on a closed descriptor).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import trio

CHUNK = 65536


async def read_chunks(fd: int, size: int = CHUNK, *, own: bool = True) -> AsyncIterator[bytes]:
    """Each read as it comes, until EOF (or EIO: a pty whose last slave closed).  Closes the
    fd at the end unless not `own` (a pty master that another task also writes to)."""
    os.set_blocking(fd, False)
    try:
        while True:
            try:
                data = os.read(fd, size)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                continue
            except OSError:
                return
            if not data:
                return
            yield data
    finally:
        if own:
            close(fd)


async def read_all(fd: int, limit: int | None = None) -> bytes:
    """Everything until EOF; past `limit` bytes the rest is read and dropped."""
    chunks: list[bytes] = []
    kept = 0
    async for data in read_chunks(fd):
        if limit is None or kept < limit:
            chunks.append(data)
            kept += len(data)
    out = b"".join(chunks)
    return out if limit is None else out[:limit]


async def write_all(fd: int, data: bytes | bytearray | memoryview) -> bool:
    """Writes everything; False if the reader went away (EPIPE, EIO).  Does not close."""
    os.set_blocking(fd, False)
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(fd)
        except OSError:
            return False
    return True


def close(fd: int) -> None:
    trio.lowlevel.notify_closing(fd)
    os.close(fd)


class FdSet:
    """Descriptors that must each be closed exactly once (a second close could hit a reused
    descriptor number)."""

    def __init__(self, fds: list[int]) -> None:
        self.open = set(fds)

    def close(self, fd: int) -> None:
        if fd in self.open:
            self.open.discard(fd)
            close(fd)

    def close_all(self) -> None:
        for fd in list(self.open):
            self.close(fd)
