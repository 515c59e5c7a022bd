"""The steps of ``netdiag run``, in the contract's order, each recorded as a StepResult.

This is where the stages meet: a ``TopologySpec`` is built by ``LiveTopology``
step by step (so the transcript can show each change and its ``ip``
equivalent), traffic runs from inside the namespaces while the sniffer records
the probe's capture interface (veth0 in ns1 for the seed, cli0 in client for
``routed``), everything is torn down, and only then (no root needed any more)
the pcap is analyzed and a report written.

A step whose *expected outcome* does not hold is recorded ``ok=False`` and the
run goes on (a missing route should still be pinged, captured and reported);
a step that cannot be carried out at all (the kernel refused a change) stops
the setup, and the steps that could not run are recorded as not run. Teardown
happens on every path: normal end, failed step, exception, Ctrl-C, SIGTERM.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from netdiag.analysis.icmp import ping_stats
from netdiag.errors import NetdiagError, OutputError
from netdiag.experiment.model import PingResult, RunResult, StepResult, TcpExchange
from netdiag.live.registry import new_run_id
from netdiag.live.signals import raise_if_signalled
from netdiag.topology.spec import LinkEndSpec, TopologySpec

if TYPE_CHECKING:
    from netdiag.analysis.model import Analysis
    from netdiag.capture.sniffer import CaptureResult, Sniffer
    from netdiag.live.topology import LiveTopology
    from netdiag.traffic.icmp import EchoOutcome


def tcp_step_id(port: int) -> str:
    """The TCP step's id, named after the port: ``tcp-7096`` by default (the contract's)."""
    return f"tcp-{port}"


# ---- test hook: stop at a named moment (issue 7) --------------------------------------------
#
# Tests must interrupt a run at a precise moment (during setup, traffic, capture,
# analysis, report) without guessing with sleeps. ``NETDIAG_PAUSE_AT=point[,point...]``
# makes the run print ``netdiag: paused at POINT`` on stderr when it reaches a point and
# wait there for a signal: SIGINT/SIGTERM interrupt it as they would at that moment,
# SIGUSR1 lets it go on. Each point pauses once. Points: every step id (before the step's
# body runs), "links" (namespaces made, veth links not yet), "analysis", "report".
# Read only here; unset, it costs a dictionary lookup.
PAUSE_ENVIRONMENT = "NETDIAG_PAUSE_AT"
_paused_at: set[str] = set()


def pause_point(point: str) -> None:
    wanted = os.environ.get(PAUSE_ENVIRONMENT)
    if not wanted or point not in wanted.split(",") or point in _paused_at:
        return
    _paused_at.add(point)
    woken: list[int] = []
    previous = {
        number: signal.getsignal(number)
        for number in (signal.SIGUSR1, signal.SIGINT, signal.SIGTERM)
    }

    def wake(number: int, frame: FrameType | None) -> None:
        woken.append(number)
        handler = previous[signal.Signals(number)]
        if number == signal.SIGUSR1:
            return
        if callable(handler):
            handler(number, frame)  # raises, or records while signals are deferred
        else:  # default or ignore: let the kernel act as it would have
            signal.signal(number, handler)
            signal.raise_signal(number)

    for number in previous:
        signal.signal(number, wake)
    try:
        print(f"netdiag: paused at {point} ({PAUSE_ENVIRONMENT})", file=sys.stderr, flush=True)
        while not woken:  # a flag, not signal.pause(): no window to lose a signal in
            time.sleep(0.05)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@dataclass(frozen=True, slots=True)
class RunOptions:
    count: int = 5
    interval: float = 0.0  # seconds between echo requests; 0: back to back
    port: int = 7096
    message: str = "this is a test message"
    bulk: int = 0
    keep: bool = False
    out: Path | None = None  # captures/ and reports/ go under it (default: cwd)
    force: bool = False
    run_id: str = field(default_factory=new_run_id)

    @property
    def base(self) -> Path:
        return self.out if self.out is not None else Path.cwd()

    @property
    def capture_dir(self) -> Path:
        return self.base / "captures" / self.run_id

    @property
    def report_dir(self) -> Path:
        return self.base / "reports" / self.run_id


@dataclass
class _Progress:
    steps: list[StepResult] = field(default_factory=list)
    pings: list[PingResult] = field(default_factory=list)
    echo_identifiers: list[int] = field(default_factory=list)
    tcp: list[TcpExchange] = field(default_factory=list)
    capture: CaptureResult | None = None
    pcaps: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    aborted_at: str | None = None


StepBody = Callable[[], tuple[bool, str]]


class ExperimentRunner:
    """Runs the two-namespace experiment on ``spec``; ``on_step`` sees each step as it ends."""

    def __init__(
        self,
        spec: TopologySpec,
        options: RunOptions,
        on_step: Callable[[StepResult], None] | None = None,
    ) -> None:
        self.spec = spec
        self.options = options
        self.on_step = on_step or (lambda _step: None)
        self.probe = spec.experiment_probe()
        self.progress = _Progress()
        self.live: LiveTopology | None = None
        self.analysis: Analysis | None = None
        self.result: RunResult | None = None
        self._sniffer: Sniffer | None = None
        self._interrupted = False
        self._finishing = False  # tearing down: no signal may cut it short (_finish)

    # ---- names ------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return self.probe.server_namespace

    @property
    def client(self) -> str:
        return self.probe.client_namespace

    @property
    def server_address(self) -> str:
        return str(self.probe.server_address)

    @property
    def client_address(self) -> str:
        return str(self.probe.client_address)

    def _pcap_path(self) -> Path:
        return self.options.capture_dir / f"{self.probe.capture_interface}.pcap"

    def _capture_title(self) -> str:
        """The capture step's title, whether its sniffer started or not."""
        return (
            f"Capture {self.probe.capture_interface} inside {self.probe.capture_namespace} to pcap"
        )

    # ---- step plumbing ----------------------------------------------------------------

    def _record(self, step: StepResult) -> None:
        step = self.adjust_step(step)
        self.progress.steps.append(step)
        self.on_step(step)

    # ---- hooks: what a variant of the experiment (run --scenario) may change ------------
    #
    # The base experiment calls these at fixed moments; each does nothing (or the normal
    # thing) here. ScenarioRunner overrides them to inject a fault and to add its checks,
    # so the order of the experiment itself is written down once, in this class.

    def adjust_step(self, step: StepResult) -> StepResult:
        """Every step passes here before it is recorded (a fault may make failure the
        expected outcome)."""
        return step

    def after_capture_started(self, live: LiveTopology) -> None:
        """Between the sniffer's start and the first packet of traffic (a fault that
        would keep the capture from starting, e.g. a link down, goes in here)."""
        del live

    # exchange_tcp (with the traffic steps below), the body of the TCP step, is a
    # hook too.

    def before_capture_stopped(self) -> None:
        """After the TCP step, while the sniffer still runs (extra traffic goes here).
        Only on the normal path: an interrupted run stops the capture without it."""

    def after_traffic(self, live: LiveTopology) -> None:
        """After the capture stopped, before teardown; only when no interrupt came."""
        del live

    def on_capture_analyzed(self, analysis: Analysis) -> None:
        """With the capture's analysis, before the capture-complete step and the report."""
        del analysis

    def finalize_result(self, result: RunResult) -> RunResult:
        """The run's result, just before it is returned or written into the report."""
        return result

    def _step(
        self,
        step_id: str,
        title: str,
        commands: tuple[str, ...],
        expected: str,
        body: StepBody,
        setup: bool = False,
    ) -> bool:
        """Run one step; a setup step that raises aborts the rest of the setup."""
        if self.progress.aborted_at is not None:
            self._record(
                StepResult(
                    step_id,
                    False,
                    f"not run: step {self.progress.aborted_at} failed",
                    0.0,
                    title,
                    commands,
                    expected,
                )
            )
            return False
        if not self._finishing:
            raise_if_signalled()  # a Ctrl-C whose exception was swallowed stops the run here
        started = time.perf_counter()
        try:
            pause_point(step_id)
            ok, detail = body()
        except (NetdiagError, OSError) as error:
            ok, detail = False, error.message if isinstance(error, NetdiagError) else str(error)
            if setup:
                self.progress.aborted_at = step_id
        elapsed = (time.perf_counter() - started) * 1000.0
        self._record(StepResult(step_id, ok, detail, elapsed, title, commands, expected))
        return ok

    # ---- the run ----------------------------------------------------------------------

    def prepare_output(self) -> None:
        """Create the output folders first: an unwritable --out fails before any change."""
        # The reports/ parent too (issue 7): a `reports` that is a file, say, is refused
        # now, not after the whole experiment. The run's own folder comes with the report.
        for folder in (self.options.report_dir.parent, self.options.capture_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                reason = error.strerror or str(error)
                if isinstance(error, FileExistsError):
                    reason = "a file of that name is in the way"
                raise OutputError(f"cannot create {folder}: {reason}") from error
        report_dir = self.options.report_dir
        if report_dir.exists() and any(report_dir.iterdir()) and not self.options.force:
            raise OutputError(
                f"report folder {report_dir} exists", advice="use --force to overwrite it"
            )

    def run(self) -> RunResult:
        """The whole experiment. Raises only for refusals before anything is created
        (name clash, unwritable output) and for interrupts (after tearing down)."""
        from netdiag.live.topology import LiveTopology

        self.prepare_output()
        live = LiveTopology(self.spec, self.options.run_id, command="run")
        self.live = live
        live.preflight()  # ResourceConflictError: nothing created, nothing to undo
        try:
            self._setup_steps(live)
            self._traffic_steps(live)
            self.after_traffic(live)
        except BaseException:
            # Ctrl-C, SIGTERM (or a bug): the run did not finish, so --keep does not apply
            # and teardown removes everything (issue 7), as the interrupt message says.
            self._interrupted = True
            raise
        finally:
            self._finish(live)
        capture = self.progress.capture
        if capture is not None and capture.write_error is not None:
            # Disk full while capturing (issue 7): everything is torn down by now; one
            # error line and exit 2. The pcap keeps what was written, up to the cut.
            raise OutputError(
                capture.write_error, advice="free some space, or choose another --out"
            )
        self._analyze_and_report()
        assert self.result is not None
        return self.result

    def _finish(self, live: LiveTopology) -> None:
        """Stop capture, close sockets, tear down (or keep); record capture + teardown.

        Ctrl-C / SIGTERM arriving in here (a second one, after the first brought the run
        here) are held back until the teardown is done, then delivered: raised out of
        the capture stop, they would skip the teardown and leave the namespaces behind.
        """
        if os.getpid() != live.owner_pid:
            return
        from netdiag.live.signals import deferred_signals

        self._finishing = True
        with deferred_signals():
            self._finish_held(live)

    def _finish_held(self, live: LiveTopology) -> None:
        if self._sniffer is not None and self.progress.capture is None:
            self._capture_step()
        if self.options.keep and self.progress.aborted_at is None and not self._interrupted:
            self._step(
                "teardown",
                "Leave the topology up (--keep)",
                (f"netdiag down{_prefix_option(self.spec.prefix)}",),
                "namespaces stay up for you to explore",
                lambda: self._keep(live),
            )
        else:
            self.progress.aborted_at = None  # teardown always runs
            self._step(
                "teardown",
                "Remove everything the run created",
                tuple(f"ip netns del {name}" for name in reversed(self.spec.namespace_names())),
                "no namespace of this run remains",
                lambda: self._teardown(live),
            )
        self.result = self._result()

    def _keep(self, live: LiveTopology) -> tuple[bool, str]:
        live.keep()
        live.release()
        names = ", ".join(self.spec.namespace_names())
        return True, f"kept: {names} stay up (run record {live.record.path})"

    def _teardown(self, live: LiveTopology) -> tuple[bool, str]:
        result = live.teardown()
        from netdiag.live.namespaces import list_namespaces

        left = sorted(set(self.spec.namespace_names()) & set(list_namespaces()))
        if result.ok and not left:
            return True, f"removed {', '.join(result.removed) or 'nothing'}; nothing left behind"
        problems = [*result.errors, *(f"{name} still exists" for name in left)]
        return False, "; ".join(problems)

    # ---- setup ------------------------------------------------------------------------

    def _setup_steps(self, live: LiveTopology) -> None:
        spec = self.spec
        # The server's end of the capture link, or (capture elsewhere, e.g. routed's
        # client side) its first interface; the ends only name things in the transcript.
        server_ends = spec.interfaces_of(self.server)
        server_end = next(
            (end for end in server_ends if end.interface == self.probe.capture_interface),
            server_ends[0],
        )
        link = next(link for link in spec.links if server_end in link.ends)
        client_end = next(
            (end for end in spec.interfaces_of(self.client) if end in link.ends),
            spec.interfaces_of(self.client)[0],
        )

        def veth_pair() -> tuple[bool, str]:
            live.create_namespaces()
            pause_point("links")
            live.create_links()
            return True, (
                f"{server_end.interface} in {server_end.namespace} <-> "
                f"{client_end.interface} in {client_end.namespace}; lo up in "
                f"{', '.join(spec.namespace_names())}"
            )

        self._step(
            "veth-pair",
            "Create the namespaces and the veth pair between them",
            (
                *(f"ip netns add {name}" for name in spec.namespace_names()),
                *(f"ip -n {name} link set lo up" for name in spec.namespace_names()),
                *(
                    f"ip -n {lk.ends[0].namespace} link add {lk.ends[0].interface} type veth "
                    f"peer name {lk.ends[1].interface} netns {lk.ends[1].namespace}"
                    for lk in spec.links
                ),
                # create_links() makes the bridges too; each is set up with its namespace.
                *(
                    command
                    for bridge in spec.bridges
                    for command in (
                        f"ip -n {bridge.namespace} link add {bridge.name} type bridge",
                        *(
                            f"ip -n {bridge.namespace} link set {member} master {bridge.name}"
                            for member in bridge.members
                        ),
                    )
                ),
            ),
            "both ends exist, each in its own namespace",
            veth_pair,
            setup=True,
        )

        self._step(
            "ns1",
            f"Configure {self.server}: address on {server_end.interface}, link up",
            _configure_commands(spec, self.server),
            f"{server_end.interface} is up with {_addresses(server_end)}",
            lambda: self._configure(live, self.server),
            setup=True,
        )

        self._step(
            "isolation",
            f"Show {self.server} is isolated from the root namespace",
            (
                f"ip link show {server_end.interface}    # does not exist in the root namespace",
                f"ip -4 addr | grep {self.server_address}    # not a root-namespace address",
                f"ip netns exec {self.server} ping -c 1 {self.server_address}",
            ),
            "the veth ends are not in the root namespace; the namespace reaches its own address",
            lambda: self._isolation(self.server, self.server_address),
            setup=True,
        )

        self._step(
            "ns2",
            f"Configure {self.client}: address on {client_end.interface}, link up",
            (
                *_configure_commands(spec, self.client),
                f"ip netns exec {self.client} ping -c 1 {self.client_address}",
            ),
            f"{client_end.interface} is up with {_addresses(client_end)}; "
            f"{self.client} reaches its own address",
            lambda: self._configure_and_self_check(live, self.client, self.client_address),
            setup=True,
        )

        others = [name for name in spec.namespace_names() if name not in (self.server, self.client)]
        if others:
            # Routers of routed/chain, the hub of a star: configured like the ends.
            self._step(
                "other-namespaces",
                f"Configure {', '.join(others)}: addresses, links (and bridges) up, forwarding",
                tuple(command for name in others for command in _configure_commands(spec, name)),
                "every interface is up with its addresses",
                partial(self._configure_all, live, others),
                setup=True,
            )

        self._step(
            "unreachable-before-routes",
            "Without routes, each side cannot reach the other's subnet",
            (
                f"ip -n {self.server} route get {self.client_address}",
                f"ip -n {self.client} route get {self.server_address}",
                f"ip netns exec {self.client} ping -c 1 {self.server_address}",
            ),
            "RTNETLINK answers: Network is unreachable (both sides); sending fails the same way",
            lambda: self._unreachable(live),
        )

        self._step(
            "routes",
            "Add a route to the other subnet on each side",
            (
                *(route.ip_command() for route in spec.routes),
                f"ip -n {self.server} route get {self.client_address}",
                f"ip -n {self.client} route get {self.server_address}",
            ),
            "route get now resolves through the veth ends",
            lambda: self._routes(live),
        )

    def _configure(self, live: LiveTopology, namespace: str) -> tuple[bool, str]:
        live.configure_namespace(namespace)
        problems = []
        details = []
        present = set(live.addresses(namespace))
        for end in self.spec.interfaces_of(namespace):
            state = live.interface_state(namespace, end.interface)
            if state is None:
                problems.append(f"{end.interface} does not exist in {namespace}")
                continue
            admin_up, operational = state
            missing = [str(a) for a in end.addresses if str(a) not in present]
            if missing:
                problems.append(f"{end.interface} lacks {', '.join(missing)}")
            if end.up and not admin_up:
                problems.append(f"{end.interface} is down")
            carrier = "" if operational == "UP" else ", no carrier until its peer is up"
            details.append(f"{end.interface} {_addresses(end)} up{carrier}")
        if problems:
            return False, "; ".join(problems)
        return True, "; ".join(details)

    def _configure_all(self, live: LiveTopology, namespaces: list[str]) -> tuple[bool, str]:
        results = [self._configure(live, namespace) for namespace in namespaces]
        problems = [detail for ok, detail in results if not ok]
        if problems:
            return False, "; ".join(problems)
        forwarding = [n.name for n in self.spec.namespaces if n.name in namespaces and n.forwarding]
        note = f"; forwarding on in {', '.join(forwarding)}" if forwarding else ""
        return True, f"{len(namespaces)} namespace(s) configured{note}"

    def _self_echo(self, namespace: str, address: str) -> tuple[bool, str]:
        from netdiag.traffic.icmp import echo

        outcome = echo(namespace, address, address, 1, _identifier())
        if outcome.received == 1:
            return True, f"{namespace} reaches its own {address}"
        return False, f"{namespace} does not reach its own {address}: {outcome.error or 'no reply'}"

    def _configure_and_self_check(
        self, live: LiveTopology, namespace: str, address: str
    ) -> tuple[bool, str]:
        ok, detail = self._configure(live, namespace)
        if not ok:
            return ok, detail
        echo_ok, echo_detail = self._self_echo(namespace, address)
        from netdiag.live.topology import root_namespace_view

        _names, root_addresses = root_namespace_view()
        if address in root_addresses:
            return False, f"{address} is also an address of the root namespace"
        return echo_ok, f"{detail}; {echo_detail}"

    def _isolation(self, namespace: str, address: str) -> tuple[bool, str]:
        from netdiag.live.topology import root_namespace_view

        root_names, root_addresses = root_namespace_view()
        interfaces = [end.interface for lk in self.spec.links for end in lk.ends]
        leaked = [name for name in interfaces if name in root_names]
        problems = []
        if leaked:
            problems.append(f"{', '.join(leaked)} visible in the root namespace")
        own = [str(a.address) for a in self.spec.addresses_of(namespace)]
        local = [a for a in own if a in root_addresses]
        if local:
            problems.append(f"{', '.join(local)} is local to the root namespace")
        echo_ok, echo_detail = self._self_echo(namespace, address)
        if not echo_ok:
            problems.append(echo_detail)
        if problems:
            return False, "; ".join(problems)
        return True, (
            f"{', '.join(interfaces)} not in the root namespace; {', '.join(own)} not local "
            f"to it; {echo_detail}"
        )

    def _unreachable(self, live: LiveTopology) -> tuple[bool, str]:
        from netdiag.traffic.icmp import send_attempt

        results = []
        ok = True
        for namespace, source, destination in (
            (self.server, self.server_address, self.client_address),
            (self.client, self.client_address, self.server_address),
        ):
            lookup = live.route_get(namespace, destination)
            sent_errno = send_attempt(namespace, source, destination)
            if lookup.error_code != errno.ENETUNREACH or sent_errno != errno.ENETUNREACH:
                ok = False
            lookup_text = lookup.error or f"via {lookup.interface}"
            send_text = os.strerror(sent_errno) if sent_errno else "sent"
            results.append(
                f"{namespace} -> {destination}: route get: {lookup_text}, send: {send_text}"
            )
        return ok, "; ".join(results)

    def _routes(self, live: LiveTopology) -> tuple[bool, str]:
        if not self.spec.routes:
            return False, "the topology declares no routes"
        live.add_routes()
        results = []
        ok = True
        for namespace, destination, expected_interfaces in (
            (self.server, self.client_address, self.spec.interfaces_of(self.server)),
            (self.client, self.server_address, self.spec.interfaces_of(self.client)),
        ):
            lookup = live.route_get(namespace, destination)
            names = {end.interface for end in expected_interfaces}
            if not lookup.reachable or lookup.interface not in names:
                ok = False
            results.append(
                f"{namespace}: {destination} via {lookup.interface}"
                if lookup.reachable
                else f"{namespace}: {destination}: {lookup.error}"
            )
        return ok, "; ".join(results)

    # ---- traffic + capture ------------------------------------------------------------

    def _traffic_steps(self, live: LiveTopology) -> None:
        from netdiag.capture.sniffer import Sniffer

        if self.progress.aborted_at is None:
            sniffer = Sniffer(
                self.probe.capture_namespace, self.probe.capture_interface, self._pcap_path()
            )
            self._sniffer = sniffer
            live.on_teardown("the sniffer", lambda: _discard(sniffer.stop(settle=False)))
            try:
                sniffer.start()
            except NetdiagError as error:
                self._sniffer = None
                self._record(
                    StepResult(
                        "capture",
                        False,
                        f"sniffer did not start: {error.message}",
                        0.0,
                        self._capture_title(),
                    )
                )
                self.progress.aborted_at = "capture"
        self.after_capture_started(live)
        count = self.options.count
        interval_option = f" -i {self.options.interval:g}" if self.options.interval else ""
        for step_id, source_ns, source, destination in (
            ("ping-ns2-ns1", self.client, self.client_address, self.server_address),
            ("ping-ns1-ns2", self.server, self.server_address, self.client_address),
        ):
            self._step(
                step_id,
                f"ICMP echo from {source_ns} to {destination} (scapy, inside {source_ns})",
                (f"ip netns exec {source_ns} ping -c {count}{interval_option} {destination}",),
                f"{count} requests, {count} replies",
                partial(self._ping, source_ns, source, destination),
            )
        port = self.options.port
        self._step(
            tcp_step_id(port),
            f"TCP: {self.client} connects to {self.server_address}:{port} and sends a message",
            (
                f"ip netns exec {self.server} nc -l {self.server_address} {port} &",
                f"echo '{self.options.message}' | ip netns exec {self.client} nc -N "
                f"{self.server_address} {port}",
            ),
            "the server receives exactly the message; both sides close with FIN",
            lambda: self.exchange_tcp(live),
        )
        if self._sniffer is not None:
            self.before_capture_stopped()
            self._capture_step()

    def _ping(self, namespace: str, source: str, destination: str) -> tuple[bool, str]:
        from netdiag.traffic.icmp import echo

        identifier = _identifier()
        outcome = echo(
            namespace,
            source,
            destination,
            self.options.count,
            identifier,
            interval=self.options.interval,
        )
        self.progress.echo_identifiers.append(identifier)
        self.progress.pings.append(_ping_result(outcome, self.options.count))
        lost = outcome.sent - outcome.received
        if outcome.error:
            return False, f"{outcome.error} (nothing sent)"
        detail = (
            f"{outcome.sent} sent, {outcome.received} received, "
            f"{100.0 * lost / outcome.sent if outcome.sent else 100.0:.0f}% loss"
        )
        return outcome.received == self.options.count and outcome.sent == self.options.count, detail

    def exchange_tcp(self, live: LiveTopology) -> tuple[bool, str]:
        """The body of the TCP step (a hook): listener in the server, message from the client."""
        from netdiag.traffic.tcp import Listener, bulk_transfer, exchange_message

        message = self.options.message.encode("utf-8")
        listener = Listener(self.server, self.server_address, self.options.port)
        live.on_teardown("the TCP listener", listener.close)
        try:
            outcome = exchange_message(
                listener, self.client, self.server_address, self.options.port, message
            )
            bulk = (
                bulk_transfer(
                    listener, self.client, self.server_address, self.options.port, self.options.bulk
                )
                if self.options.bulk and outcome.connected
                else None
            )
        finally:
            listener.close()
        received_text = (
            None
            if outcome.message_received is None
            else outcome.message_received.decode("utf-8", errors="replace")
        )
        exchange = TcpExchange(
            from_ns=self.client,
            to=f"{self.server_address}:{self.options.port}",
            connected=outcome.connected,
            message_sent=self.options.message,
            message_received=received_text,
            error=outcome.error or (None if bulk is None else bulk.error),
            bulk_bytes=self.options.bulk,
            bulk_verified=None if bulk is None else bulk.verified,
            bulk_throughput_mbps=(
                None
                if bulk is None or bulk.throughput_mbps is None
                else round(bulk.throughput_mbps, 1)
            ),
        )
        self.progress.tcp.append(exchange)
        if not outcome.connected:
            return False, f"connect failed: {outcome.error}"
        exact = outcome.message_received == message
        clean = outcome.fin_from_client and outcome.fin_from_server
        parts = [
            f"connected from port {outcome.client_port}",
            f"server received {len(outcome.message_received or b'')} bytes "
            + ("(exactly the message)" if exact else f"({received_text!r}, not the message)"),
            "FIN both ways" if clean else "no clean close",
        ]
        ok = exact and clean
        if self.options.bulk:
            assert bulk is not None  # connected: the bulk transfer ran
            ok = ok and bulk.verified
            throughput = bulk.throughput_mbps
            throughput_text = f", {throughput:.0f} Mbit/s" if throughput else ""
            parts.append(
                f"bulk {bulk.received}/{self.options.bulk} bytes "
                + ("verified" if bulk.verified else f"NOT verified ({bulk.error or 'mismatch'})")
                + throughput_text
            )
        return ok, "; ".join(parts)

    def _capture_step(self) -> None:
        sniffer = self._sniffer
        assert sniffer is not None
        # The sniffer runs (one that failed to start is None): its step must stop it.
        self.progress.aborted_at = None

        def stop() -> tuple[bool, str]:
            result = sniffer.stop()
            self.progress.capture = result
            self.progress.pcaps.append(_display_path(Path(result.path)))
            ok = result.ready_proven and result.drained and result.kernel_drops == 0
            ok = ok and result.error is None
            notes = [
                f"{result.packets} frames -> {_display_path(Path(result.path))}",
                f"kernel drops {result.kernel_drops}",
                f"ready (marker seen) after {result.ready_ms:.1f} ms"
                if result.ready_proven
                else "readiness NOT proven",
                "drained (end marker seen)" if result.drained else "NOT drained",
            ]
            if result.error:
                notes.append(result.error)
            return ok, "; ".join(notes)

        self._step(
            "capture",
            self._capture_title(),
            (
                f"ip netns exec {self.probe.capture_namespace} tcpdump -i "
                f"{self.probe.capture_interface} -w {_display_path(self._pcap_path())}",
            ),
            "every frame of the pings and the TCP exchange written, none dropped",
            stop,
        )

    # ---- after teardown: analysis and report ----------------------------------------------

    def _result(self) -> RunResult:
        progress = self.progress
        return self.finalize_result(
            RunResult(
                ok=all(step.ok for step in progress.steps),
                run_id=self.options.run_id,
                topology=self.spec.name,
                steps=tuple(progress.steps),
                icmp=tuple(progress.pings),
                tcp=tuple(progress.tcp),
                pcaps=tuple(progress.pcaps),
                reports=tuple(progress.reports),
                kernel_drops=None if progress.capture is None else progress.capture.kernel_drops,
                # What happened, not what was asked: --keep with an aborted setup (or an
                # interrupt) takes the teardown branch, whose step is "teardown" too.
                kept=self.live is not None and self.live.kept,
            )
        )

    def _analyze_and_report(self) -> None:
        capture = self.progress.capture
        if capture is None or self.result is None:
            return
        from netdiag.analysis.analyze import analyze_file

        pause_point("analysis")
        try:
            analysis = analyze_file(Path(capture.path))
        except NetdiagError as error:
            self._record(StepResult("analysis", False, f"analysis failed: {error.message}", 0.0))
            self.result = self._result()
            return
        self.analysis = analysis
        pings = tuple(
            _with_capture_rtts(ping, identifier, analysis)
            for ping, identifier in zip(
                self.progress.pings, self.progress.echo_identifiers, strict=False
            )
        )
        self.progress.pings = list(pings)
        self.on_capture_analyzed(analysis)
        started = time.perf_counter()
        ok, detail = self._completeness(analysis)
        self._record(
            StepResult(
                "capture-complete",
                ok,
                detail,
                (time.perf_counter() - started) * 1000.0,
                "Check the capture holds every packet of the experiment",
                (
                    f"tshark -r {_display_path(Path(capture.path))} -Y 'icmp || tcp.port == "
                    f"{self.options.port}'",
                ),
                "every echo request and reply sent, the whole TCP exchange, both FINs",
            )
        )
        self.result = self._result()
        started = time.perf_counter()
        from netdiag.report import write_report

        pause_point("report")
        try:
            written = write_report(
                self.options.report_dir,
                [analysis],
                self.result,
                {"md", "html", "json"},
                [],
                self.options.force,
            )
            self.progress.reports = [_display_path(path) for path in written]
            ok, detail = True, f"written to {_display_path(self.options.report_dir)}"
        except NetdiagError as error:
            ok, detail = False, error.message
        self._record(
            StepResult(
                "report",
                ok,
                detail,
                (time.perf_counter() - started) * 1000.0,
                "Analyze the capture and write the report",
                (
                    f"netdiag analyze {_display_path(Path(capture.path))} "
                    f"--out {_display_path(self.options.report_dir)}",
                ),
                "report.md, report.html and report.json",
            )
        )
        self.result = self._result()

    def _completeness(self, analysis: Analysis) -> tuple[bool, str]:
        """Compare what the traffic steps did with what the capture holds."""
        problems: list[str] = []
        notes: list[str] = []
        for ping, identifier in zip(
            self.progress.pings, self.progress.echo_identifiers, strict=False
        ):
            echoes = [e for e in analysis.icmp_echo if e.id == identifier and e.dst == ping.to]
            replies = sum(1 for echo in echoes if echo.frame_rep is not None)
            if len(echoes) != ping.sent or replies != ping.received:
                unanswered = [
                    f"seq {e.seq} (frame {e.frame_req})" for e in echoes if not e.frame_rep
                ]
                problems.append(
                    f"{ping.from_ns} -> {ping.to}: {len(echoes)}/{ping.sent} requests and "
                    f"{replies}/{ping.received} replies captured"
                    + (f"; no reply paired with {', '.join(unanswered)}" if unanswered else "")
                )
            else:
                notes.append(f"{len(echoes)}+{replies} echoes {ping.from_ns} -> {ping.to}")
        server = f"{self.server_address}:{self.options.port}"
        streams = [stream for stream in analysis.tcp if stream.server == server]
        for exchange in self.progress.tcp:
            if not exchange.connected:
                continue
            message = exchange.message_sent.encode("utf-8")
            first = streams[0] if streams else None
            if first is None:
                problems.append(f"no TCP stream to {server} in the capture")
                continue
            handshake = None not in (first.syn_frame, first.synack_frame, first.ack_frame)
            # Unique bytes: on veth the kernel may reorder segments (the sender moved
            # between CPUs), and TCP then sends some again; that is not a capture gap.
            if not handshake or first.unique_bytes_c2s != len(message) or not first.fin_seen:
                problems.append(
                    f"stream to {server}: handshake {'seen' if handshake else 'incomplete'}, "
                    f"{first.unique_bytes_c2s}/{len(message)} message bytes, "
                    f"FIN {'seen' if first.fin_seen else 'missing'}"
                )
            else:
                notes.append(f"{server} handshake, {len(message)} message bytes, FINs")
            if exchange.bulk_bytes and exchange.bulk_verified:
                bulk = streams[1] if len(streams) > 1 else None
                if bulk is None or bulk.unique_bytes_c2s != exchange.bulk_bytes:
                    captured = 0 if bulk is None else bulk.unique_bytes_c2s
                    problems.append(f"bulk stream: {captured}/{exchange.bulk_bytes} bytes captured")
                else:
                    notes.append(f"bulk {exchange.bulk_bytes} bytes")
        if problems:
            return False, "; ".join(problems)
        return True, "capture holds " + "; ".join(notes) if notes else "nothing was sent"


# ---- helpers ------------------------------------------------------------------------------


def _discard(_value: object) -> None:
    return None


def _identifier() -> int:
    return random.randint(0x1000, 0xFFFF)


def _prefix_option(prefix: str) -> str:
    return f" --prefix {prefix}" if prefix else ""


def _addresses(end: LinkEndSpec) -> str:
    return ", ".join(str(address) for address in end.addresses) or "no address"


def _configure_commands(spec: TopologySpec, namespace: str) -> tuple[str, ...]:
    commands: list[str] = []
    for end in spec.configured_interfaces_of(namespace):
        commands.extend(
            f"ip -n {namespace} addr add {address} dev {end.interface}" for address in end.addresses
        )
        if end.mtu is not None:
            commands.append(f"ip -n {namespace} link set {end.interface} mtu {end.mtu}")
        if end.up:
            commands.append(f"ip -n {namespace} link set {end.interface} up")
    return tuple(commands)


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _ping_result(outcome: EchoOutcome, count: int) -> PingResult:
    sent = outcome.sent
    loss = 100.0 * (sent - outcome.received) / sent if sent else 100.0
    return PingResult(
        from_ns=outcome.namespace,
        to=outcome.destination,
        sent=sent,
        received=outcome.received,
        loss_pct=loss,
        rtt_ms=None,
        rtts_ms=tuple(None for _ in range(count)),
    )


def _with_capture_rtts(ping: PingResult, identifier: int, analysis: Analysis) -> PingResult:
    """Fill a ping's RTTs from the capture's kernel timestamps (the analyzer's pairs)."""
    by_sequence: dict[int, float | None] = {}
    for echo in analysis.icmp_echo:
        if echo.id == identifier and echo.dst == ping.to:
            by_sequence[echo.seq] = echo.rtt_ms
    per_sequence = tuple(by_sequence.get(sequence) for sequence in range(1, len(ping.rtts_ms) + 1))
    rtts = [value for value in per_sequence if value is not None]
    return replace(ping, rtt_ms=ping_stats(rtts), rtts_ms=per_sequence)
