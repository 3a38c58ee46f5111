#!/usr/bin/python3
"""The reference stack's log collector: follows log files and prints each line as one JSON
object on stdout (where the supervisor's log bus picks it up, as every container's output).

Standard library only.  Usage: collector.py [--from-end] NAME=PATH...  (NAME tags the
lines, e.g. redis_primary=/var/log/redis/redis-server.log).  Files may appear later, be
rotated (renamed and recreated) or truncated (copytruncate): each is followed by inode and
offset, polled a few times a second.  It touches HEARTBEAT every second, which its
healthcheck looks at.  Where it got to in each file (inode, offset) is kept in SINCEDB, as
logstash's sincedb: a restarted collector goes on where it stopped instead of printing
every file again (the file is in the container's writable layer, which outlives restarts).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from datetime import UTC, datetime

POLL = 0.2  # seconds between looks at the files
HEARTBEAT = os.environ.get("HEARTBEAT", "/tmp/collector.alive")
SINCEDB = os.environ.get("SINCEDB", "/var/lib/collector/sincedb.json")
# Redis: "1:M 04 Dec 2026 20:30:00.123 * Ready to accept connections tcp"
REDIS = re.compile(r"(?P<pid>\d+):(?P<role>[XCSM]) (?P<time>\d\d \w{3} \d{4} [\d:.]+) "
                   r"(?P<level>[.\-*#]) (?P<message>.*)")
REDIS_ROLES = {"X": "sentinel", "C": "child", "S": "replica", "M": "primary"}
REDIS_LEVELS = {".": "debug", "-": "verbose", "*": "notice", "#": "warning"}
# nodeapp: '2026-12-04T20:30:00.123Z 10.88.0.5 "GET / HTTP/1.1" 200 42 1.2ms session=ab visits=3'
ACCESS = re.compile(r'(?P<time>\S+) (?P<client>\S+) "(?P<method>\S+) (?P<path>\S+) '
                    r'(?P<protocol>[^"]+)" (?P<status>\d+) (?P<bytes>\d+) (?P<ms>[\d.]+)ms'
                    r'(?P<rest>.*)')


def parse(line: str) -> dict[str, object]:
    """The fields a line's format has, or just the message."""
    if m := REDIS.fullmatch(line):
        return {"format": "redis", "pid": int(m["pid"]), "role": REDIS_ROLES[m["role"]],
                "level": REDIS_LEVELS[m["level"]], "logged": m["time"],
                "message": m["message"]}
    if m := ACCESS.fullmatch(line):
        fields: dict[str, object] = {
            "format": "access", "logged": m["time"], "client": m["client"],
            "method": m["method"], "path": m["path"], "status": int(m["status"]),
            "bytes": int(m["bytes"]), "duration_ms": float(m["ms"])}
        for pair in m["rest"].split():  # session=ab12cd34 visits=3
            key, _, value = pair.partition("=")
            fields[key] = int(value) if key == "visits" and value.isdigit() else value
        return fields
    return {"message": line}


class Follower:
    """One file, followed across rotation and truncation."""

    def __init__(self, name: str, path: str, from_end: bool,
                 since: tuple[int, int] | None = None) -> None:
        self.name = name
        self.path = path
        self.fd = -1
        self.inode = 0
        self.offset = 0
        self.partial = b""
        self.from_end = from_end
        self.since = since  # (inode, offset) saved by an earlier run

    def _open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return False
        st = os.fstat(fd)
        self.fd, self.inode = fd, st.st_ino
        # Where an earlier run stopped in this very file; else from the start (logstash's
        # start_position => beginning), unless asked; a file that replaces a rotated one is
        # new in any case.
        if self.since is not None and self.since[0] == st.st_ino and self.since[1] <= st.st_size:
            self.offset = self.since[1]
        else:
            self.offset = st.st_size if self.from_end else 0
        self.from_end, self.since = False, None
        return True

    def position(self) -> tuple[int, int] | None:
        """(inode, offset of the last whole line), for the sincedb."""
        return (self.inode, self.offset - len(self.partial)) if self.fd >= 0 else None

    def poll(self) -> list[str]:
        if self.fd < 0 and not self._open():
            return []
        lines = self._read()
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        if st is None or st.st_ino != self.inode:  # rotated (or removed): finish the old file
            lines += self._read()
            if self.partial:
                lines.append(self.partial.decode(errors="replace"))
                self.partial = b""
            os.close(self.fd)
            self.fd = -1
            if st is not None and self._open():
                lines += self._read()
        return lines

    def _read(self) -> list[str]:
        if os.fstat(self.fd).st_size < self.offset:  # truncated in place
            self.offset = 0
            self.partial = b""
        out: list[str] = []
        while chunk := os.pread(self.fd, 65536, self.offset):
            self.offset += len(chunk)
            *complete, self.partial = (self.partial + chunk).split(b"\n")
            out += [line.decode(errors="replace") for line in complete]
        return out


def save_since(positions: dict[str, tuple[int, int]]) -> None:
    os.makedirs(os.path.dirname(SINCEDB), exist_ok=True)
    with open(SINCEDB + ".tmp", "w") as db:
        json.dump(positions, db)
    os.replace(SINCEDB + ".tmp", SINCEDB)


def main(argv: list[str]) -> int:
    from_end = "--from-end" in argv
    specs = [a for a in argv if a != "--from-end"]
    if not specs or not all("=" in s and s.split("=", 1)[1].startswith("/") for s in specs):
        print("usage: collector.py [--from-end] NAME=/PATH...", file=sys.stderr)
        return 2
    try:
        with open(SINCEDB) as db:
            saved = {k: (int(v[0]), int(v[1])) for k, v in json.load(db).items()}
    except (OSError, ValueError, TypeError, IndexError):
        saved = {}
    followers = [Follower(name, path, from_end, saved.get(path))
                 for name, path in (s.split("=", 1) for s in specs)]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # PID 1 has no default action
    print(json.dumps({"collector": "started", "files": {f.name: f.path for f in followers}}),
          flush=True)
    beat = 0.0
    while True:
        moved = False
        for f in followers:
            for line in f.poll():
                moved = True
                record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                          "source": f.name, "file": f.path, **parse(line)}
                sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
        if moved:  # after the lines are out: a crash in between repeats, never loses
            save_since({f.path: pos for f in followers if (pos := f.position())})
        if time.monotonic() - beat >= 1:
            beat = time.monotonic()
            with open(HEARTBEAT, "w") as hb:
                hb.write(f"{time.time():.0f}\n")
        time.sleep(POLL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
