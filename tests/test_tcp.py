"""TCP tracking: Wireshark's TCP analysis per frame, Zeek states/history, Karn's rule.

Three kinds of evidence:

* Differential runs against tshark 4.0 (skipped when tshark is absent): seeded
  random conversations (lost, duplicated, swapped and retransmitted segments,
  zero windows and probes, keep-alives, window updates and full windows,
  resets, FINs, SYN retries and port reuse) are written to a pcap, and every
  frame's ``tcp.stream``, ``tcp.analysis.*`` flags and ``ack_rtt`` must equal
  tshark's.
* Small hand-made packet sequences with known answers (Zeek ``conn_state`` and
  ``history``, relative sequence numbers, roles, Karn's rule).
* Option parsing.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from netdiag.analysis.analyze import analyze_file
from netdiag.analysis.packet import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    DecodedPacket,
    FrameClass,
    packed_endpoints,
)
from netdiag.analysis.tcp import (
    ANALYSIS_FLAGS,
    ANALYSIS_KEYS,
    TcpTracker,
    _holds_window_scale_bytes,
    _source_order,
    _swapped,
    flag_letters,
)
from netdiag.analysis.tcpopts import parse, window_scale

CLIENT = bytes([10, 0, 2, 1])
SERVER = bytes([10, 0, 1, 1])
T0_NS = 1_700_000_000 * 10**9


# -- building packets ------------------------------------------------------------


def tcp_packet(
    frame: int,
    t_ms: float,
    direction: str,
    flags: int,
    seq: int,
    ack: int = 0,
    length: int = 0,
    window: int = 64240,
    options: bytes = b"",
    client: tuple[bytes, int] = (CLIENT, 40000),
    server: tuple[bytes, int] = (SERVER, 7096),
) -> DecodedPacket:
    """A decoded IPv4 TCP packet, ``direction`` "c>s" or "s>c"."""
    packet = DecodedPacket(frame, T0_NS + round(t_ms * 1e6), FrameClass.IPV4)
    source, destination = (client, server) if direction == "c>s" else (server, client)
    packet.ip_version = 4
    packet.proto = 6
    packet.src, packet.sport = source
    packet.dst, packet.dport = destination
    packet.seq = seq & 0xFFFFFFFF
    packet.ack = ack & 0xFFFFFFFF
    packet.tcp_flags = flags
    packet.window = window
    packet.payload_len = length
    packet.tcp_options = options
    return packet


def track(rows: list[tuple[Any, ...]], **endpoints: Any) -> list[Any]:
    """Run (t_ms, dir, flags, seq, ack[, len[, window]]) rows through a tracker."""
    tracker = TcpTracker()
    for frame, row in enumerate(rows, start=1):
        t_ms, direction, flags, seq, ack, *rest = row
        length = rest[0] if rest else 0
        window = rest[1] if len(rest) > 1 else 64240
        tracker.process(
            tcp_packet(frame, t_ms, direction, flags, seq, ack, length, window, **endpoints)
        )
    return tracker.finish()


C_ISN = 1000
S_ISN = 5000
HANDSHAKE = [
    (0.0, "c>s", SYN, C_ISN, 0),
    (1.0, "s>c", SYN | ACK, S_ISN, C_ISN + 1),
    (2.0, "c>s", ACK, C_ISN + 1, S_ISN + 1),
]


# -- pcap writing for the differential tests ---------------------------------------

ETHERNET_HEADER = bytes(6) + bytes(6) + b"\x08\x00"


def ipv4_tcp(
    source: tuple[bytes, int],
    destination: tuple[bytes, int],
    flags: int,
    seq: int,
    ack: int,
    window: int,
    payload: bytes,
    options: bytes = b"",
) -> bytes:
    options += b"\x00" * (-len(options) % 4)
    header = struct.pack(
        "!HHIIBBHHH",
        source[1],
        destination[1],
        seq & 0xFFFFFFFF,
        ack & 0xFFFFFFFF,
        (20 + len(options)) // 4 << 4,
        flags,
        window,
        0,
        0,
    )
    segment = header + options + payload
    ip_header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 1, 0, 64, 6, 0, source[0], destination[0]
    )
    return ip_header + segment


def write_pcap(path: Path, frames: list[tuple[int, bytes]]) -> None:
    """Nanosecond little-endian pcap, Ethernet link type."""
    with open(path, "wb") as handle:
        handle.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))
        for ts_ns, packet in frames:
            data = ETHERNET_HEADER + packet
            handle.write(struct.pack("<IIII", ts_ns // 10**9, ts_ns % 10**9, len(data), len(data)))
            handle.write(data)


class RandomConversation:
    """A seeded sequence of plausible and implausible TCP events between two hosts."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.client = (CLIENT, self.random.choice([40000, 40001]))
        self.server = (SERVER, 80)
        self.now = T0_NS
        self.frames: list[tuple[int, bytes]] = []
        self.sides: dict[str, dict[str, Any]] = {}

    def emit(
        self,
        who: str,
        flags: int,
        seq: int,
        ack: int,
        window: int,
        length: int,
        options: bytes = b"",
    ) -> None:
        gaps = [0, 100_000, 1_000_000, 2_000_000, 5_000_000, 30_000_000, 300_000_000]
        self.now += self.random.choice(gaps)
        source, destination = (
            (self.client, self.server) if who == "c" else (self.server, self.client)
        )
        packet = ipv4_tcp(source, destination, flags, seq, ack, window, b"x" * length, options)
        self.sides[who]["last"] = packet
        self.frames.append((self.now, packet))

    def handshake(self) -> None:
        pick = self.random
        for side in "cs":
            self.sides[side] = {
                "snd": pick.randrange(2**32),
                "rcv": 0,
                "win": pick.choice([4, 8, 64, 1000]),
                "last": None,
            }
        client, server = self.sides["c"], self.sides["s"]
        client_options = b"\x01\x03\x03" + bytes([pick.choice([0, 1, 2, 7, 15])])
        server_options = b"\x01\x03\x03" + bytes([pick.choice([0, 1, 2, 7])])
        for _ in range(pick.choice([1, 1, 1, 2, 3])):
            self.emit("c", SYN, client["snd"], 0, 64240, 0, client_options * (pick.random() < 0.6))
        if pick.random() < 0.1:
            self.emit("s", RST | ACK, 0, client["snd"] + 1, 0, 0)
            return
        if pick.random() < 0.85:
            for _ in range(pick.choice([1, 1, 2])):
                self.emit(
                    "s",
                    SYN | ACK,
                    server["snd"],
                    client["snd"] + 1,
                    65535,
                    0,
                    server_options * (pick.random() < 0.6),
                )
        client["snd"] += 1
        server["snd"] += 1
        client["rcv"] = server["snd"]
        server["rcv"] = client["snd"]
        if pick.random() < 0.9:
            self.emit("c", ACK, client["snd"], client["rcv"], client["win"], 0)

    def build(self) -> list[tuple[int, bytes]]:
        pick = self.random
        self.handshake()
        for _ in range(pick.randrange(10, 60)):
            who = pick.choice("cs")
            me, peer = self.sides[who], self.sides["s" if who == "c" else "c"]
            event = pick.random()
            if event < 0.35:  # data, sometimes lost before the capture point
                length = pick.choice([1, 2, 3, 4, 8, 100])
                window = 0 if pick.random() < 0.1 else me["win"]
                if pick.random() >= 0.15:
                    self.emit(who, PSH | ACK, me["snd"], me["rcv"], window, length)
                me["snd"] += length
            elif event < 0.55:  # an ACK, sometimes partial or with a new window
                acknowledged = peer["snd"] - pick.choice([0, 0, 0, 1, 2])
                me["rcv"] = acknowledged
                window = 0 if pick.random() < 0.1 else me["win"] + pick.choice([0, 0, 1])
                self.emit(who, ACK, me["snd"], acknowledged, window, 0)
            elif event < 0.65 and me["last"] is not None:  # the same packet twice
                later = self.frames[-1][0] + pick.choice([0, 1_000_000, 50_000_000])
                self.frames.append((later, me["last"]))
            elif event < 0.72:  # an older range again
                back = pick.choice([1, 2, 4, 8])
                length = pick.choice([1, back])
                self.emit(who, PSH | ACK, me["snd"] - back, me["rcv"], me["win"], length)
            elif event < 0.77:  # keep-alive
                self.emit(who, ACK, me["snd"] - 1, me["rcv"], me["win"], pick.choice([0, 1]))
            elif event < 0.80:  # fill the peer's window to the edge
                room = peer["win"] - (me["snd"] - peer["rcv"])
                if 0 < room < 2000:
                    self.emit(who, PSH | ACK, me["snd"], me["rcv"], me["win"], room)
                    me["snd"] += room
            elif event < 0.83 and len(self.frames) > 2:  # swap the last two packets
                (t1, p1), (t2, p2) = self.frames[-2], self.frames[-1]
                self.frames[-2:] = [(t1, p2), (t2, p1)]
            elif event < 0.86:
                self.emit(who, FIN | ACK, me["snd"], me["rcv"], me["win"], 0)
                me["snd"] += 1
            elif event < 0.88:
                self.emit(
                    who, RST | (ACK if pick.random() < 0.5 else 0), me["snd"], me["rcv"], 0, 0
                )
            elif event < 0.91:  # the same ports again: a retried SYN or a new connection
                if pick.random() < 0.3:
                    self.emit("c", SYN, self.sides["c"]["snd"] - 1, 0, 64240, 0)
                else:
                    self.handshake()
            elif event < 0.94:  # a one-byte probe
                self.emit(who, PSH | ACK, me["snd"], me["rcv"], me["win"], 1)
                if pick.random() < 0.5:
                    me["snd"] += 1
            else:  # window update
                me["win"] = pick.choice([4, 8, 64, 1000, 2000])
                self.emit(who, ACK, me["snd"], me["rcv"], me["win"], 0)
        return self.frames


TSHARK = shutil.which("tshark")


def tshark_per_frame(path: Path) -> dict[int, tuple[int | None, int | None, set[str]]]:
    """frame -> (tcp.stream, ack_rtt in ns or None, set of tcp.analysis flags)."""
    assert TSHARK is not None
    fields = ["frame.number", "tcp.stream", "tcp.analysis.ack_rtt"]
    fields += [f"tcp.analysis.{name}" for name in ANALYSIS_KEYS]
    command = [TSHARK, "-n", "-r", str(path), "-o", "tcp.analyze_sequence_numbers:TRUE"]
    command += ["-o", "tcp.relative_sequence_numbers:TRUE", "-T", "fields", "-E", "occurrence=f"]
    for field in fields:
        command += ["-e", field]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = {}
    for line in output.splitlines():
        values = line.split("\t")
        flags = {name for name, value in zip(ANALYSIS_KEYS, values[3:], strict=True) if value}
        rtt = round(float(values[2]) * 1e9) if values[2] else None
        result[int(values[0])] = (int(values[1]) if values[1] else None, rtt, flags)
    return result


def netdiag_per_frame(path: Path) -> dict[int, tuple[int | None, int | None, set[str]]]:
    from netdiag.analysis.decode import Decoder
    from netdiag.analysis.reader import CaptureReader

    per_frame: dict[int, tuple[int | None, int | None, set[str]]] = {}

    def record(frame: int, stream: int, bits: int, rtt: int | None) -> None:
        flags = {name for name, mask in ANALYSIS_FLAGS if bits & mask}
        per_frame[frame] = (stream, rtt or None, flags)

    recorder = TcpTracker()
    recorder.on_frame = record
    decoder = Decoder()
    with CaptureReader(path) as reader:
        for frame in reader:
            packet = decoder.decode(frame)
            if packet.proto == 6:
                recorder.process(packet)
    return per_frame


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (cross-check only)")
@pytest.mark.parametrize("seed", range(40))
def test_random_conversation_agrees_with_tshark_frame_by_frame(tmp_path: Path, seed: int) -> None:
    path = tmp_path / f"random-{seed}.pcap"
    write_pcap(path, RandomConversation(seed).build())
    expected = tshark_per_frame(path)
    actual = netdiag_per_frame(path)
    differences = [
        (frame, actual.get(frame), expected[frame])
        for frame in sorted(expected)
        if actual.get(frame) != expected[frame]
    ]
    assert not differences, f"(frame, netdiag, tshark): {differences[:5]}"


# -- handshake, roles, timeline --------------------------------------------------


def test_handshake_frames_roles_and_relative_numbers() -> None:
    rows = [
        *HANDSHAKE,
        (3.0, "c>s", PSH | ACK, C_ISN + 1, S_ISN + 1, 22),
        (4.0, "s>c", ACK, S_ISN + 1, C_ISN + 23),
        (5.0, "c>s", FIN | ACK, C_ISN + 23, S_ISN + 1),
        (6.0, "s>c", FIN | ACK, S_ISN + 1, C_ISN + 24),
        (7.0, "c>s", ACK, C_ISN + 24, S_ISN + 2),
    ]
    (stream,) = track(rows)
    assert (stream.client, stream.server, stream.roles_from) == (
        "10.0.2.1:40000",
        "10.0.1.1:7096",
        "syn",
    )
    assert (stream.syn_frame, stream.synack_frame, stream.ack_frame) == (1, 2, 3)
    assert stream.irtt_ms == pytest.approx(2.0)
    assert stream.syn_to_synack_ms == pytest.approx(1.0)
    assert stream.synack_to_ack_ms == pytest.approx(1.0)
    assert (stream.bytes_c2s, stream.bytes_s2c, stream.packets) == (22, 0, 8)
    assert (stream.packets_c2s, stream.packets_s2c) == (5, 3)
    assert [(e.frame, e.dir, e.flags, e.seq, e.ack, e.len) for e in stream.timeline] == [
        (1, "c>s", "S", 0, 0, 0),
        (2, "s>c", "SA", 0, 1, 0),
        (3, "c>s", "A", 1, 1, 0),
        (6, "c>s", "FA", 23, 1, 0),
        (7, "s>c", "FA", 1, 24, 0),
        (8, "c>s", "A", 24, 2, 0),
    ]
    assert stream.timeline[3].t_ms == pytest.approx(5.0)
    assert (stream.state, stream.history, stream.fin_seen, stream.rst_seen) == (
        "SF",
        "ShADaFf",
        True,
        False,
    )


def test_syn_retries_are_one_stream_and_irtt_counts_from_the_last_syn() -> None:
    rows = [
        (0.0, "c>s", SYN, C_ISN, 0),
        (1000.0, "c>s", SYN, C_ISN, 0),
        (3000.0, "c>s", SYN, C_ISN, 0),
        (3001.0, "s>c", SYN | ACK, S_ISN, C_ISN + 1),
        (3002.0, "c>s", ACK, C_ISN + 1, S_ISN + 1),
    ]
    (stream,) = track(rows)
    assert stream.syn_frames == (1, 2, 3)
    assert stream.count("retransmission") == 2
    assert stream.irtt_ms == pytest.approx(2.0)  # from frame 3, not frame 1
    assert stream.syn_to_synack_ms == pytest.approx(3001.0)  # from the first SYN
    assert stream.history == "ShA"  # one attempt: Zeek's fix
    assert stream.state == "S1"


def test_new_syn_with_another_isn_on_the_same_ports_starts_a_new_stream() -> None:
    first = [
        *HANDSHAKE,
        (3.0, "c>s", FIN | ACK, C_ISN + 1, S_ISN + 1),
        (4.0, "s>c", FIN | ACK, S_ISN + 1, C_ISN + 2),
        (5.0, "c>s", ACK, C_ISN + 2, S_ISN + 2),
    ]
    second = [
        (10.0, "c>s", SYN, C_ISN + 100_000, 0),
        (11.0, "s>c", SYN | ACK, S_ISN + 7, C_ISN + 100_001),
    ]
    streams = track(first + second)
    assert [s.stream for s in streams] == [0, 1]
    assert streams[0].packets == 6
    assert (streams[1].syn_frame, streams[1].synack_frame, streams[1].first_frame) == (7, 8, 7)
    assert streams[1].count("reused_ports") == 1
    assert streams[1].state == "S1"


def test_stream_without_handshake_takes_roles_from_first_packet() -> None:
    (stream,) = track(
        [(0.0, "s>c", PSH | ACK, S_ISN, C_ISN, 10), (1.0, "c>s", ACK, C_ISN, S_ISN + 10)]
    )
    assert stream.roles_from == "first_packet"
    assert stream.client == "10.0.1.1:7096"  # the first packet's source
    assert (stream.state, stream.timeline) == ("OTH", ())


def test_synack_without_syn_takes_roles_from_synack() -> None:
    (stream,) = track(HANDSHAKE[1:])
    assert (stream.roles_from, stream.client, stream.synack_frame, stream.ack_frame) == (
        "synack",
        "10.0.2.1:40000",
        1,
        2,
    )


# -- Zeek conn_state and history -------------------------------------------------

ZEEK_CASES = {
    "S0": ([(0.0, "c>s", SYN, C_ISN, 0), (1000.0, "c>s", SYN, C_ISN, 0)], "S"),
    "REJ": ([(0.0, "c>s", SYN, C_ISN, 0), (0.1, "s>c", RST | ACK, 0, C_ISN + 1)], "Sr"),
    "S1": (HANDSHAKE, "ShA"),
    "SF": (
        [
            *HANDSHAKE,
            (3.0, "c>s", FIN | ACK, C_ISN + 1, S_ISN + 1),
            (4.0, "s>c", FIN | ACK, S_ISN + 1, C_ISN + 2),
        ],
        "ShAFf",
    ),
    "S2": ([*HANDSHAKE, (3.0, "c>s", FIN | ACK, C_ISN + 1, S_ISN + 1)], "ShAF"),
    "S3": ([*HANDSHAKE, (3.0, "s>c", FIN | ACK, S_ISN + 1, C_ISN + 1)], "ShAf"),
    "RSTO": ([*HANDSHAKE, (3.0, "c>s", RST, C_ISN + 1, 0)], "ShAR"),
    "RSTR": ([*HANDSHAKE, (3.0, "s>c", RST | ACK, S_ISN + 1, C_ISN + 1)], "ShAr"),
    "RSTOS0": ([(0.0, "c>s", SYN, C_ISN, 0), (1.0, "c>s", RST, C_ISN + 1, 0)], "SR"),
    "SH": ([(0.0, "c>s", SYN, C_ISN, 0), (1.0, "c>s", FIN | ACK, C_ISN + 1, 1)], "SF"),
    "SHR": ([HANDSHAKE[1], (1.0, "s>c", FIN | ACK, S_ISN + 1, C_ISN + 1)], "hf"),
    "RSTRH": ([HANDSHAKE[1], (1.0, "s>c", RST, S_ISN + 1, 0)], "hr"),
    "OTH": ([(0.0, "c>s", PSH | ACK, C_ISN, S_ISN, 5), (1.0, "s>c", ACK, S_ISN, C_ISN + 5)], "Da"),
}


@pytest.mark.parametrize("state", sorted(ZEEK_CASES))
def test_zeek_conn_state_and_history(state: str) -> None:
    rows, history = ZEEK_CASES[state]
    (stream,) = track(rows)
    assert (stream.state, stream.history) == (state, history)


def test_history_marks_retransmission_and_zero_window() -> None:
    rows = [
        *HANDSHAKE,
        (3.0, "c>s", PSH | ACK, C_ISN + 1, S_ISN + 1, 10),
        (300.0, "c>s", PSH | ACK, C_ISN + 1, S_ISN + 1, 10),
        (301.0, "s>c", ACK, S_ISN + 1, C_ISN + 11, 0, 0),
    ]
    (stream,) = track(rows)
    assert stream.count("retransmission") == 1
    assert stream.count("zero_window") == 1
    assert stream.history == "ShADTaw"


# -- RTT samples -------------------------------------------------------------------


def test_karn_rule_excludes_samples_from_retransmitted_segments() -> None:
    rows = [
        *HANDSHAKE,
        (10.0, "c>s", PSH | ACK, C_ISN + 1, S_ISN + 1, 100),
        (15.0, "s>c", ACK, S_ISN + 1, C_ISN + 101),  # clean sample: 5 ms
        (20.0, "c>s", PSH | ACK, C_ISN + 101, S_ISN + 1, 100),
        (220.0, "c>s", PSH | ACK, C_ISN + 101, S_ISN + 1, 100),  # retransmitted
        (225.0, "s>c", ACK, S_ISN + 1, C_ISN + 201),  # ambiguous: excluded
    ]
    tracker = TcpTracker()
    for frame, (t_ms, direction, flags, seq, ack, *rest) in enumerate(rows, start=1):
        tracker.process(tcp_packet(frame, t_ms, direction, flags, seq, ack, *rest))
    (stream,) = tracker.finish()
    # Wireshark's ack_rtt keeps every sample (handshake ACKs included) ...
    assert tracker.ack_rtt.count == 4
    assert tracker.ack_rtt_totals().max_ms == pytest.approx(205.0)  # from the first copy
    # ... Karn's rule sets the retransmitted one apart.
    assert stream.rtt_ms.karn_excluded == 1
    assert stream.rtt_ms.samples == 3
    assert stream.rtt_ms.max == pytest.approx(5.0)
    assert [s.rtt_ms for s in stream.rtt_samples] == pytest.approx([1.0, 1.0, 5.0])
    assert [s.dir for s in stream.rtt_samples] == ["c>s", "s>c", "c>s"]


def test_unique_bytes_count_each_range_once() -> None:
    rows = [
        *HANDSHAKE,
        (3.0, "c>s", ACK, C_ISN + 1, S_ISN + 1, 100),
        (3.1, "c>s", ACK, C_ISN + 201, S_ISN + 1, 100),  # 101..200 not seen yet
        (3.2, "c>s", ACK, C_ISN + 101, S_ISN + 1, 100),  # out of order: fills the hole
        (3.3, "c>s", ACK, C_ISN + 1, S_ISN + 1, 100),  # sent again
        (3.4, "c>s", ACK, C_ISN + 351, S_ISN + 1, 50),  # 301..350 never captured
        (3.5, "c>s", ACK, C_ISN + 321, S_ISN + 1, 20),  # partly inside the hole
        (4.0, "s>c", ACK, S_ISN + 1, C_ISN + 401),
    ]
    (stream,) = track(rows)
    assert stream.bytes_c2s == 470
    assert stream.unique_bytes_c2s == 370  # 1..300, 321..400
    assert (stream.bytes_s2c, stream.unique_bytes_s2c) == (0, 0)
    assert stream.to_json()["unique_bytes_c2s"] == 370


def test_unique_bytes_across_the_sequence_wrap() -> None:
    isn = 0xFFFFFF00
    rows = [
        (0.0, "c>s", SYN, isn, 0),
        (1.0, "s>c", SYN | ACK, S_ISN, isn + 1),
        (2.0, "c>s", ACK, isn + 1, S_ISN + 1),
        (3.0, "c>s", ACK, isn + 1, S_ISN + 1, 1000),  # crosses 2**32
        (3.1, "c>s", ACK, isn + 2001, S_ISN + 1, 1000),
        (3.2, "c>s", ACK, isn + 1001, S_ISN + 1, 1000),
        (3.3, "c>s", ACK, isn + 1001, S_ISN + 1, 1000),
    ]
    (stream,) = track(rows)
    assert (stream.bytes_c2s, stream.unique_bytes_c2s) == (4000, 3000)


@pytest.mark.parametrize("seed", range(20))
def test_unique_bytes_equal_a_byte_set(seed: int) -> None:
    """Random segments (reordered, repeated, overlapping, with holes) against a set of bytes."""
    rng = random.Random(seed)
    # 40 base segments: fewer holes than MAX_COVERED_RANGES, so the count is exact.
    segments = [(offset, rng.randint(1, 300)) for offset in range(0, 10_000, 250)]
    segments += rng.sample(segments, len(segments) // 3)  # sent again
    segments = [s for s in segments if rng.random() > 0.1]  # some never captured
    segments += [(rng.randrange(0, 10_000), rng.randint(1, 2000)) for _ in range(10)]
    rng.shuffle(segments)
    rows = [*HANDSHAKE]
    rows += [
        (3.0 + index * 0.01, "c>s", ACK, C_ISN + 1 + offset, S_ISN + 1, length)
        for index, (offset, length) in enumerate(segments)
    ]
    (stream,) = track(rows)
    seen = {offset + i for offset, length in segments for i in range(length)}
    assert stream.unique_bytes_c2s == len(seen)
    assert stream.bytes_c2s == sum(length for _offset, length in segments)


def test_unique_bytes_memory_is_bounded_by_settling_the_oldest_ranges() -> None:
    from netdiag.analysis.tcp import MAX_COVERED_RANGES

    holes = MAX_COVERED_RANGES + 36
    rows = [*HANDSHAKE]
    rows += [
        (3.0 + index, "c>s", ACK, C_ISN + 1 + index * 200, S_ISN + 1, 100) for index in range(holes)
    ]
    rows.append((500.0, "c>s", ACK, C_ISN + 1 + 100, S_ISN + 1, 100))  # the oldest hole, late
    tracker = TcpTracker()
    for frame, (t_ms, direction, flags, seq, ack, *length) in enumerate(rows, start=1):
        tracker.process(tcp_packet(frame, t_ms, direction, flags, seq, ack, *length))
    (conversation,) = tracker._conversations.values()
    flow = conversation.flows[conversation.client]
    assert len(flow.covered) == 2 * MAX_COVERED_RANGES
    (stream,) = tracker.finish()
    # Every range seen is counted; the late segment fell below the settled ranges.
    assert stream.unique_bytes_c2s == holes * 100


def test_plot_points_are_capped_per_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plot cap bounds the points and RTT samples kept for plots, not the Karn
    samples the stream's RTT median comes from (a reservoir of its own size)."""
    import netdiag.analysis.tcp as tcp_module

    monkeypatch.setattr(tcp_module, "MAX_POINTS_PER_STREAM", 5)
    rows = [*HANDSHAKE]
    for i in range(20):  # each segment ACKed, RTT 0.05 ms * (i + 1)
        rows.append((10.0 + 2 * i, "c>s", PSH | ACK, C_ISN + 1 + i, S_ISN + 1, 1))
        rows.append((10.0 + 2 * i + 0.05 * (i + 1), "s>c", ACK, S_ISN + 1, C_ISN + 2 + i))
    tracker = TcpTracker()
    for frame, (t_ms, direction, flags, seq, ack, *length) in enumerate(rows, start=1):
        tracker.process(tcp_packet(frame, t_ms, direction, flags, seq, ack, *length))
    (conversation,) = tracker._conversations.values()
    assert conversation.karn.limit == tcp_module.MAX_KARN_SAMPLES_PER_STREAM
    (stream,) = tracker.finish()
    assert (len(stream.seq_points), len(stream.rtt_samples)) == (5, 5)
    assert stream.packets == 43
    # Every Karn sample kept: the exact median of the handshake's two (1 ms each)
    # and 0.05, 0.10, ..., 1.00 ms; a reservoir of 5 would give one of the values.
    assert stream.rtt_ms.samples == 22
    assert stream.rtt_ms.median == pytest.approx(0.575)


# -- options and helpers ---------------------------------------------------------------


def test_option_parsing() -> None:
    raw = (
        b"\x02\x04\x05\xb4"  # MSS 1460
        b"\x01\x03\x03\x07"  # NOP, window scale 7
        b"\x04\x02"  # SACK permitted
        b"\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x02"  # timestamps 1, 2
        b"\x05\x0a\x00\x00\x00\x10\x00\x00\x00\x20"  # one SACK block
    )
    options = parse(raw)
    assert (options.mss, options.window_scale, options.sack_permitted) == (1460, 7, True)
    assert (options.ts_val, options.ts_ecr, options.sack_blocks) == (1, 2, ((16, 32),))
    assert not options.malformed
    assert window_scale(b"\x03\x03\x0f") == 14  # RFC 7323: above 14 means 14
    assert window_scale(b"\x03\x04\x07\x00") is None  # wrong length: ignored
    assert window_scale(b"\x00\x03\x03\x07") is None  # after end-of-list
    bad = parse(b"\x02\x04\x05\xb4\x08\x01")
    assert (bad.mss, bad.malformed) == (1460, True)


def test_flag_letters() -> None:
    assert flag_letters(SYN) == "S"
    assert flag_letters(SYN | ACK) == "SA"
    assert flag_letters(PSH | ACK) == "PA"
    assert flag_letters(FIN | ACK) == "FA"
    assert flag_letters(RST) == "R"


def test_conversation_key_helpers_agree_with_bytes() -> None:
    """The tracker keys conversations on ``packed_endpoints`` bytes, ordered and
    turned around with native byte reads (``_source_order``, ``_swapped``): they
    must give what plain ``bytes`` comparison and building the key anew give.
    Few distinct byte values, so that addresses tie in their first 32-bit words
    and the later ones decide."""
    generator = random.Random(6)
    for address_length in (4, 16):
        for _ in range(3000):
            source = bytes(generator.choice((0, 1, 255)) for _ in range(address_length))
            destination = bytes(generator.choice((0, 1, 255)) for _ in range(address_length))
            if generator.random() < 0.2:
                destination = source
            sport = generator.choice((0, 1, 80, 40000, 65535))
            dport = generator.choice((0, 1, 80, 40000, 65535))
            endpoints = packed_endpoints(source, sport, destination, dport)
            assert len(endpoints) == 2 * address_length + 4
            order = _source_order(endpoints)
            assert (order > 0, order < 0) == (source > destination, source < destination)
            assert _swapped(endpoints) == packed_endpoints(destination, dport, source, sport)


def test_window_scale_search_agrees_with_find() -> None:
    """Outside a SYN the tracker parses the options only when they hold bytes 03 03,
    found in place (``_holds_window_scale_bytes`` over the frame's bytes, no slice):
    it must answer as ``find`` on the slice does, whatever lies around it."""
    generator = random.Random(7)
    for _ in range(3000):
        options = bytes(generator.choice((1, 3, 8)) for _ in range(generator.randrange(0, 14)))
        # 03 bytes around the options: a pair across either edge must not count.
        data = b"\x03" + options + b"\x03"
        expected = options.find(b"\x03\x03") >= 0
        assert _holds_window_scale_bytes(data, 1, 1 + len(options)) == expected, options.hex()


def test_written_capture_round_trips_through_analyze_file(tmp_path: Path) -> None:
    """The pcap writer used above produces what the decoder reads back."""
    conversation = RandomConversation(7)
    path = tmp_path / "seven.pcap"
    frames = conversation.build()
    write_pcap(path, frames)
    analysis = analyze_file(path)
    assert analysis.file.packets == len(frames)
    assert sum(stream.packets for stream in analysis.tcp) == len(frames)


def bulk_transfer(path: Path, segments: int) -> None:
    """One connection: handshake, then ``segments`` data segments each ACKed, then FIN."""
    client, server = (CLIENT, 40000), (SERVER, 7096)
    now = T0_NS
    frames = [
        (now, ipv4_tcp(client, server, SYN, C_ISN, 0, 64240, b"")),
        (now + 1000, ipv4_tcp(server, client, SYN | ACK, S_ISN, C_ISN + 1, 64240, b"")),
        (now + 2000, ipv4_tcp(client, server, ACK, C_ISN + 1, S_ISN + 1, 64240, b"")),
    ]
    payload = b"p" * 100
    seq = C_ISN + 1
    for index in range(segments):
        now += 100_000
        frames.append((now, ipv4_tcp(client, server, PSH | ACK, seq, S_ISN + 1, 64240, payload)))
        seq += len(payload)
        if index % 2:  # delayed ACKs: every other segment
            frames.append((now + 20_000, ipv4_tcp(server, client, ACK, S_ISN + 1, seq, 64240, b"")))
    frames.append((now + 50_000, ipv4_tcp(client, server, FIN | ACK, seq, S_ISN + 1, 64240, b"")))
    write_pcap(path, frames)


def test_memory_does_not_grow_with_packets_of_one_conversation(tmp_path: Path) -> None:
    """Streaming: four times the packets of one connection cost (almost) no more memory.

    What may grow is bounded by design: the capped plot points, and Wireshark's
    ack_rtt samples up to one chunk of the spool (analysis/samples.py, 512 KB).
    """
    import tracemalloc

    peaks = []
    for segments in (10_000, 40_000):
        path = tmp_path / f"bulk-{segments}.pcap"
        bulk_transfer(path, segments)
        tracemalloc.start()
        analysis = analyze_file(path, plot_data=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        (stream,) = analysis.tcp
        assert (stream.packets, stream.bytes_c2s) == (4 + segments * 3 // 2, segments * 100)
        assert stream.state == "S2" and stream.history == "ShADaF"
    assert peaks[1] - peaks[0] < 2_000_000, peaks


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (cross-check only)")
@pytest.mark.parametrize("seed", range(40, 70))
def test_random_conversation_irtt_agrees_with_tshark(tmp_path: Path, seed: int) -> None:
    """iRTT per stream: present exactly when tshark prints one, and equal to it."""
    assert TSHARK is not None
    path = tmp_path / f"irtt-{seed}.pcap"
    write_pcap(path, RandomConversation(seed).build())
    command = [TSHARK, "-n", "-r", str(path), "-T", "fields"]
    command += ["-e", "tcp.stream", "-e", "tcp.analysis.initial_rtt"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    expected: dict[int, float] = {}
    for line in output.splitlines():
        stream, value = line.split("\t")
        if value:
            expected.setdefault(int(stream), float(value) * 1000)
    actual = {s.stream: s.irtt_ms for s in analyze_file(path).tcp if s.irtt_ms is not None}
    assert set(actual) == set(expected)
    for stream, irtt in expected.items():
        assert actual[stream] == pytest.approx(irtt, abs=1e-6)
