"""Receivers the outputs are tested against: a real rsyslogd, and a Loki/Elasticsearch HTTP
receiver that checks every payload's shape and can be down or failing for a while.

Each receiver hands back what it got as ``Got`` tuples, so one suite checks every output.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple


class Got(NamedTuple):
    container: str
    source: str
    line: str
    fields: dict[str, Any]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Any, timeout: float = 20, what: str = "condition") -> None:
    """For the synchronous side of a test (a subprocess, a thread): poll ``check``."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- HTTP: Loki push and Elasticsearch bulk ------------------------------------------------------


class HttpReceiver:
    """Loki's ``POST /loki/api/v1/push`` and Elasticsearch's ``POST /_bulk`` on 127.0.0.1.

    ``down()`` keeps the port bound but not listening (connection refused, and no one else
    can take the port); ``fail(n)`` answers the next n requests with 500.  A payload of the
    wrong shape is answered 400 and noted in ``problems``.
    """

    def __init__(self) -> None:
        self.got: list[Got] = []
        self.ids: list[str] = []  # Elasticsearch _id of every document received
        self.problems: list[str] = []
        self.requests = 0
        self.failures_left = 0
        self.fail_status = 500
        self.max_body = 1 << 62  # larger bodies get 413
        self.too_large = 0
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, answer = receiver.handle(self.path, self.headers.get("Content-Type", ""),
                                                 body)
                data = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = self._sock  # the port this receiver holds since it was made
        server.server_activate()
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={
            "poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stop answering; the port stays bound but refuses connections."""
        if self._server is not None:
            self._server.shutdown()
            assert self._thread is not None
            self._thread.join()
            self._server = None
        self._sock.close()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))

    def close(self) -> None:
        self.down()
        self._sock.close()

    def fail(self, n: int, status: int = 500) -> None:
        self.failures_left = n
        self.fail_status = status

    def handle(self, path: str, content_type: str, body: bytes) -> tuple[int, Any]:
        with self._lock:
            self.requests += 1
            if self.failures_left:
                self.failures_left -= 1
                return self.fail_status, {"error": "failing on purpose"}
            if len(body) > self.max_body:
                self.too_large += 1
                return 413, {"error": "payload too large"}
            try:
                if path == "/loki/api/v1/push":
                    assert content_type == "application/json", content_type
                    self.got += loki_entries(json.loads(body))
                    return 204, None
                if path == "/_bulk":
                    assert content_type == "application/x-ndjson", content_type
                    got, ids = bulk_documents(body)
                    self.got += got
                    self.ids += ids
                    return 200, {"took": 1, "errors": False, "items": [
                        {"index": {"_id": i, "status": 201}} for i in ids]}
                raise AssertionError(f"unexpected path {path}")
            except (AssertionError, ValueError, KeyError, TypeError) as e:
                self.problems.append(f"{path}: {e!r}")
                return 400, {"error": str(e)}


def loki_entries(payload: Any) -> list[Got]:
    """The lines of a Loki push, checked against the shape Loki's API documents."""
    assert set(payload) == {"streams"} and payload["streams"], payload
    out = []
    for stream in payload["streams"]:
        assert set(stream) == {"stream", "values"}, stream
        labels = stream["stream"]
        assert {"project", "container", "source"} <= set(labels), labels
        assert all(isinstance(v, str) for v in labels.values()), labels
        last = 0
        for value in stream["values"]:
            assert len(value) in (2, 3), value
            assert isinstance(value[0], str) and value[0].isdigit(), value
            assert int(value[0]) > last, "timestamps within a stream go up"
            last = int(value[0])
            assert isinstance(value[1], str), value
            meta = value[2] if len(value) == 3 else {}
            assert all(isinstance(v, str) for v in meta.values()), meta
            out.append(Got(labels["container"], labels["source"], value[1], meta))
    return out


def bulk_documents(body: bytes) -> tuple[list[Got], list[str]]:
    """The documents of an Elasticsearch bulk request: index action, document, ..."""
    assert body.endswith(b"\n"), "a bulk body ends with a newline"
    lines = body[:-1].split(b"\n")
    assert len(lines) % 2 == 0 and lines, "action and document lines in pairs"
    got, ids = [], []
    for action_line, doc_line in zip(lines[::2], lines[1::2], strict=True):
        action = json.loads(action_line)
        assert set(action) == {"index"} and set(action["index"]) == {"_index", "_id"}, action
        doc = json.loads(doc_line)
        for key in ("@timestamp", "message", "project", "container", "source", "seq"):
            assert key in doc, (key, doc)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", doc["@timestamp"]), doc
        fields = {k: v for k, v in doc.items() if k not in (
            "@timestamp", "message", "project", "container", "source", "seq")}
        got.append(Got(doc["container"], doc["source"], doc["message"], fields))
        ids.append(action["index"]["_id"])
    return got, ids


# -- rsyslogd ------------------------------------------------------------------------------------

RSYSLOG_CONF = """
global(workDirectory="{work}" maxMessageSize="128k"
       parser.escapeControlCharactersOnReceive="off")
module(load="imudp")
module(load="imtcp")
module(load="imuxsock" SysSock.Use="off")
input(type="imudp" address="127.0.0.1" port="{udp}" rcvbufSize="16m")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
input(type="imuxsock" socket="{unix}" useSpecialParser="off" parseHostname="on"
      ignoreTimestamp="off" rateLimit.interval="0")
template(name="j" type="list") {{
  constant(value="{{\\"app\\":\\"") property(name="app-name" format="json")
  constant(value="\\",\\"msgid\\":\\"") property(name="msgid" format="json")
  constant(value="\\",\\"pri\\":\\"") property(name="pri")
  constant(value="\\",\\"host\\":\\"") property(name="hostname" format="json")
  constant(value="\\",\\"ts\\":\\"") property(name="timereported" dateFormat="rfc3339")
  constant(value="\\",\\"sd\\":\\"") property(name="structured-data" format="json")
  constant(value="\\",\\"msg\\":\\"") property(name="msg" format="json")
  constant(value="\\"}}\\n")
}}
*.* action(type="omfile" file="{out}" template="j")
"""
_SD = re.compile(r'\[(\S+)((?: [^=\s]+="(?:[^"\\]|\\.)*")*)\]')
_PARAM = re.compile(r' ([^=\s]+)="((?:[^"\\]|\\.)*)"')


def parse_sd(sd: str) -> dict[str, dict[str, str]]:
    unescape = re.compile(r'\\([\\"\]])')
    return {m[1]: {k: unescape.sub(r"\1", v) for k, v in _PARAM.findall(m[2])}
            for m in _SD.finditer(sd)}


class Rsyslog:
    """A real rsyslogd of the test's own: UDP and TCP on 127.0.0.1, a Unix datagram socket,
    everything written as one JSON object per message into ``out``."""

    def __init__(self, folder: Path) -> None:
        exe = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        assert os.path.exists(exe), "rsyslogd is not installed (scripts/setup.sh --test)"
        self.exe = exe
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "work").mkdir(exist_ok=True)
        self.udp = free_port(socket.SOCK_DGRAM)
        self.tcp = free_port()
        self.unix = folder / "log.sock"
        self.out = folder / "out.jsonl"
        self.conf = folder / "rsyslog.conf"
        self.pidfile = folder / "rsyslogd.pid"
        self.conf.write_text(RSYSLOG_CONF.format(work=folder / "work", udp=self.udp,
                                                 tcp=self.tcp, unix=self.unix, out=self.out))
        self.proc: subprocess.Popen[bytes] | None = None

    def address(self, scheme: str) -> str:
        return {"udp": f"udp://127.0.0.1:{self.udp}", "tcp": f"tcp://127.0.0.1:{self.tcp}",
                "unix": f"unix://{self.unix}"}[scheme]

    def start(self) -> None:
        check = subprocess.run([self.exe, "-N1", "-f", str(self.conf)], capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([self.exe, "-n", "-f", str(self.conf), "-i",
                                      str(self.pidfile)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        wait_until(self._listening, what="rsyslogd to listen")

    def _listening(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, \
            self.proc.stderr.read().decode() if self.proc and self.proc.stderr else ""
        if not self.unix.exists():
            return False
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.tcp)) == 0

    def stop(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None
        with contextlib.suppress(FileNotFoundError):
            self.unix.unlink()

    def messages(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        text = self.out.read_text()
        return [json.loads(line) for line in text.split("\n")[:-1]]  # a torn last one: later

    def got(self) -> list[Got]:
        out = []
        for m in self.messages():
            sd = parse_sd(m["sd"])
            meta = sd["supervise@32473"]
            out.append(Got(m["app"], meta["source"], m["msg"], sd.get("fields@32473", {})))
        return out


@contextlib.contextmanager
def rsyslog(folder: Path, *, start: bool = True) -> Iterator[Rsyslog]:
    r = Rsyslog(folder)
    if start:
        r.start()
    try:
        yield r
    finally:
        r.stop()
