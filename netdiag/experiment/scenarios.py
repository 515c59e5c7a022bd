"""Fault scenarios for ``netdiag run --scenario NAME``: inject one known fault, then prove
netdiag finds it twice, live and from the capture alone.

A ``Scenario`` changes the experiment in one way. Most faults are changes to
the ``TopologySpec`` before anything is built (no routes, only the server's
route, a lower MTU, a wrong address, a router that does not forward); the
others change what the run does (no TCP listener; the client's link set down
once the capture runs, since a sniffer cannot start on a link without carrier;
large pings that only a lower MTU drops). The run is otherwise the normal
experiment, with two extra checks:

- ``diagnosis``: before teardown, ``netdiag.diagnose`` walks the live topology
  (client to server with the port, and server to client, probes included) and
  must name the scenario's live code (``route.missing``, ``port.closed``, ...);
- ``capture-diagnosis``: the analyzer's findings on the run's pcap must name the
  scenario's capture code (``icmp.echo-unanswered``, ``tcp.rejected``, ...),
  where the capture can show the fault at all. Without a route the kernel
  refuses to send and the wire stays silent, so ``no-route`` has no capture
  code; the step says so instead of passing silently.

Exit codes (extending the contract): a step the fault is expected to break is
recorded with ``fault_expected: true`` and its ``ok`` means "failed as the fault
makes it". So a scenario run exits 0 when every step outside the fault held,
every step the fault breaks did fail, and both diagnoses named the injected
cause; 1 otherwise (the transcript says which); 2 for an unknown scenario or
one that does not fit the topology; 3 and 130 as for every run.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from netdiag.errors import UsageError
from netdiag.experiment.model import RunResult, StepResult, TcpExchange
from netdiag.experiment.runner import ExperimentRunner, RunOptions, tcp_step_id
from netdiag.topology.spec import AddressSpec, LinkEndSpec, ProbeSpec, TopologySpec

if TYPE_CHECKING:
    from netdiag.analysis.model import Analysis, Finding
    from netdiag.live.topology import LiveTopology

# Lowered MTU for mtu-mismatch: small pings and the short TCP message still pass.
LOWERED_MTU = 1200
LARGE_ECHO_COUNT = 3
TCP_PROBE_TIMEOUT_S = 2.0

SpecChange = Callable[[TopologySpec], TopologySpec]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One fault: how it is injected, which steps it breaks, how it must be diagnosed."""

    name: str
    summary: str
    topology: str  # the built-in it runs on unless --topology says otherwise
    live_code: str  # the contract's live finding code diagnose must report
    capture_codes: tuple[str, ...]  # any one must be in the capture's findings; () if none
    # Step ids the fault makes fail, besides the TCP step (``breaks_tcp``), whose id
    # depends on --port: ``broken_step_ids`` gives them all.
    broken_steps: frozenset[str]
    change: SpecChange
    breaks_tcp: bool = True
    listener: bool = True  # closed-port: no TCP listener on the server
    large_pings: bool = False  # mtu-mismatch: also ping with full-size DF packets
    no_capture_reason: str = ""  # why the capture cannot show this fault
    # When the capture may hold no packet at all (nothing reached the tap), and why:
    # then an empty capture (no IPv4, no ARP) is evidence too, named as such.
    silent_capture_reason: str = ""
    # link-down: the client's end is set down once the capture runs (a sniffer cannot
    # start on a link without carrier), not in the spec.
    client_link_down_live: bool = False

    def broken_step_ids(self, port: int) -> frozenset[str]:
        """Every step id the fault makes fail in a run on ``port``."""
        if self.breaks_tcp:
            return self.broken_steps | {tcp_step_id(port)}
        return self.broken_steps


def _client_end(spec: TopologySpec) -> LinkEndSpec:
    """The client's interface towards the server: veth1 in the seed."""
    probe = spec.experiment_probe()
    ends = spec.interfaces_of(probe.client_namespace)
    return next(
        (end for end in ends if any(a.address == probe.client_address for a in end.addresses)),
        ends[0],
    )


def _replace_end(
    spec: TopologySpec, old: LinkEndSpec, new: LinkEndSpec, probe: ProbeSpec | None = None
) -> TopologySpec:
    """``spec`` with one link end replaced (and the probe, validated together)."""

    def swapped(end: LinkEndSpec) -> LinkEndSpec:
        return new if end == old else end

    links = tuple(
        replace(link, ends=(swapped(link.ends[0]), swapped(link.ends[1]))) for link in spec.links
    )
    return replace(spec, links=links, probe=probe or spec.probe)


def _without_routes(spec: TopologySpec) -> TopologySpec:
    return spec.without_routes()


def _server_routes_only(spec: TopologySpec) -> TopologySpec:
    server = spec.experiment_probe().server_namespace
    return replace(spec, routes=spec.routes_of(server))


def _unchanged(spec: TopologySpec) -> TopologySpec:
    return spec


def _client_mtu_lowered(spec: TopologySpec) -> TopologySpec:
    end = _client_end(spec)
    return _replace_end(spec, end, replace(end, mtu=LOWERED_MTU))


def _forwarding_off(spec: TopologySpec) -> TopologySpec:
    routers = [namespace.name for namespace in spec.namespaces if namespace.forwarding]
    if not routers:
        raise UsageError(
            f"scenario no-forwarding needs a router, and topology {spec.name} has none",
            advice="use --topology routed (the default for this scenario) or chain",
        )
    return replace(spec, namespaces=tuple(replace(n, forwarding=False) for n in spec.namespaces))


def _client_address_outside(spec: TopologySpec) -> TopologySpec:
    """The client's address moved to the first free subnet of its size: outside the
    server's route towards it, which still names the old subnet."""
    end = _client_end(spec)
    probe = spec.experiment_probe()
    old = next(a for a in end.addresses if a.address == probe.client_address)
    taken = [
        *(network for link in spec.links for network in link.networks),
        *(route.destination for route in spec.routes if route.destination.prefixlen > 0),
    ]
    offset = int(old.address) - int(old.network.network_address)
    candidate = old.network
    while any(candidate.overlaps(network) for network in taken):
        candidate = ipaddress.IPv4Network(
            (int(candidate.network_address) + candidate.num_addresses, candidate.prefixlen)
        )
    moved = AddressSpec(
        ipaddress.IPv4Interface((int(candidate.network_address) + offset, candidate.prefixlen))
    )
    return _replace_end(
        spec,
        end,
        replace(end, addresses=tuple(moved if a == old else a for a in end.addresses)),
        replace(probe, client_address=moved.address),
    )


_PINGS = frozenset({"ping-ns2-ns1", "ping-ns1-ns2"})

SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "no-route",
            "no routes are added: each side lacks the route to the other's subnet",
            "seed",
            "route.missing",
            (),
            frozenset({"routes", *_PINGS}),
            _without_routes,
            no_capture_reason="without a route the kernel refuses to send: nothing reaches "
            "the wire",
        ),
        Scenario(
            "no-return-route",
            "only the server (ns1) gets its route: the client cannot answer or send",
            "seed",
            "route.return-missing",
            ("icmp.echo-unanswered",),
            frozenset({"routes", *_PINGS}),
            _server_routes_only,
        ),
        Scenario(
            "closed-port",
            "no listener on the port: the server's kernel answers the SYN with RST",
            "seed",
            "port.closed",
            ("tcp.rejected",),
            frozenset(),
            _unchanged,
            listener=False,
        ),
        Scenario(
            "link-down",
            "the client's end of the link (veth1) is set down once the capture runs",
            "seed",
            "link.down",
            # The server still sends: its ARP requests for the client go unanswered.
            ("arp.unanswered",),
            # Without carrier the sniffer's end marker cannot pass (capture not drained),
            # and the server's echo requests wait for ARP, never reaching the wire.
            frozenset({*_PINGS, "capture", "capture-complete"}),
            _unchanged,
            client_link_down_live=True,
            # The kernel applies the peer's carrier loss through linkwatch, which runs
            # later (up to a second): ARP requests sent before it show on the tap; once
            # it ran, the device sends nothing at all. On a busy machine it may win.
            silent_capture_reason="the link lost carrier before the server's first ARP "
            "request: nothing left veth0 (the kernel sends nothing on a link without carrier)",
        ),
        Scenario(
            "mtu-mismatch",
            f"the client's end (veth1) has MTU {LOWERED_MTU}: full-size packets are dropped",
            "seed",
            "mtu.mismatch",
            ("icmp.echo-unanswered",),
            frozenset({"ping-large-ns1-ns2"}),
            _client_mtu_lowered,
            breaks_tcp=False,  # the short message fits the lowered MTU
            large_pings=True,
        ),
        Scenario(
            "no-forwarding",
            "the router does not forward (net.ipv4.ip_forward = 0)",
            "routed",
            "forwarding.disabled",
            ("icmp.echo-unanswered", "tcp.syn-unanswered"),
            # The capture is on the client's side: the server's requests die in the router.
            frozenset({*_PINGS, "capture-complete"}),
            _forwarding_off,
        ),
        Scenario(
            "wrong-address",
            "the client's end (veth1) has an address outside the server's route to it",
            "seed",
            "addr.missing",
            ("icmp.echo-unanswered", "tcp.syn-unanswered"),
            frozenset({"routes", *_PINGS}),
            _client_address_outside,
        ),
    )
}


def scenario_names() -> tuple[str, ...]:
    return tuple(SCENARIOS)


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; ``UsageError`` (exit 2) for an unknown one."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UsageError(
            f"unknown scenario {name!r}", advice=f"known scenarios: {', '.join(SCENARIOS)}"
        ) from None


def apply_scenario(scenario: Scenario, spec: TopologySpec) -> TopologySpec:
    """The topology with the scenario's fault written into it (validated again)."""
    return scenario.change(spec)


def _codes(findings: Iterable[Finding]) -> list[str]:
    return sorted({finding.code for finding in findings})


class ScenarioRunner(ExperimentRunner):
    """The experiment with one fault: steps the fault breaks are expected to fail,
    and two more steps check that the live state and the capture both name it."""

    def __init__(
        self,
        spec: TopologySpec,
        options: RunOptions,
        scenario: Scenario,
        on_step: Callable[[StepResult], None] | None = None,
    ) -> None:
        super().__init__(spec, options, on_step)
        self.scenario = scenario
        self.broken_steps = scenario.broken_step_ids(options.port)
        self.diagnosis: tuple[Finding, ...] = ()

    # ---- expected failures ------------------------------------------------------------

    def adjust_step(self, step: StepResult) -> StepResult:
        # A step that did not run (setup aborted) shows nothing about the fault.
        if step.id in self.broken_steps and not step.detail.startswith("not run"):
            held = "failed as the fault makes it" if not step.ok else "held despite the fault"
            step = replace(
                step,
                ok=not step.ok,
                fault_expected=True,
                detail=f"{step.detail} [{held}]",
                expected=f"fails under scenario {self.scenario.name} "
                f"({step.expected or 'normal outcome'} does not hold)",
            )
        return step

    # ---- what the fault changes in the traffic ----------------------------------------

    def after_traffic(self, live: LiveTopology) -> None:
        # Read the live state before teardown.
        self._diagnosis_step()

    def after_capture_started(self, live: LiveTopology) -> None:
        if not self.scenario.client_link_down_live or self.progress.aborted_at is not None:
            return
        end = _client_end(self.spec)

        def body() -> tuple[bool, str]:
            index = live.index_of(end.namespace, end.interface)
            live.handle(end.namespace).link("set", index=index, state="down")
            state = live.interface_state(end.namespace, end.interface)
            down = state is not None and not state[0]
            return down, f"{end.interface} in {end.namespace} is " + ("down" if down else "UP")

        self._step(
            "inject-fault",
            f"Set the client's end {end.interface} down (scenario {self.scenario.name})",
            (f"ip -n {end.namespace} link set {end.interface} down",),
            f"{end.interface} is down; its peer loses carrier",
            body,
        )

    def before_capture_stopped(self) -> None:
        if self.scenario.large_pings:
            self._large_ping_step()

    def _large_ping_step(self) -> None:
        from netdiag.diagnose.probes import echo_probe

        mtu = max((end.mtu or 1500 for end in self.spec.interfaces_of(self.server)), default=1500)

        def body() -> tuple[bool, str]:
            probe = echo_probe(
                self.server,
                self.server_address,
                self.client_address,
                LARGE_ECHO_COUNT,
                mtu,
                dont_fragment=True,
            )
            return probe.received == probe.sent and probe.error is None, probe.describe()

        self._step(
            "ping-large-ns1-ns2",
            f"ICMP echo of {mtu} bytes with DF from {self.server} to {self.client_address}",
            (
                f"ip netns exec {self.server} ping -c {LARGE_ECHO_COUNT} -M do -s {mtu - 28} "
                f"{self.client_address}",
            ),
            f"{LARGE_ECHO_COUNT} full-size requests, {LARGE_ECHO_COUNT} replies",
            body,
        )

    def exchange_tcp(self, live: LiveTopology) -> tuple[bool, str]:
        if self.scenario.listener:
            return super().exchange_tcp(live)
        from netdiag.diagnose.probes import tcp_probe

        # No listener: a plain connect from the client; the server's kernel answers.
        probe = tcp_probe(self.client, self.server_address, self.options.port, TCP_PROBE_TIMEOUT_S)
        self.progress.tcp.append(
            TcpExchange(
                from_ns=self.client,
                to=f"{self.server_address}:{self.options.port}",
                connected=probe.connected,
                message_sent=self.options.message,
                message_received=None,
                error=None if probe.connected else probe.detail,
            )
        )
        return probe.connected, f"no listener started; connect: {probe.detail}"

    # ---- the two diagnoses --------------------------------------------------------------

    def _diagnosis_step(self) -> None:
        from netdiag.diagnose.engine import diagnose

        expected = self.scenario.live_code

        def body() -> tuple[bool, str]:
            forward = diagnose(self.client, self.server_address, self.options.port)
            backward = diagnose(self.server, self.client_address, None)
            findings = (*forward.findings, *backward.findings)
            self.diagnosis = findings
            codes = _codes(findings)
            verdicts = f"{forward.verdict}; {backward.verdict}"
            if expected in codes:
                return True, f"live findings {', '.join(codes)} name {expected}: {verdicts}"
            return False, f"live findings {', '.join(codes) or 'none'} lack {expected}: {verdicts}"

        port = self.options.port
        self._step(
            "diagnosis",
            f"Diagnose the live topology (the fault: {self.scenario.summary})",
            (
                f"netdiag diagnose --from {self.client} --to {self.server_address} --port {port}",
                f"netdiag diagnose --from {self.server} --to {self.client_address}",
            ),
            f"the live diagnosis names {expected}",
            body,
        )

    def on_capture_analyzed(self, analysis: Analysis) -> None:
        # Before the report is written: the check goes in the report.
        wanted = self.scenario.capture_codes
        codes = _codes(analysis.findings)

        def body() -> tuple[bool, str]:
            found = [code for code in wanted if code in codes]
            listed = ", ".join(codes) or "none"
            if not wanted:
                return True, (
                    f"the capture cannot show this fault ({self.scenario.no_capture_reason}); "
                    f"capture findings: {listed}"
                )
            if found:
                return True, f"capture findings {listed} name {', '.join(found)}"
            decode = analysis.decode
            if self.scenario.silent_capture_reason and decode.ipv4 == decode.arp == 0:
                return True, (
                    f"no IPv4 or ARP frame in the capture: {self.scenario.silent_capture_reason}"
                    f"; capture findings: {listed}"
                )
            note = (
                f" ({self.scenario.no_capture_reason})" if self.scenario.no_capture_reason else ""
            )
            return False, f"capture findings {listed} lack {' or '.join(wanted)}{note}"

        self._step(
            "capture-diagnosis",
            "Diagnose from the capture alone (netdiag analyze)",
            (f"netdiag analyze {self.options.capture_dir}/*.pcap",),
            "the capture's findings name " + (" or ".join(wanted) or "nothing (no evidence)"),
            body,
        )

    def finalize_result(self, result: RunResult) -> RunResult:
        findings = () if self.analysis is None else tuple(self.analysis.findings)
        return replace(
            result,
            scenario=self.scenario.name,
            diagnosis=self.diagnosis,
            capture_findings=findings,
        )
