"""Built-in topologies of any size: ``star`` and ``chain`` for N namespaces (``--length N``).

Part of the topology stage: these functions only compose ``TopologySpec``
values (validated like any YAML file), they never touch the kernel. The
fixed-size built-ins (``seed``, ``routed``) are YAML files beside this module;
these two are generated because their size comes from the command line.

``chain``: N namespaces in a line, ``n1 — n2 — … — nN``. The ends are the
client (``n1``) and the server (``nN``); every namespace between them is a
router with forwarding on. Link i joins ``n<i>`` (``10.2.i.1/24`` on
``n<i>r``) and ``n<i+1>`` (``10.2.i.2/24`` on ``n<i+1>l``). The ends have a
default route towards the middle; router i has a default route rightwards and
one route per subnet to its left, so every namespace reaches every subnet.

``star``: a hub namespace holding a Linux bridge ``hubbr`` and N leaves
``s1 … sN``, each joined to the hub by a veth whose hub end (``hub<i>``) is a
bridge port. As in the seed, every leaf has its own /24 (``10.3.i.1/24`` on
``s<i>e``) and reaches the others through one device route
(``10.3.0.0/16 dev s<i>e``, scope link): one broadcast domain, and no
leaf reaches another before its route exists.
"""

from __future__ import annotations

import ipaddress

from netdiag.errors import UsageError
from netdiag.topology.spec import (
    AddressSpec,
    BridgeSpec,
    LinkEndSpec,
    LinkSpec,
    NamespaceSpec,
    ProbeSpec,
    RouteSpec,
    TopologySpec,
)

GENERATED = ("chain", "star")
DEFAULT_LENGTH = 3
# Link subnets are 10.2.<i>.0/24 and leaf subnets 10.3.<i>.0/24: i stays below 255.
MAXIMUM_LENGTH = 250
MINIMUM_LENGTH = {"chain": 3, "star": 2}


def _address(text: str) -> AddressSpec:
    return AddressSpec(ipaddress.IPv4Interface(text))


def _end(namespace: str, interface: str, address: str) -> LinkEndSpec:
    return LinkEndSpec(namespace=namespace, interface=interface, addresses=(_address(address),))


def _route(namespace: str, destination: str, device: str, via: str | None = None) -> RouteSpec:
    return RouteSpec(
        namespace=namespace,
        destination=ipaddress.IPv4Network(destination),
        device=device,
        gateway=ipaddress.IPv4Address(via) if via is not None else None,
    )


def chain(length: int) -> TopologySpec:
    """``n1 — n2 — … — n<length>``: client, routers, server."""
    names = [f"n{index}" for index in range(1, length + 1)]
    links = tuple(
        LinkSpec(
            ends=(
                _end(names[index - 1], f"n{index}r", f"10.2.{index}.1/24"),
                _end(names[index], f"n{index + 1}l", f"10.2.{index}.2/24"),
            )
        )
        for index in range(1, length)
    )
    routes = [
        _route("n1", "0.0.0.0/0", "n1r", "10.2.1.2"),
        _route(f"n{length}", "0.0.0.0/0", f"n{length}l", f"10.2.{length - 1}.1"),
    ]
    for router in range(2, length):
        # Link `router` is on the right (towards the server), link `router - 1` on the left.
        routes.append(_route(f"n{router}", "0.0.0.0/0", f"n{router}r", f"10.2.{router}.2"))
        routes.extend(
            _route(f"n{router}", f"10.2.{subnet}.0/24", f"n{router}l", f"10.2.{router - 1}.1")
            for subnet in range(1, router - 1)
        )
    return TopologySpec(
        name="chain",
        description=f"{length} namespaces in a line, {length - 2} forwarding routers between "
        "the ends",
        namespaces=tuple(
            NamespaceSpec(name, forwarding=0 < position < length - 1)
            for position, name in enumerate(names)
        ),
        links=links,
        routes=tuple(routes),
        probe=ProbeSpec(
            server_namespace=f"n{length}",
            server_address=ipaddress.IPv4Address(f"10.2.{length - 1}.2"),
            client_namespace="n1",
            client_address=ipaddress.IPv4Address("10.2.1.1"),
            capture_namespace=f"n{length}",
            capture_interface=f"n{length}l",
        ),
    )


def star(length: int) -> TopologySpec:
    """``length`` leaves on a bridge in the hub namespace."""
    leaves = [f"s{index}" for index in range(1, length + 1)]
    links = tuple(
        LinkSpec(
            ends=(
                _end(leaf, f"{leaf}e", f"10.3.{index}.1/24"),
                LinkEndSpec(namespace="hub", interface=f"hub{index}"),
            )
        )
        for index, leaf in enumerate(leaves, start=1)
    )
    return TopologySpec(
        name="star",
        description=f"{length} namespaces on a Linux bridge in the hub namespace",
        namespaces=(NamespaceSpec("hub"), *(NamespaceSpec(leaf) for leaf in leaves)),
        links=links,
        bridges=(
            BridgeSpec(
                namespace="hub",
                name="hubbr",
                members=tuple(f"hub{index}" for index in range(1, length + 1)),
            ),
        ),
        routes=tuple(_route(leaf, "10.3.0.0/16", f"{leaf}e") for leaf in leaves),
        probe=ProbeSpec(
            server_namespace="s1",
            server_address=ipaddress.IPv4Address("10.3.1.1"),
            client_namespace="s2",
            client_address=ipaddress.IPv4Address("10.3.2.1"),
            capture_namespace="s1",
            capture_interface="s1e",
        ),
    )


def generate(name: str, length: int | None) -> TopologySpec:
    """The generated built-in ``name`` for ``length`` namespaces (leaves for a star)."""
    size = DEFAULT_LENGTH if length is None else length
    minimum = MINIMUM_LENGTH[name]
    if not minimum <= size <= MAXIMUM_LENGTH:
        raise UsageError(
            f"--length {size} is outside {minimum}..{MAXIMUM_LENGTH} for topology {name}",
            advice=(
                "a chain needs two ends and a router between them"
                if name == "chain" and size < minimum
                else f"the subnets are numbered 1..{MAXIMUM_LENGTH}"
                if size > MAXIMUM_LENGTH
                else None
            ),
        )
    return chain(size) if name == "chain" else star(size)
