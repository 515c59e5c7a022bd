"""Topology specs: validated, inert descriptions of namespaces, links and routes.

This is the first stage of netdiag's pipeline. A ``TopologySpec`` says what a
live topology should contain; it never touches the kernel (``netdiag.live``
builds it). Everything is frozen and validated on construction, so a spec that
exists is one the kernel will accept: names fit the kernel's limits, addresses
parse, subnets of different links do not overlap, every route leaves through an
interface its namespace owns and every gateway is on a subnet one of that
namespace's links provides. Links whose ends are ports of one bridge
(``BridgeSpec``) are one broadcast domain and may share a subnet.

``with_prefix`` renames every namespace and interface (``--prefix P``) so that
several runs can go side by side without sharing a single kernel object.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Literal

from netdiag.errors import TopologyError

# IFNAMSIZ is 16 bytes including the terminating NUL.
INTERFACE_NAME_MAX_BYTES = 15
# A namespace name is a file name under /run/netns; keep it readable and short.
NAMESPACE_NAME_MAX_BYTES = 64
_FORBIDDEN_NAME_CHARACTERS = frozenset("/ \t\n:%\\'\"")

IPv4Interface = ipaddress.IPv4Interface
IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address


def _check_name(name: str, what: str, max_bytes: int) -> None:
    if not name:
        raise TopologyError(f"{what} name is empty")
    if name in (".", ".."):
        raise TopologyError(f"{what} name {name!r} is not allowed")
    bad = sorted(set(name) & _FORBIDDEN_NAME_CHARACTERS)
    if bad:
        raise TopologyError(f"{what} name {name!r} contains {''.join(bad)!r}")
    size = len(name.encode("utf-8"))
    if size > max_bytes:
        raise TopologyError(
            f"{what} name {name!r} is {size} bytes; the kernel allows at most {max_bytes}",
            advice="use a shorter name or a shorter --prefix",
        )


def check_interface_name(name: str) -> None:
    """Raise ``TopologyError`` unless the kernel would accept ``name`` as an interface."""
    _check_name(name, "interface", INTERFACE_NAME_MAX_BYTES)


def check_namespace_name(name: str) -> None:
    """Raise ``TopologyError`` unless ``name`` is a usable /run/netns entry."""
    _check_name(name, "namespace", NAMESPACE_NAME_MAX_BYTES)


def parse_interface_address(text: str) -> IPv4Interface:
    """``10.0.1.0/24`` -> an interface address; the prefix length is required.

    The article assigns the network address itself (``10.0.1.0/24``) to the
    interface; the kernel accepts that, so netdiag does too.
    """
    if "/" not in text:
        raise TopologyError(f"address {text!r} needs a prefix length, e.g. {text}/24")
    try:
        return ipaddress.IPv4Interface(text)
    except ValueError as error:
        raise TopologyError(f"address {text!r} is not an IPv4 address/prefix") from error


def parse_network(text: str) -> IPv4Network:
    """A route destination: ``10.0.2.0/24`` or ``default``."""
    if text == "default":
        return ipaddress.IPv4Network("0.0.0.0/0")
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError as error:
        raise TopologyError(
            f"route destination {text!r} is not an IPv4 network (host bits must be zero)"
        ) from error


def parse_address(text: str) -> IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError as error:
        raise TopologyError(f"{text!r} is not an IPv4 address") from error


@dataclass(frozen=True, slots=True)
class NamespaceSpec:
    name: str
    forwarding: bool = False  # net.ipv4.ip_forward inside the namespace

    def __post_init__(self) -> None:
        check_namespace_name(self.name)


@dataclass(frozen=True, slots=True)
class AddressSpec:
    """An address on an interface, as ``ip addr add 10.0.1.0/24 dev veth0`` gives it."""

    interface: IPv4Interface

    @property
    def address(self) -> IPv4Address:
        return self.interface.ip

    @property
    def network(self) -> IPv4Network:
        return self.interface.network

    @property
    def prefix_length(self) -> int:
        return self.interface.network.prefixlen

    def __str__(self) -> str:
        return str(self.interface)


@dataclass(frozen=True, slots=True)
class LinkEndSpec:
    """One end of a link: the interface that appears inside ``namespace``."""

    namespace: str
    interface: str
    addresses: tuple[AddressSpec, ...] = ()
    up: bool = True
    mtu: int | None = None

    def __post_init__(self) -> None:
        check_namespace_name(self.namespace)
        check_interface_name(self.interface)
        if self.mtu is not None and not 68 <= self.mtu <= 65535:
            raise TopologyError(f"MTU {self.mtu} of {self.interface} is outside 68..65535")


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """A veth pair: ``ends[0]`` is created first, ``ends[1]`` is its peer."""

    ends: tuple[LinkEndSpec, LinkEndSpec]
    kind: Literal["veth"] = "veth"

    def __post_init__(self) -> None:
        if len(self.ends) != 2:
            raise TopologyError("a veth link has exactly two ends")
        first, second = self.ends
        if (first.namespace, first.interface) == (second.namespace, second.interface):
            raise TopologyError(f"both ends of a link are {first.interface} in {first.namespace}")

    @property
    def networks(self) -> frozenset[IPv4Network]:
        return frozenset(address.network for end in self.ends for address in end.addresses)


@dataclass(frozen=True, slots=True)
class BridgeSpec:
    """A Linux bridge inside ``namespace`` with veth ends of that namespace as its ports.

    ``ip -n NS link add NAME type bridge; ip -n NS link set PORT master NAME``.
    The links whose ends are ports form one broadcast domain (a star's hub).
    """

    namespace: str
    name: str
    members: tuple[str, ...]
    addresses: tuple[AddressSpec, ...] = ()

    def __post_init__(self) -> None:
        check_namespace_name(self.namespace)
        check_interface_name(self.name)
        if not self.members:
            raise TopologyError(f"bridge {self.name} in {self.namespace} has no member interface")
        for member in self.members:
            check_interface_name(member)
        repeated = sorted({member for member in self.members if self.members.count(member) > 1})
        if repeated:
            raise TopologyError(f"bridge {self.name} lists member {repeated[0]} twice")


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """``ip -n NS route add DESTINATION [via GATEWAY] dev DEVICE``.

    Without a gateway the route is ``scope link`` as ``ip route add ... dev``
    makes it (pyroute2 would default to scope universe).
    """

    namespace: str
    destination: IPv4Network
    device: str
    gateway: IPv4Address | None = None

    @property
    def scope(self) -> Literal["link", "universe"]:
        return "universe" if self.gateway is not None else "link"

    def ip_command(self) -> str:
        via = f" via {self.gateway}" if self.gateway is not None else ""
        destination = "default" if self.destination.prefixlen == 0 else str(self.destination)
        return f"ip -n {self.namespace} route add {destination}{via} dev {self.device}"


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """Who talks to whom in the experiment: the client pings and connects to the server.

    The capture runs on ``capture_interface`` inside ``capture_namespace``.
    """

    server_namespace: str
    server_address: IPv4Address
    client_namespace: str
    client_address: IPv4Address
    capture_namespace: str
    capture_interface: str


@dataclass(frozen=True, slots=True)
class TopologySpec:
    name: str
    namespaces: tuple[NamespaceSpec, ...]
    links: tuple[LinkSpec, ...]
    routes: tuple[RouteSpec, ...] = ()
    probe: ProbeSpec | None = None
    description: str = ""
    prefix: str = ""
    bridges: tuple[BridgeSpec, ...] = ()
    _by_namespace: dict[str, tuple[LinkEndSpec, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if not self.namespaces:
            raise TopologyError(f"topology {self.name!r} declares no namespaces")
        names = [namespace.name for namespace in self.namespaces]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise TopologyError(f"namespace {duplicates[0]!r} is declared twice")
        by_namespace: dict[str, list[LinkEndSpec]] = {name: [] for name in names}
        for link in self.links:
            for end in link.ends:
                if end.namespace not in by_namespace:
                    raise TopologyError(
                        f"link end {end.interface} is in namespace {end.namespace!r}, "
                        "which the topology does not declare"
                    )
                if any(other.interface == end.interface for other in by_namespace[end.namespace]):
                    raise TopologyError(
                        f"interface {end.interface} appears twice in namespace {end.namespace}"
                    )
                by_namespace[end.namespace].append(end)
        object.__setattr__(
            self, "_by_namespace", {name: tuple(ends) for name, ends in by_namespace.items()}
        )
        self._check_bridges()
        self._check_addresses()
        self._check_routes()
        self._check_probe()

    def _check_addresses(self) -> None:
        assigned = [
            (address, f"{end.interface} in {end.namespace}")
            for link in self.links
            for end in link.ends
            for address in end.addresses
        ] + [
            (address, f"bridge {bridge.name} in {bridge.namespace}")
            for bridge in self.bridges
            for address in bridge.addresses
        ]
        seen_addresses: dict[IPv4Address, str] = {}
        for address, owner in assigned:
            if address.address in seen_addresses:
                raise TopologyError(
                    f"address {address.address} is on both "
                    f"{seen_addresses[address.address]} and {owner}"
                )
            seen_addresses[address.address] = owner
        # Different links are different broadcast domains: a subnet that spans
        # two of them makes routing ambiguous, so it is refused. Links bridged
        # together are one domain and may share a subnet.
        domain = self._bridge_domains()
        for index, link in enumerate(self.links):
            for other_index, other in enumerate(self.links[index + 1 :], start=index + 1):
                if domain.get(id(link), id(link)) == domain.get(id(other), id(other)):
                    continue
                for network in link.networks:
                    for other_network in other.networks:
                        if network.overlaps(other_network):
                            raise TopologyError(
                                f"subnets {network} and {other_network} overlap on "
                                f"different links ({_link_label(link)} and {_link_label(other)})",
                                subject=("links", other_index),
                            )

    def _check_bridges(self) -> None:
        taken: dict[tuple[str, str], str] = {}
        for bridge in self.bridges:
            ends = self._by_namespace.get(bridge.namespace)
            if ends is None:
                raise TopologyError(
                    f"bridge {bridge.name} is in namespace {bridge.namespace!r}, "
                    "which the topology does not declare"
                )
            if any(end.interface == bridge.name for end in ends):
                raise TopologyError(
                    f"bridge {bridge.name} has the name of a veth end in {bridge.namespace}"
                )
            for member in bridge.members:
                if not any(end.interface == member for end in ends):
                    raise TopologyError(
                        f"bridge {bridge.name} in {bridge.namespace} lists member {member!r}, "
                        f"which is not a link end in {bridge.namespace}"
                    )
                key = (bridge.namespace, member)
                if key in taken:
                    raise TopologyError(
                        f"{member} in {bridge.namespace} is a port of both bridge "
                        f"{taken[key]} and bridge {bridge.name}"
                    )
                taken[key] = bridge.name

    def _bridge_domains(self) -> dict[int, int]:
        """Link id -> id of the first link of its bridge (links bridged together share it)."""
        domain: dict[int, int] = {}
        for bridge in self.bridges:
            members = self._bridged_links(bridge)
            roots = {domain.get(id(link), id(link)) for link in members}
            root = min(roots) if roots else 0
            for link_id, current in list(domain.items()):
                if current in roots:
                    domain[link_id] = root
            for link in members:
                domain[id(link)] = root
        return domain

    def _bridge_networks(self, bridge: BridgeSpec) -> set[IPv4Network]:
        """The subnets a bridge's broadcast domain provides: its own and its ports' links'."""
        networks = {address.network for address in bridge.addresses}
        for link in self._bridged_links(bridge):
            networks |= link.networks
        return networks

    def _bridged_links(self, bridge: BridgeSpec) -> list[LinkSpec]:
        """The links one of whose ends is a port of ``bridge``."""
        return [
            link
            for link in self.links
            if any(
                end.namespace == bridge.namespace and end.interface in bridge.members
                for end in link.ends
            )
        ]

    def bridge_of(self, namespace: str, interface: str) -> BridgeSpec | None:
        """The bridge that ``interface`` in ``namespace`` is a port of, if any."""
        for bridge in self.bridges:
            if bridge.namespace == namespace and interface in bridge.members:
                return bridge
        return None

    def _check_routes(self) -> None:
        for route_index, route in enumerate(self.routes):
            subject = ("routes", route_index)
            ends = self._by_namespace.get(route.namespace)
            if ends is None:
                raise TopologyError(
                    f"route {route.destination} is in namespace {route.namespace!r}, "
                    "which the topology does not declare",
                    subject=subject,
                )
            device = next((end for end in ends if end.interface == route.device), None)
            bridge = next(
                (
                    bridge
                    for bridge in self.bridges
                    if bridge.namespace == route.namespace and bridge.name == route.device
                ),
                None,
            )
            if device is None and bridge is None:
                raise TopologyError(
                    f"route {route.destination} in {route.namespace} uses device "
                    f"{route.device!r}, which is not an interface of {route.namespace}",
                    subject=subject,
                )
            if route.gateway is not None:
                if bridge is not None:
                    networks = self._bridge_networks(bridge)
                else:
                    assert device is not None
                    link = next(link for link in self.links if device in link.ends)
                    networks = set(link.networks)
                    for other_bridge in self.bridges:  # a leaf of a star reaches the hub's
                        if link in self._bridged_links(other_bridge):
                            networks |= self._bridge_networks(other_bridge)
                if not any(route.gateway in network for network in networks):
                    raise TopologyError(
                        f"route {route.destination} in {route.namespace} goes via "
                        f"{route.gateway}, which no subnet of {route.device}'s link provides",
                        subject=subject,
                    )

    def _check_probe(self) -> None:
        if self.probe is None:
            return
        for namespace, address in (
            (self.probe.server_namespace, self.probe.server_address),
            (self.probe.client_namespace, self.probe.client_address),
        ):
            if address not in {a.address for a in self.addresses_of(namespace)}:
                raise TopologyError(f"probe address {address} is not an address of {namespace}")
        if self.probe.capture_interface not in {
            end.interface for end in self.interfaces_of(self.probe.capture_namespace)
        }:
            raise TopologyError(
                f"capture interface {self.probe.capture_interface} is not in "
                f"{self.probe.capture_namespace}"
            )

    # ---- queries -------------------------------------------------------------------

    def namespace_names(self) -> tuple[str, ...]:
        return tuple(namespace.name for namespace in self.namespaces)

    def interfaces_of(self, namespace: str) -> tuple[LinkEndSpec, ...]:
        return self._by_namespace.get(namespace, ())

    def addresses_of(self, namespace: str) -> tuple[AddressSpec, ...]:
        return tuple(address for end in self.interfaces_of(namespace) for address in end.addresses)

    def bridges_of(self, namespace: str) -> tuple[BridgeSpec, ...]:
        return tuple(bridge for bridge in self.bridges if bridge.namespace == namespace)

    def configured_interfaces_of(self, namespace: str) -> tuple[LinkEndSpec, ...]:
        """What configuring ``namespace`` sets up: its link ends, then its bridges (a
        bridge is configured like a link end: addresses, then up)."""
        return (
            *self.interfaces_of(namespace),
            *(
                LinkEndSpec(namespace=namespace, interface=bridge.name, addresses=bridge.addresses)
                for bridge in self.bridges_of(namespace)
            ),
        )

    def routes_of(self, namespace: str) -> tuple[RouteSpec, ...]:
        return tuple(route for route in self.routes if route.namespace == namespace)

    def experiment_probe(self) -> ProbeSpec:
        """The declared probe, or the default: first link, end 0 serves, end 1 connects."""
        if self.probe is not None:
            return self.probe
        if not self.links:
            raise TopologyError(f"topology {self.name!r} has no link to run the experiment on")
        server, client = self.links[0].ends
        if not server.addresses or not client.addresses:
            raise TopologyError(
                f"the first link of {self.name!r} needs an address on both ends for the experiment"
            )
        return ProbeSpec(
            server_namespace=server.namespace,
            server_address=server.addresses[0].address,
            client_namespace=client.namespace,
            client_address=client.addresses[0].address,
            capture_namespace=server.namespace,
            capture_interface=server.interface,
        )

    def without_routes(self) -> TopologySpec:
        return replace(self, routes=())

    def with_prefix(self, prefix: str) -> TopologySpec:
        """Every namespace and interface name gets ``prefix`` in front (``lo`` excepted)."""
        if not prefix:
            return self
        if self.prefix:
            raise TopologyError(f"topology {self.name!r} already has prefix {self.prefix!r}")

        def end_with_prefix(end: LinkEndSpec) -> LinkEndSpec:
            return replace(end, namespace=prefix + end.namespace, interface=prefix + end.interface)

        probe = self.probe
        if probe is not None:
            probe = replace(
                probe,
                server_namespace=prefix + probe.server_namespace,
                client_namespace=prefix + probe.client_namespace,
                capture_namespace=prefix + probe.capture_namespace,
                capture_interface=prefix + probe.capture_interface,
            )
        return TopologySpec(
            name=self.name,
            description=self.description,
            prefix=prefix,
            namespaces=tuple(
                replace(namespace, name=prefix + namespace.name) for namespace in self.namespaces
            ),
            links=tuple(
                replace(link, ends=(end_with_prefix(link.ends[0]), end_with_prefix(link.ends[1])))
                for link in self.links
            ),
            routes=tuple(
                replace(route, namespace=prefix + route.namespace, device=prefix + route.device)
                for route in self.routes
            ),
            probe=probe,
            bridges=tuple(
                replace(
                    bridge,
                    namespace=prefix + bridge.namespace,
                    name=prefix + bridge.name,
                    members=tuple(prefix + member for member in bridge.members),
                )
                for bridge in self.bridges
            ),
        )


def _link_label(link: LinkSpec) -> str:
    return f"{link.ends[0].interface}-{link.ends[1].interface}"
