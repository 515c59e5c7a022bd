"""Every error a user can cause: one line on stderr, the contract's exit code, no traceback.

These run the real CLI in a subprocess, as a user would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import one_line_error

SETPRIV = shutil.which("setpriv")
# An unprivileged user cannot reach this machine's Python (it lives under /root),
# so "not root" is simulated the way it really fails: a process without
# capabilities (what a user, or a container without CAP_SYS_ADMIN, has).
needs_setpriv = pytest.mark.skipif(
    SETPRIV is None or os.geteuid() != 0, reason="needs root and setpriv to drop capabilities"
)


def run_cli(*arguments: str, drop_capabilities: bool = False) -> subprocess.CompletedProcess[str]:
    prefix = [SETPRIV or "setpriv", "--bounding-set", "-all", "--inh-caps", "-all"]
    return subprocess.run(
        [*(prefix if drop_capabilities else []), sys.executable, "-m", "netdiag", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_analyze_missing_file(tmp_path: Path) -> None:
    result = run_cli("analyze", str(tmp_path / "nope.pcap"))
    one_line_error(result, 2)
    assert "nope.pcap" in result.stderr


def test_analyze_directory(tmp_path: Path) -> None:
    one_line_error(run_cli("analyze", str(tmp_path)), 2)


def test_analyze_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    one_line_error(run_cli("analyze", str(empty)), 2)


def test_analyze_not_a_capture(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a capture\n" * 10)
    one_line_error(run_cli("analyze", str(text)), 2)


@needs_setpriv
def test_analyze_permission_denied(tmp_path: Path) -> None:
    secret = tmp_path / "secret.pcap"
    secret.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\x00" * 20)
    secret.chmod(0o000)
    result = run_cli("analyze", str(secret), drop_capabilities=True)
    one_line_error(result, 2)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("command", ["analyze", "hexdump"])
def test_a_file_whose_reads_fail(command: str) -> None:
    """A read that fails (the kernel's EIO): /proc/self/mem is a regular file that
    opens, and reading its first bytes (unmapped memory) fails as a bad disk would."""
    lines = one_line_error(run_cli(command, "/proc/self/mem"), 2)
    assert lines[0] == (
        "netdiag: error: capture file /proc/self/mem cannot be read: Input/output error"
    )


def test_hexdump_missing_file(tmp_path: Path) -> None:
    one_line_error(run_cli("hexdump", str(tmp_path / "nope.pcap")), 2)


def test_run_port_out_of_range() -> None:
    result = run_cli("run", "--port", "70000")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


@needs_setpriv
def test_run_not_root_is_environment_error() -> None:
    result = run_cli("run", "--prefix", "nr-", drop_capabilities=True)
    one_line_error(result, 3)
    assert "root" in result.stderr


def test_run_unknown_scenario() -> None:
    one_line_error(run_cli("run", "--scenario", "no-such-fault"), 2)


def test_run_bad_topology_file(tmp_path: Path) -> None:
    topology = tmp_path / "bad.yaml"
    topology.write_text("namespaces: [ns1, ns2\nlinks: {}\n")
    result = run_cli("run", "--topology", str(topology))
    one_line_error(result, 2)
    assert "bad.yaml" in result.stderr


def test_help_is_quick_to_import() -> None:
    """`netdiag --help` must not import the heavy libraries (startup time)."""
    probe = (
        "import sys, netdiag.cli;"
        "heavy = [m for m in ('scapy', 'matplotlib', 'pyroute2', 'dpkt') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


@pytest.mark.parametrize(
    "module",
    [
        "netdiag.cli",  # the launcher's import of the command line (typer, click, rich)
        "typer._adapters",  # typer's lazy import while it converts the arguments
    ],
)
def test_interrupt_before_the_command_runs(module: str, tmp_path: Path) -> None:
    """Ctrl-C before a command's body runs: exit 130 and one line, no traceback.

    The KeyboardInterrupt is raised by an import on the way (a finder placed
    ahead of the real ones), where a real Ctrl-C lands only by chance of timing.
    """
    probe = (
        "import sys\n"
        "class Interrupting:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {module!r}:\n"
        "            raise KeyboardInterrupt\n"
        "        return None\n"
        "sys.meta_path.insert(0, Interrupting())\n"
        "from netdiag.launcher import main\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, "analyze", str(tmp_path / "missing.pcap"), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 130
    assert result.stderr == "netdiag: interrupted\n"
    assert result.stdout == ""


def test_launcher_exit_status_is_the_contracts() -> None:
    from netdiag.errors import ExitStatus
    from netdiag.launcher import INTERRUPTED

    assert int(ExitStatus.INTERRUPTED) == INTERRUPTED
