"""``netdiag capture``: capture inside a namespace to pcap, with a live packet counter.

Uses the same ``Sniffer`` as ``netdiag run``. The namespace may be any named
one or ``pid:N`` (a container's); since it may not be netdiag's, no readiness
marker is sent into it: the socket receives from the moment it is bound, which
happens before the counter starts. Ctrl-C (exit 130) and SIGTERM (exit 143)
stop the capture after everything read so far is written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from netdiag.errors import CaptureError, ExitStatus, OutputError

# Why the capture ended, when a signal ended it (else the sniffer's own reason).
_STOPPED_BY = {ExitStatus.INTERRUPTED: "interrupt", ExitStatus.SIGTERM: "terminated"}


def execute(
    *,
    ns: str,
    iface: str,
    write: Path,
    count: int | None,
    duration: float | None,
    analyze_after: bool,
    json_output: bool,
) -> int:
    from netdiag.capture.sniffer import Sniffer
    from netdiag.live.namespaces import check_environment, namespace_path
    from netdiag.live.signals import Terminated, raise_if_signalled, terminate_as_exception

    namespace_path(ns)  # a clear error for a missing namespace before anything else
    check_environment()
    console = Console(stderr=True, highlight=False)
    sniffer = Sniffer(ns, iface, write, count=count, prove_with_marker=False)
    code = ExitStatus.OK
    started = time.monotonic()
    with terminate_as_exception():
        try:
            sniffer.start()
            with console.status(f"capturing on {escape(iface)} in {escape(ns)}…") as status:
                while not sniffer.wait(0.2):
                    raise_if_signalled()  # one whose exception was swallowed
                    elapsed = time.monotonic() - started
                    status.update(
                        f"capturing on {escape(iface)} in {escape(ns)}: "
                        f"{sniffer.packets} packets, {elapsed:.1f} s"
                    )
                    if duration is not None and elapsed >= duration:
                        break
        except KeyboardInterrupt:
            code = ExitStatus.INTERRUPTED
        except Terminated:
            code = ExitStatus.SIGTERM
        finally:
            result = sniffer.stop(settle=False)
    if result.write_error is not None:
        # Disk full (issue 7): one error line, exit 2; the file keeps what was written.
        raise OutputError(result.write_error, advice="free some space, or choose another -w")
    if result.error is not None:
        # The socket failed (the interface was deleted, its namespace went away):
        # exit 3, not a capture that looks complete; the file keeps what was read.
        raise CaptureError(
            f"capture on {iface} in {ns} stopped: {result.error} "
            f"({result.packets} packets written to {result.path})",
            "check that the interface still exists: ip -n <ns> link show <iface>",
        )
    document = {
        "path": result.path,
        "namespace": ns,
        "interface": iface,
        "packets": result.packets,
        "kernel_drops": result.kernel_drops,
        "link_type": result.link_type,
        "stopped_by": _STOPPED_BY.get(code, result.stopped_by),
        "seconds": round(time.monotonic() - started, 3),
    }
    if json_output and not analyze_after:
        print(json.dumps(document, indent=2))
    else:
        console.print(
            f"{result.packets} packets written to {escape(result.path)} "
            f"(kernel drops: {result.kernel_drops})"
        )
    if analyze_after and code == ExitStatus.OK:
        from netdiag.commands.analyze import execute as analyze

        return int(
            analyze(
                files=[write],
                json_output=json_output,
                formats=None,
                out=None,
                hexdump_frames=[],
                jobs=1,
                force=False,
            )
        )
    return int(code)
