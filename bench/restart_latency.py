#!/usr/bin/env python3
"""Restart latency: a container that exits 1 at once, restarted by its policy, from the death
to the replacement's exec, side by side with podman and supervisord in the same run.

    python3 bench/restart_latency.py [--restarts 200] [--sup-restarts 40]
                                     [--only ours,podman,supervisord] [--timeout 120]

Ours: a detached supervisor (`supervise up -d`) with one container, `/bin/sh -c 'exit 1'` in
the busybox rootfs, `restart = "always"`, `restart_backoff = { initial = "0s" }`.  Timestamps
are the supervisor's own events (`supervise events --format json`, float Unix seconds):

- `die`: published once the run is over: PID 1 reaped, OOM counter read, cgroup removed, the
  record saved, the stdout/stderr pumps drained;
- `restart`: the policy's decision (delay 0);
- `start`: published right after `Container.start` returned, which is once the status pipe
  (O_CLOEXEC) reached EOF — the command was exec'd — and the record was saved.

The headline is die -> the next start.  start -> start (one whole cycle: exec, `sh` runs and
exits, the death is noticed and cleaned up, the policy decides, the next container is set up
and exec'd) is shown beside it: it bounds the true death -> exec from above for every tool,
whatever each one's "died" timestamp means.

Peers, with the workarounds of shared/peers/README.md:

- podman: `podman run -d --restart=always --runtime runc` with a private --root/--runroot/
  --tmpdir, the ulimit flags, `--network none`, `--log-driver none`, `--rootfs` (a copy of the
  busybox rootfs).  Timestamps: `podman events` (file backend, ns): `died` -> next `start`.
- supervisord: `autorestart=true startsecs=0`, `command=ROOTFS/bin/sh -c "exit 1"` (a host
  process, no container).  Timestamps: its log (ms): `exited` -> next `spawned` (logged by
  the parent after the fork, before the child's exec).

Only restarts inside a quiet window count: from the moment the event stream we read is
connected to the moment we ask the tool to stop (the CLI start-ups of `up -d`, `events` and
`stop` would otherwise compete for the 2 CPUs).

Output: tables on stdout, progress on stderr, bench/results/restart_latency-*.json.  Everything
lives in one temp dir; the supervisor is taken down with `down -v`, the podman container
removed, supervisord shut down, and what podman writes outside (/run/containers, /run/runc,
/dev/shm/libpod_lock, `libpod_parent` cgroups) is removed if this run made it.  Leftovers are
checked at the end: cgroups, mounts, /run entries, processes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import queue
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib

CONTAINER = "exit1"
TARGET_MS = 20.0


@dataclass
class Series:
    name: str
    how: str
    timestamps: str
    die_to_start: list[float] = field(default_factory=list)  # ms
    start_to_start: list[float] = field(default_factory=list)  # ms
    parts: dict[str, list[float]] = field(default_factory=dict)  # ms, ours only
    info: dict[str, Any] = field(default_factory=dict)
    skipped: str = ""
    anomalies: list[str] = field(default_factory=list)


def cycles(marks: list[tuple[float, str]], t_from: float, t_to: float,
           ) -> tuple[list[float], list[float]]:
    """die -> next start gaps and start -> start intervals (ms), in the order the tool logged
    them, for deaths and starts inside [t_from, t_to]."""
    gaps: list[float] = []
    intervals: list[float] = []
    last_die: float | None = None
    last_start: float | None = None
    for t, kind in marks:
        if kind == "die":
            last_die = t
        elif kind == "start":
            if last_die is not None and t_from <= last_die and t <= t_to:
                gaps.append((t - last_die) * 1e3)
            if last_start is not None and t_from <= last_start and t <= t_to:
                intervals.append((t - last_start) * 1e3)
            last_die, last_start = None, t
    return gaps, intervals


class LineReader:
    """Reads a child's stdout lines in a thread, so that the main loop can time out."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, text=True, env=env, cwd=cwd)
        self.lines: queue.Queue[tuple[float, str] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.time(), line))
        self.lines.put(None)

    def get(self, timeout: float) -> tuple[float, str] | bool | None:
        """(arrival time, line); None at EOF; False on timeout."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return False

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.thread.join(timeout=5)


def follow(reader: LineReader, parse: Any, want: int, timeout: float, label: str,
           on_ready: Any = None) -> tuple[list[tuple[float, str]], float, float]:
    """Collects (time, "die"|"start") marks from a stream until `want` restarts happened inside
    the window [first line read, now]; `on_ready()` is called when the window opens.  Returns
    the marks and the window."""
    marks: list[tuple[float, str]] = []
    t_ready: float | None = None
    deadline = time.monotonic() + timeout
    last_progress = 0.0
    while time.monotonic() < deadline:
        item = reader.get(0.2)
        if item is None:
            raise RuntimeError(f"{label}: the event stream ended")
        if item is not False:
            arrived, line = item  # type: ignore[misc]
            if t_ready is None:
                t_ready = arrived
                if on_ready is not None:
                    on_ready()
            mark = parse(line)
            if mark is not None:
                marks.append(mark)
        if t_ready is None:
            continue
        gaps, _ = cycles(marks, t_ready, float("inf"))
        if time.monotonic() - last_progress > 0.5 or len(gaps) >= want:
            last_progress = time.monotonic()
            benchlib.progress(f"{label}: {len(gaps)}/{want} restarts in the window")
        if len(gaps) >= want:
            return marks, t_ready, time.time()
    raise RuntimeError(f"{label}: fewer than {want} restarts within {timeout:.0f} s")


# ============================================================================ ours

def measure_ours(args: argparse.Namespace, workdir: Path, rootfs: Path,
                 project: str) -> Series:
    s = Series("supervise", "`up -d`, restart=always, restart_backoff.initial=0s",
               "supervise events (float s)")
    sv = benchlib.Supervise(workdir, project)
    stack = workdir / "ours" / "stack.toml"
    stack.parent.mkdir()
    stack.write_text(f'[stack]\nname = "{project}"\n\n[containers.{CONTAINER}]\n'
                     f'rootfs = "{rootfs}"\ncommand = ["/bin/sh", "-c", "exit 1"]\n'
                     'restart = "always"\nrestart_backoff = { initial = "0s" }\n')
    reader: LineReader | None = None
    try:
        benchlib.progress("supervise: up -d ...")
        sv.up(stack)
        pid, fork_server = sv.pid(), sv.fork_server_pid()
        s.info["supervisor_pid"], s.info["fork_server_pid"] = pid, fork_server
        reader = LineReader(sv.argv("events", "--format", "json", "--since", "0"), sv.env,
                            workdir)
        raw: list[dict[str, Any]] = []

        def parse(line: str) -> tuple[float, str] | None:
            if not line.startswith("{"):
                return None
            e = json.loads(line)
            raw.append(e)
            if e["container"] != CONTAINER or e["action"] not in ("die", "start"):
                return None
            return float(e["time"]), e["action"]

        cpu0: dict[str, float] = {}
        meters: list[benchlib.CpuMeter] = []

        def on_ready() -> None:  # the CPU readings start with the window
            for name, p in (("supervisor", pid), ("fork_server", fork_server)):
                if p is not None:
                    cpu0[name] = benchlib.cpu_seconds(p)
            meters.append(benchlib.CpuMeter())

        marks, t_from, t_to = follow(reader, parse, args.restarts, args.timeout, "supervise",
                                     on_ready)
        cpu1 = {name: benchlib.cpu_seconds(p) for name, p in (("supervisor", pid),
                                                              ("fork_server", fork_server))
                if p is not None}
        machine = meters[0].stop()
        benchlib.progress("supervise: stop ...")
        sv.cli("stop", "-t", "1", CONTAINER)
        # what the stream delivered until now (the stop's own events included)
        while True:
            item = reader.get(0.3)
            if not isinstance(item, tuple):
                break
            parse(item[1])
        s.die_to_start, s.start_to_start = cycles(marks, t_from, t_to)
        # die -> restart (the decision) and restart -> start, inside the same window
        seq = sorted((e for e in raw if e["container"] == CONTAINER), key=lambda e: e["seq"])
        d2r, r2s = [], []
        for a, b, c in zip(seq, seq[1:], seq[2:], strict=False):
            if (a["action"], b["action"], c["action"]) == ("die", "restart", "start") \
                    and t_from <= a["time"] and c["time"] <= t_to:
                d2r.append((b["time"] - a["time"]) * 1e3)
                r2s.append((c["time"] - b["time"]) * 1e3)
            if a["action"] == "die" and t_from <= a["time"] <= t_to and \
                    a["attributes"].get("exitCode") != "1":
                s.anomalies.append(f"die with {a['attributes']}")
        s.parts = {"die -> restart event (policy decision)": d2r,
                   "restart -> start event (cgroup, fork server, exec'd, record saved)": r2s}
        n = len(s.die_to_start)
        window = t_to - t_from
        s.info.update({
            "window_s": round(window, 3), "restarts_in_window": n,
            "restarts_per_s": round(n / window, 1) if window else None,
            "cpu_ms_per_restart": {k: round((cpu1[k] - cpu0[k]) * 1e3 / n, 2)
                                   for k in cpu1 if k in cpu0} if n else {},
            "machine_busy_pct_in_window": round(machine["other_busy_pct"]
                                                + machine["ours_pct"], 1),
            "events_total": len(raw),
        })
    finally:
        if reader is not None:
            reader.close()
        benchlib.progress("supervise: down -v ...")
        problems = sv.down()
        if problems:
            s.anomalies += problems
    return s


# ============================================================================ podman

def podman_base(workdir: Path) -> list[str]:
    state = workdir / "podman"
    return ["podman", "--root", str(state / "root"), "--runroot", str(state / "run"),
            "--tmpdir", str(state / "tmp"), "--events-backend", "file"]


def rfc3339(text: str) -> float:
    """2026-12-04T21:21:14.836853006Z (or +00:00) -> Unix seconds, ns kept as far as a float
    allows (≈ 0.2 µs)."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)$", text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    base = dt.datetime.fromisoformat(m.group(1) + zone).timestamp()
    return base + (float("0." + m.group(2)) if m.group(2) else 0.0)


def measure_podman(args: argparse.Namespace, workdir: Path, snapshot: benchlib.HostSnapshot,
                   name: str) -> Series:
    s = Series("podman", "`run -d --restart=always --runtime runc`, private store",
               "podman events (file backend, ns)")
    if shutil.which("podman") is None:
        s.skipped = "podman is not installed (apt-get install podman)"
        return s
    rootfs = workdir / "rootfs-podman"  # podman writes into a --rootfs; ours stays pristine
    benchlib.build_busybox_rootfs(rootfs)
    base = podman_base(workdir)
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    # shared/peers/README.md: no CAP_SYS_RESOURCE here, so podman's default nofile cannot be
    # set; podman lowers its own nproc to 32768; crun refuses this hybrid cgroup host.
    run = [*base, "run", "-d", "--name", name, "--restart=always", "--runtime", "runc",
           "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=32768:32768",
           "--network", "none", "--log-driver", "none", "--rootfs", str(rootfs),
           "/bin/sh", "-c", "exit 1"]
    s.info["argv"] = run
    reader: LineReader | None = None
    try:
        benchlib.progress("podman: run -d ...")
        r = subprocess.run(run, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            s.skipped = f"podman run: exit {r.returncode}: " + " ".join(r.stderr.split())[:300]
            return s
        cid = r.stdout.strip().splitlines()[-1]
        s.info["container_id"] = cid
        snapshot.add_tag(cid)

        def parse(line: str) -> tuple[float, str] | None:
            if not line.startswith("{"):
                return None
            e = json.loads(line)
            status = e.get("Status") or e.get("status")
            kind = {"died": "die", "start": "start"}.get(status)
            if kind is None:
                return None
            stamp = e.get("Time") or e.get("time")
            return (rfc3339(stamp) if isinstance(stamp, str) else stamp / 1e9), kind

        reader = LineReader([*base, "events", "--format", "json", "--filter",
                             f"container={name}"])
        meter = benchlib.CpuMeter()
        marks, t_from, t_to = follow(reader, parse, args.restarts, args.timeout, "podman")
        machine = meter.stop()
        s.die_to_start, s.start_to_start = cycles(marks, t_from, t_to)
        n = len(s.die_to_start)
        window = t_to - t_from
        s.info.update({"window_s": round(window, 3), "restarts_in_window": n,
                       "restarts_per_s": round(n / window, 1) if window else None,
                       "machine_busy_pct_in_window": round(machine["other_busy_pct"]
                                                           + machine["ours_pct"], 1)})
    finally:
        if reader is not None:
            reader.close()
        benchlib.progress("podman: rm -f ...")
        # `rm -f` races with the restart loop ("could not be stopped: container not
        # running"): try again.
        for attempt in range(5):
            rm = subprocess.run([*base, "rm", "-f", "-t", "0", name], capture_output=True,
                                text=True, timeout=120, stdin=subprocess.DEVNULL)
            if rm.returncode == 0 or "no such container" in rm.stderr:
                break
            if attempt == 4:
                s.anomalies.append(f"podman rm: exit {rm.returncode}: "
                                   + " ".join(rm.stderr.split())[:200])
            time.sleep(0.2)
    return s


def podman_cleanup(workdir: Path, name: str) -> None:
    """After a Ctrl-C: the container, and podman's storage mounts under our temp dir."""
    if shutil.which("podman") is None or not (workdir / "podman").exists():
        return
    base = podman_base(workdir)
    for argv in ([*base, "rm", "-f", "-t", "0", name], [*base, "unmount", "-a"]):
        try:
            subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            pass


# ============================================================================ supervisord

SUP_LOG = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ (spawned|exited):")


def measure_supervisord(args: argparse.Namespace, workdir: Path, rootfs: Path) -> Series:
    s = Series("supervisord", "autorestart=true startsecs=0 (a host process, no container)",
               "its log (ms)")
    if shutil.which("supervisord") is None:
        s.skipped = "supervisord is not installed (apt-get install supervisor)"
        return s
    d = workdir / "supervisord"
    d.mkdir()
    conf, log, sock = d / "supervisord.conf", d / "supervisord.log", d / "s.sock"
    conf.write_text(f"""[unix_http_server]
file={sock}
chmod=0700

[supervisord]
nodaemon=true
logfile={log}
logfile_maxbytes=0
loglevel=info
pidfile={d}/supervisord.pid
childlogdir={d}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{sock}

[program:{CONTAINER}]
command={rootfs}/bin/sh -c "exit 1"
autostart=true
autorestart=true
startsecs=0
stdout_logfile={d}/out.log
stderr_logfile={d}/err.log
""")
    s.info["program"] = f'command={rootfs}/bin/sh -c "exit 1" autorestart=true startsecs=0'
    benchlib.progress("supervisord: starting ...")
    proc = subprocess.Popen(["supervisord", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    s.info["supervisord_pid"] = proc.pid

    def marks_now() -> list[tuple[float, str]]:
        out = []
        if not log.exists():
            return out
        for line in log.read_text(errors="replace").splitlines():
            m = SUP_LOG.match(line)
            if m:
                t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                out.append((t, "start" if m.group(2) == "spawned" else "die"))
        return out

    try:
        meter = benchlib.CpuMeter()
        deadline = time.monotonic() + max(args.timeout, 2.0 * args.sup_restarts + 30)
        n = 0
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if proc.poll() is not None:
                raise RuntimeError(f"supervisord exited with status {proc.returncode}")
            n = len(cycles(marks_now(), 0.0, float("inf"))[0])
            benchlib.progress(f"supervisord: {n}/{args.sup_restarts} restarts (≈ 1 a second)")
            if n >= args.sup_restarts:
                break
        else:
            raise RuntimeError(f"supervisord: {n} restarts only")
        machine = meter.stop()
    finally:
        benchlib.progress("supervisord: supervisorctl shutdown ...")
        r = subprocess.run(["supervisorctl", "-c", str(conf), "shutdown"], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            s.anomalies.append(f"supervisord did not shut down ({r.stdout.strip()}): killed")
            proc.kill()
            proc.wait()
    s.die_to_start, s.start_to_start = cycles(marks_now(), 0.0, float("inf"))
    s.info.update({"restarts": len(s.die_to_start),
                   "machine_busy_pct_in_window": round(machine["other_busy_pct"]
                                                       + machine["ours_pct"], 1)})
    return s


# ============================================================================ report

def fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def report(series: list[Series], info: dict[str, Any], versions: dict[str, str],
           leftovers: list[str]) -> dict[str, Any]:
    print(f"\nrestart latency: /bin/sh -c 'exit 1', restarted at once  ({info['date']}, "
          f"{info['git']})")
    print(f"machine: {info['kernel']}, {info['cpus']} CPUs, {info['cgroups']}, load "
          f"{info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}")
    print("versions: " + "; ".join(f"{k} {v}" for k, v in versions.items()))
    ours = next((x for x in series if x.name == "supervise" and x.die_to_start), None)
    ours_med = benchlib.summary(ours.die_to_start)["median"] if ours else None
    rows = []
    for x in series:
        if x.skipped:
            rows.append([x.name, "–", "–", "–", "–", "–", "–", "–", "skipped: " + x.skipped])
            continue
        g, c = benchlib.summary(x.die_to_start), benchlib.summary(x.start_to_start)
        ratio = f"{g['median'] / ours_med:.1f}×" if ours_med else "–"
        rows.append([x.name, str(g["n"]), fmt(g["min"]), fmt(g["median"]), fmt(g["p90"]),
                     fmt(g["max"]), fmt(c.get("median")), ratio, x.timestamps])
    print("\ndie -> next start (ms); start -> start = one whole cycle")
    benchlib.print_table(["tool", "n", "min", "median", "p90", "max", "start->start med",
                          "× ours", "timestamps"], rows,
                         right=[False, True, True, True, True, True, True, True, False])
    if ours is not None:
        print("\nsupervise, die -> start split by its restart event (ms)")
        prow = []
        for k, v in ours.parts.items():
            sm = benchlib.summary(v)
            prow.append([k, str(sm["n"]), fmt(sm.get("median")), fmt(sm.get("p90")),
                         fmt(sm.get("max"))])
        benchlib.print_table(["part", "n", "median", "p90", "max"], prow)
        print(f"supervise: {ours.info.get('restarts_per_s')} restarts/s; CPU per restart (ms): "
              f"{ours.info.get('cpu_ms_per_restart')}; machine busy in window "
              f"{ours.info.get('machine_busy_pct_in_window')} % of all CPUs")
    verdict: dict[str, Any] = {}
    if ours_med is not None:
        verdict["ours_median_ms"] = round(ours_med, 2)
        verdict["le_20ms"] = ours_med <= TARGET_MS
        for x in series:
            if x.name != "supervise" and x.die_to_start:
                verdict[f"below_{x.name}"] = ours_med < benchlib.summary(x.die_to_start)[
                    "median"]
        met = all(v for k, v in verdict.items() if k != "ours_median_ms")
        print(f"\ntarget (median ≤ {TARGET_MS:.0f} ms and below every peer that ran): "
              f"{'met' if met else 'NOT met'}  {verdict}")
    for x in series:
        for a in x.anomalies:
            print(f"note: {x.name}: {a}")
    print("leftovers: " + ("none" if not leftovers else "; ".join(leftovers)))
    return verdict


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--restarts", type=int, default=200,
                    help="restarts measured for ours and podman (≥ 30)")
    ap.add_argument("--sup-restarts", type=int, default=40,
                    help="restarts measured for supervisord (≥ 30; it makes one a second)")
    ap.add_argument("--only", default="ours,podman,supervisord")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per tool")
    args = ap.parse_args()
    benchlib.require_root()
    benchlib.interruptible()
    want = set(args.only.split(","))
    project = f"sbench-rs-{os.getpid()}"
    podman_name = f"sbench-rs-podman-{os.getpid()}"
    workdir = benchlib.make_workdir("supervise-bench-restart-")
    snapshot = benchlib.HostSnapshot(workdir, [project, podman_name])
    info = benchlib.machine_info()
    versions = {
        "podman": benchlib.tool_version(["podman", "--version"]),
        "conmon": benchlib.tool_version(["conmon", "--version"]),
        "runc": benchlib.tool_version(["runc", "--version"]),
        "supervisord": benchlib.tool_version(["supervisord", "--version"]),
        "busybox": benchlib.tool_version([benchlib.BUSYBOX]),
    }
    info["git"] = benchlib.Supervise(workdir, project).describe_code()
    series: list[Series] = []
    interrupted = False
    error = ""
    try:
        rootfs = workdir / "rootfs"
        benchlib.build_busybox_rootfs(rootfs)
        meter = benchlib.CpuMeter()
        for tool, fn in (("ours", lambda: measure_ours(args, workdir, rootfs, project)),
                         ("podman", lambda: measure_podman(args, workdir, snapshot,
                                                           podman_name)),
                         ("supervisord", lambda: measure_supervisord(args, workdir,
                                                                     rootfs))):
            if tool in want:
                series.append(fn())
        run = meter.stop()  # the supervisor, conmon and supervisord are not our descendants
        info["machine_busy_pct_over_run"] = round(run["other_busy_pct"] + run["ours_pct"], 1)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: cleaning up", file=sys.stderr)
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        error = f"{type(e).__name__}: {e}"
        print(f"\nerror: {error}: cleaning up", file=sys.stderr)
    finally:
        benchlib.uninterruptible()
        podman_cleanup(workdir, podman_name)
        leftovers = benchlib.finish(workdir, snapshot, benchlib.Supervise(workdir, project),
                                    [project, podman_name, *snapshot.tags[2:]])
    if interrupted or error:
        print("leftovers: " + ("none" if not leftovers else "; ".join(leftovers)))
        return 130 if interrupted else 1
    benchlib.progress("done", final=True)
    info["loadavg_end"] = os.getloadavg()
    verdict = report(series, info, versions, leftovers)
    path = benchlib.write_results("restart_latency", {
        "benchmark": "restart_latency", "args": vars(args), "machine": info,
        "versions": versions, "leftovers": leftovers, "verdict": verdict,
        "series": [{"name": x.name, "how": x.how, "timestamps": x.timestamps,
                    "skipped": x.skipped, "anomalies": x.anomalies, "info": x.info,
                    "die_to_start": {"summary": benchlib.summary(x.die_to_start),
                                     "ms": [round(v, 3) for v in x.die_to_start]},
                    "start_to_start": {"summary": benchlib.summary(x.start_to_start),
                                       "ms": [round(v, 3) for v in x.start_to_start]},
                    "parts": {k: {"summary": benchlib.summary(v),
                                  "ms": [round(t, 3) for t in v]}
                              for k, v in x.parts.items()}}
                   for x in series],
    })
    print(f"results: {path.relative_to(benchlib.REPO_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
