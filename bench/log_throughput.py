#!/usr/bin/env python3
"""Log capture end to end (issue 4, acceptance 7): one container writes 1,000,000 numbered
100-byte lines with `cat` of a prepared 100 MB file; side by side in one run with podman
(k8s-file), docker (json-file, private dockerd) and supervisord.

    python3 bench/log_throughput.py [--runs 5] [--only ours,podman,docker,supervisord]
                                    [--big-copies 10] [--tail-runs 30] [--timeout 300]
                                    [--commit REV]

--commit REV measures that commit's supervisor/ and logging_bus/ (`git archive`, through
PYTHONPATH for our commands only) instead of the work tree.

The generator, for every tool: `/bin/sh -c "cat /lines"` in the busybox rootfs, where
/lines holds lines 0000001 .. 1000000, each "NNNNNNN " + 91 "x" + "\\n" (100 bytes).  A
warm-up round (page cache, the peers' first-use set-up) runs first and is not counted; then
--runs rounds, the tools interleaved in each round.

(a) **Start → every line stored** (s).  t0 = `time.time()` just before the command that
    starts the container is spawned: `supervise run -d --name N ROOTFS ...`, `podman run -d`,
    `docker run -d`, supervisord's `startProcess` over XML-RPC.  The end is the time the tool
    itself stamped on line 1,000,000 when it stored it: for us the store's block time
    (`GET /containers/N/logs?tail=1`, LogLine.time: the clock read just before the block's
    `writev`), for podman the k8s-file timestamp of the last line (conmon's), for docker the
    json-file `time` of the last line (dockerd's).  supervisord stamps nothing: its end is
    when its log file holds 100,000,000 bytes (polled every 2 ms, as shared/peers did).
    Shown beside it: `run -d` + `wait` as whole CLI commands (shared/peers' metric), the
    first line's stamp (so "first -> last line" is the capture alone, without any CLI), and
    for us where the time went, by the supervisor's own events (create, start, die).
    A second row for us, "supervise (API)", drives the same container from this process:
    created first (not timed), t0 just before POST /containers/N/start, no CLI start-up;
    its log is read back with GET logs?raw=1 by the Client (into memory) and verified.
(b) **Read back to a file**: `supervise logs N > file` as a whole command (wall), against
    `podman logs N > file` and `docker logs N > file`; and each with timestamps (`-t`).
(c) **`--tail 10` at the API** on the store all this left (≥ 1 GB: a container writes
    --big-copies × 1,000,000 lines, 10 × 100 MB by default, after the rounds): `curl
    --unix-socket` (its `time_total`) and the Client (httpx, in this process, one connection),
    --tail-runs each, for the big container, for the first round's container (its lines lie
    under ≥ 1 GB of others), and for the whole stack; `supervise logs --tail 10` whole too.
    While the big container writes, a thread pings the API (GET /_ping every 20 ms on a
    connection of its own): how long the supervisor keeps its API waiting meanwhile.
(d) **The supervisor's peak RSS**: VmHWM of the supervisor pid (a high-water mark: nothing
    is missed between readings), read after every step, so the table says when it grew.

Every output is verified: byte-equal to the generated file means all 1,000,000 lines, each
correct, once, in order; if not, lines lost / duplicated / out of order / bad are counted.
With `-t` the timestamp before the first space is dropped first.

Peers, with the workarounds of shared/peers/README.md: podman `--runtime runc`, the ulimit
flags, `--network none`, `--log-driver k8s-file`, `--rootfs` (a copy of the rootfs), private
--root/--runroot/--tmpdir; docker: a private dockerd (data, exec root and socket in the temp
dir; no bridge, no iptables) as shared/peers/10-dockerd.sh, the rootfs imported as an image,
`--log-driver json-file`; supervisord: `chroot ROOTFS /bin/sh -c "cat /lines"`,
stdout_logfile, no rotation.

Output: tables on stdout (also saved as bench/results/log_throughput-*.txt), progress on
stderr, raw numbers in bench/results/log_throughput-*.json.  Everything lives in one temp
dir; the supervisor is taken down with `down -v`, podman's containers removed, dockerd
stopped, supervisord shut down, and what the peers write outside the temp dir (/run/containers,
/run/runc, /dev/shm/libpod_lock, libpod_parent and docker cgroups, /run/docker,
/run/containerd, /etc/docker/key.json) removed if this run made it.  Leftovers are checked at
the end: cgroups, mounts, /run entries, processes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import io
import itertools
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib

# The code measured: the installed (editable) package, PYTHONPATH, or --commit's copy; the
# repo itself only as a fallback.
sys.path.append(str(benchlib.REPO_DIR))

N_LINES = 1_000_000
DIGITS = 7
PAD = b"x" * (100 - DIGITS - 2)
GEN = "cat /lines"
COMMAND = ["/bin/sh", "-c", GEN]
Client: Any = None  # supervisor.client.Client, imported by main() once the code is chosen
CODE: Path | None = None  # --commit's copy of the code, for the supervise commands only


def supervise_for(workdir: Path, project: str) -> benchlib.Supervise:
    """The CLI of our project; with --commit, PYTHONPATH points at that commit's code (for
    our commands only: supervisord, a Python program, has a `supervisor` package too)."""
    sv = benchlib.Supervise(workdir, project)
    if CODE is not None:
        sv.env["PYTHONPATH"] = os.pathsep.join(
            [str(CODE), *filter(None, [os.environ.get("PYTHONPATH")])])
    return sv
TARGET_A = 0.5  # × podman
TARGET_B = 0.1  # × podman logs
TARGET_C_MS = 50.0
TARGET_D_KB = 100 * 1024
DOCKER_IMAGE = "sbench-logs/busybox:latest"


def make_lines(n: int) -> bytes:
    return b"".join(b"%07d %s\n" % (i, PAD) for i in range(1, n + 1))


# ============================================================================ verification

def diagnose(data: bytes, n: int) -> dict[str, Any]:
    """What is wrong with an output that is not byte-equal to the expected lines."""
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" after a final newline
    numbers: list[int] = []
    bad = 0
    examples: list[str] = []
    for line in lines:
        if len(line) == 99 and line[DIGITS:DIGITS + 1] == b" " and line[DIGITS + 1:] == PAD \
                and line[:DIGITS].isdigit():
            numbers.append(int(line[:DIGITS]))
        else:
            bad += 1
            if len(examples) < 3:
                examples.append(line[:160].decode(errors="replace"))
    seen = set(numbers)
    return {"ok": False, "lines": len(lines), "bytes": len(data), "bad": bad,
            "bad_examples": examples,
            "unterminated_tail": len(tail),
            "lost": len(set(range(1, n + 1)) - seen),
            "duplicated": len(numbers) - len(seen),
            "out_of_order": sum(1 for a, b in itertools.pairwise(numbers)
                                if b <= a)}


def verify(data: bytes, expected: bytes) -> dict[str, Any]:
    if data == expected:
        return {"ok": True, "lines": N_LINES, "bytes": len(data)}
    return diagnose(data, N_LINES)


def verify_timestamped(data: bytes, expected: bytes) -> dict[str, Any]:
    """`logs -t`: every line is TIMESTAMP SPACE LINE; the lines must be the expected ones."""
    lines = data.split(b"\n")
    tail = lines.pop()
    stripped = []
    no_stamp = 0
    for line in lines:
        stamp, sep, rest = line.partition(b" ")
        if not sep or len(stamp) < 20 or not stamp[:4].isdigit():
            no_stamp += 1
        stripped.append(rest)
    result = verify(b"\n".join(stripped) + b"\n" + tail if lines else tail, expected)
    result["no_timestamp"] = no_stamp
    if no_stamp:
        result["ok"] = False
    return result


def verify_file(path: Path, expected: bytes, timestamped: bool = False) -> dict[str, Any]:
    data = path.read_bytes()
    return verify_timestamped(data, expected) if timestamped else verify(data, expected)


def verify_repeated(path: Path, expected: bytes, copies: int) -> dict[str, Any]:
    """A file that must be `expected` `copies` times over (the big container's output)."""
    size = path.stat().st_size
    good = 0
    with path.open("rb") as f:
        for _ in range(copies):
            if f.read(len(expected)) == expected:
                good += 1
        extra = len(f.read(1 << 20))
    ok = good == copies and size == copies * len(expected) and not extra
    return {"ok": ok, "bytes": size, "copies_equal": good, "copies": copies,
            "lines": size // 100 if ok else None}


# ============================================================================ helpers

def rfc3339(text: str) -> float:
    """2026-12-04T21:21:14.836853006Z (or +00:00) -> Unix seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)$", text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    base = dt.datetime.fromisoformat(m.group(1) + zone).timestamp()
    return base + (float("0." + m.group(2)) if m.group(2) else 0.0)


def first_and_last_line(path: Path) -> tuple[bytes, bytes]:
    with path.open("rb") as f:
        first = f.readline()
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - 8192))
        last = f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return first.rstrip(b"\n"), last


def run(argv: list[str], timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ...: exit {r.returncode}: "
                           + " ".join((r.stderr or r.stdout).split())[:300])
    return r


def timed_to_file(argv: list[str], out: Path, env: dict[str, str] | None = None,
                  cwd: Path | None = None, timeout: float = 300) -> float:
    """Wall time of a whole command whose stdout goes to `out`."""
    with out.open("wb") as f:
        t = time.perf_counter()
        r = subprocess.run(argv, stdout=f, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                           env=env, cwd=cwd, timeout=timeout)
        wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])} ...: exit {r.returncode}: "
                           + " ".join(r.stderr.decode(errors="replace").split())[:300])
    return wall


def vm_kb(pid: int | None) -> dict[str, int]:
    if pid is None:
        return {}
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key, value = line.split()[:2]
                    out[key.rstrip(":")] = int(value)
    except OSError:
        pass
    return out


class Tool:
    name = "?"
    skipped = ""
    readbacks: tuple[tuple[str, str], ...] = (("readback", "logs NAME > file"),
                                              ("readback_t", "logs -t NAME > file"))

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        self.anomalies: list[str] = []
        self.info: dict[str, Any] = {}

    def start(self) -> None: ...

    def one(self, label: str) -> dict[str, Any]:
        raise NotImplementedError

    def stop(self) -> None: ...


# ============================================================================ ours

class Pinger(threading.Thread):
    """GET /_ping every `interval` s from a thread of this process, on a connection of its
    own: how long the supervisor keeps the API waiting while it stores a flood."""

    def __init__(self, sock: str, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.sock, self.interval = sock, interval
        self.ms: list[float] = []
        self.done = threading.Event()
        self.error = ""

    def run(self) -> None:
        client = Client(self.sock, timeout=60)
        try:
            while not self.done.is_set():
                t = time.perf_counter()
                client.get("/_ping")
                self.ms.append((time.perf_counter() - t) * 1e3)
                self.done.wait(self.interval)
        except Exception as e:  # reported, not fatal
            self.error = f"{type(e).__name__}: {e}"
        finally:
            client.close()

    def stop(self) -> dict[str, Any]:
        self.done.set()
        self.join(timeout=70)
        s = benchlib.summary(self.ms)
        if s["n"]:
            s["p99"] = sorted(self.ms)[min(len(self.ms) - 1, int(0.99 * len(self.ms)))]
            s["over_50ms"] = sum(1 for x in self.ms if x > 50)
        return {"summary": s, "error": self.error}


class Ours(Tool):
    name = "supervise (CLI)"

    def __init__(self, args: argparse.Namespace, workdir: Path, rootfs: Path, project: str,
                 expected: bytes) -> None:
        super().__init__()
        self.args, self.workdir, self.rootfs, self.expected = args, workdir, rootfs, expected
        self.sv = supervise_for(workdir, project)
        self.project = project
        self.client: Any = None
        self.pid: int | None = None
        self.memory: list[dict[str, Any]] = []  # VmHWM after each step
        self.out = workdir / "ours.out"
        self.names: list[str] = []

    def note_memory(self, step: str) -> None:
        m = vm_kb(self.pid)
        if m:
            self.memory.append({"step": step, **m})

    def start(self) -> None:
        stack = self.workdir / "stack.toml"
        stack.write_text(f'[stack]\nname = "{self.project}"\n\n[containers.lt-warm]\n'
                         f'rootfs = "{self.rootfs}"\ncommand = {json.dumps(COMMAND)}\n'
                         'restart = "no"\n')
        t = time.perf_counter()
        self.sv.up(stack)
        self.info["up_d_s"] = round(time.perf_counter() - t, 3)
        self.pid = self.sv.pid()
        self.info["supervisor_pid"] = self.pid
        self.info["fork_server_pid"] = self.sv.fork_server_pid()
        self.client = Client(str(self.sv.run_dir / self.project / "api.sock"), timeout=None)
        self.note_memory("after up -d (lt-warm started)")
        self.sv.cli("wait", "lt-warm")
        self.names.append("lt-warm")
        result = self._read_back("lt-warm", timestamps=False)
        self.info["warm_up"] = result
        self.note_memory("after lt-warm stored and read back")

    def _last_record(self, name: str) -> dict[str, Any]:
        assert self.client is not None
        lines = list(self.client.stream("GET", f"/containers/{name}/logs", tail=1))
        return json.loads(lines[-1])

    def _first_record(self, name: str) -> dict[str, Any]:
        assert self.client is not None
        stream = self.client.stream("GET", f"/containers/{name}/logs")
        try:
            return json.loads(next(stream))
        finally:
            stream.close()

    def _events(self, name: str, since: float) -> dict[str, float]:
        assert self.client is not None
        out: dict[str, float] = {}
        for line in self.client.stream("GET", "/events", since=f"{since:.6f}",
                                       until=f"{time.time():.6f}"):
            e = json.loads(line)
            if e["container"] == name and e["action"] in ("create", "start", "die"):
                out.setdefault(e["action"], e["time"])
        return out

    def _read_back(self, name: str, timestamps: bool) -> dict[str, Any]:
        argv = self.sv.argv("logs", *(["-t"] if timestamps else []), name)
        cpu0 = benchlib.cpu_seconds(self.pid) if self.pid else 0.0
        wall = timed_to_file(argv, self.out, env=self.sv.env, cwd=self.workdir)
        cpu = benchlib.cpu_seconds(self.pid) - cpu0 if self.pid else None
        check = verify_file(self.out, self.expected, timestamped=timestamps)
        self.out.unlink()
        return {"wall_s": wall, "supervisor_cpu_s": cpu, "verify": check}

    def one(self, label: str) -> dict[str, Any]:
        assert self.pid is not None
        name = f"lt-{label}"
        self.names.append(name)
        cpu0 = benchlib.cpu_seconds(self.pid)
        t0 = time.time()
        p0 = time.perf_counter()
        self.sv.cli("run", "-d", "--name", name, str(self.rootfs), *COMMAND)
        p1 = time.perf_counter()
        self.sv.cli("wait", name)
        p2 = time.perf_counter()
        cpu = benchlib.cpu_seconds(self.pid) - cpu0
        last = self._last_record(name)
        first = self._first_record(name)
        events = self._events(name, t0 - 1)
        if not last["line"].startswith("1000000 "):
            self.anomalies.append(f"{name}: last stored line is {last['line'][:20]!r}")
        row: dict[str, Any] = {
            "label": label, "name": name,
            "start_to_stored_s": last["time"] - t0,
            "first_line_stored_s": first["time"] - t0,
            "run_d_s": p1 - p0, "wait_s": p2 - p1, "run_d_plus_wait_s": p2 - p0,
            "last_seq": last["seq"], "supervisor_cpu_s": cpu,
            "events_s": {k: round(v - t0, 4) for k, v in events.items()},
        }
        self.note_memory(f"{name}: stored")
        row["readback"] = self._read_back(name, timestamps=False)
        self.note_memory(f"{name}: logs > file")
        row["readback_t"] = self._read_back(name, timestamps=True)
        self.note_memory(f"{name}: logs -t > file")
        return row

    def one_api(self, label: str) -> dict[str, Any]:
        """The same container through the API from this process: no CLI start-up.  Created
        first (not timed); t0 just before POST /containers/N/start."""
        assert self.pid is not None and self.client is not None
        name = f"lt-api-{label}"
        self.names.append(name)
        self.client.post("/containers/create", {"rootfs": str(self.rootfs),
                                                "command": COMMAND}, name=name)
        cpu0 = benchlib.cpu_seconds(self.pid)
        t0 = time.time()
        p0 = time.perf_counter()
        self.client.post(f"/containers/{name}/start")
        p1 = time.perf_counter()
        self.client.post(f"/containers/{name}/wait")
        p2 = time.perf_counter()
        cpu = benchlib.cpu_seconds(self.pid) - cpu0
        last = self._last_record(name)
        first = self._first_record(name)
        events = self._events(name, t0 - 1)
        if not last["line"].startswith("1000000 "):
            self.anomalies.append(f"{name}: last stored line is {last['line'][:20]!r}")
        self.note_memory(f"{name}: stored")
        cpu1 = benchlib.cpu_seconds(self.pid)
        p3 = time.perf_counter()
        data = b"".join(self.client.stream("GET", f"/containers/{name}/logs", raw=1))
        p4 = time.perf_counter()
        read_cpu = benchlib.cpu_seconds(self.pid) - cpu1
        check = verify(data, self.expected)
        del data
        self.note_memory(f"{name}: GET logs?raw=1")
        return {"label": label, "name": name,
                "start_to_stored_s": last["time"] - t0,
                "first_line_stored_s": first["time"] - t0,
                "run_d_s": p1 - p0, "wait_s": p2 - p1, "run_d_plus_wait_s": p2 - p0,
                "last_seq": last["seq"], "supervisor_cpu_s": cpu,
                "events_s": {k: round(v - t0, 4) for k, v in events.items()},
                "readback": {"wall_s": p4 - p3, "supervisor_cpu_s": read_cpu,
                             "verify": check}}

    # -- (c): a big store, then --tail 10 ---------------------------------------------------

    def big(self, copies: int) -> dict[str, Any]:
        assert self.pid is not None
        name = "lt-big"
        self.names.append(name)
        command = ["/bin/sh", "-c", "cat" + " /lines" * copies]
        pinger = Pinger(str(self.sv.run_dir / self.project / "api.sock"))
        pinger.start()
        cpu0 = benchlib.cpu_seconds(self.pid)
        t0 = time.time()
        p0 = time.perf_counter()
        self.sv.cli("run", "-d", "--name", name, str(self.rootfs), *command)
        self.sv.cli("wait", name, timeout=self.args.timeout)
        p1 = time.perf_counter()
        cpu = benchlib.cpu_seconds(self.pid) - cpu0
        ping = pinger.stop()
        last = self._last_record(name)
        self.note_memory(f"{name}: {copies} × 100 MB stored")
        argv = self.sv.argv("logs", name)
        cpu1 = benchlib.cpu_seconds(self.pid)
        wall = timed_to_file(argv, self.out, env=self.sv.env, cwd=self.workdir,
                             timeout=self.args.timeout)
        read_cpu = benchlib.cpu_seconds(self.pid) - cpu1
        check = verify_repeated(self.out, self.expected, copies)
        self.out.unlink()
        self.note_memory(f"{name}: logs > file ({copies} × 100 MB)")
        store = self.sv.state_dir / self.project / "logs"
        files = list(store.iterdir()) if store.is_dir() else []
        return {"lines": copies * N_LINES, "start_to_stored_s": last["time"] - t0,
                "run_d_plus_wait_s": p1 - p0, "supervisor_cpu_s": cpu,
                "last_seq": last["seq"], "readback_s": wall, "readback_supervisor_cpu_s":
                read_cpu, "readback_verify": check,
                "store_bytes": sum(f.stat().st_size for f in files),
                "store_segments": sum(1 for f in files if f.suffix == ".seg"),
                "store_lines": last["seq"], "ping_during_capture_ms": ping}

    def tails(self, runs: int) -> dict[str, Any]:
        sock = str(self.sv.run_dir / self.project / "api.sock")
        first_round = "lt-1" if "lt-1" in self.names else "lt-warm"
        variants = [
            ("big", "lt-big, NDJSON", "/containers/lt-big/logs", {"tail": "10"}),
            ("big", "lt-big, raw=1", "/containers/lt-big/logs", {"tail": "10", "raw": "1"}),
            ("stack", "whole stack (/logs), NDJSON", "/logs", {"tail": "10"}),
            ("buried", f"{first_round} (its lines under ≥ 1 GB of others), NDJSON",
             f"/containers/{first_round}/logs", {"tail": "10"}),
            ("buried", f"{first_round}, raw=1", f"/containers/{first_round}/logs",
             {"tail": "10", "raw": "1"}),
        ]
        want = [b"%07d %s" % (i, PAD) for i in range(N_LINES - 9, N_LINES + 1)]

        def check(body: bytes, raw: bool) -> bool:
            if raw:
                return body == b"".join(w + b"\n" for w in want)
            lines = [json.loads(x)["line"].encode() for x in body.splitlines() if x.strip()]
            return lines == want

        out: dict[str, Any] = {"variants": []}
        outfile = self.workdir / "tail.out"
        for kind, label, path, query in variants:
            raw = "raw" in query
            url = "http://supervise" + path + "?" + "&".join(f"{k}={v}" for k, v in
                                                            query.items())
            curl_ms, curl_proc_ms, bad = [], [], 0
            for _ in range(runs):
                t = time.perf_counter()
                r = run(["curl", "-sS", "--unix-socket", sock, "-o", str(outfile), "-w",
                         "%{time_total}", url])
                curl_proc_ms.append((time.perf_counter() - t) * 1e3)
                curl_ms.append(float(r.stdout) * 1e3)
                bad += not check(outfile.read_bytes(), raw)
            client = Client(sock, timeout=None)
            client_ms, first_ms = [], None
            try:
                for k in range(runs + 1):
                    t = time.perf_counter()
                    body = b"".join(client.stream("GET", path, **query)) if raw else \
                        b"\n".join(client.stream("GET", path, **query))
                    elapsed = (time.perf_counter() - t) * 1e3
                    if k == 0:
                        first_ms = elapsed  # includes connecting
                    else:
                        client_ms.append(elapsed)
                    bad += not check(body, raw)
            finally:
                client.close()
            out["variants"].append({"kind": kind, "variant": label, "url": url,
                                    "bad_answers": bad,
                                    "curl_time_total_ms": curl_ms,
                                    "curl_process_ms": curl_proc_ms,
                                    "client_ms": client_ms, "client_first_ms": first_ms})
            if bad:
                self.anomalies.append(f"tail 10, {label}: {bad} answers were not the last 10 "
                                      "lines")
        outfile.unlink(missing_ok=True)
        cli_ms = []
        for _ in range(min(runs, 10)):
            t = time.perf_counter()
            r = self.sv.cli("logs", "--tail", "10", "lt-big")
            cli_ms.append((time.perf_counter() - t) * 1e3)
            if r.stdout.encode() != b"".join(w + b"\n" for w in want):
                self.anomalies.append("supervise logs --tail 10 lt-big: not the last 10 lines")
        out["cli_ms"] = cli_ms
        self.note_memory("after the --tail runs")
        return out

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.note_memory("before down")
        self.info["fork_server_vm"] = vm_kb(self.info.get("fork_server_pid"))
        problems = self.sv.down()
        self.anomalies += problems


class OursApi(Tool):
    """Ours again, driven through the API from this process (a row of its own)."""

    name = "supervise (API)"
    readbacks = (("readback", "GET logs?raw=1 by the Client in this process, into memory"),)

    def __init__(self, ours: Ours) -> None:
        super().__init__()
        self.ours = ours

    def one(self, label: str) -> dict[str, Any]:
        return self.ours.one_api(label)


# ============================================================================ podman

class Podman(Tool):
    name = "podman"

    def __init__(self, workdir: Path, snapshot: benchlib.HostSnapshot, prefix: str,
                 expected: bytes, lines_file: Path) -> None:
        super().__init__()
        self.workdir, self.snapshot, self.prefix = workdir, snapshot, prefix
        self.expected, self.lines_file = expected, lines_file
        state = workdir / "podman"
        self.base = ["podman", "--root", str(state / "root"), "--runroot", str(state / "run"),
                     "--tmpdir", str(state / "tmp"), "--events-backend", "file"]
        self.rootfs = workdir / "rootfs-podman"  # podman writes into a --rootfs
        self.names: list[str] = []
        self.out = workdir / "podman.out"

    def start(self) -> None:
        if shutil.which("podman") is None:
            self.skipped = "podman is not installed (apt-get install podman)"
            return
        benchlib.build_busybox_rootfs(self.rootfs)
        shutil.copyfile(self.lines_file, self.rootfs / "lines")

    def one(self, label: str) -> dict[str, Any]:
        name = f"{self.prefix}-{label}"
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        # shared/peers/README.md: no CAP_SYS_RESOURCE here, so podman's default nofile
        # cannot be set; podman lowers its own nproc to 32768; crun refuses this host.
        argv = [*self.base, "run", "-d", "--name", name, "--runtime", "runc",
                "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=32768:32768",
                "--network", "none", "--log-driver", "k8s-file", "--rootfs", str(self.rootfs),
                *COMMAND]
        self.info.setdefault("argv", argv)
        self.names.append(name)
        t0 = time.time()
        p0 = time.perf_counter()
        r = run(argv)
        p1 = time.perf_counter()
        run([*self.base, "wait", name])
        p2 = time.perf_counter()
        cid = r.stdout.strip().splitlines()[-1]
        self.snapshot.add_tag(cid[:12])
        logpath = Path(run([*self.base, "inspect", "--format",
                            "{{.HostConfig.LogConfig.Path}}", name]).stdout.strip())
        first, last = first_and_last_line(logpath)
        # k8s-file: "2026-12-04T21:56:58.123456789+00:00 stdout F 1000000 xxx..."
        if not last.split(b" ", 3)[-1].startswith(b"1000000 "):
            self.anomalies.append(f"{name}: last k8s-file line is {last[:80]!r}")
        row: dict[str, Any] = {
            "label": label, "name": name,
            "start_to_stored_s": rfc3339(last.split(b" ", 1)[0].decode()) - t0,
            "first_line_stored_s": rfc3339(first.split(b" ", 1)[0].decode()) - t0,
            "run_d_s": p1 - p0, "wait_s": p2 - p1, "run_d_plus_wait_s": p2 - p0,
            "logfile_bytes": logpath.stat().st_size,
        }
        for key, extra, stamped in (("readback", [], False), ("readback_t", ["-t"], True)):
            wall = timed_to_file([*self.base, "logs", *extra, name], self.out)
            row[key] = {"wall_s": wall,
                        "verify": verify_file(self.out, self.expected, timestamped=stamped)}
            self.out.unlink()
        run([*self.base, "rm", "-f", "-t", "0", name])
        return row

    def stop(self) -> None:
        if self.skipped or not (self.workdir / "podman").exists():
            return
        for name in self.names:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([*self.base, "rm", "-f", "-t", "0", name], capture_output=True,
                               timeout=60, stdin=subprocess.DEVNULL)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([*self.base, "unmount", "-a"], capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL)


# ============================================================================ docker

DOCKER_OUTSIDE = (Path("/run/docker"), Path("/run/containerd"), Path("/etc/docker"),
                  Path("/var/run/docker.pid"))


def _walk(top: Path) -> set[str]:
    out: set[str] = set()
    if top.exists() or top.is_symlink():
        out.add(str(top))
        if top.is_dir() and not top.is_symlink():
            for dirpath, dirnames, filenames in os.walk(top):
                out.update(os.path.join(dirpath, n) for n in dirnames + filenames)
    return out


def _docker_cgroups() -> set[str]:
    out: set[str] = set()
    if not benchlib.CGROUP_ROOT.is_dir():
        return out
    hierarchies = [h for h in benchlib.CGROUP_ROOT.iterdir() if h.is_dir()]
    for h in hierarchies:
        d = h / "docker"
        if d.is_dir():
            out.add(str(d))
            out.update(e.path for e in os.scandir(d) if e.is_dir(follow_symlinks=False))
    return out


class Docker(Tool):
    name = "docker"

    def __init__(self, workdir: Path, rootfs: Path, prefix: str, expected: bytes) -> None:
        super().__init__()
        self.workdir, self.rootfs, self.prefix, self.expected = workdir, rootfs, prefix, expected
        self.dir = workdir / "docker"
        self.sock = self.dir / "docker.sock"
        self.cli = [os.environ.get("DOCKER_BIN", "docker"), "-H", f"unix://{self.sock}"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.names: list[str] = []
        self.out = workdir / "docker.out"
        self.outside = set().union(*(_walk(p) for p in DOCKER_OUTSIDE))
        self.cgroups = _docker_cgroups()

    def start(self) -> None:
        if shutil.which("dockerd") is None:
            self.skipped = "dockerd is not installed (apt-get install docker.io)"
            return
        foreign = benchlib.processes_mentioning(["dockerd", "containerd"])
        if foreign:
            self.skipped = ("another dockerd/containerd runs on this host (" + foreign[0]
                            + "): not started beside it")
            return
        (self.dir / "data").mkdir(parents=True)
        (self.dir / "exec").mkdir()
        log = (self.dir / "dockerd.log").open("wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", str(self.dir / "data"), "--exec-root",
             str(self.dir / "exec"), "--pidfile", str(self.dir / "dockerd.pid"),
             "-H", f"unix://{self.sock}", "--storage-driver", "overlay2", "--bridge", "none",
             "--iptables=false", "--ip6tables=false", "--ip-forward=false",
             "--ip-masq=false", "--userland-proxy=false", "--log-level", "warn"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        r: subprocess.CompletedProcess[bytes] | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            r = subprocess.run([*self.cli, "version"], capture_output=True, timeout=30)
            if r.returncode == 0:
                break
            time.sleep(0.2)
        if self.proc.poll() is not None or r is None or r.returncode != 0:
            tail = (self.dir / "dockerd.log").read_text(errors="replace").strip()
            self.skipped = "dockerd did not come up: " + " ".join(tail.splitlines()[-2:])[:300]
            return
        self.info["dockerd_pid"] = self.proc.pid
        self.info["version"] = run([*self.cli, "version", "--format",
                                    "client {{.Client.Version}} / server "
                                    "{{.Server.Version}} (API {{.Server.APIVersion}})"]
                                   ).stdout.strip()
        tar = subprocess.Popen(["tar", "-C", str(self.rootfs), "-c", "."],
                               stdout=subprocess.PIPE)
        r2 = subprocess.run([*self.cli, "import", "-", DOCKER_IMAGE], stdin=tar.stdout,
                            capture_output=True, text=True, timeout=300)
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
        if r2.returncode != 0:
            self.skipped = "docker import failed: " + r2.stderr.strip()[:300]

    def daemon_pids(self) -> list[int]:
        if self.proc is None:
            return []
        return [self.proc.pid] + [p for p, comm in benchlib.descendants(self.proc.pid)
                                  if comm == "containerd"]

    def one(self, label: str) -> dict[str, Any]:
        name = f"{self.prefix}-{label}"
        self.names.append(name)
        pids = self.daemon_pids()
        cpu0 = sum(benchlib.cpu_seconds(p) for p in pids)
        t0 = time.time()
        p0 = time.perf_counter()
        run([*self.cli, "run", "-d", "--name", name, "--network", "none", "--log-driver",
             "json-file", DOCKER_IMAGE, *COMMAND])
        p1 = time.perf_counter()
        run([*self.cli, "wait", name])
        p2 = time.perf_counter()
        cpu = sum(benchlib.cpu_seconds(p) for p in pids) - cpu0
        logpath = Path(run([*self.cli, "inspect", "--format", "{{.LogPath}}", name]
                           ).stdout.strip())
        first, last = first_and_last_line(logpath)
        last_rec, first_rec = json.loads(last), json.loads(first)
        if not last_rec["log"].startswith("1000000 "):
            self.anomalies.append(f"{name}: last json-file line is {last[:80]!r}")
        row: dict[str, Any] = {
            "label": label, "name": name,
            "start_to_stored_s": rfc3339(last_rec["time"]) - t0,
            "first_line_stored_s": rfc3339(first_rec["time"]) - t0,
            "run_d_s": p1 - p0, "wait_s": p2 - p1, "run_d_plus_wait_s": p2 - p0,
            "daemon_cpu_s": cpu, "logfile_bytes": logpath.stat().st_size,
        }
        for key, extra, stamped in (("readback", [], False), ("readback_t", ["-t"], True)):
            wall = timed_to_file([*self.cli, "logs", *extra, name], self.out)
            row[key] = {"wall_s": wall,
                        "verify": verify_file(self.out, self.expected, timestamped=stamped)}
            self.out.unlink()
        run([*self.cli, "rm", "-f", name])
        return row

    def stop(self) -> None:
        if self.proc is None:
            return
        for name in self.names:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([*self.cli, "rm", "-f", name], capture_output=True, timeout=60)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([*self.cli, "rmi", "-f", DOCKER_IMAGE], capture_output=True,
                           timeout=60)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.anomalies.append("dockerd did not stop in 30 s: SIGKILL")
                self.proc.kill()
                self.proc.wait()
        # containerd, managed by dockerd, ends with it; wait for it by pid
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and benchlib.processes_mentioning([str(self.dir)]):
            time.sleep(0.1)
        self.cleanup_outside()

    def cleanup_outside(self) -> None:
        """Unmount what is left under our docker dir; remove what dockerd made outside the
        temp dir (it was not there before this run), and its empty `docker` cgroups."""
        mounts = [line.split()[4] for line in
                  Path("/proc/self/mountinfo").read_text().splitlines()
                  if line.split()[4].startswith(str(self.dir))]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        if benchlib.processes_mentioning(["dockerd", "containerd"]):
            self.anomalies.append("a dockerd/containerd still runs: /run/docker, "
                                  "/run/containerd, /etc/docker left alone")
            return
        new = set().union(*(_walk(p) for p in DOCKER_OUTSIDE)) - self.outside
        for path in sorted(new, key=len, reverse=True):
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)
                else:
                    os.unlink(path)
            except OSError as e:
                self.anomalies.append(f"could not remove {path}: {e.strerror}")
        for path in sorted(_docker_cgroups() - self.cgroups, key=len, reverse=True):
            try:
                os.rmdir(path)
            except OSError as e:
                self.anomalies.append(f"could not remove cgroup {path}: {e.strerror}")

    def leftovers(self) -> list[str]:
        out = [f"docker cgroup {p}" for p in sorted(_docker_cgroups() - self.cgroups)]
        new = set().union(*(_walk(p) for p in DOCKER_OUTSIDE)) - self.outside
        out += [f"docker file {p}" for p in sorted(new)]
        return out


# ============================================================================ supervisord

class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixConnection(self._path)


class Supervisord(Tool):
    name = "supervisord"

    def __init__(self, workdir: Path, rootfs: Path, expected: bytes) -> None:
        super().__init__()
        self.workdir, self.rootfs, self.expected = workdir, rootfs, expected
        self.dir = workdir / "supervisord"
        self.conf = self.dir / "supervisord.conf"
        self.logfile = self.dir / "lt.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.rpc: Any = None

    def start(self) -> None:
        if shutil.which("supervisord") is None:
            self.skipped = "supervisord is not installed (apt-get install supervisor)"
            return
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        self.dir.mkdir()
        sock = self.dir / "s.sock"
        self.conf.write_text(f"""[unix_http_server]
file={sock}
chmod=0700

[supervisord]
nodaemon=true
logfile={self.dir}/supervisord.log
logfile_maxbytes=0
pidfile={self.dir}/supervisord.pid
childlogdir={self.dir}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{sock}

[program:lt]
command={chroot} {self.rootfs} /bin/sh -c "{GEN}"
environment=PATH="/bin"
autostart=false
autorestart=false
startsecs=0
stdout_logfile={self.logfile}
stdout_logfile_maxbytes=0
stdout_logfile_backups=0
redirect_stderr=false
""")
        self.info["program"] = f'command={chroot} {self.rootfs} /bin/sh -c "{GEN}"'
        self.proc = subprocess.Popen(["supervisord", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.rpc = xmlrpc.client.ServerProxy("http://localhost",
                                             transport=_UnixTransport(str(sock)))
        deadline = time.monotonic() + 30
        while True:
            try:
                self.rpc.supervisor.getState()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.skipped = "supervisord did not come up"
                    return
                time.sleep(0.05)
        self.info["supervisord_pid"] = self.proc.pid

    def one(self, label: str) -> dict[str, Any]:
        assert self.proc is not None
        self.logfile.unlink(missing_ok=True)
        expect = len(self.expected)
        cpu0 = benchlib.cpu_seconds(self.proc.pid)
        t0 = time.time()
        p0 = time.perf_counter()
        self.rpc.supervisor.startProcess("lt", False)
        deadline = p0 + 120
        while True:
            try:
                if self.logfile.stat().st_size >= expect:
                    break
            except FileNotFoundError:
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError("supervisord: the log file did not reach 100 MB in 120 s")
            time.sleep(0.002)
        stored = time.time()
        while self.rpc.supervisor.getProcessInfo("lt")["statename"] not in (
                "EXITED", "FATAL", "STOPPED"):
            time.sleep(0.01)
        exited = time.perf_counter() - p0
        cpu = benchlib.cpu_seconds(self.proc.pid) - cpu0
        time.sleep(0.05)
        return {"label": label, "start_to_stored_s": stored - t0, "exit_seen_s": exited,
                "daemon_cpu_s": cpu,
                "verify": verify_file(self.logfile, self.expected),
                "vm": vm_kb(self.proc.pid)}

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["supervisorctl", "-c", str(self.conf), "shutdown"],
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.anomalies.append("supervisord did not shut down: killed")
            self.proc.kill()
            self.proc.wait()


# ============================================================================ report

def f3(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def f2(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def verified(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], dict[str, Any]]
             ) -> str:
    checks = [key(r) for r in rows]
    bad = [c for c in checks if not c.get("ok")]
    if not bad:
        return f"{len(checks)}/{len(checks)} ok"
    return f"{len(checks) - len(bad)}/{len(checks)} ok; " + "; ".join(
        f"lines {c.get('lines')} lost {c.get('lost')} dup {c.get('duplicated')} "
        f"bad {c.get('bad')}" for c in bad[:2])


def report(tools: list[Tool], ours: Ours | None, big: dict[str, Any] | None,
           tails: dict[str, Any] | None, info: dict[str, Any], versions: dict[str, str],
           leftovers: list[str]) -> tuple[str, dict[str, Any]]:
    buf = io.StringIO()

    def out(text: str = "") -> None:
        buf.write(text + "\n")

    def table(headers: list[str], rows: list[list[str]], right: list[bool] | None = None
              ) -> None:
        with contextlib.redirect_stdout(buf):
            benchlib.print_table(headers, rows, right)

    out(f"log throughput: {N_LINES:,} lines × 100 B from `{GEN}` ({info['date']}, "
        f"{info['git']})")
    out(f"machine: {info['kernel']}, {info['cpus']} CPUs, {info['cgroups']}, load "
        f"{info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}")
    out("versions: " + "; ".join(f"{k} {v}" for k, v in versions.items()))

    def med(tool: Tool, key: str) -> float | None:
        values = [r[key] for r in tool.runs if key in r]
        return benchlib.summary(values)["median"] if values else None

    podman = next((t for t in tools if t.name == "podman" and t.runs), None)
    podman_a = med(podman, "start_to_stored_s") if podman else None

    out("\n(a) container start -> every line stored (s): t0 before the start command, end = "
        "the tool's own timestamp on line 1,000,000")
    rows = []
    for t in tools:
        if t.skipped:
            rows.append([t.name, "–", "–", "–", "–", "–", "–", "–", "–",
                         "skipped: " + t.skipped])
            continue
        s = benchlib.summary([r["start_to_stored_s"] for r in t.runs])
        if not s["n"]:
            rows.append([t.name, "0", "–", "–", "–", "–", "–", "–", "–", "no run"])
            continue
        ratio = f"{s['median'] / podman_a:.2f}×" if podman_a else "–"
        rw = med(t, "run_d_plus_wait_s")
        first = med(t, "first_line_stored_s")
        spans = [r["start_to_stored_s"] - r["first_line_stored_s"] for r in t.runs
                 if "first_line_stored_s" in r]
        span = benchlib.summary(spans)["median"] if spans else None
        vkey = (lambda r: r["verify"]) if t.name == "supervisord" else \
            (lambda r: r["readback"]["verify"])
        rows.append([t.name, str(s["n"]), f3(s["min"]), f3(s["median"]), f3(s["max"]),
                     ratio, f3(first), f3(span), f3(rw) if rw else "–",
                     verified(t.runs, vkey)])
    table(["tool", "n", "min", "median", "max", "× podman", "1st line stored (med)",
           "1st -> last line (med)", "run -d + wait (med)",
           "verified (all 1M lines, once, in order)"], rows,
          [False, True, True, True, True, True, True, True, True, False])
    verdict: dict[str, Any] = {}
    if ours is not None and ours.runs:
        a = med(ours, "start_to_stored_s")
        verdict["a_ours_median_s"] = round(a, 3) if a else None
        if podman_a and a:
            verdict["a_ratio_to_podman"] = round(a / podman_a, 3)
            verdict["a_met"] = a <= TARGET_A * podman_a
        parts: dict[str, list[float]] = {}
        for r in ours.runs:
            ev = r["events_s"]
            if {"create", "start", "die"} <= ev.keys():
                for k, v in (("t0 -> create event (CLI start-up, request)", ev["create"]),
                             ("create -> start event (container set up, exec'd)",
                              ev["start"] - ev["create"]),
                             ("start event -> line 1,000,000 stored (the capture)",
                              r["start_to_stored_s"] - ev["start"]),
                             ("stored -> die event (exit seen, pumps closed, cgroup gone)",
                              ev["die"] - r["start_to_stored_s"]),
                             ("die event -> `wait` returned", r["run_d_plus_wait_s"]
                              - ev["die"]),
                             ("`run -d` command", r["run_d_s"]),
                             ("`wait` command", r["wait_s"]),
                             ("supervisor CPU, run -d .. wait (s)", r["supervisor_cpu_s"])):
                    parts.setdefault(k, []).append(v)
        out("\nsupervise, where (a) went (s), medians over the runs, by its own events")
        table(["part", "min", "median", "max"],
              [[k, f3(min(v)), f3(benchlib.summary(v)["median"]), f3(max(v))]
               for k, v in parts.items()])

    out("\n(b) read the whole log back into a file, whole command (s)")
    podman_b = None
    if podman:
        podman_b = benchlib.summary([r["readback"]["wall_s"] for r in podman.runs])["median"]
    rows = []
    for t in tools:
        if t.skipped or not t.runs or "readback" not in t.runs[0]:
            continue
        for key, label in t.readbacks:
            s = benchlib.summary([r[key]["wall_s"] for r in t.runs])
            ratio = f"{s['median'] / podman_b:.3f}×" if podman_b else "–"
            rows.append([f"{t.name} {label}", str(s["n"]), f3(s["min"]), f3(s["median"]),
                         f3(s["max"]), ratio, verified(t.runs, lambda r, k=key: r[k]["verify"])])
    table(["command", "n", "min", "median", "max", "× podman logs", "verified"], rows,
          [False, True, True, True, True, True, False])
    if ours is not None and ours.runs:
        b = benchlib.summary([r["readback"]["wall_s"] for r in ours.runs])["median"]
        verdict["b_ours_median_s"] = round(b, 3)
        if podman_b:
            verdict["b_ratio_to_podman"] = round(b / podman_b, 3)
            verdict["b_met"] = b <= TARGET_B * podman_b
        cpu = [r["readback"]["supervisor_cpu_s"] for r in ours.runs]
        cpu_t = [r["readback_t"]["supervisor_cpu_s"] for r in ours.runs]
        out(f"supervisor CPU per read-back (median): logs {f3(benchlib.summary(cpu)['median'])}"
            f" s, logs -t {f3(benchlib.summary(cpu_t)['median'])} s")

    if big is not None:
        out(f"\n(c) the big store: lt-big wrote {big['lines']:,} lines; the store holds "
            f"{big['store_lines']:,} lines, {big['store_bytes'] / 1e9:.2f} GB in "
            f"{big['store_segments']} segments")
        out(f"lt-big: start -> stored {f3(big['start_to_stored_s'])} s "
            f"({big['lines'] / big['start_to_stored_s'] / 1e6:.2f} M lines/s), run -d + wait "
            f"{f3(big['run_d_plus_wait_s'])} s, supervisor CPU {f3(big['supervisor_cpu_s'])} s"
            f"; `supervise logs lt-big > file` {f3(big['readback_s'])} s (supervisor CPU "
            f"{f3(big['readback_supervisor_cpu_s'])} s), verified: "
            f"{'ok' if big['readback_verify']['ok'] else big['readback_verify']}")
        p = big["ping_during_capture_ms"]["summary"]
        if p.get("n"):
            out(f"GET /_ping every 20 ms during lt-big's run -d .. wait (ms): n {p['n']}, "
                f"median {f2(p['median'])}, p99 {f2(p['p99'])}, max {f2(p['max'])}, "
                f"{p['over_50ms']} over 50 ms")
    if tails is not None:
        out("\n(c) --tail 10 at the API (ms)")
        rows = []
        worst: dict[str, float] = {}
        for v in tails["variants"]:
            for key, how in (("curl_time_total_ms", "curl time_total"),
                             ("client_ms", "Client (httpx), warm connection"),
                             ("curl_process_ms", "curl, whole process")):
                s = benchlib.summary(v[key])
                if key != "curl_process_ms":
                    worst[v["kind"]] = max(worst.get(v["kind"], 0.0), s["max"])
                rows.append([v["variant"], how, str(s["n"]), f2(s["min"]), f2(s["median"]),
                             f2(s["p90"]), f2(s["max"]),
                             "ok" if not v["bad_answers"] else f"{v['bad_answers']} bad"])
        s = benchlib.summary(tails["cli_ms"])
        rows.append(["lt-big", "`supervise logs --tail 10` whole command", str(s["n"]),
                     f2(s["min"]), f2(s["median"]), f2(s["p90"]), f2(s["max"]), ""])
        table(["what", "how", "n", "min", "median", "p90", "max", "answers"], rows,
              [False, False, True, True, True, True, True, False])
        main_worst = max(worst.get("big", 0.0), worst.get("stack", 0.0))
        verdict["c_worst_request_ms"] = round(main_worst, 2)
        verdict["c_met"] = main_worst < TARGET_C_MS
        if "buried" in worst:
            verdict["c_buried_worst_request_ms"] = round(worst["buried"], 2)
            verdict["c_buried_met"] = worst["buried"] < TARGET_C_MS

    if ours is not None and ours.memory:
        out("\n(d) supervisor memory (kB), after each step (VmHWM = peak so far)")
        steps = ours.memory
        shown = [m for i, m in enumerate(steps)
                 if i == 0 or m["VmHWM"] != steps[i - 1]["VmHWM"] or i == len(steps) - 1]
        table(["step", "VmHWM", "VmRSS"],
              [[m["step"], str(m["VmHWM"]), str(m["VmRSS"])] for m in shown])
        peak = max(m["VmHWM"] for m in steps)
        verdict["d_peak_kb"] = peak
        verdict["d_met"] = peak < TARGET_D_KB
        fs = ours.info.get("fork_server_vm") or {}
        out(f"fork server (not the supervisor): VmHWM {fs.get('VmHWM', '–')} kB")
    sup = next((t for t in tools if t.name == "supervisord" and t.runs), None)
    if sup is not None:
        out(f"supervisord VmHWM {sup.runs[-1]['vm'].get('VmHWM', '–')} kB; daemon CPU per run "
            f"(median) {f3(med(sup, 'daemon_cpu_s'))} s")
    dock = next((t for t in tools if t.name == "docker" and t.runs), None)
    if dock is not None:
        out(f"dockerd + containerd CPU per run (median) {f3(med(dock, 'daemon_cpu_s'))} s")
    if ours is not None and ours.runs:
        out(f"supervise CPU per run (run -d .. wait, median) "
            f"{f3(med(ours, 'supervisor_cpu_s'))} s")

    def mark(key: str) -> str:
        return "–" if key not in verdict else ("met" if verdict[key] else "NOT met")

    out(f"\ntargets: (a) ≤ {TARGET_A}× podman: {mark('a_met')} "
        f"({verdict.get('a_ratio_to_podman', '–')}×); (b) ≤ {TARGET_B}× podman logs: "
        f"{mark('b_met')} ({verdict.get('b_ratio_to_podman', '–')}×); (c) < "
        f"{TARGET_C_MS:.0f} ms: {mark('c_met')} (worst {verdict.get('c_worst_request_ms')}"
        f" ms; a quiet container's tail under the big one: {mark('c_buried_met')}, worst "
        f"{verdict.get('c_buried_worst_request_ms')} ms); (d) < 100 MB: "
        f"{mark('d_met')} ({verdict.get('d_peak_kb')} kB)")
    for t in tools:
        for key in ("verify", "readback", "readback_t"):
            failed = [c for r in t.runs
                      if (c := r.get(key, {}) if key == "verify"
                          else r.get(key, {}).get("verify", {})) and not c.get("ok")]
            if failed and failed[0].get("bad_examples"):
                out(f"note: {t.name} {key}: {len(failed)} of {len(t.runs)} runs failed, the "
                    f"first with {failed[0]['bad']} lines not as written, e.g. "
                    f"{failed[0]['bad_examples'][0][:140]!r}")
        for a in t.anomalies:
            out(f"note: {t.name}: {a}")
    out("leftovers: " + ("none" if not leftovers else "; ".join(leftovers)))
    return buf.getvalue(), verdict


# ============================================================================ main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="counted rounds (after a warm-up)")
    ap.add_argument("--only", default="ours,podman,docker,supervisord")
    ap.add_argument("--big-copies", type=int, default=10,
                    help="the big container writes this many × 1,000,000 lines (0: no (c))")
    ap.add_argument("--tail-runs", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per long command")
    ap.add_argument("--commit", help="measure this commit's supervisor/ and logging_bus/ "
                    "(`git archive`, run through PYTHONPATH), not the work tree")
    ap.add_argument("--code", metavar="DIR", help="measure the supervisor/ and logging_bus/ "
                    "in DIR (a copy, e.g. a commit plus a patch), not the work tree")
    args = ap.parse_args()
    benchlib.require_root()
    benchlib.interruptible()
    want = set(args.only.split(","))
    tag = f"sbench-lt-{os.getpid()}"
    workdir = benchlib.make_workdir("supervise-bench-logs-")
    snapshot = benchlib.HostSnapshot(workdir, [tag])
    info = benchlib.machine_info()
    global Client, CODE
    if args.commit:
        CODE = workdir / "code"
        CODE.mkdir()
        archive = subprocess.run(["git", "-C", str(benchlib.REPO_DIR), "archive", args.commit,
                                  "supervisor", "logging_bus"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(CODE)], input=archive.stdout, check=True)
        sys.path.insert(0, str(CODE))
    elif args.code:
        CODE = Path(args.code).resolve()
        sys.path.insert(0, str(CODE))
    from supervisor.client import Client
    versions = {
        "podman": benchlib.tool_version(["podman", "--version"]),
        "conmon": benchlib.tool_version(["conmon", "--version"]),
        "runc": benchlib.tool_version(["runc", "--version"]),
        "dockerd": benchlib.tool_version(["dockerd", "--version"]),
        "docker client": benchlib.tool_version([os.environ.get("DOCKER_BIN", "docker"),
                                                "--version"]),
        "supervisord": benchlib.tool_version(["supervisord", "--version"]),
        "busybox": benchlib.tool_version([benchlib.BUSYBOX]),
        "curl": benchlib.tool_version(["curl", "--version"]),
    }
    tools: list[Tool] = []
    ours: Ours | None = None
    big: dict[str, Any] | None = None
    tails: dict[str, Any] | None = None
    interrupted = False
    error = ""
    try:
        benchlib.progress("preparing the rootfs and 1,000,000 lines ...")
        rootfs = workdir / "rootfs"
        benchlib.build_busybox_rootfs(rootfs)
        expected = make_lines(N_LINES)
        lines_file = rootfs / "lines"
        lines_file.write_bytes(expected)
        info["git"] = supervise_for(workdir, tag).describe_code()
        if args.commit:
            rev = subprocess.run(["git", "-C", str(benchlib.REPO_DIR), "rev-parse", "--short",
                                  args.commit], capture_output=True, text=True).stdout.strip()
            info["git"] = f"commit {rev} (git archive, through PYTHONPATH)"
        elif args.code:
            info["git"] = f"supervisor/ and logging_bus/ from {CODE} (through PYTHONPATH)"
        if "ours" in want:
            ours = Ours(args, workdir, rootfs, tag, expected)
            tools += [ours, OursApi(ours)]
        if "podman" in want:
            tools.append(Podman(workdir, snapshot, f"{tag}-podman", expected, lines_file))
        if "docker" in want:
            tools.append(Docker(workdir, rootfs, f"{tag}-docker", expected))
        if "supervisord" in want:
            tools.append(Supervisord(workdir, rootfs, expected))
        for t in tools:
            benchlib.progress(f"{t.name}: starting ...")
            t.start()
            if t.skipped:
                benchlib.progress(f"{t.name}: skipped: {t.skipped}", final=True)
        active = [t for t in tools if not t.skipped]
        for round_ in range(args.runs + 1):
            label = "w" if round_ == 0 else str(round_)
            for t in active:
                benchlib.progress(f"round {label}/{args.runs}: {t.name} ...")
                row = t.one(label)
                if round_ == 0:
                    t.info["warm_up_run"] = row
                else:
                    t.runs.append(row)
        if ours is not None and not ours.skipped and args.big_copies > 0:
            benchlib.progress(f"supervise: lt-big, {args.big_copies} × 100 MB ...")
            big = ours.big(args.big_copies)
            benchlib.progress("supervise: --tail 10 requests ...")
            tails = ours.tails(args.tail_runs)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: cleaning up", file=sys.stderr)
    except (RuntimeError, subprocess.SubprocessError, OSError, AssertionError, ValueError,
            KeyError) as e:
        error = f"{type(e).__name__}: {e}"
        print(f"\nerror: {error}: cleaning up", file=sys.stderr)
    finally:
        benchlib.uninterruptible()
        benchlib.progress("cleaning up ...")
        for t in tools:
            try:
                t.stop()
            except Exception as e:  # the others must still be stopped
                t.anomalies.append(f"stop failed: {type(e).__name__}: {e}")
        leftovers = benchlib.finish(workdir, snapshot, supervise_for(workdir, tag), [tag])
        for t in tools:
            if isinstance(t, Docker):
                leftovers += t.leftovers()
    if interrupted or error:
        for t in tools:
            for a in t.anomalies:
                print(f"note: {t.name}: {a}")
        print("leftovers: " + ("none" if not leftovers else "; ".join(leftovers)))
        return 130 if interrupted else 1
    benchlib.progress("done", final=True)
    info["loadavg_end"] = os.getloadavg()
    text, verdict = report(tools, ours, big, tails, info, versions, leftovers)
    print(text, end="")
    path = benchlib.write_results("log_throughput", {
        "benchmark": "log_throughput", "args": vars(args), "machine": info,
        "versions": versions, "leftovers": leftovers, "verdict": verdict,
        "tools": [{"name": t.name, "skipped": t.skipped, "anomalies": t.anomalies,
                   "info": t.info, "runs": t.runs} for t in tools],
        "memory": ours.memory if ours else [], "big": big, "tails": tails,
    })
    path.with_suffix(".txt").write_text(text)
    print(f"results: {path.relative_to(benchlib.REPO_DIR)} (+ .txt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
