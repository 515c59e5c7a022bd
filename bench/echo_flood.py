"""Deterministic generator of ICMP echo floods, mostly unanswered (issue 6, memory).

Not part of netdiag: this feeds the memory measurement of ``bench/PROFILE.md``
("Memory") and ``tests/test_icmp_flood.py``. Unlike ``gen.py`` (a busy
gateway, where echo requests are a small answered minority), almost every
frame here is an echo request nobody answers, the case where the analyzer
used to keep one object per request until the end of the file. Among them,
on purpose, the cases a bounded tracker must still pair exactly as tshark
does:

* replies a millisecond later (the usual case) and replies a long while
  later (``--late-after``, past any idle horizon: the request has left
  memory by then);
* the same request sent twice (same identifier, sequence and payload) before
  its reply: the reply answers the second one, the first stays unanswered;
* a reply sent twice: the second answers nothing;
* the same request sent again ``--late-after`` later, answered at once, its
  reply sent twice: that reply answers the new one, and the second reply must
  not reach the first request, however long it has been out of memory;
* a second round of the same identifier and sequence numbers (sequence
  numbers wrap at 65,536; here a host starts over) with another payload.

Sources are ``hosts`` IPv4 hosts and an eighth as many IPv6 hosts pinging
one target each, in turn, at ``rate`` requests per second of capture time;
each request carries the send time in its payload (as ping does), so checksums
differ. Checksums are real (tshark keys echoes on them). One
``random.Random(seed)`` drives everything: the same arguments give the same bytes.

    .venv/bin/python bench/echo_flood.py --requests 1000000 --out bench/out/flood-1m.pcap
"""

from __future__ import annotations

import argparse
import heapq
import random
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# gen.py's checksum and pcap writer: bench/ is not a package, so it is found
# beside this file (run as a script, or loaded by the tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen import Writer, internet_checksum

SECOND = 1_000_000_000
START_NS = 1_700_000_000 * SECOND
ETHERNET_IPV4 = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
ETHERNET_IPV6 = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x86\xdd"
ICMP_HEAD = struct.Struct("!BBHHH")
IPV4_HEAD = struct.Struct("!BBHHHBBH4s4s")
IPV6_HEAD = struct.Struct("!IHBB16s16s")
TARGET_V4 = bytes((192, 0, 2, 1))
TARGET_V6 = bytes.fromhex("20010db8000000000000000000000001")
BATCH_RECORDS = 4096

# Shares of requests (the rest is never answered).
ANSWERED_SHARE = 0.01
LATE_SHARE = 0.002
DUPLICATE_REQUEST_SHARE = 0.002
DUPLICATE_REPLY_SHARE = 0.002
SECOND_ROUND_SHARE = 0.002
REPEAT_LATER_SHARE = 0.002


def even(data: bytes) -> bytes:
    """``data`` padded to an even length, as the checksum reads 16-bit words."""
    return data + b"\x00" if len(data) % 2 else data


class Host:
    """One pinging host: its address, identifier and next sequence number."""

    __slots__ = ("address", "identifier", "sequence")

    def __init__(self, address: bytes, identifier: int) -> None:
        self.address = address
        self.identifier = identifier
        self.sequence = 0


def echo_frame(
    source: bytes, destination: bytes, icmp_type: int, identifier: int, sequence: int, body: bytes
) -> bytes:
    """An Ethernet frame carrying one echo request or reply (ICMP or ICMPv6)."""
    if len(source) == 16:
        request_or_reply = 128 if icmp_type == 8 else 129
        message = ICMP_HEAD.pack(request_or_reply, 0, 0, identifier, sequence) + body
        pseudo = source + destination + struct.pack("!I3xB", len(message), 58)
        checksum = internet_checksum(even(pseudo + message))
        message = message[:2] + checksum.to_bytes(2, "big") + message[4:]
        header = IPV6_HEAD.pack(0x60000000, len(message), 58, 64, source, destination)
        return ETHERNET_IPV6 + header + message
    message = ICMP_HEAD.pack(icmp_type, 0, 0, identifier, sequence) + body
    checksum = internet_checksum(even(message))
    message = message[:2] + checksum.to_bytes(2, "big") + message[4:]
    header = IPV4_HEAD.pack(0x45, 0, 20 + len(message), 1, 0, 64, 1, 0, source, destination)
    return ETHERNET_IPV4 + header + message


def flood_frames(
    requests: int,
    seed: int = 1,
    rate: float = 10_000.0,
    hosts: int = 256,
    late_after_ns: int = 30 * SECOND,
) -> Iterator[tuple[int, bytes]]:
    """``requests`` echo requests and the few replies, as (time in ns, frame), in time order."""
    pick = random.Random(seed)
    sources = [
        Host(bytes((10, 9, index >> 8, 1 + index % 254)), pick.getrandbits(16))
        for index in range(hosts)
    ]
    sources += [
        Host(TARGET_V6[:8] + b"\x00\x09" + index.to_bytes(6, "big"), pick.getrandbits(16))
        for index in range(max(1, hosts // 8))
    ]
    filler = pick.randbytes(40)
    gap = int(SECOND / rate)
    scheduled: list[tuple[int, int, bytes]] = []  # replies to come: (time, order, frame)
    order = 0
    now = START_NS
    for _ in range(requests):
        now += gap // 2 + pick.randrange(gap)
        while scheduled and scheduled[0][0] <= now:
            when, _, frame = heapq.heappop(scheduled)
            yield when, frame
        host = sources[pick.randrange(len(sources))]
        target = TARGET_V6 if len(host.address) == 16 else TARGET_V4
        if pick.random() < SECOND_ROUND_SHARE and host.sequence > 1:
            sequence = pick.randrange(1, host.sequence)  # an old number, another payload
        else:
            host.sequence = host.sequence % 0xFFFF + 1
            sequence = host.sequence
        body = struct.pack("!Q", now // 1000) + filler
        request = echo_frame(host.address, target, 8, host.identifier, sequence, body)
        yield now, request
        chance = pick.random()
        if chance < DUPLICATE_REQUEST_SHARE:
            yield now + 1000, request  # the same request again, a microsecond later
            chance = pick.random() * ANSWERED_SHARE  # and answered
        if chance < ANSWERED_SHARE + LATE_SHARE:
            delay = 1_000_000 if chance < ANSWERED_SHARE else late_after_ns
            delay += pick.randrange(1_000_000)
            reply = echo_frame(target, host.address, 0, host.identifier, sequence, body)
            heapq.heappush(scheduled, (now + delay, order, reply))
            order += 1
            if pick.random() < DUPLICATE_REPLY_SHARE / (ANSWERED_SHARE + LATE_SHARE):
                heapq.heappush(scheduled, (now + delay + 1000, order, reply))
                order += 1
        if pick.random() < REPEAT_LATER_SHARE:
            again = now + late_after_ns + pick.randrange(1_000_000)
            reply = echo_frame(target, host.address, 0, host.identifier, sequence, body)
            for when, frame in ((again, request), (again + 1_000_000, reply)):
                heapq.heappush(scheduled, (when, order, frame))
                heapq.heappush(scheduled, (when + 1000, order + 1, frame))
                order += 2
    while scheduled:
        when, _, frame = heapq.heappop(scheduled)
        yield when, frame


def write_pcap(path: Path, frames: Iterator[tuple[int, bytes]]) -> int:
    """A nanosecond pcap of Ethernet ``frames`` (gen.py's writer); the number written."""
    writer = Writer(path, "pcap-ns")
    count = 0
    batch: list[tuple[int, bytes]] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) >= BATCH_RECORDS:
            writer.write(batch)
            count += len(batch)
            batch.clear()
    writer.write(batch)
    writer.close()
    return count + len(batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, required=True, help="echo requests to write")
    parser.add_argument("--out", type=Path, required=True, help="capture file to write")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=10_000.0, help="requests per second")
    parser.add_argument("--hosts", type=int, default=256, help="IPv4 hosts pinging")
    parser.add_argument(
        "--late-after", type=float, default=30.0, help="seconds before a late reply"
    )
    args = parser.parse_args(argv)
    if args.requests < 1 or args.rate <= 0 or args.hosts < 1:
        parser.error("--requests, --rate and --hosts must be positive")
    started = time.perf_counter()
    frames = flood_frames(
        args.requests, args.seed, args.rate, args.hosts, round(args.late_after * SECOND)
    )
    count = write_pcap(args.out, frames)
    print(
        f"{args.out}: {count} frames ({args.requests} echo requests) "
        f"in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
