"""Finished records on disk and retired conversations give the in-memory results (issue 6).

``NETDIAG_SPILL_AFTER=0`` makes every store spill every record and the TCP
tracker retire every conversation before every packet, so each packet goes
through a revival from disk. Over the whole corpus that path must give the
in-memory path's records, field by field, the same JSON bytes, findings and
summaries, and survive the pickling ``--jobs`` does.
"""

from __future__ import annotations

import ast
import dataclasses
import gc
import io
import marshal
import os
import pickle
import random
from pathlib import Path
from typing import Any

import pytest

from netdiag.analysis import store as store_module
from netdiag.analysis import tcp as tcp_module
from netdiag.analysis.analyze import analyze_file, analyze_files
from netdiag.analysis.findings import MAX_FINDING_FRAMES, build_findings
from netdiag.analysis.icmp import IcmpTracker, ping_stats, summarize
from netdiag.analysis.model import (
    Analysis,
    FileInfo,
    Finding,
    IcmpEcho,
    IcmpError,
    RttSample,
    RttSampleStats,
    SeqPoint,
    StreamFindings,
    TcpStream,
    TimelineEntry,
)
from netdiag.analysis.store import (
    SPILL_AFTER_VARIABLE,
    Codec,
    FindingCodec,
    IcmpErrorCodec,
    RecordStore,
    SpilledRecords,
    StreamFindingsCodec,
    TcpStreamCodec,
    _record_builder,
)
from netdiag.errors import NetdiagError
from netdiag.report import json_text, report_document
from netdiag.report.jsonstream import write_analyses_json
from tests.conftest import PROJECT_ROOT, corpus_files
from tests.test_icmp import A, B, echo
from tests.test_tcp import T0_NS

CORPUS = corpus_files()
IN_MEMORY = "1000000000"


def _analyze(path: Path, spill_after: str, monkeypatch: pytest.MonkeyPatch) -> Analysis | None:
    monkeypatch.setenv(SPILL_AFTER_VARIABLE, spill_after)
    try:
        return analyze_file(path)
    except NetdiagError:
        return None


def _streamed(analysis: Analysis) -> str:
    out = io.StringIO()
    write_analyses_json([analysis], out)
    return out.getvalue()


def _open_descriptors() -> dict[str, str]:
    """Descriptor -> what it points at (the listing's own descriptor is gone by then)."""
    targets = {}
    for descriptor in os.listdir("/proc/self/fd"):
        try:
            targets[descriptor] = os.readlink(f"/proc/self/fd/{descriptor}")
        except FileNotFoundError:
            continue
    return targets


def test_spilled_path_gives_the_in_memory_records(
    corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    revived = 0
    original_finish = tcp_module.TcpTracker.finish

    def counting_finish(tracker: tcp_module.TcpTracker) -> object:
        nonlocal revived
        revived += tracker.revived
        return original_finish(tracker)

    monkeypatch.setattr(tcp_module.TcpTracker, "finish", counting_finish)
    compared = 0
    for path in CORPUS:
        memory = _analyze(path, IN_MEMORY, monkeypatch)
        spilled = _analyze(path, "0", monkeypatch)
        if memory is None:
            assert spilled is None, path.name
            continue
        assert spilled is not None
        for name in ("tcp", "icmp_echo", "icmp_errors", "findings"):
            kept = getattr(memory, name)
            read_back = getattr(spilled, name)
            assert isinstance(kept, tuple), (path.name, name)
            # Every non-empty list went to disk, and reads back record by record.
            assert isinstance(read_back, SpilledRecords) or not kept, (path.name, name)
            assert len(read_back) == len(kept), (path.name, name)
            assert list(read_back) == list(kept), (path.name, name)
            if kept:
                assert read_back[0] == kept[0] and read_back[-1] == kept[-1]
                assert tuple(read_back[1:3]) == kept[1:3]
        assert spilled == memory, path.name
        assert spilled.icmp_echo_summary == memory.icmp_echo_summary, path.name
        assert _streamed(spilled) == json_text(report_document([memory])), path.name
        # What --jobs ships back: the rows travel, the records compare equal.
        assert pickle.loads(pickle.dumps(spilled)) == memory, path.name
        compared += 1
    assert compared >= 30
    assert revived > 1000  # the path really went through revivals


def test_jobs_return_spilled_analyses(corpus_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [path for path in CORPUS if path.suffix in (".pcap", ".pcapng")][:4]
    monkeypatch.setenv(SPILL_AFTER_VARIABLE, IN_MEMORY)
    expected = analyze_files(paths, jobs=1)
    monkeypatch.setenv(SPILL_AFTER_VARIABLE, "0")
    results = analyze_files(paths, jobs=2)
    assert results == expected
    assert any(isinstance(result.tcp, SpilledRecords) for result in results)


def test_temporary_files_have_no_name_and_close_with_their_records(
    corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gc.collect()
    before = _open_descriptors()
    largest = max(CORPUS, key=lambda path: path.stat().st_size)
    analysis = _analyze(largest, "0", monkeypatch)
    assert analysis is not None and isinstance(analysis.tcp, SpilledRecords)
    opened = _open_descriptors().items() - before.items()
    assert opened  # the spilled lists hold their files open...
    for _descriptor, target in opened:
        assert target.endswith("(deleted)"), target  # ...and no file has a name
    del analysis
    gc.collect()
    assert _open_descriptors().items() - before.items() == set()


def test_a_failed_pass_leaves_no_file_open(
    tmp_path: Path, corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = max(CORPUS, key=lambda path: path.stat().st_size)
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(capture.read_bytes()[:-7])  # a cut record: the reader warns, goes on
    not_a_capture = tmp_path / "text.pcap"
    not_a_capture.write_text("not a capture\n" * 100)
    gc.collect()
    before = _open_descriptors()
    monkeypatch.setenv(SPILL_AFTER_VARIABLE, "0")
    with pytest.raises(NetdiagError):
        analyze_file(not_a_capture)
    cut = analyze_file(broken)
    assert not cut.file.complete
    del cut
    gc.collect()
    assert _open_descriptors().items() - before.items() == set()


@pytest.mark.parametrize(
    "record_class", [TcpStream, TimelineEntry, RttSampleStats, RttSample, SeqPoint]
)
def test_record_builder_makes_what_the_constructor_makes(record_class: type) -> None:
    names = [field.name for field in dataclasses.fields(record_class)]
    values = [f"value of {name}" for name in names]
    built = _record_builder(record_class)(values)
    assert type(built) is record_class
    assert built == record_class(*values)
    for name, value in zip(names, values, strict=True):
        assert getattr(built, name) is value
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, names[0], 0)


def _distinct(record_class: type, tag: str, nested: dict[str, object]) -> object:
    """A ``record_class`` whose every field holds a value of its own (``nested``
    gives the fields that hold records): no field equals its default or another."""
    values = {
        field.name: nested.get(field.name, f"{tag}.{field.name}")
        for field in dataclasses.fields(record_class)
    }
    return record_class(**values)


def test_codecs_carry_every_field_of_every_record() -> None:
    """Each codec's encoding and decoding agree on every field (marshal in between,
    as in the file): a field added to or moved in a model record that one side
    missed would come back swapped or defaulted, only on the spilled path."""
    findings = tuple(_distinct(Finding, f"finding{index}", {}) for index in range(2))
    stream = _distinct(
        TcpStream,
        "stream",
        {
            "timeline": tuple(_distinct(TimelineEntry, f"entry{index}", {}) for index in range(2)),
            "rtt_ms": _distinct(RttSampleStats, "stats", {}),
            "rtt_samples": tuple(_distinct(RttSample, f"sample{index}", {}) for index in range(2)),
            "seq_points": tuple(_distinct(SeqPoint, f"point{index}", {}) for index in range(2)),
        },
    )
    cases: list[tuple[Codec[Any], object]] = [
        (TcpStreamCodec(), stream),
        (FindingCodec(), findings[0]),
        (StreamFindingsCodec(), _distinct(StreamFindings, "judged", {"findings": findings})),
        (StreamFindingsCodec(), None),
        (IcmpErrorCodec(), _distinct(IcmpError, "error", {})),
    ]
    for codec, record in cases:
        row = marshal.loads(marshal.dumps(codec.encode(record)))
        decoded = codec.decode(row)
        assert decoded == record, type(codec).__name__
        # A store's codec travels with its pickled records (--jobs).
        assert pickle.loads(pickle.dumps(codec)).decode(row) == record


def test_record_store_orders_drops_and_looks_back() -> None:
    for spill_after in (0, 2, 100):
        store: RecordStore[tuple[int, str]] = RecordStore(Codec(), spill_after)
        rows = [(index, f"row {index}") for index in range(7)]
        positions = [store.append(row) for row in rows]
        assert positions == list(range(7))
        assert [store.get(position) for position in positions] == rows
        order = [6, 0, 3, 5]  # 1, 2 and 4 left out
        sealed = store.seal(order)
        assert isinstance(sealed, SpilledRecords) == (spill_after < 7)
        assert len(sealed) == 4
        assert list(sealed) == [rows[index] for index in order]
        assert sealed[-1] == rows[5] and sealed[1] == rows[0]
        assert tuple(sealed[1:3]) == (rows[0], rows[3])
        with pytest.raises(IndexError):
            sealed[4]
    in_file_order: RecordStore[int] = RecordStore(Codec(), 0)
    for value in range(5000):
        in_file_order.append(value * 7919)
    assert list(in_file_order.seal()) == [value * 7919 for value in range(5000)]


def test_running_summary_equals_ping_stats_of_the_list() -> None:
    generator = random.Random(6)
    echoes = []
    rtts: dict[str, list[float]] = {"10.0.0.2": [], "10.0.0.3": []}
    for index in range(3000):
        destination = "10.0.0.2" if index % 3 else "10.0.0.3"
        rtt = None if index % 11 == 0 else generator.uniform(0.001, 900.0)
        if rtt is not None:
            rtts[destination].append(rtt)
        echoes.append(IcmpEcho("icmp", index + 1, None, "10.0.0.1", destination, 1, index, rtt))
    summaries = {summary.dst: summary for summary in summarize(echoes)}
    for destination, values in rtts.items():
        assert summaries[destination].rtt_ms == ping_stats(values)  # bit for bit


def _source_slots(class_name: str) -> set[str]:
    """``__slots__`` of a class of tcp.py, from its source (compiled classes have none)."""
    tree = ast.parse((PROJECT_ROOT / "netdiag" / "analysis" / "tcp.py").read_text("utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for statement in node.body:
                if (
                    isinstance(statement, ast.Assign)
                    and isinstance(statement.targets[0], ast.Name)
                    and statement.targets[0].id == "__slots__"
                ):
                    return set(ast.literal_eval(statement.value))
    raise AssertionError(f"no __slots__ in {class_name}")


def test_state_field_lists_name_every_attribute() -> None:
    """The retired state covers every attribute of _Conversation/_Flow, compiled or not."""
    listed = set(tcp_module._CONVERSATION_FIELDS) | set(tcp_module._CONVERSATION_SPECIAL)
    assert listed == _source_slots("_Conversation")
    assert len(listed) == len(tcp_module._CONVERSATION_FIELDS) + 4
    assert set(tcp_module._FLOW_FIELDS) | set(tcp_module._FLOW_SPECIAL) == _source_slots("_Flow")
    assert "segments" not in tcp_module._FLOW_FIELDS


def test_echo_requests_flood_spills_in_frame_order(monkeypatch: pytest.MonkeyPatch) -> None:
    packets = []
    frame = 0
    for sequence in range(300):
        frame += 1
        packets.append(echo(frame, float(sequence), A, B, 8, seq=sequence % 50))
        if sequence % 4:  # some replies come late, some never
            frame += 1
            packets.append(echo(frame, sequence + 0.5, B, A, 0, seq=sequence % 50))
    results = []
    for spill_after in (10**9, 0, 7):
        tracker = IcmpTracker(spill_after=spill_after)
        for packet in packets:
            tracker.process(packet)
        echoes = tracker.echoes(T0_NS)
        results.append(list(echoes))
        assert [echo.frame_req for echo in echoes] == sorted(e.frame_req for e in echoes)
    assert results[0] == results[1] == results[2]
    assert len(results[0]) == 300


def test_error_findings_count_all_and_list_the_lowest_frames() -> None:
    """Errors grouped in one pass: every error counted, the 20 lowest frames listed."""
    generator = random.Random(7)
    frames = generator.sample(range(1, 10_000), 300)
    errors = [
        IcmpError(
            frame=frame,
            family="icmp",
            type=3,
            code=3,
            kind="unreachable",
            reporter="10.0.0.9",
            quoted_src="10.0.0.1",
            quoted_dst="10.0.0.9",
            quoted_proto=17,
            quoted_sport=4000,
            quoted_dport=53 if index % 3 else 123,
            next_hop_mtu=None,
            stream=None,
        )
        for index, frame in enumerate(frames)
    ]
    info = FileInfo("x.pcap", "pcap", (1,), 10_000, 0.0, 1.0, True)
    for spill_after in (0, 10**9):
        findings = build_findings(info, (), (), (), errors, spill_after=spill_after)
        by_port = {f.message.split(" port ")[1].split(" ")[0]: f for f in findings}
        for port in ("53", "123"):
            group = [e.frame for e in errors if str(e.quoted_dport) == port]
            assert by_port[port].frames == tuple(sorted(group)[:MAX_FINDING_FRAMES])
            assert f"({len(group)} times)" in by_port[port].message


def test_reports_of_spilled_analyses_are_the_same(
    tmp_path: Path, corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Markdown, report.json and the terminal summary, from records on disk or in memory."""
    from rich.console import Console

    from netdiag.report import write_report
    from netdiag.report.terminal import print_summary

    def outputs(analysis: Analysis, folder: Path) -> list[str]:
        paths = write_report(folder, [analysis], formats={"md", "json"})
        console = Console(file=io.StringIO(), width=160, record=True)
        print_summary(console, analysis)
        return [path.read_text("utf-8") for path in paths if path.suffix in (".md", ".json")] + [
            console.export_text()
        ]

    busiest = sorted(CORPUS, key=lambda path: path.stat().st_size)[-3:]
    for index, path in enumerate(busiest):
        memory = _analyze(path, IN_MEMORY, monkeypatch)
        spilled = _analyze(path, "0", monkeypatch)
        assert memory is not None and spilled is not None
        assert isinstance(spilled.tcp, SpilledRecords)
        expected = outputs(memory, tmp_path / f"m{index}")
        assert len(expected) == 3 and path.name in expected[0]
        assert outputs(spilled, tmp_path / f"s{index}") == expected


@pytest.mark.parametrize("shuffle", ["sorted", "nearly", "scattered", "reversed"])
def test_records_read_in_an_order_come_in_that_order(
    shuffle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ordered reads take a window's span at once when its rows lie close together,
    and row by row otherwise: the same records in the same order either way."""
    monkeypatch.setattr(store_module, "ORDERED_WINDOW", 7)
    monkeypatch.setattr(store_module, "ORDERED_SPAN_BYTES", 64)
    store: RecordStore[tuple[int, str]] = RecordStore(Codec(), 0)
    for number in range(500):
        store.append((number, "x" * (number % 13)))
    order = list(range(500))
    generator = random.Random(shuffle)
    if shuffle == "nearly":
        for index in range(0, 499, 3):
            order[index], order[index + 1] = order[index + 1], order[index]
    elif shuffle == "scattered":
        generator.shuffle(order)
    elif shuffle == "reversed":
        order.reverse()
    kept = order[: len(order) - 17]  # an order may leave records out
    records = store.seal(kept)
    assert list(records) == [(number, "x" * (number % 13)) for number in kept]
    assert [records[index] for index in (0, 5, len(kept) - 1)] == [
        (kept[index], "x" * (kept[index] % 13)) for index in (0, 5, len(kept) - 1)
    ]


def test_spilled_records_pickled_by_reference_carry_no_rows() -> None:
    """What a share's process sends its parent (analysis/shares.py): the file's
    descriptor and the offsets, opened again through /proc, never the rows."""
    store: RecordStore[tuple[str, int]] = RecordStore(Codec(), 0)
    for number in range(5000):
        store.append(("x" * 50, number))
    records = store.seal()
    assert len(pickle.dumps(records)) > 250_000  # the rows themselves
    with store_module.spilled_by_reference():
        data = pickle.dumps(records)
    assert len(data) < 60_000  # 8 bytes of offset a record
    assert list(pickle.loads(data)) == list(records)
