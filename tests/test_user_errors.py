"""Issue 7, bad input: every error a user can cause is one line, the contract's code.

The CLI runs in a subprocess as a user runs it. A run that fails on its
output (read-only folder, disk full) must also leave nothing behind: these
tests make their own mounts (a read-only tmpfs, a 64 KiB tmpfs) in a
test-owned folder and unmount them in fixtures. (Not root: see
test_cli_errors.py::test_run_not_root_is_environment_error.)
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netdiag.topology.loader import builtin_text
from tests.helpers import netdiag, one_line_error, wait_until_capturing

SEED = builtin_text("seed")


def the_line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


TOPOLOGY_MISTAKES = [
    # (id, seed text -> broken text, the text on the line the error must name)
    (
        "yaml-syntax",
        lambda text: text.replace("  - ns2\n", "  - [ns2\n"),
        "links:",  # yaml notices the unclosed bracket where the next key starts
    ),
    (
        "unknown-key",
        lambda text: text.replace(
            "        addresses: [10.0.2.0/24]", "        adresses: [10.0.2.0/24]"
        ),
        "adresses:",
    ),
    (
        "bad-address",
        lambda text: text.replace("[10.0.2.0/24]", "[10.0.2.300/24]"),
        "10.0.2.300/24",
    ),
    (
        "no-prefix-length",
        lambda text: text.replace("[10.0.2.0/24]", "[10.0.2.0]"),
        "[10.0.2.0]",
    ),
]


@pytest.mark.parametrize(
    ("mistake", "line_text"),
    [(m[1], m[2]) for m in TOPOLOGY_MISTAKES],
    ids=[m[0] for m in TOPOLOGY_MISTAKES],
)
def test_bad_topology_file_names_file_and_line(
    tmp_path: Path, mistake: object, line_text: str
) -> None:
    assert callable(mistake)
    text = mistake(SEED)
    assert text != SEED
    topology = tmp_path / "mine.yaml"
    topology.write_text(text)
    (first, *_advice) = one_line_error(netdiag("run", "--topology", str(topology)), 2)
    assert f"{topology}:{the_line_of(text, line_text)}:" in first


def test_overlapping_subnets_are_refused_naming_file_and_line(tmp_path: Path) -> None:
    second_link = (
        "  - kind: veth\n"
        "    ends:\n"
        "      - {namespace: ns1, interface: veth2, addresses: [10.0.1.128/25]}\n"
        "      - {namespace: ns2, interface: veth3, addresses: [10.0.9.1/24]}\n"
    )
    text = SEED.replace("routes:\n", second_link + "routes:\n", 1)
    topology = tmp_path / "overlap.yaml"
    topology.write_text(text)
    (first, *_advice) = one_line_error(netdiag("run", "--topology", str(topology)), 2)
    line = the_line_of(text, "interface: veth2") - 2  # the second link: "- kind: veth"
    assert f"{topology}:{line}:" in first, first
    assert "overlap" in first and "10.0.1.0/24" in first and "10.0.1.128/25" in first


def test_route_through_an_unknown_device_names_the_route_line(tmp_path: Path) -> None:
    text = SEED.replace("device: veth1", "device: veth9", 1)
    topology = tmp_path / "route.yaml"
    topology.write_text(text)
    (first, *_advice) = one_line_error(netdiag("run", "--topology", str(topology)), 2)
    line = the_line_of(text, "device: veth9") - 2  # the route entry starts two lines above
    assert f"{topology}:{line}:" in first, first
    assert "veth9" in first


def test_debug_lets_the_traceback_through(tmp_path: Path) -> None:
    """The switch works both ways: --debug shows what the one line hides."""
    topology = tmp_path / "bad.yaml"
    topology.write_text("name: x\nnamespaces: [ns1\n")
    result = netdiag("--debug", "run", "--topology", str(topology))
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "TopologyError" in result.stderr


@pytest.mark.parametrize(
    "arguments",
    [
        ["run", "--port", "70000"],
        ["run", "--port", "0"],
        ["run", "--port", "http"],
        ["run", "--count", "0"],
        ["run", "--no-such-option"],
        ["no-such-command"],
    ],
    ids=["port-high", "port-zero", "port-word", "count-zero", "unknown-option", "unknown-command"],
)
def test_bad_options_are_one_line(arguments: list[str]) -> None:
    lines = one_line_error(netdiag(*arguments), 2)
    if "--port" in arguments:
        assert "--port" in lines[0]


def test_unknown_scenario_is_one_line() -> None:
    (first, *_advice) = one_line_error(netdiag("run", "--scenario", "no-such-fault"), 2)
    assert "no-such-fault" in first


# ---- output folders that cannot take the run's files ---------------------------------------


def mount_tmpfs(folder: Path, options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)


def unmount(folder: Path) -> None:
    if subprocess.run(["umount", str(folder)], check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """``mount(name, options)``: a tmpfs under the test's folder, unmounted afterwards."""
    mounted: list[Path] = []

    def make(name: str, options: str) -> Path:
        folder = tmp_path / name
        mount_tmpfs(folder, options)
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        unmount(folder)


@pytest.fixture
def read_only_folder(mount: Callable[[str, str], Path]) -> Path:
    return mount("read-only", "ro,size=64k")


@pytest.fixture
def tiny_disk(mount: Callable[[str, str], Path]) -> Path:
    return mount("tiny", "size=64k")


@pytest.fixture
def isolated_run(
    unique_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Path]]:
    """A prefix and a registry of the test's own; fails if the prefix survives."""
    from pyroute2 import netns

    registry = tmp_path / "registry"
    monkeypatch.setenv("NETDIAG_RUN_DIR", str(registry))
    yield unique_prefix, registry
    left = sorted(name for name in netns.listnetns() if name.startswith(unique_prefix))
    for name in left:
        netns.remove(name)
    assert left == [], f"left behind: {left}"


@pytest.mark.netns
def test_read_only_output_folder(read_only_folder: Path, isolated_run: tuple[str, Path]) -> None:
    prefix, registry = isolated_run
    (first, *_advice) = one_line_error(
        netdiag("run", "--prefix", prefix, "--out", str(read_only_folder / "x")), 2
    )
    assert str(read_only_folder) in first
    assert "Read-only file system" in first
    assert not registry.exists() or list(registry.glob("*.json")) == []  # nothing was built


@pytest.mark.netns
def test_output_under_a_file(tmp_path: Path, isolated_run: tuple[str, Path]) -> None:
    prefix, _registry = isolated_run
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    (first, *_advice) = one_line_error(
        netdiag("run", "--prefix", prefix, "--out", str(blocker / "out")), 2
    )
    assert str(blocker) in first


@pytest.mark.netns
def test_reports_folder_in_the_way_is_refused_before_building(
    tmp_path: Path, isolated_run: tuple[str, Path]
) -> None:
    prefix, registry = isolated_run
    out = tmp_path / "out"
    out.mkdir()
    (out / "reports").write_text("a file where the reports folder goes")
    (first, *_advice) = one_line_error(netdiag("run", "--prefix", prefix, "--out", str(out)), 2)
    assert str(out / "reports") in first
    assert not registry.exists() or list(registry.glob("*.json")) == []  # nothing was built
    assert sorted(path.name for path in out.iterdir()) == ["reports"]  # nor any folder made


@pytest.mark.netns
def test_disk_full_while_capturing(tiny_disk: Path, isolated_run: tuple[str, Path]) -> None:
    """64 KiB cannot hold a 1 MB bulk transfer's capture: one line, exit 2, nothing left."""
    from netdiag.analysis.analyze import analyze_file

    prefix, registry = isolated_run
    result = netdiag("run", "--prefix", prefix, "--out", str(tiny_disk), "--bulk", "1000000")
    (first, *_advice) = one_line_error(result, 2)
    assert "cannot write capture file" in first and "No space left on device" in first
    assert list(registry.glob("*.json")) == []  # torn down: the record went with it
    # The capture written up to the full disk is kept, and read up to the cut.
    (pcap,) = tiny_disk.glob("captures/*/*.pcap")
    assert str(pcap) in first
    analysis = analyze_file(pcap)
    assert analysis.file.packets > 10
    assert sum(1 for echo in analysis.icmp_echo if echo.frame_rep is not None) == 10


@pytest.mark.netns
def test_capture_command_on_a_full_disk(tiny_disk: Path, isolated_run: tuple[str, Path]) -> None:

    from netdiag.live.topology import LiveTopology
    from netdiag.topology.loader import load_topology
    from netdiag.traffic.tcp import Listener, bulk_transfer

    prefix, _registry = isolated_run
    pcap = tiny_disk / "bulk.pcap"
    with LiveTopology(load_topology(None).with_prefix(prefix), f"full-{prefix}") as live:
        live.build()
        capture = subprocess.Popen(
            [
                *(sys.executable, "-m", "netdiag", "capture", "--ns", f"{prefix}ns1"),
                *("--iface", f"{prefix}veth0", "-w", str(pcap)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until_capturing(capture, pcap)
            listener = Listener(f"{prefix}ns1", "10.0.1.0", 7096)
            try:
                bulk = bulk_transfer(listener, f"{prefix}ns2", "10.0.1.0", 7096, 1_000_000)
            finally:
                listener.close()
            assert bulk.verified, bulk.error  # the traffic itself is fine; only the disk is full
            result_stdout, result_stderr = capture.communicate(timeout=60)
        finally:
            if capture.poll() is None:
                capture.send_signal(signal.SIGKILL)  # only the process this test started
                capture.communicate()
    result = subprocess.CompletedProcess(
        capture.args, capture.returncode, result_stdout, result_stderr
    )
    (first, *_advice) = one_line_error(result, 2)
    assert "No space left on device" in first and str(pcap) in first
    assert pcap.stat().st_size > 24 and bulk.received == 1_000_000
