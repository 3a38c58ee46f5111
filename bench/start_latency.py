#!/usr/bin/env python3
"""Start latency: the runtime's `Container.start` call to `Container.wait` returning, for
`/bin/true` in a fresh busybox-rootfs container, side by side with peers in the same run.

    python3 bench/start_latency.py [--runs 50] [--warmup 5] [--peer-timer loop|hyperfine]

Ours: a worker process (trio, one `Runtime` — the fork server — started once, as a supervisor
has it) runs create -> start -> wait -> remove per run, a fresh container each time, the normal
path: overlay rootfs, all namespaces, cgroup, /proc, /dev, /sys.  Only start -> wait is the
headline; create and remove are reported beside it, and start -> wait is split into
start (returns once the command is exec'd), exec -> reaped (`ContainerProcess.wait`), and
reaped -> `Container.wait` returned (OOM check, cgroup kill + rmdir in a worker thread).

Peers: each command's whole wall time (fork + exec + wait), /bin/true in the same rootfs:
`unshare -fmpuin --mount-proc true` (the kernel floor), lxc-execute, crun (in a private mount
namespace without the hybrid cgroup2 mount: the workaround of shared/peers/README.md), runc.
podman/docker rows only if usable here (they are skipped with a note otherwise).

Timing (`--peer-timer loop`, the default): rounds, each running every tool once in a shuffled
order, so that the shared machine's noise falls on all of them alike; peers are timed here with
posix_spawn + waitpid around them, ours inside the worker with perf_counter_ns.
`--peer-timer hyperfine`: ours first, then one `hyperfine -N` over the peers (not interleaved).

Output: a table (min, median, p90, max, ratio to ours) and bench/results/start_latency-*.json.
Everything lives in a temp dir that is removed afterwards; what the peers write elsewhere
(/run/lxc, /run/crun, lxc.pivot cgroups) is removed if this run made it, and leftovers checked.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib
from benchlib import ms

LXC_NAME = "sbench-lxc"
RUNC_ID = "sbench-runc"
CRUN_ID = "sbench-crun"


# ============================================================================ ours (worker)

def worker_main(rootfs: str, project: str) -> int:
    """The supervising process: one Runtime, requests as JSON lines on stdin."""
    # The orchestrator decides when to stop (it closes our stdin); a Ctrl-C meant for it must
    # not interrupt a run half-way and leave a container behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import trio

    trio.run(_worker, rootfs, project)
    return 0


def _send(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _worker(rootfs: str, project: str) -> None:
    import trio

    from supervisor import config
    from supervisor.container import Container
    from supervisor.paths import ProjectPaths
    from supervisor.runtime import Runtime

    paths = ProjectPaths.for_project(project)
    null = os.open(os.devnull, os.O_RDWR)
    stream = trio.lowlevel.FdStream(os.dup(0))
    buf = b""
    with Runtime() as runtime:
        # ForkServer keeps its Popen private; the pid is only reported, never signalled.
        _send({"ready": True, "fork_server_pid": runtime.fork_server._proc.pid})
        while True:
            while b"\n" not in buf:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            req = json.loads(line)
            if req["op"] == "quit":
                return
            name = f"lat{req['i']}"
            cfg = config.container_from_mapping(
                name, {"rootfs": rootfs, "command": ["/bin/true"]}, where="bench")
            container: Container | None = None
            try:
                t0 = time.perf_counter_ns()
                container = Container.create(runtime, paths, cfg)
                t1 = time.perf_counter_ns()
                proc = await container.start(null, null, null)
                t2 = time.perf_counter_ns()
                await proc.wait()
                t3 = time.perf_counter_ns()
                info = await container.wait()
                t4 = time.perf_counter_ns()
                container.remove()
                t5 = time.perf_counter_ns()
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
                if container is not None:  # nothing of a failed run may stay behind
                    try:
                        container.kill(9)
                        if container.process is not None:
                            await container.wait()
                        container.remove()
                    except Exception as e2:
                        error += f"; cleanup: {type(e2).__name__}: {e2}"
                _send({"error": error})
                continue
            if info.exit_code != 0:
                _send({"error": f"exit code {info.exit_code}"})
                continue
            _send({"create": t1 - t0, "start_to_wait": t4 - t1, "start": t2 - t1,
                   "exec_to_reaped": t3 - t2, "reaped_to_wait": t4 - t3, "remove": t5 - t4})


class OursWorker:
    def __init__(self, workdir: Path, rootfs: Path, project: str) -> None:
        env = dict(os.environ, SUPERVISE_STATE_DIR=str(workdir / "state"),
                   SUPERVISE_RUN_DIR=str(workdir / "run"))
        env.pop("SUPERVISE_PROJECT", None)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(rootfs), project],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, bufsize=1)
        hello = self._recv()
        self.fork_server_pid = int(hello["fork_server_pid"])
        self.count = 0

    def _recv(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the supervise worker died (status {self.proc.wait()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def run_once(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": "run", "i": self.count}) + "\n")
        self.proc.stdin.flush()
        self.count += 1
        return self._recv()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ============================================================================ peers

@dataclass
class Tool:
    name: str
    kind: str  # ours | floor | peer | info
    argv: list[str] = field(default_factory=list)
    note: str = ""
    skipped: str = ""
    times: list[float] = field(default_factory=list)  # ms
    failures: list[str] = field(default_factory=list)
    short: str = ""  # for the progress line

    def __post_init__(self) -> None:
        self.short = self.short or self.name.split()[0]


def _oci_bundle(bundle: Path, rootfs: Path) -> None:
    """`runc spec`, patched as shared/peers/00-build-rootfs.sh does: no terminal, /bin/true,
    read-only root; runc's default namespaces pid, network, ipc, uts, mount."""
    bundle.mkdir(parents=True, exist_ok=True)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True, capture_output=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/true"]
    spec["process"]["env"] = ["PATH=/bin", "TERM=dumb"]
    spec["root"] = {"path": str(rootfs), "readonly": True}
    spec["hostname"] = "sbench"
    (bundle / "config.json").write_text(json.dumps(spec, indent=1))


def _lxc_config(lxcpath: Path, name: str, rootfs: Path) -> None:
    """The lxc config of shared/peers/01-start-latency.sh."""
    (lxcpath / name).mkdir(parents=True, exist_ok=True)
    (lxcpath / name / "config").write_text(
        f"lxc.uts.name = {name}\nlxc.rootfs.path = dir:{rootfs}\nlxc.net.0.type = empty\n"
        "lxc.mount.auto = proc:mixed sys:ro\nlxc.autodev = 1\n"
        "lxc.apparmor.profile = unconfined\nlxc.log.level = ERROR\n")


def _crun_wrapped(cmd: str) -> list[str]:
    """crun 1.8.1 refuses a hybrid host whose cgroup2 mount holds a controller: run it in a
    private mount namespace with that mount gone (shared/peers/README.md)."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f"umount {benchlib.CGROUP2_HYBRID} 2>/dev/null; exec {cmd}"]


def _quiet(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def setup_peers(workdir: Path, rootfs: Path) -> list[Tool]:
    state = workdir / "peers"
    tools = [
        Tool("unshare -fmpuin --mount-proc true", "floor",
             ["unshare", "-fmpuin", "--mount-proc", "true"], "kernel floor, host's true"),
        Tool("unshare ... --root ROOTFS /bin/true", "floor",
             ["unshare", "-fmpuin", "--mount-proc", "--root", str(rootfs), "/bin/true"],
             "floor in the busybox rootfs (chroot, no overlay)", short="unshare-root"),
    ]
    if shutil.which("lxc-execute"):
        _lxc_config(state / "lxc", LXC_NAME, rootfs)
        tools.append(Tool("lxc-execute", "peer",
                          ["lxc-execute", "-P", str(state / "lxc"), "-n", LXC_NAME, "--",
                           "/bin/true"]))
    else:
        tools.append(Tool("lxc-execute", "peer", skipped="not installed"))
    bundle = state / "bundle"
    if shutil.which("runc"):
        _oci_bundle(bundle, rootfs)
    for rt, cid in (("crun", CRUN_ID), ("runc", RUNC_ID)):
        if not shutil.which(rt) or not (bundle / "config.json").exists():
            tools.append(Tool(f"{rt} run", "peer",
                              skipped="not installed" + (" (the bundle needs runc spec)"
                                                         if rt == "crun" else "")))
            continue
        direct = [rt, "--root", str(state / rt), "run", "-b", str(bundle), cid]
        if rt == "crun" and _quiet(direct).returncode != 0:
            tools.append(Tool("crun run (wrapped)", "peer",
                              _crun_wrapped(shlex.join(direct)),
                              "in unshare -m without the cgroup2 mount (peers/README)"))
            tools.append(Tool("crun wrapper alone (unshare -m + umount + true)", "info",
                              _crun_wrapped("true"), "cost of the workaround itself",
                              short="wrapper"))
        else:
            tools.append(Tool(f"{rt} run", "peer", direct))
    if shutil.which("podman"):
        tools.append(Tool("podman run --rm", "peer", skipped="installed, but no row written "
                          "for it yet (needs the private store of shared/peers)"))
    else:
        tools.append(Tool("podman run --rm", "peer", skipped="podman is not installed "
                          "(not installed on purpose; peers/README: ≈140 ms)"))
    docker_ok = shutil.which("docker") is not None and _quiet(
        ["docker", "version", "--format", "{{.Server.Version}}"]).returncode == 0
    tools.append(Tool("docker run --rm", "peer", skipped=(
        "a docker daemon answers, but this script does not use a shared daemon"
        if docker_ok else "no docker daemon here (client only); peers/README: ≈225 ms")))
    # One sanity run each: exit status 0, or the row is skipped with the reason.
    for t in tools:
        if t.skipped or not t.argv:
            continue
        r = _quiet(t.argv)
        if r.returncode != 0:
            t.skipped = f"exit {r.returncode}: " + " ".join(r.stderr.split())[:200]
    return tools


def cleanup_peers(workdir: Path) -> None:
    """Containers a Ctrl-C may have left (runc/crun state, a running lxc container)."""
    state = workdir / "peers"
    for rt, cid in (("runc", RUNC_ID), ("crun", CRUN_ID)):
        root = state / rt
        if not root.is_dir() or not shutil.which(rt):
            continue
        for args in (["kill", cid, "KILL"], ["delete", "-f", cid]):
            argv = [rt, "--root", str(root), *args]
            if rt == "crun":
                argv = _crun_wrapped(shlex.join(argv))
            try:
                _quiet(argv)
            except (OSError, subprocess.TimeoutExpired):
                pass
    if (state / "lxc" / LXC_NAME).is_dir() and shutil.which("lxc-stop"):
        try:
            _quiet(["lxc-stop", "-P", str(state / "lxc"), "-n", LXC_NAME, "-k"])
        except (OSError, subprocess.TimeoutExpired):
            pass


_NULL_FD = -1


def time_command(argv: list[str]) -> tuple[float, int]:
    """Wall time (ms) of fork+exec+wait of argv, stdio on /dev/null; and its exit code."""
    global _NULL_FD
    if _NULL_FD < 0:
        _NULL_FD = os.open(os.devnull, os.O_RDWR)
    actions = [(os.POSIX_SPAWN_DUP2, _NULL_FD, fd) for fd in (0, 1, 2)]
    t0 = time.perf_counter_ns()
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
    try:
        _, status = os.waitpid(pid, 0)
    except BaseException:  # Ctrl-C: the command ends within milliseconds; reap it
        os.waitpid(pid, 0)
        raise
    t1 = time.perf_counter_ns()
    return ms(t1 - t0), os.waitstatus_to_exitcode(status)


def hyperfine_peers(peers: list[Tool], runs: int, warmup: int, workdir: Path) -> None:
    out = workdir / "hyperfine.json"
    argv = ["hyperfine", "-N", "--style", "basic", "--warmup", str(warmup), "--runs",
            str(runs), "--export-json", str(out)]
    for t in peers:
        argv += ["-n", t.name, shlex.join(t.argv)]
    benchlib.progress(f"hyperfine over {len(peers)} peer commands, {runs} runs each ...")
    subprocess.run(argv, check=False, stdout=subprocess.DEVNULL)
    results = json.loads(out.read_text())["results"]
    for t, r in zip(peers, results, strict=True):
        t.times = [x * 1e3 for x in r["times"]]
        bad = [c for c in (r.get("exit_codes") or []) if c != 0]
        t.failures += [f"exit {c}" for c in bad]


# ============================================================================ orchestration

def measure(args: argparse.Namespace, workdir: Path, rootfs: Path, tools: list[Tool],
            ours: Tool, worker: OursWorker, parts: dict[str, list[float]]) -> None:
    peers = [t for t in tools if not t.skipped and t.argv]

    def run_ours(record: bool) -> None:
        r = worker.run_once()
        if "error" in r:
            ours.failures.append(r["error"])
            return
        if record:
            ours.times.append(ms(r["start_to_wait"]))
            for k in parts:
                parts[k].append(ms(r[k]))

    def run_peer(t: Tool, record: bool) -> None:
        elapsed, code = time_command(t.argv)
        if code != 0:
            t.failures.append(f"exit {code}")
        elif record:
            t.times.append(elapsed)

    benchlib.progress(f"warm-up: {args.warmup} runs of each of {len(peers) + 1} tools")
    for _ in range(args.warmup):
        run_ours(False)
        if args.peer_timer == "loop":
            for t in peers:
                run_peer(t, False)
    if args.peer_timer == "loop":
        rng = random.Random(args.seed)
        order: list[Tool | None] = [None, *peers]  # None = ours
        for i in range(args.runs):
            rng.shuffle(order)
            for entry in order:
                if entry is None:
                    run_ours(True)
                else:
                    run_peer(entry, True)
            last = "  ".join(f"{t.short} {t.times[-1]:.1f}"
                             for t in [ours, *peers] if t.times)
            benchlib.progress(f"round {i + 1}/{args.runs} (ms): {last}",
                              final=i + 1 == args.runs)
    else:
        for i in range(args.runs):
            run_ours(True)
            if ours.times:
                benchlib.progress(f"supervise run {i + 1}/{args.runs}: {ours.times[-1]:.2f} ms",
                                  final=i + 1 == args.runs)
        hyperfine_peers(peers, args.runs, args.warmup, workdir)


def fmt(x: float) -> str:
    return f"{x:.2f}"


def report(args: argparse.Namespace, tools: list[Tool], ours: Tool,
           parts: dict[str, list[float]], info: dict[str, Any], versions: dict[str, str],
           leftovers: list[str]) -> None:
    base = benchlib.summary(ours.times).get("median") or float("nan")
    print()
    print(f"Start-to-exit latency of /bin/true in a fresh busybox container, ms "
          f"({args.runs} runs after {args.warmup} warm-up, peer timer: {args.peer_timer})")
    print(f"{info['date']}  kernel {info['kernel']}  {info['cpus']} CPUs  {info['cgroups']}  "
          f"git {info['git']}")
    cpu = info.get("cpu", {})
    print(f"machine meanwhile: {cpu.get('other_busy_pct', '?')}% of all CPUs busy with other "
          f"work (ours {cpu.get('ours_pct', '?')}%, steal {cpu.get('steal_pct', '?')}%) over "
          f"{cpu.get('wall_s', '?')} s — the host is shared; p90/max show the noise")
    rows = []
    for t in [ours, *tools]:
        if t.skipped:
            rows.append([t.name, "-", "-", "-", "-", "-", "-", f"skipped: {t.skipped}"])
            continue
        s = benchlib.summary(t.times)
        note = t.note + (f"; {len(t.failures)} failed: {t.failures[0]}" if t.failures else "")
        if not s["n"]:
            rows.append([t.name, "0", "-", "-", "-", "-", "-", note])
            continue
        rows.append([t.name, str(s["n"]), fmt(s["min"]), fmt(s["median"]), fmt(s["p90"]),
                     fmt(s["max"]), f"{s['median'] / base:.2f}x", note])
    benchlib.print_table(["tool", "n", "min", "median", "p90", "max", "ratio", "note"], rows,
                         [False, True, True, True, True, True, True, False])
    print()
    print("Ours, the parts (ms): create and remove are outside the timed start->wait")
    rows = []
    labels = {"create": "Container.create (record, upper/work dirs, etc files)",
              "start": "start -> returned (cgroup, fork server clone, rootfs, exec'd)",
              "exec_to_reaped": "exec'd -> PID 1 reaped (ContainerProcess.wait)",
              "reaped_to_wait": "reaped -> Container.wait returned (cgroup kill+rmdir, thread)",
              "remove": "Container.remove (rm -r of the container dir)"}
    for k, label in labels.items():
        s = benchlib.summary(parts[k])
        rows.append([label, fmt(s["min"]), fmt(s["median"]), fmt(s["p90"]), fmt(s["max"])])
    benchlib.print_table(["part", "min", "median", "p90", "max"], rows)
    print()
    peers = [t for t in tools if t.kind == "peer" and not t.skipped and t.times]
    if peers and ours.times:
        fastest = min(peers, key=lambda t: benchlib.summary(t.times)["median"])
        fmed = benchlib.summary(fastest.times)["median"]
        ok = base < fmed
        print(f"TARGET faster than every peer in this run: {'MET' if ok else 'NOT MET'} "
              f"(ours {base:.2f} ms vs fastest peer {fastest.name} {fmed:.2f} ms, "
              f"{fmed / base:.2f}x)")
        crun = next((t for t in tools if t.name.startswith("crun run (wrapped)") and t.times),
                    None)
        wrap = next((t for t in tools if t.name.startswith("crun wrapper") and t.times), None)
        if crun and wrap:
            est = (benchlib.summary(crun.times)["median"]
                   - benchlib.summary(wrap.times)["median"])
            print(f"  crun without its workaround ≈ {est:.2f} ms (wrapped median − wrapper "
                  f"median): ours is {'faster' if base < est else 'NOT faster'} than that too")
    print("versions: " + "; ".join(f"{k} {v}" for k, v in versions.items()))
    print("leftovers after cleanup: " + ("none" if not leftovers else "; ".join(leftovers)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=50, help="timed runs per tool (default 50)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed runs per tool first")
    ap.add_argument("--peer-timer", choices=("loop", "hyperfine"), default="loop")
    ap.add_argument("--seed", type=int, default=1, help="shuffle seed of the round order")
    ap.add_argument("--worker", nargs=2, metavar=("ROOTFS", "PROJECT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(*args.worker)
    benchlib.require_root()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if args.peer_timer == "hyperfine" and not shutil.which("hyperfine"):
        ap.error("hyperfine is not installed (apt-get install hyperfine)")

    benchlib.interruptible()
    workdir = benchlib.make_workdir("supervise-bench-start-")
    project = f"sbench{os.getpid()}"
    snapshot = benchlib.HostSnapshot(workdir, [f"supervise-{project}-", "sbench-"])
    info = benchlib.machine_info()
    versions = {name: benchlib.tool_version(argv) for name, argv in {
        "runc": ["runc", "--version"], "crun": ["crun", "--version"],
        "lxc": ["lxc-execute", "--version"], "unshare": ["unshare", "--version"],
        "hyperfine": ["hyperfine", "--version"]}.items()}
    worker: OursWorker | None = None
    meter: benchlib.CpuMeter | None = None
    ours = Tool("supervise Container.start→wait", "ours", short="supervise")
    tools: list[Tool] = []
    parts: dict[str, list[float]] = {k: [] for k in (
        "create", "start", "exec_to_reaped", "reaped_to_wait", "remove")}
    interrupted = False
    try:
        rootfs = workdir / "rootfs"
        benchlib.build_busybox_rootfs(rootfs)
        benchlib.progress("setting up peers (one sanity run each) ...")
        tools = setup_peers(workdir, rootfs)
        benchlib.progress("starting the supervise worker (Runtime + fork server) ...")
        meter = benchlib.CpuMeter()  # before the worker: its CPU is counted when reaped
        worker = OursWorker(workdir, rootfs, project)
        measure(args, workdir, rootfs, tools, ours, worker, parts)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: cleaning up", file=sys.stderr)
    finally:
        benchlib.uninterruptible()
        if worker is not None:
            worker.close()
        if meter is not None:
            info["cpu"] = meter.stop()
        cleanup_peers(workdir)
        failed = snapshot.cleanup_peer_dirs()
        benchlib.remove_workdir(workdir)
        leftovers = snapshot.leftovers(os.getpid()) + [f"could not remove {f}" for f in failed]
    if interrupted:
        print("leftovers: " + ("none" if not leftovers else "; ".join(leftovers)))
        return 130
    info["loadavg_end"] = os.getloadavg()
    report(args, tools, ours, parts, info, versions, leftovers)
    path = benchlib.write_results("start_latency", {
        "benchmark": "start_latency", "args": vars(args), "machine": info,
        "versions": versions, "leftovers": leftovers,
        "ours_parts_ms": {k: {"summary": benchlib.summary(v), "times": v}
                          for k, v in parts.items()},
        "tools": [{"name": t.name, "kind": t.kind, "argv": t.argv, "note": t.note,
                   "skipped": t.skipped, "failures": t.failures,
                   "summary": benchlib.summary(t.times), "times_ms": t.times}
                  for t in [ours, *tools]],
    })
    print(f"results: {path.relative_to(benchlib.REPO_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
