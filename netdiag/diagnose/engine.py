"""One diagnosis: the walk, then the probes that confirm it, then the verdict.

The walk reads state and names the first cause; the probes, sent from inside
the source namespace only, say what actually happens on the wire. When they
disagree the probes win the verdict and the disagreement is itself reported:
an echo that goes unanswered although every check held is traced to the next
hop's neighbour entry (``neigh.failed``) or reported as ``probe.failed``.

Probes are never sent from the root namespace (the safety rule): a source
that *is* the root namespace (``pid:1``, or a name bound to it) is read but
not probed.
"""

from __future__ import annotations

import ipaddress
import os
from contextlib import closing

from netdiag.analysis.model import Finding, Severity
from netdiag.diagnose.model import Cause, Diagnosis, EchoProbe, ProbeReport, Remedy
from netdiag.diagnose.probes import echo_probe, tcp_probe
from netdiag.diagnose.state import namespace_identity_of
from netdiag.diagnose.walk import Catalog, Walk

SMALL_ECHO_BYTES = 84  # what `ping` sends by default: 56 data bytes + ICMP + IP headers
ECHO_COUNT = 3


def _root_identities() -> set[tuple[int, int]]:
    identities = set()
    for path in ("/proc/self/ns/net", "/proc/1/ns/net"):
        try:
            status = os.stat(path)
        except OSError:
            continue
        identities.add((status.st_dev, status.st_ino))
    return identities


def is_root_namespace(reference: str) -> bool:
    return namespace_identity_of(reference) in _root_identities()


def _probe(walk: Walk) -> ProbeReport | None:
    if walk.destination is None:
        return None
    source = walk.source
    if is_root_namespace(source):
        return ProbeReport(source, skipped="the source is the root namespace (never probed)")
    destination = str(walk.destination)
    address = walk.source_address
    if address is None:
        # The walk stopped before choosing one (a link down): send from any address.
        addresses = walk.catalog.state(source).addresses()
        address = addresses[0].ip if addresses else None
    if address is None:
        return ProbeReport(source, skipped="the source has no address to send from")
    source_address = str(address)
    route = walk.source_route
    if route is not None and not route.ok:
        # What `ping` prints in the article: the kernel refuses before sending.
        echo = EchoProbe(source_address, destination, SMALL_ECHO_BYTES, False, 0, 0, route.error)
        large = None
    else:
        echo = echo_probe(source, source_address, destination, ECHO_COUNT, SMALL_ECHO_BYTES)
        large = None
        mtu = walk.source_link.mtu if walk.source_link is not None else 0
        if echo.received and mtu > SMALL_ECHO_BYTES:
            large = echo_probe(
                source, source_address, destination, 1, mtu, dont_fragment=True, timeout=1.0
            )
    tcp = tcp_probe(source, destination, walk.port) if walk.port is not None else None
    return ProbeReport(source, echo=echo, large_echo=large, tcp=tcp)


def _unresolved_next_hop(walk: Walk) -> tuple[str, str, ipaddress.IPv4Address, str] | None:
    """(namespace, interface, next hop, state) of the first hop whose ARP did not resolve."""
    for namespace, link, next_hop in walk.next_hops:
        for entry in walk.catalog.reader(namespace).neighbours():
            if (
                entry.address == next_hop
                and entry.interface_index == link.index
                and entry.unresolved
            ):
                return namespace, link.name, next_hop, entry.state_name
    return None


def _capture_hint(walk: Walk) -> str:
    interface = walk.source_link.name if walk.source_link else "<interface>"
    return (
        f"capture on the path: netdiag capture --ns {walk.source} --iface {interface} "
        "-w probe.pcap --analyze"
    )


def _probe_causes(walk: Walk, probes: ProbeReport) -> list[Cause]:
    """Causes only the probes reveal (or confirm) after the walk."""
    if probes.echo is not None and probes.echo.error is not None:
        return []  # nothing was sent: the walk's cause stands alone
    probed = probes.skipped is None and probes.echo is not None
    if probed and probes.echo_answered:
        if probes.tcp is not None and not probes.tcp.connected and not walk.causes:
            message = (
                f"Every check held and echoes were answered, yet the TCP connect to "
                f"{walk.destination}:{walk.port} {probes.tcp.detail}."
            )
            return [Cause(Finding("error", "probe.failed", message, _capture_hint(walk)), None)]
        return []
    # The echo went unanswered (or nothing could be probed): did a next hop not resolve?
    # After a cause at or before the source's own link (no carrier, ...) an unanswered
    # ARP is a mere consequence and is not reported.
    explains = not walk.causes or walk.causes[0].finding.code == "addr.missing"
    unresolved = _unresolved_next_hop(walk) if explains else None
    if unresolved is not None:
        namespace, interface, next_hop, state = unresolved
        remedy = Remedy(
            "neigh-del", namespace, interface, address=ipaddress.IPv4Interface(next_hop)
        )
        severity: Severity = "warn" if walk.causes else "error"
        message = (
            f"{namespace} cannot resolve the next hop {next_hop} on {interface}: "
            f"ARP got no answer (neighbour entry {state})."
        )
        finding = Finding(severity, "neigh.failed", message, remedy.command)
        return [Cause(finding, namespace, None if walk.causes else remedy)]
    if probed and not walk.causes:
        message = f"Every check held, yet no echo reply came back to {walk.source}."
        return [Cause(Finding("error", "probe.failed", message, _capture_hint(walk)), None)]
    return []


def _verdict(walk: Walk, causes: list[Cause], probes: ProbeReport | None, reachable: bool) -> str:
    port = f" port {walk.port}" if walk.port is not None else ""
    destination = f"{walk.destination or '?'}{port}"
    if reachable:
        return f"{destination} is reachable from {walk.source}"
    errors = [cause.finding for cause in causes if cause.finding.severity == "error"]
    if errors:
        return f"{destination} is not reachable from {walk.source}: {errors[0].message}"
    if not walk.reached and (probes is None or probes.skipped is not None):
        return (
            f"not known: the path leaves {walk.path[-1] if walk.path else walk.source} "
            "for a namespace netdiag cannot see, and nothing was probed"
        )
    return f"{destination} is not reachable from {walk.source}; the probes say what was seen"


def diagnose(source: str, target: str, port: int | None, probe: bool = True) -> Diagnosis:
    """Walk from ``source`` towards ``target`` (address or namespace), then probe."""
    with closing(Catalog((source,))) as catalog:
        walk = Walk(catalog, source, port)
        walk.run(target)
        probes = _probe(walk) if probe else None
        causes = list(walk.causes)
        if probes is not None:
            causes.extend(_probe_causes(walk, probes))
    errors = any(cause.finding.severity == "error" for cause in causes)
    confirmed = (
        probes is None
        or probes.skipped is not None
        or (probes.echo_answered and (probes.tcp is None or probes.tcp.connected))
    )
    reachable = walk.reached and not errors and confirmed
    return Diagnosis(
        source=source,
        target=target,
        destination=str(walk.destination) if walk.destination is not None else None,
        destination_namespace=walk.destination_namespace,
        port=port,
        path=tuple(walk.path),
        checks=tuple(walk.checks),
        causes=tuple(causes),
        probes=probes,
        reachable=reachable,
        verdict=_verdict(walk, causes, probes, reachable),
    )
