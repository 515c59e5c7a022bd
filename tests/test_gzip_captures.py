"""Gzip-compressed captures (Wireshark's "compress with gzip", a downloaded
.pcap.gz): read as if decompressed first, and agreeing with tshark, which
reads them too.

Every corpus capture compressed gives the same analysis as the plain file; a
compressed stream cut short gives what tshark gives (the frames before the
cut, the file marked incomplete); damaged compressed data is one error line,
exit 2; a compressed stream from a pipe is refused with the command that
decompresses it.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from netdiag.analysis.analyze import analyze_file
from netdiag.analysis.shares import analyze_in_shares
from netdiag.errors import InputError
from tests.conftest import corpus_files

CORPUS = corpus_files()
TSHARK = shutil.which("tshark")


def compressed(source: Path, folder: Path) -> Path:
    target = folder / (source.name + ".gz")
    target.write_bytes(gzip.compress(source.read_bytes()))
    return target


def document(path: Path) -> str:
    """The analysis document, the file's path (also in hints) replaced by FILE."""
    text = json.dumps(analyze_file(path, plot_data=False).to_json(), indent=1)
    return text.replace(json.dumps(str(path))[1:-1], "FILE")


@pytest.mark.parametrize("capture", CORPUS, ids=[path.name for path in CORPUS])
def test_a_compressed_capture_is_analysed_as_the_plain_one(capture: Path, tmp_path: Path) -> None:
    try:
        expected = document(capture)
    except InputError:
        with pytest.raises(InputError):
            document(compressed(capture, tmp_path))
        return
    assert document(compressed(capture, tmp_path)) == expected


def test_a_compressed_capture_split_in_shares_equals_one_pass(tmp_path: Path) -> None:
    capture = compressed(Path(next(p for p in CORPUS if p.name == "dpkt__http.pcap")), tmp_path)
    assert analyze_in_shares(capture, 2, plot_data=True) == analyze_file(capture, plot_data=True)


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (cross-check only)")
def test_a_compressed_stream_cut_short_keeps_what_tshark_keeps(tmp_path: Path) -> None:
    assert TSHARK is not None
    plain = next(p for p in CORPUS if p.name == "dpkt__http.pcap")
    whole = gzip.compress(plain.read_bytes())
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    listed = subprocess.run(
        [TSHARK, "-n", "-r", str(cut), "-T", "fields", "-e", "frame.number"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    info = analyze_file(cut, plot_data=False).file
    assert 0 < info.packets == len(listed) < 43
    assert not info.complete
    assert any("gzip-compressed data ends early" in warning for warning in info.warnings)


def netdiag(*arguments: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "netdiag", *arguments],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("where", ["middle", "checksum"])
def test_damaged_compressed_data_ends_the_reading_with_a_warning(
    tmp_path: Path, where: str
) -> None:
    """Damage in the compressed data is damage as in a plain file: reading ends
    there, what was read is analysed, and the file is marked incomplete."""
    plain = next(p for p in CORPUS if p.name == "dpkt__http.pcap")
    data = bytearray(gzip.compress(plain.read_bytes()))
    data[len(data) // 2 if where == "middle" else -8] ^= 0xFF  # the trailer's CRC-32
    damaged = tmp_path / "damaged.pcap.gz"
    damaged.write_bytes(bytes(data))
    result = netdiag("analyze", str(damaged), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)["file"]
    assert not info["complete"] and info["warnings"]
    if where == "checksum":  # every frame came out, then the check failed
        assert info["packets"] == 43
        assert info["warnings"][0].startswith("the gzip-compressed data is damaged (CRC check")


def test_compressed_data_that_cannot_start_is_one_error_line(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.pcap.gz"
    damaged.write_bytes(b"\x1f\x8b" + b"not deflate at all" * 4)
    result = netdiag("analyze", str(damaged), "--json")
    assert result.returncode == 2
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith(
        f"netdiag: error: capture file {damaged} is gzip-compressed and cannot be decompressed ("
    )
    assert lines[1] == f"netdiag: check it with: gzip -t {damaged}"


def test_a_compressed_stream_from_a_pipe_is_refused_with_the_way_round(tmp_path: Path) -> None:
    from netdiag.analysis.reader import CaptureReader

    plain = next(p for p in CORPUS if p.name == "dpkt__http.pcap")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        # The reader refuses the stream after its first bytes: a broken pipe here.
        with open(fifo, "wb") as pipe, contextlib.suppress(BrokenPipeError):
            pipe.write(gzip.compress(plain.read_bytes()))

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        with pytest.raises(InputError) as refused:
            CaptureReader(fifo)
    finally:
        writer.join(timeout=30)
    assert refused.value.advice == f"decompress it first: zcat {fifo} > capture.pcap"


def test_hexdump_of_a_compressed_capture_is_the_plain_ones(tmp_path: Path) -> None:
    plain = next(p for p in CORPUS if p.name == "dpkt__http.pcap")
    expected = netdiag("hexdump", str(plain))
    actual = netdiag("hexdump", str(compressed(plain, tmp_path)))
    assert expected.returncode == actual.returncode == 0
    assert actual.stdout == expected.stdout and len(actual.stdout) > 1000
