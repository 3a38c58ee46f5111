"""The network keys of the stack file: ``network_mode``, ``links``, ``ports``, ``expose``,
``extra_hosts`` below a container and ``[stack.network]``, read as Docker and Compose read
them (``docker run -p``, ``--link``, ``--add-host``, ``--network``)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

import msgspec

from supervisor.config_keys import Ctx, Field, Invalid, read_bool, typed
from supervisor.paths import NAME_RE
from supervisor.units import show

DEFAULT_SUBNET = "10.88.0.0/16"  # podman's; every stack has its own namespace, so no clash
SLIRP_SUBNET = ipaddress.IPv4Network("10.0.2.0/24")  # slirp4netns's own, in the namespace


class PortSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One published port: ``host_ip:host_port -> container_port/protocol``.

    ``host_ip`` empty: every address (0.0.0.0 and [::]), as Docker's; ``host_port`` 0: one
    the kernel picks, shown by ``supervise port``."""

    host_ip: str = ""
    host_port: int = 0
    container_port: int
    protocol: Literal["tcp", "udp"] = "tcp"


class LinkSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    container: str
    alias: str


class ExposedPort(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: int
    protocol: Literal["tcp", "udp"] = "tcp"


_PORT_EXPECTED = "'[IP:][HOST:]CONTAINER[/tcp|udp]' such as '8080:3000'"


def _port_number(text: str, what: str, spec: str) -> int:
    if not text.isdigit():
        raise Invalid(f"expected {_PORT_EXPECTED}, got {show(spec)}")
    number = int(text)
    if not 1 <= number <= 65535:
        raise Invalid(f"{what} port {number} is out of range 1-65535, got {show(spec)}")
    return number


def parse_port(spec: str) -> PortSpec:
    """``8080:3000``, ``127.0.0.1:6380:6379``, ``5353:53/udp``, ``3000``, ``127.0.0.1::3000``,
    ``[::1]:8080:3000``."""
    rest, _, proto = spec.partition("/")
    if proto and proto not in ("tcp", "udp"):
        raise Invalid(f"expected the protocol 'tcp' or 'udp', got {show(spec)}")
    ip = ""
    if rest.startswith("["):
        ip, bracket, rest = rest[1:].partition("]:")
        if not bracket:
            raise Invalid(f"expected {_PORT_EXPECTED}, got {show(spec)}")
        parts = rest.split(":")
        if len(parts) != 2:
            raise Invalid(f"expected {_PORT_EXPECTED}, got {show(spec)}")
    else:
        parts = rest.split(":")
        if len(parts) == 3:
            ip = parts.pop(0)
        elif len(parts) > 3:
            raise Invalid(f"expected {_PORT_EXPECTED}, got {show(spec)}")
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise Invalid(f"expected an IP address before the host port, got {show(spec)}"
                          ) from None
    if any("-" in part for part in parts):
        raise Invalid(f"port ranges are not supported, got {show(spec)}")
    host = _port_number(parts[0], "host", spec) if len(parts) == 2 and parts[0] else 0
    ctr = _port_number(parts[-1], "container", spec)
    return PortSpec(host_ip=ip, host_port=host, container_port=ctr,
                    protocol="udp" if proto == "udp" else "tcp")


def read_port(value: object, ctx: Ctx) -> PortSpec:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return parse_port(typed(value, str))


def show_port(p: PortSpec) -> str:
    ip = f"[{p.host_ip}]" if ":" in p.host_ip else p.host_ip
    host = f"{ip}:" if ip else ""
    host += f"{p.host_port}:" if p.host_port else (":" if ip else "")
    return f"{host}{p.container_port}" + ("/udp" if p.protocol == "udp" else "")


def read_expose(value: object, ctx: Ctx) -> ExposedPort:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text: str = typed(value, str)
    m = re.fullmatch(r"(\d+)(?:/(tcp|udp))?", text)
    if not m:
        raise Invalid(f"expected 'PORT[/tcp|udp]' such as '6379', got {show(text)}")
    return ExposedPort(port=_port_number(m[1], "exposed", text),
                       protocol=m[2] or "tcp")  # type: ignore[arg-type]


def show_expose(e: ExposedPort) -> str:
    return f"{e.port}" + ("/udp" if e.protocol == "udp" else "")


def read_link(value: object, ctx: Ctx) -> LinkSpec:
    text: str = typed(value, str)
    name, _, alias = text.partition(":")
    if not NAME_RE.fullmatch(name) or (alias and not NAME_RE.fullmatch(alias)):
        raise Invalid(f"expected 'NAME' or 'NAME:ALIAS' such as 'redis_primary:db', "
                      f"got {show(text)}")
    return LinkSpec(container=name, alias=alias or name)


def show_link(link: LinkSpec) -> str:
    return link.container if link.alias == link.container else f"{link.container}:{link.alias}"


_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?")


def read_extra_hosts(value: object, ctx: Ctx) -> dict[str, str]:
    """``["db:10.0.0.5"]`` (docker run --add-host) or ``{ db = "10.0.0.5" }`` (Compose)."""
    if isinstance(value, dict):
        pairs = [(k, v, k) for k, v in value.items()]
    else:
        items = typed(value, list[str] | str)
        pairs = []
        for i, item in enumerate([items] if isinstance(items, str) else items):
            name, sep, ip = item.partition(":") if "=" not in item else item.partition("=")
            if not sep:
                raise Invalid(f"expected 'NAME:IP' such as 'db:10.0.0.5', got {show(item)}", (i,))
            pairs.append((name, ip, i))
    out: dict[str, str] = {}
    for name, ip, at in pairs:
        if not isinstance(ip, str) or not _HOST_NAME.fullmatch(name):
            raise Invalid(f"expected a host name and an IP such as 'db:10.0.0.5', "
                          f"got {show(f'{name}:{ip}')}", (at,))
        try:
            ipaddress.ip_address(ip.strip("[]"))
        except ValueError:
            raise Invalid(f"expected an IP address for {name!r}, got {show(ip)}", (at,)) from None
        out[name] = ip.strip("[]")
    return out


def read_network_mode(value: object, ctx: Ctx) -> str:
    text: str = typed(value, str)
    kind, _, target = text.partition(":")
    if text in ("bridge", "none", "host") or (
            kind in ("container", "service") and NAME_RE.fullmatch(target)):
        return "container:" + target if kind == "service" else text
    raise Invalid(f"expected 'bridge', 'none', 'host' or 'container:NAME', got {show(text)}")


def read_subnet(value: object, ctx: Ctx) -> str:
    text: str = typed(value, str)
    try:
        net = ipaddress.IPv4Network(text)
    except ValueError:
        raise Invalid(f"expected an IPv4 subnet such as {DEFAULT_SUBNET!r}, got {show(text)}"
                      ) from None
    if net.prefixlen > 29:
        raise Invalid(f"expected a subnet of /29 or larger, got {show(text)}")
    return str(net)


class StackNetwork(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[stack.network]``: the stack's own network namespace."""

    subnet: Annotated[str, Field(read_subnet)] = DEFAULT_SUBNET
    # Outbound access through slirp4netns (a user-mode stack): the host is never changed.
    outbound: Annotated[bool, Field(read_bool)] = True
    # Let containers reach the host's loopback at 10.0.2.2 (podman's allow_host_loopback).
    host_loopback: Annotated[bool, Field(read_bool)] = False

    def __post_init__(self) -> None:
        if self.outbound and ipaddress.IPv4Network(self.subnet).overlaps(SLIRP_SUBNET):
            raise Invalid(f"overlaps {SLIRP_SUBNET}, where outbound access (slirp4netns) "
                          "lives; choose another subnet or set outbound = false", ("subnet",))
