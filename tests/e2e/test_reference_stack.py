"""The reference stack for real (issue 6): configs/reference.toml as the README runs it, with
node, redis-server and python3 from the host, the published port on a free port of ours
(`WEB_PORT`) and state under tmp.  Needs `bash scripts/setup.sh --test` (it installs node and
the app's npm packages)."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from supervisor.paths import ProjectPaths
from tests.leakguard import OURS
from tests.privileged.supervised import Supervised

T = TypeVar("T")
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
STACK_FILE = CONFIGS / "reference.toml"
FIVE = {"redis_primary", "redis_replica1", "redis_replica2", "nodeapp", "logstash"}


class Reference(Supervised):
    """The repository's own stack file, not a copy: its relative paths are part of the test."""

    def __init__(self, paths: ProjectPaths) -> None:
        self.paths = paths
        OURS.add(paths.project)
        self.folder = STACK_FILE.parent
        self.file = STACK_FILE
        self.pid = None


def until(what: str, probe: Callable[[], T | None], timeout: float = 30) -> T:
    """Polls `probe` until it gives something (the stack's state has no event for these)."""
    deadline = time.monotonic() + timeout
    while (found := probe()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def reference(stack: list[Supervised], project: ProjectPaths,
              monkeypatch: pytest.MonkeyPatch) -> Reference:
    assert (CONFIGS / "nodeapp" / "node_modules" / "redis").is_dir(), \
        "configs/nodeapp has no node_modules: run `bash scripts/setup.sh --test`"
    monkeypatch.setenv("WEB_PORT", str(free_port()))
    s = Reference(project)
    stack.append(s)  # `down -v` at the end, whatever happened
    return s


def healthy(s: Supervised) -> bool | None:
    r = s.cli("ps", "--format", "json")
    if r.returncode != 0:  # a foreground supervisor still starting
        return None
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    states = {r["name"]: (r["state"].get("health") or {}).get("status") for r in rows}
    return True if states == dict.fromkeys(FIVE, "healthy") else None


def visit(sid: str | None = None) -> tuple[str, int]:
    """GET / on the published port: (session id, visit count)."""
    conn = http.client.HTTPConnection("127.0.0.1", int(os.environ["WEB_PORT"]), timeout=10)
    try:
        conn.request("GET", "/", headers={"Cookie": f"sid={sid}"} if sid else {})
        r = conn.getresponse()
        body = r.read().decode()
        assert r.status == 200, body
        if sid is None:
            m = re.match(r"sid=([0-9a-f]{32});", r.getheader("Set-Cookie") or "")
            assert m, r.getheaders()
            sid = m[1]
        visits = int(r.getheader("X-Visits") or 0)
        assert f"Visit {visits} of session {sid[:8]}" in body
        return sid, visits
    finally:
        conn.close()


def replication(s: Supervised, name: str) -> dict[str, str]:
    out = s.ok("exec", name, "redis-cli", "info", "replication")
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


def replicas_linked(s: Supervised) -> bool | None:
    for name in ("redis_replica1", "redis_replica2"):
        info = replication(s, name)
        if info.get("role") != "slave" or info.get("master_link_status") != "up":
            return None
    return True


def replicas_hold(s: Supervised, key: str, field: str, value: str) -> bool | None:
    for name in ("redis_replica1", "redis_replica2"):
        if s.ok("exec", name, "redis-cli", "hget", key, field).strip() != value:
            return None
    return True


def collected(s: Supervised) -> list[dict[str, Any]]:
    """logstash's output in the bus, one JSON object a line."""
    return [json.loads(line) for line in s.ok("logs", "--no-log-prefix", "logstash").splitlines()]


def test_reference_stack(reference: Reference) -> None:
    s = reference
    # 1. From nothing, `up -d` brings all five up (--wait: until every check passed); the
    # published port answers, a session counts.
    r = s.up("--wait")
    assert r.returncode == 0, r.stderr
    assert healthy(s), r.stdout
    sid, first = visit()
    assert first == 1
    assert [visit(sid)[1] for _ in range(2)] == [2, 3]
    assert visit()[1] == 1  # another session, another counter

    # 2. Both replicas copy the primary; the app's key is readable on each.
    until("replication up", lambda: replicas_linked(s))
    until("the session on both replicas", lambda: replicas_hold(s, f"session:{sid}", "visits", "3"))

    # 3. kill -9 of the primary's redis-server: back by its restart policy, with its data.
    pid = s.state("redis_primary")["pid"]
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "redis-server"
    os.kill(pid, signal.SIGKILL)
    [died] = s.wait_event("die", "redis_primary")
    assert died["attributes"]["exitCode"] == "137"
    s.wait_event("start", "redis_primary", count=2)
    assert s.state("redis_primary")["pid"] != pid
    until("all five healthy again", lambda: healthy(s))
    assert visit(sid)[1] == 4  # appendonly: the counter survived
    until("replication up again", lambda: replicas_linked(s))
    until("the new count on both replicas",
          lambda: replicas_hold(s, f"session:{sid}", "visits", "4"))

    # 4. Logs: the primary's file and stdout, the app's request lines, the one-off, logstash.
    until("the primary's log file, before and after the kill", lambda: True if s.ok(
        "logs", "--source", "file", "redis_primary").count("Ready to accept connections") == 2
        else None)
    assert "redis_primary: Redis server v=" in s.ok("logs", "--source", "stdout", "redis_primary")
    both = s.ok("logs", "redis_primary")
    assert "Ready to accept connections" in both and "redis_primary: Redis server v=" in both
    # 4 requests, each from stdout and from access.log
    until("8 request lines", lambda: True if len(s.ok(
        "logs", "nodeapp", "--grep", f"GET / .* session={sid[:8]}").splitlines()) == 8 else None)
    one_off = s.cli("run", "-it", "--rm", "--volumes-from", "redis_primary", "host",
                    "cat", "/var/log/redis/redis-server.log", input="")
    assert one_off.returncode == 0, one_off.stderr
    assert one_off.stdout.count("Ready to accept connections") == 2
    record = until("logstash's record of the 4th visit", lambda: next(
        (x for x in collected(s) if x.get("source") == "nodeapp"
         and x.get("session") == sid[:8] and x.get("visits") == 4), None))
    assert record["format"] == "access" and record["status"] == 200 and record["path"] == "/"
    assert any(x.get("source") == "redis_primary" and x.get("role") == "primary"
               for x in collected(s))
    follow_logstash(s)

    # 5. down stops all five, dependants first, and the supervisor with them.
    events = subprocess.Popen([sys.executable, "-m", "supervisor", "-p", s.paths.project,
                               "events", "--format", "json", "--since", "0"],
                              stdout=subprocess.PIPE, text=True)
    assert events.stdout is not None
    assert events.stdout.readline()  # it follows: the stream is open before the down
    downed_at = time.time()
    r = s.cli("down", timeout=60)
    assert r.returncode == 0, r.stderr
    s.reap()
    out, _ = events.communicate(timeout=30)  # it ends with the supervisor
    died_in_order = [e["container"] for e in map(json.loads, out.splitlines())
                     if e["action"] == "die" and e["time"] >= downed_at]
    assert set(died_in_order) == FIVE, out
    assert_reverse_order(died_in_order)
    assert not (s.paths.run / "api.sock").exists()


def assert_reverse_order(order: list[str]) -> None:
    """Stops go against the dependencies: logstash reads from nodeapp and the primary, the
    app and the replicas need the primary."""
    assert order.index("logstash") < order.index("nodeapp"), order
    assert order[-1] == "redis_primary", order


def follow_logstash(s: Supervised) -> None:
    """`supervise logs -f logstash` shows a request made after it started: its last line
    of history (-n 1) says it reads, then a new request's record must follow."""
    proc = subprocess.Popen([sys.executable, "-m", "supervisor", "-p", s.paths.project, "logs",
                             "-f", "-n", "1", "--no-log-prefix", "logstash"],
                            stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()])
    reader.start()
    try:
        lines.get(timeout=30)
        sid, _ = visit()
        deadline = time.monotonic() + 30
        while json.loads(lines.get(timeout=max(0.0, deadline - time.monotonic()))
                         ).get("session") != sid[:8]:
            pass
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        reader.join()


def test_reference_stack_ctrl_c(reference: Reference, tmp_path: Path) -> None:
    """A foreground `supervise up` stops the whole stack on Ctrl-C (SIGINT to the terminal's
    process group)."""
    s = reference
    log = tmp_path / "up.out"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "-p", s.paths.project, "up", "--no-color",
             str(STACK_FILE)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        until("all five healthy", lambda: healthy(s))
        assert visit()[1] == 1
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    order = [m[1] for m in re.finditer(r"^(\w+)\s+\| \1 exited with code \d+$", text, re.M)]
    assert set(order) == FIVE, text
    assert_reverse_order(order)
