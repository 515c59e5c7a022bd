"""Shared fixtures: the corpus, unique resource names, and the netns marker.

Tests that need namespaces are marked ``@pytest.mark.netns``; they are skipped
with a clear reason when not root or when the kernel refuses namespaces, and
otherwise create their own uniquely named resources, removed by fixtures.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# CI copies shared/ beside the clone; sessions have it beside the work tree.
CORPUS_CANDIDATES = (
    PROJECT_ROOT.parent / "shared" / "corpus" / "pcaps",
    Path("/work/shared/corpus/pcaps"),
)


def _corpus_dir() -> Path | None:
    for candidate in CORPUS_CANDIDATES:
        if candidate.is_dir():
            return candidate
    return None


CORPUS_DIR = _corpus_dir()


def corpus_files() -> list[Path]:
    """Every capture of the shared corpus (empty when it is absent)."""
    if CORPUS_DIR is None:
        return []
    return sorted(p for p in CORPUS_DIR.iterdir() if not p.name.endswith(".truth.json"))


def load_truth(capture: Path) -> dict[str, Any]:
    with open(f"{capture}.truth.json", encoding="utf-8") as handle:
        result: dict[str, Any] = json.load(handle)
    return result


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if CORPUS_DIR is None:
        pytest.skip("shared corpus not found beside the project (../shared/corpus)")
    return CORPUS_DIR


def _netns_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if not Path("/proc/self/ns/net").exists():
        return "kernel without network namespace support"
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        return "pyroute2 is not installed"
    return None


NETNS_SKIP_REASON = _netns_unavailable_reason()


def pytest_configure(config: pytest.Config) -> None:
    # A shell starts a background job (`make test &`) with SIGINT ignored, and an
    # ignored signal stays ignored across exec: every netdiag the tests start would
    # then ignore the Ctrl-C the interrupt tests send. A handled signal is reset to
    # the default at exec, so handling it here gives the children Python's own.
    del config
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if NETNS_SKIP_REASON is None:
        return
    skip = pytest.mark.skip(reason=NETNS_SKIP_REASON)
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def unique_prefix() -> str:
    """A short prefix for resource names no other test (or user) uses.

    Interface names are limited to 15 bytes, so keep it short: 't' + 4 hex + '-'.
    """
    return f"t{uuid.uuid4().hex[:4]}-"


@pytest.fixture
def isolated_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry folder of the test's own, so runs do not see each other's records."""
    folder = tmp_path / "registry"
    monkeypatch.setenv("NETDIAG_RUN_DIR", str(folder))
    return folder


@pytest.fixture
def no_leftovers(unique_prefix: str) -> Iterator[str]:
    """The unique prefix; fails the test if a namespace with it survives (removed either way)."""
    from tests.helpers import namespaces_with_prefix

    yield unique_prefix
    left = namespaces_with_prefix(unique_prefix)
    if left:
        from pyroute2 import netns

        for name in left:
            netns.remove(name)
    assert left == [], f"left behind: {left}"
