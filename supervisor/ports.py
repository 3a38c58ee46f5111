"""Published ports: sockets in the supervisor's namespace forwarded into the stack's.

TCP is copied with splice(2) through a pipe, socket to socket, so the bytes never enter
Python (a trio read/write loop reaches about half the direct throughput, kernel-recipes
§5).  UDP keeps one upstream socket per client address, closed after `UDP_IDLE` seconds
without traffic, as docker-proxy does.  The container sees the gateway as the peer, as with
docker-proxy; the host's network configuration is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Awaitable, Callable

import trio

from supervisor.config_net import PortSpec
from supervisor.errors import ContainerError

CHUNK = 1 << 20
F_SETPIPE_SZ = 1031
UDP_IDLE = 90.0
MAX_RELAYS = 1024  # TCP connections relayed at once, per published port
MAX_FLOWS = 1024  # UDP client addresses with an upstream socket, per published port
_SPLICE = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK

Connect = Callable[[int], Awaitable[socket.socket]]  # family -> a connected stack socket


def open_listeners(name: str, index: int, spec: PortSpec) -> list[socket.socket]:
    """The host-side sockets of `ports[index]`: 0.0.0.0 and [::] when no address is given
    (as Docker); a port the kernel picks is the same on both."""
    kind = socket.SOCK_STREAM if spec.protocol == "tcp" else socket.SOCK_DGRAM
    addresses = [spec.host_ip] if spec.host_ip else ["0.0.0.0", "::"]
    out: list[socket.socket] = []
    port = spec.host_port
    try:
        for ip in addresses:
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            s = socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
            try:
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind((ip, port))
            except OSError as e:
                s.close()
                if family == socket.AF_INET6 and not spec.host_ip and e.errno in (
                        errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                    continue  # no IPv6 on this host: 0.0.0.0 alone, as Docker
                shown = f"[{ip}]" if ":" in ip else ip
                raise ContainerError(name, f"ports[{index}]: cannot publish {shown}:{port}/"
                                     f"{spec.protocol}: {(e.strerror or str(e)).lower()}"
                                     ) from e
            if kind == socket.SOCK_STREAM:
                s.listen(512)
            port = s.getsockname()[1]
            out.append(s)
    except BaseException:
        for s in out:
            s.close()
        raise
    return out


# -- TCP --------------------------------------------------------------------------------------


async def _splice(src: socket.socket, dst: socket.socket) -> None:
    """src to dst until EOF, then half-close dst (request/response protocols need it)."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(w, F_SETPIPE_SZ, CHUNK)
        while True:
            try:
                n = os.splice(src.fileno(), w, CHUNK, flags=_SPLICE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(src)
                continue
            if n == 0:
                break
            while n:
                try:
                    n -= os.splice(r, dst.fileno(), n, flags=_SPLICE)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(dst)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
    finally:
        os.close(r)
        os.close(w)


async def _relay(client: socket.socket, connect: Connect, family: int) -> None:
    upstream: socket.socket | None = None
    try:
        try:
            upstream = await connect(family)
        except OSError:
            return  # the container is not listening (yet): the client sees a close
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_splice, client, upstream)
                nursery.start_soon(_splice, upstream, client)
        except* (ConnectionError, OSError):
            pass  # a peer vanished mid-transfer: both ends close below
    finally:
        for s in (client, upstream):
            if s is not None:
                trio.lowlevel.notify_closing(s)
                s.close()


async def _counted_relay(relays: trio.CapacityLimiter, client: socket.socket,
                         connect: Connect) -> None:
    async with relays:
        await _relay(client, connect, socket.AF_INET)


async def serve_tcp(listener: socket.socket, connect: Connect) -> None:
    """Accepts and relays, at most MAX_RELAYS connections at once per port (each holds six
    descriptors of the supervisor's)."""
    relays = trio.CapacityLimiter(MAX_RELAYS)
    try:
        async with trio.open_nursery() as nursery:
            while True:
                await trio.lowlevel.wait_readable(listener)
                async with relays:  # a slot first: past the cap, clients wait in the backlog
                    pass
                try:
                    client, _ = listener.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                except OSError as e:
                    if e.errno in (errno.EBADF, errno.EINVAL):
                        raise  # the listener was closed
                    # out of descriptors, or a network error handed up by accept: go on
                    await trio.sleep(0.1)
                    continue
                client.setblocking(False)
                nursery.start_soon(_counted_relay, relays, client, connect)
    finally:
        trio.lowlevel.notify_closing(listener)
        listener.close()


# -- UDP --------------------------------------------------------------------------------------


class _Flow:
    """One client address of a published UDP port: its upstream socket and last activity."""

    def __init__(self, up: trio.socket.SocketType) -> None:
        self.up = up
        self.last = trio.current_time()


async def serve_udp(listener: socket.socket, connect: Connect) -> None:
    """One upstream socket per client address; replies go back from the published port.  A
    flow ends after UDP_IDLE seconds with no datagram either way."""
    sock = trio.socket.from_stdlib_socket(listener)
    flows: dict[tuple[str, int], _Flow] = {}

    async def replies(addr: tuple[str, int], flow: _Flow) -> None:
        try:
            while True:
                with trio.move_on_at(flow.last + UDP_IDLE) as idle:
                    reply = await flow.up.recv(65535)
                if idle.cancelled_caught:
                    if trio.current_time() >= flow.last + UDP_IDLE:
                        break
                    continue  # traffic the other way meanwhile: wait on
                flow.last = trio.current_time()
                with contextlib.suppress(OSError):
                    await sock.sendto(reply, addr)
        except (OSError, trio.ClosedResourceError):  # gone, or evicted for a newer flow
            pass
        finally:
            if flows.get(addr) is flow:
                del flows[addr]
            flow.up.close()

    try:
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    data, addr = await sock.recvfrom(65535)
                except OSError:
                    continue
                flow = flows.get(addr)
                if flow is None:
                    if len(flows) >= MAX_FLOWS:  # the least recently active one makes room
                        oldest = min(flows, key=lambda a: flows[a].last)
                        flows.pop(oldest).up.close()
                    try:
                        flow = _Flow(trio.socket.from_stdlib_socket(
                            await connect(socket.AF_INET)))
                    except OSError:
                        continue
                    flows[addr] = flow
                    nursery.start_soon(replies, addr, flow)
                flow.last = trio.current_time()
                with contextlib.suppress(OSError):
                    await flow.up.send(data)
    finally:
        sock.close()
