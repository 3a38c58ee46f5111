#!/usr/bin/env python3
"""Published-port throughput and network wiring time (issue 5).

    python3 bench/port_throughput.py [--size-mb 1024] [--runs 3] [--wirings 50]

1. Throughput: a stack with one container (the `host` image's python3, a sink that reads
   everything and answers the byte count) publishing 127.0.0.1:PORT -> 3000.  A client sends
   `--size-mb` MiB and waits for the count, `--runs` times per path, interleaved:
   - direct: the client inside the stack's network namespace (nsenter into the supervisor's
     namespace descriptor), straight to the container's address over the bridge;
   - published: the client on the host, through the published port (splice forwarder).
   Target: published >= 0.7x direct (kernel-recipes §5 measured a naive trio copy loop at
   ~0.5x).
2. Wiring: in this process, one stack network (`open_stack_network`) and `--wirings`
   processes each in a fresh network namespace (as a PID 1 is); `prepare` + `wire` of each
   (lease, /etc/hosts lines, veth into its namespace on the bridge) timed.  Target: median
   <= 10 ms.

Prints a table and writes bench/results/port_throughput-*.json.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

SINK = r'''
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 3000)); s.listen(8); print("listening", flush=True)
buf = bytearray(1 << 20)
while True:
    c, _ = s.accept()
    n = 0
    while k := c.recv_into(buf):
        n += k
    c.sendall(str(n).encode()); c.close()
'''

CLIENT = r'''
import socket, sys, time
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
chunk = memoryview(bytes(1 << 20))
c = socket.create_connection((host, port))
t = time.perf_counter()
left = size
while left:
    left -= c.send(chunk[:min(left, len(chunk))])
c.shutdown(socket.SHUT_WR)
got = int(c.recv(64))
elapsed = time.perf_counter() - t
assert got == size, (got, size)
print(size / elapsed / 1e9)
'''


def stack_netns_fd(pid: int) -> str:
    """The supervisor's descriptor of the stack namespace (the one net: fd not its own)."""
    own = os.readlink(f"/proc/{pid}/ns/net")
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("net:") and target != own:
            return f"/proc/{pid}/fd/{fd}"
    raise SystemExit("no stack network namespace found in the supervisor")


def throughput(args: argparse.Namespace, tmp: Path) -> dict[str, list[float]]:
    env = os.environ | {"SUPERVISE_STATE_DIR": str(tmp / "state"),
                        "SUPERVISE_RUN_DIR": str(tmp / "run"), "SUPERVISE_PROJECT": "pbench"}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp / "stack.toml").write_text(f"""
[stack.network]
outbound = false
[containers.sink]
image = "host"
command = ["python3", "-u", "-c", '''{SINK}''']
ports = ["127.0.0.1:{port}:3000"]
stop_grace_period = "0s"
""")
    sv = [sys.executable, "-m", "supervisor"]
    subprocess.run([*sv, "up", "-d", str(tmp / "stack.toml")], env=env, check=True,
                   cwd=benchlib.REPO_DIR, stdout=subprocess.DEVNULL)
    out: dict[str, list[float]] = {"direct": [], "published": []}
    try:
        deadline = time.monotonic() + 30
        while b"listening" not in subprocess.run([*sv, "logs", "sink"], env=env,
                                                 capture_output=True).stdout:
            assert time.monotonic() < deadline, "the sink did not start"
            time.sleep(0.1)
        import json

        inspect = json.loads(subprocess.run([*sv, "inspect", "sink"], env=env, check=True,
                                            capture_output=True).stdout)[0]
        ip = inspect["network"]["ip_address"]
        pid = int((tmp / "run" / "pbench" / "pid").read_text())
        ns = stack_netns_fd(pid)
        size = args.size_mb << 20
        for run in range(args.runs):
            for path in ("direct", "published"):
                cmd = [sys.executable, "-c", CLIENT]
                cmd += [ip, "3000", str(size)] if path == "direct" else \
                    ["127.0.0.1", str(port), str(size)]
                if path == "direct":
                    cmd = ["nsenter", f"--net={ns}", *cmd]
                r = subprocess.run(cmd, capture_output=True, text=True, check=True)
                out[path].append(float(r.stdout))
                print(f"  run {run + 1}/{args.runs} {path:9s} {out[path][-1]:.2f} GB/s",
                      flush=True)
    finally:
        subprocess.run([*sv, "down"], env=env, stdout=subprocess.DEVNULL)
    return out


def wiring(args: argparse.Namespace, tmp: Path) -> list[float]:
    sys.path.insert(0, str(benchlib.REPO_DIR))
    import trio

    from supervisor import config
    from supervisor.config_net import StackNetwork
    from supervisor.network import open_stack_network
    from supervisor.paths import ProjectPaths

    os.environ["SUPERVISE_STATE_DIR"] = str(tmp / "wstate")
    os.environ["SUPERVISE_RUN_DIR"] = str(tmp / "wrun")
    paths = ProjectPaths.for_project("wbench", os.environ)
    times: list[float] = []

    async def main() -> None:
        async with open_stack_network(paths, StackNetwork(outbound=False)) as net:
            for i in range(args.wirings):
                # a process in a fresh network namespace stands for a PID 1
                holder = subprocess.Popen(["unshare", "-n", "sleep", "30"])
                await trio.sleep(0.05)
                cfg = config.container_from_mapping(
                    f"c{i}", {"image": "host", "command": ["true"]}, where="bench")
                t = time.perf_counter()
                setup = await net.prepare(cfg)
                await net.wire(setup, cfg.name, holder.pid)
                times.append(time.perf_counter() - t)
                holder.kill()
                holder.wait()

    trio.run(main)
    return times


def main() -> int:
    benchlib.require_root()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size-mb", type=int, default=1024)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--wirings", type=int, default=50)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="sv-portbench-") as d:
        tmp = Path(d)
        print(f"throughput: {args.size_mb} MiB x {args.runs} runs per path")
        tp = throughput(args, tmp)
        print(f"wiring: {args.wirings} containers")
        wires = wiring(args, tmp)
    direct, published = statistics.median(tp["direct"]), statistics.median(tp["published"])
    wire_ms = [t * 1e3 for t in wires]
    rows = [
        ("direct, in the stack namespace (GB/s)", f"{direct:.2f}", ""),
        ("published port 127.0.0.1 (GB/s)", f"{published:.2f}",
         f"{published / direct:.2f}x direct (target >= 0.70)"),
        ("wiring one container (ms, median)", f"{statistics.median(wire_ms):.2f}",
         f"p90 {sorted(wire_ms)[int(len(wire_ms) * 0.9)]:.2f}, max {max(wire_ms):.2f} "
         "(target <= 10)"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:{width}s}  {value:>7s}  {note}")
    benchlib.write_results("port_throughput", {
        "size_mb": args.size_mb, "throughput_gbps": tp, "wiring_ms": wire_ms,
        "ratio_published_to_direct": published / direct})
    return 0


if __name__ == "__main__":
    sys.exit(main())
