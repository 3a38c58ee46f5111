"""Filters: records in, structured events out; pure, so time is the records' own."""

from __future__ import annotations

import msgspec
import pytest

from logging_bus.filters import Event, Pipeline
from logging_bus.record import Record
from logging_bus.specs import (
    AddFieldsFilter,
    DropFilter,
    FilterSpec,
    JsonFilter,
    KeepFilter,
    MultilineFilter,
    RegexFilter,
    SpecError,
)

REDIS = (r"^(?P<pid>\d+):(?P<role>[XCSM]) (?P<date>\d{1,2} \w{3} \d{4} [\d:.]+) "
         r"(?P<level>[.*#-]) (?P<message>.*)$")


def rec(seq: int, line: str | bytes, *, container: str = "web", source: str = "stdout",
        time: float | None = None) -> Record:
    raw = line.encode() if isinstance(line, str) else line
    return Record(seq=seq, time=1000.0 + seq / 100 if time is None else time, container=container,
                  source=source, line=raw)


def run(specs: list[FilterSpec], lines: list[str]) -> list[Event]:
    p = Pipeline({}, specs)
    return p.feed(rec(i, line) for i, line in enumerate(lines, 1)) + p.flush(None)


def test_no_filters_is_the_record_as_text() -> None:
    [e] = Pipeline().feed([rec(1, b"caf\xc3\xa9 \xff")])
    assert (e.seq, e.container, e.source, e.line, e.fields) == (1, "web", "stdout",
                                                                "café \ufffd", {})
    assert msgspec.json.decode(msgspec.json.encode(e)) == {
        "seq": 1, "time": 1000.01, "container": "web", "source": "stdout", "line": "café \ufffd"}


def test_redis_log_format_worked_example() -> None:
    line = "12345:M 04 Dec 2026 22:10:01.123 * Ready to accept connections tcp"
    [e] = run([RegexFilter(pattern=REDIS)], [line, "not redis"])[:1]
    assert e.fields == {"pid": "12345", "role": "M", "date": "04 Dec 2026 22:10:01.123",
                        "level": "*", "message": "Ready to accept connections tcp"}
    assert e.line == line  # the line itself is kept as written
    assert run([RegexFilter(pattern=REDIS)], ["not redis"])[0].fields == {}


@pytest.mark.parametrize(("spec", "line", "fields"), [
    (JsonFilter(), '{"level": "warn", "n": 3, "tags": ["a"]}',
     {"level": "warn", "n": 3, "tags": ["a"]}),
    (JsonFilter(target="doc"), '{"a": 1}', {"doc": {"a": 1}}),
    (JsonFilter(), "{not json", {}),
    (JsonFilter(), "[1, 2]", {}),
    (JsonFilter(), "plain text", {}),
    (AddFieldsFilter(fields={"env": "prod"}), "x", {"env": "prod"}),
])
def test_fields(spec: FilterSpec, line: str, fields: dict[str, object]) -> None:
    [e] = run([spec], [line])
    assert (e.line, e.fields) == (line, fields)


def test_drop_and_keep_by_line_or_field() -> None:
    lines = ['{"level": "debug", "m": 1}', '{"level": "info", "m": 2}', "DEBUG raw", "other"]
    got = run([JsonFilter(), DropFilter(match="^debug$", field="level"),
               DropFilter(match="^DEBUG")], lines)
    assert [e.seq for e in got] == [2, 4]
    got = run([JsonFilter(), KeepFilter(match="info|warn", field="level")], lines)
    assert [e.seq for e in got] == [2]  # lines without the field are not kept
    assert [e.seq for e in run([KeepFilter(match="^std", field="source")], lines)] == [1, 2, 3, 4]


def test_filters_run_in_order_container_ones_first() -> None:
    p = Pipeline({"db": [RegexFilter(pattern=r"^(?P<word>\w+)"), DropFilter(match="^skip$",
                                                                           field="word")]},
                 [AddFieldsFilter(fields={"word": "stack"})])
    got = p.feed([rec(1, "hello there", container="db"), rec(2, "skip me", container="db"),
                  rec(3, "web line")])
    assert [(e.seq, e.fields) for e in got] == [(1, {"word": "stack"}), (3, {"word": "stack"})]


# -- multiline -------------------------------------------------------------------------------

TRACE = ["2026-01-01 ERROR boom", "  at a()", "  at b()", "2026-01-01 INFO next", "  at c()"]


def test_multiline_joins_by_start_pattern() -> None:
    p = Pipeline({}, [MultilineFilter(start=r"^\d{4}-", timeout=5.0)])
    got = p.feed(rec(i, line) for i, line in enumerate(TRACE, 1))
    assert [(e.seq, e.line) for e in got] == [(1, "\n".join(TRACE[:3]))]
    assert p.held_from() == 4  # a saved cursor stays at the held event's first line
    assert p.flush(1000.05 + 4.9) == []
    [last] = p.flush(1000.05 + 5.0)  # 5 s after its last line
    assert (last.seq, last.time, last.line) == (4, 1000.04, "\n".join(TRACE[3:]))
    assert p.held_from() is None and p.deadline() is None


def test_multiline_per_source_and_timeout_seen_in_later_records() -> None:
    p = Pipeline({"web": [MultilineFilter(start=r"^\S", timeout=1.0), JsonFilter()]})
    got = p.feed([rec(1, "start out", time=10.0),
                  rec(2, '{"a": 1}', source="stderr", time=10.1),
                  rec(3, " more out", time=10.2),
                  rec(4, " more err", source="stderr", time=10.3),
                  # 1 s after stdout's last line: nothing more can come for it, it is let out
                  rec(5, "x", container="db", time=11.25)])
    assert [(e.seq, e.line) for e in got] == [(1, "start out\n more out"), (5, "x")]
    assert p.held_from() == 2
    [err] = p.flush(None)
    assert err.line == '{"a": 1}\n more err' and err.fields == {}  # joined text is not JSON


def test_multiline_max_lines() -> None:
    got = run([MultilineFilter(start="^S", max_lines=3)], ["S", "a", "b", "c", "d"])
    assert [e.line for e in got] == ["S\na\nb", "c\nd"]


def test_multiline_then_regex_sees_the_joined_event() -> None:
    got = run([MultilineFilter(start=r"^\S"), RegexFilter(pattern=r"(?s)^(?P<head>\S+).*"
                                                                  r"at (?P<last>\w+)\(\)$")],
              TRACE[:3])
    assert got[0].fields == {"head": "2026-01-01", "last": "b"}


@pytest.mark.parametrize(("make", "message"), [
    (lambda: RegexFilter(pattern="(unclosed"), "pattern: expected a regular expression"),
    (lambda: RegexFilter(pattern=r"\d+"), "pattern: expected named groups"),
    (lambda: MultilineFilter(start="x", timeout=0), "timeout: expected a number greater than 0"),
    (lambda: DropFilter(match="*"), "match: expected a regular expression"),
])
def test_bad_specs_name_the_key(make: object, message: str) -> None:
    with pytest.raises(SpecError, match="^" + message.replace("(", r"\(")):
        make()  # type: ignore[operator]
