"""The CLI verbs that talk to a running supervisor through its API (Docker's verbs)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import select
import shutil
import socket
import sys
import tarfile
import termios
import time
import tty as ttymod
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from supervisor.cli_common import connect, when
from supervisor.errors import ApiError, SupervisorError, UsageError
from supervisor.lightclient import LightClient
from supervisor.paths import NAME_RE
from supervisor.protocol import ContainerSummary, Event, ExitStatus, OutputFrame, StatsView


def _for_each(names: list[str], request: Callable[[str], object]) -> int:
    """One request per named container, as `docker stop a b c`: each name printed when it
    worked, each failure one line; exit 1 if any failed."""
    failed = 0
    for name in names:
        try:
            request(name)
            print(name)
        except ApiError as e:
            print(f"Error response from supervisor: {e}", file=sys.stderr)
            failed = 1
    return failed


def _each(args: argparse.Namespace, action: str, **query: Any) -> int:
    client = connect(args)
    return _for_each(args.names,
                     lambda name: client.post(f"/containers/{name}/{action}", **query))


# -- verbs ----------------------------------------------------------------------------------

def cmd_ps(args: argparse.Namespace) -> int:
    client = connect(args)
    query: dict[str, Any] = {"all": 1} if args.all else {}
    if args.filter:
        query["filter"] = args.filter
    rows = msgspec.convert(client.get("/containers/json", **query), type=list[ContainerSummary])
    if args.format == "json":
        for row in rows:
            print(msgspec.json.encode(row).decode())
        return 0
    if args.quiet:
        for row in rows:
            print(row.name)
        return 0
    table = [["NAME", "IMAGE", "COMMAND", "CREATED", "STATUS", "RESTARTS", "PORTS"]]
    for row in rows:
        command = row.command if len(row.command) <= 22 else row.command[:19] + "..."
        status = row.status
        if row.state.next_restart_at:
            status += f" (next attempt in {max(0.0, row.state.next_restart_at - time.time()):.1f}s)"
        table.append([row.name, row.image, f'"{command}"', _ago(row.created), status,
                      str(row.state.restart_count), ", ".join(row.ports)])
    print_table(table)
    return 0


def _ago(stamp: str) -> str:
    seconds = max(0, int(time.time() - datetime.fromisoformat(stamp).timestamp()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size or unit == "second":
            n = seconds // size
            return f"{n} {unit}{'' if n == 1 else 's'} ago"  # as Docker: "1 minute ago"
    raise AssertionError("unreachable")


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


def cmd_start(args: argparse.Namespace) -> int:
    return _each(args, "start")


def cmd_stop(args: argparse.Namespace) -> int:
    return _each(args, "stop", **({"t": args.time} if args.time is not None else {}))


def cmd_restart(args: argparse.Namespace) -> int:
    return _each(args, "restart", **({"t": args.time} if args.time is not None else {}))


def cmd_kill(args: argparse.Namespace) -> int:
    return _each(args, "kill", signal=args.signal)


def cmd_pause(args: argparse.Namespace) -> int:
    return _each(args, "pause")


def cmd_unpause(args: argparse.Namespace) -> int:
    return _each(args, "unpause")


def cmd_wait(args: argparse.Namespace) -> int:
    client = connect(args, timeout=None)
    for name in args.names:  # prints each exit code and exits 0, as `docker wait`
        status = msgspec.convert(client.post(f"/containers/{name}/wait"), type=ExitStatus)
        print(status.status_code, flush=True)
    return 0


def cmd_rm_api(args: argparse.Namespace, client: LightClient) -> int:
    return _for_each(args.names, lambda name: client.delete(
        f"/containers/{name}", force=int(args.force), v=int(args.volumes)))


def cmd_inspect(args: argparse.Namespace) -> int:
    client = connect(args)
    found, failed = [], 0
    for name in args.names:
        try:
            found.append(client.get(f"/containers/{name}/json"))
        except ApiError as e:
            print(f"Error: {e}", file=sys.stderr)
            failed = 1
    print(msgspec.json.format(msgspec.json.encode(found), indent=4).decode())
    return failed


def cmd_top(args: argparse.Namespace) -> int:
    rows = connect(args).get(f"/containers/{args.name}/top")
    table = [["PID", "PPID", "UID", "CMD"]]
    table += [[str(r["pid"]), str(r["ppid"]), r["user"], r["command"]] for r in rows]
    print_table(table)
    return 0


def cmd_port(args: argparse.Namespace) -> int:
    for line in connect(args).get(f"/containers/{args.name}/port"):
        print(line)
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    for flag, key in (("memory", "mem_limit"), ("memory_swap", "memswap_limit"),
                      ("cpus", "cpus"), ("pids_limit", "pids_limit"), ("restart", "restart")):
        value = getattr(args, flag)
        if value is None:
            continue
        try:
            body[key] = float(value) if key == "cpus" else (
                int(value) if key == "pids_limit" else value)
        except ValueError:
            raise UsageError(f"supervise update: --{flag.replace('_', '-')}: expected a "
                             f"number, got {value!r}") from None
    if not body:
        raise UsageError("supervise update: expected at least one of --memory, --memory-swap, "
                         "--cpus, --pids-limit, --restart")
    client = connect(args)
    return _for_each(args.names,
                     lambda name: client.post(f"/containers/{name}/update", body))


def cmd_stats(args: argparse.Namespace) -> int:
    client = connect(args)
    names = args.names or [r["name"] for r in client.get("/containers/json")]
    if args.no_stream:
        rows = [msgspec.convert(client.get(f"/containers/{n}/stats", stream=0), type=StatsView)
                for n in names]
        _print_stats(rows, args.format)
        return 0
    previous: dict[str, StatsView] = {}
    try:
        while True:
            rows = []
            for n in names:
                s = msgspec.convert(client.get(f"/containers/{n}/stats", stream=0),
                                    type=StatsView)
                rows.append(s)
                previous[n] = s
            if args.format != "json" and sys.stdout.isatty():
                print("\x1b[2J\x1b[H", end="")
            _print_stats(rows, args.format)
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 0


def _print_stats(rows: list[StatsView], fmt: str | None) -> None:
    if fmt == "json":
        for r in rows:
            print(msgspec.json.encode(r).decode())
        return
    table = [["NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"]]
    for r in rows:
        limit = r.memory_limit
        mem = f"{_bytes(r.memory_usage)} / {_bytes(limit) if limit else 'unlimited'}"
        pct = f"{r.memory_usage / limit * 100:.2f}%" if limit else "--"
        table.append([r.name, f"{r.cpu_percent:.2f}%", mem, pct, str(r.pids)])
    print_table(table)


def _bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.4g}{unit}"
        value /= 1024
    return f"{n}B"


def cmd_events(args: argparse.Namespace) -> int:
    client = connect(args, timeout=None)
    query: dict[str, Any] = {}
    if args.since:
        query["since"] = when(args.since, "--since")
    if args.until:
        query["until"] = when(args.until, "--until")
    if args.filter:
        query["filter"] = args.filter
    try:
        for line in client.stream("GET", "/events", **query):
            event = msgspec.json.decode(line, type=Event)
            if args.format == "json":
                print(line.decode().rstrip(), flush=True)
                continue
            stamp = datetime.fromtimestamp(event.time, UTC).isoformat(timespec="microseconds")
            attrs = ", ".join(f"{k}={v}" for k, v in sorted(event.attributes.items()))
            print(f"{stamp} container {event.action} {event.container}"
                  + (f" ({attrs})" if attrs else ""), flush=True)
    except KeyboardInterrupt:
        pass
    return 0


# -- exec, attach, cp -----------------------------------------------------------------------

def cmd_exec(args: argparse.Namespace, client: LightClient) -> int:
    env = []
    for item in args.env or []:
        env.append(item if "=" in item else f"{item}={os.environ.get(item, '')}")
    body = {"cmd": list(args.command), "env": env, "user": args.user, "workdir": args.workdir,
            "tty": bool(args.tty), "stdin": bool(args.interactive)}
    exec_id = client.post(f"/containers/{args.name}/exec", body)["Id"]
    if args.tty or args.interactive:
        sock = client.upgrade("POST", f"/exec/{exec_id}/start")
        if args.tty and sys.stdin.isatty():
            with contextlib.suppress(ApiError):
                rows, cols = shutil.get_terminal_size()
                client.post(f"/exec/{exec_id}/resize", h=rows, w=cols)
        shuttle(sock, interactive=bool(args.interactive), raw=bool(args.tty))
        code = client.get(f"/exec/{exec_id}/json")["ExitCode"]
        return int(code if code is not None else 1)
    return print_frames(client.stream("POST", f"/exec/{exec_id}/start"))


def print_frames(lines: Iterator[bytes]) -> int:
    code = 0
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for line in lines:
        frame = msgspec.json.decode(line, type=OutputFrame)
        if frame.exit_code is not None:
            code = frame.exit_code
            continue
        target = err if frame.stream == "stderr" else out
        target.write(frame.data.encode())
        target.flush()
    return code


def shuttle(sock: socket.socket, *, interactive: bool, raw: bool) -> None:
    """Copies our stdin to the socket and the socket to our stdout until the far end closes."""
    stdin = sys.stdin.fileno()
    saved = None
    if raw and os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        ttymod.setraw(stdin)
    try:
        watch = [sock] + ([stdin] if interactive else [])
        while True:
            ready, _, _ = select.select(watch, [], [])
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                os.write(sys.stdout.fileno(), data)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if not data:
                    watch.remove(stdin)
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
                else:
                    sock.sendall(data)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        sock.close()


def cmd_attach(args: argparse.Namespace) -> int:
    client = connect(args, timeout=None)
    try:
        return print_frames(client.stream("POST", f"/containers/{args.name}/attach"))
    except KeyboardInterrupt:
        return 0


def cmd_cp(args: argparse.Namespace) -> int:
    src, dst = args.src, args.dst
    src_ctr, _, src_path = src.partition(":") if _is_container(src) else ("", "", src)
    dst_ctr, _, dst_path = dst.partition(":") if _is_container(dst) else ("", "", dst)
    if bool(src_ctr) == bool(dst_ctr):
        raise UsageError("supervise cp: expected exactly one of SRC or DEST as "
                         "CONTAINER:PATH, such as 'web:/etc/hosts'")
    client = connect(args)
    if src_ctr:
        data = b"".join(client.stream("GET", f"/containers/{src_ctr}/archive",
                                      path=src_path))
        try:
            _extract(data, Path(dst_path))
        except (tarfile.TarError, ValueError, OSError) as e:
            raise SupervisorError(f"supervise cp: {src}: {e}") from None
        return 0
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        source = Path(src_path)
        if not source.exists():
            raise UsageError(f"supervise cp: {src_path}: no such file or directory")
        tar.add(source, arcname=source.name)
    client.put(f"/containers/{dst_ctr}/archive", buffer.getvalue(), path=dst_path)
    return 0


def _extract(data: bytes, target: Path) -> None:
    """A container-made tar into `target` (a folder: inside it; else: renamed to it), with
    tarfile's "data" filter refusing links and paths that leave the destination."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        if not members:
            raise ValueError("the container sent nothing")
        if target.is_dir():
            tar.extractall(target, filter="data")
            return
        top = members[0].name.rstrip("/")
        for m in members:  # `cp web:/etc/hosts ./hosts-copy`: the top entry renamed
            rest = m.name[len(top):].lstrip("/") if m.name.startswith(top) else None
            if rest is None:
                raise ValueError(f"unexpected entry {m.name!r} in the archive")
            m.name = str(Path(target.name) / rest) if rest else target.name
        tar.extractall(target.parent, filter="data")


def _is_container(spec: str) -> bool:
    name, sep, _ = spec.partition(":")
    return bool(sep) and bool(NAME_RE.fullmatch(name)) and "/" not in name
