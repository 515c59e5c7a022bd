"""Frozen results of ``netdiag run``: its steps, pings, TCP exchanges, artifacts.

``RunResult.to_json()`` is the ``netdiag run --json`` document of
``shared/spec/contract.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netdiag.analysis.model import Finding, RttStats


@dataclass(frozen=True, slots=True)
class StepResult:
    id: str  # contract step id: "veth-pair", "ns1", "isolation", ...
    ok: bool
    detail: str  # one line for the transcript
    elapsed_ms: float
    title: str = ""  # what the step does, for people
    commands: tuple[str, ...] = ()  # the equivalent `ip` commands a person would type
    expected: str = ""  # what the step expects (e.g. "Network is unreachable")
    # `run --scenario`: the injected fault makes this step's normal outcome fail, so
    # failing is what is expected and ``ok`` says the step did fail.
    fault_expected: bool = False

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "id": self.id,
            "ok": self.ok,
            "detail": self.detail,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "title": self.title,
            "commands": list(self.commands),
            "expected": self.expected,
        }
        if self.fault_expected:
            document["fault_expected"] = True
        return document


@dataclass(frozen=True, slots=True)
class PingResult:
    """One direction of the ICMP echo step, summarised like ping's last lines."""

    from_ns: str
    to: str
    sent: int
    received: int
    loss_pct: float
    rtt_ms: RttStats | None  # from capture (kernel) timestamps
    rtts_ms: tuple[float | None, ...] = ()  # per sequence number, None when lost

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.from_ns,
            "to": self.to,
            "sent": self.sent,
            "received": self.received,
            "loss_pct": round(self.loss_pct, 1),
            "rtt_ms": None if self.rtt_ms is None else self.rtt_ms.to_json(),
        }


@dataclass(frozen=True, slots=True)
class TcpExchange:
    from_ns: str
    to: str  # "addr:port"
    connected: bool
    message_sent: str
    message_received: str | None
    error: str | None = None
    bulk_bytes: int = 0  # --bulk transfer size, 0 when off
    bulk_verified: bool | None = None
    bulk_throughput_mbps: float | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "from": self.from_ns,
            "to": self.to,
            "connected": self.connected,
            "message_sent": self.message_sent,
            "message_received": self.message_received,
            "error": self.error,
        }
        if self.bulk_bytes:
            document["bulk"] = {
                "bytes": self.bulk_bytes,
                "verified": self.bulk_verified,
                "throughput_mbps": self.bulk_throughput_mbps,
            }
        return document


@dataclass(frozen=True, slots=True)
class RunResult:
    ok: bool
    run_id: str
    topology: str
    steps: tuple[StepResult, ...]
    icmp: tuple[PingResult, ...]
    tcp: tuple[TcpExchange, ...]
    pcaps: tuple[str, ...]
    reports: tuple[str, ...]
    scenario: str | None = None
    kernel_drops: int | None = None
    diagnosis: tuple[Finding, ...] = ()
    kept: bool = False  # --keep: topology left up
    # `run --scenario`: the analyzer's findings on the run's capture (also in report.json).
    capture_findings: tuple[Finding, ...] = ()

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "ok": self.ok,
            "run_id": self.run_id,
            "topology": self.topology,
            "scenario": self.scenario,
            "steps": [step.to_json() for step in self.steps],
            "icmp": [ping.to_json() for ping in self.icmp],
            "tcp": [exchange.to_json() for exchange in self.tcp],
            "capture": {"kernel_drops": self.kernel_drops},
            "artifacts": {"pcap": list(self.pcaps), "report": list(self.reports)},
            "kept": self.kept,
        }
        if self.scenario is not None:
            document["diagnosis"] = [finding.to_json() for finding in self.diagnosis]
            document["capture_findings"] = [finding.to_json() for finding in self.capture_findings]
        return document
