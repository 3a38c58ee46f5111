"""The Elasticsearch output: ``POST /_bulk`` with NDJSON, an ``index`` action per line::

    {"index": {"_index": "supervise", "_id": "shop-9f86d081884c7d65-1234"}}
    {"@timestamp": "2026-12-04T22:10:01.123456Z", "message": "...", "project": "shop",
     "container": "web", "source": "stdout", "seq": 1234, ...fields}

``_id`` is the project, the store's id and the seq (seqs alone repeat across hosts with
one project name and after a store is reset), so a batch delivered twice (at-least-once: a
retry after a lost response, a restart before the cursor was saved) overwrites its
documents instead of adding copies.  The filters' fields sit beside the document's own
keys, which win on a clash.
A bulk answer of 200 can still carry failed items: those failed with 429 or 5xx make the
whole batch be retried (harmless, by ``_id``); others (a mapping error) cannot succeed on a
retry and are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import msgspec

from logging_bus.filters import Event
from logging_bus.sinks import SinkError
from logging_bus.sinks.http import HttpPoster
from logging_bus.specs import ElasticsearchOutput


class _Item(msgspec.Struct):
    status: int
    error: object = None


class _Answer(msgspec.Struct):
    errors: bool = False
    items: list[dict[str, _Item]] = []


def iso_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def bulk_body(events: Sequence[Event], *, project: str, index: str, store_id: str = "",
              ) -> bytes:
    encode = msgspec.json.encode
    out = bytearray()
    prefix = f"{project}-{store_id}-" if store_id else f"{project}-"
    for e in events:
        out += encode({"index": {"_index": index, "_id": f"{prefix}{e.seq}"}})
        out += b"\n"
        out += encode({**e.fields, "@timestamp": iso_time(e.time), "message": e.line,
                       "project": project, "container": e.container, "source": e.source,
                       "seq": e.seq})
        out += b"\n"
    return bytes(out)


class ElasticsearchSink:
    def __init__(self, spec: ElasticsearchOutput, *, project: str,
                 notice: Callable[[str], None], store_id: str = "") -> None:
        self.project = project
        self.store_id = store_id
        self.index = spec.index
        self.notice = notice
        self.http = HttpPoster(spec.url.rstrip("/") + "/_bulk", headers=spec.headers,
                               timeout=spec.timeout)

    async def send(self, events: Sequence[Event]) -> None:
        raw = await self.http.post(bulk_body(events, project=self.project, index=self.index,
                                             store_id=self.store_id), "application/x-ndjson")
        try:
            answer = msgspec.json.decode(raw, type=_Answer)
        except msgspec.DecodeError as e:
            raise SinkError(f"POST {self.http.url}: expected a bulk response, got "
                            f"{raw[:80]!r}") from e
        if not answer.errors:
            return
        failed = [item for entry in answer.items for item in entry.values()
                  if item.status >= 300]
        if any(item.status == 429 or item.status >= 500 for item in failed):
            raise SinkError(f"POST {self.http.url}: {len(failed)} of {len(events)} lines "
                            f"failed, some with a status worth retrying")
        if failed:
            reason = msgspec.json.encode(failed[0].error).decode()[:200]
            self.notice(f"{self.http.url}: {len(failed)} of {len(events)} lines refused by "
                        f"the index, not retried (first: {failed[0].status} {reason})")

    async def aclose(self) -> None:
        await self.http.aclose()
