"""``diagnose --fix``: apply each hinted change through netlink, then diagnose again.

A fix is applied only in a namespace that netdiag's own record says netdiag
created (``registry.owner_of_namespace``: name *and* device/inode must match,
so a foreign namespace that merely reuses a name is never touched). Anything
else (a user's namespace, a container's ``pid:N``) is refused with one line
before any change is made there; fixes already applied in netdiag's own
namespaces stay applied and are named in the refusal.

Fixing one cause may uncover the next (no routes at all: the outbound route,
then the way back), so rounds repeat, without probes, until the walk finds no
cause, a cause without an automatic fix, or the same cause twice; then a last
diagnosis with probes gives the verdict.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from netdiag.diagnose.engine import diagnose
from netdiag.diagnose.model import Diagnosis, Remedy
from netdiag.errors import NetdiagError, ResourceConflictError
from netdiag.live import registry
from netdiag.live.namespaces import inside

MAX_ROUNDS = 8
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253


class FixError(NetdiagError):
    """The kernel refused a change ``--fix`` asked for (the message names the command)."""


def _already_applied(applied: list[str]) -> str:
    """The tail of a refusal: the fixes made before it, which stay applied."""
    return f" (already applied: {'; '.join(applied)})" if applied else ""


def ensure_fixable(remedy: Remedy, applied: list[str]) -> None:
    """Raise unless netdiag created the namespace the remedy would change."""
    namespace = remedy.namespace
    if registry.owner_of_namespace(namespace) is not None:
        return
    raise ResourceConflictError(
        f"--fix refused: namespace {namespace} was not created by netdiag, "
        f"so netdiag does not change it{_already_applied(applied)}",
        advice=f"if you mean it, apply the fix yourself: {remedy.command}",
    )


def _interface_index(handle: Any, remedy: Remedy) -> int:
    indexes = handle.link_lookup(ifname=remedy.interface)
    if not indexes:
        raise FixError(f"cannot apply `{remedy.command}`: no {remedy.interface} in it any more")
    return int(indexes[0])


def apply_remedy(remedy: Remedy) -> None:
    """Make the change ``remedy.command`` describes, through pyroute2 (never the ip binary)."""
    from pyroute2 import IPRoute

    if remedy.action == "forwarding-on":
        try:
            # /proc/sys/net resolves to the namespace of the thread that opens it.
            with (
                inside(remedy.namespace),
                open("/proc/sys/net/ipv4/ip_forward", "w", encoding="ascii") as handle,
            ):
                handle.write("1\n")
        except OSError as error:
            raise FixError(f"cannot apply `{remedy.command}`: {error}") from error
        return
    with inside(remedy.namespace):
        route_socket = IPRoute()
    try:
        index = _interface_index(route_socket, remedy)
        if remedy.action == "link-up":
            route_socket.link("set", index=index, state="up")
        elif remedy.action == "mtu-set":
            route_socket.link("set", index=index, mtu=remedy.mtu)
        elif remedy.action == "addr-add":
            assert remedy.address is not None
            route_socket.addr(
                "add",
                index=index,
                address=str(remedy.address.ip),
                prefixlen=remedy.address.network.prefixlen,
            )
        elif remedy.action == "route-add":
            assert remedy.network is not None
            arguments: dict[str, Any] = {
                "dst": str(remedy.network),
                "oif": index,
                # `ip route add ... dev` is scope link; pyroute2 would default to universe.
                "scope": RT_SCOPE_LINK if remedy.gateway is None else RT_SCOPE_UNIVERSE,
            }
            if remedy.gateway is not None:
                arguments["gateway"] = str(remedy.gateway)
            route_socket.route("replace" if remedy.replace else "add", **arguments)
        elif remedy.action == "neigh-del":
            assert remedy.address is not None
            route_socket.neigh("del", dst=str(remedy.address.ip), ifindex=index)
    except NetdiagError:
        raise
    except Exception as error:
        raise FixError(f"cannot apply `{remedy.command}`: {error}") from error
    finally:
        route_socket.close()


def _apply(remedy: Remedy, applied: list[str]) -> None:
    """Apply one fix and add it to ``applied``; a refusal names those applied before it."""
    ensure_fixable(remedy, applied)
    try:
        apply_remedy(remedy)
    except FixError as error:
        raise FixError(error.message + _already_applied(applied), error.advice) from error
    applied.append(remedy.command)


def diagnose_and_fix(source: str, target: str, port: int | None) -> Diagnosis:
    """Fix cause after cause (netdiag's namespaces only), then diagnose with probes."""
    applied: list[str] = []
    seen: set[Remedy] = set()
    for _round in range(MAX_ROUNDS):
        diagnosis = diagnose(source, target, port, probe=False)
        fixable = [cause.remedy for cause in diagnosis.causes if cause.remedy is not None]
        if not diagnosis.causes or not fixable or fixable[0] in seen:
            break
        remedy = fixable[0]
        _apply(remedy, applied)
        seen.add(remedy)
    final = diagnose(source, target, port)
    if not final.reachable and final.causes:
        last_remedy = final.causes[0].remedy
        # A cause the probes revealed (a FAILED neighbour entry) gets one more round.
        if last_remedy is not None and last_remedy not in seen:
            _apply(last_remedy, applied)
            final = diagnose(source, target, port)
    return replace(final, fixes_applied=tuple(applied))
