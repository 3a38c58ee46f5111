"""Compose-style output of a foreground stack: `name  | line`, a colour per container.

Lines are cut at newlines; a partial line waits for its end (or is flushed when the stream
closes).  Bytes are written as they came, only the prefix is ours.  (When the log bus lands,
this printer reads from the store instead of being fed directly.)
"""

from __future__ import annotations

import os
from collections.abc import Iterable

# docker/compose cmd/formatter/colors.go order: cyan, yellow, green, magenta, blue, red...
_COLORS = ("36", "33", "32", "35", "34", "31", "96", "93", "92", "95", "94", "91")


class LinePrinter:
    def __init__(self, names: Iterable[str], *, fd: int = 1, color: bool = True,
                 prefix: bool = True) -> None:
        self.fd = fd
        self.color = color
        self.prefix = prefix
        self._partial: dict[tuple[str, str], bytes] = {}
        self._colors: dict[str, str] = {}
        self._width = 0
        for name in names:
            self.add(name)

    def add(self, name: str) -> None:
        if name not in self._colors:
            self._colors[name] = _COLORS[len(self._colors) % len(_COLORS)]
        self._width = max(self._width, len(name) + 1)

    def _prefix(self, name: str) -> bytes:
        if not self.prefix:
            return b""
        text = f"{name:<{self._width}} | "  # Compose: width = longest name + 1
        if self.color:
            text = f"\x1b[{self._colors.get(name, '0')}m{text}\x1b[0m"
        return text.encode()

    def write(self, name: str, stream: str, data: bytes) -> None:
        key = (name, stream)
        data = self._partial.pop(key, b"") + data
        lines = data.split(b"\n")
        tail = lines.pop()
        if tail:
            self._partial[key] = tail
        if lines:
            prefix = self._prefix(name)
            self._out(b"".join(prefix + line + b"\n" for line in lines))

    def status(self, name: str, text: str) -> None:
        """A line of supervise's own about a container (`web exited with code 0`)."""
        self.flush(name)
        self._out(self._prefix(name) + text.encode() + b"\n")

    def flush(self, name: str) -> None:
        for key in [k for k in self._partial if k[0] == name]:
            self._out(self._prefix(name) + self._partial.pop(key) + b"\n")

    def flush_all(self) -> None:
        """At the end: partial lines (a last line without its newline) as they are."""
        for name in sorted({name for name, _ in self._partial}):
            self.flush(name)

    def _out(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                return
