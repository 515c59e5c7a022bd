"""ICMP echo matching, ping summaries, ICMP errors and ARP questions.

Echo matching is checked against tshark 4.0 on seeded random sequences of
requests and replies (several hosts, both directions, repeated id/seq, a
payload that changes) when tshark is installed, and on small hand-made
sequences with known answers otherwise.
"""

from __future__ import annotations

import math
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from netdiag.analysis.analyze import analyze_file
from netdiag.analysis.findings import build_findings
from netdiag.analysis.icmp import (
    MAX_UNMATCHED_FRAMES,
    MAX_UNMATCHED_PAIRS,
    ArpTracker,
    IcmpTracker,
    ping_stats,
    summarize,
)
from netdiag.analysis.model import FileInfo
from netdiag.analysis.packet import SYN, DecodedPacket, FrameClass
from netdiag.analysis.tcp import TcpTracker
from tests.test_tcp import T0_NS, tcp_packet, write_pcap

A = bytes([10, 0, 1, 1])
B = bytes([10, 0, 2, 1])
C = bytes([10, 0, 3, 1])


def internet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_bytes(
    source: bytes, destination: bytes, icmp_type: int, ident: int, seq: int, payload: bytes
) -> bytes:
    message = struct.pack("!BBHHH", icmp_type, 0, 0, ident, seq) + payload
    message = message[:2] + struct.pack("!H", internet_checksum(message)) + message[4:]
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(message), 1, 0, 64, 1, 0, source, destination
    )
    return header + message


def echo(
    frame: int,
    t_ms: float,
    source: bytes,
    destination: bytes,
    icmp_type: int,
    ident: int = 7,
    seq: int = 1,
    payload: bytes = b"ping",
) -> DecodedPacket:
    """A decoded echo request (8) or reply (0) with a real checksum."""
    packet = DecodedPacket(frame, T0_NS + round(t_ms * 1e6), FrameClass.IPV4)
    packet.ip_version = 4
    packet.proto = 1
    packet.src = source
    packet.dst = destination
    packet.icmp_type = icmp_type
    packet.icmp_code = 0
    packet.icmp_id = ident
    packet.icmp_seq = seq
    raw = echo_bytes(source, destination, icmp_type, ident, seq, payload)
    packet.icmp_checksum = struct.unpack_from("!H", raw, 22)[0]
    return packet


def pairs(packets: list[DecodedPacket]) -> list[tuple[int, int | None]]:
    tracker = IcmpTracker()
    for packet in packets:
        tracker.process(packet)
    return [(e.frame_req, e.frame_rep) for e in tracker.echoes(T0_NS)]


def test_request_and_reply_pair_with_rtt_in_ms() -> None:
    tracker = IcmpTracker()
    tracker.process(echo(1, 0.0, A, B, 8))
    tracker.process(echo(2, 0.412, B, A, 0))
    (pair,) = tracker.echoes(T0_NS - 1_000_000)
    assert (pair.frame_req, pair.frame_rep, pair.src, pair.dst) == (1, 2, "10.0.1.1", "10.0.2.1")
    assert pair.rtt_ms == pytest.approx(0.412)
    assert pair.t_req_ms == pytest.approx(1.0)


def test_unanswered_and_repeated_requests() -> None:
    packets = [
        echo(1, 0.0, A, B, 8, seq=1),
        echo(2, 1000.0, A, B, 8, seq=2),  # never answered
        echo(3, 2000.0, A, B, 8, seq=3),
        echo(4, 2500.0, A, B, 8, seq=3),  # same key again: the reply answers this one
        echo(5, 2501.0, B, A, 0, seq=3),
        echo(6, 2502.0, B, A, 0, seq=3),  # a duplicate reply answers nothing
        echo(7, 2503.0, B, A, 0, seq=1, payload=b"pong"),  # another payload: not an answer
    ]
    assert pairs(packets) == [(1, None), (2, None), (3, None), (4, 5)]


def payload_with_checksum(target: int, icmp_type: int = 8, ident: int = 7, seq: int = 1) -> bytes:
    """Two payload bytes that give the echo message the checksum ``target``."""
    for word in range(0x10000):
        payload = struct.pack("!H", word)
        if (
            internet_checksum(struct.pack("!BBHHH", icmp_type, 0, 0, ident, seq) + payload)
            == target
        ):
            return payload
    raise AssertionError(f"no payload gives checksum {target:#06x}")


def test_reply_whose_checksum_is_zero_answers_its_request() -> None:
    # A request of checksum 0xf7ff: one's-complement arithmetic predicts 0xffff for
    # the reply, the kernel (and this helper) writes 0x0000 -- the same value.
    payload = payload_with_checksum(0xF7FF)
    request = echo(1, 0.0, A, B, 8, payload=payload)
    reply = echo(2, 1.0, B, A, 0, payload=payload)
    assert (request.icmp_checksum, reply.icmp_checksum) == (0xF7FF, 0x0000)
    assert pairs([request, reply]) == [(1, 2)]


def test_reply_from_another_host_is_not_an_answer() -> None:
    assert pairs([echo(1, 0.0, A, B, 8), echo(2, 1.0, C, A, 0)]) == [(1, None)]


def test_ping_summary_uses_ping_mdev() -> None:
    packets = [echo(1, 0.0, A, B, 8, seq=1), echo(2, 1.0, B, A, 0, seq=1)]
    packets += [echo(3, 10.0, A, B, 8, seq=2), echo(4, 13.0, B, A, 0, seq=2)]
    packets += [echo(5, 20.0, A, B, 8, seq=3)]
    tracker = IcmpTracker()
    for packet in packets:
        tracker.process(packet)
    (summary,) = summarize(tracker.echoes(T0_NS))
    assert (summary.sent, summary.received) == (3, 2)
    assert summary.loss_pct == pytest.approx(100 / 3)
    assert summary.rtt_ms is not None
    assert (summary.rtt_ms.min, summary.rtt_ms.avg, summary.rtt_ms.max) == pytest.approx(
        (1.0, 2.0, 3.0)
    )
    assert summary.rtt_ms.mdev == pytest.approx(1.0)  # sqrt((1 + 9)/2 - 2**2)


def test_ping_stats_matches_iputils_formula() -> None:
    values = [0.05, 0.07, 0.09, 0.061]
    stats = ping_stats(values)
    assert stats is not None
    mean = sum(values) / 4
    assert stats.mdev == pytest.approx(math.sqrt(sum(v * v for v in values) / 4 - mean * mean))
    assert ping_stats([]) is None


def icmp_error(
    frame: int, icmp_type: int, code: int, quoted: tuple[bytes, bytes, int, int, int], mtu: int = 0
) -> DecodedPacket:
    packet = DecodedPacket(frame, T0_NS + frame * 1_000_000, FrameClass.IPV4)
    packet.ip_version = 4
    packet.proto = 1
    packet.src = C
    packet.dst = quoted[0]
    packet.icmp_type = icmp_type
    packet.icmp_code = code
    packet.icmp_mtu = mtu
    packet.icmp_quoted = quoted
    return packet


def test_icmp_errors_are_matched_to_the_tcp_stream_they_quote() -> None:
    tcp = TcpTracker()
    tcp.process(tcp_packet(1, 0.0, "c>s", SYN, 1000, client=(A, 40000), server=(B, 7096)))
    tracker = IcmpTracker()
    tracker.process(icmp_error(2, 3, 1, (A, B, 6, 40000, 7096)), tcp.stream_of)
    tracker.process(icmp_error(3, 3, 4, (A, B, 6, 40000, 7096), mtu=1400), tcp.stream_of)
    tracker.process(icmp_error(4, 11, 0, (A, B, 17, 5000, 53)), tcp.stream_of)
    unreachable, frag_needed, time_exceeded = tracker.errors()
    assert (unreachable.kind, unreachable.stream, unreachable.reporter) == (
        "unreachable",
        0,
        "10.0.3.1",
    )
    assert (frag_needed.kind, frag_needed.next_hop_mtu, frag_needed.stream) == (
        "frag-needed",
        1400,
        0,
    )
    assert (time_exceeded.kind, time_exceeded.stream, time_exceeded.quoted_dport) == (
        "time-exceeded",
        None,
        53,
    )


def arp(frame: int, op: int, sender: bytes, target: bytes) -> DecodedPacket:
    packet = DecodedPacket(frame, T0_NS + frame, FrameClass.ARP)
    packet.arp_op = op
    packet.src = sender
    packet.dst = target
    return packet


def test_arp_questions_answered_or_not() -> None:
    tracker = ArpTracker()
    for packet in [
        arp(1, 1, A, B),
        arp(2, 1, A, B),
        arp(3, 1, A, C),
        arp(4, 2, C, A),  # C answers A
        arp(5, 1, B, B),  # gratuitous: no question
    ]:
        tracker.process(packet)
    questions = {(q.sender, q.target): q for q in tracker.questions()}
    assert set(questions) == {("10.0.1.1", "10.0.2.1"), ("10.0.1.1", "10.0.3.1")}
    unanswered = questions[("10.0.1.1", "10.0.2.1")]
    assert (unanswered.requests, unanswered.frames, unanswered.answered) == (2, (1, 2), False)
    assert questions[("10.0.1.1", "10.0.3.1")].answered


TSHARK = shutil.which("tshark")


def random_echo_capture(seed: int) -> list[tuple[int, bytes]]:
    pick = random.Random(seed)
    now = T0_NS
    frames = []
    for _ in range(pick.randrange(3, 25)):
        now += pick.choice([0, 1000, 1_000_000, 100_000_000])
        source, destination = pick.choice([(A, B), (B, A), (A, C), (C, A)])
        frames.append(
            (
                now,
                echo_bytes(
                    source,
                    destination,
                    pick.choice([8, 0]),
                    pick.choice([1, 2]),
                    pick.choice([1, 2, 3]),
                    pick.choice([b"abcd", b"abcd", b"xyz1"]),
                ),
            )
        )
    return frames


def zero_checksum_reply_capture(seed: int) -> list[tuple[int, bytes]]:
    """A request of checksum 0xf7ff and its reply (checksum 0x0000), then the other payload."""
    zero = payload_with_checksum(0xF7FF, ident=3, seq=seed)
    return [
        (T0_NS, echo_bytes(A, B, 8, 3, seed, zero)),
        (T0_NS + 50_000, echo_bytes(B, A, 0, 3, seed, zero)),
        (T0_NS + 90_000, echo_bytes(A, B, 8, 3, seed + 1, b"abcd")),
        (T0_NS + 95_000, echo_bytes(B, A, 0, 3, seed + 1, b"abcd")),
    ]


def assert_pairs_as_tshark_does(path: Path) -> None:
    """netdiag's echo pairs, RTTs and unmatched replies equal tshark's on ``path``."""
    assert TSHARK is not None
    fields = ["-e", "frame.number", "-e", "icmp.resp_to", "-e", "icmp.resptime"]
    output = subprocess.run(
        [TSHARK, "-n", "-r", str(path), "-T", "fields", *fields, "-e", "icmp.type"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = {}
    expected_unmatched = set()  # replies tshark gives no request (no icmp.resp_to)
    for line in output.splitlines():
        frame, request, rtt, icmp_type = line.split("\t")
        if request:
            expected[(int(request), int(frame))] = float(rtt)
        elif icmp_type == "0":
            expected_unmatched.add(int(frame))
    analysis = analyze_file(path)
    actual = {(e.frame_req, e.frame_rep): e.rtt_ms for e in analysis.icmp_echo if e.frame_rep}
    assert set(actual) == set(expected)
    for key, rtt in expected.items():
        assert actual[key] == pytest.approx(rtt, abs=1e-6)
    unmatched = [f for f in analysis.findings if f.code == "icmp.reply-unmatched"]
    assert {frame for finding in unmatched for frame in finding.frames} == expected_unmatched
    assert analysis.icmp_unmatched_replies == len(expected_unmatched)


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (cross-check only)")
@pytest.mark.parametrize("seed", range(30))
def test_random_echo_sequences_pair_as_tshark_does(tmp_path: Path, seed: int) -> None:
    path = tmp_path / f"echo-{seed}.pcap"
    write_pcap(path, random_echo_capture(seed))
    assert_pairs_as_tshark_does(path)


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (cross-check only)")
@pytest.mark.parametrize("seq", [30, 31])
def test_zero_checksum_replies_pair_as_tshark_does(tmp_path: Path, seq: int) -> None:
    # A reply of checksum 0x0000 (one's-complement zero) must pair as tshark pairs it.
    path = tmp_path / f"zero-{seq}.pcap"
    write_pcap(path, zero_checksum_reply_capture(seq))
    assert_pairs_as_tshark_does(path)
    assert [e.frame_rep for e in analyze_file(path).icmp_echo] == [2, 4]


def spoofed_reply_flood(extra_pairs: int) -> list[tuple[int, bytes]]:
    """Echo replies to A from MAX_UNMATCHED_PAIRS + ``extra_pairs`` hosts, one each
    (the backscatter of a flood with spoofed sources), then 3 more from the first."""
    repliers = [
        bytes([172, 16, n >> 8, n & 0xFF]) for n in range(MAX_UNMATCHED_PAIRS + extra_pairs)
    ]
    frames = [
        (T0_NS + n * 1000, echo_bytes(replier, A, 0, 9, n & 0xFFFF, b"ping"))
        for n, replier in enumerate(repliers)
    ]
    start = T0_NS + len(frames) * 1000
    frames += [(start + n, echo_bytes(repliers[0], A, 0, 9, 60000 + n, b"ping")) for n in range(3)]
    return frames


def test_replies_of_pairs_past_the_bound_are_counted_together(tmp_path: Path) -> None:
    extra = 50
    path = tmp_path / "backscatter.pcap"
    write_pcap(path, spoofed_reply_flood(extra))
    analysis = analyze_file(path)
    total = MAX_UNMATCHED_PAIRS + extra + 3
    assert analysis.icmp_unmatched_replies == total
    unmatched = [f for f in analysis.findings if f.code == "icmp.reply-unmatched"]
    assert len(unmatched) == MAX_UNMATCHED_PAIRS + 1  # the pairs, and the rest together
    first_pair = [f for f in unmatched if " from 172.16.0.0 to " in f.message]
    assert len(first_pair) == 1 and first_pair[0].message.startswith("4 echo replies")
    more = [f for f in unmatched if " more " in f.message]
    assert len(more) == 1
    assert more[0].message.startswith(f"{extra} more echo replies had no request")
    # Frames are numbered from 1: the first MAX_UNMATCHED_FRAMES past the bound.
    past = MAX_UNMATCHED_PAIRS + 1
    assert more[0].frames == tuple(range(past, past + MAX_UNMATCHED_FRAMES))
    # Every reply is in exactly one finding's count (the frames are capped).
    counts = [int(f.message.split()[0]) for f in unmatched]
    assert sum(counts) == total


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (cross-check only)")
def test_a_spoofed_reply_flood_counts_as_tshark_does(tmp_path: Path) -> None:
    path = tmp_path / "backscatter.pcap"
    write_pcap(path, spoofed_reply_flood(5))
    output = subprocess.run(
        [TSHARK, "-n", "-r", str(path), "-T", "fields", "-e", "icmp.resp_to", "-e", "icmp.type"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    unanswered = [line for line in output.splitlines() if line == "\t0"]
    assert analyze_file(path).icmp_unmatched_replies == len(unanswered) == MAX_UNMATCHED_PAIRS + 8


def test_replies_without_a_request_are_counted_per_pair_with_bounded_frames() -> None:
    tracker = IcmpTracker()
    tracker.process(echo(1, 0.0, A, B, 8, seq=1))
    tracker.process(echo(2, 1.0, B, A, 0, seq=1))  # answers frame 1
    for frame in range(3, 33):  # 30 replies whose requests were not captured
        tracker.process(echo(frame, float(frame), B, A, 0, seq=frame))
    tracker.process(echo(33, 40.0, C, A, 0, seq=1))  # C answers a request A sent to B
    replies = {(r.replier, r.requester): r for r in tracker.unmatched_replies()}
    assert set(replies) == {("10.0.2.1", "10.0.1.1"), ("10.0.3.1", "10.0.1.1")}
    many = replies[("10.0.2.1", "10.0.1.1")]
    assert many.count == 30
    assert many.frames == tuple(range(3, 23))  # the first MAX_UNMATCHED_FRAMES
    assert replies[("10.0.3.1", "10.0.1.1")].frames == (33,)
    info = FileInfo("x.pcap", "pcap", (1,), 33, 0.0, 1.0, True)
    findings = build_findings(info, (), (), (), (), unmatched_replies=tuple(replies.values()))
    assert [(f.code, f.severity) for f in findings] == [("icmp.reply-unmatched", "note")] * 2
    assert findings[0].message.startswith(
        "30 echo replies from 10.0.2.1 to 10.0.1.1 had no request in the capture"
    )
    assert findings[1].message.startswith("1 echo reply from 10.0.3.1")
    assert "tcpdump -i any icmp" in findings[0].hint
