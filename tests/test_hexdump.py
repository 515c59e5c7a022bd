"""Hex dumps: byte for byte what `tcpdump -X` / `-XX` prints, on every corpus link type.

tcpdump is run with `-#` so each packet's header line carries its number,
and only the dump lines (`\\t0x....:`) are compared; netdiag's header line is
its own. Files tcpdump cannot read to the end are compared on the frames it
did print. Skipped when tcpdump is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from netdiag.analysis.packet import RawFrame
from netdiag.report.hexdump import (
    dump_frames,
    hex_ascii_lines,
    hexdump_lines,
    iter_decoded,
    summary_line,
    tcpdump_header_len,
)
from tests.conftest import corpus_files

TCPDUMP = shutil.which("tcpdump")
NUMBERED = re.compile(r"^ {0,6}(\d+)  ")


def tcpdump_dumps(path: Path, flag: str) -> dict[int, list[str]]:
    """Frame number -> the hex lines tcpdump printed under it."""
    assert TCPDUMP is not None
    result = subprocess.run(
        [TCPDUMP, flag, "-nn", "-#", "-r", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    dumps: dict[int, list[str]] = {}
    current: int | None = None
    for line in result.stdout.splitlines():
        if line.startswith("\t0x"):
            if current is not None:
                dumps[current].append(line)
            continue
        match = NUMBERED.match(line)
        if match:
            current = int(match.group(1))
            dumps[current] = []
    return dumps


def test_format_matches_tcpdump_layout() -> None:
    data = bytes(range(0x1E, 0x1E + 17)) + b" ~\x7f"
    lines = list(hex_ascii_lines(data))
    assert lines == [
        "\t0x0000:  1e1f 2021 2223 2425 2627 2829 2a2b 2c2d  ...!\"#$%&'()*+,-",
        "\t0x0010:  2e20 7e7f                                ..~.",
    ]
    # An odd trailing byte is one 2-digit group; the ASCII column still starts at column 51.
    odd = list(hex_ascii_lines(b"GET / HTTP/"))
    assert odd == ["\t0x0000:  4745 5420 2f20 4854 5450 2f" + " " * 12 + "  GET./.HTTP/"]
    assert list(hex_ascii_lines(b"E")) == ["\t0x0000:  45" + " " * 37 + "  E"]
    assert list(hex_ascii_lines(b"")) == []


def test_offsets_grow_past_four_digits() -> None:
    lines = list(hex_ascii_lines(bytes(0x10010)))
    assert lines[-1].startswith("\t0x10000:  0000")
    assert len(lines) == 0x1001


def test_dump_starts_after_link_header_and_keeps_padding() -> None:
    ethernet = bytes(12) + b"\x08\x00" + b"\x45" + bytes(19) + bytes(26)  # 20-byte IP, padded
    frame = RawFrame(1, 0, 1, len(ethernet), len(ethernet), ethernet)
    lines = hexdump_lines(frame, 14)
    assert lines[0].startswith("\t0x0000:  4500 0000")
    assert len(lines) == 3  # 46 bytes after the Ethernet header, padding included
    assert hexdump_lines(frame, 14, link_layer=True)[0].startswith("\t0x0000:  0000 0000")
    short = RawFrame(2, 0, 1, 10, 60, ethernet[:10])
    assert hexdump_lines(short, 14) == []


def test_llc_header_counts_into_tcpdump_link_header() -> None:
    stp = bytes(12) + (38).to_bytes(2, "big") + b"\x42\x42\x03" + bytes(35)
    frame = RawFrame(1, 0, 1, len(stp), len(stp), stp)
    assert tcpdump_header_len(frame, 14) == 17
    snap = bytes(12) + (50).to_bytes(2, "big") + b"\xaa\xaa\x03\x00\x00\x0c\x01\x0b" + bytes(42)
    assert tcpdump_header_len(RawFrame(2, 0, 1, len(snap), len(snap), snap), 14) == 22
    ipv4 = bytes(12) + b"\x08\x00" + bytes(20)
    assert tcpdump_header_len(RawFrame(3, 0, 1, len(ipv4), len(ipv4), ipv4), 14) == 14
    assert tcpdump_header_len(RawFrame(4, 0, 101, 20, 20, bytes(20)), 0) == 0


@pytest.mark.skipif(TCPDUMP is None, reason="tcpdump is not installed")
@pytest.mark.parametrize("flag", ["-X", "-XX"])
def test_identical_to_tcpdump_on_corpus(flag: str) -> None:
    files = corpus_files()
    if not files:
        pytest.skip("shared corpus not found")
    compared = 0
    link_types: set[int] = set()
    truncated = padded = 0
    mismatches: list[str] = []
    for path in files:
        theirs = tcpdump_dumps(path, flag)
        for frame, packet in iter_decoded(path):
            if frame.number not in theirs:
                continue  # tcpdump stopped earlier (second pcapng section, cut-short file)
            if flag == "-X" and packet.link_header_len < 0:
                continue  # link type the decoder does not know: nothing to promise
            ours = hexdump_lines(frame, packet.link_header_len, link_layer=flag == "-XX")
            if ours != theirs[frame.number]:
                mismatches.append(f"{path.name} frame {frame.number}")
            compared += 1
            link_types.add(frame.linktype)
            truncated += frame.truncated
            if packet.ip_version == 4 and frame.linktype == 1:
                total_length = int.from_bytes(
                    frame.data[packet.link_header_len + 2 : packet.link_header_len + 4], "big"
                )
                padded += frame.caplen > packet.link_header_len + total_length
    assert mismatches == [], f"{len(mismatches)} frames differ from tcpdump: {mismatches[:10]}"
    # The comparison really covered the cases the issue names.
    assert compared > 2000
    assert {0, 1, 101, 113, 229, 276} <= link_types  # NULL, Ethernet, raw, SLL, raw6, SLL2
    assert truncated >= 1
    assert padded >= 1


@pytest.mark.skipif(TCPDUMP is None, reason="tcpdump is not installed")
def test_dump_frames_picks_the_requested_frames(corpus_dir: Path) -> None:
    path = corpus_dir / "pcapplusplus__VlanPackets.pcap"
    dumps = dump_frames(path, [3, 1, 999])
    assert [number for number, _, _ in dumps] == [1, 3]
    theirs = tcpdump_dumps(path, "-X")
    assert dumps[1][2] == theirs[3]
    assert "IP 10.118.10.1 > 10.118.10.2: ICMP echo request" in dumps[0][1]


@pytest.mark.skipif(TCPDUMP is None, reason="tcpdump is not installed")
@pytest.mark.parametrize(
    "name", ["dpkt__http.pcap", "pcapplusplus__ICMPv6_echos.cap", "pcapplusplus__sll2.pcap"]
)
def test_summary_line_agrees_with_tcpdump(corpus_dir: Path, name: str) -> None:
    """Time, family, addresses, ports and TCP flags read as tcpdump's own line does."""
    path = corpus_dir / name
    assert TCPDUMP is not None
    result = subprocess.run(
        [TCPDUMP, "-nn", "-#", "-r", str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={"TZ": "UTC"},
    )
    theirs = {}
    for line in result.stdout.splitlines():
        match = NUMBERED.match(line)
        if match:
            theirs[int(match.group(1))] = line[match.end() :]
    checked = 0
    for frame, packet in iter_decoded(path):
        ours = summary_line(frame, packet)
        time_of_day, family, rest = ours.split(" ", 2)
        line = theirs[frame.number]
        assert line.startswith(time_of_day)
        assert f" {family} " in line
        endpoints = rest.split(":", 1)[0] if family == "IP" else rest.split(": ", 1)[0]
        assert endpoints in line
        if "Flags [" in ours:
            assert ours.split("Flags ")[1].split("]")[0] in line.split("Flags ")[1]
        if " ICMP6 echo " in ours:
            assert "ICMP6, echo" in line
        checked += 1
    assert checked == len(theirs)


def test_first_data_segments_of_a_reused_four_tuple_come_from_both_conversations(
    tmp_path: Path,
) -> None:
    """Two conversations on the same 4-tuple, one after the other: each gets its
    own first segments (a map by 4-tuple once kept only the later one)."""
    from netdiag.analysis.analyze import analyze_file
    from netdiag.report.hexdump import first_data_segments
    from tests.test_tcp import T0_NS, ipv4_tcp, write_pcap

    client, server = (bytes((10, 0, 0, 1)), 40000), (bytes((10, 0, 0, 2)), 80)
    frames = []
    for round_index, isn in enumerate((1000, 900_000)):
        now = T0_NS + round_index * 10**9
        payload = f"conversation {round_index}".encode()
        for offset, (source, destination, flags, seq, ack, data) in enumerate(
            [
                (client, server, 0x02, isn, 0, b""),
                (server, client, 0x12, 5000, isn + 1, b""),
                (client, server, 0x10, isn + 1, 5001, b""),
                (client, server, 0x18, isn + 1, 5001, payload),
                (server, client, 0x10, 5001, isn + 1 + len(payload), b""),
                (client, server, 0x04, isn + 1 + len(payload), 0, b""),
            ]
        ):
            packet = ipv4_tcp(source, destination, flags, seq, ack, 65535, data)
            frames.append((now + offset * 1_000_000, packet))
    capture = tmp_path / "reused.pcap"
    write_pcap(capture, frames)
    streams = analyze_file(capture).tcp
    assert len(streams) == 2 and streams[0].client == streams[1].client
    dumps = first_data_segments(
        capture, [(s.client, s.server, s.first_frame, s.last_frame) for s in streams], 2
    )
    assert len(dumps) == 2
    assert dumps[0].startswith("#4 ") and dumps[1].startswith("#10 ")
