"""A stack's network, in a network namespace of its own (design.md, Networking).

`open_stack_network` makes the namespace (held by the `NetnsThread` that lives in it), the
bridge `sv0` with the gateway address, outbound access through slirp4netns (a user-mode
stack attached as `tap0`, masqueraded by one nft rule in the namespace), and the name
server on the gateway's port 53.  For each run of a container, `prepare` says what it gets
(address, /etc/hosts, resolv.conf, link variables) and `wire` plugs a veth into its PID 1
while PID 1 builds its root filesystem.  Published ports are `ports.py`'s, opened with the
container's first start and closed when it is removed or the stack stops.

Nothing is made in the host's namespace but the published ports' listening sockets and the
slirp4netns process; everything else vanishes with the namespace.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ipaddress
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
import trio

from supervisor import dnswire, ipam, ports
from supervisor.config import Container as ContainerConfig
from supervisor.config_net import StackNetwork as NetworkSettings
from supervisor.errors import ContainerError, SupervisorError
from supervisor.linux import nft
from supervisor.linux.netlink import NetlinkFailure, NetnsThread
from supervisor.paths import ProjectPaths

T = TypeVar("T")
BRIDGE = "sv0"
DNS_FORWARDS = 64  # lookups of outside names in flight at once
SLIRP_GATEWAY = "10.0.2.2"  # the host, as slirp4netns shows it
SLIRP_DNS = "10.0.2.3"


class NetworkError(SupervisorError):
    """The stack network could not be made."""


@dataclass
class NetSetup:
    """What one run of a container gets from the network (container.py turns it into its
    spec, /etc files and environment)."""

    mode: str  # bridge | none | host | container
    address: str = ""
    prefixlen: int = 0
    gateway: str = ""
    veth: str = ""
    hosts: list[tuple[str, str]] = field(default_factory=list)  # (ip, names) extra lines
    resolv: str | None = None  # None: the host's, minus loopback servers
    env: dict[str, str] = field(default_factory=dict)
    netns_pid: int = 0  # container mode: join this PID's network namespace,
    netns_inode: int = 0  # which must still be this one (the PID may be gone and reused)


@dataclass(frozen=True)
class Binding:
    """A published port as bound: what `supervise port` prints."""

    container_port: int
    protocol: str
    host_ip: str
    host_port: int


async def wait_future(fut: concurrent.futures.Future[T]) -> T:
    """A job of the namespace thread, awaited without a worker thread of trio's.  Jobs are
    short and may create descriptors, so the wait is shielded: nothing is left behind."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    fut.add_done_callback(lambda _: token.run_sync_soon(done.set))
    with trio.CancelScope(shield=True):
        await done.wait()
    return fut.result()


def veth_name(project: str, container: str) -> str:
    """Unique within the stack namespace (the only place it exists), ≤ 15 characters."""
    import hashlib

    digest = hashlib.sha256(f"{project}/{container}".encode()).hexdigest()[:8]
    return f"ve-{container[:3]}-{digest}"


class StackNet:
    def __init__(self, paths: ProjectPaths, settings: NetworkSettings,
                 thread: NetnsThread, nursery: trio.Nursery, *, persist: bool = True) -> None:
        self.paths = paths
        self.persist = persist  # False: a one-off's private network, leases kept in memory
        self.settings = settings
        self.thread = thread
        self.nursery = nursery
        self.subnet = ipaddress.IPv4Network(settings.subnet)
        self.gateway = ipam.gateway(settings.subnet)
        self.leases = ipam.for_subnet(self._load(), settings.subnet)
        self.bridge_index = 0
        self.configs: dict[str, ContainerConfig] = {}
        self.pids: dict[str, int] = {}  # the running PID 1 of each container
        self.bindings: dict[str, list[Binding]] = {}
        self._port_scopes: dict[str, trio.CancelScope] = {}
        self._listeners: dict[str, list[socket.socket]] = {}
        self._netns_inodes: dict[str, int] = {}  # the namespace each running PID 1 has
        self._dns_forwards = trio.CapacityLimiter(DNS_FORWARDS)
        self.slirp: subprocess.Popen[bytes] | None = None
        self._slirp_exit_w = -1

    # -- leases -------------------------------------------------------------------------

    @property
    def _file(self) -> os.PathLike[str]:
        return self.paths.state / "network.json"

    def _load(self) -> ipam.Leases | None:
        if not self.persist:
            return None
        try:
            with open(self._file, "rb") as f:
                return msgspec.json.decode(f.read(), type=ipam.Leases)
        except (OSError, msgspec.DecodeError):
            return None

    def _save(self) -> None:
        if not self.persist:
            return
        self.paths.state.mkdir(parents=True, exist_ok=True)
        tmp = self.paths.state / "network.json.tmp"
        tmp.write_bytes(msgspec.json.encode(self.leases))
        tmp.replace(self._file)

    def reserve(self, configs: list[ContainerConfig]) -> None:
        """Leases for every bridge container of the stack, in file order, before any
        starts: names resolve, and links point somewhere, from the first start on."""
        changed = False
        for cfg in configs:
            self.configs[cfg.name] = cfg
            if cfg.network_mode == "bridge":
                try:
                    changed |= ipam.lease(self.leases, cfg.name)[1]
                except ipam.IpamError as e:
                    raise ContainerError(cfg.name, str(e)) from e
        if changed:
            self._save()

    def unpublish(self, name: str) -> None:
        """Its published ports close now (a recreated container publishes its new ones)."""
        scope = self._port_scopes.pop(name, None)
        if scope is not None:
            scope.cancel()
        for listener in self._listeners.pop(name, []):
            trio.lowlevel.notify_closing(listener)
            listener.close()
        self.bindings.pop(name, None)

    def release(self, name: str) -> None:
        """The container was removed: its published ports and its address go."""
        self.unpublish(name)
        self.configs.pop(name, None)
        if ipam.release(self.leases, name):
            self._save()

    # -- names ---------------------------------------------------------------------------

    def resolve(self, name: str) -> list[str] | None:
        """A container name, hostname or link alias of the stack, always current."""
        name = name.lower().rstrip(".")
        ip = self._address_of(name)
        if ip is None:
            for cname, cfg in self.configs.items():
                target = None
                if (cfg.hostname or "").lower() == name:
                    target = cname
                else:
                    target = next((link.container for link in cfg.links
                                   if link.alias.lower() == name), None)
                if target is not None and target in self.leases.leases:
                    ip = self.leases.leases[target]
                    break
            else:
                for cname, lease in self.leases.leases.items():
                    if cname.lower() == name:
                        ip = lease
                        break
        return [ip] if ip else None

    def _address_of(self, name: str) -> str | None:
        cfg = self.configs.get(name)
        if cfg is not None and cfg.network_mode.startswith("container:"):
            return self._address_of(cfg.network_mode[10:])
        return self.leases.leases.get(name)

    def _link_env(self, alias: str, target: str, ip: str) -> dict[str, str]:
        """Docker's legacy link variables, from the target's exposed and published ports."""
        cfg = self.configs.get(target)
        if cfg is None:
            return {}
        prefix = "".join(ch if ch.isalnum() else "_" for ch in alias).upper()
        exposed = sorted({(e.port, e.protocol) for e in cfg.expose}
                         | {(p.container_port, p.protocol) for p in cfg.ports})
        env: dict[str, str] = {f"{prefix}_NAME": f"/{target}/{alias}"}
        for i, (port, proto) in enumerate(exposed):
            url = f"{proto}://{ip}:{port}"
            key = f"{prefix}_PORT_{port}_{proto.upper()}"
            env |= {key: url, f"{key}_ADDR": ip, f"{key}_PORT": str(port),
                    f"{key}_PROTO": proto}
            if i == 0:
                env[f"{prefix}_PORT"] = url
        return env

    # -- one run -------------------------------------------------------------------------

    async def prepare(self, cfg: ContainerConfig) -> NetSetup:
        self.configs[cfg.name] = cfg
        mode = cfg.network_mode
        extra = [(ip, name) for name, ip in cfg.extra_hosts.items()]
        if mode in ("none", "host"):
            return NetSetup(mode=mode, hosts=extra)
        if mode.startswith("container:"):
            target = mode[10:]
            pid = self.pids.get(target, 0)
            inode = self._netns_inodes.get(target, 0)
            if not pid or not inode:
                raise ContainerError(cfg.name, f"network_mode: container {target!r} is not "
                                     "running")
            return NetSetup(mode="container", netns_pid=pid, netns_inode=inode, hosts=extra,
                            resolv=f"nameserver {self.gateway}\n")
        try:
            address, new = ipam.lease(self.leases, cfg.name)
        except ipam.IpamError as e:
            raise ContainerError(cfg.name, str(e)) from e
        if new:
            self._save()
        hosts: list[tuple[str, str]] = []
        env: dict[str, str] = {}
        for link in cfg.links:
            ip = self._address_of(link.container)
            if ip is None:
                continue
            names = link.alias if link.alias == link.container else \
                f"{link.alias} {link.container}"
            hosts.append((ip, names))
            env |= self._link_env(link.alias, link.container, ip)
        if self.settings.host_loopback and self.settings.outbound:
            hosts.append((SLIRP_GATEWAY, "host.containers.internal host.docker.internal"))
        await self._publish(cfg)
        return NetSetup(mode="bridge", address=address, prefixlen=self.subnet.prefixlen,
                        gateway=self.gateway, veth=veth_name(self.paths.project, cfg.name),
                        hosts=hosts + extra, resolv=f"nameserver {self.gateway}\n", env=env)

    async def wire(self, setup: NetSetup, name: str, pid: int) -> None:
        """The veth into PID 1's namespace (PID 1 waits for it before it execs)."""
        self.pids[name] = pid
        with contextlib.suppress(OSError):
            self._netns_inodes[name] = os.stat(f"/proc/{pid}/ns/net").st_ino
        if setup.mode != "bridge":
            return
        try:
            await wait_future(self.thread.submit(
                lambda: self.thread.add_veth(setup.veth, self.bridge_index, pid,
                                             setup.address)))
        except NetlinkFailure as e:
            raise ContainerError(name, f"network: {e}") from e

    def stopped(self, name: str) -> None:
        self.pids.pop(name, None)
        self._netns_inodes.pop(name, None)

    # -- published ports -----------------------------------------------------------------

    async def _publish(self, cfg: ContainerConfig) -> None:
        if cfg.name in self._port_scopes or not cfg.ports:
            return
        listeners: list[tuple[socket.socket, str, int]] = []
        bindings: list[Binding] = []
        try:
            for i, spec in enumerate(cfg.ports):
                for s in ports.open_listeners(cfg.name, i, spec):
                    listeners.append((s, spec.protocol, spec.container_port))
                    host, port = s.getsockname()[:2]
                    bindings.append(Binding(spec.container_port, spec.protocol, host, port))
        except BaseException:
            for s, _, _ in listeners:
                s.close()
            raise
        scope = trio.CancelScope()
        self._port_scopes[cfg.name] = scope
        self._listeners[cfg.name] = [s for s, _, _ in listeners]
        self.bindings[cfg.name] = bindings
        name = cfg.name

        async def serve(listener: socket.socket, proto: str, port: int) -> None:
            async def connect(family: int) -> socket.socket:
                ip = self.leases.leases.get(name)
                if ip is None:
                    raise OSError("no address")
                kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
                s = await wait_future(self.thread.submit(
                    lambda: self.thread.socket(socket.AF_INET, kind)))
                try:
                    await trio.socket.from_stdlib_socket(s).connect((ip, port))
                except BaseException:
                    s.close()
                    raise
                return s

            if proto == "tcp":
                await ports.serve_tcp(listener, connect)
            else:
                await ports.serve_udp(listener, connect)

        async def run_all() -> None:
            with scope:
                async with trio.open_nursery() as n:
                    for listener, proto, port in listeners:
                        n.start_soon(serve, listener, proto, port)
            for listener, _, _ in listeners:
                listener.close()  # those a cancel caught before their server started

        self.nursery.start_soon(run_all)

    # -- the name server -----------------------------------------------------------------

    async def serve_dns(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                        ) -> None:
        raw = await wait_future(self.thread.submit(
            lambda: self.thread.socket(socket.AF_INET, socket.SOCK_DGRAM)))
        sock = trio.socket.from_stdlib_socket(raw)
        with sock:
            await sock.bind((self.gateway, 53))
            task_status.started()
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        packet, addr = await sock.recvfrom(4096)
                    except OSError:
                        continue
                    q = dnswire.parse_query(packet)
                    if q is None:
                        reply = dnswire.error(packet, dnswire.RCODE_FORMERR)
                    elif (found := self.resolve(q.name)) is not None:
                        reply = dnswire.answer(q, found if q.qtype == dnswire.TYPE_A else [])
                    elif self.settings.outbound and "." in q.name:
                        if self._dns_forwards.available_tokens:
                            nursery.start_soon(self._forward, sock, packet, addr)
                            continue
                        reply = dnswire.answer(q, None, rcode=dnswire.RCODE_SERVFAIL)
                    else:
                        reply = dnswire.answer(q, None)
                    if reply is not None:
                        with contextlib.suppress(OSError):
                            await sock.sendto(reply, addr)

    async def _forward(self, sock: trio.socket.SocketType, packet: bytes,
                       addr: tuple[str, int]) -> None:
        """Other names go to slirp4netns's resolver (the host's); at most DNS_FORWARDS at
        once, so a container's lookups cannot use up the supervisor's descriptors."""
        async with self._dns_forwards:
            try:
                raw = await wait_future(self.thread.submit(
                    lambda: self.thread.socket(socket.AF_INET, socket.SOCK_DGRAM)))
            except OSError:
                return
            with trio.socket.from_stdlib_socket(raw) as up, trio.move_on_after(3):
                try:
                    await up.sendto(packet, (SLIRP_DNS, 53))
                    reply = await up.recv(4096)
                    await sock.sendto(reply, addr)
                except OSError:
                    pass

    # -- outbound ------------------------------------------------------------------------

    async def start_outbound(self) -> None:
        exe = shutil.which("slirp4netns")
        if exe is None:
            raise NetworkError("[stack.network] outbound: slirp4netns is not installed "
                               "(apt-get install slirp4netns, or set outbound = false)")
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
        argv = [exe, "--configure", "--mtu=65520", f"--ready-fd={ready_w}",
                f"--exit-fd={exit_r}", "--netns-type=path", f"/proc/self/fd/{self.thread.ns_fd}",
                "tap0"]
        if not self.settings.host_loopback:
            argv.insert(3, "--disable-host-loopback")
        # A file, as a pipe nobody reads would fill; one per process (one-offs run side by side)
        log = self.paths.run / f"slirp4netns.{os.getpid()}.log"
        try:
            self.paths.run.mkdir(parents=True, exist_ok=True)
            with open(log, "wb") as out:
                self.slirp = subprocess.Popen(
                    argv, pass_fds=[ready_w, exit_r, self.thread.ns_fd],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        except OSError as e:
            os.close(ready_r)
            os.close(exit_w)
            raise NetworkError(f"[stack.network] outbound: slirp4netns: "
                               f"{e.strerror or e}") from e
        finally:
            os.close(ready_w)
            os.close(exit_r)
        self._slirp_exit_w = exit_w
        try:
            with trio.fail_after(10):
                from supervisor import fdio

                ready = await fdio.read_all(ready_r)  # closes ready_r
        except trio.TooSlowError:
            ready = b""
        if ready != b"1":
            err = self._stop_slirp()
            raise NetworkError(f"[stack.network] outbound: slirp4netns failed: {err}")
        rules = (f"table ip supervise {{\n chain postrouting {{\n"
                 f"  type nat hook postrouting priority srcnat; policy accept;\n"
                 f"  ip saddr {self.subnet} oifname \"tap0\" masquerade\n }}\n}}\n")
        try:
            await wait_future(self.thread.submit(lambda: nft.run(rules)))
        except nft.NftError as e:
            self._stop_slirp()
            raise NetworkError(f"[stack.network] outbound: nft: {e}") from e

    def _stop_slirp(self) -> str:
        if self._slirp_exit_w >= 0:
            os.close(self._slirp_exit_w)  # --exit-fd: it exits when this end closes
            self._slirp_exit_w = -1
        err = ""
        if self.slirp is not None:
            try:  # it exits at once on --exit-fd; the wait is short, even on the loop
                self.slirp.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.slirp.kill()
                self.slirp.wait()
            with contextlib.suppress(OSError):
                log = self.paths.run / f"slirp4netns.{os.getpid()}.log"
                lines = log.read_text().strip().splitlines()
                log.unlink()
                err = lines[-1] if lines else f"exit status {self.slirp.returncode}"
            self.slirp = None
        return err


@contextlib.asynccontextmanager
async def open_stack_network(paths: ProjectPaths, settings: NetworkSettings, *,
                             persist: bool = True) -> AsyncIterator[StackNet]:
    """The stack's namespace and everything in it, for as long as the block runs."""
    try:
        thread = await trio.to_thread.run_sync(NetnsThread, f"netns-{paths.project}")
    except NetlinkFailure as e:
        raise NetworkError(f"stack network: {e}") from e
    net: StackNet | None = None
    try:
        # Made before the nursery opens, so that a failure is one plain error, not a group.
        subnet = ipaddress.IPv4Network(settings.subnet)
        gateway = ipam.gateway(settings.subnet)
        try:
            bridge = await wait_future(thread.submit(
                lambda: thread.make_bridge(BRIDGE, gateway, subnet.prefixlen)))
        except NetlinkFailure as e:
            raise NetworkError(f"stack network: {e}") from e
        async with trio.open_nursery() as nursery:
            net = StackNet(paths, settings, thread, nursery, persist=persist)
            net.bridge_index = bridge
            if settings.outbound:
                await net.start_outbound()
            await nursery.start(net.serve_dns)
            try:
                yield net
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):  # a cancelled caller must not leak the thread
            if net is not None:
                await trio.to_thread.run_sync(net._stop_slirp)
            await trio.to_thread.run_sync(thread.close)
