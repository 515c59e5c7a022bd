"""A small tcpdump-like display filter over decoded packets (``--filter``).

Analysis stage, read side: ``compile_filter("tcp port 7096")`` returns a
predicate over ``DecodedPacket``. It understands the part of pcap-filter(7)
people type for diagnostics:

    ip  ip6  tcp  udp  icmp  icmp6  arp
    [src|dst] host ADDR      [src|dst] ADDR      (IPv4 or IPv6 address)
    [src|dst] port N         [src|dst] net CIDR  (or "net ADDR mask MASK")
    and  or  not  (&&  ||  !)  and parentheses

Primitives written side by side are joined by ``and`` (``tcp port 80`` is
``tcp and port 80``), and a bare value after ``or``/``and`` repeats the
previous qualifier, as tcpdump does (``port 80 or 443``, ``host a or b``).
Precedence is tcpdump's: ``not`` binds tightest, then ``and``, then ``or``.
Addresses are those of the innermost IP header (what ``DecodedPacket``
holds). Anything else is a ``UsageError`` naming the bad token.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from netdiag.analysis.packet import DecodedPacket, FrameClass
from netdiag.errors import UsageError

Predicate = Callable[[DecodedPacket], bool]

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
PORT_PROTOCOLS = (TCP, UDP, 132)  # SCTP ports sit at the same offsets

TOKEN = re.compile(r"\s*(\(|\)|&&|\|\||!|[^\s()!]+)")
KEYWORDS = {"and", "or", "not", "&&", "||", "!", "(", ")"}
PROTOCOLS: dict[str, Predicate] = {
    "ip": lambda packet: packet.ip_version == 4,
    "ip6": lambda packet: packet.ip_version == 6,
    "tcp": lambda packet: packet.proto == TCP,
    "udp": lambda packet: packet.proto == UDP,
    "icmp": lambda packet: packet.proto == ICMP,
    "icmp6": lambda packet: packet.proto == ICMPV6,
    "arp": lambda packet: packet.frame_class == FrameClass.ARP,
}
SYNTAX_ADVICE = (
    "filters look like 'tcp port 7096', 'icmp and host 10.0.1.0', "
    "'not arp', 'src net 10.0.2.0/24 or ip6'"
)


def _usage(message: str) -> UsageError:
    return UsageError(f"bad --filter expression: {message}", SYNTAX_ADVICE)


def tokenize(expression: str) -> list[str]:
    tokens = []
    position = 0
    text = expression.rstrip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if match is None:  # pragma: no cover - the pattern matches any non-space run
            raise _usage(f"cannot read {text[position:]!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def _address(token: str) -> bytes:
    try:
        return ipaddress.ip_address(token).packed
    except ValueError as error:
        raise _usage(f"{token!r} is not an IPv4 or IPv6 address") from error


def _network(token: str) -> tuple[bytes, bytes]:
    """(network address, mask) as packed bytes of the same length."""
    try:
        network = ipaddress.ip_network(token, strict=False)
    except ValueError as error:
        raise _usage(f"{token!r} is not a network (use ADDR/PREFIX)") from error
    return network.network_address.packed, network.netmask.packed


def _port(token: str) -> int:
    if not token.isdigit() or not 0 <= int(token) <= 65535:
        raise _usage(f"{token!r} is not a port number (0-65535)")
    return int(token)


def _in_network(address: bytes, network: bytes, mask: bytes) -> bool:
    if len(address) != len(network):
        return False
    return all(byte & bits == net for byte, bits, net in zip(address, mask, network, strict=True))


def _endpoints(
    direction: str,
    source: Callable[[DecodedPacket], object],
    destination: Callable[[DecodedPacket], object],
) -> Callable[[Callable[[object], bool]], Predicate]:
    """Apply a test to the source, the destination, or either, by qualifier."""

    def build(test: Callable[[object], bool]) -> Predicate:
        if direction == "src":
            return lambda packet: test(source(packet))
        if direction == "dst":
            return lambda packet: test(destination(packet))
        return lambda packet: test(source(packet)) or test(destination(packet))

    return build


def _either(left: Predicate, right: Predicate) -> Predicate:
    return lambda packet: left(packet) or right(packet)


def _both(left: Predicate, right: Predicate) -> Predicate:
    return lambda packet: left(packet) and right(packet)


@dataclass(slots=True)
class _Qualifier:
    """The qualifier of the last primitive, for tcpdump's ``port 80 or 443`` shorthand."""

    direction: str = ""  # "", "src", "dst"
    kind: str = ""  # "host", "port", "net"


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.position = 0
        self.last = _Qualifier()

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise _usage("the expression ends too early")
        self.position += 1
        return token

    def parse(self) -> Predicate:
        if not self.tokens:
            raise _usage("it is empty")
        predicate = self.parse_or()
        if self.peek() is not None:
            raise _usage(f"unexpected {self.peek()!r}")
        return predicate

    def parse_or(self) -> Predicate:
        left = self.parse_and()
        while self.peek() in ("or", "||"):
            self.take()
            right = self.parse_and()
            left = _either(left, right)
        return left

    def parse_and(self) -> Predicate:
        left = self.parse_not()
        while True:
            token = self.peek()
            if token in ("and", "&&"):
                self.take()
            elif token is None or token in ("or", "||", ")"):
                return left
            # else: juxtaposed primitives, an implicit "and"
            right = self.parse_not()
            left = _both(left, right)

    def parse_not(self) -> Predicate:
        if self.peek() in ("not", "!"):
            self.take()
            inner = self.parse_not()
            return lambda packet: not inner(packet)
        return self.parse_primary()

    def parse_primary(self) -> Predicate:
        token = self.take()
        if token == "(":
            inner = self.parse_or()
            if self.peek() != ")":
                raise _usage("a '(' is not closed")
            self.take()
            return inner
        if token in KEYWORDS:
            raise _usage(f"unexpected {token!r}")
        lowered = token.lower()
        if lowered in PROTOCOLS:
            self.last = _Qualifier()
            return PROTOCOLS[lowered]
        direction = ""
        if lowered in ("src", "dst"):
            direction = lowered
            following = self.peek()
            if following is None or following in KEYWORDS:
                raise _usage(f"{token!r} needs host, port, net or an address after it")
            lowered = following.lower()
            if lowered in ("host", "port", "net"):
                self.take()
                return self.qualified(direction, lowered, self.take())
            return self.qualified(direction, "host", self.take())
        if lowered in ("host", "port", "net"):
            return self.qualified("", lowered, self.take())
        if self.last.kind:
            # tcpdump's shorthand: "port 80 or 443", "host a or b"
            return self.qualified(self.last.direction, self.last.kind, token)
        if _looks_like_address(token):
            return self.qualified("", "host", token)
        raise _usage(f"unknown word {token!r}")

    def qualified(self, direction: str, kind: str, value: str) -> Predicate:
        if value in KEYWORDS:
            raise _usage(f"{kind} needs a value, not {value!r}")
        self.last = _Qualifier(direction, kind)
        if kind == "port":
            port = _port(value)
            ports = _endpoints(direction, lambda p: p.sport, lambda p: p.dport)
            test = ports(lambda number: number == port)
            return lambda packet: (
                packet.proto in PORT_PROTOCOLS and packet.fragment is not None and (test(packet))
            )
        addresses = _endpoints(direction, lambda p: p.src, lambda p: p.dst)
        if kind == "host":
            packed = _address(value)
            return addresses(lambda address: address == packed)
        if self.peek() == "mask":
            self.take()
            network, mask = _network(f"{value}/{self.take()}")
        else:
            network, mask = _network(value)
        return addresses(
            lambda address: isinstance(address, bytes) and _in_network(address, network, mask)
        )


def _looks_like_address(token: str) -> bool:
    try:
        ipaddress.ip_address(token)
    except ValueError:
        return False
    return True


def compile_filter(expression: str) -> Predicate:
    """Parse ``expression`` into a predicate over ``DecodedPacket`` (UsageError if bad)."""
    return _Parser(tokenize(expression)).parse()
