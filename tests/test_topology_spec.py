"""Topology specs and YAML files: validation without root, errors naming key and line."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from netdiag.errors import InputError, TopologyError
from netdiag.topology.loader import builtin_names, builtin_text, load_topology, parse_topology
from netdiag.topology.spec import AddressSpec, LinkEndSpec, LinkSpec, NamespaceSpec, TopologySpec

SEED_LIKE = """\
name: demo
namespaces: [a, b]
links:
  - ends:
      - {namespace: a, interface: va, addresses: [10.9.1.0/24]}
      - {namespace: b, interface: vb, addresses: [10.9.2.0/24]}
routes:
  - {namespace: a, destination: 10.9.2.0/24, device: va}
"""


def parse(text: str) -> TopologySpec:
    return parse_topology(textwrap.dedent(text), "t.yaml", default_name="t")


def test_seed_is_the_article_topology() -> None:
    spec = load_topology(None)
    assert spec.name == "seed"
    assert spec.namespace_names() == ("ns1", "ns2")
    (link,) = spec.links
    assert [(end.namespace, end.interface) for end in link.ends] == [
        ("ns1", "veth0"),
        ("ns2", "veth1"),
    ]
    # The article assigns the network address itself: it must survive as written.
    assert [str(a) for a in spec.addresses_of("ns1")] == ["10.0.1.0/24"]
    assert [str(a) for a in spec.addresses_of("ns2")] == ["10.0.2.0/24"]
    assert [route.ip_command() for route in spec.routes] == [
        "ip -n ns1 route add 10.0.2.0/24 dev veth0",
        "ip -n ns2 route add 10.0.1.0/24 dev veth1",
    ]
    assert all(route.scope == "link" for route in spec.routes)
    probe = spec.experiment_probe()
    assert (probe.server_namespace, str(probe.server_address)) == ("ns1", "10.0.1.0")
    assert (probe.capture_namespace, probe.capture_interface) == ("ns1", "veth0")


def test_seed_ships_as_package_data_and_parses() -> None:
    assert "seed" in builtin_names()
    assert "10.0.1.0/24" in builtin_text("seed")


def test_seed_file_loads_by_path(tmp_path: Path) -> None:
    copy = tmp_path / "mine.yaml"
    copy.write_text(builtin_text("seed"))
    assert load_topology(str(copy)) == load_topology("seed")


def test_prefix_renames_every_namespace_and_interface() -> None:
    spec = load_topology(None).with_prefix("p1-")
    assert spec.namespace_names() == ("p1-ns1", "p1-ns2")
    assert [end.interface for end in spec.links[0].ends] == ["p1-veth0", "p1-veth1"]
    assert [(r.namespace, r.device) for r in spec.routes] == [
        ("p1-ns1", "p1-veth0"),
        ("p1-ns2", "p1-veth1"),
    ]
    probe = spec.experiment_probe()
    assert probe.capture_interface == "p1-veth0"
    assert probe.client_namespace == "p1-ns2"


def test_prefix_too_long_for_interface_names() -> None:
    with pytest.raises(TopologyError, match="at most 15"):
        load_topology(None).with_prefix("a-very-long-")


def test_interface_name_too_long_names_line() -> None:
    text = SEED_LIKE.replace("interface: vb,", "interface: sixteen-bytes-xx,")
    with pytest.raises(TopologyError) as caught:
        parse(text)
    assert "t.yaml:6:" in caught.value.message
    assert "sixteen-bytes-xx" in caught.value.message


def test_unknown_key_is_refused_with_its_line() -> None:
    text = SEED_LIKE.replace("addresses: [10.9.2.0/24]", "adresses: [10.9.2.0/24]")
    with pytest.raises(TopologyError) as caught:
        parse(text)
    assert "t.yaml:6:" in caught.value.message
    assert "'adresses'" in caught.value.message


def test_unknown_top_level_key() -> None:
    with pytest.raises(TopologyError, match=r"t\.yaml:9: unknown key 'extra'"):
        parse(SEED_LIKE + "extra: 1\n")


def test_bad_address_names_line() -> None:
    text = SEED_LIKE.replace("10.9.1.0/24]", "10.9.1.300/24]")
    with pytest.raises(TopologyError) as caught:
        parse(text)
    assert "t.yaml:5:" in caught.value.message
    assert "10.9.1.300/24" in caught.value.message


def test_address_needs_a_prefix_length() -> None:
    with pytest.raises(TopologyError, match="prefix length"):
        parse(SEED_LIKE.replace("10.9.1.0/24]", "10.9.1.1]"))


def test_overlapping_subnets_on_different_links() -> None:
    text = """\
    namespaces: [a, b, c]
    links:
      - ends:
          - {namespace: a, interface: ab, addresses: [10.1.0.1/16]}
          - {namespace: b, interface: ba, addresses: [10.1.0.2/16]}
      - ends:
          - {namespace: b, interface: bc, addresses: [10.1.5.1/24]}
          - {namespace: c, interface: cb, addresses: [10.1.5.2/24]}
    """
    with pytest.raises(TopologyError, match=r"10\.1\.0\.0/16 and 10\.1\.5\.0/24 overlap"):
        parse(text)


def test_same_subnet_on_one_link_is_fine() -> None:
    text = """\
    namespaces: [a, b]
    links:
      - ends:
          - {namespace: a, interface: ab, addresses: [10.1.0.1/24]}
          - {namespace: b, interface: ba, addresses: [10.1.0.2/24]}
    """
    spec = parse(text)
    assert spec.links[0].networks == {ipaddress.IPv4Network("10.1.0.0/24")}


def test_duplicate_address_refused() -> None:
    with pytest.raises(TopologyError, match=r"10\.9\.1\.0 is on both"):
        parse(SEED_LIKE.replace("10.9.2.0/24]", "10.9.1.0/24]"))


def test_route_via_an_address_no_link_provides() -> None:
    text = SEED_LIKE + "  - {namespace: b, destination: default, device: vb, via: 10.7.7.7}\n"
    with pytest.raises(TopologyError, match=r"via 10\.7\.7\.7, which no subnet"):
        parse(text)


def test_route_through_a_device_of_another_namespace() -> None:
    text = SEED_LIKE.replace(
        "destination: 10.9.2.0/24, device: va", "destination: 10.9.2.0/24, device: vb"
    )
    with pytest.raises(TopologyError, match="not an interface of a"):
        parse(text)


def test_route_destination_with_host_bits() -> None:
    with pytest.raises(TopologyError, match=r"t\.yaml:8:.*host bits"):
        parse(SEED_LIKE.replace("destination: 10.9.2.0/24", "destination: 10.9.2.1/24"))


def test_link_end_in_undeclared_namespace() -> None:
    with pytest.raises(TopologyError, match="'zz', which the topology does not declare"):
        parse(SEED_LIKE.replace("{namespace: b, interface: vb", "{namespace: zz, interface: vb"))


def test_yaml_syntax_error_names_line() -> None:
    with pytest.raises(TopologyError, match=r"t\.yaml:\d+: not valid YAML"):
        parse("namespaces: [ns1, ns2\nlinks: {}\n")


def test_duplicate_key_refused() -> None:
    with pytest.raises(TopologyError, match=r"t\.yaml:2: key 'namespaces' appears twice"):
        parse("namespaces: [a]\nnamespaces: [b]\nlinks: []\n")


def test_missing_required_key() -> None:
    with pytest.raises(TopologyError, match="lacks the key 'links'"):
        parse("namespaces: [a]\n")


def test_missing_file_and_unknown_builtin(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_topology(str(tmp_path / "nope.yaml"))
    with pytest.raises(InputError, match="no built-in topology 'nosuch'"):
        load_topology("nosuch")


def test_specs_are_frozen_and_validated_directly() -> None:
    end_a = LinkEndSpec("a", "va", (AddressSpec(ipaddress.IPv4Interface("10.0.0.1/30")),))
    end_b = LinkEndSpec("b", "vb", (AddressSpec(ipaddress.IPv4Interface("10.0.0.2/30")),))
    spec = TopologySpec("x", (NamespaceSpec("a"), NamespaceSpec("b")), (LinkSpec((end_a, end_b)),))
    with pytest.raises(AttributeError):
        spec.name = "y"  # type: ignore[misc]
    with pytest.raises(TopologyError, match="declared twice"):
        TopologySpec("x", (NamespaceSpec("a"), NamespaceSpec("a")), ())
    with pytest.raises(TopologyError, match="contains '/'"):
        NamespaceSpec("a/b")
