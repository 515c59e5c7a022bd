"""Read-only snapshots of a network namespace, taken through netlink.

A ``NamespaceReader`` opens its netlink sockets (rtnetlink and sock_diag)
while the thread is inside the namespace, so every question it asks is
answered by that namespace's kernel state; it never changes anything. It is
the diagnose stage's only window on the kernel besides the probes.

What it reads: links (admin state, operstate, carrier, MTU, and for a veth the
peer's ifindex and the netns id under which this namespace knows the peer's
namespace), IPv4 addresses, the main routing table, the neighbour (ARP) table,
``net.ipv4.ip_forward``, and listening TCP sockets (inet_diag, as ``ss -ltn``
reads them, without parsing ``ss``). ``route_get`` is ``ip route get``: a
lookup, nothing is sent.

Kernel facts this relies on:
- ``/proc/sys/net`` resolves to the namespace of the *thread* that opens it,
  so the forwarding sysctl is read while inside the namespace.
- A veth's ``IFLA_LINK_NETNSID`` is an id local to the namespace asking; the
  only way to learn which namespace it names is to ask that same namespace for
  the id of each candidate (``RTM_GETNSID`` with a file descriptor), as
  ``ip link`` does to print ``link-netns``. Asking does not allocate an id.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netdiag.live.namespaces import inside, namespace_path

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
MAIN_TABLE = 254
TCP_LISTEN = 10  # SS_LISTEN in inet_diag's state numbering

NUD_INCOMPLETE = 0x01
NUD_FAILED = 0x20
NEIGHBOUR_STATE_NAMES = {
    0x01: "INCOMPLETE",
    0x02: "REACHABLE",
    0x04: "STALE",
    0x08: "DELAY",
    0x10: "PROBE",
    0x20: "FAILED",
    0x40: "NOARP",
    0x80: "PERMANENT",
}
ROUTE_TYPE_NAMES = {1: "unicast", 2: "local", 3: "broadcast", 6: "blackhole", 7: "unreachable"}


@dataclass(frozen=True, slots=True)
class LinkState:
    index: int
    name: str
    kind: str | None  # "veth", "bridge", None for lo / unknown
    admin_up: bool  # IFF_UP: `ip link set IF up`
    carrier: bool  # IFF_LOWER_UP: a veth whose peer is down has none (NO-CARRIER)
    operstate: str  # UP, DOWN, LOWERLAYERDOWN, UNKNOWN
    mtu: int
    peer_index: int | None  # IFLA_LINK: the veth peer's ifindex
    peer_netnsid: int | None  # IFLA_LINK_NETNSID; None when the peer shares the namespace
    addresses: tuple[ipaddress.IPv4Interface, ...]
    master_index: int | None = None  # IFLA_MASTER: the bridge this link is a port of

    @property
    def loopback(self) -> bool:
        return self.name == "lo"

    def describe(self) -> str:
        state = "UP" if self.admin_up else "DOWN"
        carrier = "" if self.carrier or not self.admin_up else ", NO-CARRIER"
        return f"{self.name} {state}{carrier}, mtu {self.mtu}"

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "kind": self.kind,
            "admin_up": self.admin_up,
            "carrier": self.carrier,
            "operstate": self.operstate,
            "mtu": self.mtu,
            "peer_index": self.peer_index,
            "peer_netnsid": self.peer_netnsid,
            "addresses": [str(address) for address in self.addresses],
            "master_index": self.master_index,
        }


@dataclass(frozen=True, slots=True)
class RouteEntry:
    destination: ipaddress.IPv4Network
    interface: str | None
    gateway: ipaddress.IPv4Address | None
    scope: int
    route_type: str

    def __str__(self) -> str:
        destination = "default" if self.destination.prefixlen == 0 else str(self.destination)
        kind = "" if self.route_type == "unicast" else f"{self.route_type} "
        via = f" via {self.gateway}" if self.gateway is not None else ""
        device = f" dev {self.interface}" if self.interface else ""
        return f"{kind}{destination}{via}{device}"


@dataclass(frozen=True, slots=True)
class NeighbourEntry:
    address: ipaddress.IPv4Address
    interface_index: int
    state: int

    @property
    def state_name(self) -> str:
        names = [name for bit, name in NEIGHBOUR_STATE_NAMES.items() if self.state & bit]
        return "|".join(names) or "NONE"

    @property
    def unresolved(self) -> bool:
        return bool(self.state & (NUD_INCOMPLETE | NUD_FAILED))


@dataclass(frozen=True, slots=True)
class ListeningSocket:
    address: str  # "0.0.0.0", "::", or a specific address
    port: int

    def accepts(self, destination: ipaddress.IPv4Address, port: int) -> bool:
        if port != self.port:
            return False
        # A v6 wildcard socket takes IPv4 too unless IPV6_V6ONLY; counted as accepting.
        return self.address in ("0.0.0.0", "::", str(destination), f"::ffff:{destination}")


@dataclass(frozen=True, slots=True)
class RouteAnswer:
    """``ip -n NS route get DST``: where the kernel would send, or why it cannot."""

    destination: ipaddress.IPv4Address
    interface_index: int | None
    interface: str | None
    gateway: ipaddress.IPv4Address | None
    preferred_source: ipaddress.IPv4Address | None
    route_type: str
    error_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None

    @property
    def error(self) -> str | None:
        return None if self.error_code is None else os.strerror(self.error_code)

    @property
    def next_hop(self) -> ipaddress.IPv4Address:
        return self.gateway if self.gateway is not None else self.destination

    def describe(self) -> str:
        if self.error_code is not None:
            return f"{self.destination}: {self.error}"
        via = f" via {self.gateway}" if self.gateway is not None else ""
        source = f" src {self.preferred_source}" if self.preferred_source else ""
        kind = "" if self.route_type == "unicast" else f"{self.route_type} "
        return f"{kind}{self.destination}{via} dev {self.interface}{source}"


@dataclass(frozen=True, slots=True)
class NamespaceState:
    """What one namespace looked like when it was read; nothing here is live."""

    reference: str
    identity: tuple[int, int]  # (device, inode) of its nsfs file
    links: tuple[LinkState, ...]
    routes: tuple[RouteEntry, ...]
    neighbours: tuple[NeighbourEntry, ...]
    forwarding: bool | None  # None when the sysctl could not be read
    listeners: tuple[ListeningSocket, ...]

    def link(self, name: str) -> LinkState | None:
        return next((link for link in self.links if link.name == name), None)

    def link_by_index(self, index: int | None) -> LinkState | None:
        return next((link for link in self.links if link.index == index), None)

    def non_loopback_links(self) -> tuple[LinkState, ...]:
        return tuple(link for link in self.links if not link.loopback)

    def addresses(self) -> tuple[ipaddress.IPv4Interface, ...]:
        return tuple(address for link in self.non_loopback_links() for address in link.addresses)

    def owner_link(self, address: ipaddress.IPv4Address) -> LinkState | None:
        """The interface carrying ``address`` (loopback included), if this namespace has it."""
        for link in self.links:
            if any(assigned.ip == address for assigned in link.addresses):
                return link
        return None

    def neighbour(self, address: ipaddress.IPv4Address, index: int) -> NeighbourEntry | None:
        return next(
            (n for n in self.neighbours if n.address == address and n.interface_index == index),
            None,
        )

    def listening_on(self, address: ipaddress.IPv4Address, port: int) -> bool:
        return any(listener.accepts(address, port) for listener in self.listeners)


def namespace_identity_of(reference: str) -> tuple[int, int]:
    status = os.stat(namespace_path(reference))
    return (status.st_dev, status.st_ino)


def _attribute(message: Any, name: str) -> Any:
    return message.get_attr(name)


def _link_state(message: Any, addresses: dict[int, list[ipaddress.IPv4Interface]]) -> LinkState:
    flags = int(message["flags"])
    link_info = _attribute(message, "IFLA_LINKINFO")
    kind = link_info.get_attr("IFLA_INFO_KIND") if link_info is not None else None
    carrier = _attribute(message, "IFLA_CARRIER")
    index = int(message["index"])
    peer_index = _attribute(message, "IFLA_LINK")
    peer_netnsid = _attribute(message, "IFLA_LINK_NETNSID")
    return LinkState(
        index=index,
        name=str(_attribute(message, "IFLA_IFNAME")),
        kind=str(kind) if kind is not None else None,
        admin_up=bool(flags & IFF_UP),
        carrier=bool(carrier) if carrier is not None else bool(flags & IFF_LOWER_UP),
        operstate=str(_attribute(message, "IFLA_OPERSTATE") or "UNKNOWN"),
        mtu=int(_attribute(message, "IFLA_MTU") or 0),
        # Without a netns id the peer shares the namespace, so it cannot be itself.
        peer_index=(
            int(peer_index)
            if peer_index is not None and (peer_netnsid is not None or peer_index != index)
            else None
        ),
        peer_netnsid=int(peer_netnsid) if peer_netnsid is not None else None,
        addresses=tuple(addresses.get(index, ())),
        master_index=int(master) if (master := _attribute(message, "IFLA_MASTER")) else None,
    )


class NamespaceReader:
    """Netlink sockets opened inside one namespace; read-only questions about it."""

    def __init__(self, reference: str) -> None:
        from pyroute2 import IPRoute

        self.reference = reference
        self.path: Path = namespace_path(reference)  # InputError when missing
        self.identity = namespace_identity_of(reference)
        with inside(reference):
            # The socket belongs to the namespace it is opened in, whichever
            # thread uses it later.
            self._route_socket: Any = IPRoute()
        self._names: dict[int, str] = {}

    def close(self) -> None:
        # An open socket would keep a removed namespace alive: always close.
        self._route_socket.close()

    # ---- snapshot -----------------------------------------------------------------------

    def snapshot(self) -> NamespaceState:
        addresses: dict[int, list[ipaddress.IPv4Interface]] = {}
        for message in self._route_socket.get_addr(family=socket.AF_INET):
            address = _attribute(message, "IFA_ADDRESS") or _attribute(message, "IFA_LOCAL")
            addresses.setdefault(int(message["index"]), []).append(
                ipaddress.IPv4Interface(f"{address}/{message['prefixlen']}")
            )
        links = tuple(_link_state(message, addresses) for message in self._route_socket.get_links())
        self._names = {link.index: link.name for link in links}
        return NamespaceState(
            reference=self.reference,
            identity=self.identity,
            links=links,
            routes=self._routes(),
            neighbours=self._neighbours(),
            forwarding=self._forwarding(),
            listeners=self._listeners(),
        )

    def _routes(self) -> tuple[RouteEntry, ...]:
        routes = []
        for message in self._route_socket.get_routes(family=socket.AF_INET, table=MAIN_TABLE):
            destination = _attribute(message, "RTA_DST") or "0.0.0.0"
            gateway = _attribute(message, "RTA_GATEWAY")
            routes.append(
                RouteEntry(
                    destination=ipaddress.IPv4Network(f"{destination}/{message['dst_len']}"),
                    interface=self._names.get(int(_attribute(message, "RTA_OIF") or 0)),
                    gateway=ipaddress.IPv4Address(gateway) if gateway else None,
                    scope=int(message["scope"]),
                    route_type=ROUTE_TYPE_NAMES.get(int(message["type"]), str(message["type"])),
                )
            )
        return tuple(routes)

    def _neighbours(self) -> tuple[NeighbourEntry, ...]:
        entries = []
        for message in self._route_socket.get_neighbours(family=socket.AF_INET):
            address = _attribute(message, "NDA_DST")
            if address is None:
                continue
            entries.append(
                NeighbourEntry(
                    address=ipaddress.IPv4Address(address),
                    interface_index=int(message["ifindex"]),
                    state=int(message["state"]),
                )
            )
        return tuple(entries)

    def _forwarding(self) -> bool | None:
        try:
            # Resolved against the namespace of the thread that opens it.
            with inside(self.reference):
                value = Path("/proc/sys/net/ipv4/ip_forward").read_text(encoding="ascii")
        except OSError:
            return None
        return value.strip() == "1"

    def _listeners(self) -> tuple[ListeningSocket, ...]:
        from pyroute2 import DiagSocket

        listeners = []
        with inside(self.reference):
            diag = DiagSocket()
        try:
            diag.bind()
            for family in (socket.AF_INET, socket.AF_INET6):
                for message in diag.get_sock_stats(family=family, states=1 << TCP_LISTEN):
                    listeners.append(
                        ListeningSocket(str(message["idiag_src"]), int(message["idiag_sport"]))
                    )
        finally:
            diag.close()
        return tuple(listeners)

    # ---- live questions -----------------------------------------------------------------

    def neighbours(self) -> tuple[NeighbourEntry, ...]:
        return self._neighbours()

    def route_get(self, destination: ipaddress.IPv4Address) -> RouteAnswer:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            answer = self._route_socket.route("get", dst=str(destination))[0]
        except NetlinkError as error:
            return RouteAnswer(destination, None, None, None, None, "none", error.code)
        index = _attribute(answer, "RTA_OIF")
        gateway = _attribute(answer, "RTA_GATEWAY")
        source = _attribute(answer, "RTA_PREFSRC")
        interface = None
        if index is not None:
            interface = self._names.get(int(index))
            if interface is None:
                links = self._route_socket.get_links(int(index))
                interface = str(_attribute(links[0], "IFLA_IFNAME")) if links else None
        return RouteAnswer(
            destination=destination,
            interface_index=int(index) if index is not None else None,
            interface=interface,
            gateway=ipaddress.IPv4Address(gateway) if gateway else None,
            preferred_source=ipaddress.IPv4Address(source) if source else None,
            route_type=ROUTE_TYPE_NAMES.get(int(answer["type"]), str(answer["type"])),
        )

    def netnsid_of(self, path: Path) -> int | None:
        """The id under which this namespace knows the namespace at ``path`` (None: none)."""
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            answer = self._route_socket.get_netnsid(fd=descriptor)
        except Exception:  # a stale /run/netns entry that is no namespace any more
            return None
        finally:
            os.close(descriptor)
        nsid = answer.get("nsid") if answer else None
        # NETNSA_NSID_NOT_ASSIGNED (-1) arrives as 0xffffffff.
        if nsid is None or not 0 <= int(nsid) < 0x80000000:
            return None
        return int(nsid)
