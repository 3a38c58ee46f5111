"""Forwarding for real: a stack's container output and a real redis-server's log file, through
filters, reach every output (console, file, a real rsyslogd over TCP, Loki and Elasticsearch
receivers); after `down` and `up` each output resumes from its saved cursor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from supervisor.paths import ProjectPaths
from tests.privileged.supervised import Supervised, make_stack
from tests.receivers import Got, HttpReceiver, rsyslog

REDIS_LOG = "/var/log/redis/redis-server.log"
REDIS_FORMAT = (r"^(?P<pid>\d+):(?P<role>[XCSM]) (?P<date>\d{1,2} \w{3} \d{4} [\d:.]+) "
                r"(?P<level>[.*#-]) (?P<msg>.*)$")
READY = "ready to accept connections"  # redis 7: "... tcp", "... at /tmp/redis.sock"
COUNTER = [f"n {i}" for i in range(1, 301)] + ["done"]


def json_lines(text: str) -> list[Got]:
    out = []
    for line in text.splitlines():
        if line.startswith('{"seq":'):  # the console shares the log with the notices
            e = json.loads(line)
            out.append(Got(e["container"], e["source"], e["line"], e.get("fields", {})))
    return out


def wait_for(outputs: dict[str, Callable[[], list[Got]]], runs: int, timeout: float = 60
             ) -> dict[str, list[Got]]:
    """Every output's lines, once each holds `runs` runs of the counter and of redis's
    ready line."""
    deadline = time.monotonic() + timeout
    while True:
        got = {name: read() for name, read in outputs.items()}
        done = {name: sum(g.line == "done" for g in lines) >= runs and sum(
            READY in g.line.lower() for g in lines) >= runs
            for name, lines in got.items()}
        if all(done.values()):
            return got
        assert time.monotonic() < deadline, f"not everything arrived: {done}"
        time.sleep(0.1)


def test_a_stacks_lines_reach_every_output_and_resume_after_a_restart(
        stack: list[Supervised], project: ProjectPaths, tmp_path: Path,
        busybox_rootfs: Path) -> None:
    loki, search = HttpReceiver(), HttpReceiver()
    loki.up()
    search.up()
    archive = tmp_path / "archive" / "all.jsonl"
    try:
        with rsyslog(tmp_path / "rsyslog") as syslogd:
            s = make_stack(stack, project, tmp_path, f"""
[stack.logs.outputs.screen]
type = "console"

[stack.logs.outputs.archive]
type = "file"
path = "{archive}"

[stack.logs.outputs.rsyslog]
type = "syslog"
address = "{syslogd.address("tcp")}"

[stack.logs.outputs.grafana]
type = "loki"
url = "{loki.url}"

[stack.logs.outputs.search]
type = "elasticsearch"
url = "{search.url}"

[[stack.logs.filters]]
type = "add_fields"
fields = {{ stack = "forwarding" }}

[containers.counter]
rootfs = "ROOTFS"
command = ["sh", "-c", "seq 1 300 | sed 's/^/n /'; echo done"]

[containers.redis]
image = "host"
command = ["redis-server", "--port", "0", "--unixsocket", "/tmp/redis.sock", "--dir", "/tmp",
           "--save", "", "--logfile", "{REDIS_LOG}"]
volumes = ["redislog:/var/log/redis"]
stop_grace_period = "1s"

[containers.redis.logs]
files = ["/var/log/redis/*.log"]

[[containers.redis.logs.filters]]
type = "regex"
pattern = '{REDIS_FORMAT}'
""", busybox_rootfs, up=True)
            outputs: dict[str, Callable[[], list[Got]]] = {
                "console": lambda: json_lines((project.run / "supervisor.log").read_text()),
                "file": lambda: json_lines(archive.read_text() if archive.exists() else ""),
                "syslog": syslogd.got, "loki": lambda: list(loki.got),
                "elasticsearch": lambda: list(search.got)}
            got = wait_for(outputs, 1)
            for name, lines in got.items():
                counted = [g.line for g in lines if g.container == "counter"]
                assert counted == COUNTER, name
                assert {g.source for g in lines if g.container == "counter"} == {"stdout"}
                [ready] = [g for g in lines if READY in g.line.lower()]
                assert ready.container == "redis" and ready.source == f"file:{REDIS_LOG}"
                assert ready.fields["role"] == "M" and ready.fields["level"] == "*", name
                assert ready.fields["pid"].isdigit() and ready.fields["stack"] == "forwarding"
            assert not loki.problems and not search.problems
            # `logs --json` prints the lines as the outputs see them, fields and all
            printed = json_lines(s.ok("logs", "--json", "redis"))
            [ready] = [g for g in printed if READY in g.line.lower()]
            assert ready.fields["role"] == "M" and ready.fields["stack"] == "forwarding"

            s.down()  # the outputs drain and keep their cursors
            assert s.up().returncode == 0
            got = wait_for(outputs, 2)
            for name, lines in got.items():
                counted = [g.line for g in lines if g.container == "counter"]
                assert counted == COUNTER + COUNTER, name  # the second run's, nothing again
            ids = search.ids
            assert len(ids) == len(set(ids))
            assert not loki.problems and not search.problems
            s.down()
    finally:
        loki.close()
        search.close()
