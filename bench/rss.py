#!/usr/bin/env python3
"""Memory: how much the supervising process grows per extra running container.

    python3 bench/rss.py [--runs 2] [--containers 50] [--stdio null|pipe|both] [--peer-k 5]
                         [--no-traced]

Each series is a fresh worker process — a trio process with one `Runtime` (the fork server),
as a supervisor has it — that starts busybox containers running `sleep 3600`, one
`Container.wait` task each (a supervisor waits on every container), and records its own
VmRSS (/proc/self/status) and Pss (/proc/self/smaps_rollup) at 0, 1, 10, 25 and 50 running
containers, each after gc.collect() and a short settle.  The growth per container is the
least-squares slope over those points.  `--stdio pipe` gives each container stdout/stderr
pipes drained by a trio task each (what log capture will add); `null` gives it /dev/null.

A last series runs with tracemalloc on: the supervisor's live Python allocations per container
(RSS over 50 containers partly hides them in free space the allocator already holds).

Also: the fork server's RSS (a fixed cost, one per supervisor, not per container), and the
supervisor's descendants that are not container processes (other pid namespace), which must
be the fork server alone: no helper process per container.

Peers: the LXC monitor (one `[lxc monitor]` = lxc-start process per container) is measured
live with --peer-k containers (lxc-start -d, sleep 3600); conmon (podman) and the docker
shim are not installed here, so shared/peers/README.md's figures are quoted, marked so.

Every container is stopped and removed at the end, also on Ctrl-C or error; the temp dir
(rootfs, state) is removed and leftovers are checked.  JSON: bench/results/rss-*.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Any

import benchlib

if TYPE_CHECKING:
    import trio

    from supervisor.container import Container
    from supervisor.paths import ProjectPaths
    from supervisor.runtime import Runtime

CHECKPOINTS = (0, 1, 10, 25, 50)
LXC_PREFIX = "sbench-mem-"
# shared/peers/README.md §3 (2026-12-04, this host, 5 sleeping containers): VmRSS / Pss kB.
QUOTED = [
    ("podman 4.3.1: conmon, one per container", 2068, 578),
    ("docker 20.10: containerd-shim-runc-v2, one per container", 13248, 4426),
    ("lxc 5.0.2: [lxc monitor], one per container", 2532, 664),
    ("systemd-nspawn 252: nspawn parent, one per container", 7708, 2000),
    ("supervisord 4.2.5 (no container): growth per program", 24, 24),
    ("runc/crun run -d: none (nobody supervises the container)", 0, 0),
]


# ============================================================================ worker

def worker_main(rootfs: str, project: str, stdio: str, containers: int, settle: float) -> int:
    # The orchestrator stops us by closing stdin; our own finally removes the containers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import trio

    result = trio.run(_worker, rootfs, project, stdio, containers, settle)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def _log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


async def _drain(fd: int) -> None:
    import trio

    os.set_blocking(fd, False)
    try:
        while True:
            try:
                if not os.read(fd, 65536):
                    return
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


async def _stdin_closed() -> None:
    """Returns when the orchestrator closes our stdin (its Ctrl-C or its end)."""
    import trio

    stream = trio.lowlevel.FdStream(os.dup(0))
    while await stream.receive_some(4096):
        pass


async def _worker(rootfs: str, project: str, stdio: str, containers: int,
                  settle: float) -> dict[str, Any]:
    import trio

    # Everything a container start needs is imported before the 0-container reading, as in a
    # supervisor (else the first container would carry ~1.4 MB of module imports).
    from supervisor import config, container  # noqa: F401
    from supervisor.paths import ProjectPaths
    from supervisor.runtime import Runtime

    paths = ProjectPaths.for_project(project)
    null = os.open(os.devnull, os.O_RDWR)
    me = os.getpid()
    my_pidns = benchlib.pid_namespace(me)
    started: list[Container] = []
    points: list[dict[str, Any]] = []
    checks: dict[str, Any] = {}
    start_ms: list[float] = []

    async def hold(c: Container) -> None:
        await c.wait()

    traced = stdio.endswith("+traced")
    stdio = stdio.removesuffix("+traced")

    async def record(n: int, fork_server_pid: int) -> None:
        gc.collect()
        await trio.sleep(settle)
        sup, fs = benchlib.proc_mem(me), benchlib.proc_mem(fork_server_pid)
        point = {"containers": n, "supervisor": sup, "fork_server": fs,
                 "threads": len(os.listdir("/proc/self/task")),
                 "fds": len(os.listdir("/proc/self/fd"))}
        if traced:
            point["traced_kb"] = tracemalloc.get_traced_memory()[0] / 1024
        points.append(point)
        _log(f"  {n:3d} containers: supervisor VmRSS {sup['VmRSS']} kB, Pss {sup['Pss']} kB; "
             f"fork server VmRSS {fs['VmRSS']} kB")

    with Runtime() as runtime:
        fs_pid = runtime.fork_server._proc.pid  # reported only, never signalled
        try:
            async with trio.open_nursery() as outer:
                outer.start_soon(_stdin_closed_then_cancel, outer.cancel_scope)
                async with trio.open_nursery() as nursery:
                    if traced:  # Python's own allocations, live, from here on
                        tracemalloc.start()
                    await record(0, fs_pid)
                    for i in range(1, containers + 1):
                        c = await _start_one(runtime, paths, rootfs, i, stdio, null, nursery,
                                             started, start_ms)
                        nursery.start_soon(hold, c)
                        if i in CHECKPOINTS or i == containers:
                            await record(i, fs_pid)
                    # No helper per container: every descendant but the fork server is in a
                    # container's pid namespace.
                    desc = benchlib.descendants(me)
                    others = [(p, comm) for p, comm in desc
                              if benchlib.pid_namespace(p) == my_pidns]
                    checks = {"descendants": len(desc),
                              "container_processes": len(desc) - len(others),
                              "non_container_descendants": others, "fork_server_pid": fs_pid}
                    _log(f"  descendants: {len(desc)}, of which outside containers: {others}")
                    _log("  stopping (SIGKILL; each hold task reaps and removes the cgroup)")
                    t0 = time.perf_counter_ns()
                    for c in started:
                        c.kill(9)
                checks["stop_all_ms"] = (time.perf_counter_ns() - t0) / 1e6
                outer.cancel_scope.cancel()
        finally:
            # Normally a no-op; after an error or an early stop, nothing may stay behind.
            with trio.CancelScope(shield=True):
                for c in started:
                    try:
                        if c.record.status == "running":
                            c.kill(9)
                            await c.wait()
                        c.remove()
                    except Exception as e:
                        _log(f"  cleanup of {c.name}: {type(e).__name__}: {e}")
    return {"stdio": stdio, "traced": traced, "points": points, "checks": checks,
            "start_ms": benchlib.summary(start_ms)}


async def _start_one(runtime: Runtime, paths: ProjectPaths, rootfs: str, i: int, stdio: str,
                     null: int, nursery: trio.Nursery, started: list[Container],
                     start_ms: list[float]) -> Container:
    from supervisor import config
    from supervisor.container import Container

    cfg = config.container_from_mapping(
        f"mem{i}", {"rootfs": rootfs, "command": ["sleep", "3600"]}, where="bench")
    c = Container.create(runtime, paths, cfg)
    started.append(c)
    if stdio == "pipe":
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            t0 = time.perf_counter_ns()
            await c.start(null, out_w, err_w)
            start_ms.append((time.perf_counter_ns() - t0) / 1e6)
        finally:
            os.close(out_w)
            os.close(err_w)
        nursery.start_soon(_drain, out_r)
        nursery.start_soon(_drain, err_r)
    else:
        t0 = time.perf_counter_ns()
        await c.start(null, null, null)
        start_ms.append((time.perf_counter_ns() - t0) / 1e6)
    return c


async def _stdin_closed_then_cancel(scope: trio.CancelScope) -> None:
    await _stdin_closed()
    _log("  stdin closed: stopping early")
    scope.cancel()


# ============================================================================ peers: lxc

def lxc_monitors(workdir: Path, rootfs: Path, k: int, settle: float) -> dict[str, Any]:
    """k `lxc-start -d` containers sleeping; VmRSS/Pss of each one's monitor process."""
    lxcpath = workdir / "lxc"
    names = [f"{LXC_PREFIX}{i}" for i in range(k)]
    rows: list[dict[str, Any]] = []
    try:
        for n in names:
            (lxcpath / n).mkdir(parents=True, exist_ok=True)
            (lxcpath / n / "config").write_text(
                f"lxc.uts.name = {n}\nlxc.rootfs.path = dir:{rootfs}\nlxc.net.0.type = empty\n"
                "lxc.mount.auto = proc:mixed sys:ro\nlxc.autodev = 1\n"
                "lxc.apparmor.profile = unconfined\nlxc.log.level = ERROR\n")
            subprocess.run(["lxc-start", "-P", str(lxcpath), "-n", n, "-d", "--", "/bin/sleep",
                            "3600"], check=True, capture_output=True, timeout=30)
        time.sleep(settle)
        table = benchlib.process_table()
        for n in names:
            out = subprocess.run(["lxc-info", "-P", str(lxcpath), "-n", n, "-p", "-H"],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
            init = int(out)
            monitor = table[init][0]
            mem = benchlib.proc_mem(monitor)
            rows.append({"name": n, "init": init, "monitor": monitor,
                         "comm": table[monitor][1], **mem})
    finally:
        benchlib.uninterruptible()
        for n in names:
            if (lxcpath / n).exists():
                subprocess.run(["lxc-stop", "-P", str(lxcpath), "-n", n, "-k"],
                               capture_output=True, timeout=60)
        benchlib.interruptible()
    return {"k": k, "monitors": rows}


# ============================================================================ orchestration

def slope(points: list[dict[str, Any]], who: str, key: str) -> float:
    xs = [p["containers"] for p in points]
    ys = [p[who][key] for p in points]
    return statistics.linear_regression(xs, ys).slope if len(set(xs)) > 1 else float("nan")


def run_series(workdir: Path, rootfs: Path, project: str, stdio: str,
               args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ, SUPERVISE_STATE_DIR=str(workdir / "state"),
               SUPERVISE_RUN_DIR=str(workdir / "run"))
    env.pop("SUPERVISE_PROJECT", None)
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--worker", str(rootfs), project,
         stdio, str(args.containers), str(args.settle)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None
        out = proc.stdout.read()
        if proc.wait() != 0 or not out.strip():
            raise RuntimeError(f"worker failed (status {proc.returncode})")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result
    finally:
        if proc.poll() is None:  # Ctrl-C here: closing stdin makes the worker clean up
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def report(args: argparse.Namespace, series: list[dict[str, Any]], lxc: dict[str, Any] | None,
           info: dict[str, Any], leftovers: list[str]) -> dict[str, Any]:
    print()
    print(f"Supervisor memory vs running containers (busybox `sleep 3600`), kB; "
          f"settle {args.settle}s after gc.collect()")
    print(f"{info['date']}  kernel {info['kernel']}  {info['cpus']} CPUs  {info['cgroups']}  "
          f"git {info['git']}")
    summary: dict[str, Any] = {"series": []}
    measured = [s for s in series if not s["traced"]]
    for i, s in enumerate(measured, 1):
        pts = s["points"]
        print()
        print(f"series {i}: stdio={s['stdio']} (fresh worker process), start median "
              f"{s['start_ms'].get('median', float('nan')):.1f} ms")
        rows = [[str(p["containers"]), str(p["supervisor"]["VmRSS"]),
                 str(p["supervisor"]["RssAnon"]), str(p["supervisor"]["Pss"]),
                 str(p["supervisor"]["Private"]),
                 str(p["fork_server"]["VmRSS"]), str(p["fork_server"]["Pss"]),
                 str(p["threads"]), str(p["fds"])] for p in pts]
        benchlib.print_table(["containers", "sup VmRSS", "sup RssAnon", "sup Pss", "sup Private",
                              "forksrv VmRSS", "forksrv Pss", "threads", "fds"], rows)
        sl = {k: slope(pts, "supervisor", k) for k in ("VmRSS", "RssAnon", "Pss", "Private")}
        fs = {k: slope(pts, "fork_server", k) for k in ("VmRSS", "Pss")}
        c = s["checks"]
        others = ", ".join(f"{p} {comm}" for p, comm in c.get("non_container_descendants", []))
        print(f"  slope per container: supervisor VmRSS {sl['VmRSS']:.1f} kB, RssAnon "
              f"{sl['RssAnon']:.1f} kB, Pss {sl['Pss']:.1f} kB, Private {sl['Private']:.1f} kB;"
              f" fork server VmRSS {fs['VmRSS']:.1f} kB")
        print(f"  descendants at {pts[-1]['containers']}: {c.get('descendants')} = "
              f"{c.get('container_processes')} in containers + [{others}] "
              f"(fork server pid {c.get('fork_server_pid')}); stop all "
              f"{c.get('stop_all_ms', float('nan')):.0f} ms")
        summary["series"].append({"stdio": s["stdio"], "slope_kb": sl,
                                  "fork_server_slope_kb": fs})
    for s in series:
        if s["traced"]:
            pts = s["points"]
            xs = [p["containers"] for p in pts]
            per = statistics.linear_regression(xs, [p["traced_kb"] for p in pts]).slope
            summary["traced_kb_per_container"] = per
            print()
            print(f"tracemalloc series (stdio={s['stdio']}): the supervisor's live Python "
                  f"allocations grow {per:.1f} kB per container (slope of "
                  + ", ".join(f"{p['traced_kb']:.0f}" for p in pts)
                  + " kB); its RSS carries tracemalloc's own overhead and is left out above")
    print()
    print("Per extra container, kB.  Pss and Private depend on which other processes map the "
          "same file pages\n(the fork server, other Pythons on the host come and go); VmRSS "
          "and RssAnon do not: they are the figures to trust.")
    rows = []
    for i, s in enumerate(summary["series"], 1):
        sl = s["slope_kb"]
        rows.append([f"supervise, series {i} ({s['stdio']}): supervisor growth (slope)",
                     f"{sl['VmRSS']:.1f}", f"{sl['Pss']:.1f}",
                     f"measured (RssAnon {sl['RssAnon']:.1f}, Private {sl['Private']:.1f})"])
    if lxc and lxc["monitors"]:
        rss = [m["VmRSS"] for m in lxc["monitors"]]
        pss = [m["Pss"] for m in lxc["monitors"]]
        rows.append([f"lxc 5.0.2: [lxc monitor] per container (median of {len(rss)})",
                     f"{statistics.median(rss):.0f}", f"{statistics.median(pss):.0f}",
                     f"measured live (min–max {min(rss)}–{max(rss)})"])
    for name, rss_kb, pss_kb in QUOTED:
        rows.append([name, str(rss_kb), str(pss_kb), "quoted, not re-measured"])
    benchlib.print_table(["what", "VmRSS", "Pss", "source"], rows,
                         [False, True, True, False])
    fixed = measured[0]["points"][0] if measured else None
    if fixed:
        print(f"fixed costs (not per container): supervisor at 0 containers VmRSS "
              f"{fixed['supervisor']['VmRSS']} kB (Pss {fixed['supervisor']['Pss']}), fork "
              f"server VmRSS {fixed['fork_server']['VmRSS']} kB (Pss "
              f"{fixed['fork_server']['Pss']})")
    worst = max((s["slope_kb"]["VmRSS"] for s in summary["series"]), default=float("nan"))
    helpers_ok = all(len(s["checks"].get("non_container_descendants", [None])) == 1
                     for s in measured)
    print(f"TARGET ≤ 150 kB per extra container: {'MET' if worst <= 150 else 'NOT MET'} "
          f"(worst series VmRSS slope {worst:.0f} kB); per-container helper processes: "
          f"{'none (only the fork server)' if helpers_ok else 'FOUND, see above'}")
    print("leftovers after cleanup: " + ("none" if not leftovers else "; ".join(leftovers)))
    summary.update({"target_met": worst <= 150, "no_helpers": helpers_ok})
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2, help="series per stdio mode (default 2)")
    ap.add_argument("--containers", type=int, default=50)
    ap.add_argument("--stdio", choices=("null", "pipe", "both"), default="both")
    ap.add_argument("--settle", type=float, default=0.5, help="seconds before each reading")
    ap.add_argument("--peer-k", type=int, default=5,
                    help="lxc containers for the live monitor measurement (0: skip)")
    ap.add_argument("--no-traced", action="store_true",
                    help="skip the extra tracemalloc series (Python allocations per container)")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        rootfs, project, stdio, n, settle = args.worker
        return worker_main(rootfs, project, stdio, int(n), float(settle))
    benchlib.require_root()
    if args.containers < 1 or args.runs < 1:
        ap.error("--containers and --runs must be at least 1")

    benchlib.interruptible()
    workdir = benchlib.make_workdir("supervise-bench-rss-")
    project = f"sbenchmem{os.getpid()}"
    snapshot = benchlib.HostSnapshot(workdir, [f"supervise-{project}-", LXC_PREFIX])
    info = benchlib.machine_info()
    info["git"] = benchlib.git_state()
    modes = ["null", "pipe"] if args.stdio == "both" else [args.stdio]
    plan = [m for _ in range(args.runs) for m in modes]
    if not args.no_traced:
        plan.append(modes[0] + "+traced")
    series: list[dict[str, Any]] = []
    lxc: dict[str, Any] | None = None
    interrupted = False
    try:
        rootfs = workdir / "rootfs"
        benchlib.build_busybox_rootfs(rootfs)
        if args.peer_k > 0:
            if subprocess.run(["which", "lxc-start"], capture_output=True).returncode == 0:
                benchlib.progress(f"lxc: {args.peer_k} sleeping containers, measuring their "
                                  "monitors ...", final=True)
                lxc = lxc_monitors(workdir, rootfs, args.peer_k, 2.0)
            else:
                benchlib.progress("lxc not installed: its monitor is quoted only", final=True)
        for mode in plan:
            benchlib.progress(f"series {len(series) + 1}/{len(plan)}: {args.containers} "
                              f"containers, stdio={mode}", final=True)
            series.append(run_series(workdir, rootfs, project, mode, args))
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: cleaning up", file=sys.stderr)
    finally:
        benchlib.uninterruptible()
        failed = snapshot.cleanup_peer_dirs()
        benchlib.remove_workdir(workdir)
        leftovers = snapshot.leftovers(os.getpid()) + [f"could not remove {f}" for f in failed]
    if interrupted:
        print("leftovers: " + ("none" if not leftovers else "; ".join(leftovers)))
        return 130
    info["loadavg_end"] = os.getloadavg()
    summary = report(args, series, lxc, info, leftovers)
    path = benchlib.write_results("rss", {
        "benchmark": "rss", "args": vars(args), "machine": info, "series": series,
        "lxc_live": lxc, "quoted": [{"what": n, "VmRSS_kb": r, "Pss_kb": p}
                                    for n, r, p in QUOTED],
        "summary": summary, "leftovers": leftovers})
    print(f"results: {path.relative_to(benchlib.REPO_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
