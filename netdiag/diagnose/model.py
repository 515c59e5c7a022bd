"""Frozen records of a diagnosis: the checks made, the causes found, what the probes saw.

A ``Cause`` pairs the contract's ``Finding`` (what a person reads) with a
``Remedy`` (what ``--fix`` can apply); the finding's ``hint`` is the remedy's
``ip`` command, so the text a user copies and the change netdiag makes are one
and the same. ``Diagnosis.to_json`` is the ``netdiag diagnose --json`` document.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Literal

from netdiag.analysis.model import Finding

RemedyAction = Literal["link-up", "addr-add", "route-add", "forwarding-on", "mtu-set", "neigh-del"]
_PID_REFERENCE = re.compile(r"^pid:(\d+)$")


def process_of(namespace: str) -> int | None:
    """N for a ``pid:N`` reference (a process's namespace), None for a named namespace."""
    match = _PID_REFERENCE.match(namespace)
    return int(match.group(1)) if match else None


def ip_command(namespace: str, arguments: str) -> str:
    """``ip -n NS ARGS``, or through nsenter for a ``pid:N`` namespace (``ip -n`` needs a name)."""
    pid = process_of(namespace)
    if pid is not None:
        return f"nsenter -t {pid} -n ip {arguments}"
    return f"ip -n {namespace} {arguments}"


def exec_command(namespace: str, command: str) -> str:
    """Run ``command`` inside the namespace, as a person would type it."""
    pid = process_of(namespace)
    if pid is not None:
        return f"nsenter -t {pid} -n {command}"
    return f"ip netns exec {namespace} {command}"


@dataclass(frozen=True, slots=True)
class Remedy:
    """One change that removes a cause; ``command`` is its ``ip``/``sysctl`` spelling."""

    action: RemedyAction
    namespace: str
    interface: str | None = None
    network: ipaddress.IPv4Network | None = None
    address: ipaddress.IPv4Interface | None = None
    gateway: ipaddress.IPv4Address | None = None
    mtu: int | None = None
    replace: bool = False  # route-add: replace the route to the same destination

    @property
    def command(self) -> str:
        if self.action == "link-up":
            return ip_command(self.namespace, f"link set {self.interface} up")
        if self.action == "addr-add":
            return ip_command(self.namespace, f"addr add {self.address} dev {self.interface}")
        if self.action == "route-add":
            assert self.network is not None
            destination = "default" if self.network.prefixlen == 0 else str(self.network)
            via = f" via {self.gateway}" if self.gateway is not None else ""
            verb = "replace" if self.replace else "add"
            return ip_command(
                self.namespace, f"route {verb} {destination}{via} dev {self.interface}"
            )
        if self.action == "forwarding-on":
            return exec_command(self.namespace, "sysctl -w net.ipv4.ip_forward=1")
        if self.action == "mtu-set":
            return ip_command(self.namespace, f"link set {self.interface} mtu {self.mtu}")
        assert self.address is not None
        return ip_command(self.namespace, f"neigh del {self.address.ip} dev {self.interface}")


@dataclass(frozen=True, slots=True)
class Cause:
    finding: Finding
    namespace: str | None
    remedy: Remedy | None = None


@dataclass(frozen=True, slots=True)
class Check:
    """One step of the walk: what was looked at, whether it held, and the evidence."""

    name: str  # e.g. "link", "route", "forwarding", "return-route", "listener"
    namespace: str | None
    ok: bool
    evidence: str

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "namespace": self.namespace,
            "ok": self.ok,
            "evidence": self.evidence,
        }


@dataclass(frozen=True, slots=True)
class EchoProbe:
    source: str
    destination: str
    size: int  # bytes of the IP packet
    dont_fragment: bool
    sent: int
    received: int
    error: str | None = None  # the kernel refused to send (e.g. no route)

    def describe(self) -> str:
        what = f"echo {self.source} -> {self.destination} ({self.size} bytes"
        what += ", DF)" if self.dont_fragment else ")"
        if self.error is not None:
            return f"{what}: not sent: {self.error}"
        return f"{what}: {self.received}/{self.sent} answered"

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "size": self.size,
            "dont_fragment": self.dont_fragment,
            "sent": self.sent,
            "received": self.received,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class TcpProbe:
    destination: str
    port: int
    outcome: Literal["connected", "refused", "timed-out", "error"]
    detail: str

    @property
    def connected(self) -> bool:
        return self.outcome == "connected"

    def describe(self) -> str:
        return f"TCP connect to {self.destination}:{self.port}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "port": self.port,
            "outcome": self.outcome,
            "connected": self.connected,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class ProbeReport:
    namespace: str
    echo: EchoProbe | None = None
    large_echo: EchoProbe | None = None  # full-MTU echo with DF: shows MTU trouble
    tcp: TcpProbe | None = None
    skipped: str | None = None  # why nothing was sent

    @property
    def echo_answered(self) -> bool:
        return self.echo is not None and self.echo.received > 0

    def lines(self) -> list[str]:
        if self.skipped is not None:
            return [f"no probes: {self.skipped}"]
        return [
            probe.describe()
            for probe in (self.echo, self.large_echo, self.tcp)
            if probe is not None
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "skipped": self.skipped,
            "echo": self.echo.to_json() if self.echo else None,
            "large_echo": self.large_echo.to_json() if self.large_echo else None,
            "tcp": self.tcp.to_json() if self.tcp else None,
        }


@dataclass(frozen=True, slots=True)
class Diagnosis:
    source: str
    target: str  # what the user gave with --to
    destination: str | None  # the address diagnosed (None when --to named nothing usable)
    destination_namespace: str | None
    port: int | None
    path: tuple[str, ...]
    checks: tuple[Check, ...]
    causes: tuple[Cause, ...]
    probes: ProbeReport | None
    reachable: bool
    verdict: str = ""  # one sentence: why reachable, not reachable, or not known
    fixes_applied: tuple[str, ...] = ()

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(cause.finding for cause in self.causes)

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.destination if self.destination is not None else self.target,
            "target": self.target,
            "destination_namespace": self.destination_namespace,
            "port": self.port,
            "reachable": self.reachable,
            "verdict": self.verdict,
            "path": list(self.path),
            "checks": [check.to_json() for check in self.checks],
            "findings": [
                {**cause.finding.to_json(), "namespace": cause.namespace} for cause in self.causes
            ],
            "probes": self.probes.to_json() if self.probes else None,
            "fixes_applied": list(self.fixes_applied),
        }
