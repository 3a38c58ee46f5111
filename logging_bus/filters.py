"""Filters: records from the store become structured events on their way out.

The store keeps the bytes as written; filters never change it.  They run where records are
read for an output (``forward``), so each output sees the same events, and a filter added
later applies to old lines too.  A ``Pipeline`` holds one chain per container: the
container's own ``logs.filters`` first, then ``[stack.logs] filters``.

Every filter is pure and synchronous.  Time enters only through the records' own times and
an explicit ``now``, so multiline's flush timeout is tested without a clock::

    pipeline = Pipeline({"redis": [RegexFilter(pattern=...)]}, [AddFieldsFilter(...)])
    events = pipeline.feed(records)          # ready events, in order
    events += pipeline.flush(now)            # multiline events whose timeout passed
    resume = pipeline.held_from()            # lowest seq still held (for a saved cursor)

``field`` in a filter names ``line``, ``container``, ``source`` or a key of ``fields``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from logging_bus.record import Record
from logging_bus.specs import (
    AddFieldsFilter,
    DropFilter,
    FilterSpec,
    JsonFilter,
    KeepFilter,
    MultilineFilter,
    RegexFilter,
)


class Event(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A record on its way out: the line as text (invalid UTF-8 replaced with U+FFFD, as
    conventions.md says for JSON) and the fields the filters found.  JSON-compatible with
    ``LogLine`` plus ``fields``.  A multiline event carries its first line's seq and time."""

    seq: int
    time: float
    container: str
    source: str
    line: str
    partial: bool = False
    fields: dict[str, Any] = {}

    @classmethod
    def of(cls, record: Record) -> Event:
        return cls(seq=record.seq, time=record.time, container=record.container,
                   source=record.source, line=record.line.decode(errors="replace"),
                   partial=record.partial)


def value_of(event: Event, name: str) -> str | None:
    """The text a filter's ``field`` points at; None if the event has no such field."""
    if name == "line":
        return event.line
    if name == "container":
        return event.container
    if name == "source":
        return event.source
    got = event.fields.get(name)
    if got is None or isinstance(got, str):
        return got
    return msgspec.json.encode(got).decode()


class _Step:
    """One filter, compiled.  Stateless steps hold nothing: ``flush`` and ``held`` are empty."""

    def feed(self, event: Event) -> Iterable[Event]:
        raise NotImplementedError

    def flush(self, now: float | None) -> list[Event]:
        return []

    def held(self) -> int | None:
        return None

    def deadline(self) -> float | None:
        return None


class _Json(_Step):
    def __init__(self, spec: JsonFilter) -> None:
        self.field, self.target = spec.field, spec.target

    def feed(self, event: Event) -> Iterable[Event]:
        text = value_of(event, self.field)
        if text and text.lstrip().startswith("{"):
            try:
                obj = msgspec.json.decode(text)
            except msgspec.DecodeError:
                return (event,)  # not JSON after all: passed on unchanged
            if isinstance(obj, dict):
                if self.target is None:
                    event.fields.update(obj)
                else:
                    event.fields[self.target] = obj
        return (event,)


class _Regex(_Step):
    def __init__(self, spec: RegexFilter) -> None:
        self.field, self.pattern = spec.field, re.compile(spec.pattern)

    def feed(self, event: Event) -> Iterable[Event]:
        text = value_of(event, self.field)
        if text is not None and (m := self.pattern.search(text)):
            event.fields.update({k: v for k, v in m.groupdict().items() if v is not None})
        return (event,)


class _Match(_Step):
    def __init__(self, spec: DropFilter | KeepFilter) -> None:
        self.field, self.pattern = spec.field, re.compile(spec.match)
        self.keep = isinstance(spec, KeepFilter)

    def feed(self, event: Event) -> Iterable[Event]:
        text = value_of(event, self.field)
        found = text is not None and self.pattern.search(text) is not None
        return (event,) if found == self.keep else ()


class _AddFields(_Step):
    def __init__(self, spec: AddFieldsFilter) -> None:
        self.fields = dict(spec.fields)

    def feed(self, event: Event) -> Iterable[Event]:
        event.fields.update(self.fields)
        return (event,)


class _Held:
    __slots__ = ("event", "last", "lines")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.lines = [event.line]
        self.last = event.time  # when the latest line of it was read


class _Multiline(_Step):
    """Per source: a start line opens an event, other lines join the open one."""

    def __init__(self, spec: MultilineFilter) -> None:
        self.start = re.compile(spec.start)
        self.timeout = spec.timeout
        self.max_lines = spec.max_lines
        self.open: dict[str, _Held] = {}  # source -> the event being joined

    def feed(self, event: Event) -> Iterable[Event]:
        held = self.open.get(event.source)
        if held is not None and not self.start.search(event.line):
            held.lines.append(event.line)
            held.last = event.time
            if len(held.lines) < self.max_lines:
                return ()
            return (self._close(event.source),)
        out = () if held is None else (self._close(event.source),)
        self.open[event.source] = _Held(event)
        return out

    def _close(self, source: str) -> Event:
        held = self.open.pop(source)
        event = held.event
        if len(held.lines) > 1:
            event.line = "\n".join(held.lines)
        return event

    def flush(self, now: float | None) -> list[Event]:
        due = [s for s, h in self.open.items() if now is None or now >= h.last + self.timeout]
        return [self._close(s) for s in due]

    def held(self) -> int | None:
        return min((h.event.seq for h in self.open.values()), default=None)

    def deadline(self) -> float | None:
        return min((h.last + self.timeout for h in self.open.values()), default=None)


def _step(spec: FilterSpec) -> _Step:
    if isinstance(spec, JsonFilter):
        return _Json(spec)
    if isinstance(spec, RegexFilter):
        return _Regex(spec)
    if isinstance(spec, MultilineFilter):
        return _Multiline(spec)
    if isinstance(spec, DropFilter | KeepFilter):
        return _Match(spec)
    if isinstance(spec, AddFieldsFilter):
        return _AddFields(spec)
    raise TypeError(f"not a filter: {spec!r}")


class _Chain:
    def __init__(self, specs: Sequence[FilterSpec]) -> None:
        self.steps = [_step(s) for s in specs]
        self.stateful = [s for s in self.steps if isinstance(s, _Multiline)]

    def run(self, events: list[Event], first: int = 0) -> list[Event]:
        for step in self.steps[first:]:
            if not events:
                break
            out: list[Event] = []
            for event in events:
                out.extend(step.feed(event))
            events = out
        return events

    def flush(self, now: float | None) -> list[Event]:
        out: list[Event] = []
        for i, step in enumerate(self.steps):
            if isinstance(step, _Multiline):
                out += self.run(step.flush(now), i + 1)
        return out


class Pipeline:
    """The filters of a stack: a chain per container, built on its first record."""

    def __init__(self, per_container: Mapping[str, Sequence[FilterSpec]] | None = None,
                 common: Sequence[FilterSpec] = ()) -> None:
        self._specs = dict(per_container or {})
        self._common = list(common)
        self._chains: dict[str, _Chain | None] = {}
        self._deadline: float | None = None  # earliest multiline timeout, None if none held

    @property
    def empty(self) -> bool:
        return not self._common and not any(self._specs.values())

    def _chain(self, container: str) -> _Chain | None:
        try:
            return self._chains[container]
        except KeyError:
            specs = [*self._specs.get(container, ()), *self._common]
            chain = self._chains[container] = _Chain(specs) if specs else None
            return chain

    def feed(self, records: Iterable[Record]) -> list[Event]:
        """The events these records make, in order; multiline ones come when complete.

        A record's time proves that nothing older is still to come (the store's times
        follow its seqs), so a held event whose timeout that time passed is let out first.
        """
        out: list[Event] = []
        for record in records:
            if self._deadline is not None and record.time >= self._deadline:
                out += self.flush(record.time)
            chain = self._chain(record.container)
            if chain is None:
                out.append(Event.of(record))
                continue
            out += chain.run([Event.of(record)])
            if chain.stateful:
                self._update_deadline()
        return out

    def flush(self, now: float | None) -> list[Event]:
        """Held events whose timeout has passed at ``now``; with None, every held event
        (an output draining before shutdown)."""
        out: list[Event] = []
        for chain in self._chains.values():
            if chain is not None and chain.stateful:
                out += chain.flush(now)
        self._update_deadline()
        return out

    def _update_deadline(self) -> None:
        times = [t for c in self._chains.values() if c is not None for s in c.stateful
                 if (t := s.deadline()) is not None]
        self._deadline = min(times, default=None)

    def deadline(self) -> float | None:
        """When the next held event times out (a time like the records'), None if none."""
        return self._deadline

    def held_from(self) -> int | None:
        """The lowest seq still held: a saved cursor must not pass it."""
        seqs = [h for c in self._chains.values() if c is not None for s in c.stateful
                if (h := s.held()) is not None]
        return min(seqs, default=None)
