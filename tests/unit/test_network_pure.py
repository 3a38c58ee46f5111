"""The pure parts of networking: port specs, address leases, the DNS wire format."""

from __future__ import annotations

import socket
import struct

import pytest

from supervisor import dnswire, ipam
from supervisor.config_keys import Invalid
from supervisor.config_net import PortSpec, parse_port, show_port
from supervisor.linux.netlink import mac_for


@pytest.mark.parametrize(("text", "spec"), [
    ("8080:3000", PortSpec(host_port=8080, container_port=3000)),
    ("3000", PortSpec(container_port=3000)),
    ("127.0.0.1:6380:6379", PortSpec(host_ip="127.0.0.1", host_port=6380, container_port=6379)),
    ("127.0.0.1::3000", PortSpec(host_ip="127.0.0.1", container_port=3000)),
    ("5353:53/udp", PortSpec(host_port=5353, container_port=53, protocol="udp")),
    ("[::1]:8080:80", PortSpec(host_ip="::1", host_port=8080, container_port=80)),
    ("80/tcp", PortSpec(container_port=80)),
])
def test_parse_port_as_docker_run_p(text: str, spec: PortSpec) -> None:
    assert parse_port(text) == spec
    assert parse_port(show_port(spec)) == spec  # `supervise config` prints it back


@pytest.mark.parametrize("text", ["", "a:80", "8080-8090:80", "1.2.3.4:80", "0:80",
                                  "80:0", "1:2:3:4", "[::1]80", "80/icmp"])
def test_parse_port_refuses(text: str) -> None:
    with pytest.raises(Invalid):
        parse_port(text)


def test_leases_are_sticky_lowest_free_and_released() -> None:
    leases = ipam.for_subnet(None, "10.88.0.0/29")  # gateway .1, hosts .2-.6
    assert ipam.gateway(leases.subnet) == "10.88.0.1"
    assert ipam.lease(leases, "a") == ("10.88.0.2", True)
    assert ipam.lease(leases, "b") == ("10.88.0.3", True)
    assert ipam.lease(leases, "a") == ("10.88.0.2", False)  # sticky
    assert ipam.release(leases, "a")
    assert ipam.lease(leases, "c") == ("10.88.0.2", True)  # lowest free
    for name in "def":
        ipam.lease(leases, name)
    with pytest.raises(ipam.IpamError, match="no free address left for 'g'"):
        ipam.lease(leases, "g")


def test_leases_outside_a_changed_subnet_are_dropped() -> None:
    saved = ipam.Leases(subnet="10.88.0.0/16", leases={"a": "10.88.0.2", "b": "10.77.0.2"})
    kept = ipam.for_subnet(saved, "10.77.0.0/16")
    assert kept.leases == {"b": "10.77.0.2"}


def test_mac_follows_the_address() -> None:
    assert mac_for("10.88.0.2") == "02:42:0a:58:00:02"


def _query(name: str, qtype: int = dnswire.TYPE_A, ident: int = 0x1234) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + struct.pack(
        "!HH", qtype, dnswire.CLASS_IN)


def test_dns_answers_a_records() -> None:
    q = dnswire.parse_query(_query("Redis_Primary"))
    assert q is not None and q.name == "redis_primary" and q.qtype == dnswire.TYPE_A
    reply = dnswire.answer(q, ["10.88.0.2"])
    ident, flags, qd, an, _, _ = struct.unpack_from("!HHHHHH", reply)
    assert (ident, qd, an) == (0x1234, 1, 1)
    assert flags & 0x8000 and flags & 0x0100 and flags & 0xF == dnswire.RCODE_OK
    assert reply.endswith(socket.inet_aton("10.88.0.2"))


def test_dns_nodata_nxdomain_and_garbage() -> None:
    q = dnswire.parse_query(_query("web", dnswire.TYPE_AAAA))
    assert q is not None
    nodata = dnswire.answer(q, [])
    assert struct.unpack_from("!HHHH", nodata)[3] == 0
    assert struct.unpack_from("!H", nodata, 2)[0] & 0xF == dnswire.RCODE_OK
    nx = dnswire.answer(q, None)
    assert struct.unpack_from("!H", nx, 2)[0] & 0xF == dnswire.RCODE_NXDOMAIN
    assert dnswire.parse_query(b"\x00\x01") is None
    assert dnswire.parse_query(_query("web")[:-2]) is None
    response = bytearray(_query("web"))
    response[2] |= 0x80  # a response is never answered
    assert dnswire.parse_query(bytes(response)) is None
    err = dnswire.error(b"\x12\x34" + bytes(10), dnswire.RCODE_FORMERR)
    assert err is not None and err[:2] == b"\x12\x34"
    # an unreadable *response* gets no answer: two servers must not bounce errors
    assert dnswire.error(b"\x12\x34\x80" + bytes(9), dnswire.RCODE_FORMERR) is None
