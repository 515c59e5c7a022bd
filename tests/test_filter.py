"""The --filter language: parsing, precedence, errors, and agreement with tcpdump.

The tcpdump cross-check selects packets with the same expression through
`tcpdump -w` (skipped when tcpdump is absent) on corpus files without VLAN
tags or tunnels, where tcpdump's "outermost header" and netdiag's "innermost
IP" meanings coincide.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from netdiag.analysis.filter import compile_filter
from netdiag.analysis.packet import DecodedPacket, FrameClass
from netdiag.analysis.reader import CaptureReader
from netdiag.errors import UsageError
from netdiag.report.hexdump import iter_decoded

TCPDUMP = shutil.which("tcpdump")


def packet(
    source: str = "10.0.2.0",
    destination: str = "10.0.1.0",
    proto: int = 6,
    sport: int = 40000,
    dport: int = 7096,
) -> DecodedPacket:
    version = ipaddress.ip_address(source).version
    decoded = DecodedPacket(1, 0, FrameClass.IPV4 if version == 4 else FrameClass.IPV6)
    decoded.ip_version = version
    decoded.src = ipaddress.ip_address(source).packed
    decoded.dst = ipaddress.ip_address(destination).packed
    decoded.proto = proto
    decoded.sport, decoded.dport = sport, dport
    return decoded


def arp() -> DecodedPacket:
    return DecodedPacket(2, 0, FrameClass.ARP)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("tcp", True),
        ("udp", False),
        ("ip", True),
        ("ip6", False),
        ("tcp port 7096", True),
        ("tcp and port 7096", True),
        ("port 80 or 7096", True),  # tcpdump's shorthand repeats the qualifier
        ("src port 7096", False),
        ("dst port 7096", True),
        ("host 10.0.1.0", True),
        ("src host 10.0.1.0", False),
        ("dst 10.0.1.0", True),
        ("10.0.2.0", True),
        ("net 10.0.0.0/16", True),
        ("src net 10.0.2.0/24 and dst net 10.0.1.0/24", True),
        ("net 10.0.1.0 mask 255.255.255.0", True),
        ("not tcp", False),
        ("! arp", True),
        ("icmp or tcp and port 1", False),  # and binds tighter than or
        ("(icmp or tcp) and port 7096", True),
        ("not (udp || icmp) && port 7096", True),
        ("not not tcp", True),
        ("host 2001:db8::1", False),
    ],
)
def test_expressions_on_a_tcp_packet(expression: str, expected: bool) -> None:
    assert compile_filter(expression)(packet()) is expected


def test_protocols_and_families() -> None:
    icmp6 = packet("2001:db8::1", "2001:db8::2", proto=58, sport=0, dport=0)
    assert compile_filter("icmp6 and ip6")(icmp6)
    assert compile_filter("host 2001:db8::2")(icmp6)
    assert compile_filter("net 2001:db8::/32")(icmp6)
    assert not compile_filter("net 10.0.0.0/8")(icmp6)
    assert not compile_filter("port 0")(icmp6)  # ICMP has no ports
    assert compile_filter("arp")(arp())
    assert not compile_filter("ip or ip6")(arp())
    fragment = packet(proto=17)
    fragment.fragment = None  # a non-final fragment: no L4 header
    assert not compile_filter("udp port 7096")(fragment)
    assert compile_filter("udp")(fragment)


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "   ",
        "tcp and",
        "port",
        "port http-ish",
        "port 70000",
        "host 10.0.0.300",
        "net 10.0.0.0/40",
        "(tcp",
        "tcp)",
        "frobnicate",
        "src",
        "src and tcp",
        "and tcp",
        "host or tcp",
    ],
)
def test_bad_expressions_are_usage_errors(expression: str) -> None:
    with pytest.raises(UsageError) as raised:
        compile_filter(expression)
    assert raised.value.message.startswith("bad --filter expression")
    assert raised.value.advice


CROSS_CHECK_FILES = [
    "dpkt__http.pcap",
    "dpkt__dns_icmp.pcap",
    "markofu__email-troubles.pcap",
    "pcapplusplus__three_http_streams.pcap",
    "pcapplusplus__ICMPv6_echos.cap",
    # Not pcapplusplus__null_loopback.pcap: one frame's loopback header holds an
    # ethertype where a family belongs; netdiag decodes it as Wireshark does, tcpdump does not.
    "pcapplusplus__raw_ip.pcap",
    "filesamples__simple_http_sll2.pcap",
    "tcpdump__ssh.pcap",
]
CROSS_CHECK_EXPRESSIONS = [
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "arp",
    "ip6",
    "ip",
    "not tcp",
    "port 80",
    "src port 80",
    "dst port 53 or src port 53",
    "tcp and (port 80 or port 22)",
    "net 10.0.0.0/8",
    "not ip and not ip6",
]


def tcpdump_matches(
    path: Path, expression: str, scratch: Path
) -> Counter[tuple[int, bytes]] | None:
    """The packets tcpdump selects, as (timestamp, bytes): tcpdump's -# counts only matches.

    None when tcpdump refuses the expression for the file's link type
    (``arp`` on a loopback capture).
    """
    assert TCPDUMP is not None
    selected = scratch / "selected.pcap"
    result = subprocess.run(
        [TCPDUMP, "-Z", "root", "-r", str(path), "-w", str(selected), expression],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    return Counter((frame.ts_ns, frame.data) for frame in CaptureReader(selected))


@pytest.mark.skipif(TCPDUMP is None, reason="tcpdump is not installed")
def test_agrees_with_tcpdump(corpus_dir: Path, tmp_path: Path) -> None:
    compared = 0
    for name in CROSS_CHECK_FILES:
        path = corpus_dir / name
        frames = list(iter_decoded(path))
        for expression in CROSS_CHECK_EXPRESSIONS:
            predicate = compile_filter(expression)
            ours = Counter(
                (frame.ts_ns, frame.data) for frame, decoded in frames if predicate(decoded)
            )
            theirs = tcpdump_matches(path, expression, tmp_path)
            if theirs is None:
                assert not ours, f"{name}: {expression!r}"
                continue
            assert ours == theirs, f"{name}: {expression!r}"
            compared += sum(theirs.values())
    assert compared > 500
