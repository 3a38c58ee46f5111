"""The outputs the conformance suite runs against, each with the receiver it delivers to.

An ``OutputCase`` makes the output's settings and sink, says what the receiver got (as
``Got`` tuples, one shape for all), and, where the transport can tell, takes the receiver
down and back up (acceptance 5 of issue 4).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from logging_bus.sinks import Sink, open_sink
from logging_bus.sinks.console import ConsoleSink
from logging_bus.specs import (
    ConsoleOutput,
    ElasticsearchOutput,
    FileOutput,
    LokiOutput,
    OutputSpec,
    SyslogOutput,
)
from tests.receivers import Got, HttpReceiver, Rsyslog

FAST_RETRY = 0.2  # retry_max: tests wait for redelivery, not for a production backoff


class OutputCase(Protocol):
    name: str
    can_go_down: bool

    def spec(self, **common: object) -> OutputSpec: ...

    def sink(self, spec: OutputSpec, notice: Callable[[str], None]) -> Sink: ...

    def got(self) -> list[Got]: ...

    def down(self) -> None: ...

    def up(self) -> None: ...

    def close(self) -> None: ...


def _from_json_lines(text: str) -> list[Got]:
    out = []
    for line in text.split("\n")[:-1]:
        e = json.loads(line)
        out.append(Got(e["container"], e["source"], e["line"], e.get("fields", {})))
    return out


class ConsoleCase:
    """The supervisor's stdout, here a file the sink's descriptor points at."""

    name, can_go_down = "console", False

    def __init__(self, folder: Path) -> None:
        self.path = folder / "stdout"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def spec(self, **common: object) -> OutputSpec:
        return ConsoleOutput(retry_max=FAST_RETRY, **common)  # type: ignore[arg-type]

    def sink(self, spec: OutputSpec, notice: Callable[[str], None]) -> Sink:
        return ConsoleSink(self.fd)

    def got(self) -> list[Got]:
        return _from_json_lines(self.path.read_text())

    def down(self) -> None:
        raise NotImplementedError

    up = down

    def close(self) -> None:
        os.close(self.fd)


class FileCase:
    name, can_go_down = "file", False

    def __init__(self, folder: Path) -> None:
        self.path = folder / "out" / "logs.jsonl"

    def spec(self, **common: object) -> OutputSpec:
        # Small files, so that every test crosses the output's own rotation too.
        return FileOutput(path=str(self.path), max_size=256 << 10, max_files=1000,
                          retry_max=FAST_RETRY, **common)  # type: ignore[arg-type]

    def sink(self, spec: OutputSpec, notice: Callable[[str], None]) -> Sink:
        return open_sink(spec, project="p", notice=notice)

    def files(self) -> list[Path]:
        folder = self.path.parent
        rotated = sorted((p for p in folder.glob(self.path.name + ".*")),
                         key=lambda p: -int(p.suffix[1:]))
        return [*rotated, self.path] if self.path.exists() else rotated

    def got(self) -> list[Got]:
        return [g for p in self.files() for g in _from_json_lines(p.read_text())]

    def down(self) -> None:
        raise NotImplementedError

    up = down

    def close(self) -> None:
        pass


class SyslogCase:
    can_go_down = True

    def __init__(self, folder: Path, scheme: str) -> None:
        self.name = f"syslog-{scheme}"
        self.scheme = scheme
        self.can_go_down = scheme != "udp"  # UDP cannot tell that no one listens
        self.rsyslog = Rsyslog(folder / "rsyslog")
        self.rsyslog.start()

    def spec(self, **common: object) -> OutputSpec:
        return SyslogOutput(address=self.rsyslog.address(self.scheme),
                            retry_max=FAST_RETRY, **common)  # type: ignore[arg-type]

    def sink(self, spec: OutputSpec, notice: Callable[[str], None]) -> Sink:
        return open_sink(spec, project="p", notice=notice)

    def got(self) -> list[Got]:
        return self.rsyslog.got()

    def down(self) -> None:
        self.rsyslog.stop()

    def up(self) -> None:
        self.rsyslog.start()

    def close(self) -> None:
        self.rsyslog.stop()


class HttpCase:
    can_go_down = True

    def __init__(self, folder: Path, kind: str) -> None:
        self.name = kind
        self.receiver = HttpReceiver()
        self.receiver.up()

    def spec(self, **common: object) -> OutputSpec:
        cls = LokiOutput if self.name == "loki" else ElasticsearchOutput
        return cls(url=self.receiver.url, timeout=5.0, retry_max=FAST_RETRY,
                   **common)  # type: ignore[arg-type]

    def sink(self, spec: OutputSpec, notice: Callable[[str], None]) -> Sink:
        return open_sink(spec, project="p", notice=notice)

    def got(self) -> list[Got]:
        assert not self.receiver.problems, self.receiver.problems
        return list(self.receiver.got)

    def down(self) -> None:
        self.receiver.down()

    def up(self) -> None:
        self.receiver.up()

    def close(self) -> None:
        self.receiver.close()


CASES: dict[str, Callable[[Path], OutputCase]] = {
    "console": ConsoleCase,
    "file": FileCase,
    "syslog-udp": lambda folder: SyslogCase(folder, "udp"),
    "syslog-tcp": lambda folder: SyslogCase(folder, "tcp"),
    "syslog-unix": lambda folder: SyslogCase(folder, "unix"),
    "loki": lambda folder: HttpCase(folder, "loki"),
    "elasticsearch": lambda folder: HttpCase(folder, "elasticsearch"),
}
