#!/usr/bin/env python3
"""The reference stack from nothing to all five containers healthy, and back down: ours
(configs/reference.toml) side by side with the same stack under podman.

    python3 bench/stack_up.py [--runs 5] [--only ours,podman]

Ours: `supervise up -d --wait configs/reference.toml` with a private SUPERVISE_STATE_DIR and
SUPERVISE_RUN_DIR and a free port for WEB_PORT, timed from the command's start to its exit
(it exits once every healthcheck has passed), and checked against the supervisor's own events
(the last `health_status healthy`).  Then one request through the published port, and
`down -v` (timed: every container stopped, dependants first, and the supervisor gone).  Each
run starts from nothing: no containers, no volumes, no supervisor.  Target: median < 2 s.

podman: the same programs, commands and healthchecks, driven as a Compose tool would drive
them (podman 4.3 has no compose here): `run -d` the primary, wait until its healthcheck
passes, `run -d` the replicas and the app at once, then logstash (its `--volumes-from` needs
the app), and wait until each healthcheck passes.  The `host` image is
rebuilt for podman as a skeleton `--rootfs` (one copy per container) plus `-v /usr:/usr:ro`;
`--runtime runc` and the ulimit flags as in shared/peers/README.md.  Differences, forced by
the host: podman's bridge networks put a bridge and firewall rules in the host's namespace
(not allowed here), so the five share the primary's namespace (`--network container:`), the
replicas listen on 6380/6381 and the link name is 127.0.0.1, and nothing is published;
without systemd podman runs no healthchecks itself, so this script runs `podman healthcheck
run` in a loop, as fast as it answers.  Down: `rm -f -t 10` in reverse order.

Docker: not measured — the peers' dockerd is started by hand (shared/peers/10-dockerd.sh) and
has no images but a busybox import; it would need the same rootfs workaround and
`--network container:` as podman, adding nothing podman does not show.

Output: a table on stdout, progress on stderr, bench/results/stack_up-*.json.  Everything
lives in one temp dir, removed at the end; leftovers (cgroups, mounts, /run entries,
processes) are checked.
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import benchlib

STACK_FILE = benchlib.REPO_DIR / "configs" / "reference.toml"
FIVE = ("redis_primary", "redis_replica1", "redis_replica2", "nodeapp", "logstash")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def request(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        r = conn.getresponse()
        return f"{r.status} {r.read().decode().strip()}"
    finally:
        conn.close()


# ============================================================================== ours

def measure_ours(args: argparse.Namespace, workdir: Path, project: str) -> dict[str, Any]:
    sv = benchlib.Supervise(workdir, project)
    runs: list[dict[str, float]] = []
    anomalies: list[str] = []
    for i in range(args.runs):
        port = free_port()
        sv.env["WEB_PORT"] = str(port)
        benchlib.progress(f"ours: run {i + 1}/{args.runs}: up -d --wait")
        wall0 = time.time()
        t0 = time.monotonic()
        sv.cli("up", "-d", "--wait", str(STACK_FILE), timeout=120)
        up = time.monotonic() - t0
        pid = sv.pid()
        if pid is not None:
            sv.started_pids.append(pid)
        healthy = [e for e in sv.events(since=wall0)
                   if e["action"] == "health_status" and e["attributes"].get("status")
                   == "healthy"]
        last_healthy = max(e["time"] for e in healthy) - wall0 if healthy else float("nan")
        if {e["container"] for e in healthy} != set(FIVE):
            anomalies.append(f"run {i + 1}: healthy events for "
                             f"{sorted({e['container'] for e in healthy})}")
        answer = request(port)
        if not answer.startswith("200 "):
            anomalies.append(f"run {i + 1}: GET / answered {answer!r}")
        benchlib.progress(f"ours: run {i + 1}/{args.runs}: down -v")
        t0 = time.monotonic()
        problems = sv.down()
        down = time.monotonic() - t0
        anomalies += [f"run {i + 1}: {p}" for p in problems]
        runs.append({"up_wait_ms": up * 1e3, "last_healthy_ms": last_healthy * 1e3,
                     "down_ms": down * 1e3})
    return {"name": "ours", "runs": runs, "anomalies": anomalies,
            "how": "supervise up -d --wait; down -v"}


# ============================================================================ podman

def podman_base(workdir: Path) -> list[str]:
    state = workdir / "podman"
    return ["podman", "--root", str(state / "root"), "--runroot", str(state / "run"),
            "--tmpdir", str(state / "tmp"), "--events-backend", "file"]


def skeleton(root: Path) -> Path:
    """The `host` image for podman: /usr comes from a bind mount, the rest is this."""
    for d in ("usr", "etc", "tmp", "data", "proc", "sys", "dev", "run", "root", "app",
              "var/log/redis", "var/log/nodeapp", "opt/collector"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        (root / link).symlink_to(f"usr/{link}")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "tmp").chmod(0o1777)
    return root


def podman_containers(workdir: Path, run: int, prefix: str) -> list[tuple[str, list[str], str]]:
    """(name, `run -d` options and command, healthcheck) per container, primary first."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    data = workdir / f"run{run}"
    for d in ("data", "redis-log", "node-log"):
        (data / d).mkdir(parents=True, exist_ok=True)
    primary = f"{prefix}-redis_primary"

    def common(name: str) -> list[str]:
        root = skeleton(data / f"rootfs-{name}")
        return ["--name", f"{prefix}-{name}", "--runtime", "runc",
                "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=32768:32768",
                "-v", "/usr:/usr:ro", "--rootfs", str(root)]

    def replica(n: int) -> tuple[str, list[str], str]:
        port = str(6379 + n)
        return (f"redis_replica{n}",
                ["--network", f"container:{primary}", *common(f"redis_replica{n}"),
                 "redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--port", port,
                 "--replicaof", "127.0.0.1", "6379", "--repl-diskless-sync-delay", "0",
                 "--save", "", "--dir", "/data"],
                f"redis-cli -p {port} info replication | grep -q master_link_status:up")

    def with_health(options: list[str], test: str) -> list[str]:
        # before --rootfs: podman takes what follows the rootfs path as the command
        at = options.index("--rootfs")
        return [*options[:at], "--health-cmd", test, *options[at:]]

    made = [
        ("redis_primary",
         ["--network", "none", "-v", f"{data / 'data'}:/data",
          "-v", f"{data / 'redis-log'}:/var/log/redis", *common("redis_primary"),
          "sh", "-c", "exec redis-server --bind 0.0.0.0 --protected-mode no --port 6379 "
          "--appendonly yes --dir /data --save '' --repl-diskless-sync yes "
          "--repl-diskless-sync-delay 0 --logfile /var/log/redis/redis-server.log"],
         "redis-cli ping"),
        replica(1), replica(2),
        ("nodeapp",
         ["--network", f"container:{primary}", "--init", "--init-path", "/usr/bin/tini",
          "-e", "PORT=3000", "-e", "REDIS_URL=redis://127.0.0.1:6379",
          "-e", "ACCESS_LOG=/var/log/nodeapp/access.log", "-w", "/app",
          "-v", f"{STACK_FILE.parent / 'nodeapp'}:/app:ro",
          "-v", f"{data / 'node-log'}:/var/log/nodeapp", *common("nodeapp"),
          "node", "/app/server.js"],
         "busybox wget -q -O /dev/null http://127.0.0.1:3000/healthz"),
        ("logstash",
         ["--network", "none", "--volumes-from", f"{primary}:ro",
          "--volumes-from", f"{prefix}-nodeapp:ro",
          "-v", f"{STACK_FILE.parent / 'logstash'}:/opt/collector:ro", *common("logstash"),
          "python3", "-u", "/opt/collector/collector.py",
          "redis_primary=/var/log/redis/redis-server.log",
          "nodeapp=/var/log/nodeapp/access.log"],
         "[ $(( $(date +%s) - $(stat -c %Y /tmp/collector.alive) )) -lt 5 ]"),
    ]
    return [(f"{prefix}-{name}", with_health(opts, test), test) for name, opts, test in made]


def podman_wait_healthy(base: list[str], names: list[str], timeout: float = 60) -> None:
    todo = list(names)
    deadline = time.monotonic() + timeout
    while todo:
        if time.monotonic() > deadline:
            raise RuntimeError(f"podman: not healthy after {timeout:.0f} s: {todo}")
        name = todo[0]
        r = subprocess.run([*base, "healthcheck", "run", name], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
        if r.returncode == 0:
            todo.pop(0)


def podman_rm(base: list[str], names: list[str], timeout: int = 10) -> list[str]:
    problems = []
    for name in reversed(names):
        r = subprocess.run([*base, "rm", "-f", "-v", "-t", str(timeout), name],
                           capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0 and "no such container" not in r.stderr:
            problems.append(f"rm {name}: " + " ".join(r.stderr.split())[-200:])
    return problems


def measure_podman(args: argparse.Namespace, workdir: Path, prefix: str,
                   snapshot: benchlib.HostSnapshot) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "podman", "runs": [], "anomalies": [],
                           "how": "podman run -d x5 (primary; replicas and app at once; logstash), "
                                  "healthcheck run until each passes; rm -f in reverse"}
    if shutil.which("podman") is None:
        out["skipped"] = "podman is not installed"
        return out
    base = podman_base(workdir)
    for i in range(args.runs):
        specs = podman_containers(workdir, i, f"{prefix}-{i}")
        names = [name for name, _, _ in specs]
        for name in names:
            snapshot.add_tag(name)
        try:
            benchlib.progress(f"podman: run {i + 1}/{args.runs}: up")
            t0 = time.monotonic()
            first = subprocess.run([*base, "run", "-d", *specs[0][1]], capture_output=True,
                                   text=True, timeout=120, stdin=subprocess.DEVNULL)
            if first.returncode != 0:
                out["skipped"] = "podman run: " + " ".join(first.stderr.split())[-300:]
                return out
            podman_wait_healthy(base, names[:1])
            # then the replicas and the app at once; logstash once the app exists
            # (--volumes-from needs it), as Compose orders a volumes_from dependency
            for wave in (specs[1:4], specs[4:]):
                procs = [subprocess.Popen([*base, "run", "-d", *opts],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          text=True, stdin=subprocess.DEVNULL)
                         for _, opts, _ in wave]
                for (name, _, _), p in zip(wave, procs, strict=True):
                    _, err = p.communicate(timeout=120)
                    if p.returncode != 0:
                        raise RuntimeError(f"podman run {name}: "
                                           + " ".join(err.split())[-300:])
            podman_wait_healthy(base, names[1:])
            up = time.monotonic() - t0
            benchlib.progress(f"podman: run {i + 1}/{args.runs}: rm")
            t0 = time.monotonic()
            out["anomalies"] += podman_rm(base, names)
            down = time.monotonic() - t0
            out["runs"].append({"up_wait_ms": up * 1e3, "down_ms": down * 1e3})
        finally:
            podman_rm(base, names, timeout=0)
    return out


def podman_cleanup(workdir: Path) -> None:
    if shutil.which("podman") is None or not (workdir / "podman").exists():
        return
    base = podman_base(workdir)
    for argv in ([*base, "rm", "-a", "-f", "-v", "-t", "0"], [*base, "unmount", "-a"]):
        try:
            subprocess.run(argv, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            pass


# ============================================================================== main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="ours,podman")
    args = ap.parse_args()
    benchlib.require_root()
    benchlib.interruptible()
    if not (STACK_FILE.parent / "nodeapp" / "node_modules").is_dir():
        sys.exit("configs/nodeapp/node_modules is missing: bash scripts/setup.sh --reference")
    want = set(args.only.split(","))
    project = f"sbench-su-{os.getpid()}"
    prefix = f"sbench-su-podman-{os.getpid()}"
    workdir = benchlib.make_workdir("supervise-bench-stackup-")
    snapshot = benchlib.HostSnapshot(workdir, [project, prefix])
    info = benchlib.machine_info()
    info["git"] = benchlib.Supervise(workdir, project).describe_code()
    versions = {"podman": benchlib.tool_version(["podman", "--version"]),
                "runc": benchlib.tool_version(["runc", "--version"]),
                "redis-server": benchlib.tool_version(["redis-server", "--version"]),
                "node": benchlib.tool_version(["node", "--version"])}
    series: list[dict[str, Any]] = []
    error = ""
    try:
        if "ours" in want:
            series.append(measure_ours(args, workdir, project))
        if "podman" in want:
            series.append(measure_podman(args, workdir, prefix, snapshot))
    except KeyboardInterrupt:
        error = "interrupted"
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        error = f"{type(e).__name__}: {e}"
    finally:
        benchlib.uninterruptible()
        podman_cleanup(workdir)
        leftovers = benchlib.finish(workdir, snapshot, benchlib.Supervise(workdir, project),
                                    [project, prefix])
    benchlib.progress("done", final=True)
    if error:
        print(f"error: {error}", file=sys.stderr)
    rows = []
    for s in series:
        if s.get("skipped"):
            rows.append([s["name"], "skipped: " + s["skipped"], "", "", ""])
            continue
        for key, label in (("up_wait_ms", "up -> all healthy"),
                           ("last_healthy_ms", "up -> last healthy event"),
                           ("down_ms", "down")):
            values = [r[key] for r in s["runs"] if key in r]
            if values:
                sm = benchlib.summary(values)
                s.setdefault("summary", {})[key] = sm
                rows.append([s["name"], label, f"{sm['min']:.0f}", f"{sm['median']:.0f}",
                             f"{sm['max']:.0f}"])
    print(f"reference stack, {args.runs} runs each (ms)")
    benchlib.print_table(["tool", "what", "min", "median", "max"], rows,
                         right=[False, False, True, True, True])
    for s in series:
        for a in s["anomalies"]:
            print(f"note: {s['name']}: {a}")
    ours = next((s for s in series if s["name"] == "ours" and s.get("summary")), None)
    if ours is not None:
        median = ours["summary"]["up_wait_ms"]["median"]
        print(f"target: median up -> all healthy < 2000 ms: "
              f"{'met' if median < 2000 else 'NOT met'} ({median:.0f} ms)")
    print("leftovers: " + ("none" if not leftovers else "; ".join(leftovers)))
    path = benchlib.write_results("stack_up", {
        "benchmark": "stack_up", "args": vars(args), "machine": info, "versions": versions,
        "series": series, "error": error, "leftovers": leftovers})
    print(f"results: {path.relative_to(benchlib.REPO_DIR)}")
    return 1 if error or leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
