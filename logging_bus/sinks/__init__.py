"""Outputs: where a forwarder delivers events, one module each.

    LogBusError
     └── SinkError          delivery failed; the forwarder retries the batch with backoff
          └── SinkRejected  the receiver refused the batch for good (a 4xx other than 429):
                            retrying cannot help, the forwarder reports it and goes on

A sink is opened once per output and called with batches, in order, one at a time::

    sink = open_sink(spec, project="shop", notice=print)
    await sink.send(events)     # returns once the receiver has them (as far as the
    await sink.aclose()         #   transport can tell: TCP hands them to the kernel)

``send`` may be called again with the same events after it raised (at-least-once).  Foreign
errors (OSError, httpx) are translated into ``SinkError`` in the sink, once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from logging_bus.errors import LogBusError
from logging_bus.filters import Event
from logging_bus.specs import (
    ConsoleOutput,
    ElasticsearchOutput,
    FileOutput,
    LokiOutput,
    OutputSpec,
    SyslogOutput,
)


class SinkError(LogBusError):
    """A batch was not delivered; sending it again may work."""


class SinkRejected(SinkError):
    """The receiver refused the batch; sending it again will not help."""


class PayloadTooLarge(SinkError):
    """The receiver refused the batch for its size (HTTP 413): send it in smaller pieces;
    a single line still refused is rejected."""


class Sink(Protocol):
    async def send(self, events: Sequence[Event]) -> None: ...

    async def aclose(self) -> None: ...


def open_sink(spec: OutputSpec, *, project: str, notice: Callable[[str], None],
              store_id: str = "") -> Sink:
    """The sink for one output's settings; its module is imported only when used."""
    if isinstance(spec, ConsoleOutput):
        from logging_bus.sinks.console import ConsoleSink
        return ConsoleSink()
    if isinstance(spec, FileOutput):
        from logging_bus.sinks.jsonfile import JsonFileSink
        return JsonFileSink(spec)
    if isinstance(spec, SyslogOutput):
        from logging_bus.sinks.syslog import SyslogSink
        return SyslogSink(spec, project=project)
    if isinstance(spec, LokiOutput):
        from logging_bus.sinks.loki import LokiSink
        return LokiSink(spec, project=project)
    if isinstance(spec, ElasticsearchOutput):
        from logging_bus.sinks.elasticsearch import ElasticsearchSink
        return ElasticsearchSink(spec, project=project, notice=notice, store_id=store_id)
    raise TypeError(f"not an output: {spec!r}")
