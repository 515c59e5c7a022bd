"""`netdiag run` end to end, as a user runs it: a subprocess, real namespaces, real files.

Each test uses a unique prefix so that runs never share a kernel object, and
checks with pyroute2 afterwards that nothing of the run is left.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from netdiag.topology.loader import builtin_text
from tests.helpers import namespaces_with_prefix, netdiag

pytestmark = pytest.mark.netns

CONTRACT_STEPS = [
    "veth-pair",
    "ns1",
    "isolation",
    "ns2",
    "unreachable-before-routes",
    "routes",
    "ping-ns2-ns1",
    "ping-ns1-ns2",
    "tcp-7096",
    "capture",
    "teardown",
]


def run_json(prefix: str, out: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = netdiag("run", "--prefix", prefix, "--out", str(out), "--json", *extra)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_whole_experiment(tmp_path: Path, no_leftovers: str, isolated_registry: Path) -> None:
    from netdiag.analysis.analyze import analyze_file

    code, document = run_json(no_leftovers, tmp_path, "--count", "3")
    assert code == 0, document
    assert document["ok"] is True
    ids = [step["id"] for step in document["steps"]]
    assert ids[: len(CONTRACT_STEPS)] == CONTRACT_STEPS
    failed = [step for step in document["steps"] if not step["ok"]]
    assert failed == []
    assert all(step["commands"] for step in document["steps"][:11])
    assert document["capture"]["kernel_drops"] == 0

    pings = {(ping["from"], ping["to"]): ping for ping in document["icmp"]}
    for key in ((f"{no_leftovers}ns2", "10.0.1.0"), (f"{no_leftovers}ns1", "10.0.2.0")):
        ping = pings[key]
        assert (ping["sent"], ping["received"], ping["loss_pct"]) == (3, 3, 0.0)
        rtt = ping["rtt_ms"]
        assert rtt is not None and 0 <= rtt["min"] <= rtt["avg"] <= rtt["max"]
    (tcp,) = document["tcp"]
    assert tcp["connected"] is True
    assert tcp["message_received"] == "this is a test message"

    (pcap,) = document["artifacts"]["pcap"]
    pcap_path = Path(pcap) if Path(pcap).is_absolute() else Path.cwd() / pcap
    assert pcap_path == tmp_path / "captures" / document["run_id"] / f"{no_leftovers}veth0.pcap"
    analysis = analyze_file(pcap_path)
    answered = [echo for echo in analysis.icmp_echo if echo.frame_rep is not None]
    assert len(answered) == 6  # 3 each way, requests and replies all captured
    assert {(echo.src, echo.dst) for echo in answered} == {
        ("10.0.2.0", "10.0.1.0"),
        ("10.0.1.0", "10.0.2.0"),
    }
    (stream,) = [s for s in analysis.tcp if s.server == "10.0.1.0:7096"]
    assert stream.client.startswith("10.0.2.0:")
    assert stream.syn_frame and stream.synack_frame and stream.ack_frame
    assert stream.bytes_c2s == len("this is a test message")
    assert stream.fin_seen and not stream.rst_seen
    reports = [Path(path).name for path in document["artifacts"]["report"]]
    assert {"report.md", "report.html", "report.json"} <= set(reports)


def test_transcript_shows_steps_and_ip_commands(
    tmp_path: Path, no_leftovers: str, isolated_registry: Path
) -> None:
    result = netdiag("run", "--prefix", no_leftovers, "--out", str(tmp_path), "--count", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    for step in CONTRACT_STEPS:
        assert step in result.stdout
    assert f"ip -n {no_leftovers}ns1 addr add 10.0.1.0/24 dev {no_leftovers}veth0" in result.stdout
    assert f"ip -n {no_leftovers}ns1 route add 10.0.2.0/24 dev {no_leftovers}veth0" in result.stdout
    assert "every expected outcome held" in result.stdout
    ns1, veth0 = f"{no_leftovers}ns1", f"{no_leftovers}veth0"
    rtt_lines = [line for line in result.stdout.splitlines() if "rtt min/avg/max/mdev" in line]
    assert len(rtt_lines) == 2
    # Which end the times were taken at, and that the far side's are a turnaround.
    assert rtt_lines[0].startswith(f"ICMP {no_leftovers}ns2 ")
    assert rtt_lines[0].endswith(f"(capture timestamps on {veth0} in {ns1}: {ns1}'s turnaround)")
    assert rtt_lines[1].endswith(f"(capture timestamps on {veth0} in {ns1})")


def test_interval_spaces_the_echo_requests_like_ping_i(
    tmp_path: Path, no_leftovers: str, isolated_registry: Path
) -> None:
    from netdiag.analysis.analyze import analyze_file

    code, document = run_json(no_leftovers, tmp_path, "--count", "3", "--interval", "0.2")
    assert code == 0, document
    commands = {step["id"]: step["commands"] for step in document["steps"]}
    ping = f"ip netns exec {no_leftovers}ns2 ping -c 3 -i 0.2 10.0.1.0"
    assert commands["ping-ns2-ns1"] == [ping]
    (pcap,) = document["artifacts"]["pcap"]
    analysis = analyze_file(Path(pcap) if Path(pcap).is_absolute() else Path.cwd() / pcap)
    for source in ("10.0.2.0", "10.0.1.0"):
        sent_at = sorted(echo.t_req_ms for echo in analysis.icmp_echo if echo.src == source)
        assert len(sent_at) == 3
        # scapy sleeps the interval between sends: never less (kernel timestamps, ms).
        assert all(later - earlier >= 190.0 for earlier, later in pairwise(sent_at))


def test_missing_routes_fail_the_routes_step(
    tmp_path: Path, no_leftovers: str, isolated_registry: Path
) -> None:
    text = builtin_text("seed")
    without_routes = text[: text.index("routes:")] + text[text.index("probe:") :]
    topology = tmp_path / "no-routes.yaml"
    topology.write_text(without_routes)
    result = netdiag(
        "run", "--topology", str(topology), "--prefix", no_leftovers, "--out", str(tmp_path)
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED: routes" in result.stdout
    code, document = run_json(no_leftovers, tmp_path / "j", "--topology", str(topology))
    assert code == 1
    status = {step["id"]: step["ok"] for step in document["steps"]}
    assert status["routes"] is False
    assert status["ping-ns2-ns1"] is False and status["tcp-7096"] is False
    assert status["unreachable-before-routes"] is True
    assert status["teardown"] is True


def test_foreign_namespace_clash_is_refused(
    tmp_path: Path, no_leftovers: str, isolated_registry: Path
) -> None:
    from pyroute2 import netns

    foreign = f"{no_leftovers}ns1"
    netns.create(foreign)
    try:
        result = netdiag("run", "--prefix", no_leftovers, "--out", str(tmp_path))
        assert result.returncode == 2
        assert "not created by netdiag" in result.stderr
        assert "--prefix" in result.stderr
        assert "Traceback" not in result.stderr
        assert namespaces_with_prefix(no_leftovers) == [foreign]  # survived; nothing else was made
    finally:
        netns.remove(foreign)


def test_two_runs_with_different_prefixes_at_once(tmp_path: Path, isolated_registry: Path) -> None:
    import uuid

    prefixes = [f"t{uuid.uuid4().hex[:4]}-" for _ in range(2)]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "netdiag",
                "run",
                "--prefix",
                prefix,
                "--out",
                str(tmp_path / prefix),
                "--json",
                "--bulk",
                "2000000",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for prefix in prefixes
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (stdout, stderr), prefix in zip(processes, outputs, prefixes, strict=True):
        failed = [step for step in json.loads(stdout)["steps"] if not step["ok"]] if stdout else []
        assert process.returncode == 0, (stderr, failed)
        document = json.loads(stdout)
        assert not failed
        assert document["tcp"][0]["bulk"]["verified"] is True
        assert namespaces_with_prefix(prefix) == []


@pytest.mark.parametrize(
    ("after_step", "which"),
    [
        ("veth-pair", signal.SIGINT),
        ("routes", signal.SIGINT),
        ("ping-ns2-ns1", signal.SIGINT),
        ("isolation", signal.SIGTERM),
        ("tcp-7096", signal.SIGTERM),
    ],
)
def test_interrupted_run_leaves_nothing(
    tmp_path: Path,
    no_leftovers: str,
    isolated_registry: Path,
    after_step: str,
    which: signal.Signals,
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "netdiag", "run", "--prefix", no_leftovers, "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith(("✔", "✘")) and line.split()[1] == after_step:
            process.send_signal(which)
            break
    _rest, stderr = process.communicate(timeout=60)
    assert process.returncode == (130 if which == signal.SIGINT else 143), stderr
    assert "Traceback" not in stderr
    assert "everything the run created was removed" in stderr
    assert list(isolated_registry.glob("*.json")) == []
    if after_step in ("ping-ns2-ns1", "tcp-7096"):
        # The capture written so far is kept, complete up to the interruption.
        import dpkt

        (pcap,) = tmp_path.glob("captures/*/*.pcap")
        with open(pcap, "rb") as handle:
            frames = list(dpkt.pcap.Reader(handle))
        assert len(frames) >= 10  # at least the first direction's echoes


def test_keep_then_down(tmp_path: Path, no_leftovers: str, isolated_registry: Path) -> None:
    result = netdiag("run", "--prefix", no_leftovers, "--out", str(tmp_path), "--keep")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ip netns exec {no_leftovers}ns1" in result.stdout
    assert f"netdiag down --prefix {no_leftovers}" in result.stdout
    assert namespaces_with_prefix(no_leftovers) == [f"{no_leftovers}ns1", f"{no_leftovers}ns2"]
    status = netdiag("status", "--json")
    document = json.loads(status.stdout)
    (kept,) = [t for t in document["topologies"] if t["prefix"] == no_leftovers]
    assert kept["kept"] is True
    assert all(pair["routed"] for pair in kept["reachability"])
    again = netdiag("run", "--prefix", no_leftovers, "--out", str(tmp_path))
    assert again.returncode == 2 and "netdiag down" in again.stderr
    down = netdiag("down", "--prefix", no_leftovers)
    assert down.returncode == 0, down.stderr
    assert namespaces_with_prefix(no_leftovers) == []


def test_unwritable_output_is_refused_before_building(
    tmp_path: Path, no_leftovers: str, isolated_registry: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = netdiag("run", "--prefix", no_leftovers, "--out", str(blocker))
    assert result.returncode == 2
    assert result.stderr.startswith("netdiag: error:")
