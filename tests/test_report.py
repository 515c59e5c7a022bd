"""The report folder: forms, escaping, self-containment, plots, goldens, a real browser.

Hand-built records test what the writer does with every field; corpus
captures test it end to end (analysis -> report). Golden files for
report.md and report.json live in tests/golden/; regenerate them with
``NETDIAG_UPDATE_GOLDEN=1 pytest tests/test_report.py`` after an intended
change, and read the diff before committing it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import warnings
from html.parser import HTMLParser
from pathlib import Path

import pytest

from netdiag.analysis.analyze import analyze_file
from netdiag.analysis.model import (
    Analysis,
    DecodeCounts,
    EchoSummary,
    FileInfo,
    Finding,
    IcmpEcho,
    RttSample,
    RttSampleStats,
    RttStats,
    SeqPoint,
    TcpStream,
    TimelineEntry,
)
from netdiag.analysis.store import SPILL_AFTER_VARIABLE
from netdiag.errors import NetdiagError, OutputError, UsageError
from netdiag.experiment.model import PingResult, RunResult, StepResult, TcpExchange
from netdiag.report import json_text, parse_formats, report_document, write_report
from netdiag.report.content import PLOTTED_STREAMS, TABLE_ROWS, code_spans, ladder_text
from netdiag.report.output import atomic_write_bytes
from tests.conftest import corpus_files

SCRIPT = "<script>alert(1)</script>"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
CHROMIUM = Path("/usr/bin/chromium")


def make_stream(number: int = 0, client: str = "10.0.2.0:40000") -> TcpStream:
    timeline = (
        TimelineEntry(1, 0.0, "c>s", "S", 0, 0, 0),
        TimelineEntry(2, 0.05, "s>c", "SA", 0, 1, 0),
        TimelineEntry(3, 0.09, "c>s", "A", 1, 1, 0),
        TimelineEntry(6, 1.2, "c>s", "FA", 23, 1, 0),
        TimelineEntry(7, 1.3, "s>c", "FA", 1, 24, 0),
        TimelineEntry(8, 1.4, "c>s", "A", 24, 2, 0),
    )
    points = (
        SeqPoint(4, 0.5, "c>s", 1, 22, "data"),
        SeqPoint(5, 0.6, "s>c", 23, 0, "ack"),
        SeqPoint(9, 0.9, "c>s", 1, 22, "retransmission"),
        SeqPoint(10, 1.0, "s>c", 23, 0, "ack"),
    )
    return TcpStream(
        stream=number,
        ip_version=4,
        client=client,
        server="10.0.1.0:7096",
        roles_from="syn",
        state="SF",
        history="ShADadFf",
        syn_frame=1,
        syn_frames=(1,),
        syn_count=1,
        synack_frame=2,
        ack_frame=3,
        irtt_ms=0.09,
        syn_to_synack_ms=0.05,
        synack_to_ack_ms=0.04,
        first_frame=1,
        last_frame=10,
        first_ts=1000.0,
        last_ts=1000.0014,
        timeline=timeline,
        packets=10,
        bytes_c2s=44,
        bytes_s2c=0,
        analysis={"retransmission": 1},
        rtt_ms=RttSampleStats(1, 0.1, 0.1, 0.1),
        fin_seen=True,
        rst_seen=False,
        rst_by=None,
        rtt_samples=(RttSample(5, 0.6, 0.1, "c>s"),),
        seq_points=points,
    )


def make_analysis(path: str = "/nonexistent/x.pcap", client: str = "10.0.2.0:40000") -> Analysis:
    echoes = tuple(
        IcmpEcho(
            "icmp",
            20 + 2 * index,
            None if index == 2 else 21 + 2 * index,
            "10.0.2.0",
            "10.0.1.0",
            7,
            index + 1,
            None if index == 2 else 0.05 + index * 0.01,
            index * 1000.0,
        )
        for index in range(5)
    )
    return Analysis(
        file=FileInfo(
            path=path,
            format="pcap",
            link_types=(1,),
            packets=30,
            first_ts=1000.0,
            last_ts=1004.5,
            complete=True,
            warnings=(f"odd record {SCRIPT}",),
        ),
        decode=DecodeCounts(ipv4=28, arp=2),
        icmp_echo=echoes,
        icmp_echo_summary=(
            EchoSummary("10.0.2.0", "10.0.1.0", 5, 4, 20.0, RttStats(0.05, 0.07, 0.09, 0.01)),
        ),
        icmp_errors=(),
        tcp=(make_stream(client=client),),
        findings=(
            Finding("note", "tcp.retransmission", f"Sent again {SCRIPT}.", "ip -s link", 0, (9,)),
            Finding(
                "error",
                "icmp.echo-unanswered",
                "Echo seq 3 got no `reply`.",
                "check `ip route get 10.0.1.0` | on both sides",
                None,
            ),
        ),
        tcp_analysis_totals={"retransmission": 1},
    )


def make_run(message: str = "this is a test message") -> RunResult:
    return RunResult(
        ok=False,
        run_id="20261129-test",
        topology="seed",
        steps=(
            StepResult(
                "veth-pair",
                True,
                "created veth0 | veth1",
                3.2,
                "create the veth pair",
                ("ip netns add ns1", "ip link add veth0 type veth peer name veth1"),
            ),
            StepResult(
                "unreachable-before-routes",
                False,
                f"reachable {SCRIPT}",
                1.0,
                expected="Network is unreachable",
            ),
        ),
        icmp=(PingResult("ns2", "10.0.1.0", 5, 4, 20.0, RttStats(0.05, 0.07, 0.09, 0.01)),),
        tcp=(TcpExchange("ns2", "10.0.1.0:7096", True, message, message),),
        pcaps=("captures/x/veth0.pcap",),
        reports=(),
    )


class TagCollector(HTMLParser):
    """Every start tag and its attributes, and all the text, as a browser would parse them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(path: Path) -> TagCollector:
    collector = TagCollector()
    collector.feed(path.read_text(encoding="utf-8"))
    collector.close()
    return collector


def assert_safe_and_self_contained(page: TagCollector) -> None:
    names = [tag for tag, _ in page.tags]
    assert "script" not in names
    assert "link" not in names and "iframe" not in names and "object" not in names
    for tag, attributes in page.tags:
        for name, value in attributes.items():
            assert not name.startswith("on"), f"event handler on <{tag}>"
            if name in ("src", "href") and value is not None:
                assert value.startswith("data:image/png;base64,"), f"<{tag} {name}={value[:40]}>"


def markdown_prose(markdown: str) -> str:
    """The Markdown outside fenced blocks and code spans (which renderers never parse as HTML)."""
    outside_fences = "".join(markdown.split("```")[::2])
    return re.sub(r"``.*?``|`[^`]*`", "", outside_fences)


def test_writes_every_form_with_plots(tmp_path: Path) -> None:
    out = tmp_path / "report"
    written = write_report(out, [make_analysis()], make_run())
    names = {path.relative_to(out).as_posix() for path in written}
    assert {"report.md", "report.html", "report.json"} <= names
    assert {
        "plots/icmp-rtt.png",
        "plots/tcp-rtt.png",
        "plots/tcp-stream-0-ladder.png",
        "plots/tcp-stream-0-timeseq.png",
    } <= names
    for path in written:
        assert path.is_file()
        if path.suffix == ".png":
            assert path.read_bytes().startswith(PNG_MAGIC)
    markdown = (out / "report.md").read_text(encoding="utf-8")
    # The run's story: steps with outcomes and ip commands, pings, the message.
    assert "**FAILED**" in markdown
    assert "ip link add veth0 type veth peer name veth1" in markdown
    assert "5 packets transmitted, 4 received, 20.0% packet loss" in markdown
    assert "`this is a test message`" in markdown
    # Findings worst first, each with its hint.
    assert markdown.index("icmp.echo-unanswered") < markdown.index("tcp.retransmission")
    assert "check `ip route get 10.0.1.0` \\| on both sides" in markdown  # prose with code
    # Links to the plots are relative and exist.
    assert "](plots/tcp-stream-0-ladder.png)" in markdown
    assert "|---:|" in markdown  # numeric columns right-aligned
    # A table cell with a pipe does not break the table.
    assert "created veth0 \\| veth1" in markdown
    document = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert document["run"]["steps"][1]["id"] == "unreachable-before-routes"
    assert document["tcp"][0]["stream"] == 0
    assert {key: value for key, value in document.items() if key != "run"} == json.loads(
        json.dumps(make_analysis().to_json())
    )
    assert not list(out.rglob(".*"))  # no temporary files left behind


def test_code_spans_in_finding_text(tmp_path: Path) -> None:
    assert code_spans("run `ip r` now") == [("run ", False), ("ip r", True), (" now", False)]
    assert code_spans("a ` b") == [("a ` b", False)]  # unpaired: left as text
    write_report(tmp_path / "r", [make_analysis()], formats={"html"})
    html = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert "check <code>ip route get 10.0.1.0</code> | on both sides" in html
    assert "Echo seq 3 got no <code>reply</code>." in html
    assert "<td><code>ip -s link</code></td>" in html  # a bare command is code


def test_format_subset_and_no_plots_for_json_only(tmp_path: Path) -> None:
    out = tmp_path / "json-only"
    written = write_report(out, [make_analysis()], formats={"json"})
    assert written == [out / "report.json"]
    assert not (out / "plots").exists()
    assert report_document([make_analysis()]) == json.loads((out / "report.json").read_text())
    two = report_document([make_analysis(), make_analysis()])
    assert isinstance(two, list) and len(two) == 2


def test_parse_formats() -> None:
    assert parse_formats(None) == {"md", "html", "json"}
    assert parse_formats("md, HTML") == {"md", "html"}
    with pytest.raises(UsageError):
        parse_formats("md,pdf")
    with pytest.raises(UsageError):
        parse_formats(",")


def test_refuses_a_non_empty_folder_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "report"
    write_report(out, [make_analysis()], formats={"md"})
    stale = out / "plots" / "tcp-stream-99-ladder.png"
    stale.write_bytes(PNG_MAGIC)
    keep = out / "notes.txt"
    keep.write_text("mine")
    with pytest.raises(OutputError) as raised:
        write_report(out, [make_analysis()], formats={"md"})
    assert "--force" in (raised.value.advice or "")
    write_report(out, [make_analysis()], formats={"md"}, force=True)
    assert not stale.exists()  # a plot the new report does not link to is gone
    assert keep.read_text() == "mine"  # anything else is left alone
    (tmp_path / "empty").mkdir()
    write_report(tmp_path / "empty", [make_analysis()], formats={"json"})


def test_json_alone_over_a_report_keeps_the_plots_its_pages_link_to(tmp_path: Path) -> None:
    out = tmp_path / "report"
    written = write_report(out, [make_analysis()], formats={"md", "json"})
    plots = [path for path in written if path.suffix == ".png"]
    assert plots
    write_report(out, [make_analysis()], formats={"json"}, force=True)
    assert all(path.exists() for path in plots)  # report.md still links to them


def test_atomic_writer_reports_failures(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        atomic_write_bytes(blocker / "report.md", b"data")
    target = tmp_path / "out" / "a.txt"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(path.name for path in target.parent.iterdir()) == ["a.txt"]
    with pytest.raises(OutputError):
        write_report(blocker, [make_analysis()])


def test_packet_text_is_escaped_in_every_form(tmp_path: Path) -> None:
    out = tmp_path / "report"
    analysis = make_analysis(client=f"{SCRIPT}:1")
    write_report(out, [analysis], make_run(message=SCRIPT))
    page = parse_html(out / "report.html")
    assert_safe_and_self_contained(page)
    text = "".join(page.text)
    assert SCRIPT in text  # shown to the reader, as text
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "<script" not in markdown_prose(markdown)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown  # in prose, as entities
    assert f"`{SCRIPT}`" in markdown  # in code spans, which renderers show literally


def test_ladder_text_puts_arrows_between_the_two_sides() -> None:
    lines = ladder_text(make_stream()).splitlines()
    assert "client 10.0.2.0:40000" in lines[0] and "server 10.0.1.0:7096" in lines[0]
    assert "SYN seq=0" in lines[1] and lines[1].rstrip().endswith("->|")
    assert "SYN,ACK seq=0 ack=1" in lines[2] and "|<-" in lines[2]
    assert lines[0].index("client") == lines[1].index("|")
    assert lines[0].index("server") == len(lines[1].rstrip()) - 1


def build_xss_capture(path: Path) -> None:
    """A real pcap whose TCP payload and DNS name carry markup (scapy, no sending)."""
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    client, server = "10.0.2.0", "10.0.1.0"
    ether = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    packets = [
        ether / IP(src=client, dst=server) / TCP(sport=40000, dport=7096, flags="S", seq=100),
        ether
        / IP(src=server, dst=client)
        / TCP(sport=7096, dport=40000, flags="SA", seq=500, ack=101),
        ether
        / IP(src=client, dst=server)
        / TCP(sport=40000, dport=7096, flags="A", seq=101, ack=501),
        ether
        / IP(src=client, dst=server)
        / TCP(sport=40000, dport=7096, flags="PA", seq=101, ack=501)
        / (SCRIPT + " & <img src=x onerror=alert(2)>").encode(),
        ether
        / IP(src=client, dst="10.0.1.53")
        / UDP(sport=5353, dport=53)
        / DNS(rd=1, qd=DNSQR(qname=f"{SCRIPT}.example")),
    ]
    for index, packet in enumerate(packets):
        packet.time = 1_700_000_000 + index * 0.001
    wrpcap(str(path), packets)


def test_capture_carrying_markup_renders_as_text(tmp_path: Path) -> None:
    capture = tmp_path / "xss.pcap"
    build_xss_capture(capture)
    analysis = analyze_file(capture)
    out = tmp_path / "report"
    write_report(out, [analysis], make_run(message=SCRIPT))  # run port 7096: payload dumped
    page = parse_html(out / "report.html")
    assert_safe_and_self_contained(page)
    text = "".join(page.text)
    # The payload's hex dump (frame 4), whose ASCII column shows the markup as text.
    dump_lines = text.splitlines()
    assert any(line.startswith("#4 ") and "7096" in line for line in dump_lines)
    assert any(line.startswith("\t0x0020:") and line.endswith("<script>") for line in dump_lines)
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "\t0x0030:  616c 6572 7428 3129 3c2f 7363 7269 7074  alert(1)</script" in markdown
    prose = markdown_prose(markdown)
    assert "<script" not in prose and "<img" not in prose


def test_html_is_responsive_and_offline(tmp_path: Path) -> None:
    write_report(tmp_path / "r", [make_analysis()], formats={"html"})
    html = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    page = parse_html(tmp_path / "r" / "report.html")
    metas = [attributes for tag, attributes in page.tags if tag == "meta"]
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in metas
    assert any("default-src 'none'" in (meta.get("content") or "") for meta in metas)
    assert "@media (max-width" in html and "overflow-x: auto" in html
    images = [attributes for tag, attributes in page.tags if tag == "img"]
    assert len(images) == 4
    assert "http://" not in html and "https://" not in html


@pytest.mark.parametrize("capture", corpus_files(), ids=lambda path: path.name)
def test_plots_for_every_corpus_file_without_warnings(capture: Path, tmp_path: Path) -> None:
    from netdiag.errors import InputError

    try:
        analysis = analyze_file(capture)
    except InputError:
        pytest.skip("not a readable capture (the analysis refuses it, as it should)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written = write_report(tmp_path / "r", [analysis], formats={"md", "html"})
    pngs = [path for path in written if path.suffix == ".png"]
    for png in pngs:
        assert png.read_bytes().startswith(PNG_MAGIC)
    if analysis.icmp_echo:
        assert any(path.name == "icmp-rtt.png" for path in pngs)
    assert len(pngs) <= 2 + 2 * PLOTTED_STREAMS
    assert_safe_and_self_contained(parse_html(tmp_path / "r" / "report.html"))


def test_big_capture_is_capped(tmp_path: Path) -> None:
    """Thousands of streams: a few plots, capped tables, everything in report.json."""
    from tests.helpers import load_bench_generator

    module = load_bench_generator("bench_gen_for_report")
    capture = tmp_path / "big.pcap"
    module.generate(capture, 10000, seed=3, conversations=2000)
    analysis = analyze_file(capture)
    assert len(analysis.tcp) > 1000
    written = write_report(tmp_path / "r", [analysis])
    assert len([path for path in written if path.suffix == ".png"]) <= 2 + 2 * PLOTTED_STREAMS
    markdown = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "smaller streams (see report.json)" in markdown
    assert len(analysis.findings) > TABLE_ROWS
    more = len(analysis.findings) - TABLE_ROWS
    assert f"… and {more} more findings (see report.json)." in markdown
    findings_part = markdown[markdown.index("### Findings") : markdown.index(f"… and {more}")]
    assert findings_part.count("\n| ") == TABLE_ROWS + 1  # the header row, then the rows
    document = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    assert len(document["tcp"]) == len(analysis.tcp)


GOLDEN_CASES = {
    "dpkt__dns_icmp.pcap": [],
    "pcapplusplus__three_http_streams.pcap": [4],
    "markofu__tcp-con-lost.pcap": [1, 9],
    "markofu__portscan.pcap": [1],
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden_markdown_and_json(name: str, corpus_dir: Path, tmp_path: Path) -> None:
    capture = corpus_dir / name
    out = tmp_path / "r"
    write_report(
        out, [analyze_file(capture)], formats={"md", "json"}, hexdump_frames=GOLDEN_CASES[name]
    )
    # The corpus may live anywhere: only the file name goes into the golden.
    produced = {
        suffix: (out / f"report.{suffix}")
        .read_text(encoding="utf-8")
        .replace(str(corpus_dir) + "/", "<corpus>/")
        for suffix in ("md", "json")
    }
    for suffix, text in produced.items():
        golden = GOLDEN_DIR / f"{Path(name).stem}.{suffix}"
        if os.environ.get("NETDIAG_UPDATE_GOLDEN") == "1":
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(text, encoding="utf-8")
        assert golden.is_file(), f"no golden {golden.name}: run with NETDIAG_UPDATE_GOLDEN=1"
        assert text == golden.read_text(encoding="utf-8"), (
            f"{golden.name} differs; if intended, regenerate with NETDIAG_UPDATE_GOLDEN=1"
        )


def headless_chromium(profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run Debian's chromium headless, offline, with a throw-away profile."""
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *arguments,
        ],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=180,
        check=False,
    )


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("width", [390, 1280])
def test_chromium_loads_the_report_without_console_errors(tmp_path: Path, width: int) -> None:
    capture = tmp_path / "xss.pcap"
    build_xss_capture(capture)
    out = tmp_path / "report"
    write_report(out, [analyze_file(capture), make_analysis()], make_run(message=SCRIPT))
    screenshot = tmp_path / "shot.png"
    page_url = (out / "report.html").resolve().as_uri()
    result = headless_chromium(
        tmp_path / "profile",
        "--enable-logging=stderr",
        "--v=0",
        f"--window-size={width},2000",
        f"--screenshot={screenshot}",
        page_url,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert screenshot.read_bytes().startswith(PNG_MAGIC)
    assert screenshot.stat().st_size > 10_000  # something was drawn
    # Chromium logs every console message (errors, CSP refusals, script output) as CONSOLE.
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    # The DOM the browser built from the page: the payload is text, never an element.
    dom = headless_chromium(tmp_path / "profile", "--dump-dom", page_url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = TagCollector()
    page.feed(dom.stdout)
    assert_safe_and_self_contained(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom.stdout
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_several_captures_and_a_run_without_capture(tmp_path: Path) -> None:
    out = tmp_path / "two"
    written = write_report(
        out,
        [make_analysis("/nonexistent/veth0.pcap"), make_analysis("/nonexistent/veth1.pcap")],
        make_run(),
        formats={"md", "json"},
    )
    plots = sorted(path.name for path in written if path.suffix == ".png")
    assert "1-veth0-icmp-rtt.png" in plots and "2-veth1-icmp-rtt.png" in plots
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "## Capture veth0.pcap" in markdown and "## Capture veth1.pcap" in markdown
    documents = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [document["run"]["run_id"] for document in documents] == ["20261129-test"] * 2
    alone = write_report(tmp_path / "alone", [], make_run(), formats={"md", "json"})
    assert [path.name for path in alone] == ["report.md", "report.json"]
    assert json.loads(alone[1].read_text(encoding="utf-8"))["run"]["ok"] is False
    assert "unreachable-before-routes" in alone[0].read_text(encoding="utf-8")


@pytest.mark.parametrize("spill_after", [None, "0"], ids=["in-memory", "spilled"])
def test_report_json_is_written_record_by_record_with_the_same_bytes(
    tmp_path: Path, spill_after: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a run, report.json is `analyze --json`, streamed to the file: the
    text of the whole-document writer, byte for byte, on corpus captures."""
    if spill_after is not None:
        monkeypatch.setenv(SPILL_AFTER_VARIABLE, spill_after)
    checked = 0
    for capture in corpus_files()[:12]:
        try:
            analysis = analyze_file(capture)
        except NetdiagError:
            continue
        out = tmp_path / f"{capture.name}-{spill_after}"
        write_report(out, [analysis], formats={"json"})
        written = (out / "report.json").read_text(encoding="utf-8")
        assert written == json_text(report_document([analysis])), capture.name
        checked += 1
    assert checked >= 8


def test_every_timeline_flag_letter_has_its_word() -> None:
    """The ladder's words for the tracker's letters: an ECN-setup SYN (SYN, ECE,
    CWR: common) once read "SYN,ECE,C"."""
    from netdiag.analysis.tcp import flag_letters
    from netdiag.report.content import flag_words

    assert flag_words(flag_letters(0xC2)) == "SYN,ECE,CWR"
    words = flag_words(flag_letters(0xFF)).split(",")
    assert len(words) == 8 and all(len(word) == 3 for word in words)
