"""Deterministic generator of large, realistic captures for the benchmark.

Not part of netdiag: this feeds ``bench/run.py`` (and a small test) with files of
any size whose content looks like a busy gateway's trace. Thousands of TCP
conversations are live at once and interleaved over time, each with a 3-way
handshake carrying Linux's options (MSS, SACK-permitted, timestamps, window
scale), request/response rounds with delayed ACKs, and, now and then, the events a
TCP analyzer must find: retransmissions after a timeout, a segment lost before the
capture point followed by duplicate ACKs with SACK and a fast retransmission,
out-of-order arrival, a zero window with a probe and a window update. Some
conversations end with FIN, some with RST, some are rejected (RST to the SYN) and
some SYNs are never answered (retried after 1 s, 2 s and 4 s). ICMP echo sessions,
a few without replies, run alongside; about a tenth of everything is IPv6.

Speed is the point of the tool, so it stays in pure Python with ``struct``: every
source (conversation, ping session) is a generator yielding its frames in time
order, a heap merges them, and records are written in batches. Checksums are zero
(nothing here needs them); IP and TCP lengths are right. One ``random.Random(seed)``
drives everything in a fixed order, so the same arguments give the same bytes.

A sidecar ``FILE.gen.json`` tells what was written: packets, TCP conversations (by
planned ending), ICMP echoes, and the events injected, counted only for frames that
made it into the file.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

# TCP flags.
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# Tags: what each frame is, counted by the writer for the sidecar. A source's first
# frame carries its kind so that conversations cut by the end of the file still count
# exactly when (and only when) at least one of their frames was written. Adding
# TAG_IPV6 marks a frame of an IPv6 source.
TAG_PLAIN = 0
TAG_FIRST_FIN = 1
TAG_FIRST_RST = 2
TAG_FIRST_REJECTED = 3
TAG_FIRST_UNANSWERED = 4
TAG_SYN_RETRY = 5
TAG_RETRANSMISSION = 6
TAG_FAST_RETRANSMISSION = 7
TAG_DUP_ACK = 8
TAG_OUT_OF_ORDER = 9
TAG_ZERO_WINDOW = 10
TAG_AFTER_LOSS = 11
TAG_ECHO_REQUEST = 12
TAG_ECHO_REPLY = 13
TAG_ECHO_REQUEST_UNANSWERED = 14
TAG_REJECT_RST = 15
TAG_IPV6 = 16
TAG_SPAWN = 99
TAG_NAMES = {
    TAG_FIRST_FIN: "tcp_first_fin",
    TAG_FIRST_RST: "tcp_first_rst",
    TAG_FIRST_REJECTED: "tcp_first_rejected",
    TAG_FIRST_UNANSWERED: "tcp_first_unanswered",
    TAG_SYN_RETRY: "syn_retries",
    TAG_RETRANSMISSION: "retransmissions",
    TAG_FAST_RETRANSMISSION: "fast_retransmissions",
    TAG_DUP_ACK: "dup_acks",
    TAG_OUT_OF_ORDER: "out_of_order",
    TAG_ZERO_WINDOW: "zero_window",
    TAG_AFTER_LOSS: "segments_after_loss",
    TAG_ECHO_REQUEST: "echo_requests_answered",
    TAG_ECHO_REPLY: "echo_replies",
    TAG_ECHO_REQUEST_UNANSWERED: "echo_requests_unanswered",
    TAG_REJECT_RST: "reject_rsts",
}

FORMATS = ("pcap", "pcap-ns", "pcapng", "pcapng-ns")
DEFAULT_CONVERSATIONS_PER_MILLION = 9000
NOMINAL_PACKETS_PER_SECOND = 10_000
ICMP_PACKET_SHARE = 0.01
IPV6_SHARE = 0.1
START_NS = 1_764_000_000 * 1_000_000_000
SECOND = 1_000_000_000
MILLISECOND = 1_000_000
MICROSECOND = 1_000
MSS = 1448
SNAPLEN = 262_144
LINKTYPE_ETHERNET = 1
BATCH_RECORDS = 16_384

ETHERTYPE_IPV4 = b"\x08\x00"
ETHERTYPE_IPV6 = b"\x86\xdd"
IPV4_LENGTH_ID = struct.Struct("!HH")
IPV6_LENGTH = struct.Struct("!H")
# seq, ack, data offset byte, flags, window, then checksum+urgent (zero) and the
# timestamps option's NOP NOP kind length as one constant, then TSval, TSecr.
SEGMENT_WITH_TIMESTAMPS = struct.Struct("!IIBBH8sII")
TIMESTAMPS_LEAD = b"\x00\x00\x00\x00\x01\x01\x08\x0a"
SEGMENT_BARE = struct.Struct("!IIBBHI")
SACK_BLOCK = struct.Struct("!BBBBII")
# SYN options as Linux sends them: MSS, SACK-permitted, timestamps, NOP, wscale 7.
SYN_OPTIONS = struct.Struct("!BBHBBBBIIBBBB")
ICMP_ECHO = struct.Struct("!BBHHH")
PCAP_HEADER = struct.Struct("<IHHiIII")
PCAP_RECORD = struct.Struct("<IIII")
PCAPNG_EPB = struct.Struct("<IIIIIII")

Frame = tuple[int, bytes, int]
# What the merge loop reads from a source: frames, or (from a spawner) new sources.
Source = Iterator[tuple[int, object, int]]


class Direction:
    """Fixed header bytes for one direction of one flow (Ethernet, IP, ports)."""

    __slots__ = ("head", "ip_id", "middle", "v6")

    def __init__(
        self,
        source_mac: bytes,
        destination_mac: bytes,
        source_ip: bytes,
        destination_ip: bytes,
        protocol: int,
        ports: bytes,
        ip_id: int,
    ) -> None:
        self.v6 = len(source_ip) == 16
        self.ip_id = ip_id
        if self.v6:
            self.head = destination_mac + source_mac + ETHERTYPE_IPV6 + b"\x60\x00\x00\x00"
            self.middle = bytes((protocol, 64)) + source_ip + destination_ip + ports
        else:
            self.head = destination_mac + source_mac + ETHERTYPE_IPV4 + b"\x45\x00"
            self.middle = b"\x40\x00" + bytes((64, protocol)) + b"\x00\x00"
            self.middle += source_ip + destination_ip + ports

    def ip(self, transport_length: int) -> bytes:
        """Ethernet and IP headers up to the ports, for a transport payload this long."""
        if self.v6:
            return self.head + IPV6_LENGTH.pack(transport_length) + self.middle
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        return self.head + IPV4_LENGTH_ID.pack(transport_length + 20, self.ip_id) + self.middle


class Payload:
    """Deterministic bytes to slice segment payloads from (never copied per packet)."""

    def __init__(self, rng: random.Random) -> None:
        self.data = rng.randbytes(65_536)

    def take(self, length: int, offset: int) -> bytes:
        start = offset & 0x7FFF
        return self.data[start : start + length]


class World:
    """Shared state of one generation: the random source, addresses, payload, sizes."""

    def __init__(self, seed: int, packets: int, conversations: int) -> None:
        self.rng = random.Random(seed)
        self.payload = Payload(self.rng)
        self.packets = packets
        self.conversations = max(1, conversations)
        tcp_packets = packets * (1 - ICMP_PACKET_SHARE)
        self.mean_packets_per_conversation = max(8.0, tcp_packets / self.conversations)
        duration_s = max(1.0, packets / NOMINAL_PACKETS_PER_SECOND)
        self.conversation_rate = self.conversations / duration_s
        self.ping_rate = max(0.05, packets * ICMP_PACKET_SHARE / 11.0 / duration_s)
        self.client_count = max(64, self.conversations // 4)
        self.server_count = max(16, self.conversations // 60)
        self.next_port: dict[int, int] = {}
        self.gateway_mac = b"\x02\x00\x5e\x00\x00\x01"

    def mac(self, index: int, side: int) -> bytes:
        return bytes((0x02, side, 0)) + (index & 0xFFFFFF).to_bytes(3, "big")

    def client_address(self, index: int, v6: bool) -> bytes:
        if v6:
            return b"\x20\x01\x0d\xb8\x00\x01" + b"\x00" * 6 + index.to_bytes(4, "big")
        return bytes((10, 1 + (index >> 16) % 200, (index >> 8) & 0xFF, 1 + (index & 0xFF) % 254))

    def server_address(self, index: int, v6: bool) -> bytes:
        if v6:
            return b"\x20\x01\x0d\xb8\x00\xff" + b"\x00" * 6 + index.to_bytes(4, "big")
        block = (b"\xc0\x00\x02", b"\xc6\x33\x64", b"\xcb\x00\x71")[index % 3]
        return block + bytes((1 + (index // 3) % 254,))

    def client_port(self, client: int) -> int:
        # Ephemeral ports handed out in turn per client, as Linux does, so that no
        # 4-tuple is reused within a file (a reused one would merge two streams).
        port = self.next_port.get(client, 32_768 + (client * 7919) % 20_000)
        self.next_port[client] = port + 1 if port < 60_999 else 32_768
        return port


def lognormal_int(rng: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    return min(high, max(low, int(rng.lognormvariate(math.log(median), sigma))))


class Conversation:
    """One TCP conversation, seen from a tap near the client."""

    def __init__(self, world: World, start: int) -> None:
        rng = world.rng
        self.world = world
        self.rng = rng
        self.start = start
        self.v6 = rng.random() < IPV6_SHARE
        self.extra_tag = TAG_IPV6 if self.v6 else 0
        draw = rng.random()
        if draw < 0.04:
            self.kind = TAG_FIRST_UNANSWERED
        elif draw < 0.08:
            self.kind = TAG_FIRST_REJECTED
        elif draw < 0.17:
            self.kind = TAG_FIRST_RST
        else:
            self.kind = TAG_FIRST_FIN
        # A few conversations are downloads: big responses in several flights, the
        # only place a receiver's window can fill up.
        self.bulk = self.kind in (TAG_FIRST_FIN, TAG_FIRST_RST) and rng.random() < 0.04
        client = rng.randrange(world.client_count)
        server = rng.randrange(world.server_count)
        client_port = world.client_port(client)
        # Mostly TLS, as today's traffic; no clear-text protocol ports, whose
        # dissectors would choke on random payload and skew tshark's time.
        server_port = (443, 443, 443, 443, 443, 8443, 7096, 7096)[server % 8]
        client_mac = world.mac(client, 1)
        ports = struct.pack("!HH", client_port, server_port)
        self.c2s = Direction(
            client_mac,
            world.gateway_mac,
            world.client_address(client, self.v6),
            world.server_address(server, self.v6),
            6,
            ports,
            rng.getrandbits(16),
        )
        self.s2c = Direction(
            world.gateway_mac,
            client_mac,
            world.server_address(server, self.v6),
            world.client_address(client, self.v6),
            6,
            ports[2:] + ports[:2],
            rng.getrandbits(16),
        )
        # RTT between the tap and the server; the client is next to the tap.
        self.rtt = int(rng.lognormvariate(math.log(20 * MILLISECOND), 1.0))
        self.rtt = min(400 * MILLISECOND, max(100 * MICROSECOND, self.rtt))
        # Time on the wire of one full segment: 100 Mb/s to 10 Gb/s paths.
        self.gap = rng.choice((120, 60, 12, 12, 3)) * MICROSECOND
        mean = world.mean_packets_per_conversation
        self.target = lognormal_int(rng, mean * 0.66, 1.0, 6, int(mean * 60))
        self.client_ts = rng.getrandbits(31)
        self.server_ts = rng.getrandbits(31)
        self.client_window = 502
        self.server_window = 509

    # Frame builders. Every one returns bytes; the caller tags and times it.

    def syn(self, direction: Direction, flags: int, seq: int, ack: int, tsval: int) -> bytes:
        ts_echo = 0 if flags == SYN else self.client_ts
        window = 64_240 if flags == SYN else 65_160
        tcp = SEGMENT_BARE.pack(seq, ack, 0xA0, flags, window, 0)
        options = SYN_OPTIONS.pack(2, 4, MSS + 12, 4, 2, 8, 10, tsval, ts_echo, 1, 3, 3, 7)
        return direction.ip(40) + tcp + options

    def segment(
        self,
        direction: Direction,
        flags: int,
        seq: int,
        ack: int,
        window: int,
        length: int,
        now: int,
    ) -> bytes:
        ms = (now - self.start) // MILLISECOND
        if direction is self.c2s:
            tsval, tsecr = self.client_ts + ms, self.server_ts + ms
        else:
            tsval, tsecr = self.server_ts + ms, self.client_ts + ms
        header = direction.ip(32 + length) + SEGMENT_WITH_TIMESTAMPS.pack(
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF,
            0x80,
            flags,
            window,
            TIMESTAMPS_LEAD,
            tsval & 0xFFFFFFFF,
            tsecr & 0xFFFFFFFF,
        )
        if length:
            return header + self.world.payload.take(length, seq)
        return header

    def sack_ack(self, seq: int, ack: int, left: int, right: int, now: int) -> bytes:
        ms = (now - self.start) // MILLISECOND
        tcp = SEGMENT_WITH_TIMESTAMPS.pack(
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF,
            0xB0,
            ACK,
            self.client_window,
            TIMESTAMPS_LEAD,
            (self.client_ts + ms) & 0xFFFFFFFF,
            (self.server_ts + ms) & 0xFFFFFFFF,
        )
        sack = SACK_BLOCK.pack(1, 1, 5, 10, left & 0xFFFFFFFF, right & 0xFFFFFFFF)
        return self.c2s.ip(44) + tcp + sack

    def rst(self, direction: Direction, seq: int, ack: int) -> bytes:
        flags = RST | ACK if ack else RST
        return direction.ip(20) + SEGMENT_BARE.pack(
            seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 0, 0
        )

    # The conversation itself.

    def frames(self) -> Iterator[Frame]:
        rng = self.rng
        extra = self.extra_tag
        c2s, s2c = self.c2s, self.s2c
        now = self.start
        client_seq = rng.getrandbits(32)
        server_seq = rng.getrandbits(32)
        yield now, self.syn(c2s, SYN, client_seq, 0, self.client_ts), self.kind + extra
        if self.kind == TAG_FIRST_UNANSWERED:
            # Linux's SYN retries: 1 s, then 2 s, then 4 s later.
            for backoff in (1, 2, 4):
                now += backoff * SECOND + rng.randrange(2 * MILLISECOND)
                ts = self.client_ts + (now - self.start) // MILLISECOND
                yield now, self.syn(c2s, SYN, client_seq, 0, ts), TAG_SYN_RETRY + extra
            return
        now += self.rtt
        if self.kind == TAG_FIRST_REJECTED:
            yield now, self.rst(s2c, 0, client_seq + 1), TAG_REJECT_RST + extra
            return
        yield now, self.syn(s2c, SYN | ACK, server_seq, client_seq + 1, self.server_ts), extra
        client_seq += 1
        server_seq += 1
        now += rng.randrange(20, 90) * MICROSECOND
        ack_frame = self.segment(c2s, ACK, client_seq, server_seq, self.client_window, 0, now)
        yield now, ack_frame, extra
        emitted = 3
        first_round = True
        while emitted < self.target:
            if first_round:
                now += rng.randrange(10, 200) * MICROSECOND
                first_round = False
            elif rng.random() < 0.03:
                now += int(rng.expovariate(1 / 2) * SECOND)
            else:
                now += int(rng.expovariate(1 / 0.08) * SECOND)
            request = lognormal_int(rng, 120, 0.8, 30, 12_000)
            response_budget = max(1, self.target - emitted - 4)
            if self.bulk:
                response = lognormal_int(rng, 60_000, 1.0, 3 * MSS, MSS * response_budget)
            else:
                response = lognormal_int(rng, 140, 1.4, 1, 4 * MSS * response_budget)
            exchange, now, client_seq, server_seq = self.round(
                now, client_seq, server_seq, request, response
            )
            emitted += len(exchange)
            exchange.sort(key=_frame_time)
            # A client ACK may trail the time the round handed back; never go back.
            now = max(now, exchange[-1][0])
            for when, frame, tag in exchange:
                yield when, frame, tag + extra
        for when, frame, tag in self.ending(now, client_seq, server_seq):
            yield when, frame, tag + extra

    def round(
        self, now: int, client_seq: int, server_seq: int, request: int, response: int
    ) -> tuple[list[Frame], int, int, int]:
        """One request and its response; frames may come back out of time order."""
        rng = self.rng
        c2s, s2c = self.c2s, self.s2c
        out: list[Frame] = []
        window = self.client_window
        # The request, in MSS-sized segments; once in a while the first is resent
        # after Linux's minimum RTO because its ACK never came.
        sent = 0
        while sent < request:
            length = min(MSS, request - sent)
            flags = PSH | ACK if sent + length >= request else ACK
            out.append(
                (now, self.segment(c2s, flags, client_seq, server_seq, window, length, now), 0)
            )
            if sent == 0 and rng.random() < 0.004:
                later = now + 200 * MILLISECOND + self.rtt
                frame = self.segment(c2s, flags, client_seq, server_seq, window, length, later)
                out.append((later, frame, TAG_RETRANSMISSION))
                now = later
            client_seq += length
            sent += length
            now += self.gap * length // MSS + MICROSECOND
        # The response, in flights limited by the congestion window (10 segments at
        # first, then doubling), each flight clocked by the client's ACKs.
        now += self.rtt + rng.randrange(30, 3000) * MICROSECOND
        if response < MSS // 2 and rng.random() < 0.3:
            # A server that answers slowly ACKs the request first.
            out.append(
                (now, self.segment(s2c, ACK, server_seq, client_seq, self.server_window, 0, now), 0)
            )
            now += rng.randrange(1, 40) * MILLISECOND
        remaining = response
        flight_size = 10
        while remaining > 0:
            lengths: list[int] = []
            while remaining > 0 and len(lengths) < flight_size:
                length = min(MSS, remaining)
                lengths.append(length)
                remaining -= length
            now, server_seq = self.flight(out, now, client_seq, server_seq, lengths, remaining)
            flight_size = min(64, flight_size * 2)
        return out, now, client_seq, server_seq

    def flight(
        self,
        out: list[Frame],
        now: int,
        client_seq: int,
        server_seq: int,
        lengths: list[int],
        remaining: int,
    ) -> tuple[int, int]:
        """One flight of server segments and the client's ACKs; returns (time, seq)."""
        rng = self.rng
        c2s, s2c = self.c2s, self.s2c
        count = len(lengths)
        starts = [server_seq]
        for length in lengths:
            starts.append(starts[-1] + length)
        end = starts[-1]
        last_flags = ACK if remaining else PSH | ACK
        event = rng.random()
        lost = -1
        swapped = -1
        timeout = False
        if count >= 5 and event < 0.05:
            lost = rng.randrange(count - 3)
        elif count >= 2 and event < 0.02:
            swapped = rng.randrange(count - 1)
        elif event < 0.004:
            timeout = True
        arrival = [now + index * self.gap for index in range(count)]
        if swapped >= 0:
            # The earlier segment takes a longer path and arrives after the next one.
            arrival[swapped] = arrival[swapped + 1] + rng.randrange(5, 300) * MICROSECOND
        server_window = self.server_window
        client_window = self.client_window
        # The client's receive state: the next segment it needs, the segments it
        # holds beyond a hole, in-order segments not yet ACKed (delayed ACK: every
        # second one), and the last ACK number it sent (for duplicate ACKs).
        expected = 0
        held: set[int] = set()
        unacked = 0
        last_ack = server_seq
        last_arrival = now
        for index in sorted(range(count), key=arrival.__getitem__):
            at = arrival[index]
            last_arrival = max(last_arrival, at)
            if index == lost:
                continue  # dropped before the tap: never seen
            flags = last_flags if index == count - 1 else ACK
            tag = TAG_PLAIN
            if lost >= 0 and index == lost + 1:
                tag = TAG_AFTER_LOSS
            elif index == swapped:
                tag = TAG_OUT_OF_ORDER
            frame = self.segment(
                s2c, flags, starts[index], client_seq, server_window, lengths[index], at
            )
            out.append((at, frame, tag))
            if timeout and index == count - 1:
                continue  # lost between the tap and the client
            reply_at = at + rng.randrange(8, 40) * MICROSECOND
            if index != expected:
                # Beyond a hole: an immediate duplicate ACK with a SACK block.
                held.add(index)
                hole = starts[expected]
                frame = self.sack_ack(
                    client_seq, hole, starts[min(held)], starts[max(held) + 1], reply_at
                )
                out.append((reply_at, frame, TAG_DUP_ACK if last_ack == hole else 0))
                last_ack = hole
                continue
            expected += 1
            filled = False
            while expected in held:
                held.discard(expected)
                expected += 1
                filled = True
            unacked += 1
            if filled or unacked >= 2 or expected == count:
                frame = self.segment(
                    c2s, ACK, client_seq, starts[expected], client_window, 0, reply_at
                )
                out.append((reply_at, frame, 0))
                last_ack = starts[expected]
                unacked = 0
        now = last_arrival + rng.randrange(8, 40) * MICROSECOND
        if lost >= 0:
            # The third duplicate ACK reaches the server; its fast retransmission
            # reaches the tap one RTT later, and the client then ACKs everything.
            now += self.rtt
            frame = self.segment(
                s2c, ACK, starts[lost], client_seq, server_window, lengths[lost], now
            )
            out.append((now, frame, TAG_FAST_RETRANSMISSION))
            now += rng.randrange(8, 40) * MICROSECOND
            out.append((now, self.segment(c2s, ACK, client_seq, end, client_window, 0, now), 0))
        elif timeout:
            # The last segment was lost past the tap. The client's delayed ACK timer
            # (40 ms) ACKs what it has; the server resends the segment after its
            # retransmission timeout (200 ms minimum on Linux); the client ACKs it.
            if unacked:
                now += 40 * MILLISECOND
                frame = self.segment(c2s, ACK, client_seq, starts[-2], client_window, 0, now)
                out.append((now, frame, 0))
            now = last_arrival + 200 * MILLISECOND + self.rtt
            frame = self.segment(
                s2c, last_flags, starts[-2], client_seq, server_window, lengths[-1], now
            )
            out.append((now, frame, TAG_RETRANSMISSION))
            now += rng.randrange(8, 40) * MICROSECOND
            out.append((now, self.segment(c2s, ACK, client_seq, end, client_window, 0, now), 0))
        if remaining and rng.random() < 0.05:
            # The client's buffer fills: window 0, a probe from the server after its
            # persist timer, a repeated zero window, then the window update.
            now += 20 * MICROSECOND
            frame = self.segment(c2s, ACK, client_seq, end, 0, 0, now)
            out.append((now, frame, TAG_ZERO_WINDOW))
            now += self.rtt + 200 * MILLISECOND
            out.append((now, self.segment(s2c, ACK, end - 1, client_seq, server_window, 0, now), 0))
            now += rng.randrange(8, 40) * MICROSECOND
            frame = self.segment(c2s, ACK, client_seq, end, 0, 0, now)
            out.append((now, frame, TAG_ZERO_WINDOW))
            now += rng.randrange(10, 400) * MILLISECOND
            out.append((now, self.segment(c2s, ACK, client_seq, end, client_window, 0, now), 0))
        if remaining:
            now += self.rtt
        return now, end

    def ending(self, now: int, client_seq: int, server_seq: int) -> list[Frame]:
        rng = self.rng
        c2s, s2c = self.c2s, self.s2c
        window = self.client_window
        now += int(rng.expovariate(1 / 0.1) * SECOND)
        if self.kind == TAG_FIRST_RST:
            if rng.random() < 0.5:
                return [(now, self.rst(c2s, client_seq, server_seq), 0)]
            return [(now, self.rst(s2c, server_seq, client_seq), 0)]
        out: list[Frame] = []
        if rng.random() < 0.6:
            # The client closes; the server's FIN follows after one RTT.
            out.append(
                (now, self.segment(c2s, FIN | ACK, client_seq, server_seq, window, 0, now), 0)
            )
            now += self.rtt
            frame = self.segment(
                s2c, FIN | ACK, server_seq, client_seq + 1, self.server_window, 0, now
            )
            out.append((now, frame, 0))
            now += rng.randrange(8, 40) * MICROSECOND
            frame = self.segment(c2s, ACK, client_seq + 1, server_seq + 1, window, 0, now)
            out.append((now, frame, 0))
        else:
            frame = self.segment(s2c, FIN | ACK, server_seq, client_seq, self.server_window, 0, now)
            out.append((now, frame, 0))
            now += rng.randrange(30, 400) * MICROSECOND
            frame = self.segment(c2s, FIN | ACK, client_seq, server_seq + 1, window, 0, now)
            out.append((now, frame, 0))
            now += self.rtt
            frame = self.segment(
                s2c, ACK, server_seq + 1, client_seq + 1, self.server_window, 0, now
            )
            out.append((now, frame, 0))
        return out


def _frame_time(frame: Frame) -> int:
    return frame[0]


def internet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum (``data`` of even length)."""
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ping_session(world: World, start: int) -> Iterator[Frame]:
    """An ICMP (or ICMPv6) echo session: one request a second, mostly answered."""
    rng = world.rng
    v6 = rng.random() < IPV6_SHARE
    extra = TAG_IPV6 if v6 else 0
    client = rng.randrange(world.client_count)
    server = rng.randrange(world.server_count)
    client_mac = world.mac(client, 1)
    client_ip = world.client_address(client, v6)
    server_ip = world.server_address(server, v6)
    protocol = 58 if v6 else 1
    request_type, reply_type = (128, 129) if v6 else (8, 0)
    outbound = Direction(
        client_mac, world.gateway_mac, client_ip, server_ip, protocol, b"", rng.getrandbits(16)
    )
    inbound = Direction(
        world.gateway_mac, client_mac, server_ip, client_ip, protocol, b"", rng.getrandbits(16)
    )
    identifier = rng.getrandbits(16)
    count = rng.choice((1, 3, 4, 4, 5, 5, 5, 10))
    unanswered_host = rng.random() < 0.1
    rtt = min(300 * MILLISECOND, max(50 * MICROSECOND, int(rng.lognormvariate(math.log(15e6), 1))))
    now = start
    body = world.payload.take(48, identifier)
    # ICMPv6's checksum covers a pseudo-header of addresses, length and type 58.
    pseudo_out = client_ip + server_ip + b"\x00\x00\x00\x40\x00\x00\x00\x3a" if v6 else b""
    pseudo_in = server_ip + client_ip + b"\x00\x00\x00\x40\x00\x00\x00\x3a" if v6 else b""
    for sequence in range(1, count + 1):
        stamp = struct.pack("<II", now // SECOND, (now // MICROSECOND) % 1_000_000)
        answered = not unanswered_host and rng.random() > 0.03
        rest = stamp + body
        request = ICMP_ECHO.pack(request_type, 0, 0, identifier, sequence) + rest
        checksum = internet_checksum(pseudo_out + request)
        request = ICMP_ECHO.pack(request_type, 0, checksum, identifier, sequence) + rest
        tag = TAG_ECHO_REQUEST if answered else TAG_ECHO_REQUEST_UNANSWERED
        yield now, outbound.ip(64) + request, tag + extra
        if answered:
            reply = ICMP_ECHO.pack(reply_type, 0, 0, identifier, sequence) + rest
            checksum = internet_checksum(pseudo_in + reply)
            reply = ICMP_ECHO.pack(reply_type, 0, checksum, identifier, sequence) + rest
            jitter = rng.randrange(max(1, rtt // 20))
            yield now + rtt + jitter, inbound.ip(64) + reply, TAG_ECHO_REPLY + extra
        now += SECOND + rng.randrange(-200, 200) * MICROSECOND


def spawner(world: World, rate: float, tcp: bool) -> Source:
    """Start times of new sources: a Poisson process of the given rate per second."""
    rng = world.rng
    now = START_NS
    while True:
        now += int(rng.expovariate(rate) * SECOND) + 1
        source = Conversation(world, now).frames() if tcp else ping_session(world, now)
        yield now, source, TAG_SPAWN


class Writer:
    """Batches records of one of the four formats into large writes."""

    def __init__(self, path: Path, file_format: str) -> None:
        self.handle = path.open("wb")
        self.file_format = file_format
        self.parts: list[bytes] = []
        self.nanoseconds = file_format.endswith("-ns")
        self.pcapng = file_format.startswith("pcapng")
        if self.pcapng:
            section = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1)
            section += struct.pack("<I", 28)
            resolution = 9 if self.nanoseconds else 6
            options = struct.pack("<HHB3x", 9, 1, resolution) + struct.pack("<HH", 0, 0)
            length = 20 + len(options)
            interface = struct.pack("<IIHHI", 1, length, LINKTYPE_ETHERNET, 0, SNAPLEN)
            interface += options + struct.pack("<I", length)
            self.parts.append(section + interface)
        else:
            magic = 0xA1B23C4D if self.nanoseconds else 0xA1B2C3D4
            self.parts.append(PCAP_HEADER.pack(magic, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))

    def write(self, frames: list[tuple[int, bytes]]) -> None:
        parts = self.parts
        append = parts.append
        if self.pcapng:
            pack = PCAPNG_EPB.pack
            nanoseconds = self.nanoseconds
            for when, frame in frames:
                stamp = when if nanoseconds else when // MICROSECOND
                length = len(frame)
                padding = -length & 3
                total = 32 + length + padding
                append(pack(6, total, 0, stamp >> 32, stamp & 0xFFFFFFFF, length, length))
                append(frame)
                append(b"\x00" * padding + total.to_bytes(4, "little"))
        else:
            pack = PCAP_RECORD.pack
            if self.nanoseconds:
                for when, frame in frames:
                    seconds, fraction = divmod(when, SECOND)
                    append(pack(seconds, fraction, len(frame), len(frame)))
                    append(frame)
            else:
                for when, frame in frames:
                    seconds, fraction = divmod(when // MICROSECOND, 1_000_000)
                    append(pack(seconds, fraction, len(frame), len(frame)))
                    append(frame)
        self.handle.write(b"".join(parts))
        parts.clear()

    def close(self) -> None:
        if self.parts:
            self.handle.write(b"".join(self.parts))
        self.handle.close()


def generate(
    out: Path,
    packets: int,
    seed: int = 1,
    conversations: int | None = None,
    file_format: str = "pcap",
) -> dict[str, object]:
    """Write ``packets`` frames to ``out`` and a sidecar ``out.gen.json``; return the sidecar."""
    if file_format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    if conversations is None:
        conversations = max(1, round(packets * DEFAULT_CONVERSATIONS_PER_MILLION / 1_000_000))
    world = World(seed, packets, conversations)
    writer = Writer(out, file_format)
    counts = [0] * 64
    order = 0
    # Heap entries: (time, order, frame or new source, tag, source). ``order`` keeps
    # frames of equal time in the order they were made and never compares sources.
    heap: list[tuple[int, int, object, int, Source]] = []
    for source in (
        spawner(world, world.conversation_rate, tcp=True),
        spawner(world, world.ping_rate, tcp=False),
    ):
        when, item, tag = next(source)
        heap.append((when, order, item, tag, source))
        order += 1
    heapq.heapify(heap)
    batch: list[tuple[int, bytes]] = []
    written = 0
    heapreplace, heappop, heappush = heapq.heapreplace, heapq.heappop, heapq.heappush
    while written < packets:
        when, _, item, tag, source = heap[0]
        following = next(source, None)
        if following is None:
            heappop(heap)
        else:
            order += 1
            heapreplace(heap, (following[0], order, following[1], following[2], source))
        if tag == TAG_SPAWN:
            new_source = cast(Source, item)
            first = next(new_source)
            order += 1
            heappush(heap, (first[0], order, first[1], first[2], new_source))
            continue
        counts[tag] += 1
        batch.append((when, cast(bytes, item)))
        written += 1
        if len(batch) >= BATCH_RECORDS:
            writer.write(batch)
            batch.clear()
    writer.write(batch)
    writer.close()
    summary = _summary(counts)
    sidecar: dict[str, object] = {
        "generator": "bench/gen.py",
        "seed": seed,
        "format": file_format,
        "packets": written,
        "requested_conversations": conversations,
        **summary,
    }
    Path(f"{out}.gen.json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return sidecar


def _summary(counts: list[int]) -> dict[str, object]:
    both = {name: counts[tag] + counts[tag + TAG_IPV6] for tag, name in TAG_NAMES.items()}
    firsts = (TAG_FIRST_FIN, TAG_FIRST_RST, TAG_FIRST_REJECTED, TAG_FIRST_UNANSWERED)
    tcp_ipv6 = sum(counts[tag + TAG_IPV6] for tag in firsts)
    tcp_total = sum(both[TAG_NAMES[tag]] for tag in firsts)
    ipv6_frames = sum(counts[TAG_IPV6:])
    return {
        "tcp_conversations": tcp_total,
        "tcp_conversations_ipv6": tcp_ipv6,
        "tcp_conversations_by_planned_end": {
            "fin": both["tcp_first_fin"],
            "rst": both["tcp_first_rst"],
            "rejected": both["tcp_first_rejected"],
            "syn_unanswered": both["tcp_first_unanswered"],
        },
        "ipv6_frames": ipv6_frames,
        "icmp_echo": {
            "requests": both["echo_requests_answered"] + both["echo_requests_unanswered"],
            "replies": both["echo_replies"],
            "requests_left_unanswered": both["echo_requests_unanswered"],
        },
        "events": {
            name: both[name]
            for name in (
                "syn_retries",
                "reject_rsts",
                "retransmissions",
                "fast_retransmissions",
                "dup_acks",
                "out_of_order",
                "zero_window",
                "segments_after_loss",
            )
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, required=True, help="frames to write")
    parser.add_argument("--out", type=Path, required=True, help="capture file to write")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--conversations",
        type=int,
        default=None,
        help=f"about how many TCP conversations (default {DEFAULT_CONVERSATIONS_PER_MILLION} "
        "per million packets)",
    )
    parser.add_argument("--format", choices=FORMATS, default="pcap", dest="file_format")
    args = parser.parse_args(argv)
    if args.packets < 1:
        parser.error("--packets must be at least 1")
    started = time.perf_counter()
    sidecar = generate(args.out, args.packets, args.seed, args.conversations, args.file_format)
    elapsed = time.perf_counter() - started
    size = args.out.stat().st_size
    print(
        f"{args.out}: {sidecar['packets']} packets, {sidecar['tcp_conversations']} TCP "
        f"conversations, {size / 1e6:.1f} MB in {elapsed:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
