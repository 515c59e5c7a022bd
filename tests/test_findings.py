"""Findings from small synthetic packet sequences: codes, frames, messages, hints, order."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

import netdiag.analysis.findings as findings_module
from netdiag.analysis.analyze import analyze_file
from netdiag.analysis.findings import _ScanGroup, build_findings
from netdiag.analysis.icmp import ArpTracker, IcmpTracker, summarize
from netdiag.analysis.model import FileInfo, Finding
from netdiag.analysis.packet import ACK, FIN, PSH, RST, SYN
from netdiag.analysis.store import SPILL_AFTER_VARIABLE
from netdiag.analysis.tcp import MAX_SYN_FRAMES, TcpTracker
from netdiag.errors import NetdiagError
from tests.conftest import corpus_files
from tests.test_icmp import A, B, arp, echo, icmp_error
from tests.test_tcp import (
    C_ISN,
    CLIENT,
    HANDSHAKE,
    S_ISN,
    SERVER,
    T0_NS,
    TSHARK,
    ipv4_tcp,
    tcp_packet,
    track,
    write_pcap,
)

FILE = FileInfo(
    path="x.pcap",
    format="pcap",
    link_types=(1,),
    packets=10,
    first_ts=0.0,
    last_ts=1.0,
    complete=True,
)


def findings_for_tcp(rows: list[tuple[Any, ...]], info: FileInfo = FILE) -> tuple[Finding, ...]:
    return build_findings(info, track(rows), (), (), ())


def only(findings: tuple[Finding, ...], code: str) -> Finding:
    matching = [finding for finding in findings if finding.code == code]
    assert len(matching) == 1, [finding.code for finding in findings]
    return matching[0]


def test_unanswered_syn_reports_tries_backoff_and_where_to_look() -> None:
    rows = [
        (0.0, "c>s", SYN, C_ISN, 0),
        (1000.0, "c>s", SYN, C_ISN, 0),
        (3000.0, "c>s", SYN, C_ISN, 0),
    ]
    finding = only(findings_for_tcp(rows), "tcp.syn-unanswered")
    assert (finding.severity, finding.stream, finding.frames) == ("error", 0, (1, 2, 3))
    assert "3 SYNs" in finding.message
    assert "1.00 s, 2.00 s" in finding.message  # the backoff between tries
    assert "no SYN-ACK came back" in finding.hint
    assert "ss -ltn 'sport = :7096'" in finding.hint
    assert "ip route get 10.0.2.1" in finding.hint  # the route back to the client


@pytest.mark.parametrize("spill_after", ["0", "1000000"])
def test_more_syns_than_syn_frames_lists_are_still_an_unanswered_syn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spill_after: str
) -> None:
    """A client retrying its SYN (same ISN) more times than ``syn_frames`` lists
    (MAX_SYN_FRAMES) sent only SYNs: ``tcp.syn-unanswered`` with every try counted,
    not ``tcp.one-sided``. With spill_after 0 the count also survives the
    conversation being retired and revived before every packet."""
    tries = MAX_SYN_FRAMES + 10
    path = tmp_path / "syn-retries.pcap"
    syn = ipv4_tcp((CLIENT, 40000), (SERVER, 7096), SYN, C_ISN, 0, 64240, b"")
    write_pcap(path, [(T0_NS + index * 10**9, syn) for index in range(tries)])
    if TSHARK is not None:  # one conversation of SYNs only, as tshark sees it
        command = [TSHARK, "-n", "-r", str(path), "-T", "fields", "-e", "tcp.stream"]
        command += ["-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 0"]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        assert output.split() == ["0"] * tries
    monkeypatch.setenv(SPILL_AFTER_VARIABLE, spill_after)
    analysis = analyze_file(path)
    (stream,) = analysis.tcp
    assert (stream.packets_c2s, stream.syn_count, len(stream.syn_frames)) == (
        tries,
        tries,
        MAX_SYN_FRAMES,
    )
    finding = only(tuple(analysis.findings), "tcp.syn-unanswered")
    assert finding.severity == "error"
    assert f"sent {tries} SYNs" in finding.message
    # The backoff list comes from the timeline, which keeps the first entries:
    # cut, it says so.
    assert finding.message.endswith("1.00 s, …, and no SYN-ACK came back.")
    assert not [f for f in analysis.findings if f.code == "tcp.one-sided"]


def test_refused_port_names_port_and_address() -> None:
    rows = [(0.0, "c>s", SYN, C_ISN, 0), (0.2, "s>c", RST | ACK, 0, C_ISN + 1)]
    findings = findings_for_tcp(rows)
    finding = only(findings, "tcp.rejected")
    assert finding.message.startswith(
        "connection refused: nothing listens on port 7096 at 10.0.1.1"
    )
    assert finding.frames == (1, 2)
    assert "ss -ltn 'sport = :7096'" in finding.hint
    assert not [f for f in findings if f.code in ("tcp.syn-unanswered", "tcp.reset")]


def test_reset_of_an_established_connection_names_who_reset() -> None:
    rows = [*HANDSHAKE, (5.0, "s>c", RST | ACK, S_ISN + 1, C_ISN + 1)]
    finding = only(findings_for_tcp(rows), "tcp.reset")
    assert finding.severity == "warn"
    assert "reset by the server (10.0.1.1:7096)" in finding.message
    assert finding.frames == (4,)


def test_retransmissions_and_handshake_halves() -> None:
    rows = [
        (0.0, "c>s", SYN, C_ISN, 0),
        (3.0, "s>c", SYN | ACK, S_ISN, C_ISN + 1),  # 3 ms towards the server and back
        (4.0, "c>s", ACK, C_ISN + 1, S_ISN + 1),  # 1 ms towards the client and back
        (5.0, "c>s", PSH | ACK, C_ISN + 1, S_ISN + 1, 10),
        (300.0, "c>s", PSH | ACK, C_ISN + 1, S_ISN + 1, 10),
        (303.0, "s>c", ACK, S_ISN + 1, C_ISN + 11),
    ]
    finding = only(findings_for_tcp(rows), "tcp.retransmission")
    assert finding.frames == (5,)
    assert "1 segment of 10.0.2.1:40000 -> 10.0.1.1:7096 had to be sent again" in finding.message
    assert "3.000 ms capture point to server and back" in finding.message
    assert "1.000 ms capture point to client and back" in finding.message


def test_one_sided_capture_is_not_called_an_unanswered_syn() -> None:
    rows = [
        (0.0, "c>s", SYN, C_ISN, 0),
        (1.0, "c>s", ACK, C_ISN + 1, S_ISN + 1),
        (2.0, "c>s", PSH | ACK, C_ISN + 1, S_ISN + 1, 100),
    ]
    findings = findings_for_tcp(rows)
    assert only(findings, "tcp.one-sided").severity == "warn"
    assert not [f for f in findings if f.code == "tcp.syn-unanswered"]


def test_zero_window_and_duplicate_acks() -> None:
    rows = [
        *HANDSHAKE,
        (3.0, "s>c", ACK, S_ISN + 1, C_ISN + 1, 0, 0),  # zero window
        (4.0, "c>s", PSH | ACK, C_ISN + 1, S_ISN + 1, 10),
        (5.0, "s>c", ACK, S_ISN + 1, C_ISN + 11, 0, 100),
        (6.0, "s>c", ACK, S_ISN + 1, C_ISN + 11, 0, 100),  # duplicate ACK
    ]
    findings = findings_for_tcp(rows)
    assert only(findings, "tcp.zero-window").frames == (4,)
    assert only(findings, "tcp.dup-ack").frames == (7,)


def test_icmp_findings_loss_unreachable_frag_needed() -> None:
    tcp = TcpTracker()
    tcp.process(tcp_packet(1, 0.0, "c>s", SYN, 1000, client=(A, 40000), server=(B, 7096)))
    icmp = IcmpTracker()
    for packet in [
        echo(2, 0.0, A, B, 8, seq=1),
        echo(3, 1.0, B, A, 0, seq=1),
        echo(4, 1000.0, A, B, 8, seq=2),
    ]:
        icmp.process(packet)
    icmp.process(icmp_error(5, 3, 3, (A, B, 17, 5000, 53)), tcp.stream_of)
    icmp.process(icmp_error(6, 3, 4, (A, B, 6, 40000, 7096), mtu=1400), tcp.stream_of)
    echoes = icmp.echoes(T0_NS)
    findings = build_findings(FILE, tcp.finish(), echoes, summarize(echoes), icmp.errors())
    lost = only(findings, "icmp.echo-unanswered")
    assert (lost.severity, lost.frames) == ("warn", (4,))
    assert "1 of 2 echo requests from 10.0.1.1 to 10.0.2.1" in lost.message
    unreachable = only(findings, "icmp.unreachable")
    assert "port unreachable" in unreachable.message
    assert "ss -lun 'sport = :53'" in unreachable.hint
    frag = only(findings, "icmp.frag-needed")
    assert (frag.stream, frag.frames) == (0, (6,))
    assert "next-hop MTU 1400" in frag.message
    assert "mtu 1400" in frag.hint


def test_arp_unanswered() -> None:
    tracker = ArpTracker()
    tracker.process(arp(1, 1, A, B))
    tracker.process(arp(2, 1, A, B))
    findings = build_findings(FILE, (), (), (), (), tracker.questions())
    finding = only(findings, "arp.unanswered")
    assert (finding.frames, finding.severity) == ((1, 2), "warn")
    assert "10.0.1.1 asked 2 times who has 10.0.2.1" in finding.message
    assert "ip neigh show 10.0.2.1" in finding.hint


def test_truncated_capture() -> None:
    info = FileInfo(
        path="cut.pcap",
        format="pcap",
        link_types=(1,),
        packets=3,
        first_ts=0.0,
        last_ts=1.0,
        complete=False,
        warnings=("cut short inside frame 4",),
        truncated_frames=2,
    )
    findings = build_findings(info, (), (), (), ())
    assert [f.code for f in findings] == ["capture.truncated", "capture.truncated"]
    assert [f.severity for f in findings] == ["warn", "note"]  # worst first
    assert "cut short inside frame 4" in findings[0].message


def test_findings_are_sorted_worst_first() -> None:
    rows = [
        *HANDSHAKE,
        (3.0, "c>s", PSH | ACK, C_ISN + 1, S_ISN + 1, 10),
        (300.0, "c>s", PSH | ACK, C_ISN + 1, S_ISN + 1, 10),
        (301.0, "c>s", FIN | ACK, C_ISN + 11, S_ISN + 1),
    ]
    syn_rows = [(400.0, "c>s", SYN, 9, 0)]
    streams = track(rows) + track(syn_rows, client=(A, 40001))
    findings = build_findings(FILE, streams, (), (), ())
    severities = [finding.severity for finding in findings]
    assert severities == sorted(severities, key=["error", "warn", "note"].index)
    assert findings[0].code == "tcp.syn-unanswered"


def scan_streams(
    ports: list[int], refused: bool, retries: int = 1, hosts: list[bytes] | None = None
) -> list[Any]:
    """One TCP tracker fed a connect scan from CLIENT over ``ports`` of SERVER (or of
    ``hosts``, one per attempt: a sweep)."""
    tracker = TcpTracker()
    frame = 0
    for index, port in enumerate(ports):
        host = hosts[index] if hosts else SERVER
        endpoints = {"client": (CLIENT, 40000 + index), "server": (host, port)}
        for attempt in range(retries):
            frame += 1
            t_ms = index * 10.0 + attempt * 1000.0
            tracker.process(tcp_packet(frame, t_ms, "c>s", SYN, C_ISN, **endpoints))
        if refused:
            frame += 1
            tracker.process(
                tcp_packet(frame, index * 10.0 + 1, "s>c", RST | ACK, 0, C_ISN + 1, **endpoints)
            )
    return tracker.finish()


def test_a_refused_port_scan_is_one_finding_with_ports_and_streams() -> None:
    ports = [*range(20, 26), 80, 443, 8080]
    findings = build_findings(FILE, scan_streams(ports, refused=True), (), (), ())
    finding = only(findings, "tcp.rejected")
    assert len(findings) == 1
    assert finding.severity == "error"
    assert finding.stream == 0
    assert finding.frames == tuple(range(1, 19))
    assert "9 connection attempts to 10.0.1.1 on 9 ports (20-25, 80, 443, 8080)" in (
        finding.message
    )
    assert "streams 0, 1, 2, 3, 4, 5, 6, 7, 8)" in finding.message
    assert "port scan" in finding.message
    assert "tshark -r x.pcap -Y 'ip.src == 10.0.2.1 && ip.dst == 10.0.1.1" in finding.hint


def test_an_unanswered_scan_names_a_firewall_and_bounds_its_lists() -> None:
    ports = list(range(1000, 1100))
    findings = build_findings(FILE, scan_streams(ports, refused=False, retries=2), (), (), ())
    finding = only(findings, "tcp.syn-unanswered")
    assert len(findings) == 1
    assert finding.severity == "error"  # retried SYNs
    assert "200" not in finding.message
    assert "100 connection attempts to 10.0.1.1 on 100 ports (1000-1099)" in finding.message
    assert "streams 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...)" in finding.message
    assert "firewall" in finding.message
    assert "nft list ruleset" in finding.hint
    assert len(finding.frames) == 20 and finding.frames[0] == 1


def test_a_few_refused_ports_stay_one_finding_per_stream() -> None:
    findings = build_findings(FILE, scan_streams([80, 443, 8080, 8443, 22], True), (), (), ())
    assert [finding.code for finding in findings] == ["tcp.rejected"] * 5
    assert [finding.stream for finding in findings] == [0, 1, 2, 3, 4]


def test_the_corpus_port_scan_is_one_finding(corpus_dir: Path) -> None:
    analysis = analyze_file(corpus_dir / "markofu__portscan.pcap")
    assert len(analysis.tcp) == 29
    (finding,) = analysis.findings
    assert finding.code == "tcp.syn-unanswered"
    assert finding.message.startswith(
        "10.100.25.14 made 29 connection attempts to 10.100.18.12 on 29 ports (21-23, 25, 53,"
    )
    assert finding.frames == tuple(range(1, 21))


def test_a_sweep_of_one_port_over_many_hosts_is_one_finding() -> None:
    hosts = [bytes([10, 0, 1, last]) for last in range(1, 8)]
    streams = scan_streams([6346] * 7, refused=False, hosts=hosts)
    findings = build_findings(FILE, streams, (), (), ())
    finding = only(findings, "tcp.syn-unanswered")
    assert len(findings) == 1
    assert finding.severity == "warn"  # one SYN each
    assert finding.message.startswith(
        "10.0.2.1 made 7 connection attempts to port 6346 on 7 hosts (10.0.1.1, 10.0.1.2, "
        "10.0.1.3, 10.0.1.4, 10.0.1.5, ...), and none got a SYN-ACK (streams 0, 1, 2, 3, 4, "
        "5, 6): a sweep"
    )
    assert "tcp.dstport == 6346" in finding.hint and "-e ip.dst" in finding.hint
    assert finding.frames == tuple(range(1, 8))
    few = build_findings(FILE, scan_streams([6346] * 5, False, hosts=hosts[:5]), (), (), ())
    assert [finding.stream for finding in few] == [0, 1, 2, 3, 4]


def test_attempts_in_a_port_scan_are_not_told_again_as_a_sweep() -> None:
    # 10.0.1.1 is scanned on 6 ports; port 80 is also tried on 5 more hosts,
    # which with 10.0.1.1 makes 6 hosts: the sweep would count port 80 of
    # 10.0.1.1 twice, so those five stay per stream.
    hosts = [SERVER] * 6 + [bytes([10, 0, 1, last]) for last in range(2, 7)]
    ports = [80, 81, 82, 83, 84, 85] + [80] * 5
    findings = build_findings(FILE, scan_streams(ports, True, hosts=hosts), (), (), ())
    assert len(findings) == 6
    assert "on 6 ports (80-85)" in findings[0].message
    assert [finding.stream for finding in findings[1:]] == [6, 7, 8, 9, 10]


def test_the_corpus_gnutella_sweep_is_two_findings(corpus_dir: Path) -> None:
    findings = analyze_file(corpus_dir / "markofu__gnutella.pcap").findings
    scan_codes = [f for f in findings if f.code in ("tcp.rejected", "tcp.syn-unanswered")]
    assert [(f.code, f.stream) for f in scan_codes] == [
        ("tcp.syn-unanswered", 0),
        ("tcp.rejected", 1),
    ]
    assert "140 connection attempts to port 6346 on 46 hosts" in scan_codes[0].message
    assert "98 connection attempts to port 6346 on 36 hosts" in scan_codes[1].message
    assert [f.code for f in findings[2:]] == ["tcp.retransmission"] * 3


def test_scan_group_ports_read_the_same_from_its_set_and_its_bitmap() -> None:
    """A group keeps few ports in a set (small per pair), many in a bitmap (bounded)."""
    finding = Finding("warn", "tcp.rejected", "", "", stream=0, frames=(1,))
    small, large = _ScanGroup(), _ScanGroup()
    ports = [0, 1, 2, 3, 7, 9, 10, 11, 65535, 3]
    for index, port in enumerate(ports):
        small.add(finding, "h", port, index)
    for index, port in enumerate(ports + list(range(100, 200))):
        large.add(finding, "h", port, index)
    assert small.port_bits is None and large.port_bits is not None
    assert (small.port_count, small.port_text()) == (9, "0-3, 7, 9-11, 65535")
    assert (large.port_count, large.port_text()) == (109, "0-3, 7, 9-11, 100-199, 65535")


def test_past_the_group_limit_new_pairs_stay_per_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    # With room for one group per kind, the second client's scan is not grouped.
    monkeypatch.setattr(findings_module, "MAX_SCAN_GROUPS", 1)
    ports = list(range(20, 27))
    first = scan_streams(ports, refused=True)
    tracker = TcpTracker()
    for frame, port in enumerate(ports, start=1):
        endpoints = {"client": (bytes([10, 0, 9, 9]), 40000 + frame), "server": (SERVER, port)}
        tracker.process(tcp_packet(100 + frame, 500.0 + frame, "c>s", SYN, C_ISN, **endpoints))
        tracker.process(
            tcp_packet(200 + frame, 600.0 + frame, "s>c", RST | ACK, 0, C_ISN + 1, **endpoints)
        )
    findings = build_findings(FILE, [*first, *tracker.finish()], (), (), ())
    assert len(findings) == 1 + len(ports)
    assert "7 connection attempts to 10.0.1.1 on 7 ports (20-26)" in findings[0].message


TRACKER_ONLY = {"arp.unanswered", "icmp.reply-unmatched"}


@pytest.mark.parametrize("spill_after", [None, "0"], ids=["in-memory", "spilled"])
def test_findings_made_as_streams_finish_equal_those_from_the_records(
    corpus_dir: Path, spill_after: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass judges each stream as its record is finished (retired ones too, whose
    judgement is dropped with the record when they come back); building the findings
    from the finished records themselves gives the same list, on every corpus file."""
    if spill_after is not None:
        monkeypatch.setenv(SPILL_AFTER_VARIABLE, spill_after)
    with_stream_findings = 0
    for capture in corpus_files():
        try:
            analysis = analyze_file(capture, plot_data=False)
        except NetdiagError:
            continue
        from_records = build_findings(
            analysis.file,
            analysis.tcp,
            analysis.icmp_echo,
            analysis.icmp_echo_summary,
            analysis.icmp_errors,
            (),
        )
        # ARP questions and unmatched replies come from the trackers, not the
        # records: compare the rest.
        expected = [finding for finding in from_records if finding.code not in TRACKER_ONLY]
        actual = [finding for finding in analysis.findings if finding.code not in TRACKER_ONLY]
        assert actual == expected, capture.name
        with_stream_findings += any(finding.stream is not None for finding in actual)
    assert with_stream_findings >= 5
