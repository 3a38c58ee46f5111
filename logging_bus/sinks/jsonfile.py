"""The file output: events as JSON lines in a file that rotates by size, as Docker's json-file.

At ``max_size`` the file becomes ``path.1`` (``path.1`` becomes ``path.2``...) and a new one is
started; ``max_files`` counts every file kept, the current one included.  A batch is written
and fdatasync'ed before ``send`` returns, so the cursor the forwarder then saves never runs
ahead of what is on disk.  The writing happens in a worker thread.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import msgspec
import trio

from logging_bus.filters import Event
from logging_bus.sinks import SinkError
from logging_bus.sinks.console import write_all
from logging_bus.specs import FileOutput


class JsonFileSink:
    def __init__(self, spec: FileOutput) -> None:
        self.path = Path(spec.path)
        self.max_size = spec.max_size
        self.max_files = spec.max_files
        self._fd = -1
        self._size = 0
        self._encoder = msgspec.json.Encoder()

    def rotated(self) -> list[Path]:
        """The files this output holds, oldest first, the current one last."""
        names = [self.path.with_name(f"{self.path.name}.{i}")
                 for i in range(self.max_files - 1, 0, -1)]
        return [p for p in [*names, self.path] if p.exists()]

    async def send(self, events: Sequence[Event]) -> None:
        lines = [self._encoder.encode(e) + b"\n" for e in events]
        try:
            await trio.to_thread.run_sync(self._write, lines)
        except OSError as e:
            self._close()
            raise SinkError(f"{self.path}: {e.strerror or e}") from e

    def _open(self) -> None:
        if self._fd < 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o640)
            self._size = os.fstat(self._fd).st_size

    def _write(self, lines: list[bytes]) -> None:
        self._open()
        chunk: list[bytes] = []
        size = self._size
        for line in lines:
            if size and size + len(line) > self.max_size:
                self._put(chunk)
                self._rotate()
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        self._put(chunk)

    def _put(self, chunk: list[bytes]) -> None:
        if chunk:
            data = b"".join(chunk)
            write_all(self._fd, data)
            self._size += len(data)
        os.fdatasync(self._fd)

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        name = self.path.name
        for i in range(self.max_files - 1, 0, -1):
            older = self.path.with_name(f"{name}.{i - 1}" if i > 1 else name)
            if older.exists():
                os.replace(older, self.path.with_name(f"{name}.{i}"))
        self.path.unlink(missing_ok=True)  # max_files = 1: the current file is all we keep
        dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._open()

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    async def aclose(self) -> None:
        self._close()
