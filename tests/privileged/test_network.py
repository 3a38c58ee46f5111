"""Networking for real: a stack namespace with a bridge, veths, names, published ports and
outbound access through slirp4netns (issue 5).  Every address used is loopback or inside a
namespace the stack made; stacks that could reach further have `outbound = false`."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.paths import ProjectPaths
from tests.privileged.supervised import Supervised, make_stack

# A TCP echo server on 3000 (a thread per connection) and a UDP echo server on 5353.
SERVER = r'''
import socket, threading
def tcp(c):
    with c:
        while data := c.recv(65536):
            c.sendall(data)
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 5353))
    while True:
        data, addr = u.recvfrom(65536)
        u.sendto(b"udp:" + data, addr)
threading.Thread(target=udp, daemon=True).start()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 3000))
s.listen(256)
print("listening", flush=True)
while True:
    threading.Thread(target=tcp, args=(s.accept()[0],), daemon=True).start()
'''


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stack_toml(tcp: int = 0, udp: int = 0, network: str = "outbound = false") -> str:
    ports = f'ports = ["127.0.0.1:{tcp}:3000", "127.0.0.1:{udp}:5353/udp"]' if tcp else ""
    return f"""
[stack.network]
{network}

[containers.server]
image = "host"
command = ["python3", "-u", "-c", '''{SERVER}''']
expose = [3000]
restart = "always"
stop_grace_period = "0s"
{ports}

[containers.client]
rootfs = "ROOTFS"
links = ["server:db"]
command = ["sleep", "300"]
stop_grace_period = "0s"
"""


def wait_listening(s: Supervised, name: str = "server") -> None:
    deadline = time.monotonic() + 30
    while "listening" not in s.ok("logs", name):
        assert time.monotonic() < deadline, s.ok("logs", name)
        time.sleep(0.05)


def network_of(s: Supervised, name: str) -> dict[str, object]:
    data = json.loads(s.ok("inspect", name))
    view: dict[str, object] = data[0]["network"]
    return view


@pytest.fixture
def linked(stack: list[Supervised], project: ProjectPaths, tmp_path: Path,
           busybox_rootfs: Path) -> Iterator[tuple[Supervised, int, int]]:
    tcp, udp = free_port(), free_port(socket.SOCK_DGRAM)
    s = make_stack(stack, project, tmp_path, stack_toml(tcp, udp), busybox_rootfs, up=True)
    s.wait_state("client", "running")
    wait_listening(s)
    yield s, tcp, udp


def test_linked_containers_reach_each_other_by_name(linked: tuple[Supervised, int, int],
                                                      ) -> None:
    s, _, _ = linked
    server_ip = network_of(s, "server")["ip_address"]
    client_ip = network_of(s, "client")["ip_address"]
    assert server_ip != client_ip and str(server_ip).startswith("10.88.")
    hosts = s.ok("exec", "client", "cat", "/etc/hosts").splitlines()
    assert f"{server_ip}\tdb server" in hosts
    assert f"{client_ip}\tclient" in hosts
    env = dict(line.split("=", 1) for line in s.ok("exec", "client", "env").splitlines())
    assert env["DB_PORT"] == f"tcp://{server_ip}:3000"
    assert env["DB_PORT_3000_TCP_ADDR"] == server_ip
    assert env["DB_PORT_3000_TCP_PORT"] == "3000"
    assert env["DB_PORT_3000_TCP_PROTO"] == "tcp"
    assert env["DB_NAME"] == "/server/db"
    # TCP by link alias and by name
    for name in ("db", "server"):
        out = s.ok("exec", "client", "sh", "-c", f"echo ping-{name} | nc -w 2 {name} 3000")
        assert out.strip() == f"ping-{name}"
    # DNS answers every container name and alias of the stack, from every container
    for name, ip in (("server", server_ip), ("db", server_ip), ("client", client_ip)):
        out = s.ok("exec", "client", "nslookup", name)
        assert re.search(rf"Address:\s+{re.escape(str(ip))}\b", out.split(name, 1)[-1]), out
    assert s.ok("exec", "server", "python3", "-c",
                "import socket; print(socket.gethostbyname('client'))").strip() == client_ip
    missing = s.cli("exec", "client", "nslookup", "nosuchname")
    assert missing.returncode != 0


def test_a_restarted_container_keeps_its_address(linked: tuple[Supervised, int, int]) -> None:
    s, _, _ = linked
    before = network_of(s, "server")
    pid = s.state("server")["pid"]
    os.kill(pid, signal.SIGKILL)  # a crash: the policy (always) restarts it
    s.wait_event("start", "server", count=2)
    wait_listening(s)
    assert network_of(s, "server") == before
    out = s.ok("exec", "client", "sh", "-c", "echo again | nc -w 2 db 3000")
    assert out.strip() == "again"


def test_published_ports_tcp_udp_and_100_concurrent(linked: tuple[Supervised, int, int],
                                                    ) -> None:
    s, tcp, udp = linked
    assert s.ok("port", "server").splitlines() == [f"3000/tcp -> 127.0.0.1:{tcp}",
                                                   f"5353/udp -> 127.0.0.1:{udp}"]

    def echo(i: int) -> bool:
        payload = os.urandom(64 << 10) + f"#{i}".encode()
        with socket.create_connection(("127.0.0.1", tcp), timeout=20) as c:
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := c.recv(1 << 16):
                got += chunk
        return got == payload

    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        assert all(pool.map(echo, range(100)))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        u.sendto(b"hello", ("127.0.0.1", udp))
        assert u.recvfrom(100)[0] == b"udp:hello"


def test_a_client_vanishing_mid_transfer_leaks_nothing(linked: tuple[Supervised, int, int],
                                                       ) -> None:
    s, tcp, _ = linked
    assert s.pid is not None
    fds = Path(f"/proc/{s.pid}/fd")

    def settled() -> int:
        count = len(list(fds.iterdir()))
        time.sleep(0.3)
        return count

    with socket.create_connection(("127.0.0.1", tcp)) as warm:  # the first connection's
        warm.sendall(b"x")  # one-time costs (pipe size, thread) are not a leak
        warm.recv(1)
    baseline = settled()
    for _ in range(20):
        c = socket.create_connection(("127.0.0.1", tcp))
        c.sendall(os.urandom(1 << 20))
        # RST instead of FIN: the client is gone, mid-transfer
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    deadline = time.monotonic() + 10
    while (now := settled()) > baseline and time.monotonic() < deadline:
        pass
    assert now <= baseline, f"supervisor fds {baseline} -> {now}"
    echo = socket.create_connection(("127.0.0.1", tcp), timeout=5)
    echo.sendall(b"still-there")
    assert echo.recv(100) == b"still-there"
    echo.close()


def test_two_stacks_cannot_reach_each_other(stack: list[Supervised], project: ProjectPaths,
                                           tmp_path: Path, busybox_rootfs: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    a = make_stack(stack, project, tmp_path, stack_toml(), busybox_rootfs, up=True)
    other = ProjectPaths.for_project(project.project + "b", os.environ)
    (tmp_path / "b").mkdir()
    b = make_stack(stack, other, tmp_path / "b", stack_toml(network='outbound = false\n'
                   'subnet = "10.77.0.0/16"'), busybox_rootfs, up=True)  # fmt: skip
    for s in (a, b):
        s.wait_state("client", "running")
        wait_listening(s)
    b_server = network_of(b, "server")["ip_address"]
    assert str(b_server).startswith("10.77.")
    assert b.ok("exec", "client", "sh", "-c", "echo in-b | nc -w 2 server 3000").strip() == "in-b"
    crossing = a.cli("exec", "client", "sh", "-c", f"echo x | nc -w 2 {b_server} 3000")
    assert crossing.returncode != 0 and "x" not in crossing.stdout
    # The same name in each stack is each stack's own container.
    assert network_of(a, "server")["ip_address"] != b_server


class _Pong(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"pong from the host\n")


def test_outbound_reaches_a_server_on_the_host_loopback(
        stack: list[Supervised], project: ProjectPaths, tmp_path: Path,
        busybox_rootfs: Path) -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Pong)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        s = make_stack(stack, project, tmp_path, stack_toml(network="outbound = true\n"
                       "host_loopback = true"), busybox_rootfs, up=True)  # fmt: skip
        s.wait_state("client", "running")
        for host in ("10.0.2.2", "host.containers.internal"):
            out = s.ok("exec", "client", "nc", "-w", "3", host, str(port))
            assert out == "pong from the host\n"
    finally:
        server.shutdown()
        server.server_close()


def test_host_loopback_is_closed_by_default(stack: list[Supervised], project: ProjectPaths,
                                            tmp_path: Path, busybox_rootfs: Path) -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Pong)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        s = make_stack(stack, project, tmp_path, stack_toml(network="outbound = true"),
                       busybox_rootfs, up=True)
        s.wait_state("client", "running")
        r = s.cli("exec", "client", "nc", "-w", "2", "10.0.2.2", str(port))
        assert "pong" not in r.stdout
    finally:
        server.shutdown()
        server.server_close()


def test_network_modes_none_host_and_container(stack: list[Supervised], project: ProjectPaths,
                                               tmp_path: Path, busybox_rootfs: Path) -> None:
    s = make_stack(stack, project, tmp_path, """
[stack.network]
outbound = false

[containers.base]
rootfs = "ROOTFS"
command = ["sleep", "300"]
stop_grace_period = "0s"

[containers.sidecar]
rootfs = "ROOTFS"
network_mode = "container:base"
command = ["sleep", "300"]
stop_grace_period = "0s"

[containers.alone]
rootfs = "ROOTFS"
network_mode = "none"
command = ["sleep", "300"]
stop_grace_period = "0s"

[containers.hostnet]
rootfs = "ROOTFS"
network_mode = "host"
command = ["sleep", "300"]
stop_grace_period = "0s"
""", busybox_rootfs, up=True)
    for name in ("base", "sidecar", "alone", "hostnet"):
        s.wait_state(name, "running")

    def links(name: str) -> list[str]:
        out = s.ok("exec", name, "cat", "/proc/net/dev").splitlines()[2:]
        return sorted(line.split(":")[0].strip() for line in out)

    base_ip = network_of(s, "base")["ip_address"]
    assert links("base") == ["eth0", "lo"]
    assert base_ip in s.ok("exec", "sidecar", "ip", "addr")
    assert links("alone") == ["lo"]
    assert links("hostnet") == sorted(p.name for p in Path("/sys/class/net").iterdir())


def test_kill_9_then_restart_leaves_nothing(stack: list[Supervised], project: ProjectPaths,
                                            tmp_path: Path, busybox_rootfs: Path) -> None:
    s = make_stack(stack, project, tmp_path, stack_toml(network="outbound = true"),
                   busybox_rootfs, up=True)
    s.wait_state("client", "running")
    wait_listening(s)
    s.kill9()
    s.reap_orphans()
    assert s.up().returncode == 0
    s.wait_state("client", "running")
    wait_listening(s)
    assert s.ok("exec", "client", "sh", "-c", "echo back | nc -w 2 db 3000").strip() == "back"
    # slirp4netns of the killed supervisor ended with it (--exit-fd), and was reaped here
    deadline = time.monotonic() + 5
    while s.reap_orphans() or time.monotonic() < deadline:
        if not any("slirp4netns" in _cmdline(p) and _ppid(p) == os.getpid()
                   for p in Path("/proc").iterdir() if p.name.isdigit()):
            break
        time.sleep(0.1)


def _cmdline(p: Path) -> str:
    try:
        return (p / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _ppid(p: Path) -> int:
    try:
        return int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def test_up_with_changed_ports_publishes_the_new_ones(linked: tuple[Supervised, int, int],
                                                      ) -> None:
    s, tcp, _ = linked
    new = free_port()
    s.file.write_text(s.file.read_text().replace(f"127.0.0.1:{tcp}:3000", f"127.0.0.1:{new}:3000"))
    assert s.up().returncode == 0
    assert s.ok("port", "server").splitlines()[0] == f"3000/tcp -> 127.0.0.1:{new}"
    wait_listening(s)
    with socket.create_connection(("127.0.0.1", new), timeout=5) as c:
        c.sendall(b"moved")
        assert c.recv(100) == b"moved"
    with pytest.raises(OSError):  # the old port is closed, not left forwarding
        socket.create_connection(("127.0.0.1", tcp), timeout=2).close()


def test_a_cancelled_stack_network_leaves_no_thread_or_namespace(
        project: ProjectPaths) -> None:
    import threading

    import trio

    from supervisor.config_net import StackNetwork
    from supervisor.network import open_stack_network

    own = os.readlink("/proc/self/ns/net")

    def namespaces() -> int:
        found = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:  # the listing's own descriptor, closed by now
                continue
            found += target.startswith("net:") and target != own
        return found

    def ours() -> list[str]:  # trio keeps a cached worker thread of its own: not counted
        return [t.name for t in threading.enumerate() if t.name.startswith("netns-")]

    before = (ours(), namespaces())

    async def main() -> None:
        with trio.move_on_after(0.5):
            async with open_stack_network(project, StackNetwork(outbound=False)):
                await trio.sleep(10)

    trio.run(main)
    assert (ours(), namespaces()) == before
