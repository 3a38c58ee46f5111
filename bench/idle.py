#!/usr/bin/env python3
"""Idle cost of a supervisor: CPU and memory of one detached supervisor with 50 running
containers (no healthchecks), against the same supervisor with one.

    python3 bench/idle.py [--containers 50] [--seconds 30] [--base-seconds 10] [--settle 5]

Each series is a real detached supervisor (`supervise up -d stack.toml`), with the services,
their output pumps and the control API, and busybox containers running `sleep 3600`:

1. **fresh 1**: a supervisor started with a 1-container stack.  After --settle seconds: its
   memory, then its CPU over --base-seconds.  Then the same supervisor is grown in place to 10,
   25 and 50 containers (`up` again with an edited stack file, which adds the new containers)
   and its memory read at each step: the "grown" slope, least squares over 1/10/25/50.
2. **fresh 50**: a new supervisor started with the 50-container stack file.  After --settle
   seconds: its memory, then its CPU over --seconds (utime + stime of /proc/PID/stat, all its
   threads) as % of one core, and its memory again at the end.

Per extra container: (VmRSS of fresh 50 − VmRSS of fresh 1) / 49, next to the grown slope.
Also: the fork server's RSS and CPU (a fixed cost, one per supervisor), the warm PID 1 it
keeps cloned ahead of the next start (one per supervisor, in a pid namespace of its own), the
supervisor's context switches per second (its wake-ups), and its descendants outside the
containers' pid namespaces (the fork server only: no helper process per container).

Output: a table on stdout, progress on stderr, bench/results/idle-*.json.  Each supervisor is
taken down with `down -v`; the temp dir is removed; leftovers (cgroups, mounts, processes)
are checked at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import benchlib

GROW = (10, 25)


def stack_text(project: str, rootfs: Path, n: int) -> str:
    out = [f'[stack]\nname = "{project}"\n']
    for i in range(1, n + 1):
        out.append(f'[containers.s{i:02d}]\nrootfs = "{rootfs}"\n'
                   'command = ["/bin/sleep", "3600"]\n')
    return "\n".join(out)


def context_switches(pid: int) -> dict[str, int]:
    """Voluntary + involuntary context switches of each thread of pid (its wake-ups)."""
    out: dict[str, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                out[tid] = sum(int(line.split()[1]) for line in f if line.startswith(
                    ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))
        except OSError:
            continue
    return out


def switches_between(before: dict[str, int], after: dict[str, int]) -> int:
    """Threads alive at both ends count their difference, new ones all they did (a thread
    that ended meanwhile is lost: trio's idle worker threads end after 10 s)."""
    return sum(n - before.get(tid, 0) for tid, n in after.items())


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def snapshot(sv: benchlib.Supervise) -> dict[str, Any]:
    pid = sv.pid()
    fs, warm = sv.init_processes()
    assert pid is not None and fs is not None
    mem = benchlib.proc_mem(pid)
    ns = benchlib.pid_namespace(pid)
    outside = [(p, c) for p, c in benchlib.descendants(pid) if benchlib.pid_namespace(p) == ns]
    return {"supervisor": mem, "fork_server": benchlib.proc_mem(fs),
            "warm_pid1": [benchlib.proc_mem(w) for w in warm],
            "threads": threads(pid), "descendants": len(benchlib.descendants(pid)),
            "descendants_outside_containers": [f"{p} ({c})" for p, c in outside]}


def running(sv: benchlib.Supervise) -> int:
    lines = sv.cli("ps", "--format", "json").stdout.splitlines()
    return sum(json.loads(line)["state"]["running"] for line in lines if line.startswith("{"))


def cpu_window(sv: benchlib.Supervise, seconds: float, label: str) -> dict[str, Any]:
    pid, fs = sv.pid(), sv.fork_server_pid()
    assert pid is not None and fs is not None
    t0 = time.monotonic()
    c0, f0, s0 = benchlib.cpu_seconds(pid), benchlib.cpu_seconds(fs), context_switches(pid)
    meter = benchlib.CpuMeter()
    while (elapsed := time.monotonic() - t0) < seconds:
        time.sleep(min(1.0, seconds - elapsed))
        elapsed = time.monotonic() - t0
        used = benchlib.cpu_seconds(pid) - c0
        benchlib.progress(f"{label}: {elapsed:4.1f}/{seconds:.0f} s, supervisor CPU "
                          f"{100 * used / elapsed:.3f} % of a core")
    wall = time.monotonic() - t0
    c1, f1, s1 = benchlib.cpu_seconds(pid), benchlib.cpu_seconds(fs), context_switches(pid)
    machine = meter.stop()
    return {"seconds": round(wall, 2), "supervisor_cpu_s": round(c1 - c0, 3),
            "supervisor_pct_of_core": round(100 * (c1 - c0) / wall, 3),
            "fork_server_cpu_s": round(f1 - f0, 3),
            "fork_server_pct_of_core": round(100 * (f1 - f0) / wall, 3),
            "context_switches_per_s": round(switches_between(s0, s1) / wall, 2),
            "threads_before_after": [len(s0), len(s1)],
            "clock_tick_s": 1 / os.sysconf("SC_CLK_TCK"),
            "machine_busy_pct": round(machine["other_busy_pct"] + machine["ours_pct"], 1)}


def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs)


def start(sv: benchlib.Supervise, stack: Path, n: int, settle: float,
          label: str) -> dict[str, Any]:
    benchlib.progress(f"{label}: up -d with {n} container{'s' if n > 1 else ''} ...")
    t0 = time.monotonic()
    sv.up(stack)
    up_s = time.monotonic() - t0
    got = running(sv)
    if got != n:
        raise RuntimeError(f"{label}: {got} of {n} containers running")
    benchlib.progress(f"{label}: {n} running after {up_s:.2f} s; settling {settle:.0f} s ...")
    time.sleep(settle)
    return {"containers": n, "up_s": round(up_s, 2), **snapshot(sv)}


def measure(args: argparse.Namespace, workdir: Path, rootfs: Path,
            project: str) -> dict[str, Any]:
    n = args.containers
    sv = benchlib.Supervise(workdir, project)
    stack = workdir / "stack.toml"
    result: dict[str, Any] = {}
    try:
        # 1. fresh with one, then grown in place
        stack.write_text(stack_text(project, rootfs, 1))
        one = start(sv, stack, 1, args.settle, "fresh 1")
        one["cpu"] = cpu_window(sv, args.base_seconds, "fresh 1")
        one["after"] = snapshot(sv)["supervisor"]
        grown = [{"containers": 1, **{k: one[k] for k in ("supervisor", "fork_server")}}]
        for k in (*(g for g in GROW if g < n), n):
            stack.write_text(stack_text(project, rootfs, k))
            benchlib.progress(f"grown: up with {k} containers ...")
            sv.up(stack)
            deadline = time.monotonic() + 60
            while running(sv) != k and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(args.settle)
            grown.append({"containers": k, **snapshot(sv)})
        result["fresh_1"], result["grown"] = one, grown
        benchlib.progress("fresh 1: down -v ...")
        problems = sv.down()
        # 2. fresh with n
        sv = benchlib.Supervise(workdir, project)
        stack.write_text(stack_text(project, rootfs, n))
        many = start(sv, stack, n, args.settle, f"fresh {n}")
        many["cpu"] = cpu_window(sv, args.seconds, f"fresh {n}")
        many["after"] = snapshot(sv)["supervisor"]
        many["still_running"] = running(sv)
        result[f"fresh_{n}"] = many
    finally:
        benchlib.progress("down -v ...")
        problems = sv.down()
    result["problems"] = problems
    return result


def report(args: argparse.Namespace, r: dict[str, Any], info: dict[str, Any],
           leftovers: list[str]) -> dict[str, Any]:
    n = args.containers
    one, many, grown = r["fresh_1"], r[f"fresh_{n}"], r["grown"]
    print(f"\nidle supervisor, busybox `sleep 3600` containers  ({info['date']}, {info['git']})")
    print(f"machine: {info['kernel']}, {info['cpus']} CPUs, {info['cgroups']}, load "
          f"{info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}")
    rows = []
    for label, s in (("fresh 1", one), *((f"grown {g['containers']}", g) for g in grown[1:]),
                     (f"fresh {n}", many)):
        cpu = s.get("cpu")
        rows.append([label, str(s["containers"]), str(s["supervisor"]["VmRSS"]),
                     str(s["supervisor"]["RssAnon"]), str(s["supervisor"]["Pss"]),
                     str(s["fork_server"]["VmRSS"]),
                     f"{cpu['supervisor_pct_of_core']:.3f} % over {cpu['seconds']:.0f} s"
                     if cpu else "–",
                     f"{cpu['context_switches_per_s']:.1f}" if cpu else "–",
                     str(s.get("threads", "–")),
                     str(len(s.get("descendants_outside_containers", []))) if "threads" in s
                     else "–"])
    benchlib.print_table(["series", "ctrs", "VmRSS kB", "RssAnon", "Pss", "fork srv VmRSS",
                          "supervisor CPU", "ctx sw/s", "threads", "helpers"], rows)
    per_fresh = (many["supervisor"]["VmRSS"] - one["supervisor"]["VmRSS"]) / (n - 1)
    per_fresh_anon = (many["supervisor"]["RssAnon"] - one["supervisor"]["RssAnon"]) / (n - 1)
    xs = [float(g["containers"]) for g in grown]
    per_grown = slope(xs, [float(g["supervisor"]["VmRSS"]) for g in grown])
    drift = many["after"]["VmRSS"] - many["supervisor"]["VmRSS"]
    cpu = many["cpu"]
    print(f"\nper extra container (VmRSS): fresh {n} − fresh 1 = {per_fresh:.1f} kB "
          f"(RssAnon {per_fresh_anon:.1f}); grown slope 1..{n} = {per_grown:.1f} kB")
    print(f"fresh {n}: VmRSS drift over the CPU window {drift:+d} kB; fork server CPU "
          f"{cpu['fork_server_pct_of_core']:.3f} %; machine busy {cpu['machine_busy_pct']} % "
          f"of all CPUs; {many['still_running']} still running at the end")
    print(f"helpers outside the containers: {many['descendants_outside_containers']}; "
          "warm PID 1 waiting for the next start (VmRSS/Pss kB): "
          + (", ".join(f"{w['VmRSS']}/{w['Pss']}" for w in many["warm_pid1"]) or "none"))
    verdict = {"cpu_pct_of_core": cpu["supervisor_pct_of_core"],
               "cpu_below_1pct": cpu["supervisor_pct_of_core"] < 1.0,
               "kb_per_container_fresh": round(per_fresh, 1),
               "kb_per_container_grown": round(per_grown, 1),
               "memory_le_150kb": max(per_fresh, per_grown) <= 150}
    print(f"\ntargets: CPU < 1 % of a core: {'met' if verdict['cpu_below_1pct'] else 'NOT met'}"
          f"; ≤ 150 kB per container: {'met' if verdict['memory_le_150kb'] else 'NOT met'}")
    for p in r.get("problems", []):
        print(f"note: {p}")
    print("leftovers: " + ("none" if not leftovers else "; ".join(leftovers)))
    return verdict


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--containers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0, help="CPU window with N containers")
    ap.add_argument("--base-seconds", type=float, default=10.0,
                    help="CPU window with 1 container")
    ap.add_argument("--settle", type=float, default=5.0)
    args = ap.parse_args()
    if args.containers < 2:
        ap.error("--containers: at least 2")
    benchlib.require_root()
    benchlib.interruptible()
    project = f"sbench-idle-{os.getpid()}"
    workdir = benchlib.make_workdir("supervise-bench-idle-")
    snap = benchlib.HostSnapshot(workdir, [project])
    info = benchlib.machine_info()
    info["git"] = benchlib.Supervise(workdir, project).describe_code()
    result: dict[str, Any] = {}
    interrupted = False
    error = ""
    try:
        rootfs = workdir / "rootfs"
        benchlib.build_busybox_rootfs(rootfs)
        result = measure(args, workdir, rootfs, project)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: cleaning up", file=sys.stderr)
    except (RuntimeError, OSError) as e:
        error = f"{type(e).__name__}: {e}"
        print(f"\nerror: {error}: cleaning up", file=sys.stderr)
    finally:
        benchlib.uninterruptible()
        leftovers = benchlib.finish(workdir, snap, benchlib.Supervise(workdir, project),
                                    [project])
    if interrupted or error:
        print("leftovers: " + ("none" if not leftovers else "; ".join(leftovers)))
        return 130 if interrupted else 1
    benchlib.progress("done", final=True)
    info["loadavg_end"] = os.getloadavg()
    verdict = report(args, result, info, leftovers)
    path = benchlib.write_results("idle", {"benchmark": "idle", "args": vars(args),
                                           "machine": info, "leftovers": leftovers,
                                           "verdict": verdict, **result})
    print(f"results: {path.relative_to(benchlib.REPO_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
