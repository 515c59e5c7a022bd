"""``netdiag up / down / status / clean``: topologies left up on purpose, and leftovers.

``up`` builds a topology and records it as *kept* in netdiag's run registry;
``down`` removes a kept topology (matched by prefix and topology name) exactly
as recorded; ``status`` shows every topology netdiag has up, read live through
pyroute2, with diagnose's read-only walk between each pair of endpoints (nothing
is sent); ``clean`` removes what runs that died (``kill -9``) left behind.
All of them act only on what the registry records, with the namespace's
identity (device, inode) checked, never on names that merely look familiar.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape

from netdiag.console import PipeConsole
from netdiag.errors import ExitStatus


def _console(json_output: bool) -> Console:
    return PipeConsole(stderr=json_output, quiet=json_output, highlight=False, soft_wrap=True)


def up(*, topology: str | None, prefix: str, length: int, json_output: bool) -> int:
    from netdiag.topology.loader import load_topology

    spec = load_topology(topology, length).with_prefix(prefix)
    from netdiag.live.namespaces import check_environment

    check_environment()
    from netdiag.live.registry import new_run_id
    from netdiag.live.signals import raise_if_signalled, terminate_as_exception
    from netdiag.live.topology import LiveTopology

    console = _console(json_output)
    run_id = new_run_id()
    with terminate_as_exception(), LiveTopology(spec, run_id, command="up") as live:
        live.build()  # an error or interrupt here tears down what was made
        # A signal only noted during a netlink request (live/signals.py): raised
        # here, before the topology is kept, so it is torn down as for the others.
        raise_if_signalled()
        live.keep()
        record = live.record
    document = {
        "run_id": run_id,
        "topology": spec.name,
        "prefix": prefix,
        "namespaces": list(spec.namespace_names()),
        "record": str(record.path),
    }
    if json_output:
        print(json.dumps(document, indent=2))
        return int(ExitStatus.OK)
    option = f" --prefix {prefix}" if prefix else ""
    console.print(f"[bold]{escape(spec.name)}[/] is up (run {run_id}):")
    for namespace in spec.namespace_names():
        for end in spec.interfaces_of(namespace):
            addresses = ", ".join(str(address) for address in end.addresses) or "no address"
            console.print(f"  {escape(namespace)}: {escape(end.interface)} {escape(addresses)}")
        for route in spec.routes_of(namespace):
            console.print(f"  [dim]{escape(route.ip_command())}[/]")
    first = spec.namespace_names()[0]
    console.print(
        f"Enter it with `ip netns exec {escape(first)} bash`; "
        f"remove it with `netdiag down{escape(option)}`."
    )
    return int(ExitStatus.OK)


def down(*, topology: str | None, prefix: str, json_output: bool) -> int:
    from netdiag.live import registry
    from netdiag.live.namespaces import check_environment
    from netdiag.live.signals import deferred_signals
    from netdiag.live.topology import remove_recorded

    check_environment()
    console = _console(json_output)
    wanted_name = None
    if topology is not None:
        from netdiag.topology.loader import load_topology

        wanted_name = load_topology(topology).name
    chosen = [
        record
        for record in registry.load_records()
        if record.kept
        and record.prefix == prefix
        and (wanted_name is None or record.topology == wanted_name)
    ]
    removed: list[str] = []
    errors: list[str] = []
    with deferred_signals():
        for record in chosen:
            result = remove_recorded(record)
            removed.extend(result.removed)
            errors.extend(result.errors)
            if not result.remaining:
                registry.forget(record)
    if json_output:
        print(json.dumps({"removed": removed, "errors": errors}, indent=2))
    elif not chosen:
        option = f" with prefix {prefix!r}" if prefix else ""
        console.print(f"netdiag has no topology up{escape(option)}; `netdiag status` lists them")
    else:
        console.print(f"removed {escape(', '.join(removed) or 'nothing')}")
        for error in errors:
            console.print(f"[red]{escape(error)}[/]")
    return int(ExitStatus.OK if not errors else ExitStatus.EXPECTATION_FAILED)


def _namespace_view(namespace: str) -> dict[str, Any]:
    """Links, addresses and routes of one namespace, read through pyroute2."""
    from pyroute2 import IPRoute

    from netdiag.live.namespaces import inside

    with inside(namespace):
        handle = IPRoute()
    try:
        names = {link["index"]: link.get("IFLA_IFNAME") for link in handle.get_links()}
        links = [
            {
                "name": link.get("IFLA_IFNAME"),
                "state": link.get("IFLA_OPERSTATE"),
                "up": bool(link["flags"] & 1),
                "mtu": link.get("IFLA_MTU"),
            }
            for link in handle.get_links()
        ]
        addresses = [
            {
                "interface": names.get(entry["index"]),
                "address": f"{entry.get('IFA_ADDRESS')}/{entry['prefixlen']}",
            }
            for entry in handle.get_addr(family=2)
        ]
        routes = [
            {
                "destination": f"{route.get('RTA_DST') or 'default'}"
                + (f"/{route['dst_len']}" if route.get("RTA_DST") else ""),
                "device": names.get(route.get("RTA_OIF")),
                "via": route.get("RTA_GATEWAY"),
            }
            for route in handle.get_routes(family=2, table=254)
        ]
    finally:
        handle.close()
    return {"name": namespace, "links": links, "addresses": addresses, "routes": routes}


def _reachability(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each ordered pair of endpoints: diagnose's read-only walk (nothing is sent)."""
    from netdiag.diagnose.pairs import reachability

    return [pair.to_json() for pair in reachability([view["name"] for view in views])]


def status(*, json_output: bool) -> int:
    from netdiag.live import registry
    from netdiag.live.namespaces import check_environment

    check_environment()
    console = _console(json_output)
    topologies: list[dict[str, Any]] = []
    for record in registry.load_records():
        existing = record.existing_namespaces()
        views = [_namespace_view(name) for name in existing]
        topologies.append(
            {
                "run_id": record.run_id,
                "command": record.command,
                "topology": record.topology,
                "prefix": record.prefix,
                "kept": record.kept,
                "running": record.process_alive(),
                "abandoned": record.abandoned,
                "namespaces": views,
                "reachability": _reachability(views),
            }
        )
    if json_output:
        print(json.dumps({"topologies": topologies}, indent=2))
        return int(ExitStatus.OK)
    if not topologies:
        console.print("netdiag has nothing up")
        return int(ExitStatus.OK)
    for item in topologies:
        state = (
            "kept up"
            if item["kept"]
            else "running"
            if item["running"]
            else "[red]left behind by a dead run (netdiag clean)[/]"
        )
        console.print(
            f"[bold]{escape(item['topology'])}[/] run {escape(item['run_id'])} "
            f"({escape(item['command'])}, prefix {item['prefix']!r}): {state}"
        )
        for view in item["namespaces"]:
            console.print(f"  {escape(view['name'])}")
            for link in view["links"]:
                if link["name"] != "lo":
                    state = "UP" if link["up"] else "DOWN"
                    console.print(
                        f"    link {escape(str(link['name']))} {state} "
                        f"({escape(str(link['state']))}), mtu {link['mtu']}"
                    )
            for address in view["addresses"]:
                console.print(
                    f"    {escape(str(address['interface']))} {escape(address['address'])}"
                )
            for route in view["routes"]:
                via = f" via {route['via']}" if route["via"] else ""
                console.print(
                    f"    route {escape(route['destination'])}{escape(via)} "
                    f"dev {escape(str(route['device']))}"
                )
        for pair in item["reachability"]:
            if pair["reachable"]:
                verdict = "reachable via " + " → ".join(pair["path"])
            else:
                verdict = f"[red]NOT reachable[/] ({escape(', '.join(pair['findings']))}): " + (
                    escape(pair["verdict"])
                )
            console.print(
                f"  {escape(pair['from'])} → {escape(pair['to_namespace'])} "
                f"{escape(str(pair['to']))}: {verdict}"
            )
    return int(ExitStatus.OK)


def clean(*, json_output: bool) -> int:
    from netdiag.live import registry
    from netdiag.live.namespaces import check_environment
    from netdiag.live.signals import deferred_signals
    from netdiag.live.topology import remove_recorded

    check_environment()
    console = _console(json_output)
    removed: list[str] = []
    errors: list[str] = []
    runs = []
    with deferred_signals():
        for record in registry.abandoned_records():
            result = remove_recorded(record)
            removed.extend(result.removed)
            errors.extend(result.errors)
            runs.append(record.run_id)
            if not result.remaining:
                registry.forget(record)
    kept = [record for record in registry.load_records() if record.kept]
    if json_output:
        print(
            json.dumps(
                {
                    "runs": runs,
                    "removed": removed,
                    "errors": errors,
                    "kept": [record.run_id for record in kept],
                },
                indent=2,
            )
        )
        return int(ExitStatus.OK)
    if runs:
        console.print(
            f"removed {escape(', '.join(removed) or 'no namespaces')} "
            f"left behind by {len(runs)} dead run(s)"
        )
    else:
        console.print("nothing left behind by earlier runs")
    for error in errors:
        console.print(f"[red]{escape(error)}[/]")
    for record in kept:
        option = f" --prefix {record.prefix}" if record.prefix else ""
        console.print(
            f"[dim]kept on purpose: {escape(', '.join(record.existing_namespaces()))} "
            f"(remove with `netdiag down{escape(option)}`)[/]"
        )
    return int(ExitStatus.OK)
