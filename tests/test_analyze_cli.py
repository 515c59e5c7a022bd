"""`netdiag analyze` and `netdiag hexdump` as a user runs them: output, files, exit codes.

Each test runs the real CLI in a child process (`python -m netdiag`) on
corpus captures, so option parsing, error mapping and exit codes are those of
the contract.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TCPDUMP = shutil.which("tcpdump")


def netdiag(*arguments: str | Path, columns: int = 200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netdiag", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"COLUMNS": str(columns), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )


def test_terminal_summary(corpus_dir: Path) -> None:
    result = netdiag("analyze", corpus_dir / "dpkt__http.pcap", corpus_dir / "dpkt__dns_icmp.pcap")
    assert result.returncode == 0, result.stderr
    assert "dpkt__http.pcap" in result.stdout and "dpkt__dns_icmp.pcap" in result.stdout
    assert "43 packets captured" in result.stdout
    assert "TCP conversations" in result.stdout
    assert "145.254.160.237:3372" in result.stdout
    assert "3 packets transmitted, 1 received, 66.7% packet loss" in result.stdout


def test_json_is_the_contract_document(corpus_dir: Path) -> None:
    one = netdiag("analyze", "--json", corpus_dir / "pcapplusplus__one_tcp_rst.pcap")
    assert one.returncode == 0, one.stderr
    document = json.loads(one.stdout)
    assert isinstance(document, dict)
    assert {"file", "decode", "icmp_echo", "icmp_echo_summary", "tcp", "findings"} <= set(document)
    assert document["file"]["packets"] == 2
    two = netdiag(
        "analyze",
        "--json",
        corpus_dir / "pcapplusplus__one_tcp_rst.pcap",
        corpus_dir / "dpkt__http.pcap",
    )
    documents = json.loads(two.stdout)
    assert [Path(item["file"]["path"]).name for item in documents] == [
        "pcapplusplus__one_tcp_rst.pcap",
        "dpkt__http.pcap",
    ]


def test_out_writes_one_folder_per_file(corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    result = netdiag(
        "analyze",
        corpus_dir / "dpkt__http.pcap",
        corpus_dir / "pcapplusplus__one_tcp_stream.pcap",
        "--out",
        out,
        "--format",
        "md,json",
        "--hexdump-frames",
        "4",
    )
    assert result.returncode == 0, result.stderr
    for stem in ("dpkt__http", "pcapplusplus__one_tcp_stream"):
        assert (out / stem / "report.md").is_file()
        assert (out / stem / "report.json").is_file()
        assert not (out / stem / "report.html").exists()
        assert f"wrote {out / stem / 'report.md'}" in result.stdout
    markdown = (out / "dpkt__http" / "report.md").read_text(encoding="utf-8")
    assert "#4 " in markdown and "P.%..X..GET./dow" in markdown  # the requested hex dump
    again = netdiag("analyze", corpus_dir / "dpkt__http.pcap", "--out", out)
    assert again.returncode == 2
    assert again.stderr.startswith("netdiag: error: report folder")
    assert "Traceback" not in again.stderr
    forced = netdiag("analyze", corpus_dir / "dpkt__http.pcap", "--out", out, "--force")
    assert forced.returncode == 0, forced.stderr
    assert (out / "dpkt__http" / "report.html").is_file()


@pytest.mark.parametrize(
    "arguments",
    [
        ["--format", "md"],  # --format without --out
        ["--hexdump-link"],  # --hexdump-link without --out
        ["--out", "{tmp}/r", "--format", "pdf"],
    ],
)
def test_usage_errors(arguments: list[str], corpus_dir: Path, tmp_path: Path) -> None:
    filled = [argument.replace("{tmp}", str(tmp_path)) for argument in arguments]
    result = netdiag("analyze", corpus_dir / "dpkt__http.pcap", *filled)
    assert result.returncode == 2
    assert result.stderr.startswith("netdiag: error:")
    assert "Traceback" not in result.stderr


def test_unreadable_inputs_exit_2(tmp_path: Path) -> None:
    text = tmp_path / "notes.pcap"
    text.write_text("this is not a capture at all\n")
    for path in (text, tmp_path / "missing.pcap"):
        result = netdiag("analyze", path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("netdiag: error:")
        assert "Traceback" not in result.stderr
        hexdump = netdiag("hexdump", path)
        assert hexdump.returncode == 2


@pytest.mark.skipif(TCPDUMP is None, reason="tcpdump is not installed")
@pytest.mark.parametrize(("flag", "link"), [("-X", []), ("-XX", ["--link"])])
def test_hexdump_command_matches_tcpdump(corpus_dir: Path, flag: str, link: list[str]) -> None:
    path = corpus_dir / "pcapplusplus__sll2.pcap"
    ours = netdiag("hexdump", path, *link)
    assert ours.returncode == 0, ours.stderr
    assert TCPDUMP is not None
    theirs = subprocess.run(
        [TCPDUMP, flag, "-nn", "-r", str(path)], capture_output=True, text=True, check=True
    )

    def hex_lines(output: str) -> list[str]:
        return [line for line in output.splitlines() if line.startswith("\t0x")]

    assert hex_lines(ours.stdout) == hex_lines(theirs.stdout)
    headers = [line for line in ours.stdout.splitlines() if not line.startswith("\t")]
    assert [line.split()[0] for line in headers] == ["#1", "#2", "#3"]


def test_hexdump_frames_and_filter(corpus_dir: Path) -> None:
    path = corpus_dir / "dpkt__dns_icmp.pcap"
    chosen = netdiag("hexdump", path, "--frame", "5", "--frame", "3")
    assert chosen.returncode == 0, chosen.stderr
    headers = [line for line in chosen.stdout.splitlines() if line.startswith("#")]
    assert [line.split()[0] for line in headers] == ["#3", "#5"]
    assert all("ICMP echo request" in line for line in headers)
    filtered = netdiag("hexdump", path, "--filter", "icmp and src host 8.8.8.8")
    headers = [line for line in filtered.stdout.splitlines() if line.startswith("#")]
    assert len(headers) == 3
    assert all("IP 8.8.8.8 > 192.168.43.9: ICMP echo reply" in line for line in headers)
    missing = netdiag("hexdump", path, "--frame", "2", "--frame", "500")
    assert missing.returncode == 2
    assert "#2 " in missing.stdout  # what exists is printed first
    assert "has no frame 500 (it has 32 frames)" in missing.stderr
    bad = netdiag("hexdump", path, "--filter", "port banana")
    assert bad.returncode == 2
    assert bad.stderr.startswith("netdiag: error: bad --filter expression")


@pytest.mark.parametrize("width", [80, 160])
def test_terminal_summary_prints_packet_text_literally(width: int) -> None:
    from dataclasses import replace

    from rich.console import Console

    from netdiag.analysis.model import Finding
    from netdiag.report.terminal import print_summary
    from tests.test_report import make_analysis

    analysis = make_analysis(client="[bold]10.0.2.0[/bold]:40000")
    hint = "ip -n ns1 route add 10.0.2.0/24 dev veth0"
    finding = Finding("warn", "route.missing", "No route [red]back[/red].", hint)
    analysis = replace(analysis, findings=(*analysis.findings, finding))
    console = Console(record=True, width=width, color_system=None)
    print_summary(console, analysis)
    text = console.export_text()
    assert "No route [red]back[/red]." in " ".join(text.split())
    assert "[bold]10.0.2.0[/bold]:40000" in text.replace("\n", "").replace(" ", "")
    assert "10.0.1.0:7096" in text  # addresses are never cut
    lines = text.splitlines()
    # Worst first: the error, then the warning, then the note.
    order = [
        next(i for i, line in enumerate(lines) if code in line)
        for code in ("icmp.echo-unanswered", "route.missing", "tcp.retransmission")
    ]
    assert order == sorted(order)
    assert all(len(line) <= width for line in lines)


def test_small_capture_shows_handshake_ladder_and_first_payload(corpus_dir: Path) -> None:
    """What the article shows with tcpdump -X and nc: the handshake and the data, in hex."""
    result = netdiag("analyze", corpus_dir / "dpkt__http.pcap")
    assert result.returncode == 0, result.stderr
    assert "stream 0 (SF" in result.stdout and "handshake and teardown" in result.stdout
    assert "SYN,ACK seq=0 ack=1" in result.stdout
    # frame 4 carries "GET /download.html"; tcpdump's ASCII column shows the space as '.'
    assert "#4 " in result.stdout and "GET./dow" in result.stdout
    assert "more lines: netdiag hexdump" in result.stdout  # long segments are cut, with the way on


def test_large_capture_skips_the_details(corpus_dir: Path) -> None:
    result = netdiag("analyze", corpus_dir / "pcapplusplus__650HttpResponses.pcap")
    assert result.returncode == 0, result.stderr
    assert "handshake and teardown" not in result.stdout
    assert "First data segments" not in result.stdout


@pytest.mark.skipif(TCPDUMP is None, reason="tcpdump is not installed")
@pytest.mark.parametrize(("flag", "link"), [("-X", []), ("-XX", ["--hexdump-link"])])
def test_report_hexdumps_match_tcpdump_with_or_without_link_layer(
    corpus_dir: Path, tmp_path: Path, flag: str, link: list[str]
) -> None:
    """`analyze --out DIR --hexdump-frames N [--hexdump-link]`: tcpdump -X / -XX lines."""
    assert TCPDUMP is not None
    path = corpus_dir / "pcapplusplus__VlanPackets.pcap"  # an 802.1Q tag in the link layer
    out = tmp_path / "r"
    result = netdiag(
        "analyze", path, "--out", out, "--format", "md,html", "--hexdump-frames", "3", *link
    )
    assert result.returncode == 0, result.stderr
    markdown = (out / path.stem / "report.md").read_text(encoding="utf-8")
    page = (out / path.stem / "report.html").read_text(encoding="utf-8")
    assert f"### Hex dumps (as tcpdump {flag})\n" in markdown
    assert f"<h3>Hex dumps (as tcpdump {flag})</h3>" in page
    if link:  # the note's `tcpdump -XX` is code in both forms, not literal backticks
        assert "Link layer included, as `tcpdump -XX` prints it." in markdown
        assert "Link layer included, as <code>tcpdump -XX</code> prints it." in page
    tcpdump = subprocess.run(
        [TCPDUMP, flag, "-nn", "-r", str(path), "-c", "3"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    # The third packet's hex lines: those after its header line (the third line
    # that does not start with a tab).
    headers = [index for index, line in enumerate(tcpdump) if not line.startswith("\t")]
    expected = [line for line in tcpdump[headers[2] + 1 :] if line.startswith("\t0x")]
    start = markdown.index("#3 ")
    block = markdown[start : markdown.index("```", start)].splitlines()[1:]
    assert block == expected
    assert ("Link layer included" in markdown) == bool(link)


def test_a_capture_with_many_ping_pairs_is_capped_in_the_terminal_and_reports(
    tmp_path: Path,
) -> None:
    """250 address pairs, one echo each: the terminal shows 20 ping summaries and
    10 echo rows, the Markdown 200 of each, and both say how many more there are."""
    from tests.test_icmp import echo_bytes
    from tests.test_tcp import T0_NS, write_pcap

    frames = []
    for pair in range(250):
        here, there = bytes((10, 0, 0, 1)), bytes((10, 1, pair // 256, pair % 256))
        start = T0_NS + pair * 10_000_000
        frames.append((start, echo_bytes(here, there, 8, pair, 1, b"ping")))
        frames.append((start + 1_000_000, echo_bytes(there, here, 0, pair, 1, b"ping")))
    capture = tmp_path / "pings.pcap"
    write_pcap(capture, frames)

    terminal = netdiag("analyze", capture)
    assert terminal.returncode == 0, terminal.stderr
    assert terminal.stdout.count("packets transmitted") == 20
    assert "230 more address pairs not shown (use --json or --out)" in terminal.stdout
    assert "240 more echo requests not shown (use --json or --out)" in terminal.stdout

    folder = tmp_path / "report"
    written = netdiag("analyze", capture, "--out", folder, "--format", "md")
    assert written.returncode == 0, written.stderr
    markdown = (folder / "pings" / "report.md").read_text(encoding="utf-8")
    assert markdown.count("packets transmitted") == 200
    assert "… and 50 more address pairs (see report.json)." in markdown
    assert "… and 50 more echo requests (see report.json)." in markdown


@pytest.mark.parametrize(
    "arguments",
    [("analyze", "--json"), ("analyze",), ("hexdump",)],
    ids=["json", "terminal", "hexdump"],
)
def test_a_reader_that_goes_away_is_a_quiet_exit_0(
    tmp_path: Path, arguments: tuple[str, ...]
) -> None:
    """`netdiag analyze big.pcap --json | head`: stdout's reader closes before
    netdiag writes (closed here before the child has started). Exit 0 with an
    empty stderr, not 1 (the contract's "an expected outcome did not hold",
    which rich and typer would each give) nor a traceback."""
    from tests.helpers import load_bench_generator

    capture = tmp_path / "big.pcap"
    load_bench_generator("bench_gen_for_pipes").generate(capture, 5000, seed=2)
    command, *options = arguments
    process = subprocess.Popen(
        [sys.executable, "-m", "netdiag", command, str(capture), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first write
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 0, stderr
    assert stderr == ""
