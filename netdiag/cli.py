"""The command-line edge: option parsing, error mapping, exit codes.

This module stays thin and quick to import: each command's work lives in
``netdiag.commands.<name>`` and is imported only when that command runs, so
``netdiag --help`` never pays for scapy, pyroute2 or matplotlib.

Errors are caught here, once: a ``NetdiagError`` from any layer becomes one
``netdiag: error:`` line (plus an advice line) on stderr and the contract's
exit code; Ctrl-C becomes exit 130. ``--debug`` lets the traceback through.
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from netdiag.errors import ExitStatus, NetdiagError

app = typer.Typer(
    name="netdiag",
    help="Packet-level diagnostics for Linux network namespaces: build, probe, capture, analyze.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state = {"debug": False, "command_started": False}


@app.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show Python tracebacks on errors.")
    ] = False,
) -> None:
    _state["debug"] = debug


def _finish(command: Callable[[], int]) -> NoReturn:
    """Run a command's body and exit with its code.

    Click would turn Ctrl-C into "Aborted!" and exit 1; the contract says 130.
    Commands that own resources tear them down in their own ``finally``
    before the interrupt reaches this point.
    """
    _state["command_started"] = True
    try:
        code = command()
    except KeyboardInterrupt:
        if _state["debug"]:
            raise
        print("netdiag: interrupted", file=sys.stderr)
        raise typer.Exit(int(ExitStatus.INTERRUPTED)) from None
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # another pipe: a real error
        # `netdiag analyze big.pcap --json | head`: the reader has what it
        # wanted and went away; that is fine, as for `cat`. stdout now points
        # at /dev/null so the interpreter's final flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        raise typer.Exit(int(ExitStatus.OK)) from None
    raise typer.Exit(code)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed (poll says POLLERR)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)
        return any(events & select.POLLERR for _fd, events in poller.poll(0))
    except (OSError, ValueError):  # stdout closed or not a file
        return False


JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON document on stdout.")]
TopologyOption = Annotated[
    str | None,
    typer.Option(
        "--topology",
        "-t",
        help="Topology: a YAML file, or a built-in name (seed, routed, star, chain).",
    ),
]
# Bounds checked by topology/generators.py (2..250 leaves, 3..250 namespaces),
# which knows them and says which applies; not imported here, to start quickly.
LengthOption = Annotated[
    int,
    typer.Option(
        "--length", "-n", help="Size of star (2-250 leaves) and chain (3-250 namespaces)."
    ),
]
PrefixOption = Annotated[
    str, typer.Option("--prefix", help="Prefix every namespace and interface name.")
]


@app.command()
def run(
    topology: TopologyOption = None,
    scenario: Annotated[
        str | None, typer.Option("--scenario", help="Inject a known fault (see docs).")
    ] = None,
    count: Annotated[int, typer.Option("--count", "-c", min=1, max=1000)] = 5,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            "-i",
            min=0.0,
            max=10.0,
            help="Seconds between echo requests (ping -i); 0 sends them back to back.",
        ),
    ] = 0.0,
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535)] = 7096,
    message: Annotated[str, typer.Option("--message", "-m")] = "this is a test message",
    out: Annotated[
        Path | None, typer.Option("--out", help="Put captures/ and reports/ under DIR.")
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the topology up.")] = False,
    bulk: Annotated[
        int, typer.Option("--bulk", min=0, help="Also send BYTES of bulk TCP ns2 -> ns1.")
    ] = 0,
    prefix: PrefixOption = "",
    chain_length: LengthOption = 3,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a report folder.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Reproduce the two-namespace experiment end to end and report on it."""
    from netdiag.commands.run import execute

    _finish(
        lambda: execute(
            topology=topology,
            scenario=scenario,
            count=count,
            interval=interval,
            port=port,
            message=message,
            out=out,
            keep=keep,
            bulk=bulk,
            prefix=prefix,
            length=chain_length,
            force=force,
            json_output=json_output,
        )
    )


@app.command()
def analyze(
    # Plain strings, not Path: typer's Path checks would print a boxed usage
    # error; unreadable files are the reader's to report, in one line, exit 2.
    files: Annotated[list[str], typer.Argument(metavar="FILE", help="pcap or pcapng files.")],
    json_output: JsonOption = False,
    formats: Annotated[
        str | None, typer.Option("--format", help="Report forms to write: md,html,json.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write a report folder here.")] = None,
    hexdump_frames: Annotated[
        list[int] | None, typer.Option("--hexdump-frames", help="Frames to hex-dump.")
    ] = None,
    hexdump_link: Annotated[
        bool,
        typer.Option("--hexdump-link", help="Hex dumps include the link layer, like tcpdump -XX."),
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Processes: files side by side, or one big file split by conversation"
            " (default: one per CPU).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a report folder.")] = False,
) -> None:
    """Analyze captures: ICMP echo RTTs, TCP handshakes and health, findings."""
    from netdiag.commands.analyze import execute

    _finish(
        lambda: execute(
            files=[Path(name) for name in files],
            json_output=json_output,
            formats=formats,
            out=out,
            hexdump_frames=hexdump_frames or [],
            hexdump_link=hexdump_link,
            jobs=jobs,
            force=force,
        )
    )


@app.command()
def hexdump(
    file: Annotated[str, typer.Argument(metavar="FILE", help="A pcap or pcapng file.")],
    frames: Annotated[list[int] | None, typer.Option("--frame", help="Frame number.")] = None,
    filter_expression: Annotated[
        str | None, typer.Option("--filter", help="e.g. 'tcp port 7096', 'icmp', 'host 10.0.1.0'")
    ] = None,
    link_layer: Annotated[
        bool, typer.Option("--link", "-XX", help="Include the link layer, like tcpdump -XX.")
    ] = False,
) -> None:
    """Print packets as `tcpdump -X` does."""
    from netdiag.commands.hexdump import execute

    _finish(
        lambda: execute(
            file=Path(file),
            frames=frames or [],
            filter_expression=filter_expression,
            link_layer=link_layer,
        )
    )


@app.command()
def up(
    topology: TopologyOption = None,
    prefix: PrefixOption = "",
    chain_length: LengthOption = 3,
    json_output: JsonOption = False,
) -> None:
    """Build a topology and leave it up."""
    from netdiag.commands.topo import up as execute

    _finish(
        lambda: execute(
            topology=topology, prefix=prefix, length=chain_length, json_output=json_output
        )
    )


@app.command()
def down(
    topology: TopologyOption = None,
    prefix: PrefixOption = "",
    json_output: JsonOption = False,
) -> None:
    """Tear down a topology that `netdiag up` (or `run --keep`) left."""
    from netdiag.commands.topo import down as execute

    _finish(lambda: execute(topology=topology, prefix=prefix, json_output=json_output))


@app.command()
def status(json_output: JsonOption = False) -> None:
    """Show what netdiag has up: namespaces, links, addresses, routes, reachability."""
    from netdiag.commands.topo import status as execute

    _finish(lambda: execute(json_output=json_output))


@app.command()
def diagnose(
    from_ns: Annotated[str, typer.Option("--from", help="Source namespace name or pid:N.")],
    to: Annotated[str, typer.Option("--to", help="Destination address (or namespace).")],
    port: Annotated[int | None, typer.Option("--port", "-p", min=1, max=65535)] = None,
    fix: Annotated[bool, typer.Option("--fix", help="Apply the fixes and re-check.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Explain why ADDR is or is not reachable from NS, and how to fix it."""
    from netdiag.commands.diagnose import execute

    _finish(lambda: execute(from_ns=from_ns, to=to, port=port, fix=fix, json_output=json_output))


@app.command()
def capture(
    ns: Annotated[str, typer.Option("--ns", help="Namespace name or pid:N.")],
    iface: Annotated[str, typer.Option("--iface", "-i", help="Interface inside the namespace.")],
    write: Annotated[Path, typer.Option("-w", "--write", help="pcap file to write.")],
    count: Annotated[int | None, typer.Option("--count", "-c", min=1)] = None,
    duration: Annotated[float | None, typer.Option("--duration", min=0.0)] = None,
    analyze_after: Annotated[bool, typer.Option("--analyze", help="Analyze when done.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Capture inside a namespace to pcap, without tcpdump."""
    from netdiag.commands.capture import execute

    _finish(
        lambda: execute(
            ns=ns,
            iface=iface,
            write=write,
            count=count,
            duration=duration,
            analyze_after=analyze_after,
            json_output=json_output,
        )
    )


@app.command()
def clean(json_output: JsonOption = False) -> None:
    """Remove what earlier netdiag runs left behind, and nothing else."""
    from netdiag.commands.topo import clean as execute

    _finish(lambda: execute(json_output=json_output))


def _click_exception_class() -> type[Exception]:
    """Click's base of usage errors (an option out of range, an unknown command...).

    Found through typer.BadParameter's ancestry because newer typer releases
    bundle their own copy of click and older ones use the click package.
    """
    for ancestor in typer.BadParameter.__mro__:
        if ancestor.__name__ == "ClickException" and issubclass(ancestor, Exception):
            return ancestor
    raise ImportError("typer.BadParameter does not derive from click's ClickException")


_ClickException = _click_exception_class()


def main() -> None:
    """Entry point: run the app and map errors to the contract's exit codes."""
    try:
        # Not click's standalone mode: it would print a usage banner and a boxed error
        # for bad options; the contract wants one `netdiag: error:` line (issue 7).
        code = app(standalone_mode=False)
    except NetdiagError as error:
        if _state["debug"]:
            raise
        print(f"netdiag: error: {error.message}", file=sys.stderr)
        if error.advice:
            print(f"netdiag: {error.advice}", file=sys.stderr)
        sys.exit(int(error.exit_status))
    except _ClickException as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # plain `netdiag`: the help
            error.show()  # type: ignore[attr-defined]
        else:
            message = error.format_message()  # type: ignore[attr-defined]
            print(f"netdiag: error: {' '.join(message.split())}", file=sys.stderr)
            context = getattr(error, "ctx", None)
            if context is not None:
                print(f"netdiag: try '{context.command_path} --help'", file=sys.stderr)
        sys.exit(int(getattr(error, "exit_code", ExitStatus.USAGE)))
    except typer.Abort:
        sys.exit(int(ExitStatus.INTERRUPTED))
    if code == ExitStatus.INTERRUPTED and not _state["command_started"]:
        # Typer turns a Ctrl-C that lands while it parses the command line (and
        # loads its type adapters, ~50 ms) into a silent exit 130.
        print("netdiag: interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)
