"""The built-in topologies beyond the seed (routed, star, chain), their validation, and
running the experiment on them for real.

Spec tests need no root: they build ``TopologySpec`` values and check what the
validation refuses, with a message naming the problem. The netns tests run the
CLI in a subprocess under a unique prefix and an isolated run registry, and
check that nothing of theirs is left.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from netdiag.errors import TopologyError, UsageError
from netdiag.topology.generators import chain, generate, star
from netdiag.topology.loader import all_builtin_names, load_topology, parse_topology
from tests.helpers import namespaces_with_prefix, netdiag

# ---- the built-ins -----------------------------------------------------------------------


def test_every_builtin_is_listed_and_loads() -> None:
    assert {"seed", "routed", "star", "chain"} <= set(all_builtin_names())
    for name in all_builtin_names():
        spec = load_topology(name)
        probe = spec.experiment_probe()
        assert probe.server_namespace != probe.client_namespace


def test_routed_has_a_forwarding_router_and_default_routes() -> None:
    spec = load_topology("routed")
    assert [n.name for n in spec.namespaces if n.forwarding] == ["router"]
    defaults = {r.namespace: r.gateway for r in spec.routes if r.destination.prefixlen == 0}
    assert {name: str(gateway) for name, gateway in defaults.items()} == {
        "client": "10.0.1.1",
        "server": "10.0.2.1",
    }


@pytest.mark.parametrize("length", [3, 4, 50])
def test_chain_routers_reach_every_subnet(length: int) -> None:
    spec = chain(length).with_prefix("t0000-")
    assert len(spec.namespaces) == length
    routers = [n.name for n in spec.namespaces if n.forwarding]
    assert len(routers) == length - 2
    subnets = {network for link in spec.links for network in link.networks}
    for router in routers:
        routes = spec.routes_of(router)
        connected = {a.network for a in spec.addresses_of(router)}
        has_default = any(route.destination.prefixlen == 0 for route in routes)
        covered = connected | {route.destination for route in routes}
        # A default route covers what lies to the right; the left subnets are listed.
        assert has_default
        left = {net for net in subnets if net.network_address < min(connected).network_address}
        assert left <= covered


def test_star_leaves_share_a_bridge_in_the_hub() -> None:
    spec = star(4)
    (bridge,) = spec.bridges
    assert bridge.namespace == "hub"
    assert set(bridge.members) == {f"hub{index}" for index in range(1, 5)}
    assert spec.bridge_of("hub", "hub2") == bridge
    assert spec.addresses_of("hub") == ()


def test_generated_sizes_are_bounded() -> None:
    with pytest.raises(UsageError, match="--length 2 is outside 3"):
        generate("chain", 2)
    assert len(generate("star", 2).namespaces) == 3
    assert len(load_topology("chain", 7).namespaces) == 7


@pytest.mark.parametrize(
    ("topology", "length", "bounds"),
    [("chain", 2, "3..250"), ("chain", 251, "3..250"), ("star", 1, "2..250")],
)
def test_the_cli_states_the_generators_own_bounds(topology: str, length: int, bounds: str) -> None:
    """One place decides a size's bounds (the CLI once refused 65..250 itself)."""
    result = netdiag("up", "--topology", topology, "--length", str(length), "--prefix", "nd0b-")
    assert result.returncode == 2, result.stderr
    assert f"--length {length} is outside {bounds} for topology {topology}" in result.stderr


# ---- validation: a message that names the problem ---------------------------------------

_TWO_LINKS = """
namespaces: [a, b, c]
links:
  - ends:
      - {namespace: a, interface: a0, addresses: [%s]}
      - {namespace: b, interface: b0, addresses: [%s]}
  - ends:
      - {namespace: b, interface: b1, addresses: [%s]}
      - {namespace: c, interface: c0, addresses: [%s]}
"""


def test_overlapping_subnets_on_different_links_are_refused() -> None:
    text = _TWO_LINKS % ("10.9.0.1/16", "10.9.0.2/16", "10.9.1.1/24", "10.9.1.2/24")
    with pytest.raises(TopologyError, match=r"subnets 10.9.0.0/16 and 10.9.1.0/24 overlap"):
        parse_topology(text, "t.yaml", "t")


def test_a_route_via_an_address_no_link_provides_is_refused() -> None:
    text = _TWO_LINKS % ("10.9.0.1/24", "10.9.0.2/24", "10.9.1.1/24", "10.9.1.2/24")
    text += "routes:\n  - {namespace: a, destination: default, via: 10.9.1.1, device: a0}\n"
    with pytest.raises(TopologyError, match=r"via 10.9.1.1, which no subnet of a0's link"):
        parse_topology(text, "t.yaml", "t")


def test_interface_names_too_long_for_the_kernel_are_refused() -> None:
    with pytest.raises(TopologyError, match=r"is 17 bytes; the kernel allows at most 15"):
        star(3).with_prefix("a-long-prefix-")  # "a-long-prefix-s1e"
    with pytest.raises(TopologyError, match="interface name 'abcdefghijklmnop'"):
        parse_topology(
            _TWO_LINKS.replace("a0", "abcdefghijklmnop")
            % ("10.9.0.1/24", "10.9.0.2/24", "10.9.1.1/24", "10.9.1.2/24"),
            "t.yaml",
            "t",
        )


_STAR_FILE = """
namespaces: [hub, x, y]
links:
  - ends:
      - {namespace: x, interface: x0, addresses: [10.8.0.1/24]}
      - {namespace: hub, interface: p1}
  - ends:
      - {namespace: y, interface: y0, addresses: [10.8.0.2/24]}
      - {namespace: hub, interface: p2}
bridges:
  - {namespace: hub, name: br0, members: %s, addresses: [10.8.0.254/24]}
routes:
  - {namespace: x, destination: default, via: 10.8.0.254, device: x0}
"""


def test_bridged_links_may_share_a_subnet_and_route_via_the_bridge() -> None:
    spec = parse_topology(_STAR_FILE % "[p1, p2]", "s.yaml", "s")
    (bridge,) = spec.bridges
    assert bridge.name == "br0" and str(bridge.addresses[0]) == "10.8.0.254/24"
    prefixed = spec.with_prefix("t0000-")
    assert prefixed.bridges[0].members == ("t0000-p1", "t0000-p2")
    # Without the bridge the two links are separate domains: the shared /24 is refused.
    without = _STAR_FILE.split("bridges:", maxsplit=1)[0]
    with pytest.raises(TopologyError, match="overlap on different links"):
        parse_topology(without, "s.yaml", "s")


def test_bridge_members_must_be_link_ends_of_its_namespace() -> None:
    with pytest.raises(TopologyError, match=r"member 'x0', which is not a link end in hub"):
        parse_topology(_STAR_FILE % "[p1, x0]", "s.yaml", "s")
    with pytest.raises(TopologyError, match="lists member p1 twice"):
        parse_topology(_STAR_FILE % "[p1, p1]", "s.yaml", "s")
    with pytest.raises(TopologyError, match=r"s.yaml:\d+: .*unknown key 'member'"):
        parse_topology(
            _STAR_FILE.replace("members: %s", "member: [p1]"),
            "s.yaml",
            "s",
        )


# ---- for real ----------------------------------------------------------------------------


@pytest.mark.netns
@pytest.mark.parametrize(
    ("topology", "length", "namespaces"), [("routed", 3, 3), ("star", 3, 4), ("chain", 4, 4)]
)
def test_run_on_each_topology(
    topology: str,
    length: int,
    namespaces: int,
    tmp_path: Path,
    no_leftovers: str,
    isolated_registry: Path,
) -> None:
    result = netdiag(
        "run", "--topology", topology, "--length", str(length), "--count", "2",
        "--prefix", no_leftovers, "--out", str(tmp_path), "--json",
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    assert result.returncode == 0, [step for step in document["steps"] if not step["ok"]]
    assert document["topology"] == topology
    steps = {step["id"]: step for step in document["steps"]}
    # The routers (or the hub) are configured in their own step.
    assert steps["other-namespaces"]["ok"] is True
    if topology == "star":
        # The bridge is made with the links (veth-pair), then set up with its namespace.
        hub, bridge = f"{no_leftovers}hub", f"{no_leftovers}hubbr"
        made = [c for c in steps["veth-pair"]["commands"] if "bridge" in c or "master" in c]
        assert made[0] == f"ip -n {hub} link add {bridge} type bridge"
        assert len(made) == 1 + length and all(" master " in c for c in made[1:])
        configured = steps["other-namespaces"]["commands"]
        assert f"ip -n {hub} link set {bridge} up" in configured
        assert not [c for c in configured if "type bridge" in c or "master" in c]
    assert len(steps["teardown"]["commands"]) == namespaces
    assert all(ping["received"] == 2 for ping in document["icmp"])
    (tcp,) = document["tcp"]
    assert tcp["message_received"] == "this is a test message"


@pytest.mark.netns
def test_fifty_namespace_chain_up_status_down(no_leftovers: str, isolated_registry: Path) -> None:
    up = netdiag("up", "--topology", "chain", "--length", "50", "--prefix", no_leftovers, "--json")
    assert up.returncode == 0, up.stderr
    assert len(json.loads(up.stdout)["namespaces"]) == 50
    assert len(namespaces_with_prefix(no_leftovers)) == 50

    status = netdiag("status", "--json")
    assert status.returncode == 0, status.stderr
    (mine,) = [t for t in json.loads(status.stdout)["topologies"] if t["prefix"] == no_leftovers]
    assert len(mine["namespaces"]) == 50
    pairs = {(pair["from"], pair["to_namespace"]): pair for pair in mine["reachability"]}
    first, last = f"{no_leftovers}n1", f"{no_leftovers}n50"
    assert set(pairs) == {(first, last), (last, first)}  # the 48 routers are not endpoints
    assert pairs[(first, last)]["reachable"] is True
    assert len(pairs[(first, last)]["path"]) == 50

    down = netdiag("down", "--prefix", no_leftovers, "--json")
    assert down.returncode == 0, down.stderr
    assert len(json.loads(down.stdout)["removed"]) == 50
    assert namespaces_with_prefix(no_leftovers) == []
