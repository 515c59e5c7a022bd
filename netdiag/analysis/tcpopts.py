"""TCP option parsing for the conversation trackers (analysis stage).

The decode boundary hands the raw option bytes over untouched
(``DecodedPacket.tcp_options``); this module reads them the way Wireshark's
``tcp_dissect_options`` walks them, so that window scaling agrees with
tshark: EOL ends the list, NOP is one byte, every other option needs a length
byte, and a length below 2 or running past the header stops the walk (the
options before it still count). A window-scale shift above 14 is used as 14
(RFC 7323), as Wireshark does.

``window_scale`` is the hot-path helper (called for SYNs only); ``parse``
gives everything for reports and tests.
"""

from __future__ import annotations

from dataclasses import dataclass

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

MAX_WINDOW_SHIFT = 14  # RFC 7323 section 2.3


@dataclass(frozen=True, slots=True)
class TcpOptions:
    """The options netdiag cares about; None/False/() when absent."""

    mss: int | None = None
    window_scale: int | None = None  # shift count, capped at 14
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()  # (left edge, right edge), absolute
    ts_val: int | None = None
    ts_ecr: int | None = None
    malformed: bool = False  # the walk stopped at a bad length


def _walk(raw: bytes) -> tuple[list[tuple[int, bytes]], bool]:
    """(kind, value) of each well-formed option, and whether the walk hit a bad length."""
    options: list[tuple[int, bytes]] = []
    offset = 0
    end = len(raw)
    while offset < end:
        kind = raw[offset]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            offset += 1
            continue
        if offset + 1 >= end:
            return options, True
        length = raw[offset + 1]
        if length < 2 or offset + length > end:
            return options, True
        options.append((kind, raw[offset + 2 : offset + length]))
        offset += length
    return options, False


def window_scale(raw: bytes) -> int | None:
    """The window-scale shift announced in these options (last one wins), or None.

    Wireshark's option dissector ignores a window-scale option whose length
    is not exactly 3.
    """
    shift: int | None = None
    for kind, value in _walk(raw)[0]:
        if kind == OPT_WSCALE and len(value) == 1:
            shift = min(value[0], MAX_WINDOW_SHIFT)
    return shift


def parse(raw: bytes) -> TcpOptions:
    """Every option netdiag reports on: MSS, window scale, SACK, timestamps."""
    walked, malformed = _walk(raw)
    mss: int | None = None
    shift: int | None = None
    sack_permitted = False
    blocks: list[tuple[int, int]] = []
    ts_val: int | None = None
    ts_ecr: int | None = None
    for kind, value in walked:
        if kind == OPT_MSS and len(value) == 2:
            mss = int.from_bytes(value, "big")
        elif kind == OPT_WSCALE and len(value) == 1:
            shift = min(value[0], MAX_WINDOW_SHIFT)
        elif kind == OPT_SACK_PERMITTED and not value:
            sack_permitted = True
        elif kind == OPT_SACK and value and len(value) % 8 == 0:
            for start in range(0, len(value), 8):
                left = int.from_bytes(value[start : start + 4], "big")
                right = int.from_bytes(value[start + 4 : start + 8], "big")
                blocks.append((left, right))
        elif kind == OPT_TIMESTAMP and len(value) == 8:
            ts_val = int.from_bytes(value[:4], "big")
            ts_ecr = int.from_bytes(value[4:], "big")
    return TcpOptions(
        mss=mss,
        window_scale=shift,
        sack_permitted=sack_permitted,
        sack_blocks=tuple(blocks),
        ts_val=ts_val,
        ts_ecr=ts_ecr,
        malformed=malformed,
    )
