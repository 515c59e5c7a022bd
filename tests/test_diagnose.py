"""``netdiag diagnose`` on real namespaces: each fault is built, diagnosed, and (with --fix) fixed.

Every test builds its own topology through ``LiveTopology`` under a unique
prefix, injects one fault with pyroute2 or through the spec, and a fixture tears
it down. No netlink or kernel call is mocked: the findings come from the
kernel's real state and the probes from real packets inside the namespaces.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from netdiag.diagnose.engine import diagnose
from netdiag.diagnose.model import Diagnosis, Remedy
from netdiag.diagnose.state import NUD_FAILED, NamespaceReader
from netdiag.errors import ResourceConflictError
from netdiag.topology.spec import (
    AddressSpec,
    LinkEndSpec,
    LinkSpec,
    NamespaceSpec,
    RouteSpec,
    TopologySpec,
)

pytestmark = pytest.mark.netns

Build = Callable[..., Any]


def _codes(diagnosis: Diagnosis) -> list[str]:
    return [finding.code for finding in diagnosis.findings]


def _seed() -> TopologySpec:
    from netdiag.topology.loader import load_topology

    return load_topology("seed")


@pytest.fixture
def build(unique_prefix: str) -> Iterator[Build]:
    """Build a spec (prefixed) step by step; ``routes`` picks whose routes are added."""
    from netdiag.live.topology import LiveTopology

    built: list[Any] = []

    def make(spec: TopologySpec | None = None, routes: tuple[str, ...] | None = None) -> Any:
        spec = (spec or _seed()).with_prefix(unique_prefix)
        live = LiveTopology(spec, run_id=f"test-diagnose-{unique_prefix[:-1]}", command="test")
        built.append(live)
        live.preflight()
        live.create_namespaces()
        live.create_links()
        for namespace in spec.namespace_names():
            live.configure_namespace(namespace)
        if routes is None:
            live.add_routes()
        for namespace in routes or ():
            live.add_routes(unique_prefix + namespace)
        return live

    yield make
    for live in built:
        result = live.teardown()
        assert not result.remaining, result


def _set_link(live: Any, namespace: str, interface: str, **changes: Any) -> None:
    live.handle(namespace).link("set", index=live.index_of(namespace, interface), **changes)


def test_healthy_seed_is_reachable_with_its_path(build: Build, unique_prefix: str) -> None:
    build()
    ns1, ns2 = unique_prefix + "ns1", unique_prefix + "ns2"
    diagnosis = diagnose(ns1, "10.0.2.0", None)
    assert diagnosis.reachable, diagnosis.findings
    assert diagnosis.path == (ns1, ns2)
    assert diagnosis.findings == ()
    assert all(check.ok for check in diagnosis.checks)
    assert diagnosis.probes is not None and diagnosis.probes.echo is not None
    assert diagnosis.probes.echo.received == diagnosis.probes.echo.sent > 0


def test_cli_json_document_and_exit_code(build: Build, unique_prefix: str) -> None:
    build()
    ns1, ns2 = unique_prefix + "ns1", unique_prefix + "ns2"
    completed = subprocess.run(
        [sys.executable, "-m", "netdiag", "diagnose", "--from", ns1, "--to", ns2, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert document["from"] == ns1
    assert document["to"] == "10.0.2.0"  # --to a namespace: its first address
    assert document["reachable"] is True
    assert document["path"] == [ns1, ns2]
    assert document["findings"] == []
    assert {"checks", "probes", "port"} <= document.keys()


def test_no_routes_names_the_exact_route_to_add(build: Build, unique_prefix: str) -> None:
    build(routes=())
    ns1 = unique_prefix + "ns1"
    diagnosis = diagnose(ns1, "10.0.2.0", None)
    assert not diagnosis.reachable
    assert _codes(diagnosis) == ["route.missing"]
    assert diagnosis.findings[0].hint == (
        f"ip -n {ns1} route add 10.0.2.0/24 dev {unique_prefix}veth0"
    )
    assert diagnosis.probes is not None and diagnosis.probes.echo is not None
    assert diagnosis.probes.echo.error == os.strerror(101)  # Network is unreachable


def test_only_ns1_route_is_a_missing_return_route(build: Build, unique_prefix: str) -> None:
    build(routes=("ns1",))
    ns1, ns2 = unique_prefix + "ns1", unique_prefix + "ns2"
    diagnosis = diagnose(ns1, "10.0.2.0", None)
    assert not diagnosis.reachable
    assert _codes(diagnosis)[0] == "route.return-missing"
    assert diagnosis.causes[0].namespace == ns2
    assert diagnosis.findings[0].hint == (
        f"ip -n {ns2} route add 10.0.1.0/24 dev {unique_prefix}veth1"
    )
    assert diagnosis.path == (ns1, ns2)
    assert diagnosis.probes is not None and diagnosis.probes.echo is not None
    assert diagnosis.probes.echo.sent > 0 and diagnosis.probes.echo.received == 0


def test_link_down_is_no_carrier_on_one_side_and_down_on_the_other(
    build: Build, unique_prefix: str
) -> None:
    live = build()
    ns1, ns2 = unique_prefix + "ns1", unique_prefix + "ns2"
    veth1 = unique_prefix + "veth1"
    _set_link(live, ns2, veth1, state="down")
    from_ns1 = diagnose(ns1, "10.0.2.0", None)
    assert _codes(from_ns1) == ["link.no-carrier"]
    assert from_ns1.findings[0].hint == f"ip -n {ns2} link set {veth1} up"
    from_ns2 = diagnose(ns2, "10.0.1.0", None)
    assert _codes(from_ns2) == ["link.down"]
    assert from_ns2.findings[0].hint == f"ip -n {ns2} link set {veth1} up"
    assert not from_ns1.reachable and not from_ns2.reachable


def test_closed_port_then_a_listener_makes_it_reachable(build: Build, unique_prefix: str) -> None:
    from netdiag.traffic.tcp import Listener

    build()
    ns1, ns2 = unique_prefix + "ns1", unique_prefix + "ns2"
    closed = diagnose(ns1, "10.0.2.0", 7096)
    assert _codes(closed) == ["port.closed"]
    assert closed.causes[0].namespace == ns2
    assert closed.probes is not None and closed.probes.tcp is not None
    assert closed.probes.tcp.outcome == "refused"
    listener = Listener(ns2, "10.0.2.0", 7096)
    try:
        opened = diagnose(ns1, "10.0.2.0", 7096)
    finally:
        listener.close()
    assert opened.reachable, opened.findings
    assert opened.probes is not None and opened.probes.tcp is not None
    assert opened.probes.tcp.connected


def test_wrong_address_on_the_far_end(build: Build, unique_prefix: str) -> None:
    seed = _seed()
    first, second = seed.links[0].ends
    wrong = replace(second, addresses=(AddressSpec(ipaddress.IPv4Interface("10.0.3.0/24")),))
    spec = replace(seed, links=(LinkSpec(ends=(first, wrong)),), probe=None)
    build(spec)
    ns2 = unique_prefix + "ns2"
    diagnosis = diagnose(unique_prefix + "ns1", "10.0.2.0", None)
    assert not diagnosis.reachable
    assert _codes(diagnosis)[0] == "addr.missing"
    assert diagnosis.causes[0].namespace == ns2
    assert diagnosis.findings[0].hint == (
        f"ip -n {ns2} addr add 10.0.2.0/24 dev {unique_prefix}veth1"
    )
    assert "10.0.3.0/24" in diagnosis.findings[0].message
    # The other way round the wrong address is the source's: no route back to it.
    reverse = diagnose(ns2, "10.0.1.0", None)
    assert _codes(reverse) == ["route.return-missing", "addr.missing"]
    assert reverse.findings[0].hint == (
        f"ip -n {unique_prefix}ns1 route add 10.0.3.0/24 dev {unique_prefix}veth0"
    )
    assert reverse.findings[1].severity == "warn"
    assert "10.0.2.0/24" in reverse.findings[1].message


def test_mtu_mismatch_names_both_mtus(build: Build, unique_prefix: str) -> None:
    live = build()
    ns1, ns2 = unique_prefix + "ns1", unique_prefix + "ns2"
    veth1 = unique_prefix + "veth1"
    _set_link(live, ns2, veth1, mtu=1000)
    diagnosis = diagnose(ns1, "10.0.2.0", None)
    assert _codes(diagnosis) == ["mtu.mismatch"]
    message = diagnosis.findings[0].message
    assert "1500" in message and "1000" in message
    assert diagnosis.findings[0].hint == f"ip -n {ns2} link set {veth1} mtu 1500"
    assert diagnosis.path == (ns1, ns2)
    probes = diagnosis.probes
    assert probes is not None and probes.echo is not None and probes.large_echo is not None
    assert probes.echo.received > 0  # small packets pass...
    assert probes.large_echo.received == 0  # ...a full-size one with DF does not


def test_fix_adds_both_routes_and_recheck_says_reachable(
    build: Build, unique_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from netdiag.commands.diagnose import execute

    build(routes=())
    ns1, ns2 = unique_prefix + "ns1", unique_prefix + "ns2"
    code = execute(ns1, "10.0.2.0", None, fix=True, json_output=True)
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert document["reachable"] is True
    assert document["fixes_applied"] == [
        f"ip -n {ns1} route add 10.0.2.0/24 dev {unique_prefix}veth0",
        f"ip -n {ns2} route add 10.0.1.0/24 dev {unique_prefix}veth1",
    ]
    again = diagnose(ns1, "10.0.2.0", None)  # the change is in the kernel, not in memory
    assert again.reachable and again.path == (ns1, ns2)


def test_a_fix_the_kernel_refuses_names_the_fixes_already_applied(
    build: Build, unique_prefix: str
) -> None:
    """Two fixes in a row, the second refused by the kernel (a route added where one
    to the same destination exists: File exists): the refusal names the first,
    which stays applied."""
    import ipaddress

    from netdiag.diagnose.fix import FixError, _apply
    from netdiag.diagnose.model import Remedy

    live = build(routes=("ns2",))
    ns1, veth0 = unique_prefix + "ns1", unique_prefix + "veth0"
    _set_link(live, ns1, veth0, state="down")
    live.handle(ns1).route("add", dst="10.0.2.0/24", type="unreachable")
    link_up = Remedy("link-up", ns1, veth0)
    route_add = Remedy("route-add", ns1, veth0, network=ipaddress.IPv4Network("10.0.2.0/24"))
    applied: list[str] = []
    _apply(link_up, applied)
    with pytest.raises(FixError) as caught:
        _apply(route_add, applied)
    message = caught.value.message
    assert f"`ip -n {ns1} route add 10.0.2.0/24 dev {veth0}`" in message
    assert "File exists" in message
    assert f"already applied: ip -n {ns1} link set {veth0} up" in message
    assert live.interface_state(ns1, veth0)[0] is True  # the applied fix stays applied


@pytest.mark.parametrize(("kind", "error"), [("unreachable", 113), ("blackhole", 22)])
def test_a_route_that_drops_is_named_and_replaced(
    build: Build, unique_prefix: str, kind: str, error: int
) -> None:
    """An unreachable or blackhole route to the far subnet: the diagnosis names it
    (not "no route") and its fix is `ip route replace` (add would say File exists)."""
    from netdiag.diagnose.fix import diagnose_and_fix

    live = build(routes=("ns2",))
    ns1, veth0 = unique_prefix + "ns1", unique_prefix + "veth0"
    live.handle(ns1).route("add", dst="10.0.2.0/24", type=kind)
    diagnosis = diagnose(ns1, "10.0.2.0", None, probe=False)
    assert _codes(diagnosis) == ["route.missing"]
    finding = diagnosis.findings[0]
    assert f"{ns1}'s route to 10.0.2.0 is `{kind} 10.0.2.0/24` ({os.strerror(error)})" in (
        finding.message
    )
    assert finding.hint == f"ip -n {ns1} route replace 10.0.2.0/24 dev {veth0}"
    fixed = diagnose_and_fix(ns1, "10.0.2.0", None)
    assert fixed.reachable and fixed.fixes_applied == (finding.hint,)


@pytest.fixture
def foreign_namespace(unique_prefix: str) -> Iterator[str]:
    """A namespace netdiag did not create, with a veth pair inside whose second end is down."""
    from pyroute2 import netns

    from netdiag.live.namespaces import inside

    name = unique_prefix + "foreign"
    netns.create(name)
    try:
        with inside(name):
            from pyroute2 import IPRoute

            handle = IPRoute()
        try:
            handle.link("add", ifname=unique_prefix + "fa", kind="veth", peer=unique_prefix + "fb")
            index = handle.link_lookup(ifname=unique_prefix + "fa")[0]
            handle.addr("add", index=index, address="10.77.0.1", prefixlen=24)
            handle.link("set", index=index, state="up")
        finally:
            handle.close()
        yield name
    finally:
        netns.remove(name)


def test_fix_is_refused_on_a_namespace_netdiag_did_not_create(
    foreign_namespace: str, unique_prefix: str
) -> None:
    from netdiag.commands.diagnose import execute

    diagnosis = diagnose(foreign_namespace, "10.77.1.1", None)
    # Both ends are in the namespace: fb is seen down, or fa without carrier.
    assert _codes(diagnosis) in (["link.down"], ["link.no-carrier"])
    remedy = diagnosis.causes[0].remedy
    assert remedy == Remedy("link-up", foreign_namespace, unique_prefix + "fb")
    with pytest.raises(ResourceConflictError, match="not created by netdiag"):
        execute(foreign_namespace, "10.77.1.1", None, fix=True, json_output=True)
    still = diagnose(foreign_namespace, "10.77.1.1", None)
    assert still.causes[0].remedy == remedy  # nothing was changed


def _routed(forwarding: bool) -> TopologySpec:
    def end(namespace: str, interface: str, address: str) -> LinkEndSpec:
        return LinkEndSpec(namespace, interface, (AddressSpec(ipaddress.IPv4Interface(address)),))

    return TopologySpec(
        name="routed-by-hand",
        namespaces=(
            NamespaceSpec("client"),
            NamespaceSpec("router", forwarding=forwarding),
            NamespaceSpec("server"),
        ),
        links=(
            LinkSpec(ends=(end("client", "c0", "10.1.1.2/24"), end("router", "r0", "10.1.1.1/24"))),
            LinkSpec(ends=(end("router", "r1", "10.1.2.1/24"), end("server", "s0", "10.1.2.2/24"))),
        ),
        routes=(
            RouteSpec(
                "client",
                ipaddress.IPv4Network("0.0.0.0/0"),
                "c0",
                ipaddress.IPv4Address("10.1.1.1"),
            ),
            RouteSpec(
                "server",
                ipaddress.IPv4Network("0.0.0.0/0"),
                "s0",
                ipaddress.IPv4Address("10.1.2.1"),
            ),
        ),
    )


def test_router_without_forwarding(build: Build, unique_prefix: str) -> None:
    build(_routed(forwarding=False))
    client, router = unique_prefix + "client", unique_prefix + "router"
    diagnosis = diagnose(client, "10.1.2.2", None)
    assert not diagnosis.reachable
    assert _codes(diagnosis) == ["forwarding.disabled"]
    assert diagnosis.causes[0].namespace == router
    assert diagnosis.findings[0].hint == (f"ip netns exec {router} sysctl -w net.ipv4.ip_forward=1")
    assert diagnosis.path == (client, router)


def test_forwarding_that_cannot_be_read_is_said_unknown(build: Build, unique_prefix: str) -> None:
    """A sysctl netdiag could not read (the state says None) is not reported as 1."""
    from netdiag.diagnose.state import NamespaceState
    from netdiag.diagnose.walk import Catalog, Walk

    build(_routed(forwarding=True))
    client, router = unique_prefix + "client", unique_prefix + "router"

    class UnreadableForwarding(Catalog):
        """The router's real state, but its sysctl as if reading it had failed."""

        def state(self, reference: str) -> NamespaceState:
            state = super().state(reference)
            return replace(state, forwarding=None) if reference == router else state

    catalog = UnreadableForwarding((client,))
    try:
        walk = Walk(catalog, client, None)
        walk.run("10.1.2.2")
    finally:
        catalog.close()
    (check,) = [check for check in walk.checks if check.name == "forwarding"]
    assert check.namespace == router
    assert "= 1" not in check.evidence and "could not be read" in check.evidence
    assert check.ok and walk.reached and not walk.causes  # the verdict is as before


def test_router_with_forwarding_and_fix_of_a_non_forwarding_one(
    build: Build, unique_prefix: str
) -> None:
    from netdiag.diagnose.fix import diagnose_and_fix

    build(_routed(forwarding=False))
    client, router, server = (unique_prefix + n for n in ("client", "router", "server"))
    fixed = diagnose_and_fix(client, server, None)  # --to a namespace name
    assert fixed.fixes_applied == (f"ip netns exec {router} sysctl -w net.ipv4.ip_forward=1",)
    assert fixed.reachable, fixed.findings
    assert fixed.destination == "10.1.2.2"
    assert fixed.path == (client, router, server)
    back = diagnose(server, "10.1.1.2", None)
    assert back.reachable and back.path == (server, router, client)


def test_missing_namespace_is_a_finding(unique_prefix: str) -> None:
    diagnosis = diagnose(unique_prefix + "nowhere", "10.0.2.0", None)
    assert _codes(diagnosis) == ["ns.missing"]
    assert not diagnosis.reachable
    assert diagnosis.probes is None  # nothing to send from


def test_pid_reference_reads_and_probes_a_process_namespace(
    build: Build, unique_prefix: str
) -> None:
    from netdiag.commands.diagnose import execute
    from netdiag.live.namespaces import inside

    live = build()
    ns1 = unique_prefix + "ns1"
    # A process living in ns1, as a container's process would: reached only as pid:N.
    with inside(ns1):
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        reference = f"pid:{sleeper.pid}"
        diagnosis = diagnose(reference, "10.0.2.0", None)
        assert diagnosis.reachable, diagnosis.findings
        assert diagnosis.path == (reference, unique_prefix + "ns2")
        # The same namespace as ns1, but named by a process: --fix refuses there.
        live.handle(ns1).route(
            "del", dst="10.0.2.0/24", oif=live.index_of(ns1, unique_prefix + "veth0"), scope=253
        )
        broken = diagnose(reference, "10.0.2.0", None)
        assert _codes(broken) == ["route.missing"]
        assert broken.findings[0].hint.startswith(f"nsenter -t {sleeper.pid} -n ip route add")
        with pytest.raises(ResourceConflictError, match="not created by netdiag"):
            execute(reference, "10.0.2.0", None, fix=True, json_output=True)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_routed_without_routes_is_fixed_hop_by_hop(build: Build, unique_prefix: str) -> None:
    from netdiag.diagnose.fix import diagnose_and_fix

    build(_routed(forwarding=True), routes=())
    client, router, server = (unique_prefix + n for n in ("client", "router", "server"))
    first = diagnose(client, "10.1.2.2", None)
    assert _codes(first) == ["route.missing"]
    # Two hops away: the route goes via the router's address on the client's link.
    assert first.findings[0].hint == (
        f"ip -n {client} route add 10.1.2.0/24 via 10.1.1.1 dev {unique_prefix}c0"
    )
    fixed = diagnose_and_fix(client, "10.1.2.2", None)
    assert fixed.fixes_applied == (
        f"ip -n {client} route add 10.1.2.0/24 via 10.1.1.1 dev {unique_prefix}c0",
        f"ip -n {server} route add 10.1.1.0/24 via 10.1.2.1 dev {unique_prefix}s0",
    )
    assert fixed.reachable, fixed.findings
    assert fixed.path == (client, router, server)


def test_unanswered_arp_is_a_failed_neighbour(build: Build, unique_prefix: str) -> None:
    build()
    ns1, ns2 = unique_prefix + "ns1", unique_prefix + "ns2"
    _ignore_arp(ns2, True)  # ns2 holds 10.0.2.0 but answers no ARP request for it
    diagnosis = diagnose(ns1, "10.0.2.0", None)
    assert not diagnosis.reachable
    assert _codes(diagnosis) == ["neigh.failed"]
    assert diagnosis.findings[0].hint == f"ip -n {ns1} neigh del 10.0.2.0 dev {unique_prefix}veth0"


def test_transcript_marks_the_failed_check_and_prints_the_fix(
    build: Build, unique_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from netdiag.commands.diagnose import execute

    build(routes=("ns1",))
    ns1, ns2 = unique_prefix + "ns1", unique_prefix + "ns2"
    code = execute(ns1, "10.0.2.0", None, fix=False, json_output=False)
    output = capsys.readouterr().out
    assert code == 1
    assert "✘ return-route" in output
    assert "✔ route" in output
    assert f"fix: ip -n {ns2} route add 10.0.1.0/24 dev {unique_prefix}veth1" in output
    assert f"path: {ns1} -> {ns2}" in output
    assert "not reachable" in output


def test_route_out_the_wrong_interface_is_replaced(build: Build, unique_prefix: str) -> None:
    from netdiag.diagnose.fix import diagnose_and_fix

    def end(namespace: str, interface: str, *addresses: str) -> LinkEndSpec:
        return LinkEndSpec(
            namespace,
            interface,
            tuple(AddressSpec(ipaddress.IPv4Interface(address)) for address in addresses),
        )

    spec = TopologySpec(
        name="fork",
        namespaces=(NamespaceSpec("a"), NamespaceSpec("b"), NamespaceSpec("c")),
        links=(
            LinkSpec(ends=(end("a", "ab", "10.2.1.1/24"), end("b", "ba", "10.2.1.2/24"))),
            LinkSpec(ends=(end("a", "ac"), end("c", "ca", "10.9.9.9/24"))),
        ),
        routes=(
            RouteSpec("a", ipaddress.IPv4Network("10.9.9.0/24"), "ab"),  # the wrong way
            RouteSpec("c", ipaddress.IPv4Network("10.2.1.0/24"), "ca"),
        ),
    )
    build(spec)
    a, b, c = (unique_prefix + n for n in ("a", "b", "c"))
    wrong = diagnose(a, "10.9.9.9", None)
    assert _codes(wrong) == ["route.missing"]
    assert wrong.findings[0].hint == f"ip -n {a} route replace 10.9.9.0/24 dev {unique_prefix}ac"
    assert wrong.path == (a, b)
    fixed = diagnose_and_fix(a, "10.9.9.9", None)
    assert fixed.reachable, fixed.findings
    assert fixed.path == (a, c)


def _ignore_arp(namespace: str, ignore: bool) -> None:
    """arp_ignore 8: the namespace keeps its addresses but answers no ARP request."""
    from netdiag.live.namespaces import inside

    with inside(namespace), open("/proc/sys/net/ipv4/conf/all/arp_ignore", "w") as handle:
        handle.write("8\n" if ignore else "0\n")


def test_a_stale_failed_neighbour_does_not_hide_a_healthy_path(
    build: Build, unique_prefix: str
) -> None:
    build()
    ns1, ns2 = unique_prefix + "ns1", unique_prefix + "ns2"
    _ignore_arp(ns2, True)
    assert _codes(diagnose(ns1, "10.0.2.0", None)) == ["neigh.failed"]
    # Wait for the kernel to give up (INCOMPLETE -> FAILED after its ARP retries), so the
    # entry cannot resolve by itself once ns2 answers again.
    reader = NamespaceReader(ns1)
    try:
        deadline = time.monotonic() + 15.0
        while not any(
            entry.address == ipaddress.IPv4Address("10.0.2.0") and entry.state & NUD_FAILED
            for entry in reader.neighbours()
        ):
            assert time.monotonic() < deadline, "the neighbour entry never became FAILED"
            time.sleep(0.2)
    finally:
        reader.close()
    _ignore_arp(ns2, False)
    # The entry left by the first probes is FAILED; new packets retry the resolution.
    diagnosis = diagnose(ns1, "10.0.2.0", None)
    assert diagnosis.reachable, diagnosis.findings
    next_hop = next(check for check in diagnosis.checks if check.name == "next-hop")
    assert "resolution failed earlier" in next_hop.evidence  # seen, and not held against it
