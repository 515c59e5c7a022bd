"""LiveTopology: a TopologySpec made real in the kernel, and removed again.

This module (with ``namespaces`` and ``registry``) is the only code that
creates or deletes namespaces and links, and it builds a topology's addresses
and routes. It uses pyroute2's netlink API, never the ``ip`` binary, with one
IPRoute socket per namespace opened *inside* that namespace and reused for
every operation (a new IPRoute per operation costs a fork and tens of
milliseconds). A namespace is created in this thread
(``namespaces.created_and_inside``, no helper process), and its socket is
opened, ``lo`` set up and forwarding written while still inside it. Interface
indexes are looked up once and remembered: an interface netdiag made keeps its
index until teardown (a chain of 50 namespaces has over a thousand routes, each
naming its device).

Besides it, only ``diagnose/fix.py`` (``diagnose --fix``) changes the kernel's
network state: it adds addresses and routes, sets links up or their MTU, turns
forwarding on and deletes neighbour entries, and only in namespaces that
netdiag's record says netdiag created. (``run --scenario link-down`` sets a
link down too, through this module's socket of a namespace it built.)

Invariants:
- Each namespace is written into the run's record (``registry``) the moment it
  exists, signals held back in between, so a run stopped at any point but by
  ``kill -9`` in that window leaves a record that ``netdiag clean`` can act on
  exactly. Links are recorded for information only: removing a namespace
  removes every interface in it.
- A veth is created inside its first namespace with the peer sent straight to
  the second: the root namespace never holds, even briefly, an interface of ours.
- Teardown runs only in the process that built the topology (pyroute2 forks
  helpers that inherit our handlers and ``finally`` blocks), closes every
  socket and sniffer registered with ``on_teardown`` first (an open socket keeps
  a deleted namespace alive, invisibly), then removes the namespaces, newest
  first, as ``ip netns del`` does: the kernel then destroys all their
  interfaces in one batch. Deleting each veth first, as netdiag once did, made
  the kernel wait for an RCU grace period per link (about 23 ms each here).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any

from netdiag.errors import ExitStatus, NetdiagError, ResourceConflictError
from netdiag.live import registry
from netdiag.live.namespaces import (
    configure_pyroute2,
    created_and_inside,
    inside,
    namespace_exists,
    remove_namespace,
)
from netdiag.live.signals import deferred_signals, raise_if_signalled

if TYPE_CHECKING:  # at run time only where needed: `netdiag down` never loads the spec model
    from netdiag.topology.spec import BridgeSpec, LinkEndSpec, LinkSpec, RouteSpec, TopologySpec

RT_SCOPE_UNIVERSE = 0
IFF_UP = 0x1
RT_SCOPE_LINK = 253
# The kernel gives every new namespace's lo this index (LOOPBACK_IFINDEX): no lookup needed.
LOOPBACK_INDEX = 1
ENETUNREACH = errno.ENETUNREACH


class LiveTopologyError(NetdiagError):
    """The kernel refused a change netdiag asked for (message names the change)."""

    exit_status = ExitStatus.ENVIRONMENT


@dataclass(frozen=True, slots=True)
class RouteLookup:
    """What ``ip -n NS route get DST`` says: the interface used, or the kernel's error."""

    namespace: str
    destination: str
    interface: str | None
    source: str | None
    error_code: int | None
    error: str | None

    @property
    def reachable(self) -> bool:
        return self.error_code is None


@dataclass(frozen=True, slots=True)
class TeardownResult:
    removed: tuple[str, ...]
    remaining: tuple[str, ...]
    errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.remaining and not self.errors


def _new_route_socket() -> Any:
    """An IPRoute socket of the calling thread's namespace (it stays in that namespace)."""
    from pyroute2 import IPRoute

    return IPRoute()


def _open_route_socket(namespace: str | None) -> Any:
    if namespace is None:
        return _new_route_socket()
    with inside(namespace):
        return _new_route_socket()


def _write_forwarding(enabled: bool) -> None:
    # /proc/sys/net resolves to the namespace of the thread that opens it.
    with open("/proc/sys/net/ipv4/ip_forward", "w", encoding="ascii") as sysctl:
        sysctl.write("1\n" if enabled else "0\n")


def remove_recorded(record: registry.RunRecord) -> TeardownResult:
    """Delete exactly what ``record`` says its run created and still exists as created.

    Only namespaces are removed; their interfaces (both ends of every veth, all
    in namespaces of the record) go with them, as with ``ip netns del``.
    """
    removed: list[str] = []
    errors: list[str] = []
    owned = set(record.existing_namespaces())
    for created in reversed(record.namespaces):
        if created.name not in owned:
            continue
        try:
            remove_namespace(created.name)
            removed.append(created.name)
        except OSError as error:
            errors.append(f"removing namespace {created.name}: {error}")
    remaining = tuple(
        created.name for created in record.namespaces if record.owns_namespace(created.name)
    )
    return TeardownResult(tuple(removed), remaining, tuple(errors))


class LiveTopology:
    """Builds ``spec`` step by step; tears everything down on exit unless kept."""

    def __init__(self, spec: TopologySpec, run_id: str, command: str = "run") -> None:
        configure_pyroute2()
        self.spec = spec
        self.run_id = run_id
        self.owner_pid = os.getpid()
        self._record = registry.new_record(run_id, command, spec.name, spec.prefix)
        self._record_saved = False
        self._handles: dict[str, Any] = {}
        # (namespace, interface) -> ifindex, for interfaces of this topology only.
        self._indexes: dict[tuple[str, str], int] = {}
        self._closers: list[tuple[str, Callable[[], None]]] = []
        self.kept = False
        self.teardown_result: TeardownResult | None = None

    # ---- context manager -------------------------------------------------------------

    def __enter__(self) -> LiveTopology:
        return self

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if os.getpid() != self.owner_pid:
            return  # a forked helper unwinding: the builder tears down, never a copy
        if self.teardown_result is None:
            if self.kept:
                self.release()
            else:
                self.teardown()

    @property
    def record(self) -> registry.RunRecord:
        return self._record

    def on_teardown(self, label: str, close: Callable[[], None]) -> None:
        """Register a socket/sniffer closer; run before any namespace is removed."""
        self._closers.append((label, close))

    # ---- checks -------------------------------------------------------------------------

    def preflight(self) -> None:
        """Refuse, before creating anything, names that already exist."""
        for namespace in self.spec.namespace_names():
            if namespace_exists(namespace):
                raise self._conflict(namespace)

    def _conflict(self, namespace: str) -> ResourceConflictError:
        owner = registry.owner_of_namespace(namespace)
        prefix_advice = "run side by side with other names: add --prefix P (e.g. --prefix a-)"
        if owner is None:
            return ResourceConflictError(
                f"namespace {namespace} already exists and was not created by netdiag",
                advice=prefix_advice,
            )
        if owner.kept:
            return ResourceConflictError(
                f"namespace {namespace} is already up (netdiag {owner.command}, "
                f"run {owner.run_id})",
                advice=f"remove it with `netdiag down{_prefix_option(owner.prefix)}`, "
                "or " + prefix_advice,
            )
        if owner.process_alive():
            return ResourceConflictError(
                f"namespace {namespace} belongs to netdiag run {owner.run_id}, "
                f"still running as pid {owner.pid}",
                advice=prefix_advice,
            )
        return ResourceConflictError(
            f"namespace {namespace} was left behind by netdiag run {owner.run_id}, "
            "which died without cleaning up",
            advice="remove such leftovers with `netdiag clean`",
        )

    # ---- building -------------------------------------------------------------------------

    def _save_record(self) -> None:
        registry.save(self._record)
        self._record_saved = True

    def handle(self, namespace: str) -> Any:
        """The IPRoute socket opened inside ``namespace`` (one per namespace, reused)."""
        if namespace not in self._handles:
            self._handles[namespace] = _open_route_socket(namespace)
        return self._handles[namespace]

    def create_namespace(self, name: str) -> None:
        namespace_spec = next(n for n in self.spec.namespaces if n.name == name)
        # Creating and recording must not be split by a signal: a namespace that
        # exists but is not in the record would be a leftover nobody may remove.
        with deferred_signals(), ExitStack() as stack:
            try:
                stack.enter_context(created_and_inside(name))
            except FileExistsError:
                raise self._conflict(name) from None
            except OSError as error:
                raise LiveTopologyError(f"cannot create namespace {name}: {error}") from error
            self._record = self._record.with_namespace(name)
            self._save_record()
            # Still inside the new namespace: its socket and sysctl, without entering again.
            handle = self._handles[name] = _new_route_socket()
            handle.link("set", index=LOOPBACK_INDEX, state="up")
            if namespace_spec.forwarding:
                _write_forwarding(True)

    def create_namespaces(self) -> None:
        for name in self.spec.namespace_names():
            self.create_namespace(name)

    def create_link(self, link: LinkSpec) -> None:
        first, second = link.ends
        try:
            self.handle(first.namespace).link(
                "add",
                ifname=first.interface,
                kind="veth",
                # Sent straight into the peer's namespace: never in the root namespace.
                peer={"ifname": second.interface, "net_ns_fd": second.namespace},
            )
        except Exception as error:
            raise LiveTopologyError(
                f"cannot create veth {first.interface} (in {first.namespace}) <-> "
                f"{second.interface} (in {second.namespace}): {error}"
            ) from error
        # Recorded for information (the namespaces' removal takes the links): saved
        # with the next save, not once per link.
        self._record = replace(
            self._record,
            links=(
                *self._record.links,
                (first.namespace, first.interface),
                (second.namespace, second.interface),
            ),
        )

    def create_links(self) -> None:
        try:
            for link in self.spec.links:
                self.create_link(link)
            for bridge in self.spec.bridges:
                self.create_bridge(bridge)
        finally:
            if self._record_saved:
                self._save_record()

    def create_bridge(self, bridge: BridgeSpec) -> None:
        """``ip -n NS link add NAME type bridge; ip -n NS link set PORT master NAME``."""
        handle = self.handle(bridge.namespace)
        try:
            handle.link("add", ifname=bridge.name, kind="bridge")
        except Exception as error:
            raise LiveTopologyError(
                f"cannot create bridge {bridge.name} in {bridge.namespace}: {error}"
            ) from error
        self._record = replace(
            self._record, links=(*self._record.links, (bridge.namespace, bridge.name))
        )
        bridge_index = self.index_of(bridge.namespace, bridge.name)
        for member in bridge.members:
            try:
                handle.link(
                    "set", index=self.index_of(bridge.namespace, member), master=bridge_index
                )
            except Exception as error:
                raise LiveTopologyError(
                    f"cannot make {member} a port of bridge {bridge.name} in "
                    f"{bridge.namespace}: {error}"
                ) from error

    def index_of(self, namespace: str, interface: str) -> int:
        """The interface's index, looked up once: it is fixed while the interface exists."""
        key = (namespace, interface)
        if key not in self._indexes:
            indexes = self.handle(namespace).link_lookup(ifname=interface)
            if not indexes:
                raise LiveTopologyError(f"interface {interface} not found in {namespace}")
            self._indexes[key] = int(indexes[0])
        return self._indexes[key]

    def configure_end(self, end: LinkEndSpec) -> None:
        """``ip -n NS addr add A dev IF; ip -n NS link set IF [mtu M] up``."""
        handle = self.handle(end.namespace)
        index = self.index_of(end.namespace, end.interface)
        try:
            for address in end.addresses:
                handle.addr(
                    "add",
                    index=index,
                    address=str(address.address),
                    prefixlen=address.prefix_length,
                )
            if end.mtu is not None:
                handle.link("set", index=index, mtu=end.mtu)
            if end.up:
                handle.link("set", index=index, state="up")
        except Exception as error:
            raise LiveTopologyError(
                f"cannot configure {end.interface} in {end.namespace}: {error}"
            ) from error

    def configure_namespace(self, namespace: str) -> None:
        for end in self.spec.configured_interfaces_of(namespace):
            self.configure_end(end)

    def set_forwarding(self, namespace: str, enabled: bool) -> None:
        with inside(namespace):
            _write_forwarding(enabled)

    def add_route(self, route: RouteSpec) -> None:
        arguments: dict[str, Any] = {
            "dst": str(route.destination),
            "oif": self.index_of(route.namespace, route.device),
            # `ip route add ... dev` gives scope link; pyroute2 would default to universe.
            "scope": RT_SCOPE_LINK if route.scope == "link" else RT_SCOPE_UNIVERSE,
        }
        if route.gateway is not None:
            arguments["gateway"] = str(route.gateway)
        try:
            self.handle(route.namespace).route("add", **arguments)
        except Exception as error:
            raise LiveTopologyError(f"cannot add route `{route.ip_command()}`: {error}") from error

    def add_routes(self, namespace: str | None = None) -> None:
        for route in self.spec.routes:
            if namespace is None or route.namespace == namespace:
                self.add_route(route)

    def build(self) -> None:
        """Everything at once (``netdiag up``): namespaces, links, addresses, routes."""
        self.preflight()
        self.create_namespaces()
        raise_if_signalled()  # one noted during a netlink request stops the build here
        self.create_links()
        for namespace in self.spec.namespace_names():
            raise_if_signalled()
            self.configure_namespace(namespace)
        raise_if_signalled()
        self.add_routes()

    # ---- reading ------------------------------------------------------------------------

    def route_get(self, namespace: str, destination: str) -> RouteLookup:
        """``ip -n NAMESPACE route get DESTINATION``: a lookup, nothing is sent."""
        from pyroute2.netlink.exceptions import NetlinkError

        handle = self.handle(namespace)
        try:
            answer = handle.route("get", dst=destination)[0]
        except NetlinkError as error:
            return RouteLookup(
                namespace, destination, None, None, error.code, os.strerror(error.code)
            )
        index = answer.get("RTA_OIF")
        interface = None
        if index is not None:
            links = handle.get_links(index)
            interface = links[0].get("IFLA_IFNAME") if links else None
        return RouteLookup(namespace, destination, interface, answer.get("RTA_PREFSRC"), None, None)

    def interface_names(self, namespace: str) -> list[str]:
        return [str(link.get("IFLA_IFNAME")) for link in self.handle(namespace).get_links()]

    def addresses(self, namespace: str) -> list[str]:
        """IPv4 addresses of ``namespace`` ("ADDRESS/PREFIX")."""
        return [
            f"{entry.get('IFA_ADDRESS')}/{entry['prefixlen']}"
            for entry in self.handle(namespace).get_addr(family=2)
        ]

    def interface_state(self, namespace: str, interface: str) -> tuple[bool, str] | None:
        """(administratively up, operational state) or None when the interface is absent.

        A veth whose peer is still down is admin-up with operstate DOWN (no carrier),
        as ``ip link`` shows ``state DOWN`` with ``UP`` in its flags.
        """
        handle = self.handle(namespace)
        indexes = handle.link_lookup(ifname=interface)
        if not indexes:
            return None
        link = handle.get_links(indexes[0])[0]
        return bool(link["flags"] & IFF_UP), str(link.get("IFLA_OPERSTATE"))

    # ---- teardown -------------------------------------------------------------------------

    def _close_all(self) -> list[str]:
        errors = []
        for label, close in reversed(self._closers):
            try:
                close()
            except Exception as error:
                errors.append(f"closing {label}: {error}")
        self._closers.clear()
        for handle in self._handles.values():
            try:
                handle.close()
            except Exception as error:
                errors.append(f"closing a netlink socket: {error}")
        self._handles.clear()
        self._indexes.clear()
        return errors

    def keep(self) -> None:
        """Leave the topology up for the user (``--keep``, ``netdiag up``)."""
        self.kept = True
        self._record = replace(self._record, kept=True)
        if self._record_saved:
            self._save_record()

    def release(self) -> None:
        """Close our sockets but leave the kernel objects (kept topology)."""
        errors = self._close_all()
        self.teardown_result = TeardownResult(
            (), tuple(self._record.existing_namespaces()), tuple(errors)
        )

    def teardown(self) -> TeardownResult:
        if os.getpid() != self.owner_pid:
            raise RuntimeError("teardown attempted outside the process that built the topology")
        if self.teardown_result is not None:
            return self.teardown_result
        with deferred_signals():  # a second Ctrl-C must not cut teardown in half
            errors = self._close_all()
            result = remove_recorded(self._record)
            result = replace(result, errors=(*errors, *result.errors))
            if not result.remaining and self._record_saved:
                registry.forget(self._record)
            self.teardown_result = result
        return result


def _prefix_option(prefix: str) -> str:
    return f" --prefix {prefix}" if prefix else ""


def root_namespace_view() -> tuple[list[str], list[str]]:
    """Interface names and IPv4 addresses of the root namespace: read, nothing sent."""
    handle = _open_route_socket(None)
    try:
        names = [str(link.get("IFLA_IFNAME")) for link in handle.get_links()]
        addresses = [str(entry.get("IFA_ADDRESS")) for entry in handle.get_addr(family=2)]
    finally:
        handle.close()
    return names, addresses
