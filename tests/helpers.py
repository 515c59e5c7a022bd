"""Helpers shared by the tests that drive the real CLI and real namespaces."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
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
