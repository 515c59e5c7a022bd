"""The fast and lean paths of ``netdiag analyze --json`` give the slow path's bytes (issue 6).

* ``write_analyses_json`` (record-by-record JSON) against
  ``json_text(report_document(...))`` (the whole document at once), for one
  file and for a list of files, on every corpus capture.
* ``analyze_file(plot_data=False)`` (no plot points kept) against the default,
  on the JSON document, which never carries plot points.
* The mypyc-compiled analysis modules against pure Python, each in its own
  interpreter, on every corpus file: the JSON documents and the full records,
  in memory and with every record spilled to disk (analysis/store.py).
* The analysis pass (``scan_frames``: the reader's record tuples, Ethernet/IPv4/TCP
  frames straight from ``Decoder.fast_tcp_fields`` to ``TcpTracker.process_fields``)
  against the plain route (``RawFrame`` -> ``DecodedPacket`` -> ``process``), frame
  by frame on every corpus file.
"""

from __future__ import annotations

import collections
import enum
import io
import json
import math
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

import netdiag.analysis._compiled as compiled_module
from netdiag.analysis._compiled import PURE_PYTHON_VARIABLE, fresh_build
from netdiag.analysis.analyze import analyze_file
from netdiag.analysis.decode import Decoder
from netdiag.analysis.icmp import ArpTracker, IcmpTracker
from netdiag.analysis.reader import CaptureReader
from netdiag.analysis.scan import scan_frames, tcp_header_missing
from netdiag.analysis.store import SPILL_AFTER_VARIABLE
from netdiag.analysis.tcp import TcpTracker
from netdiag.errors import NetdiagError
from netdiag.report import json_text, jsonstream, report_document
from netdiag.report.jsonstream import write_analyses_json
from tests.conftest import PROJECT_ROOT, corpus_files

CORPUS = corpus_files()


def _streamed(analyses: list[object], jobs: int = 1) -> str:
    out = io.StringIO()
    write_analyses_json(analyses, out, jobs)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.mark.parametrize("capture", CORPUS, ids=[path.name for path in CORPUS])
def test_streamed_json_is_byte_identical(capture: Path) -> None:
    analysis = analyze_file(capture)
    assert _streamed([analysis]) == json_text(report_document([analysis]))
    # No plot points: the same document (seq_points/rtt_samples are not in it).
    lean = analyze_file(capture, plot_data=False)
    assert all(not stream.seq_points and not stream.rtt_samples for stream in lean.tcp)
    assert _streamed([lean]) == json_text(report_document([analysis]))


@pytest.mark.parametrize("spill_after", [None, "0"], ids=["in-memory", "spilled"])
def test_long_lists_written_by_two_processes_are_the_same_bytes(
    corpus_dir: Path, spill_after: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With jobs > 1 a forked child encodes every other block of a long list (tiny
    thresholds here, so that every corpus list with a few records is split)."""
    if spill_after is not None:
        monkeypatch.setenv(SPILL_AFTER_VARIABLE, spill_after)
    monkeypatch.setattr(jsonstream, "PARALLEL_RECORDS", 4)
    monkeypatch.setattr(jsonstream, "BLOCK_RECORDS", 3)
    split = 0
    for capture in CORPUS:
        try:
            analysis = analyze_file(capture, plot_data=False)
        except NetdiagError:
            continue
        split += len(analysis.tcp) >= 4
        assert _streamed([analysis], jobs=2) == _streamed([analysis]), capture.name
    assert split >= 5


def test_records_a_dead_child_did_not_send_are_encoded_by_the_parent(
    corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    analysis = max(
        (analyze_file(path, plot_data=False) for path in CORPUS[:12] if path.suffix == ".pcap"),
        key=lambda analysis: len(analysis.tcp),
    )
    assert len(analysis.tcp) >= 12
    monkeypatch.setattr(jsonstream, "PARALLEL_RECORDS", 4)
    monkeypatch.setattr(jsonstream, "BLOCK_RECORDS", 2)
    encode = jsonstream._encode_blocks_in_child

    def dies_after_one_block(records: Any, level: int, pipe: Any) -> None:
        encode(records[:4], level, pipe)  # the texts of records 2 and 3 only
        raise RuntimeError("the child fails")

    monkeypatch.setattr(jsonstream, "_encode_blocks_in_child", dies_after_one_block)
    assert _streamed([analysis], jobs=2) == _streamed([analysis])


def test_streamed_json_of_several_files_and_none(corpus_dir: Path) -> None:
    analyses = [analyze_file(path) for path in CORPUS[:3]]
    assert len(analyses) == 3
    assert _streamed(analyses) == json_text(report_document(analyses))
    assert _streamed([]) == json_text(report_document([]))


def test_the_corpus_records_take_the_orjson_route() -> None:
    """The byte-identity tests above cover orjson's text only if records use it."""
    records = [record for path in CORPUS for record in analyze_file(path).tcp]
    safe = [jsonstream._orjson_safe(record.to_json().values()) for record in records]
    # All of them today; a capture with odd times (huge, NaN) may add a few.
    assert len(records) > 100 and sum(safe) >= 0.9 * len(records)


# -- the analysis pass against the plain per-packet route --------------------------


def _observed_tcp(path: Path, through_scan: bool) -> tuple[list[object], object, str]:
    """Every TCP frame's (frame, stream, analysis bits, ack_rtt), the decode counts and
    the finished streams, by the pass or by decoding each RawFrame into a packet."""
    decoder, tcp = Decoder(), TcpTracker()
    seen: list[object] = []
    tcp.on_frame = lambda *observed: seen.append(observed)
    with CaptureReader(path) as reader:
        if through_scan:
            scan_frames(reader, decoder, tcp, IcmpTracker(), ArpTracker())
        else:
            for frame in reader:
                packet = decoder.decode(frame)
                if packet.proto != 6 or packet.fragment is None:
                    continue
                if not (packet.l4_truncated and tcp_header_missing(packet)):
                    tcp.process(packet)
    return seen, decoder.counts(), repr(tcp.finish())


@pytest.mark.parametrize("capture", CORPUS, ids=[path.name for path in CORPUS])
def test_the_pass_equals_decoding_every_packet(capture: Path) -> None:
    try:
        plain = _observed_tcp(capture, through_scan=False)
    except NetdiagError:
        pytest.skip("not a capture the reader opens")
    assert _observed_tcp(capture, through_scan=True) == plain


# -- mypyc-compiled modules against pure Python ---------------------------------

_DUMP_CORPUS = """
import json, sys
from dataclasses import replace
from pathlib import Path
import netdiag.analysis
from netdiag.analysis.analyze import analyze_file
from netdiag.errors import NetdiagError
result = {"compiled": netdiag.analysis.COMPILED, "files": {}}
for path in sorted(Path(sys.argv[1]).iterdir()):
    if path.name.endswith(".truth.json"):
        continue
    try:
        analysis = analyze_file(path)
    except NetdiagError as error:
        result["files"][path.name] = {"error": f"{type(error).__name__}: {error}"}
        continue
    # The JSON document, and the full records (plot points, flagged frames) as
    # text; lists read back from disk (analysis/store.py) are written out whole.
    listed = replace(
        analysis,
        tcp=tuple(analysis.tcp),
        icmp_echo=tuple(analysis.icmp_echo),
        icmp_errors=tuple(analysis.icmp_errors),
        findings=tuple(analysis.findings),
    )
    result["files"][path.name] = {"json": analysis.to_json(), "repr": repr(listed)}
json.dump(result, sys.stdout)
"""


def _corpus_results(
    corpus_dir: Path, pure_python: bool, spill_after: str | None = None
) -> dict[str, object]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in (PURE_PYTHON_VARIABLE, SPILL_AFTER_VARIABLE)
    }
    if pure_python:
        environment[PURE_PYTHON_VARIABLE] = "1"
    if spill_after is not None:
        environment[SPILL_AFTER_VARIABLE] = spill_after
    completed = subprocess.run(
        [sys.executable, "-c", _DUMP_CORPUS, str(corpus_dir)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=PROJECT_ROOT,
        check=True,
    )
    result: dict[str, object] = json.loads(completed.stdout)
    return result


# "0": every record spilled to disk and every TCP conversation retired and
# revived at each packet (analysis/store.py), through the compiled modules too.
@pytest.mark.parametrize("spill_after", [None, "0"], ids=["in-memory", "spilled"])
def test_compiled_modules_give_the_pure_python_results(
    corpus_dir: Path, spill_after: str | None
) -> None:
    if not fresh_build():
        pytest.skip("no mypyc build of the current sources (make builds one: build_mypyc.py)")
    compiled = _corpus_results(corpus_dir, pure_python=False, spill_after=spill_after)
    pure = _corpus_results(corpus_dir, pure_python=True, spill_after=spill_after)
    assert compiled["compiled"] is True
    assert pure["compiled"] is False
    compiled_files = compiled["files"]
    pure_files = pure["files"]
    assert isinstance(compiled_files, dict) and isinstance(pure_files, dict)
    assert len(pure_files) == len(CORPUS)
    assert sorted(compiled_files) == sorted(pure_files)
    for name, expected in pure_files.items():
        assert compiled_files[name] == expected, name


def test_a_stale_build_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A manifest whose digest is not the sources' (a .py edited since) turns the build off."""
    manifest = tmp_path / "manifest.json"
    monkeypatch.setattr(compiled_module, "MANIFEST", manifest)
    assert not compiled_module.fresh_build()  # no manifest
    manifest.write_text(json.dumps({"digest": "0" * 64}), encoding="utf-8")
    path: list[str] = ["/nowhere"]
    assert not compiled_module.activate(path)
    assert path == ["/nowhere"]
    manifest.write_text(json.dumps({"digest": compiled_module.source_digest()}), encoding="utf-8")
    monkeypatch.delenv(PURE_PYTHON_VARIABLE, raising=False)
    assert compiled_module.activate(path)
    assert path[0] == str(compiled_module.LIBRARY_DIR / "netdiag" / "analysis")


class _Text(str):
    pass


class _Number(int):
    pass


class _Real(float):
    pass


class _Row(list[int]):
    pass


class _Table(dict[str, bool]):
    pass


def test_the_record_encoder_writes_what_json_dumps_writes() -> None:
    """Edge values the corpus may not hold: non-str keys, NaN/inf, unicode, empties."""
    value = {
        "text": 'quote " backslash \\ newline \n tab \t nul \0 é ✓ \U0001f600',
        "numbers": [0, -1, 2**70, 1.5, -0.0, 1e300, float("nan"), float("inf"), -float("inf")],
        # Where orjson writes otherwise or refuses (the route below avoids it).
        "orjson_differs": [1e-05, -2.5e-07, 1e16, 2**64, -(2**63) - 1, "\ud800"],
        "flags": [True, False, None],
        "empty": [[], {}, (), ""],
        "nested": {"a": [{"b": ({"c": []},)}]},
        7: "int key",
        2.5: "float key",
        True: "bool key",
        None: "None key",
        # Subclasses take the general route, in json's order of tests.
        "subclasses": [_Text("s"), _Number(3), _Real(0.5), _Row([1]), _Table({_Text("k"): True})],
        "flags_in_a_dict": {"on": True, "off": False, "nan": float("nan")},
    }
    text = json.dumps(value, indent=2, ensure_ascii=False)
    for level in (0, 1, 3):
        expected = text.replace("\n", "\n" + "  " * level)
        assert jsonstream._dumps(value, level) == expected


class _Colour(enum.Enum):
    RED = 1


class _Level(enum.IntEnum):
    HIGH = 2


_Pair = collections.namedtuple("_Pair", "left right")


def _nested_lists(depth: int) -> list[Any]:
    outer: list[Any] = []
    inner = outer
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return outer


# Values orjson writes otherwise than json.dumps(indent=2, ensure_ascii=False),
# or refuses: the writer must route each to the interpreted encoder.
_ODD_FLOATS = [1e-5, -2.5e-7, 9.999e-5, 5e-324, 1e16, -1.5e16, 1e22, 1e300]
_ODD_FLOATS += [math.nan, math.inf, -math.inf]
_ODD_VALUES: list[Any] = [
    *_ODD_FLOATS,
    2**64,
    -(2**63) - 1,
    2**70,
    {1: "int key"},
    {2.5: "float key"},
    {True: "bool key"},
    {None: "None key"},
    {_Text("k"): "str subclass key"},
    "lone surrogate \ud800",
    {"a": ["\udfff"]},
    _Level.HIGH,
    _Pair(1, 2),
    _Text("s"),
    _Number(3),
    _Real(0.5),
    _Row([1]),
    _Table({"k": True}),
    _nested_lists(300),
]
# Values it must write exactly as json does (they take the orjson route).
_PLAIN_VALUES: list[Any] = [
    0.0,
    -0.0,
    1e-4,
    -1e-4,
    math.nextafter(1e-4, 1.0),
    math.nextafter(1e16, 0.0),
    9999999999999998.0,
    1764000000.008252,
    0.1 + 0.2,
    2**64 - 1,
    -(2**63),
    "".join(chr(code) for code in range(0x800)) + "\u2028\u2029\ufeff\U0001f600\U0010ffff",
    {"b": 1, "a": [], "c": {}, "d": (), "e": [[]], "f": {"g": None, "h": True, "i": False}},
    _nested_lists(200),
]


def _json_at(value: Any, level: int) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n" + "  " * level)


def test_the_orjson_route_writes_what_json_dumps_writes() -> None:
    """``_text`` (orjson where it agrees) against json.dumps, value by value."""
    # Else every value takes the interpreted encoder and this test proves little.
    assert jsonstream.ORJSON_AGREES
    rng = random.Random(8)
    floats = [rng.uniform(-1, 1) * 10.0 ** rng.randint(-4, 15) for _ in range(5_000)]
    floats += [round(rng.uniform(0, 1e9), rng.randint(0, 6)) for _ in range(5_000)]
    for value in [*_PLAIN_VALUES, floats]:
        if not isinstance(value, dict | list):
            assert jsonstream._orjson_safe((value,))
        for level in (0, 1, 3):
            for wrapped in (value, [value], {"key": value}):
                assert jsonstream._text(wrapped, level) == _json_at(wrapped, level)
    for value in _ODD_VALUES:
        for level in (0, 2):
            for wrapped in (value, [1, value], {"key": value, "other": 0.5}):
                assert jsonstream._text(wrapped, level) == _json_at(wrapped, level), value
    # Types json refuses are refused the same way, not written by orjson.
    for refused in (_Colour.RED, uuid.UUID(int=5), {"key": [_Colour.RED]}):
        with pytest.raises(TypeError):
            json.dumps(refused, indent=2, ensure_ascii=False)
        with pytest.raises(TypeError):
            jsonstream._text(refused, 1)


def test_the_orjson_route_is_taken_only_where_orjson_agrees() -> None:
    """What keeps the odd values off orjson: the walk, or orjson's own refusal."""
    # Why: orjson writes these otherwise than json.
    for value, written in ((1e-5, "0.00001"), (2.5e-7, "2.5e-7"), (math.nan, "null")):
        assert orjson.dumps(value).decode() == written != json.dumps(value)
    for value in [*_ODD_FLOATS, _Level.HIGH, _Pair(1, 2), _Text("s"), _Real(0.5), _Row([1])]:
        assert not jsonstream._orjson_safe((value,)), value
        assert not jsonstream._orjson_safe(([{"key": value}],)), value
    for value in [2**64, 2**70, {1: "int key"}, "\ud800", _nested_lists(300)]:
        with pytest.raises(orjson.JSONEncodeError):
            orjson.dumps(value, option=orjson.OPT_INDENT_2)
