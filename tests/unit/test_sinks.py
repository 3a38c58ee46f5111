"""Outputs' formats and error handling, and the forwarder's retry/skip/cursor rules.

The receivers here are fakes of our own Sink interface or a local socket; the real rsyslogd
and the HTTP receivers are in tests/conformance/test_outputs.py.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from logging_bus.filters import Event, Pipeline
from logging_bus.forward import Forwarder, load_cursor, save_cursor
from logging_bus.sinks import SinkError, SinkRejected
from logging_bus.sinks.elasticsearch import ElasticsearchSink, bulk_body
from logging_bus.sinks.http import HttpPoster
from logging_bus.sinks.jsonfile import JsonFileSink
from logging_bus.sinks.loki import push_body, push_url
from logging_bus.sinks.syslog import format_message
from logging_bus.specs import ConsoleOutput, ElasticsearchOutput, FileOutput
from logging_bus.store import LogStore
from tests.receivers import HttpReceiver, bulk_documents, loki_entries


def ev(seq: int, line: str = "hello", *, container: str = "web", source: str = "stdout",
       time: float = 1_765_000_000.25, **fields: object) -> Event:
    return Event(seq=seq, time=time, container=container, source=source, line=line,
                 fields=dict(fields))


# -- formats ---------------------------------------------------------------------------------


def test_syslog_rfc5424() -> None:
    msg = format_message(ev(7, "ready", level='a"b]'), facility=3, hostname="box",
                         project="shop")
    assert msg == (b'<30>1 2025-12-06T05:46:40.250000Z box web - stdout '
                   b'[supervise@32473 project="shop" seq="7" source="stdout"]'
                   b'[fields@32473 level="a\\"b\\]"] ready')
    err = format_message(ev(8, "x", source="stderr"), facility=16, hostname="h", project="p")
    assert err.startswith(b"<131>1 ") and b" web - stderr " in err  # local0.err
    odd = Event(seq=9, time=0.0, container="web", source="file:/var/log/a.log", line="x",
                fields={"bad name=": 1})
    f = format_message(odd, facility=1, hostname="h", project="p")
    assert b" file [supervise@32473" in f and b'[fields@32473 bad_name_="1"]' in f


def test_loki_push_body_streams_and_increasing_stamps() -> None:
    last: dict[tuple[str, str], int] = {}
    events = [ev(1, "a"), ev(2, "a"), ev(3, "b", source="stderr"), ev(4, "c", n=1)]
    body = json.loads(push_body(events, project="p", labels={"team": "x"}, last=last))
    got = loki_entries(body)  # the shape Loki documents, stamps going up per stream
    assert [(g.source, g.line, g.fields) for g in got] == [
        ("stdout", "a", {}), ("stdout", "a", {}), ("stdout", "c", {"n": "1"}),
        ("stderr", "b", {})]
    assert body["streams"][0]["stream"] == {"team": "x", "project": "p", "container": "web",
                                            "source": "stdout"}
    again = json.loads(push_body([ev(5, "d")], project="p", labels={}, last=last))
    assert int(again["streams"][0]["values"][0][0]) > int(body["streams"][0]["values"][2][0])
    assert push_url("http://l:3100") == "http://l:3100/loki/api/v1/push"
    assert push_url("http://l:3100/") == "http://l:3100/loki/api/v1/push"
    assert push_url("https://l/custom/push") == "https://l/custom/push"


def test_elasticsearch_bulk_body() -> None:
    body = bulk_body([ev(1, "a", message="mine", level="warn"), ev(2, "b")], project="p",
                     index="logs")
    got, ids = bulk_documents(body)
    assert ids == ["p-1", "p-2"]  # idempotent redelivery
    assert [(g.line, g.fields) for g in got] == [("a", {"level": "warn"}), ("b", {})]
    assert json.loads(body.split(b"\n")[0]) == {"index": {"_index": "logs", "_id": "p-1"}}


async def test_file_rotation_keeps_max_files(tmp_path: Path) -> None:
    sink = JsonFileSink(FileOutput(path=str(tmp_path / "o.jsonl"), max_size=1000,
                                   max_files=3))
    for i in range(0, 100, 10):
        await sink.send([ev(s, "x" * 30) for s in range(i, i + 10)])
    await sink.aclose()
    files = sink.rotated()
    assert [p.name for p in files] == ["o.jsonl.2", "o.jsonl.1", "o.jsonl"]
    seqs = [json.loads(line)["seq"] for p in files for line in p.read_text().splitlines()]
    assert seqs == list(range(100 - len(seqs), 100))  # the newest, in order
    assert all(p.stat().st_size <= 1000 for p in files)


# -- HTTP errors -----------------------------------------------------------------------------


async def test_http_errors_retry_or_reject() -> None:
    receiver = HttpReceiver()  # bound, not listening: refused
    try:
        poster = HttpPoster(receiver.url + "/loki/api/v1/push", headers={}, timeout=5)
        with pytest.raises(SinkError, match=r"^POST http://127.0.0.1:\d+/loki/api/v1/push: "
                                            r"connection refused$") as caught:
            await poster.post(b"{}", "application/json")
        assert not isinstance(caught.value, SinkRejected)
        receiver.up()
        receiver.fail(1)
        with pytest.raises(SinkError, match="500 Internal Server Error") as caught:
            await poster.post(b'{"streams": []}', "application/json")
        assert not isinstance(caught.value, SinkRejected)
        with pytest.raises(SinkRejected, match="400 Bad Request"):
            await poster.post(b'{"streams": []}', "application/json")  # a bad shape
        receiver.problems.clear()
        await poster.aclose()
    finally:
        receiver.close()


async def test_elasticsearch_item_failures() -> None:
    answers = [{"errors": True, "items": [{"index": {"status": 201}},
                                          {"index": {"status": 429}}]},
               {"errors": True, "items": [{"index": {"status": 201}}, {"index": {
                   "status": 400, "error": {"type": "mapper_parsing_exception"}}}]}]
    notices: list[str] = []
    sink = ElasticsearchSink(ElasticsearchOutput(url="http://unused"), project="p",
                             notice=notices.append)

    async def post(body: bytes, content_type: str) -> bytes:
        return json.dumps(answers.pop(0)).encode()

    sink.http.post = post  # type: ignore[method-assign]
    with pytest.raises(SinkError, match="1 of 2 lines failed"):
        await sink.send([ev(1), ev(2)])
    await sink.send([ev(1), ev(2)])  # a mapping error: retrying cannot help
    assert len(notices) == 1 and "mapper_parsing_exception" in notices[0]


async def test_syslog_tcp_reconnects_after_the_receiver_closed() -> None:
    from logging_bus.sinks.syslog import SyslogSink
    from logging_bus.specs import SyslogOutput

    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    sink = SyslogSink(SyslogOutput(address=f"tcp://127.0.0.1:{port}"), project="p")
    await sink.send([ev(1, "one")])
    first, _ = await listener.accept()
    assert (await first.recv(4096)).split(b" ", 1)[0].isdigit()  # octet counting
    first.close()  # the receiver goes away; the next batch must not vanish into it
    await trio.sleep(0.05)
    await sink.send([ev(2, "two")])
    second, _ = await listener.accept()
    data = await second.recv(4096)
    assert data.endswith(b"] two") and data.split(b" ", 1)[0] == str(len(data) - len(
        data.split(b" ", 1)[0]) - 1).encode()
    second.close()
    await sink.aclose()
    listener.close()
    with socket.socket() as s:  # nothing listens there any more
        assert s.connect_ex(("127.0.0.1", port)) != 0


# -- the forwarder ---------------------------------------------------------------------------


class FakeSink:
    """Our own Sink interface: fails or rejects on demand, records what it got."""

    def __init__(self) -> None:
        self.got: list[Event] = []
        self.script: list[Exception] = []
        self.calls = 0
        self.closed = False

    async def send(self, events: Sequence[Event]) -> None:
        self.calls += 1
        if self.script:
            raise self.script.pop(0)
        self.got += events

    async def aclose(self) -> None:
        self.closed = True


def forwarder(store: LogStore, sink: FakeSink, tmp_path: Path, notices: list[str],
              **spec: object) -> Forwarder:
    return Forwarder(store, "out", ConsoleOutput(retry_max=0.05, **spec),  # type: ignore[arg-type]
                     sink, Pipeline(), tmp_path / "out.cursor", notice=notices.append,
                     first_delay=0.01)


async def test_forwarder_retries_skips_rejected_and_survives_a_sink_bug(tmp_path: Path) -> None:
    store = LogStore.open(tmp_path / "logs", fsync="never")
    sink, notices = FakeSink(), list[str]()
    sink.script = [SinkError("down"), SinkError("down"), RuntimeError("bug"),
                   SinkRejected("400 bad"), ]
    store.append("web", "stdout", b"a\nb\n")
    fw = forwarder(store, sink, tmp_path, notices, batch=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(fw.run)
        with trio.fail_after(10):
            while fw.cursor != 3:
                await trio.sleep(0.01)
        store.append("web", "stdout", b"c\n")
        with trio.fail_after(10):
            await fw.drain()
        nursery.cancel_scope.cancel()
    store.close()
    assert [e.line for e in sink.got] == ["c"]  # a and b were refused for good
    assert notices == ["output out: down; retrying (backoff up to 0.05s)",
                       "output out: RuntimeError: bug; retrying (backoff up to 0.05s)",
                       "output out: 400 bad; 2 lines skipped"]
    assert load_cursor(tmp_path / "out.cursor") == 4 and sink.closed


async def test_cursor_past_the_store_end_or_lost_to_retention(tmp_path: Path) -> None:
    store = LogStore.open(tmp_path / "logs", fsync="never")
    store.append("web", "stdout", b"a\nb\n")
    save_cursor(tmp_path / "out.cursor", 50)  # from a store that was deleted since
    sink, notices = FakeSink(), list[str]()
    fw = forwarder(store, sink, tmp_path, notices)
    async with trio.open_nursery() as nursery:
        await nursery.start(fw.run)
        with trio.fail_after(10):
            await fw.drain()
        nursery.cancel_scope.cancel()
    store.close()
    assert [e.line for e in sink.got] == ["a", "b"]
    assert "the store was reset" in notices[0]


def test_syslog_datagrams_keep_their_header_and_utf8_whole() -> None:
    from logging_bus.sinks.syslog import MAX_DATAGRAM, format_message

    event = Event(seq=1, time=0.0, container="web", source="stdout", line="é" * 40000,
                  fields={"big": "ü" * 5000, "n": "1"})
    message = format_message(event, facility=1, hostname="h", project="p", limit=MAX_DATAGRAM)
    assert len(message) <= MAX_DATAGRAM
    text = message.decode()  # cut on a character boundary
    assert '[fields@32473 big="' in text and ' n="1"]' in text  # structured data whole
    whole = format_message(event, facility=1, hostname="h", project="p")
    assert len(whole) > MAX_DATAGRAM  # TCP: nothing cut
