"""Network namespaces and netlink: pyroute2's one home.  Sync, no trio.

A stack's network namespace is owned by one `NetnsThread`: a thread that unshares a new
network namespace for itself at birth and never leaves it.  Every netlink call and every
socket the stack needs inside it (DNS, the inner end of a published port) are made on that
thread, because setns() and pyroute2's sockets are per thread (kernel-recipes §4): one
long-lived IPRoute there costs ~2.5 ms per veth, against ~7 ms for a setns'd worker that
opens its own each time.  The namespace is held by a descriptor, not a bind mount, so it
vanishes with the supervisor and leaves nothing behind on the host.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import errno
import ipaddress
import os
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
T = TypeVar("T")


class NetlinkFailure(Exception):
    """A netlink or namespace call failed; `str()` says which and why."""


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise NetlinkFailure(f"{what}: {os.strerror(err)}")


def mac_for(address: str) -> str:
    """A MAC derived from the IPv4 address, as Docker's 02:42:…: a container restarted with
    its sticky address keeps its MAC, so its peers' ARP caches stay right."""
    packed = ipaddress.IPv4Address(address).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in packed)


def write_sysctl(name: str, value: str) -> None:
    """/proc/sys/net follows the calling thread's network namespace."""
    with open("/proc/sys/" + name.replace(".", "/"), "w") as f:
        f.write(value)


class NetnsThread:
    """A thread living in a network namespace of its own; `submit` runs jobs there.

    `ns_fd` holds the namespace (open it as /proc/self/fd/N to hand it to slirp4netns).
    `ipr` is the thread's IPRoute, made on first use.  `close` ends the thread; the
    namespace goes when its last holder (this descriptor, a process in it) is gone.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]
                                      | None] = queue.SimpleQueue()
        self._ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._ipr: Any = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self.ns_fd = self._ready.result()  # raises NetlinkFailure if unshare failed

    def _main(self) -> None:
        try:
            _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except (NetlinkFailure, OSError) as e:
            self._ready.set_exception(NetlinkFailure(str(e)))
            return
        self._ready.set_result(fd)
        while (job := self._jobs.get()) is not None:
            fn, fut = job
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as e:  # handed to the waiter
                    fut.set_exception(e)
        if self._ipr is not None:
            self._ipr.close()

    @property
    def ipr(self) -> Any:
        """This thread's IPRoute (call only from jobs)."""
        assert threading.current_thread() is self._thread
        if self._ipr is None:
            from pyroute2 import IPRoute  # type: ignore[import-untyped]  # heavy (~0.1 s): only when a network is made

            self._ipr = IPRoute()
        return self._ipr

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((fn, fut))
        return fut

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=10)
        os.close(self.ns_fd)

    # -- jobs (run on the thread) ---------------------------------------------------------

    def make_bridge(self, name: str, gateway: str, prefixlen: int) -> int:
        try:
            ipr = self.ipr
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            ipr.link("add", ifname=name, kind="bridge", address=mac_for(gateway))
            index: int = ipr.link_lookup(ifname=name)[0]
            ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
            ipr.link("set", index=index, state="up")
            write_sysctl("net.ipv4.ip_forward", "1")
        except Exception as e:
            raise NetlinkFailure(f"bridge {name}: {e}") from e
        return index

    def add_veth(self, name: str, bridge: int, pid: int, address: str) -> None:
        """A veth pair: `name` on the bridge here, `eth0` in PID `pid`'s namespace with the
        MAC of `address` (the container sets the address itself, see init.py)."""
        # A path, not a descriptor: pyroute2 may close a descriptor it was given (seen here).
        ns = f"/proc/{pid}/ns/net"
        try:
            ipr = self.ipr
            for attempt in (0, 1):
                try:
                    ipr.link("add", ifname=name, kind="veth", peer={
                        "ifname": "eth0", "net_ns_fd": ns, "address": mac_for(address)})
                    break
                except Exception as e:
                    # A veth of a run that just ended may linger a moment: remove, retry once.
                    if getattr(e, "code", 0) != errno.EEXIST or attempt:
                        raise
                    self.remove_link(name)
            index = ipr.link_lookup(ifname=name)[0]
            ipr.link("set", index=index, master=bridge, state="up")
        except NetlinkFailure:
            raise
        except Exception as e:
            raise NetlinkFailure(f"veth {name}: {e}") from e

    def remove_link(self, name: str) -> None:
        ipr = self.ipr
        found = ipr.link_lookup(ifname=name)
        if found:
            try:
                ipr.link("del", index=found[0])
            except Exception as e:
                if getattr(e, "code", 0) != errno.ENODEV:
                    raise NetlinkFailure(f"remove {name}: {e}") from e

    def links(self) -> list[str]:
        return [link.get_attr("IFLA_IFNAME") for link in self.ipr.get_links()]

    def socket(self, family: int, kind: int) -> socket.socket:
        """A socket of this namespace (a socket keeps the namespace it was made in)."""
        return socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
