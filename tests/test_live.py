"""LiveTopology, its run registry, name clashes, kill -9 leftovers and `netdiag clean`.

Real namespaces (root only), each test with a unique prefix; the run registry
goes to a temporary folder (NETDIAG_RUN_DIR) so tests never see each other's
records or a user's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netdiag.errors import InputError, ResourceConflictError

pytestmark = pytest.mark.netns


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "registry"
    monkeypatch.setenv("NETDIAG_RUN_DIR", str(folder))
    return folder


@pytest.fixture
def foreign_namespaces() -> Iterator[list[str]]:
    """Namespaces the test creates as 'not netdiag's'; removed afterwards."""
    from pyroute2 import netns

    names: list[str] = []
    yield names
    for name in names:
        if name in netns.listnetns():
            netns.remove(name)


def namespaces() -> set[str]:
    from pyroute2 import netns

    return set(netns.listnetns())


def make_foreign(name: str, names: list[str]) -> None:
    from pyroute2 import netns

    netns.create(name)
    names.append(name)


def test_build_and_teardown(unique_prefix: str, run_dir: Path) -> None:
    from netdiag.live.topology import LiveTopology, root_namespace_view
    from netdiag.topology.loader import load_topology

    spec = load_topology(None).with_prefix(unique_prefix)
    ns1, ns2 = spec.namespace_names()
    with LiveTopology(spec, "test-build") as live:
        live.build()
        assert {ns1, ns2} <= namespaces()
        assert f"{unique_prefix}veth0" in live.interface_names(ns1)
        assert f"{unique_prefix}veth1" in live.interface_names(ns2)
        root_names, _root_addresses = root_namespace_view()
        assert f"{unique_prefix}veth0" not in root_names
        assert f"{unique_prefix}veth1" not in root_names
        assert "10.0.1.0/24" in live.addresses(ns1)
        lookup = live.route_get(ns1, "10.0.2.0")
        assert lookup.reachable and lookup.interface == f"{unique_prefix}veth0"
        record = json.loads((run_dir / "test-build.json").read_text())
        assert record["pid"] == os.getpid()
        assert [item["name"] for item in record["created"] if item["kind"] == "netns"] == [ns1, ns2]
    assert not {ns1, ns2} & namespaces()
    assert live.teardown_result is not None and live.teardown_result.ok
    assert not (run_dir / "test-build.json").exists()


def test_unreachable_before_routes(unique_prefix: str, run_dir: Path) -> None:
    from netdiag.live.topology import ENETUNREACH, LiveTopology
    from netdiag.topology.loader import load_topology

    spec = load_topology(None).with_prefix(unique_prefix)
    with LiveTopology(spec, "test-unreach") as live:
        live.create_namespaces()
        live.create_links()
        for name in spec.namespace_names():
            live.configure_namespace(name)
        lookup = live.route_get(f"{unique_prefix}ns1", "10.0.2.0")
        assert lookup.error_code == ENETUNREACH
        assert lookup.error == "Network is unreachable"
        live.add_routes()
        assert live.route_get(f"{unique_prefix}ns1", "10.0.2.0").reachable
        routes = live.handle(f"{unique_prefix}ns1").get_routes(family=2, dst_len=24, table=254)
        scopes = {r.get("RTA_DST"): r["scope"] for r in routes}
        assert scopes["10.0.2.0"] == 253  # scope link, as `ip route add ... dev` makes it


def test_foreign_namespace_is_refused_and_survives(
    unique_prefix: str, run_dir: Path, foreign_namespaces: list[str]
) -> None:
    from netdiag.live.topology import LiveTopology
    from netdiag.topology.loader import load_topology

    spec = load_topology(None).with_prefix(unique_prefix)
    make_foreign(f"{unique_prefix}ns1", foreign_namespaces)
    with LiveTopology(spec, "test-clash") as live, pytest.raises(ResourceConflictError) as caught:
        live.preflight()
    assert "was not created by netdiag" in caught.value.message
    assert caught.value.advice is not None and "--prefix" in caught.value.advice
    assert f"{unique_prefix}ns1" in namespaces()
    assert f"{unique_prefix}ns2" not in namespaces()


def test_half_way_failure_rolls_back(
    unique_prefix: str, run_dir: Path, foreign_namespaces: list[str]
) -> None:
    """A clash discovered while creating (after the checks) undoes what was made."""
    from netdiag.live.topology import LiveTopology
    from netdiag.topology.loader import load_topology

    spec = load_topology(None).with_prefix(unique_prefix)
    with pytest.raises(ResourceConflictError), LiveTopology(spec, "test-rollback") as live:
        live.preflight()
        make_foreign(f"{unique_prefix}ns2", foreign_namespaces)  # appears in between
        live.create_namespaces()
    assert f"{unique_prefix}ns1" not in namespaces()  # ours: rolled back
    assert f"{unique_prefix}ns2" in namespaces()  # foreign: untouched


BUILDER = """
import sys, time
from netdiag.live.topology import LiveTopology
from netdiag.topology.loader import load_topology
live = LiveTopology(load_topology(None).with_prefix(sys.argv[1]), sys.argv[2])
live.build()
print("built", flush=True)
time.sleep(60)
"""


def test_kill_9_leftovers_are_found_and_cleaned_exactly(
    unique_prefix: str, run_dir: Path, foreign_namespaces: list[str]
) -> None:
    from netdiag.live import registry

    builder = subprocess.Popen(
        [sys.executable, "-c", BUILDER, unique_prefix, "test-kill9"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert builder.stdout is not None
        assert builder.stdout.readline().strip() == "built"
    finally:
        builder.send_signal(signal.SIGKILL)
        builder.wait()
    left = {f"{unique_prefix}ns1", f"{unique_prefix}ns2"}
    assert left <= namespaces()
    # Look-alikes that netdiag did not make: same prefix, similar names.
    make_foreign(f"{unique_prefix}ns3", foreign_namespaces)
    make_foreign(f"{unique_prefix}veth0", foreign_namespaces)
    abandoned = registry.abandoned_records()
    assert [record.run_id for record in abandoned] == ["test-kill9"]
    assert set(abandoned[0].existing_namespaces()) == left

    # The next run notices and refuses the name, pointing at `netdiag clean`.
    result = subprocess.run(
        [sys.executable, "-m", "netdiag", "run", "--prefix", unique_prefix, "--out", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "netdiag clean" in result.stderr

    cleaned = subprocess.run(
        [sys.executable, "-m", "netdiag", "clean", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cleaned.returncode == 0, cleaned.stderr
    document = json.loads(cleaned.stdout)
    assert set(document["removed"]) == left
    now = namespaces()
    assert not left & now
    assert {f"{unique_prefix}ns3", f"{unique_prefix}veth0"} <= now
    assert registry.load_records() == []


def test_namespace_recreated_under_a_recorded_name_is_not_removed(
    unique_prefix: str, run_dir: Path, foreign_namespaces: list[str]
) -> None:
    """The record holds the namespace's identity: the same *name* is not enough."""
    from pyroute2 import netns

    from netdiag.live import registry
    from netdiag.live.topology import LiveTopology, remove_recorded
    from netdiag.topology.loader import load_topology

    live = LiveTopology(load_topology(None).with_prefix(unique_prefix), "test-identity")
    live.preflight()
    live.create_namespaces()
    record = live.record
    live.release()
    name = f"{unique_prefix}ns1"
    netns.remove(name)
    netns.remove(f"{unique_prefix}ns2")
    make_foreign(name, foreign_namespaces)  # same name, another namespace
    result = remove_recorded(record)
    assert result.removed == ()
    assert name in namespaces()
    registry.forget(record)


def test_inside_pid_namespace_and_missing_names() -> None:
    from netdiag.live.namespaces import inside, namespace_path

    own = os.stat("/proc/self/ns/net").st_ino
    with inside(f"pid:{os.getpid()}"):
        assert os.stat("/proc/thread-self/ns/net").st_ino == own
    with pytest.raises(InputError, match="does not exist"):
        namespace_path("netdiag-no-such-namespace")
    with pytest.raises(InputError, match="no process"):
        namespace_path("pid:999999999")


def test_inside_moves_only_the_calling_thread(unique_prefix: str, run_dir: Path) -> None:
    from netdiag.live.namespaces import inside
    from netdiag.live.topology import LiveTopology
    from netdiag.topology.loader import load_topology

    root = os.stat("/proc/thread-self/ns/net").st_ino
    with LiveTopology(load_topology(None).with_prefix(unique_prefix), "test-inside") as live:
        live.preflight()
        live.create_namespaces()
        with inside(f"{unique_prefix}ns1"):
            assert os.stat("/proc/thread-self/ns/net").st_ino != root
        assert os.stat("/proc/thread-self/ns/net").st_ino == root


def test_teardown_only_in_the_building_process(unique_prefix: str, run_dir: Path) -> None:
    """A forked copy that unwinds through the context manager must not tear down."""
    from netdiag.live.topology import LiveTopology
    from netdiag.topology.loader import load_topology

    spec = load_topology(None).with_prefix(unique_prefix)
    with LiveTopology(spec, "test-fork") as live:
        live.preflight()
        live.create_namespaces()
        child = os.fork()
        if child == 0:  # the copy: leaving the block here must do nothing
            try:
                live.__exit__(None, None, None)
            finally:
                os._exit(0)
        os.waitpid(child, 0)
        time.sleep(0.05)
        assert set(spec.namespace_names()) <= namespaces()
    assert not set(spec.namespace_names()) & namespaces()
