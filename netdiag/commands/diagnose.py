"""``netdiag diagnose --from NS --to ADDR [--port P] [--fix] [--json]``.

Prints the walk as a transcript (one ✔/✘ line per check with its evidence),
the findings with the command that fixes each, what the probes saw, and the
verdict; or, with ``--json``, the diagnosis document. Exit 0 when ADDR is
reachable, 1 when it is not (the diagnosis says why); errors (not root, a
refused ``--fix``) are raised for ``netdiag.cli`` to map to 2/3.
"""

from __future__ import annotations

import json

from netdiag.diagnose.model import Diagnosis
from netdiag.errors import ExitStatus


def render(diagnosis: Diagnosis) -> None:
    from rich.markup import escape

    from netdiag.console import PipeConsole

    # soft_wrap: a long evidence line stays one line when piped into a file.
    console = PipeConsole(highlight=False, soft_wrap=True)
    port = f" port {diagnosis.port}" if diagnosis.port is not None else ""
    destination = diagnosis.destination or diagnosis.target
    console.print(f"[bold]netdiag diagnose[/]: {diagnosis.source} -> {destination}{port}")
    for command in diagnosis.fixes_applied:
        console.print(f"  [cyan]fixed[/]  {escape(command)}")
    for check in diagnosis.checks:
        mark = "[green]✔[/]" if check.ok else "[red]✘[/]"
        where = f"{check.namespace}: " if check.namespace else ""
        console.print(f"  {mark} {check.name:<12} {escape(where + check.evidence)}")
    if diagnosis.path:
        console.print(f"[bold]path[/]: {' -> '.join(diagnosis.path)}")
    if diagnosis.causes:
        console.print("[bold]findings[/]:")
        colours = {"error": "red", "warn": "yellow", "note": "blue"}
        for cause in diagnosis.causes:
            finding = cause.finding
            colour = colours.get(finding.severity, "white")
            console.print(
                f"  [{colour}]{finding.severity}[/] [bold]{finding.code}[/] "
                f"{escape(finding.message)}"
            )
            if finding.hint:
                console.print(f"      fix: {escape(finding.hint)}")
    if diagnosis.probes is not None:
        console.print(f"[bold]probes[/] (from inside {diagnosis.probes.namespace}):")
        for line in diagnosis.probes.lines():
            console.print(f"  {escape(line)}")
    colour = "green" if diagnosis.reachable else "red"
    console.print(f"[bold {colour}]verdict[/]: {escape(diagnosis.verdict)}")


def execute(from_ns: str, to: str, port: int | None, fix: bool, json_output: bool) -> int:
    from netdiag.live.namespaces import check_environment, configure_pyroute2

    # Entering other namespaces (setns) needs the same privileges as building them.
    check_environment()
    configure_pyroute2()
    if fix:
        from netdiag.diagnose.fix import diagnose_and_fix

        diagnosis = diagnose_and_fix(from_ns, to, port)
    else:
        from netdiag.diagnose.engine import diagnose

        diagnosis = diagnose(from_ns, to, port)
    if json_output:
        print(json.dumps(diagnosis.to_json(), indent=2))
    else:
        render(diagnosis)
    return int(ExitStatus.OK if diagnosis.reachable else ExitStatus.EXPECTATION_FAILED)
