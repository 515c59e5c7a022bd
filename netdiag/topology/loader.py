"""Topology files: YAML in, a validated ``TopologySpec`` out, or one clear error.

The YAML is composed into nodes (not loaded into plain dicts) so that every
error can name the offending key and the line it is on, as yaml's node marks
record them. Unknown keys are refused rather than ignored: a typo such as
``adresses`` must not silently build a topology without addresses.

File layout (the built-in ``seed`` is the reference example)::

    name: seed
    namespaces: [ns1, ns2]          # or {name: ns1, forwarding: true}
    links:
      - ends:
          - {namespace: ns1, interface: veth0, addresses: [10.0.1.0/24]}
          - {namespace: ns2, interface: veth1, addresses: [10.0.2.0/24]}
    bridges:                         # optional: a Linux bridge and its veth-end ports
      - {namespace: hub, name: hubbr, members: [hub1, hub2], addresses: [10.3.0.254/24]}
    routes:
      - {namespace: ns1, destination: 10.0.2.0/24, device: veth0}
    probe:                           # optional; default: first link, end 0 serves
      server: {namespace: ns1, address: 10.0.1.0}
      client: {namespace: ns2, address: 10.0.2.0}
      capture: {namespace: ns1, interface: veth0}
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TypeVar

import yaml

from netdiag.errors import InputError, TopologyError
from netdiag.topology.spec import (
    AddressSpec,
    BridgeSpec,
    LinkEndSpec,
    LinkSpec,
    NamespaceSpec,
    ProbeSpec,
    RouteSpec,
    TopologySpec,
    parse_address,
    parse_interface_address,
    parse_network,
)

BUILTIN_PACKAGE = "netdiag.topology.builtin"
DEFAULT_TOPOLOGY = "seed"

T = TypeVar("T")


class _Source:
    """Where a node came from, for messages like ``seed.yaml:7: ...``."""

    def __init__(self, label: str) -> None:
        self.label = label

    def error(self, node: yaml.Node, message: str) -> TopologyError:
        return TopologyError(f"{self.label}:{node.start_mark.line + 1}: {message}")

    def mapping(
        self, node: yaml.Node, what: str, allowed: set[str], required: set[str]
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """The node as {key: (key node, value node)}; unknown/missing/duplicate keys refused."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{what} must be a mapping (key: value)")
        result: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, f"a key of {what}")
            if key not in allowed:
                raise self.error(
                    key_node,
                    f"unknown key {key!r} in {what} (allowed: {', '.join(sorted(allowed))})",
                )
            if key in result:
                raise self.error(key_node, f"key {key!r} appears twice in {what}")
            result[key] = (key_node, value_node)
        missing = sorted(required - result.keys())
        if missing:
            raise self.error(node, f"{what} lacks the key {missing[0]!r}")
        return result

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, f"{what} must be a list")
        return list(node.value)

    def scalar(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.value == "":
            raise self.error(node, f"{what} must be a plain value")
        return str(node.value)

    def boolean(self, node: yaml.Node, what: str) -> bool:
        value = self.scalar(node, what).lower()
        if value in ("true", "yes", "on"):
            return True
        if value in ("false", "no", "off"):
            return False
        raise self.error(node, f"{what} must be true or false, not {value!r}")

    def integer(self, node: yaml.Node, what: str) -> int:
        value = self.scalar(node, what)
        try:
            return int(value)
        except ValueError:
            raise self.error(node, f"{what} must be an integer, not {value!r}") from None

    def build(self, node: yaml.Node, make: Callable[[], T]) -> T:
        """Run a spec constructor; its validation error gets the line of what is at fault.

        That is this node's line, or, when the error names a list entry of this
        mapping (``subject``, e.g. the second link of ``links``), that entry's line.
        """
        try:
            return make()
        except TopologyError as error:
            at_fault = self._subject_node(node, error.subject) or node
            raise TopologyError(
                f"{self.label}:{at_fault.start_mark.line + 1}: {error.message}", error.advice
            ) from error

    @staticmethod
    def _subject_node(node: yaml.Node, subject: tuple[str, int] | None) -> yaml.Node | None:
        if subject is None or not isinstance(node, yaml.MappingNode):
            return None
        key, index = subject
        for key_node, value_node in node.value:
            if key_node.value == key and isinstance(value_node, yaml.SequenceNode):
                entries = value_node.value
                return entries[index] if 0 <= index < len(entries) else None
        return None


def _namespace(source: _Source, node: yaml.Node) -> NamespaceSpec:
    if isinstance(node, yaml.ScalarNode):
        return source.build(node, lambda: NamespaceSpec(source.scalar(node, "a namespace")))
    keys = source.mapping(node, "a namespace", {"name", "forwarding"}, {"name"})
    name = source.scalar(keys["name"][1], "name")
    forwarding = "forwarding" in keys and source.boolean(keys["forwarding"][1], "forwarding")
    return source.build(node, lambda: NamespaceSpec(name, forwarding=forwarding))


def _address_spec(text: str) -> AddressSpec:
    return AddressSpec(parse_interface_address(text))


def _link_end(source: _Source, node: yaml.Node) -> LinkEndSpec:
    keys = source.mapping(
        node,
        "a link end",
        {"namespace", "interface", "addresses", "up", "mtu"},
        {"namespace", "interface"},
    )
    addresses: list[AddressSpec] = []
    if "addresses" in keys:
        for address_node in source.sequence(keys["addresses"][1], "addresses"):
            text = source.scalar(address_node, "an address")
            addresses.append(source.build(address_node, partial(_address_spec, text)))
    up = "up" not in keys or source.boolean(keys["up"][1], "up")
    mtu = source.integer(keys["mtu"][1], "mtu") if "mtu" in keys else None
    return source.build(
        node,
        lambda: LinkEndSpec(
            namespace=source.scalar(keys["namespace"][1], "namespace"),
            interface=source.scalar(keys["interface"][1], "interface"),
            addresses=tuple(addresses),
            up=up,
            mtu=mtu,
        ),
    )


def _link(source: _Source, node: yaml.Node) -> LinkSpec:
    keys = source.mapping(node, "a link", {"kind", "ends"}, {"ends"})
    if "kind" in keys:
        kind_node = keys["kind"][1]
        if source.scalar(kind_node, "kind") != "veth":
            raise source.error(kind_node, "only kind: veth links are supported")
    end_nodes = source.sequence(keys["ends"][1], "ends")
    if len(end_nodes) != 2:
        raise source.error(keys["ends"][1], "a veth link has exactly two ends")
    first, second = (_link_end(source, end_node) for end_node in end_nodes)
    return source.build(node, lambda: LinkSpec(ends=(first, second)))


def _bridge(source: _Source, node: yaml.Node) -> BridgeSpec:
    keys = source.mapping(
        node, "a bridge", {"namespace", "name", "members", "addresses"}, {"namespace", "name"}
    )
    members = (
        tuple(
            source.scalar(member, "a member interface")
            for member in source.sequence(keys["members"][1], "members")
        )
        if "members" in keys
        else ()
    )
    addresses: list[AddressSpec] = []
    if "addresses" in keys:
        for address_node in source.sequence(keys["addresses"][1], "addresses"):
            text = source.scalar(address_node, "an address")
            addresses.append(source.build(address_node, partial(_address_spec, text)))
    return source.build(
        node,
        lambda: BridgeSpec(
            namespace=source.scalar(keys["namespace"][1], "namespace"),
            name=source.scalar(keys["name"][1], "name"),
            members=members,
            addresses=tuple(addresses),
        ),
    )


def _route(source: _Source, node: yaml.Node) -> RouteSpec:
    keys = source.mapping(
        node,
        "a route",
        {"namespace", "destination", "device", "via"},
        {"namespace", "destination", "device"},
    )
    destination_node = keys["destination"][1]
    destination = source.build(
        destination_node, lambda: parse_network(source.scalar(destination_node, "destination"))
    )
    gateway = None
    if "via" in keys:
        via_node = keys["via"][1]
        gateway = source.build(via_node, lambda: parse_address(source.scalar(via_node, "via")))
    return RouteSpec(
        namespace=source.scalar(keys["namespace"][1], "namespace"),
        destination=destination,
        device=source.scalar(keys["device"][1], "device"),
        gateway=gateway,
    )


def _probe(source: _Source, node: yaml.Node) -> ProbeSpec:
    keys = source.mapping(node, "probe", {"server", "client", "capture"}, {"server", "client"})
    sides = {}
    for side in ("server", "client"):
        side_keys = source.mapping(
            keys[side][1], f"probe {side}", {"namespace", "address"}, {"namespace", "address"}
        )
        address_node = side_keys["address"][1]
        sides[side] = (
            source.scalar(side_keys["namespace"][1], "namespace"),
            source.build(
                address_node, partial(parse_address, source.scalar(address_node, "address"))
            ),
        )
    if "capture" in keys:
        capture_keys = source.mapping(
            keys["capture"][1],
            "probe capture",
            {"namespace", "interface"},
            {"namespace", "interface"},
        )
        capture = (
            source.scalar(capture_keys["namespace"][1], "namespace"),
            source.scalar(capture_keys["interface"][1], "interface"),
        )
    else:
        capture = (sides["server"][0], "")
    return ProbeSpec(
        server_namespace=sides["server"][0],
        server_address=sides["server"][1],
        client_namespace=sides["client"][0],
        client_address=sides["client"][1],
        capture_namespace=capture[0],
        capture_interface=capture[1],
    )


def parse_topology(text: str, label: str, default_name: str) -> TopologySpec:
    """Parse YAML ``text`` (``label`` names it in errors) into a validated spec."""
    source = _Source(label)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise TopologyError(f"{label}{line}: not valid YAML: {error.problem}") from error
    except yaml.YAMLError as error:
        raise TopologyError(f"{label}: not valid YAML: {error}") from error
    if root is None:
        raise TopologyError(f"{label}: the file is empty")
    keys = source.mapping(
        root,
        "the topology",
        {"name", "description", "namespaces", "links", "bridges", "routes", "probe"},
        {"namespaces", "links"},
    )
    name = source.scalar(keys["name"][1], "name") if "name" in keys else default_name
    description = (
        source.scalar(keys["description"][1], "description") if "description" in keys else ""
    )
    namespaces = tuple(
        _namespace(source, node) for node in source.sequence(keys["namespaces"][1], "namespaces")
    )
    links = tuple(_link(source, node) for node in source.sequence(keys["links"][1], "links"))
    routes: tuple[RouteSpec, ...] = ()
    if "routes" in keys:
        routes = tuple(
            _route(source, node) for node in source.sequence(keys["routes"][1], "routes")
        )
    bridges: tuple[BridgeSpec, ...] = ()
    if "bridges" in keys:
        bridges = tuple(
            _bridge(source, node) for node in source.sequence(keys["bridges"][1], "bridges")
        )
    probe = _probe(source, keys["probe"][1]) if "probe" in keys else None
    if probe is not None and not probe.capture_interface:
        server_ends = [
            end for link in links for end in link.ends if end.namespace == probe.server_namespace
        ]
        if server_ends:
            probe = ProbeSpec(
                probe.server_namespace,
                probe.server_address,
                probe.client_namespace,
                probe.client_address,
                probe.server_namespace,
                server_ends[0].interface,
            )
    return source.build(
        root,
        lambda: TopologySpec(
            name=name,
            description=description,
            namespaces=namespaces,
            links=links,
            routes=routes,
            probe=probe,
            bridges=bridges,
        ),
    )


def builtin_names() -> tuple[str, ...]:
    folder = resources.files(BUILTIN_PACKAGE)
    return tuple(
        sorted(
            entry.name.removesuffix(".yaml")
            for entry in folder.iterdir()
            if entry.name.endswith(".yaml")
        )
    )


def all_builtin_names() -> tuple[str, ...]:
    """The YAML built-ins and the generated ones (star, chain)."""
    from netdiag.topology.generators import GENERATED

    return tuple(sorted({*builtin_names(), *GENERATED}))


def builtin_text(name: str) -> str:
    return resources.files(BUILTIN_PACKAGE).joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def load_topology_file(path: Path) -> TopologySpec:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise InputError(f"topology file {path} does not exist") from error
    except IsADirectoryError as error:
        raise InputError(f"topology file {path} is a directory") from error
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read topology file {path}: {error}") from error
    return parse_topology(text, str(path), default_name=path.stem)


def load_topology(reference: str | None, length: int | None = None) -> TopologySpec:
    """``None`` -> the seed; a built-in name -> that topology; otherwise a YAML file path.

    ``star`` and ``chain`` are generated for ``length`` namespaces (``--length``).
    """
    name = reference or DEFAULT_TOPOLOGY
    from netdiag.topology import generators

    if name in generators.GENERATED:
        return generators.generate(name, length)
    if name in builtin_names():
        return parse_topology(builtin_text(name), f"{name}.yaml", default_name=name)
    path = Path(name)
    if not path.exists() and "/" not in name and not name.endswith((".yaml", ".yml")):
        raise InputError(
            f"no built-in topology {name!r} and no such file",
            advice=f"built-in topologies: {', '.join(all_builtin_names())}",
        )
    return load_topology_file(path)
