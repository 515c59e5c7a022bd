"""The path walk: from the source namespace towards an address, hop by hop.

The walk reasons as someone with ``ip`` in hand would, and stops at the first
cause it finds:

1. the source namespace exists;
2. the interface towards the address is up and has carrier (a veth whose peer
   is down is UP but NO-CARRIER: the fix is on the peer);
3. the source has an address;
4. ``route get`` to the address from the source (none: ``route.missing``);
5. for each hop: the veth's other end is followed into the next namespace
   (``IFLA_LINK`` + ``IFLA_LINK_NETNSID``), both ends must be up with equal MTU,
   the next hop must be in the next namespace (its neighbour entry is judged
   after the probes: a FAILED entry may be stale and is retried), and a
   namespace that does not hold the address is a router: forwarding on, a
   route onward, a route back;
6. the destination holds the address, has a route back to the source
   (``route.return-missing``) and, with a port, a listening socket.

Where a fix needs to know which way the address lies (a missing route), the
walk searches the graph of veth links breadth-first for the namespace that
holds the address and takes the first hop of that path: the interface "whose
link leads towards" the address. The same search tells a route that exists but
leaves by the wrong interface (``route.missing`` with ``ip route replace``)
from an address missing at the far end (``addr.missing``).

Everything here only reads; ``fix`` applies the remedies.
"""

from __future__ import annotations

import ipaddress
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from netdiag.analysis.model import Finding, Severity
from netdiag.diagnose.model import Cause, Check, Remedy, exec_command, ip_command, process_of
from netdiag.diagnose.state import (
    LinkState,
    NamespaceReader,
    NamespaceState,
    RouteAnswer,
    RouteEntry,
)
from netdiag.errors import InputError
from netdiag.live import registry
from netdiag.live.namespaces import list_namespaces, namespace_path

# As far as a packet can go: IPv4's TTL is at most 255 (a 50-namespace chain is 49 hops).
MAX_HOPS = 255

IPv4Address = ipaddress.IPv4Address


def host_reference() -> str:
    """The namespace netdiag itself runs in (normally the root namespace), as ``pid:N``.

    A container's veth usually has its peer there; ``/proc/1/ns/net`` may not be
    readable (another user namespace), our own process's always is.
    """
    return f"pid:{os.getpid()}"


class Catalog:
    """The namespaces a walk reads, each opened once, and how their veths connect."""

    def __init__(self, extra_references: tuple[str, ...] = ()) -> None:
        self._extra = extra_references
        self._readers: dict[str, NamespaceReader] = {}
        self._states: dict[str, NamespaceState] = {}
        self._netnsid_maps: dict[str, dict[int, str]] = {}
        self._candidates: list[tuple[str, Path]] | None = None

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def reader(self, reference: str) -> NamespaceReader:
        if reference not in self._readers:
            self._readers[reference] = NamespaceReader(reference)
        return self._readers[reference]

    def state(self, reference: str) -> NamespaceState:
        if reference not in self._states:
            self._states[reference] = self.reader(reference).snapshot()
        return self._states[reference]

    def _candidate_namespaces(self) -> list[tuple[str, Path]]:
        """Every namespace a veth peer may live in: named ones, the given ones, the host's."""
        if self._candidates is None:
            seen: set[tuple[int, int]] = set()
            candidates = []
            for reference in (*self._extra, *list_namespaces(), host_reference()):
                try:
                    path = namespace_path(reference)
                    status = os.stat(path)
                except (InputError, OSError):
                    continue
                if (status.st_dev, status.st_ino) in seen:
                    continue
                seen.add((status.st_dev, status.st_ino))
                candidates.append((reference, path))
            self._candidates = candidates
        return self._candidates

    def _netnsid_map(self, reference: str) -> dict[int, str]:
        if reference not in self._netnsid_maps:
            reader = self.reader(reference)
            mapping: dict[int, str] = {}
            for candidate, path in self._candidate_namespaces():
                nsid = reader.netnsid_of(path)
                if nsid is not None and nsid not in mapping:
                    mapping[nsid] = candidate
            self._netnsid_maps[reference] = mapping
        return self._netnsid_maps[reference]

    def peer(self, reference: str, link: LinkState) -> tuple[str, LinkState] | None:
        """The other end of a veth: (its namespace, its link), or None when not visible."""
        if link.peer_index is None or link.kind != "veth":
            return None
        if link.peer_netnsid is None:
            peer_reference: str | None = reference
        else:
            peer_reference = self._netnsid_map(reference).get(link.peer_netnsid)
        if peer_reference is None:
            return None
        try:
            peer_link = self.state(peer_reference).link_by_index(link.peer_index)
        except (InputError, OSError):
            return None
        return (peer_reference, peer_link) if peer_link is not None else None


@dataclass(frozen=True, slots=True)
class _GraphPath:
    """How ``start`` reaches the namespace holding an address over veth links."""

    first_link: LinkState  # in start
    first_peer: LinkState  # the first link's other end
    hops: int  # namespaces crossed after start (1: the owner is adjacent)
    owner: str
    owner_address: ipaddress.IPv4Interface


def find_owner(catalog: Catalog, start: str, address: IPv4Address) -> _GraphPath | None:
    """Breadth-first over veth links from ``start`` to the namespace that holds ``address``."""
    start_state = catalog.state(start)
    queue: deque[tuple[str, LinkState, LinkState, int]] = deque()
    visited = {start_state.identity}
    for link in start_state.non_loopback_links():
        peer = catalog.peer(start, link)
        if peer is not None:
            queue.append((peer[0], link, peer[1], 1))
    while queue:
        reference, first_link, first_peer, hops = queue.popleft()
        try:
            state = catalog.state(reference)
        except (InputError, OSError):
            continue
        if state.identity in visited:
            continue
        visited.add(state.identity)
        for assigned in state.addresses():
            if assigned.ip == address:
                return _GraphPath(first_link, first_peer, hops, reference, assigned)
        if hops >= MAX_HOPS:
            continue
        for link in state.non_loopback_links():
            peer = catalog.peer(reference, link)
            if peer is not None:
                queue.append((peer[0], first_link, first_peer, hops + 1))
    return None


def _gateway_on(link: LinkState, peer: LinkState) -> IPv4Address | None:
    """The peer's address on the shared subnet, to route via it."""
    for peer_address in peer.addresses:
        if any(peer_address.ip in own.network for own in link.addresses):
            return peer_address.ip
    return peer.addresses[0].ip if peer.addresses else None


def route_remedy(
    catalog: Catalog, namespace: str, address: IPv4Address
) -> tuple[Remedy | None, str]:
    """The route that would take ``namespace`` to ``address``, and a sentence on why."""
    path = find_owner(catalog, namespace, address)
    if path is None:
        links = catalog.state(namespace).non_loopback_links()
        if len(links) == 1:
            remedy = Remedy(
                "route-add", namespace, links[0].name, network=ipaddress.IPv4Network(address)
            )
            return remedy, f"no namespace netdiag can see holds {address}"
        return None, f"no namespace netdiag can see holds {address}"
    gateway = None if path.hops == 1 else _gateway_on(path.first_link, path.first_peer)
    network = path.owner_address.network
    why = f"{address} is in {path.owner}, reached through {path.first_link.name}"
    # A route to the same destination already there (an unreachable or blackhole
    # one, say): `ip route add` would say File exists; replace it.
    in_the_way = next(
        (route for route in catalog.state(namespace).routes if route.destination == network),
        None,
    )
    if in_the_way is not None:
        why += f" (the fix replaces `{in_the_way}`)"
    remedy = Remedy(
        "route-add",
        namespace,
        path.first_link.name,
        network=network,
        gateway=gateway,
        replace=in_the_way is not None,
    )
    return remedy, why


def _longest_route(state: NamespaceState, address: IPv4Address) -> RouteEntry | None:
    """The main-table route the kernel would pick for ``address`` (longest prefix)."""
    matching = [route for route in state.routes if address in route.destination]
    return max(matching, key=lambda route: route.destination.prefixlen, default=None)


def describe_namespace(reference: str) -> str:
    """Who made this namespace: decides whether ``--fix`` may touch it."""
    pid = process_of(reference)
    if pid is not None:
        return f"network namespace of process {pid} (not created by netdiag)"
    owner = registry.owner_of_namespace(reference)
    if owner is None:
        return "exists, not created by netdiag (read only)"
    return f"exists, created by netdiag {owner.command} (run {owner.run_id})"


class Walk:
    """One diagnosis pass: checks in order, stopping at the first cause."""

    def __init__(self, catalog: Catalog, source: str, port: int | None) -> None:
        self.catalog = catalog
        self.source = source
        self.port = port
        self.checks: list[Check] = []
        self.causes: list[Cause] = []
        self.path: list[str] = []
        self.destination: IPv4Address | None = None
        self.destination_namespace: str | None = None
        self.source_address: IPv4Address | None = None
        self.source_route: RouteAnswer | None = None
        self.source_link: LinkState | None = None  # the interface the path leaves by
        self.reached = False  # the walk got to the namespace holding the address
        # (namespace, interface, next hop) of each hop, for the neighbour check after probes.
        self.next_hops: list[tuple[str, LinkState, IPv4Address]] = []

    # ---- recording ----------------------------------------------------------------------

    def check(self, name: str, namespace: str | None, ok: bool, evidence: str) -> bool:
        self.checks.append(Check(name, namespace, ok, evidence))
        return ok

    def cause(
        self,
        code: str,
        namespace: str | None,
        message: str,
        hint: str | None = None,
        remedy: Remedy | None = None,
        severity: Severity = "error",
    ) -> None:
        text = hint if hint is not None else (remedy.command if remedy is not None else "")
        self.causes.append(Cause(Finding(severity, code, message, text), namespace, remedy))

    def route_cause(self, code: str, namespace: str, towards: IPv4Address, message: str) -> None:
        """A missing (or looping) route, with the route that leads towards the address."""
        remedy, why = route_remedy(self.catalog, namespace, towards)
        hint = None
        if remedy is None:
            hint = ip_command(namespace, f"route add {towards}/32 dev <interface>")
        self.cause(code, namespace, f"{message}; {why}.", hint=hint, remedy=remedy)

    # ---- the walk -----------------------------------------------------------------------

    def run(self, target: str) -> None:
        if not self._source_exists():
            return
        destination = self._resolve_target(target)
        if destination is None:
            return
        self.destination = destination
        source_state = self.catalog.state(self.source)
        self.path = [self.source]
        local = source_state.owner_link(destination)
        if local is not None:
            self.check("route", self.source, True, f"{destination} is local ({local.name})")
            self.reached = True
            self.destination_namespace = self.source
            self._check_listener(self.source, source_state)
            return
        route = self.catalog.reader(self.source).route_get(destination)
        self.source_route = route
        if not self._source_links(source_state, route):
            return
        if not self._source_address(source_state, route):
            return
        if not self.check("route", self.source, route.ok, f"route get {route.describe()}"):
            chosen = _longest_route(source_state, destination)
            if chosen is not None and chosen.route_type != "unicast":
                # The kernel has a route, one that sends nothing anywhere.
                what = f"{self.source}'s route to {destination} is `{chosen}` ({route.error})"
            else:
                what = f"{self.source} has no route to {destination} ({route.error})"
            self.route_cause("route.missing", self.source, destination, what)
            return
        self._walk_hops(route)

    def _source_exists(self) -> bool:
        try:
            self.catalog.state(self.source)
        except InputError as error:
            self.check("namespace", self.source, False, error.message)
            self.cause(
                "ns.missing",
                self.source,
                f"The source namespace {self.source} does not exist.",
                hint="ip netns list",
            )
            return False
        self.check("namespace", self.source, True, describe_namespace(self.source))
        return True

    def _resolve_target(self, target: str) -> IPv4Address | None:
        try:
            return IPv4Address(target)
        except ValueError:
            pass
        try:
            state = self.catalog.state(target)
        except InputError as error:
            self.check("destination", target, False, error.message)
            self.cause(
                "ns.missing",
                target,
                f"{target} is neither an IPv4 address nor an existing namespace.",
                hint="ip netns list",
            )
            return None
        addresses = state.addresses()
        if not addresses:
            self.check("destination", target, False, f"{target} has no IPv4 address")
            interfaces = state.non_loopback_links()
            device = interfaces[0].name if interfaces else "<interface>"
            self.cause(
                "addr.missing",
                target,
                f"The destination namespace {target} has no IPv4 address to reach.",
                hint=ip_command(target, f"addr add <address>/<prefix> dev {device}"),
            )
            return None
        self.destination_namespace = target
        self.check("destination", target, True, f"{target}'s first address is {addresses[0].ip}")
        return addresses[0].ip

    def _links_towards(self, state: NamespaceState, route: RouteAnswer) -> list[LinkState]:
        """The source interfaces that matter: the route's, else the graph's, else all."""
        if route.ok and route.interface_index is not None:
            link = state.link_by_index(route.interface_index)
            if link is not None and not link.loopback:
                return [link]
        assert self.destination is not None
        path = find_owner(self.catalog, self.source, self.destination)
        if path is not None:
            return [path.first_link]
        return list(state.non_loopback_links())

    def _check_link(self, namespace: str, link: LinkState) -> bool:
        """Up and carrier; a missing carrier is traced to the peer that is down."""
        peer = self.catalog.peer(namespace, link)
        peer_text = f", peer {peer[1].name} in {peer[0]}" if peer else ""
        if not link.admin_up:
            self.check("link", namespace, False, f"{link.describe()}{peer_text}")
            self.cause(
                "link.down",
                namespace,
                f"{link.name} in {namespace} is administratively down.",
                remedy=Remedy("link-up", namespace, link.name),
            )
            return False
        if not link.carrier:
            self.check("link", namespace, False, f"{link.describe()}{peer_text}")
            if peer is not None and not peer[1].admin_up:
                self.cause(
                    "link.no-carrier",
                    namespace,
                    f"{link.name} in {namespace} is UP but has NO-CARRIER: its peer "
                    f"{peer[1].name} in {peer[0]} is down.",
                    remedy=Remedy("link-up", peer[0], peer[1].name),
                )
            else:
                self.cause(
                    "link.no-carrier",
                    namespace,
                    f"{link.name} in {namespace} is UP but has NO-CARRIER.",
                    hint=ip_command(namespace, f"link show {link.name}"),
                )
            return False
        return self.check("link", namespace, True, f"{link.describe()}, carrier{peer_text}")

    def _source_links(self, state: NamespaceState, route: RouteAnswer) -> bool:
        links = self._links_towards(state, route)
        if not links:
            self.check("link", self.source, False, "no interface besides lo")
            self.cause(
                "link.down",
                self.source,
                f"{self.source} has no network interface besides lo.",
                hint=ip_command(self.source, "link show"),
            )
            return False
        for link in links:
            if not self._check_link(self.source, link):
                return False
        self.source_link = links[0]
        return True

    def _source_address(self, state: NamespaceState, route: RouteAnswer) -> bool:
        addresses = state.addresses()
        if not addresses:
            device = self.source_link.name if self.source_link else "<interface>"
            self.check("address", self.source, False, "no IPv4 address besides loopback")
            self.cause(
                "addr.missing",
                self.source,
                f"The source namespace {self.source} has no IPv4 address.",
                hint=ip_command(self.source, f"addr add <address>/<prefix> dev {device}"),
            )
            return False
        own = self.source_link.addresses if self.source_link else ()
        chosen = route.preferred_source or (own[0].ip if own else addresses[0].ip)
        self.source_address = chosen
        listed = ", ".join(str(address) for address in addresses)
        return self.check("address", self.source, True, f"{listed}; source {chosen}")

    def _walk_hops(self, route: RouteAnswer) -> None:
        assert self.destination is not None
        current = self.source
        answer = route
        for _hop in range(MAX_HOPS):
            state = self.catalog.state(current)
            out_link = state.link_by_index(answer.interface_index)
            if out_link is None:
                return
            if current != self.source and not self._check_link(current, out_link):
                return
            peer = self.catalog.peer(current, out_link)
            if peer is None:
                self.check(
                    "hop",
                    current,
                    True,
                    f"the path leaves {current} through {out_link.name}; its other end is "
                    "not a namespace netdiag can see (the probes tell the rest)",
                )
                return
            peer_reference, in_link = peer
            if in_link.master_index is not None:
                crossed = self._cross_bridge(peer_reference, in_link, answer.next_hop)
                if crossed is None:
                    return
                peer_reference, in_link = crossed
            if peer_reference in self.path:
                self.check("hop", current, False, f"{out_link.name} leads back to {peer_reference}")
                self.route_cause(
                    "route.missing",
                    current,
                    self.destination,
                    f"{current} sends {self.destination} back towards {peer_reference} "
                    "(a routing loop)",
                )
                return
            # On the path even if the link into it is at fault: the transcript shows both ends.
            self.path.append(peer_reference)
            if not self._check_hop_link(current, out_link, peer_reference, in_link):
                return
            peer_state = self.catalog.state(peer_reference)
            if not self._check_next_hop(current, state, out_link, answer, peer_reference, in_link):
                return
            if peer_state.owner_link(self.destination) is not None:
                self._at_destination(peer_reference, peer_state, in_link)
                return
            next_answer = self._check_router(peer_reference, peer_state, in_link)
            if next_answer is None:
                return
            current, answer = peer_reference, next_answer
        self.check("hop", current, False, f"the walk stops after {MAX_HOPS} hops")

    def _cross_bridge(
        self, hub: str, port: LinkState, next_hop: IPv4Address
    ) -> tuple[str, LinkState] | None:
        """Follow a bridge (a star's hub) to the port whose far end holds ``next_hop``.

        The packet is switched, not routed: the hub namespace is on the path but
        needs no forwarding or routes. Returns the far end (namespace, link), or
        ``(hub, port)`` unchanged when the hub itself holds the next hop (an
        address on the bridge) or no port leads to it; None after a cause.
        """
        state = self.catalog.state(hub)
        bridge = state.link_by_index(port.master_index)
        if bridge is None or state.owner_link(next_hop) is not None:
            return hub, port
        if not bridge.admin_up:
            self.path.append(hub)
            self.check("bridge", hub, False, bridge.describe())
            self.cause(
                "link.down",
                hub,
                f"The bridge {bridge.name} in {hub} (which {port.name} is a port of) is down.",
                remedy=Remedy("link-up", hub, bridge.name),
            )
            return None
        for other in state.links:
            if other.master_index != bridge.index or other.index == port.index:
                continue
            far = self.catalog.peer(hub, other)
            if far is None or self.catalog.state(far[0]).owner_link(next_hop) is None:
                continue
            self.path.append(hub)
            if not self._check_link(hub, other):
                return None
            self.check(
                "bridge",
                hub,
                True,
                f"{port.name} -> bridge {bridge.name} -> {other.name} in {hub}: "
                f"{next_hop} is in {far[0]}",
            )
            return far
        return hub, port

    def _check_hop_link(
        self, current: str, out_link: LinkState, peer_reference: str, in_link: LinkState
    ) -> bool:
        if not in_link.admin_up:
            self.check("link", peer_reference, False, in_link.describe())
            self.cause(
                "link.down",
                peer_reference,
                f"{in_link.name} in {peer_reference} (the other end of {out_link.name} in "
                f"{current}) is administratively down.",
                remedy=Remedy("link-up", peer_reference, in_link.name),
            )
            return False
        if out_link.mtu != in_link.mtu:
            self.check(
                "mtu",
                current,
                False,
                f"{out_link.name} in {current} has MTU {out_link.mtu}, {in_link.name} in "
                f"{peer_reference} has MTU {in_link.mtu}",
            )
            low_reference, low_link, high_mtu = (
                (peer_reference, in_link, out_link.mtu)
                if in_link.mtu < out_link.mtu
                else (current, out_link, in_link.mtu)
            )
            self.cause(
                "mtu.mismatch",
                low_reference,
                f"MTU mismatch across a link: {out_link.name} in {current} has MTU "
                f"{out_link.mtu} but {in_link.name} in {peer_reference} has MTU {in_link.mtu}; "
                f"packets larger than {min(out_link.mtu, in_link.mtu)} bytes are dropped.",
                remedy=Remedy("mtu-set", low_reference, low_link.name, mtu=high_mtu),
            )
            return False
        return self.check(
            "hop",
            current,
            True,
            f"{out_link.name} in {current} -> {in_link.name} in {peer_reference}, "
            f"MTU {in_link.mtu} on both ends",
        )

    def _check_next_hop(
        self,
        current: str,
        state: NamespaceState,
        out_link: LinkState,
        answer: RouteAnswer,
        peer_reference: str,
        in_link: LinkState,
    ) -> bool:
        """The next hop must be in the peer namespace and resolvable on the link."""
        next_hop = answer.next_hop
        self.next_hops.append((current, out_link, next_hop))
        peer_state = self.catalog.state(peer_reference)
        entry = state.neighbour(next_hop, out_link.index)
        neighbour_text = (
            f"neighbour {next_hop} is {entry.state_name}"
            if entry
            else f"no neighbour entry for {next_hop} yet"
        )
        if peer_state.owner_link(next_hop) is None:
            held = ", ".join(str(a) for a in peer_state.addresses()) or "no IPv4 address"
            self.check(
                "next-hop",
                current,
                False,
                f"{next_hop} is not in {peer_reference} (it has {held}); {neighbour_text}",
            )
            matched = _longest_route(state, next_hop)
            if next_hop == self.destination and self._wrong_interface(
                current, out_link, peer_reference, matched
            ):
                return False
            prefix = (
                matched.destination.prefixlen if matched and matched.destination.prefixlen else 32
            )
            if next_hop == self.destination:
                message = (
                    f"{next_hop} is not assigned in {peer_reference}, the namespace at the "
                    f"other end of {out_link.name} ({peer_reference} has {held})."
                )
            else:
                message = (
                    f"The gateway {next_hop} of {current}'s route to {self.destination} is not "
                    f"an address of {peer_reference} ({peer_reference} has {held})."
                )
            remedy = Remedy(
                "addr-add",
                peer_reference,
                in_link.name,
                address=ipaddress.IPv4Interface(f"{next_hop}/{prefix}"),
            )
            self.cause("addr.missing", peer_reference, message, remedy=remedy)
            return False
        if entry is not None and entry.unresolved:
            # A FAILED entry may be old (a link that was down): new packets retry the
            # resolution, so the probes decide whether it is the cause (engine).
            neighbour_text += " (resolution failed earlier; the probes try again)"
        return self.check(
            "next-hop", current, True, f"{next_hop} is in {peer_reference}; {neighbour_text}"
        )

    def _wrong_interface(
        self, current: str, out_link: LinkState, peer_reference: str, matched: RouteEntry | None
    ) -> bool:
        """The address is elsewhere in the graph: the route uses the wrong interface."""
        assert self.destination is not None
        path = find_owner(self.catalog, current, self.destination)
        if path is None or path.first_link.index == out_link.index:
            return False
        gateway = None if path.hops == 1 else _gateway_on(path.first_link, path.first_peer)
        if matched is not None and matched.destination.prefixlen > 0:
            # Same destination, other device: `ip route replace` (add would say File exists).
            network, replace = matched.destination, True
        else:
            network, replace = path.owner_address.network, False
        remedy = Remedy(
            "route-add",
            current,
            path.first_link.name,
            network=network,
            gateway=gateway,
            replace=replace,
        )
        self.cause(
            "route.missing",
            current,
            f"{current} sends {self.destination} out {out_link.name} to {peer_reference}, but "
            f"{self.destination} is in {path.owner}, reached through {path.first_link.name}.",
            remedy=remedy,
        )
        return True

    def _check_router(
        self, reference: str, state: NamespaceState, in_link: LinkState
    ) -> RouteAnswer | None:
        """A namespace on the path that does not hold the address must forward it."""
        assert self.destination is not None
        if state.forwarding is False:
            self.check("forwarding", reference, False, "net.ipv4.ip_forward = 0")
            self.cause(
                "forwarding.disabled",
                reference,
                f"{reference} is a router on the path to {self.destination} but does not "
                "forward packets (net.ipv4.ip_forward = 0).",
                remedy=Remedy("forwarding-on", reference),
            )
            return None
        if state.forwarding is None:
            # Unknown is not a cause: the walk goes on and the probes tell.
            evidence = "net.ipv4.ip_forward unknown (it could not be read)"
        else:
            evidence = "net.ipv4.ip_forward = 1"
        self.check("forwarding", reference, True, evidence)
        answer = self.catalog.reader(reference).route_get(self.destination)
        if not self.check("route", reference, answer.ok, f"route get {answer.describe()}"):
            self.route_cause(
                "route.missing",
                reference,
                self.destination,
                f"The router {reference} has no route onward to {self.destination} "
                f"({answer.error})",
            )
            return None
        if not self._check_return(reference, in_link):
            return None
        return answer

    def _check_return(self, reference: str, in_link: LinkState) -> bool:
        """``route get SOURCE`` from a namespace on the path: the way back exists."""
        assert self.source_address is not None
        answer = self.catalog.reader(reference).route_get(self.source_address)
        evidence = f"route get {answer.describe()}"
        if answer.ok and answer.interface != in_link.name:
            evidence += f" (the path arrived on {in_link.name})"
        if self.check("return-route", reference, answer.ok, evidence):
            return True
        self.route_cause(
            "route.return-missing",
            reference,
            self.source_address,
            f"{reference} has no route back to the source address {self.source_address} "
            f"({answer.error}), so replies cannot return",
        )
        self._source_address_outside(reference, in_link)
        return False

    def _source_address_outside(self, reference: str, in_link: LinkState) -> None:
        """A route back exists for a subnet the source's address is not in: a wrong address?

        Only said when the source is the previous hop, so its address ought to be
        in the subnet the namespace routes towards it.
        """
        if len(self.path) < 2 or self.path[-2] != self.source or self.source_link is None:
            return
        assert self.source_address is not None
        towards_source = [
            route.destination
            for route in self.catalog.state(reference).routes
            if route.interface == in_link.name
            and route.destination.prefixlen > 0
            and self.source_address not in route.destination
            # Not the namespace's own subnet on the link (its connected route).
            and not any(own.ip in route.destination for own in in_link.addresses)
        ]
        if not towards_source:
            return
        network = towards_source[0]
        self.cause(
            "addr.missing",
            self.source,
            f"{self.source}'s address {self.source_address} is outside {network}, the subnet "
            f"{reference} routes towards {self.source} through {in_link.name}: is "
            f"{self.source_link.name} given the wrong address?",
            hint=ip_command(
                self.source, f"addr add <address in {network}> dev {self.source_link.name}"
            ),
            severity="warn",
        )

    def _at_destination(
        self,
        reference: str,
        state: NamespaceState,
        in_link: LinkState,
    ) -> None:
        assert self.destination is not None
        self.destination_namespace = self.destination_namespace or reference
        holder = state.owner_link(self.destination)
        assert holder is not None
        if not holder.admin_up:
            self.check("address", reference, False, f"{self.destination} is on {holder.name}, DOWN")
            self.cause(
                "link.down",
                reference,
                f"{self.destination} is on {holder.name} in {reference}, which is down.",
                remedy=Remedy("link-up", reference, holder.name),
            )
            return
        self.check("address", reference, True, f"{self.destination} is on {holder.name}")
        if not self._check_return(reference, in_link):
            return
        self.reached = True
        self._check_listener(reference, state)

    def _check_listener(self, reference: str, state: NamespaceState) -> None:
        if self.port is None or self.destination is None:
            return
        listening = ", ".join(f"{s.address}:{s.port}" for s in state.listeners) or "nothing"
        if self.check(
            "listener",
            reference,
            state.listening_on(self.destination, self.port),
            f"TCP listening sockets in {reference}: {listening}",
        ):
            return
        self.cause(
            "port.closed",
            reference,
            f"Nothing listens on TCP port {self.port} for {self.destination} in {reference}.",
            hint=f"start a listener on {self.destination}:{self.port} in {reference} (e.g. "
            f"`{exec_command(reference, f'nc -l {self.destination} {self.port}')}`); confirm with "
            f"`{exec_command(reference, f'ss -ltn sport = :{self.port}')}`",
        )
