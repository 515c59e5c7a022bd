"""`netdiag status`: what netdiag has up, and which endpoints reach each other, sending nothing.

A routed topology is brought up with `netdiag up` under a unique prefix and an
isolated run registry; status is read as JSON, then the router's forwarding is
switched off (inside the router namespace, through /proc) and status must say
why the endpoints no longer reach each other. Reachability comes from the
diagnose walk without probes: no IPv4 neighbour entry appears anywhere, which
it would if a packet had been sent.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import netdiag

pytestmark = pytest.mark.netns


@pytest.fixture
def routed_up(unique_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`netdiag up --topology routed`, removed with `netdiag down` (and checked gone)."""
    from pyroute2 import netns

    monkeypatch.setenv("NETDIAG_RUN_DIR", str(tmp_path / "registry"))
    result = netdiag("up", "--topology", "routed", "--prefix", unique_prefix)
    assert result.returncode == 0, result.stderr
    yield unique_prefix
    netdiag("down", "--prefix", unique_prefix)
    left = [name for name in netns.listnetns() if name.startswith(unique_prefix)]
    for name in left:
        netns.remove(name)
    assert left == [], f"left behind: {left}"


def status_of(prefix: str) -> dict[str, Any]:
    result = netdiag("status", "--json")
    assert result.returncode == 0, result.stderr
    (mine,) = [t for t in json.loads(result.stdout)["topologies"] if t["prefix"] == prefix]
    return dict(mine)


def ipv4_neighbours(namespace: str) -> list[Any]:
    from pyroute2 import IPRoute

    from netdiag.live.namespaces import inside

    with inside(namespace):
        handle = IPRoute()
    try:
        return list(handle.get_neighbours(family=socket.AF_INET))
    finally:
        handle.close()


def test_status_shows_the_topology_and_reachability(routed_up: str) -> None:
    prefix = routed_up
    mine = status_of(prefix)
    assert mine["topology"] == "routed" and mine["kept"] is True
    views = {view["name"]: view for view in mine["namespaces"]}
    assert set(views) == {f"{prefix}client", f"{prefix}router", f"{prefix}server"}
    router = views[f"{prefix}router"]
    assert {link["name"] for link in router["links"]} >= {f"{prefix}rtr0", f"{prefix}rtr1"}
    assert {a["address"] for a in router["addresses"]} >= {"10.0.1.1/24", "10.0.2.1/24"}
    client_routes = views[f"{prefix}client"]["routes"]
    assert {"destination": "default", "device": f"{prefix}cli0", "via": "10.0.1.1"} in (
        client_routes
    )

    pairs = {(p["from"], p["to_namespace"]): p for p in mine["reachability"]}
    client, server = f"{prefix}client", f"{prefix}server"
    assert set(pairs) == {(client, server), (server, client)}  # the router is no endpoint
    assert pairs[(client, server)]["reachable"] is True
    assert pairs[(client, server)]["path"] == [client, f"{prefix}router", server]
    assert pairs[(client, server)]["to"] == "10.0.2.2"
    # Nothing was sent: no address was ever resolved.
    for name in views:
        assert ipv4_neighbours(name) == []


def test_status_explains_a_router_that_stops_forwarding(routed_up: str) -> None:
    from netdiag.live.namespaces import inside

    prefix = routed_up
    with (
        inside(f"{prefix}router"),
        open("/proc/sys/net/ipv4/ip_forward", "w", encoding="ascii") as switch,
    ):
        switch.write("0\n")
    mine = status_of(prefix)
    pairs = {(p["from"], p["to_namespace"]): p for p in mine["reachability"]}
    # Once it no longer forwards, the router holds addresses and is an endpoint too.
    broken = pairs[(f"{prefix}client", f"{prefix}server")]
    assert broken["reachable"] is False
    assert broken["findings"][0] == "forwarding.disabled"
    assert pairs[(f"{prefix}client", f"{prefix}router")]["reachable"] is True

    text = netdiag("status")
    assert text.returncode == 0
    assert "NOT reachable (forwarding.disabled)" in text.stdout
