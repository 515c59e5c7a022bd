"""Fuzzing the capture analyzer with mutated corpus files.

Promise (issues 3 and 7): no input makes the analyzer raise anything but a
``NetdiagError`` (which the CLI turns into one line and exit 2), hang, or grow
memory beyond its bound. CI runs a bounded number of examples; set
``NETDIAG_FUZZ_EXAMPLES`` (e.g. 5000) to fuzz longer on request.
"""

from __future__ import annotations

import os
import signal
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdiag.errors import NetdiagError
from tests.conftest import corpus_files

EXAMPLES = int(os.environ.get("NETDIAG_FUZZ_EXAMPLES", "150"))
HANG_GUARD_SECONDS = 30  # a guard against infinite loops, not a speed check
MEMORY_BOUND_BYTES = 64 * 1024 * 1024  # inputs are < 2 MiB; the analyzer must stay far below this

SEEDS = [path for path in corpus_files() if path.stat().st_size <= 64 * 1024]


class HangError(Exception):
    pass


@contextmanager
def hang_guard(seconds: int) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise HangError(f"analyzer still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@st.composite
def mutated_capture(draw: st.DrawFn) -> bytes:
    seed = draw(st.sampled_from(SEEDS))
    data = bytearray(seed.read_bytes())
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        if not data:
            break
        operation = draw(st.sampled_from(["flip", "set", "cut", "insert", "zero-run"]))
        position = draw(st.integers(min_value=0, max_value=len(data) - 1))
        if operation == "flip":
            data[position] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif operation == "set":
            data[position] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif operation == "cut":
            del data[position:]
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        else:
            length = draw(st.integers(min_value=1, max_value=32))
            data[position : position + length] = b"\xff" * length
    return bytes(data)


def analyze_bytes(tmp_path: Path, data: bytes) -> None:
    from netdiag.analysis.analyze import analyze_file

    capture = tmp_path / "fuzz.pcap"
    capture.write_bytes(data)
    tracemalloc.start()
    try:
        with hang_guard(HANG_GUARD_SECONDS):
            try:
                analysis = analyze_file(capture)
            except NetdiagError:
                return  # a clear, reported error is an acceptable outcome
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND_BYTES, f"analyzer used {peak} bytes on a {len(data)}-byte input"
    # Every frame is accounted for at the decode boundary.
    counts = analysis.decode
    classified = counts.ipv4 + counts.ipv6 + counts.arp + counts.other + counts.undecodable
    assert classified <= analysis.file.packets
    analysis.to_json()  # the document must be serialisable whatever the input


@pytest.mark.skipif(not SEEDS, reason="shared corpus not found beside the project")
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(data=mutated_capture())
def test_mutated_captures_never_crash(tmp_path: Path, data: bytes) -> None:
    analyze_bytes(tmp_path, data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xd4\xc3\xb2\xa1",
        b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + b"\x00" * 16,
        b"\x0a\x0d\x0d\x0a" + b"\xff" * 40,
        b"GIF89a" + b"\x00" * 100,
        b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00"
        + b"\x00" * 8
        + b"\xff\xff\x00\x00\x01\x00\x00\x00"
        + b"\x00" * 8
        + b"\xff\xff\xff\x7f" * 2,
    ],
    ids=["empty", "magic-only", "header-no-records", "pcapng-garbage", "gif", "huge-caplen"],
)
def test_hostile_headers(tmp_path: Path, data: bytes) -> None:
    analyze_bytes(tmp_path, data)
