"""Helpers shared by the tests that drive the real CLI and real namespaces."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

BENCH_GENERATOR = Path(__file__).resolve().parent.parent / "bench" / "gen.py"


def load_bench_generator(name: str = "bench_gen", path: Path = BENCH_GENERATOR) -> ModuleType:
    """bench/gen.py, or another script of bench/ (not package modules), as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def netdiag(
    *arguments: str,
    timeout: float = 180,
    environment: dict[str, str] | None = None,
    before_exec: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in a subprocess, capturing its output.

    ``environment`` replaces this process's; ``before_exec`` runs in the child
    before the CLI starts (a resource limit, say)."""
    return subprocess.run(
        [sys.executable, "-m", "netdiag", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=environment,
        preexec_fn=before_exec,
    )


def namespaces_with_prefix(prefix: str) -> list[str]:
    from pyroute2 import netns

    return sorted(name for name in netns.listnetns() if name.startswith(prefix))


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> list[str]:
    """Assert the contract's error form and return its lines (the error, maybe advice)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "an error must say something on stderr"
    assert lines[0].startswith("netdiag: error: "), lines
    assert len(lines) <= 2, lines  # the error, and at most one line of advice
    assert all(line.startswith("netdiag: ") for line in lines), lines
    return lines


def reading(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has read into ``path`` yet (its descriptors come and
    go while it imports: one closed under our feet is simply not the capture)."""
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            if os.readlink(f"/proc/{pid}/fd/{descriptor}") != str(path):
                continue
            info = Path(f"/proc/{pid}/fdinfo/{descriptor}").read_text(encoding="ascii")
        except OSError:
            continue
        return int(info.split("pos:")[1].split()[0]) > 0
    return False


def wait_until_capturing(process: subprocess.Popen[str], pcap: Path) -> None:
    """Return once ``netdiag capture`` (``process``) is sure to see what is sent next.

    The sniffer opens its file only after binding its socket, and the kernel queues
    every frame for a bound socket: once the file exists nothing sent can be missed.
    A fixed sleep instead missed the traffic when the command's start-up (imports,
    entering the namespace) was slow on a loaded machine."""
    deadline = time.monotonic() + 60
    while not pcap.exists():
        if process.poll() is not None:
            _stdout, stderr = process.communicate()
            raise AssertionError(f"the capture ended (code {process.returncode}): {stderr}")
        assert time.monotonic() < deadline, "the capture never opened its file"
        time.sleep(0.01)


def interrupt_at_moments(
    arguments: Sequence[str],
    begun: Callable[[int], bool],
    delays: Sequence[float],
    complete: Callable[[str], bool],
) -> int:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) to
    ``netdiag *arguments``, once per delay: ``delay`` seconds after ``begun(pid)``
    holds. Each run must exit 130 with netdiag's one line, or 0, or by SIGINT
    itself after all was written (``complete(stdout)``: Python's own exit
    restores SIGINT's default action), never abort or show a traceback, and
    leave no process of its group behind. Returns how many exited 130."""
    interrupted = 0
    for delay in delays:
        process = subprocess.Popen(
            [sys.executable, "-m", "netdiag", *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, as a terminal's job
        )
        try:
            # Bounded: a run that fills the stdout pipe waits for this reader.
            deadline = time.monotonic() + 60
            while process.poll() is None and not begun(process.pid):
                assert time.monotonic() < deadline, "the run never began its work"
                time.sleep(0.002)
            time.sleep(delay)
            os.killpg(process.pid, signal.SIGINT)
            stdout, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if process.returncode == -signal.SIGINT:
            assert complete(stdout), (delay, stderr)
        else:
            assert process.returncode in (0, 130), (delay, process.returncode, stderr)
        assert "fatal" not in stderr and "Traceback" not in stderr, (delay, stderr)
        if process.returncode == 130:
            interrupted += 1
            assert stderr.strip().splitlines()[-1] == "netdiag: interrupted", stderr
        for _attempt in range(200):  # children reaped: the group is empty
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)
        else:
            raise AssertionError(f"a process of the group survived (delay {delay})")
    return interrupted
