#!/usr/bin/env python3
"""Images: a warm-cache build of a 5-layer image and a container start from it, side by side
with `podman build` and `podman run` of the same Containerfile in the same run.

    python3 bench/image_build.py [--runs 10] [--warmup 1]

The Containerfile (no network needed: FROM scratch, the tests' busybox tree COPY'd in):

    FROM scratch
    COPY rootfs/ /                         layer 1
    RUN echo a > /a                        layer 2
    COPY app.txt /app/                     layer 3
    RUN mkdir /data && echo b > /data/b    layer 4
    COPY conf/ /etc/app/                   layer 5
    ENV X=1
    CMD ["/bin/true"]

Each tool builds it once cold (reported, not the headline), then, in rounds that run every
measurement once in a shuffled order (the shared machine's noise falls on all alike):

- build: `supervise build -t bench:1 DIR` / `podman build -t bench:1 DIR`, every step from the
  cache (checked in the output: 7 "Using cache" steps for both);
- start: `supervise run --rm --network none bench:1` / `podman run --rm --network none
  bench:1` (its CMD, /bin/true), the whole command's wall time, start to exit, a fresh
  container each time; and, for reference, `supervise run --rm --network none ROOTFS
  /bin/true` on a folder, which shows what the image itself adds.

Both are CLI commands timed around the process (posix_spawn + wait): Python start-up and
imports count for us as Go's start-up counts for podman.  podman has a private
--root/--runroot/--tmpdir under the temp dir, `--runtime runc` and the ulimit workarounds of
shared/peers/README.md (crun refuses this hybrid-cgroup host; no CAP_SYS_RESOURCE), and
`--network none`; ours a private SUPERVISE_STATE_DIR (so its own image store), and Python's
bytecode cache allowed (PYTHONDONTWRITEBYTECODE dropped from its environment), as installed.

Output: a table of min / median / p90 / max and the ratio podman / ours, and
bench/results/image_build-*.json.  Everything lives in one temp dir, removed afterwards with
what podman writes elsewhere (if this run made it); leftovers are checked.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import benchlib

CONTAINERFILE = """\
FROM scratch
COPY rootfs/ /
RUN echo a > /a
COPY app.txt /app/
RUN mkdir /data && echo b > /data/b
COPY conf/ /etc/app/
ENV X=1
CMD ["/bin/true"]
"""
CACHED_STEPS = 7  # every step after FROM


def make_context(ctx: Path) -> None:
    benchlib.build_busybox_rootfs(ctx / "rootfs")
    (ctx / "app.txt").write_text("v1\n")
    (ctx / "conf").mkdir()
    (ctx / "conf/app.conf").write_text("x=1\n")
    (ctx / "Containerfile").write_text(CONTAINERFILE)


def podman_base(workdir: Path) -> list[str]:
    state = workdir / "podman"
    return ["podman", "--root", str(state / "root"), "--runroot", str(state / "run"),
            "--tmpdir", str(state / "tmp"), "--events-backend", "file"]


def podman_limits() -> list[str]:
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return ["--runtime", "runc", "--network", "none", "--ulimit", f"nofile={nofile}:{nofile}",
            "--ulimit", "nproc=32768:32768"]


def timed(argv: list[str], env: dict[str, str] | None = None,
          cwd: Path | None = None) -> tuple[float, str]:
    """Wall milliseconds of one command, and its output; a failure stops the benchmark."""
    t0 = time.perf_counter_ns()
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=600,
                       stdin=subprocess.DEVNULL)
    elapsed = benchlib.ms(time.perf_counter_ns() - t0)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}...: exit {r.returncode}: "
                           + " ".join((r.stderr or r.stdout).split())[:300])
    return elapsed, r.stdout + r.stderr


def check_cached(name: str, output: str) -> None:
    n = output.count("Using cache")
    if n != CACHED_STEPS:
        raise RuntimeError(f"{name}: {n} cached steps, expected {CACHED_STEPS}: not warm")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="measured rounds")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first")
    args = ap.parse_args()
    benchlib.require_root()
    benchlib.interruptible()
    if shutil.which("podman") is None:
        sys.exit("podman is not installed (apt-get install podman)")
    project = f"sbench-img-{os.getpid()}"
    podman_tag = f"sbench-img-podman-{os.getpid()}"
    workdir = benchlib.make_workdir("supervise-bench-image-")
    snapshot = benchlib.HostSnapshot(workdir, [project, podman_tag])
    info = benchlib.machine_info()
    sv = benchlib.Supervise(workdir, project)
    # As installed: Python may cache bytecode (a shell that sets PYTHONDONTWRITEBYTECODE would
    # have every run recompile each module changed since its last .pyc).
    sv.env.pop("PYTHONDONTWRITEBYTECODE", None)
    info["git"] = sv.describe_code()
    versions = {"podman": benchlib.tool_version(["podman", "--version"]),
                "runc": benchlib.tool_version(["runc", "--version"]),
                "busybox": benchlib.tool_version([benchlib.BUSYBOX])}
    pm = podman_base(workdir)
    ctx = workdir / "ctx"
    series: dict[str, list[float]] = {}
    cold: dict[str, float] = {}
    error = ""
    interrupted = False
    try:
        make_context(ctx)
        benchlib.progress("cold builds ...")
        cold["ours"], _ = timed(sv.argv("build", "-t", "bench:1", str(ctx)), sv.env, workdir)
        cold["podman"], _ = timed([*pm, "build", *podman_limits(), "-t", "bench:1",
                                   str(ctx)])
        counter = iter(range(1_000_000))

        def podman_run() -> tuple[float, str]:
            return timed([*pm, "run", "--rm", "--name", f"{podman_tag}-{next(counter)}",
                          *podman_limits(), "--log-driver", "none", "bench:1"])

        def ours_build() -> tuple[float, str]:
            t, out = timed(sv.argv("build", "-t", "bench:1", str(ctx)), sv.env, workdir)
            check_cached("supervise build", out)
            return t, out

        def podman_build() -> tuple[float, str]:
            t, out = timed([*pm, "build", *podman_limits(), "-t", "bench:1", str(ctx)])
            check_cached("podman build", out)
            return t, out

        measures = {
            "build: supervise": ours_build,
            "build: podman": podman_build,
            "start: supervise run --rm IMAGE": lambda: timed(
                sv.argv("run", "--rm", "--network", "none", "bench:1"), sv.env, workdir),
            "start: podman run --rm IMAGE": podman_run,
            "start: supervise run --rm ROOTFS (reference)": lambda: timed(
                sv.argv("run", "--rm", "--network", "none", str(ctx / "rootfs"), "/bin/true"),
                sv.env, workdir),
        }
        meter = benchlib.CpuMeter()
        for n in range(args.warmup + args.runs):
            order = list(measures)
            random.shuffle(order)
            for name in order:
                t, _ = measures[name]()
                if n >= args.warmup:
                    series.setdefault(name, []).append(t)
            benchlib.progress(f"round {n + 1}/{args.warmup + args.runs}")
        run = meter.stop()
        info["machine_busy_pct_over_run"] = round(run["other_busy_pct"], 1)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: cleaning up", file=sys.stderr)
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        error = f"{type(e).__name__}: {e}"
        print(f"\nerror: {error}: cleaning up", file=sys.stderr)
    finally:
        benchlib.uninterruptible()
        if (workdir / "podman").exists():
            for argv in ([*pm, "rm", "-a", "-f", "-t", "0"], [*pm, "rmi", "-a", "-f"],
                         [*pm, "unmount", "-a"]):
                subprocess.run(argv, capture_output=True, timeout=120,
                               stdin=subprocess.DEVNULL, check=False)
        failed = snapshot.cleanup_peer_dirs()
        benchlib.remove_workdir(workdir)
        leftovers = snapshot.leftovers(os.getpid()) + [f"could not remove {f}" for f in failed]
        leftovers += benchlib.processes_mentioning([project, podman_tag, str(workdir)])
    if interrupted or error:
        print("leftovers: " + ("none" if not leftovers else "; ".join(leftovers)))
        return 130 if interrupted else 1
    benchlib.progress("done", final=True)
    info["loadavg_end"] = os.getloadavg()
    return report(args, series, cold, info, versions, leftovers)


def report(args: argparse.Namespace, series: dict[str, list[float]], cold: dict[str, float],
           info: dict[str, object], versions: dict[str, str], leftovers: list[str]) -> int:
    summaries = {k: benchlib.summary(v) for k, v in series.items()}
    pairs = {"build: podman": "build: supervise",
             "start: podman run --rm IMAGE": "start: supervise run --rm IMAGE"}
    rows = []
    for name, s in summaries.items():
        ratio = ""
        if name in pairs:
            ratio = f"{s['median'] / summaries[pairs[name]]['median']:.2f}x"
        rows.append([name, f"{s['min']:.0f}", f"{s['median']:.0f}", f"{s['p90']:.0f}",
                     f"{s['max']:.0f}", ratio])
    print(f"\nwarm-cache build and start of a 5-layer image, {args.runs} rounds (ms)")
    benchlib.print_table(["what", "min", "median", "p90", "max", "podman/ours"], rows)
    print(f"cold build (once): supervise {cold['ours']:.0f} ms, podman {cold['podman']:.0f} ms")
    print(f"machine: {info['cpus']} CPUs, other work {info.get('machine_busy_pct_over_run')}% "
          f"busy; podman {versions['podman']}")
    print("leftovers: " + ("none" if not leftovers else "; ".join(leftovers)))
    path = benchlib.write_results("image_build", {
        "benchmark": "image_build", "args": vars(args), "machine": info,
        "versions": versions, "containerfile": CONTAINERFILE, "cold_build_ms": cold,
        "leftovers": leftovers,
        "series": {k: {"summary": summaries[k], "ms": [round(t, 2) for t in v]}
                   for k, v in series.items()},
    })
    print(f"results: {path.relative_to(benchlib.REPO_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
