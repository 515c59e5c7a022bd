"""The streaming capture reader against tshark's truth and hand-made files.

Every corpus file is read to the end without an exception, with tshark's
frame count, timestamps (to the microsecond), snaplen truncation and byte
total. Synthetic files written here with ``struct`` cover what the corpus
does not: both pcap byte orders and resolutions, pcapng with interfaces of
different resolutions, several sections of different byte order, simple and
obsolete packet blocks, and every kind of damage.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
import threading
import tracemalloc
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import corpus_files, load_truth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdiag.analysis.decode import Decoder
from netdiag.analysis.model import FileInfo
from netdiag.analysis.packet import RawFrame
from netdiag.analysis.reader import LINKTYPE_NONE, CaptureReader
from netdiag.errors import CaptureFormatError, InputError

NS = 1_000_000_000


def read_all(path: Path) -> tuple[list[RawFrame], FileInfo]:
    with CaptureReader(path) as reader:
        frames = list(reader)
        return frames, reader.info()


def truth_ns(text: str | None) -> int | None:
    return None if text is None else int(Decimal(text) * NS)


# -- corpus -------------------------------------------------------------------------

CORPUS = corpus_files()


@pytest.mark.parametrize("capture", CORPUS, ids=[path.name for path in CORPUS])
def test_corpus_file_agrees_with_tshark(capture: Path) -> None:
    truth = load_truth(capture)
    frames, info = read_all(capture)

    assert info.packets == truth["packets"] == len(frames)
    assert [frame.number for frame in frames] == list(range(1, len(frames) + 1))
    assert all(frame.caplen == len(frame.data) for frame in frames)
    assert info.truncated_frames == truth["frames_caplen_lt_len"]
    assert info.captured_bytes == truth["captured_bytes_total"]
    assert info.non_packet_frames == truth["non_packet_frames"]
    assert info.frames_without_timestamp == truth["frames_without_timestamp"]
    assert info.complete == truth["tshark_reads_whole_file"]
    if not info.complete:
        assert info.warnings, "an incomplete read must say why"

    header = truth["header"]
    if header["format"] == "pcap":
        assert info.format == "pcap"
        assert info.link_types == (header["linktype"],)
        assert info.byte_order == header["endianness"]
        assert info.ts_resolution == header["ts_resolution"]
    elif info.packets:
        assert info.format == "pcapng"
        assert set(info.link_types) == {i["linktype"] for i in header["interfaces"]}
        assert {frame.linktype for frame in frames} - {LINKTYPE_NONE} <= set(info.link_types)

    if capture.name == "tcpdump__timestamp_invalid_micro.pcap":
        # Out-of-range microseconds are carried into the seconds; tshark prints
        # them oddly (see the corpus README), so only the warning is checked.
        assert any("invalid timestamp" in warning for warning in info.warnings)
        return
    first, last = (
        truth_ns(truth["first_frame_time_epoch"]),
        truth_ns(truth["last_frame_time_epoch"]),
    )
    if first is None:
        assert info.first_ts_ns is None and info.last_ts_ns is None
    else:
        assert info.first_ts_ns is not None and info.last_ts_ns is not None
        assert abs(info.first_ts_ns - first) < 1000
        assert abs(info.last_ts_ns - last) < 1000
        assert info.first_ts == pytest.approx(first / NS)


def test_corpus_pcapng_frames_carry_their_interface_link_type(corpus_dir: Path) -> None:
    frames, info = read_all(corpus_dir / "pcapplusplus__pcapng-example.pcapng")
    by_interface = {(frame.interface, frame.linktype) for frame in frames}
    assert by_interface == {(0, 1), (1, 113)}
    assert info.ts_resolution == "mixed"


def test_corpus_custom_blocks_are_frames_without_packets(corpus_dir: Path) -> None:
    frames, info = read_all(corpus_dir / "gopacket__test202.pcapng")
    custom = [frame.number for frame in frames if frame.linktype == LINKTYPE_NONE]
    assert custom == [1, 7, 10]  # as tshark numbers them
    assert info.packets - info.non_packet_frames == 8
    assert info.byte_order == "big"
    assert [frame.caplen for frame in frames if frame.linktype == LINKTYPE_NONE] == [24, 60, 32]


def test_corpus_cut_file_says_where(corpus_dir: Path) -> None:
    _, info = read_all(corpus_dir / "markofu__http-fault-post.pcap")
    assert not info.complete
    assert any("cut short at byte 8877" in w and "frame 26" in w for w in info.warnings)


def test_corpus_damaged_section_header(corpus_dir: Path) -> None:
    frames, info = read_all(corpus_dir / "libpcap__shb-option-too-long.pcapng")
    assert frames == []
    assert not info.complete
    assert any("damaged pcapng block at byte 0" in warning for warning in info.warnings)


# -- synthetic pcap -------------------------------------------------------------------

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D


def pcap_bytes(
    records: list[tuple[int, int, bytes, int]],
    *,
    order: str = "<",
    magic: int = PCAP_MAGIC_US,
    linktype: int = 1,
    snaplen: int = 65535,
) -> bytes:
    """A pcap file: records are (seconds, fraction, data, original length)."""
    parts = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for seconds, fraction, data, wirelen in records:
        parts.append(struct.pack(order + "IIII", seconds, fraction, len(data), wirelen) + data)
    return b"".join(parts)


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_big_endian_microsecond_pcap(tmp_path: Path) -> None:
    records = [(1000, 1, b"\x01" * 60, 60), (1001, 999_999, b"\x02" * 40, 1500)]
    path = write(tmp_path, "be.pcap", pcap_bytes(records, order=">", linktype=113))
    frames, info = read_all(path)
    assert [f.ts_ns for f in frames] == [1000 * NS + 1000, 1001 * NS + 999_999_000]
    assert [(f.caplen, f.wirelen, f.linktype) for f in frames] == [(60, 60, 113), (40, 1500, 113)]
    assert frames[1].data == b"\x02" * 40
    assert frames[1] == RawFrame(2, 1001 * NS + 999_999_000, 113, 40, 1500, b"\x02" * 40, 0)
    assert info.byte_order == "big" and info.ts_resolution == "us" and info.complete
    assert info.truncated_frames == 1
    assert any("snapshot length" in warning for warning in info.warnings)


@pytest.mark.parametrize("order", ["<", ">"])
def test_nanosecond_pcap(tmp_path: Path, order: str) -> None:
    records = [(5, 123_456_789, b"abc", 3), (6, 1, b"de", 2)]
    path = write(tmp_path, "ns.pcap", pcap_bytes(records, order=order, magic=PCAP_MAGIC_NS))
    frames, info = read_all(path)
    assert [f.ts_ns for f in frames] == [5 * NS + 123_456_789, 6 * NS + 1]
    assert info.ts_resolution == "ns"
    assert info.first_ts_ns == 5 * NS + 123_456_789 and info.last_ts_ns == 6 * NS + 1


def test_empty_capture_with_header_only(tmp_path: Path) -> None:
    frames, info = read_all(write(tmp_path, "empty.pcap", pcap_bytes([])))
    assert frames == [] and info.packets == 0 and info.complete and info.first_ts is None


def test_file_cut_inside_record_data(tmp_path: Path) -> None:
    content = pcap_bytes([(1, 0, b"x" * 100, 100), (2, 0, b"y" * 100, 100)])
    path = write(tmp_path, "cut.pcap", content[:-30])
    frames, info = read_all(path)
    assert len(frames) == 1 and info.packets == 1
    assert not info.complete
    assert any("cut short at byte 140" in w and "frame 2" in w for w in info.warnings)


def test_file_cut_inside_record_header(tmp_path: Path) -> None:
    content = pcap_bytes([(1, 0, b"x" * 10, 10)]) + b"\x00" * 7
    frames, info = read_all(write(tmp_path, "cut.pcap", content))
    assert len(frames) == 1 and not info.complete
    assert any("record header of frame 2" in w for w in info.warnings)


def test_trailing_garbage_stops_with_warning(tmp_path: Path) -> None:
    content = pcap_bytes([(1, 0, b"x" * 10, 10)]) + b"\xff" * 64
    frames, info = read_all(write(tmp_path, "garbage.pcap", content))
    assert len(frames) == 1 and not info.complete
    assert any("corrupt record header at byte 50" in w for w in info.warnings)


def test_invalid_microseconds_are_carried_into_seconds(tmp_path: Path) -> None:
    content = pcap_bytes([(10, 999_999, b"a", 1), (10, 1_000_000, b"b", 1)])
    frames, info = read_all(write(tmp_path, "ts.pcap", content))
    assert frames[1].ts_ns == 11 * NS
    assert any("invalid timestamp" in w and "first frame 2" in w for w in info.warnings)


def test_modified_pcap_records(tmp_path: Path) -> None:
    header = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1)
    record = struct.pack("<IIII", 7, 5, 4, 4) + b"\x00" * 8 + b"data"
    frames, info = read_all(write(tmp_path, "kuznetzov.pcap", header + record))
    assert [(f.ts_ns, f.data) for f in frames] == [(7 * NS + 5000, b"data")]
    assert info.complete


def test_info_before_iteration_is_not_complete(tmp_path: Path) -> None:
    path = write(tmp_path, "one.pcap", pcap_bytes([(1, 0, b"x", 1)]))
    with CaptureReader(path) as reader:
        assert not reader.info().complete
        assert len(list(reader)) == 1
        assert reader.info().complete
        assert len(list(reader)) == 1  # a second pass reads the file again
        assert reader.info().packets == 1


# -- synthetic pcapng -----------------------------------------------------------------


def block(order: str, block_type: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack(order + "II", block_type, length) + body + struct.pack(order + "I", length)


def options(order: str, *items: tuple[int, bytes]) -> bytes:
    out = b""
    for code, value in items:
        out += struct.pack(order + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)
    return out + struct.pack(order + "HH", 0, 0) if items else out


def shb(order: str) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(order: str, linktype: int, snaplen: int = 0, *opts: tuple[int, bytes]) -> bytes:
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + options(order, *opts))


def epb(order: str, interface: int, ts: int, data: bytes, wirelen: int | None = None) -> bytes:
    wirelen = len(data) if wirelen is None else wirelen
    header = struct.pack(order + "IIIII", interface, ts >> 32, ts & 0xFFFFFFFF, len(data), wirelen)
    return block(order, 6, header + data)


def spb(order: str, data: bytes, wirelen: int) -> bytes:
    return block(order, 3, struct.pack(order + "I", wirelen) + data)


def test_pcapng_interfaces_with_different_resolutions(tmp_path: Path) -> None:
    order = "<"
    content = (
        shb(order)
        + idb(order, 1, 0)  # default 10^-6
        + idb(order, 113, 0, (9, b"\x09"))  # 10^-9
        + idb(order, 101, 0, (9, b"\x8a"), (14, struct.pack("<q", 100)))  # 2^-10, +100 s
        + block(order, 4, b"\x00" * 8)  # a name resolution block: skipped
        + block(order, 0x1234, b"\x01\x02")  # unknown block: skipped
        + epb(order, 0, 1_500_000_000_123_456, b"\x00" * 14)
        + epb(order, 1, 1_500_000_000_123_456_789, b"\x00" * 16)
        + epb(order, 2, 1024 * 5 + 512, b"\x45" + b"\x00" * 19)
    )
    frames, info = read_all(write(tmp_path, "multi.pcapng", content))
    assert [f.linktype for f in frames] == [1, 113, 101]
    assert [f.interface for f in frames] == [0, 1, 2]
    assert [f.ts_ns for f in frames] == [
        1_500_000_000_123_456_000,
        1_500_000_000_123_456_789,
        105 * NS + NS // 2,
    ]
    assert info.link_types == (1, 113, 101)
    assert info.ts_resolution == "mixed"
    assert info.complete and info.format == "pcapng"


def test_pcapng_sections_reset_interfaces_and_byte_order(tmp_path: Path) -> None:
    content = (
        shb(">")
        + idb(">", 1, 64)
        + epb(">", 0, 1_000_000, b"a" * 20, 100)
        + spb(">", b"b" * 64, 200)  # no timestamp; captured length capped by snaplen 64
        + shb("<")
        + idb("<", 0)
        + block("<", 0x00000BAD, struct.pack("<I", 32473) + b"custom!!")
        + block("<", 2, struct.pack("<HHIIII", 0, 0, 0, 3_000_000, 4, 4) + b"\x02\x00\x00\x00")
    )
    frames, info = read_all(write(tmp_path, "sections.pcapng", content))
    assert [(f.number, f.linktype, f.caplen, f.wirelen) for f in frames] == [
        (1, 1, 20, 100),
        (2, 1, 64, 200),
        (3, LINKTYPE_NONE, 8, 8),
        (4, 0, 4, 4),
    ]
    assert frames[3].ts_ns == 3 * NS
    assert info.byte_order == "big"
    assert info.link_types == (1, 0)
    assert info.non_packet_frames == 1
    assert info.frames_without_timestamp == 2  # the simple packet block and the custom block
    assert info.first_ts_ns == 1 * NS and info.last_ts_ns == 3 * NS
    assert info.truncated_frames == 2


def test_pcapng_packet_options_are_not_packet_bytes(tmp_path: Path) -> None:
    packet = b"p" * 13  # padded to 16 in the block, followed by an epb_flags option
    header = struct.pack("<IIIII", 0, 0, 5, len(packet), 99)
    flags = struct.pack("<HHI", 2, 4, 1) + struct.pack("<HH", 0, 0)
    body = header + packet + b"\x00" * 3 + flags
    content = shb("<") + idb("<", 1) + block("<", 6, body)
    frames, info = read_all(write(tmp_path, "options.pcapng", content))
    assert [(f.data, f.caplen, f.wirelen, f.ts_ns) for f in frames] == [(packet, 13, 99, 5000)]
    assert info.complete


def test_pcapng_cut_inside_block(tmp_path: Path) -> None:
    content = shb("<") + idb("<", 1) + epb("<", 0, 0, b"x" * 40) + epb("<", 0, 1, b"y" * 40)
    frames, info = read_all(write(tmp_path, "cut.pcapng", content[:-10]))
    assert len(frames) == 1 and not info.complete
    assert any("cut short" in warning and "after frame 1" in warning for warning in info.warnings)


def test_pcapng_damaged_block_trailer(tmp_path: Path) -> None:
    bad = bytearray(epb("<", 0, 0, b"y" * 40))
    bad[-4:] = struct.pack("<I", 999)
    content = shb("<") + idb("<", 1) + epb("<", 0, 0, b"x" * 40) + bytes(bad)
    frames, info = read_all(write(tmp_path, "damaged.pcapng", content))
    assert len(frames) == 1 and not info.complete
    assert any("damaged pcapng block" in warning for warning in info.warnings)


def test_pcapng_packet_for_undefined_interface(tmp_path: Path) -> None:
    content = shb("<") + idb("<", 1) + epb("<", 3, 0, b"x" * 40)
    frames, info = read_all(write(tmp_path, "noif.pcapng", content))
    assert frames == [] and not info.complete
    assert any("interface 3" in warning for warning in info.warnings)


def test_pcapng_huge_caplen_is_damage_not_allocation(tmp_path: Path) -> None:
    header = struct.pack("<IIIII", 0, 0, 0, 0x7FFFFFF0, 0x7FFFFFF0)
    content = shb("<") + idb("<", 1) + block("<", 6, header + b"x" * 16)
    frames, info = read_all(write(tmp_path, "huge.pcapng", content))
    assert frames == [] and not info.complete


# -- opening errors ---------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        CaptureReader(tmp_path / "nope.pcap")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        CaptureReader(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"empty \(0 bytes\)") as caught:
        CaptureReader(write(tmp_path, "empty.pcap", b""))
    assert not isinstance(caught.value, CaptureFormatError)
    assert "\n" not in caught.value.message


def test_garbage_file_is_not_a_capture(tmp_path: Path) -> None:
    path = write(tmp_path, "notes.txt", b"hello, this is not a capture\n" * 10)
    with pytest.raises(CaptureFormatError, match="not a pcap or pcapng capture") as caught:
        CaptureReader(path)
    assert str(path) in caught.value.message and "\n" not in caught.value.message


def test_pcap_header_cut_short(tmp_path: Path) -> None:
    with pytest.raises(CaptureFormatError, match="cut short"):
        CaptureReader(write(tmp_path, "short.pcap", pcap_bytes([])[:10]))


# -- streaming memory ---------------------------------------------------------------------


def peak_memory_reading(path: Path) -> int:
    tracemalloc.start()
    try:
        with CaptureReader(path) as reader:
            count = sum(1 for _ in reader)
        assert count > 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_file_size(tmp_path: Path) -> None:
    record = (1, 0, b"\xaa" * 1000, 1000)
    small = write(tmp_path, "small.pcap", pcap_bytes([record] * 4_000))  # ~4 MB
    large = write(tmp_path, "large.pcap", pcap_bytes([record] * 16_000))  # ~16 MB
    small_peak = peak_memory_reading(small)
    large_peak = peak_memory_reading(large)
    assert large_peak < 8 << 20  # a few read chunks, not the file
    assert large_peak < small_peak * 1.5


# -- reading from a pipe, and as a user who may not read ---------------------------------


def test_reading_from_a_fifo(tmp_path: Path) -> None:
    """A named pipe (no size, no seek) streams like a file, skipped blocks included."""
    fifo = tmp_path / "capture.pipe"
    os.mkfifo(fifo)
    content = shb("<") + idb("<", 1) + block("<", 5, b"\x00" * 4000) + epb("<", 0, 7, b"z" * 60)
    writer = threading.Thread(target=fifo.write_bytes, args=(content,))
    writer.start()
    try:
        frames, info = read_all(fifo)
    finally:
        writer.join(timeout=10)
    assert [(f.number, f.ts_ns, f.data) for f in frames] == [(1, 7000, b"z" * 60)]
    assert info.complete


def test_permission_denied_for_an_unprivileged_user(tmp_path: Path) -> None:
    """As root the mode bits do not bite, so a child drops to ``nobody`` first."""
    path = write(tmp_path, "secret.pcap", pcap_bytes([]))
    path.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(InputError, match="permission denied"):
            CaptureReader(path)
        return
    code = (
        "import os, sys\n"
        "from netdiag.analysis.reader import CaptureReader\n"
        "from netdiag.errors import InputError\n"
        "os.setgid(65534); os.setuid(65534)\n"  # after the imports: /root is closed to nobody
        "try:\n"
        "    CaptureReader(sys.argv[1])\n"
        "except InputError as error:\n"
        "    print(error.message)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=60,
    )
    assert "permission denied" in result.stdout and str(path) in result.stdout


# -- damaged files from the corpus: never an uncaught exception ----------------------------


CORPUS_BYTES = {path.name: path.read_bytes() for path in CORPUS if path.stat().st_size > 24}


@pytest.mark.skipif(not CORPUS_BYTES, reason="shared corpus not found")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_corpus_files_never_raise(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(CORPUS_BYTES)))
    content = bytearray(CORPUS_BYTES[name])
    for _ in range(data.draw(st.integers(1, 12))):
        position = data.draw(st.integers(0, len(content) - 1))
        content[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(content) // 2, len(content)))
    tail = data.draw(st.binary(max_size=64))
    mutated = bytes(content[:cut]) + tail
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / name
        path.write_bytes(mutated)
        try:
            reader = CaptureReader(path)
        except InputError:  # includes CaptureFormatError: a broken magic number
            return
        decoder = Decoder()
        with reader:
            frames = 0
            for frame in reader:
                frames += 1
                assert frame.caplen == len(frame.data)
                decoder.decode(frame)
            info = reader.info()
    assert info.packets == frames <= len(mutated) // 12
    counts = decoder.counts()
    assert counts.ipv4 + counts.ipv6 + counts.arp + counts.other + counts.undecodable == frames
