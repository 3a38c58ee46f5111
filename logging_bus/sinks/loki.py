"""The Loki output: ``POST /loki/api/v1/push`` with the JSON body Loki documents::

    {"streams": [{"stream": {"project": "shop", "container": "web", "source": "stdout", ...},
                  "values": [["<unix ns>", "<line>"], ["<unix ns>", "<line>", {<fields>}]]}]}

One stream per (container, source), labelled with both, the project and ``labels``.  The
filters' fields go as the entry's structured metadata (Loki 2.9+; values as strings), never
as labels, so they cannot blow up Loki's stream count.  A timestamp is the line's time in
nanoseconds, made strictly increasing per stream (lines read together share one time in the
store): so they stay in order, and Loki does not drop two equal lines with the same
timestamp as duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from logging_bus.filters import Event
from logging_bus.sinks.http import HttpPoster
from logging_bus.specs import LokiOutput

PUSH_PATH = "/loki/api/v1/push"


def push_url(url: str) -> str:
    """A bare ``http://loki:3100`` gets the push path; a URL with a path is used as is."""
    rest = url.partition("://")[2]
    return url.rstrip("/") + PUSH_PATH if "/" not in rest.rstrip("/") else url


def _metadata(fields: dict[str, object]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else msgspec.json.encode(v).decode()
            for k, v in fields.items()}


def push_body(events: Sequence[Event], *, project: str, labels: dict[str, str],
              last: dict[tuple[str, str], int]) -> bytes:
    """The push request; ``last`` holds each stream's latest timestamp, across calls."""
    streams: dict[tuple[str, str], list[list[object]]] = {}
    for e in events:
        key = (e.container, e.source)
        ns = max(int(e.time * 1e9), last.get(key, 0) + 1)
        last[key] = ns
        entry: list[object] = [str(ns), e.line]
        if e.fields:
            entry.append(_metadata(e.fields))
        streams.setdefault(key, []).append(entry)
    return msgspec.json.encode({"streams": [
        {"stream": {**labels, "project": project, "container": c, "source": s}, "values": v}
        for (c, s), v in streams.items()]})


class LokiSink:
    def __init__(self, spec: LokiOutput, *, project: str) -> None:
        self.project = project
        self.labels = dict(spec.labels)
        self._last: dict[tuple[str, str], int] = {}
        self.http = HttpPoster(push_url(spec.url), headers=spec.headers, timeout=spec.timeout)

    async def send(self, events: Sequence[Event]) -> None:
        last = dict(self._last)  # kept only once delivered: a retry sends the same stamps
        await self.http.post(push_body(events, project=self.project, labels=self.labels,
                                       last=last), "application/json")
        self._last = last

    async def aclose(self) -> None:
        await self.http.aclose()
