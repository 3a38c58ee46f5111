#!/usr/bin/env python3
"""The shell's own CPU: `supervise shell` (full screen, in a real terminal: tmux) over a
stack of busy containers.

    python3 bench/shell_cpu.py [--containers 20] [--seconds 30] [--settle 5]
                               [--rate 5] [--columns 120] [--rows 40]

A detached supervisor runs --containers busybox containers, each burning some CPU and
printing about --rate lines a second (so the table's CPU, memory and sparklines move, and the
log pane follows the whole stack).  The shell runs in a tmux server of our own (-L socket),
drawing a --columns x --rows screen.  After --settle seconds, its CPU is read over --seconds:
utime + stime of /proc/PID/stat (all its threads) as % of one core.  Also: the bytes it wrote
to its terminal (/proc/PID/io wchar) per second, its context switches per second, the log
lines the stack printed per second, and the supervisor's own CPU over the same window.

Target: the shell below 5 % of a core with 20 containers updating.

Output: a table on stdout, progress on stderr, bench/results/shell_cpu-*.json.  The tmux
server is killed by its socket, the stack taken down with `down -v`, the temp dir removed,
leftovers checked.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import benchlib

# `$$` is a `$` in a stack file (Compose's interpolation)
COMMAND = ('while true; do n=0; while [ $$n -lt 300 ]; do n=$$((n+1)); done; '
           'echo "tick $$(date +%s) $$RANDOM work done"; sleep {sleep}; done')


def stack_text(project: str, rootfs: Path, n: int, rate: float) -> str:
    command = COMMAND.format(sleep=f"{1 / rate:.3f}")
    out = [f'[stack]\nname = "{project}"\n']
    for i in range(1, n + 1):
        out.append(f'[containers.busy{i:02d}]\nrootfs = "{rootfs}"\n'
                   f'command = ["sh", "-c", {json.dumps(command)}]\n'
                   'stop_grace_period = "1s"\n')
    return "\n".join(out)


class Tmux:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def __call__(self, *args: str) -> str:
        r = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                           text=True, timeout=10)
        if r.returncode != 0:
            raise RuntimeError(f"tmux {args[0]}: {r.stderr.strip()}")
        return r.stdout

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=10)


def io_written(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def switches(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith(
                    ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))
        except OSError:
            continue
    return total


def log_lines(sv: benchlib.Supervise, since: float, until: float) -> int:
    r = sv.cli("logs", "--since", f"{since:.3f}", "--until", f"{until:.3f}", "--no-log-prefix",
               timeout=120)
    return len(r.stdout.splitlines())


def measure(args: argparse.Namespace, workdir: Path, rootfs: Path, project: str,
            tmux: Tmux) -> dict[str, Any]:
    sv = benchlib.Supervise(workdir, project)
    stack = workdir / "stack.toml"
    stack.write_text(stack_text(project, rootfs, args.containers, args.rate))
    try:
        benchlib.progress(f"up -d with {args.containers} busy containers ...")
        sv.up(stack)
        supervisor = sv.pid()
        assert supervisor is not None
        env = [f"{k}={v}" for k, v in sv.env.items() if k.startswith(("SUPERVISE_", "PYTHON"))]
        tmux("new-session", "-d", "-s", "shell", "-x", str(args.columns), "-y",
             str(args.rows), "-c", str(workdir), "--", "env", *env, "TERM=xterm-256color",
             *sv.argv("shell"))
        shell = int(tmux("display-message", "-p", "-t", "shell", "#{pane_pid}").strip())
        benchlib.progress(f"shell pid {shell}; settling {args.settle:.0f} s ...")
        time.sleep(args.settle)
        screen = tmux("capture-pane", "-p", "-t", "shell")
        if f"{args.containers}/{args.containers} running" not in screen:
            raise RuntimeError("the shell does not show the stack:\n" + screen)
        t0, wall0 = time.monotonic(), time.time()
        c0, s0 = benchlib.cpu_seconds(shell), benchlib.cpu_seconds(supervisor)
        w0, x0 = io_written(shell), switches(shell)
        while (elapsed := time.monotonic() - t0) < args.seconds:
            time.sleep(min(1.0, args.seconds - elapsed))
            used = benchlib.cpu_seconds(shell) - c0
            benchlib.progress(f"{time.monotonic() - t0:4.1f}/{args.seconds:.0f} s: shell CPU "
                              f"{100 * used / (time.monotonic() - t0):.2f} % of a core")
        wall = time.monotonic() - t0
        c1, s1 = benchlib.cpu_seconds(shell), benchlib.cpu_seconds(supervisor)
        w1, x1 = io_written(shell), switches(shell)
        wall1 = time.time()
        final_screen = tmux("capture-pane", "-p", "-t", "shell")
        lines = log_lines(sv, wall0, wall1)
        return {"seconds": round(wall, 2),
                "shell_cpu_s": round(c1 - c0, 3),
                "shell_pct_of_core": round(100 * (c1 - c0) / wall, 3),
                "shell_terminal_kb_per_s": round((w1 - w0) / 1024 / wall, 1),
                "shell_context_switches_per_s": round((x1 - x0) / wall, 1),
                "supervisor_pct_of_core": round(100 * (s1 - s0) / wall, 3),
                "stack_log_lines_per_s": round(lines / (wall1 - wall0), 1),
                "shell_rss_kb": benchlib.proc_mem(shell)["VmRSS"],
                "screen": final_screen}
    finally:
        tmux.kill()
        benchlib.progress("down -v ...")
        problems = sv.down()
        if problems:
            print("\n".join(f"note: {p}" for p in problems), file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--containers", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=5.0, help="lines a second per container")
    ap.add_argument("--columns", type=int, default=120)
    ap.add_argument("--rows", type=int, default=40)
    args = ap.parse_args()
    benchlib.require_root()
    benchlib.interruptible()
    project = f"sbench-shell-{os.getpid()}"
    workdir = benchlib.make_workdir("supervise-bench-shell-")
    snap = benchlib.HostSnapshot(workdir, [project])
    info = benchlib.machine_info()
    info["git"] = benchlib.Supervise(workdir, project).describe_code()
    tmux = Tmux(f"sbench-shell-{os.getpid()}")
    result: dict[str, Any] = {}
    error = ""
    interrupted = False
    try:
        rootfs = workdir / "rootfs"
        benchlib.build_busybox_rootfs(rootfs)
        result = measure(args, workdir, rootfs, project, tmux)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: cleaning up", file=sys.stderr)
    except (RuntimeError, OSError, AssertionError) as e:
        error = f"{type(e).__name__}: {e}"
        print(f"\nerror: {error}: cleaning up", file=sys.stderr)
    finally:
        benchlib.uninterruptible()
        tmux.kill()
        leftovers = benchlib.finish(workdir, snap, benchlib.Supervise(workdir, project),
                                    [project])
    if interrupted or error:
        print("leftovers: " + ("none" if not leftovers else "; ".join(leftovers)))
        return 130 if interrupted else 1
    benchlib.progress("done", final=True)
    r = result
    print(f"\nsupervise shell over {args.containers} busy containers, a {args.columns}x"
          f"{args.rows} tmux pane  ({info['date']}, {info['git']})")
    print(f"machine: {info['kernel']}, {info['cpus']} CPUs, load "
          f"{info['loadavg_start'][0]:.2f} -> {os.getloadavg()[0]:.2f}")  # type: ignore[index]
    benchlib.print_table(
        ["window", "shell CPU", "terminal KiB/s", "ctx sw/s", "shell RSS kB",
         "stack lines/s", "supervisor CPU"],
        [[f"{r['seconds']:.0f} s", f"{r['shell_pct_of_core']:.2f} % of a core",
          f"{r['shell_terminal_kb_per_s']:.1f}", f"{r['shell_context_switches_per_s']:.0f}",
          str(r["shell_rss_kb"]), f"{r['stack_log_lines_per_s']:.0f}",
          f"{r['supervisor_pct_of_core']:.2f} %"]])
    met = r["shell_pct_of_core"] < 5.0
    print(f"\ntarget: the shell < 5 % of a core: {'met' if met else 'NOT met'}")
    print("leftovers: " + ("none" if not leftovers else "; ".join(leftovers)))
    verdict = {"shell_pct_of_core": r["shell_pct_of_core"], "below_5pct": met}
    path = benchlib.write_results("shell_cpu", {"benchmark": "shell_cpu", "args": vars(args),
                                                "machine": info, "leftovers": leftovers,
                                                "verdict": verdict, **result})
    print(f"results: {path.relative_to(benchlib.REPO_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
