"""``netdiag run``: the experiment with a step-by-step transcript (or ``--json``).

Prints each step as it ends: a mark, the step id, what it did, the outcome,
and the ``ip`` commands a person would type for the same effect. Exit codes
follow the contract: 0 all expected outcomes held, 1 one did not, 2 bad
input (via ``NetdiagError``), 3 environment, 130 Ctrl-C, 143 SIGTERM; on
the last two everything the run created has been removed first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from netdiag.console import PipeConsole
from netdiag.errors import ExitStatus
from netdiag.experiment.model import RunResult, StepResult

if TYPE_CHECKING:
    from netdiag.experiment.runner import ExperimentRunner


def _print_step(console: Console, step: StepResult) -> None:
    mark = "[green]✔[/]" if step.ok else "[red]✘[/]"
    console.print(
        f"{mark} [bold]{escape(step.id):<26}[/] {escape(step.title)} "
        f"[dim]({step.elapsed_ms:.1f} ms)[/]"
    )
    for command in step.commands:
        console.print(f"    [dim]$ {escape(command)}[/]")
    colour = "green" if step.ok else "red"
    console.print(f"    [{colour}]→ {escape(step.detail)}[/]")
    if not step.ok and step.expected:
        console.print(f"    [yellow]expected: {escape(step.expected)}[/]")


def _print_summary(
    console: Console,
    result: RunResult,
    prefix: str,
    namespaces: tuple[str, ...],
    elapsed_s: float,
    capture_point: tuple[str, str],
) -> None:
    console.print()
    capture_namespace, capture_interface = capture_point
    for ping in result.icmp:
        # The capture is on one side only: for the other side's pings the times are the
        # far end's turnaround, shorter than what ping on the sender would print.
        where = f"capture timestamps on {capture_interface} in {capture_namespace}"
        if ping.from_ns != capture_namespace:
            where += f": {capture_namespace}'s turnaround"
        rtt = ping.rtt_ms
        line = (
            f"ICMP {ping.from_ns} → {ping.to}: {ping.sent} sent, {ping.received} received, "
            f"{ping.loss_pct:.0f}% loss"
        )
        if rtt is not None:
            line += (
                f", rtt min/avg/max/mdev = {rtt.min:.3f}/{rtt.avg:.3f}/{rtt.max:.3f}/"
                f"{rtt.mdev:.3f} ms ({where})"
            )
        console.print(escape(line))
    for exchange in result.tcp:
        console.print(
            escape(
                f"TCP {exchange.from_ns} → {exchange.to}: sent {exchange.message_sent!r}, "
                f"server received {exchange.message_received!r}"
            )
        )
        if exchange.bulk_bytes:
            console.print(
                escape(
                    f"    bulk {exchange.bulk_bytes} bytes, verified: {exchange.bulk_verified}, "
                    f"{exchange.bulk_throughput_mbps} Mbit/s"
                )
            )
    for path in result.pcaps:
        console.print(f"capture: {escape(path)} (kernel drops: {result.kernel_drops})")
    for path in result.reports:
        console.print(f"report:  {escape(path)}")
    if result.kept:
        option = f" --prefix {prefix}" if prefix else ""
        console.print(
            "\n[bold]The topology is still up.[/] Enter it with, for example:\n"
            f"    ip netns exec {escape(namespaces[0])} bash\n"
            f"    ip -n {escape(namespaces[0])} addr\n"
            f"Remove it with:\n    netdiag down{escape(option)}"
        )
    verdict = "[green]every expected outcome held[/]" if result.ok else "[red]FAILED[/]: "
    if not result.ok:
        verdict += ", ".join(step.id for step in result.steps if not step.ok)
    console.print(f"\nrun {escape(result.run_id)}: {verdict} [dim]({elapsed_s:.2f} s)[/]")


def _teardown_outcome(runner: ExperimentRunner) -> str:
    teardown = next((step for step in runner.progress.steps if step.id == "teardown"), None)
    if teardown is None:
        return "nothing had been created"
    if teardown.ok:
        return "everything the run created was removed"
    return f"teardown incomplete: {teardown.detail} (`netdiag clean` retries)"


def execute(
    *,
    topology: str | None,
    scenario: str | None,
    count: int,
    interval: float,
    port: int,
    message: str,
    out: Path | None,
    keep: bool,
    bulk: int,
    prefix: str,
    length: int,
    force: bool,
    json_output: bool,
) -> int:
    import time

    started = time.perf_counter()
    fault = None
    if scenario is not None:
        from netdiag.experiment.scenarios import apply_scenario, get_scenario

        fault = get_scenario(scenario)  # UsageError (exit 2) for an unknown name
        topology = topology or fault.topology
    from netdiag.topology.loader import load_topology

    spec = load_topology(topology, length).with_prefix(prefix)
    if fault is not None:
        spec = apply_scenario(fault, spec)

    from netdiag.live.namespaces import check_environment

    check_environment()

    from netdiag.experiment.runner import ExperimentRunner, RunOptions
    from netdiag.live import registry
    from netdiag.live.signals import Terminated, raise_if_signalled, terminate_as_exception

    console = PipeConsole(stderr=json_output, quiet=json_output, highlight=False, soft_wrap=True)
    # soft_wrap: the leftovers note is one line however long (issue 7: one-line messages).
    error_console = Console(stderr=True, highlight=False, soft_wrap=True)
    abandoned = registry.abandoned_records()
    if abandoned:
        names = sorted({name for record in abandoned for name in record.existing_namespaces()})
        if names:
            error_console.print(
                f"netdiag: note: {len(abandoned)} earlier run(s) died and left "
                f"{', '.join(names)} behind; `netdiag clean` removes them"
            )
    options = RunOptions(
        count=count,
        interval=interval,
        port=port,
        message=message,
        bulk=bulk,
        keep=keep,
        out=out,
        force=force,
    )
    header = (
        f"[bold]netdiag run {options.run_id}[/]: topology {escape(spec.name)} "
        f"({escape(', '.join(spec.namespace_names()))})"
        + (f", scenario {escape(fault.name)}: {escape(fault.summary)}" if fault else "")
        + "\n"
    )

    def on_step(step: StepResult) -> None:
        # The header waits for the first step: a refusal (name clash) prints only the error.
        if not printed_header:
            console.print(header)
            printed_header.append(True)
        _print_step(console, step)

    printed_header: list[bool] = []
    runner = ExperimentRunner(spec, options, on_step=on_step)
    if fault is not None:
        from netdiag.experiment.scenarios import ScenarioRunner

        runner = ScenarioRunner(spec, options, fault, on_step=on_step)
    try:
        with terminate_as_exception():
            # Import scapy now, in the root namespace and before any namespace exists,
            # so its one-off start-up cost is not charged to a step.
            import scapy.layers.inet  # noqa: F401

            result = runner.run()
            # A signal whose exception was swallowed after the last step's check
            # (in the analysis, say): the run is still interrupted.
            raise_if_signalled()
    except KeyboardInterrupt:
        print(f"netdiag: interrupted; {_teardown_outcome(runner)}", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except Terminated:
        print(f"netdiag: terminated; {_teardown_outcome(runner)}", file=sys.stderr)
        return int(ExitStatus.SIGTERM)
    if json_output:
        print(json.dumps(result.to_json(), indent=2))
    else:
        probe = spec.experiment_probe()
        _print_summary(
            console,
            result,
            prefix,
            spec.namespace_names(),
            time.perf_counter() - started,
            (probe.capture_namespace, probe.capture_interface),
        )
    return int(ExitStatus.OK if result.ok else ExitStatus.EXPECTATION_FAILED)
