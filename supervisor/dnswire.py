"""The DNS wire format, as much as a stack's name server needs (RFC 1035): read one
question, answer it with A records, NODATA or NXDOMAIN.  Pure functions on bytes."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
RCODE_OK = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
TTL = 0  # names follow containers live: resolvers must not cache them


@dataclass(frozen=True)
class Question:
    id: int
    flags: int
    name: str  # lower-case, no trailing dot
    qtype: int
    qclass: int
    raw: bytes  # the question section as received, echoed in the answer


def parse_query(packet: bytes) -> Question | None:
    """The first question of a standard query; None if the packet is not one we can read."""
    if len(packet) < 12:
        return None
    ident, flags, qdcount = struct.unpack_from("!HHH", packet)
    if flags & 0x8000 or qdcount < 1:  # a response, or no question
        return None
    labels: list[str] = []
    pos = 12
    while True:
        if pos >= len(packet):
            return None
        length = packet[pos]
        if length & 0xC0:  # compression in a question: not from a normal stub resolver
            return None
        pos += 1
        if length == 0:
            break
        labels.append(packet[pos:pos + length].decode("ascii", "replace").lower())
        pos += length
    if pos + 4 > len(packet):
        return None
    qtype, qclass = struct.unpack_from("!HH", packet, pos)
    return Question(ident, flags, ".".join(labels), qtype, qclass, packet[12:pos + 4])


def answer(q: Question, addresses: list[str] | None, *, rcode: int = RCODE_OK) -> bytes:
    """The reply to `q`: A records for `addresses` (empty list: NODATA), None: NXDOMAIN."""
    if addresses is None and rcode == RCODE_OK:
        rcode = RCODE_NXDOMAIN
    records = b""
    count = 0
    if addresses and q.qtype == TYPE_A and q.qclass == CLASS_IN:
        for ip in addresses:
            # name: a pointer to the question's name at offset 12
            records += struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4)
            records += socket.inet_aton(ip)
            count += 1
    # QR, opcode copied, AA, RD copied, RA
    flags = 0x8000 | (q.flags & 0x7800) | 0x0400 | (q.flags & 0x0100) | 0x0080 | rcode
    header = struct.pack("!HHHHHH", q.id, flags, 1, count, 0, 0)
    return header + q.raw + records


def error(packet: bytes, rcode: int) -> bytes | None:
    """A bare error reply echoing the id of an unreadable query; None if too short or a
    response itself (two servers must not bounce errors at each other)."""
    if len(packet) < 12:
        return None
    ident, flags = struct.unpack_from("!HH", packet)
    if flags & 0x8000:
        return None
    return struct.pack("!HHHHHH", ident, 0x8000 | (flags & 0x7900) | 0x0080 | rcode, 0, 0, 0, 0)
