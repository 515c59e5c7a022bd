"""`netdiag run --scenario NAME`: each fault injected for real, diagnosed live and from the pcap.

The netns tests run the CLI as a user would (a subprocess, real namespaces under
a unique prefix, an isolated run registry) and read its JSON: the live
``diagnosis`` must name the scenario's live code, the capture's findings (in the
run JSON and in report.json, computed from the pcap alone) its capture code.
The spec tests check, without root, that each fault is written into the
topology as documented.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from netdiag.errors import UsageError
from netdiag.experiment.scenarios import SCENARIOS, apply_scenario, get_scenario
from netdiag.topology.loader import load_topology
from tests.helpers import netdiag

# ---- each fault, for real ----------------------------------------------------------------


@pytest.mark.netns
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_is_diagnosed_live_and_from_the_capture(
    name: str, tmp_path: Path, no_leftovers: str, isolated_registry: Path
) -> None:
    scenario = SCENARIOS[name]
    result = netdiag(
        "run", "--scenario", name, "--prefix", no_leftovers, "--out", str(tmp_path), "--json"
    )
    assert "Traceback" not in result.stderr, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    steps = {step["id"]: step for step in document["steps"]}
    assert result.returncode == 0, [step for step in document["steps"] if not step["ok"]]
    assert document["ok"] is True
    assert document["scenario"] == name
    assert document["topology"] == scenario.topology

    # The fault had its effect: each step it breaks ran and failed (ok = "failed as expected").
    broken = scenario.broken_step_ids(7096)
    for step_id in broken:
        assert steps[step_id]["fault_expected"] is True
        assert steps[step_id]["ok"] is True
        assert "failed as the fault makes it" in steps[step_id]["detail"]
    untouched = [s for s in document["steps"] if s["id"] not in broken]
    assert all("fault_expected" not in step for step in untouched)

    # Live: diagnose named the injected cause with the contract's code.
    live_codes = {finding["code"] for finding in document["diagnosis"]}
    assert scenario.live_code in live_codes, document["diagnosis"]
    assert steps["diagnosis"]["ok"] is True

    # From the capture alone: the analyzer's findings, in the run JSON and in report.json.
    capture_codes = {finding["code"] for finding in document["capture_findings"]}
    report_path = tmp_path / "reports" / document["run_id"] / "report.json"
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert {finding["code"] for finding in report["findings"]} == capture_codes
    detail = steps["capture-diagnosis"]["detail"]
    if scenario.capture_codes and not (capture_codes & set(scenario.capture_codes)):
        # link-down only: the kernel may stop the link before its first ARP leaves.
        assert scenario.silent_capture_reason, (capture_codes, detail)
        assert detail.startswith("no IPv4 or ARP frame in the capture"), detail
        assert report["decode"]["ipv4"] == report["decode"]["arp"] == 0
    elif not scenario.capture_codes:
        # Nothing reached the wire: the capture holds no evidence, and says nothing false.
        assert capture_codes == set()
        assert "cannot show this fault" in steps["capture-diagnosis"]["detail"]
    assert steps["teardown"]["ok"] is True


@pytest.mark.netns
def test_large_pings_only_with_mtu_mismatch(
    tmp_path: Path, no_leftovers: str, isolated_registry: Path
) -> None:
    """closed-port sends no full-size pings; its TCP step is refused by the server's RST."""
    result = netdiag(
        "run", "--scenario", "closed-port", "--prefix", no_leftovers, "--out", str(tmp_path),
        "--json",
    )  # fmt: skip
    document = json.loads(result.stdout)
    ids = [step["id"] for step in document["steps"]]
    assert "ping-large-ns1-ns2" not in ids
    (tcp,) = document["tcp"]
    assert tcp["connected"] is False and "refused" in tcp["error"]


@pytest.mark.netns
def test_scenario_on_another_port_marks_that_ports_step(
    tmp_path: Path, no_leftovers: str, isolated_registry: Path
) -> None:
    """The TCP step is named after --port: the fault is expected on tcp-8080, not tcp-7096."""
    result = netdiag(
        "run", "--scenario", "closed-port", "--port", "8080", "--prefix", no_leftovers,
        "--out", str(tmp_path), "--json",
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    document = json.loads(result.stdout)
    assert result.returncode == 0, [step for step in document["steps"] if not step["ok"]]
    steps = {step["id"]: step for step in document["steps"]}
    assert "tcp-7096" not in steps
    assert steps["tcp-8080"]["fault_expected"] is True and steps["tcp-8080"]["ok"] is True
    assert "failed as the fault makes it" in steps["tcp-8080"]["detail"]


# ---- how each fault is written into the topology (no root needed) --------------------------


def test_unknown_scenario_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        get_scenario("no-such-fault")
    assert caught.value.advice is not None and "no-route" in caught.value.advice


def test_no_route_and_no_return_route() -> None:
    seed = load_topology("seed")
    assert apply_scenario(SCENARIOS["no-route"], seed).routes == ()
    only_server = apply_scenario(SCENARIOS["no-return-route"], seed)
    assert [route.namespace for route in only_server.routes] == ["ns1"]


def test_mtu_mismatch_lowers_only_the_clients_end() -> None:
    spec = apply_scenario(SCENARIOS["mtu-mismatch"], load_topology("seed"))
    ends = {end.interface: end for link in spec.links for end in link.ends}
    assert ends["veth1"].mtu is not None and ends["veth1"].mtu < 1500
    assert ends["veth0"].mtu is None


def test_wrong_address_is_outside_the_servers_route() -> None:
    seed = load_topology("seed")
    spec = apply_scenario(SCENARIOS["wrong-address"], seed)
    (address,) = spec.addresses_of("ns2")
    (server_route,) = spec.routes_of("ns1")
    assert address.address not in server_route.destination
    assert spec.experiment_probe().client_address == address.address
    # Not on any other subnet either: the fault is the address, not an overlap.
    assert address.network != ipaddress.IPv4Network("10.0.1.0/24")


def test_no_forwarding_needs_a_router() -> None:
    routed = apply_scenario(SCENARIOS["no-forwarding"], load_topology("routed"))
    assert not any(namespace.forwarding for namespace in routed.namespaces)
    with pytest.raises(UsageError, match="needs a router"):
        apply_scenario(SCENARIOS["no-forwarding"], load_topology("seed"))


@pytest.mark.parametrize("frames", ["none", "ipv4"])
def test_link_down_accepts_a_silent_capture_only_when_it_is_silent(
    tmp_path: Path, frames: str
) -> None:
    """linkwatch may take the link down before the server's first ARP: an empty capture
    is evidence then, but a capture that holds traffic must show the ARP failing."""
    from netdiag.analysis.analyze import analyze_file
    from netdiag.experiment.runner import RunOptions
    from netdiag.experiment.scenarios import ScenarioRunner, apply_scenario
    from netdiag.topology.loader import load_topology
    from tests.test_icmp import echo_bytes
    from tests.test_tcp import T0_NS, write_pcap

    scenario = SCENARIOS["link-down"]
    spec = apply_scenario(scenario, load_topology(None))
    runner = ScenarioRunner(spec, RunOptions(out=tmp_path), scenario)
    packets = []
    if frames == "ipv4":
        packets.append(
            (T0_NS, echo_bytes(bytes([10, 0, 1, 0]), bytes([10, 0, 2, 0]), 8, 1, 1, b""))
        )
    path = tmp_path / "veth0.pcap"
    write_pcap(path, packets)
    runner.on_capture_analyzed(analyze_file(path))
    (step,) = runner.progress.steps
    assert step.id == "capture-diagnosis"
    if frames == "none":
        assert step.ok, step.detail
        assert "nothing left veth0" in step.detail
    else:
        assert not step.ok
        assert "lack arp.unanswered" in step.detail
