"""Address leases of a stack network: sticky per container name, persisted with the project.

Pure bookkeeping (the file is read and written by `network.py`): the gateway is the
subnet's first address, containers take the lowest free address after it, and a name keeps
its address until its container is removed, so a container restarted by its policy comes
back where its peers (and their ARP caches, see `netlink.mac_for`) expect it.
"""

from __future__ import annotations

import ipaddress

import msgspec


class IpamError(Exception):
    """The subnet is full."""


class Leases(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`network.json` in the project's state dir."""

    subnet: str
    leases: dict[str, str] = {}


def gateway(subnet: str) -> str:
    return str(next(ipaddress.IPv4Network(subnet).hosts()))


def for_subnet(saved: Leases | None, subnet: str) -> Leases:
    """The saved leases that still fit `subnet` (a changed subnet drops the others)."""
    if saved is None:
        return Leases(subnet=subnet)
    net = ipaddress.IPv4Network(subnet)
    gw = gateway(subnet)
    kept = {name: ip for name, ip in saved.leases.items()
            if ipaddress.IPv4Address(ip) in net and ip != gw}
    return Leases(subnet=subnet, leases=kept)


def lease(leases: Leases, name: str) -> tuple[str, bool]:
    """The address of `name`, leasing the lowest free one if it has none; True if new."""
    if name in leases.leases:
        return leases.leases[name], False
    taken = set(leases.leases.values())
    hosts = ipaddress.IPv4Network(leases.subnet).hosts()
    next(hosts)  # the gateway
    for candidate in hosts:
        ip = str(candidate)
        if ip not in taken:
            leases.leases[name] = ip
            return ip, True
    raise IpamError(f"subnet {leases.subnet} has no free address left for {name!r}")


def release(leases: Leases, name: str) -> bool:
    return leases.leases.pop(name, None) is not None
