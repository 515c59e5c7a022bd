"""Streaming reader of pcap and pcapng files: the analysis stage's input.

``CaptureReader`` yields one ``RawFrame`` per frame, numbered from 1 as
Wireshark numbers them, and afterwards describes the file in a ``FileInfo``.
It reads the file in fixed-size chunks and parses record headers with
precompiled ``struct`` objects, so memory stays flat whatever the file size
and no per-packet object outlives the packet.

Why not dpkt's readers: they hide the captured and original lengths (snaplen
truncation becomes invisible), apply the first pcapng interface's link type
and timestamp resolution to every packet, ignore simple packet blocks and
later sections, and end silently at a cut-short record. Here:

* pcap: the four magics (micro/nanosecond, either byte order), plus the
  "modified" (Kuznetzov) variant with its longer record header.
* pcapng: any number of sections (each resets the interfaces and may change
  byte order), interfaces with their own link type, ``if_tsresol`` (power of
  10 or 2) and ``if_tsoffset``; enhanced, simple and obsolete packet blocks;
  custom blocks become frames without a packet (tshark 4.0 lists them, and
  frame numbers must agree with it); every other block is skipped.
* gzip: either format compressed (Wireshark's "compress with gzip", a
  downloaded .pcap.gz) is read through ``gzip`` front to back, as a pipe is;
  a compressed stream cut short or damaged ends the reading like damage below.
* Damage in the file never raises: a file cut inside a record, trailing
  garbage, an implausible length or a malformed block ends the reading with
  a warning saying where, and ``FileInfo.complete`` false. A file that is not
  a capture at all (or cannot be opened) raises before any frame is yielded;
  a read that fails (an I/O error) raises ``InputError`` where it happens,
  mid-iteration too, and so does iterating again over a pipe (it cannot be
  read twice).
"""

from __future__ import annotations

import operator
import os
import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Final, Literal

from netdiag.analysis.model import FileInfo
from netdiag.analysis.packet import COMPILED, RawFrame, big_endian_u32
from netdiag.errors import CaptureFormatError, InputError

if TYPE_CHECKING:
    from gzip import GzipFile

# Link type given to pcapng frames that are not packets (custom blocks): the
# decoder classifies them as "other", as tshark shows them with no encapsulation.
LINKTYPE_NONE: Final = -1

# libpcap's MAXIMUM_SNAPLEN: no capture tool writes a larger record, so a
# larger length means the record header is garbage. Checked before any buffer
# is allocated for the record.
MAX_CAPLEN: Final = 262144
# Largest non-packet pcapng block we load into memory to parse (SHB, IDB);
# blocks we skip are never loaded, whatever their size.
MAX_PARSED_BLOCK: Final = 1 << 20
CHUNK_SIZE: Final = 1 << 20
MAX_WARNINGS: Final = 20

PCAPNG_SHB: Final = 0x0A0D0D0A
PCAPNG_IDB: Final = 0x00000001
PCAPNG_PB: Final = 0x00000002  # obsolete packet block
PCAPNG_SPB: Final = 0x00000003
PCAPNG_EPB: Final = 0x00000006
PCAPNG_CUSTOM = (0x00000BAD, 0x40000BAD)
_PCAPNG_LOADED_BLOCKS = frozenset(
    (PCAPNG_SHB, PCAPNG_IDB, PCAPNG_PB, PCAPNG_SPB, PCAPNG_EPB, *PCAPNG_CUSTOM)
)

OPT_ENDOFOPT: Final = 0
IF_TSRESOL: Final = 9
IF_TSOFFSET: Final = 14

NS_PER_S: Final = 1_000_000_000
GZIP_MAGIC: Final = b"\x1f\x8b"

# pcap magic (as the first four bytes read) -> byte order, ns resolution, record header size
_PCAP_MAGICS: dict[bytes, tuple[Literal["little", "big"], bool, int]] = {
    b"\xd4\xc3\xb2\xa1": ("little", False, 16),
    b"\xa1\xb2\xc3\xd4": ("big", False, 16),
    b"\x4d\x3c\xb2\xa1": ("little", True, 16),
    b"\xa1\xb2\x3c\x4d": ("big", True, 16),
    # Kuznetzov's patched libpcap: 8 more bytes per record (ifindex, protocol, type)
    b"\x34\xcd\xb2\xa1": ("little", False, 24),
    b"\xa1\xb2\xcd\x34": ("big", False, 24),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

# pcap record header: seconds, fraction (us or ns), captured length, original length
_PCAP_RECORD = {"little": struct.Struct("<IIII"), "big": struct.Struct(">IIII")}


# One record as the reader produces it: number, ts_ns, linktype, caplen,
# wirelen, buffer, start, interface, the frame's bytes being
# buffer[start:start + caplen] (RawFrame's fields, data left in the reader's
# buffer). The analysis pass takes these plain tuples (``CaptureReader.records``)
# and copies no frame; iterating the reader wraps each in a RawFrame. A frozen
# dataclass costs about 0.7 us to build (one object.__setattr__ per field),
# more than the rest of the record's reading.
Record = tuple[int, int, int, int, int, bytes, int, int]


@dataclass(slots=True)
class _Interface:
    """One pcapng interface: how to turn its timestamps into epoch nanoseconds.

    ``ts_ns = ts * multiplier // divisor + offset_ns``: a power-of-ten
    resolution up to 1 ns needs only the multiplication, a finer one or a
    power of two also the (exact, integer) division.
    """

    linktype: int
    snaplen: int
    multiplier: int = 1000  # default if_tsresol is 10^-6
    divisor: int = 1
    offset_ns: int = 0
    resolution: Literal["us", "ns"] = "us"


class _DamagedBlockError(Exception):
    """Raised inside the reader when the file cannot be read further."""


class _StopReadingError(Exception):
    """Raised once the reason to stop has been recorded as a warning."""


class CaptureReader:
    """A pcap/pcapng file opened read-only, iterated as ``RawFrame`` objects.

    Use as a context manager. Iterating reads the file once, front to back;
    ``info()`` is complete once the iteration has finished.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file = _open_capture(self.path)
        self._gzip: GzipFile | None = None  # reads _file when it is gzip-compressed
        self._gzip_damage = ""  # why the compressed data could not be read on
        self._reset_state()  # _read may note damage while the head is read
        try:
            self._file_size = self._regular_size()
            head = self._read_head(24)
            if not head:
                raise InputError(f"capture file {self.path} is empty (0 bytes)")
            if head.startswith(GZIP_MAGIC):
                head = self._open_decompressed()
            self._format: Literal["pcap", "pcapng"]
            self._byte_order: Literal["little", "big"] = "little"
            self._pcap_nanoseconds = False
            self._pcap_record_size = 16
            self._pcap_linktype = 0
            self._pcap_snaplen = 0
            self._parse_file_header(head)
            # A pipe cannot seek back: the bytes already read are fed to the
            # first (and only) iteration instead.
            self._head = head
            self._iterations = 0
        except BaseException:
            self.close()
            raise
        # Reading state, reset by each iteration.
        self._buffer = b""
        self._position = 0  # position of the next unread byte in _buffer
        self._buffer_offset = 0  # file offset of _buffer[0]
        self._reset_state()

    # -- opening ---------------------------------------------------------------

    def _open_decompressed(self) -> bytes:
        """Read a gzip-compressed capture (as Wireshark saves with "compress with
        gzip", or a downloaded .pcap.gz) through ``gzip``, front to back: it
        cannot seek cheaply, so it is read as a pipe is, and its size is not
        known. Returns the first bytes of the capture itself."""
        import gzip

        if self._file_size is None:
            raise InputError(
                f"{self.path} holds gzip-compressed data that is not a regular file",
                f"decompress it first: zcat {self.path} > capture.pcap",
            )
        self._seek(0)
        # The same open file, read through gzip; close() closes both.
        self._gzip = gzip.GzipFile(fileobj=self._file, mode="rb")
        self._file_size = None
        head = self._read_head(24)
        if self._gzip_damage and len(head) < 24:
            raise InputError(
                f"capture file {self.path} is gzip-compressed and cannot be decompressed "
                f"({self._gzip_damage})",
                f"check it with: gzip -t {self.path}",
            )
        if not head:
            raise InputError(f"capture file {self.path} is empty once decompressed (gzip)")
        return head

    def _read(self, size: int) -> bytes:
        """Up to ``size`` bytes from the file; a failing read (EIO from a bad disk,
        a file that is not really one) is an ``InputError``, not a traceback."""
        try:
            if self._gzip is not None:
                # read1: what one step decompresses. read() would gather more and,
                # on a stream cut short, lose what it had gathered (EOFError).
                return self._gzip.read1(size)
            return self._file.read(size)
        except EOFError:  # gzip: the compressed stream is cut short
            self._stop(
                "the gzip-compressed data ends early (cut short): what was decompressed "
                "before its end is read"
            )
            return b""
        except (OSError, zlib.error) as error:
            if self._gzip is not None and not getattr(error, "errno", None):
                # Not the disk: the compressed data itself (BadGzipFile, zlib.error).
                # Damage, as in a plain file: reading ends here, with a warning.
                self._gzip_damage = str(error)
                self._stop(f"the gzip-compressed data is damaged ({error}): reading ends there")
                return b""
            raise _read_error(self.path, error) from error

    def _seek(self, offset: int) -> None:
        try:
            self._file.seek(offset)
        except OSError as error:
            raise _read_error(self.path, error) from error

    def _read_head(self, size: int) -> bytes:
        """The first bytes of the file (a pipe may deliver them in pieces)."""
        head = b""
        while len(head) < size:
            chunk = self._read(size - len(head))
            if not chunk:
                break
            head += chunk
        return head

    def _regular_size(self) -> int | None:
        mode = os.fstat(self._file.fileno())
        return mode.st_size if stat.S_ISREG(mode.st_mode) else None

    def _parse_file_header(self, head: bytes) -> None:
        magic = head[:4]
        if magic in _PCAP_MAGICS:
            self._format = "pcap"
            self._byte_order, self._pcap_nanoseconds, self._pcap_record_size = _PCAP_MAGICS[magic]
            if len(head) < 24:
                raise CaptureFormatError(
                    f"capture file {self.path} is cut short inside its pcap file header "
                    f"({len(head)} of 24 bytes)"
                )
            prefix = "<" if self._byte_order == "little" else ">"
            _major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack_from(
                prefix + "HHiIII", head, 4
            )
            # The upper bits of the link-type field carry FCS length flags.
            self._pcap_linktype = network & 0xFFFF
            self._pcap_snaplen = snaplen
            self._header_size = 24
            return
        if magic == PCAPNG_MAGIC:
            self._format = "pcapng"
            if len(head) < 12:
                raise CaptureFormatError(
                    f"capture file {self.path} is cut short inside its first pcapng block"
                )
            if head[8:12] == b"\x4d\x3c\x2b\x1a":
                self._byte_order = "little"
            elif head[8:12] == b"\x1a\x2b\x3c\x4d":
                self._byte_order = "big"
            else:
                raise CaptureFormatError(
                    f"{self.path} is not a pcap or pcapng capture "
                    "(pcapng magic without a byte-order magic)"
                )
            self._header_size = 0
            return
        raise CaptureFormatError(
            f"{self.path} is not a pcap or pcapng capture (starts with {head[:8].hex(' ')})"
        )

    # -- context manager -------------------------------------------------------

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._gzip is not None:
            self._gzip.close()  # not _file: gzip does not close a file it was given
        self._file.close()

    # -- state -------------------------------------------------------------------

    def _reset_state(self) -> None:
        self._frames = 0
        self._finished = False
        self._damaged = False
        self._warnings: list[str] = []
        self._suppressed_warnings = 0
        self._link_types: list[int] = []
        self._resolutions: set[str] = set()
        self._first_ts_ns: int | None = None
        self._last_ts_ns: int | None = None
        self._truncated = 0
        self._first_truncated = 0
        self._invalid_ts = 0
        self._first_invalid_ts = 0
        self._non_packet_frames = 0
        self._untimed_frames = 0
        self._captured_bytes = 0
        self._sections = 0
        self._interfaces = 0

    def _warn(self, message: str) -> None:
        if len(self._warnings) < MAX_WARNINGS:
            self._warnings.append(message)
        else:
            self._suppressed_warnings += 1

    def _stop(self, message: str) -> None:
        """Record why reading ended early; the file is then not complete."""
        self._damaged = True
        self._warn(message)

    def _count_frame(self, number: int, caplen: int, wirelen: int) -> None:
        """Frame ``number``'s share of what ``info`` reports (count, bytes, truncation)."""
        if caplen < wirelen:
            self._truncated += 1
            if self._truncated == 1:
                self._first_truncated = number
        self._captured_bytes += caplen
        self._frames = number

    def _add_link_type(self, linktype: int) -> None:
        if linktype not in self._link_types:
            self._link_types.append(linktype)

    def info(self) -> FileInfo:
        """What is known about the file; final once iteration has finished."""
        warnings = list(self._warnings)
        if self._truncated:
            warnings.append(
                f"{self._truncated} frame(s) cut by the capture's snapshot length "
                f"(captured length < original length), first frame {self._first_truncated}: "
                "their payload is incomplete"
            )
        if self._invalid_ts:
            warnings.append(
                f"{self._invalid_ts} frame(s) with an invalid timestamp (fraction of a second "
                f"out of range), first frame {self._first_invalid_ts}: carried into the seconds"
            )
        if self._suppressed_warnings:
            warnings.append(f"{self._suppressed_warnings} more warning(s) not shown")
        if self._format == "pcap":
            resolution: Literal["us", "ns", "mixed"] = "ns" if self._pcap_nanoseconds else "us"
        elif len(self._resolutions) > 1:
            resolution = "mixed"
        else:
            resolution = "ns" if "ns" in self._resolutions else "us"
        first = self._first_ts_ns
        last = self._last_ts_ns
        return FileInfo(
            path=self.path,
            format=self._format,
            link_types=tuple(self._link_types),
            packets=self._frames,
            # operator.truediv: Python's correctly rounded int / int, which
            # mypyc's native division (through doubles) is not for ns stamps.
            first_ts=None if first is None else operator.truediv(first, NS_PER_S),
            last_ts=None if last is None else operator.truediv(last, NS_PER_S),
            complete=self._finished and not self._damaged,
            warnings=tuple(warnings),
            ts_resolution=resolution,
            byte_order=self._byte_order,
            truncated_frames=self._truncated,
            first_ts_ns=first,
            last_ts_ns=last,
            non_packet_frames=self._non_packet_frames,
            frames_without_timestamp=self._untimed_frames,
            captured_bytes=self._captured_bytes,
        )

    # -- buffered input ------------------------------------------------------------

    def _fill(self, needed: int) -> bool:
        """Make ``needed`` bytes available from ``_position``; False when the file ends first."""
        self._buffer_offset += self._position
        if self._file_size is not None:
            # A regular file is read again from the first unread byte: the
            # rest of the old chunk (a record or two) comes from the page cache,
            # where joining it to the next chunk copied every megabyte once more.
            self._position = 0
            self._seek(self._buffer_offset)
            buffer = b""
        else:
            buffer = self._buffer[self._position :]
            self._position = 0
        while len(buffer) < needed:
            chunk = self._read(max(CHUNK_SIZE, needed - len(buffer)))
            if not chunk:
                self._buffer = buffer
                return False
            buffer = buffer + chunk if buffer else chunk
        self._buffer = buffer
        return True

    def _skip(self, length: int) -> bool:
        """Skip ``length`` bytes without loading them; False when the file ends first."""
        if self._position + length <= len(self._buffer):
            self._position += length
            return True
        target = self._buffer_offset + self._position + length
        if self._file_size is not None:
            if target > self._file_size:
                return False
            self._seek(target)
        else:
            remaining = target - self._buffer_offset - len(self._buffer)
            while remaining > 0:
                chunk = self._read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    return False
                remaining -= len(chunk)
        self._buffer = b""
        self._buffer_offset = target
        self._position = 0
        return True

    def _offset(self) -> int:
        return self._buffer_offset + self._position

    def _bytes_left(self) -> int:
        """Bytes from the current position to the end of the file (as far as known)."""
        if self._file_size is not None:
            return self._file_size - self._offset()
        return len(self._buffer) - self._position

    # -- iteration -------------------------------------------------------------

    def __iter__(self) -> Iterator[RawFrame]:
        for number, ts_ns, linktype, caplen, wirelen, buffer, start, interface in self.records():
            data = buffer[start : start + caplen]
            yield RawFrame(number, ts_ns, linktype, caplen, wirelen, data, interface)

    def records(self) -> Iterator[Record]:
        """The frames as plain ``Record`` tuples (the analysis pass's path for pcapng)."""
        self._rewind()
        if self._format == "pcap":
            return self._pcap_records()
        return self._pcapng_records()

    def pcap_cursor(self) -> PcapCursor | None:
        """For a pcap file, a ``PcapCursor`` over its records (the analysis pass's hot
        path); None for pcapng. Like iterating, this starts from the first frame."""
        if self._format != "pcap":
            return None
        self._rewind()
        return PcapCursor(self)

    def _rewind(self) -> None:
        """Prepare a new iteration from the first frame (state reset)."""
        self._reset_state()
        self._iterations += 1
        if self._file_size is not None:
            self._seek(self._header_size)
            self._buffer = b""
        elif self._iterations == 1:
            self._buffer = self._head[self._header_size :]
        else:
            raise InputError(f"{self.path} is not a regular file and cannot be read twice")
        self._buffer_offset = self._header_size
        self._position = 0
        if self._format == "pcap":
            self._add_link_type(self._pcap_linktype)

    def _pcap_records(self) -> Iterator[Record]:
        cursor = PcapCursor(self)
        linktype = cursor.linktype
        while True:
            number, ts_ns, caplen, wirelen, buffer, start = cursor.next_record()
            if not number:
                return
            yield (number, ts_ns, linktype, caplen, wirelen, buffer, start, 0)

    # -- pcapng --------------------------------------------------------------------

    def _pcapng_records(self) -> Iterator[Record]:
        yield from self._pcapng_blocks()
        self._finished = True  # not reached when the consumer stops early

    def _pcapng_blocks(self) -> Iterator[Record]:
        byte_order: Literal["little", "big"] = self._byte_order
        prefix = "<" if byte_order == "little" else ">"
        header_struct = struct.Struct(prefix + "II")
        epb_struct = struct.Struct(prefix + "IIIII")
        u32 = struct.Struct(prefix + "I")
        block_offset = 0
        interfaces: list[_Interface] = []
        number = 0
        last_ts = 0
        try:
            while True:
                buffer = self._buffer
                position = self._position
                block_offset = self._buffer_offset + position
                if len(buffer) - position >= 32:
                    block_type, block_length = header_struct.unpack_from(buffer, position)
                else:
                    block_type = block_length = 0
                if not (
                    # The common case: an enhanced packet block already in the
                    # buffer. Everything else is checked (and read) below.
                    block_type == PCAPNG_EPB
                    and block_length >= 32
                    and not block_length & 3
                    and position + block_length <= len(buffer)
                ):
                    if not self._next_block_in_buffer(number):
                        return
                    buffer = self._buffer
                    position = self._position
                    block_type = u32.unpack_from(buffer, position)[0]
                    if block_type == PCAPNG_SHB:
                        byte_order = self._section_byte_order(buffer, position, number)
                        prefix = "<" if byte_order == "little" else ">"
                        header_struct = struct.Struct(prefix + "II")
                        epb_struct = struct.Struct(prefix + "IIIII")
                        u32 = struct.Struct(prefix + "I")
                    block_type, block_length = header_struct.unpack_from(buffer, position)
                    if not self._block_in_buffer(block_type, block_length, number):
                        if self._damaged:
                            return
                        continue  # a block we skip
                    buffer = self._buffer
                    position = self._position
                trailer = u32.unpack_from(buffer, position + block_length - 4)[0]
                if trailer != block_length:
                    raise _DamagedBlockError(
                        f"type {block_type:#x}: leading length {block_length}, trailing {trailer}"
                    )
                body = position + 8
                body_end = position + block_length - 4
                self._position = position + block_length
                if block_type == PCAPNG_SHB:
                    interfaces = []
                    self._sections += 1
                    if block_length < 28:
                        raise _DamagedBlockError(
                            f"section header block too short ({block_length} bytes)"
                        )
                    major = struct.unpack_from(prefix + "H", buffer, body + 4)[0]
                    if major != 1:
                        raise _DamagedBlockError(f"unsupported pcapng version {major}")
                    if self._sections == 1:
                        self._byte_order = byte_order
                    _parse_options(buffer, body + 16, body_end, prefix)
                    continue
                if block_type == PCAPNG_IDB:
                    interfaces.append(self._parse_interface(buffer, body, body_end, prefix))
                    continue
                if block_type in PCAPNG_CUSTOM:
                    number += 1
                    data = buffer[body + 4 : body_end]
                    self._non_packet_frames += 1
                    self._untimed_frames += 1
                    self._frames = number
                    self._captured_bytes += len(data)
                    yield (number, last_ts, LINKTYPE_NONE, len(data), len(data), data, 0, 0)
                    continue
                # A packet block.
                timed = True
                if block_type == PCAPNG_EPB:
                    interface_id, ts_high, ts_low, caplen, wirelen = epb_struct.unpack_from(
                        buffer, body
                    )
                    data_start = body + 20
                elif block_type == PCAPNG_PB:
                    if block_length < 32:
                        raise _DamagedBlockError(f"packet block too short ({block_length} bytes)")
                    interface_id = struct.unpack_from(prefix + "H", buffer, body)[0]
                    _, ts_high, ts_low, caplen, wirelen = epb_struct.unpack_from(buffer, body)
                    data_start = body + 20
                else:  # simple packet block: interface 0, no timestamp
                    if block_length < 16:
                        raise _DamagedBlockError(
                            f"simple packet block too short ({block_length} bytes)"
                        )
                    interface_id = 0
                    wirelen = u32.unpack_from(buffer, body)[0]
                    data_start = body + 4
                    ts_high = ts_low = 0
                    timed = False
                    caplen = min(wirelen, body_end - data_start)
                    if interfaces and interfaces[0].snaplen:
                        caplen = min(caplen, interfaces[0].snaplen)
                if interface_id >= len(interfaces):
                    raise _DamagedBlockError(
                        f"packet for interface {interface_id} but the section defines "
                        f"{len(interfaces)} interface(s)"
                    )
                if caplen > MAX_CAPLEN or data_start + caplen > body_end:
                    raise _DamagedBlockError(f"packet block claims {caplen} captured bytes")
                interface = interfaces[interface_id]
                number += 1
                if timed:
                    ts = (ts_high << 32) | ts_low
                    if interface.divisor == 1:
                        last_ts = ts * interface.multiplier + interface.offset_ns
                    else:
                        last_ts = (
                            ts * interface.multiplier // interface.divisor + interface.offset_ns
                        )
                    if self._first_ts_ns is None:
                        self._first_ts_ns = last_ts
                    self._last_ts_ns = last_ts
                else:
                    self._untimed_frames += 1
                self._count_frame(number, caplen, wirelen)
                yield (
                    number,
                    last_ts,
                    interface.linktype,
                    caplen,
                    wirelen,
                    buffer,
                    data_start,
                    interface_id,
                )
        except _DamagedBlockError as damage:
            self._stop(
                f"damaged pcapng block at byte {block_offset} after frame {number} "
                f"({damage}): stopped reading"
            )
        except _StopReadingError:
            pass

    def _next_block_in_buffer(self, number: int) -> bool:
        """Buffer at least a block header (12 bytes); False at the end of the file."""
        if len(self._buffer) - self._position >= 12 or self._fill(12):
            return True
        left = len(self._buffer) - self._position
        if left:
            self._stop(
                f"file cut short at byte {self._offset()} inside a pcapng block "
                f"header ({left} bytes left) after frame {number}"
            )
        return False

    def _section_byte_order(
        self, buffer: bytes, position: int, number: int
    ) -> Literal["little", "big"]:
        bom = buffer[position + 8 : position + 12]
        if bom == b"\x4d\x3c\x2b\x1a":
            return "little"
        if bom == b"\x1a\x2b\x3c\x4d":
            return "big"
        self._stop(
            f"damaged pcapng section header at byte {self._offset()} "
            f"(no byte-order magic) after frame {number}: stopped reading"
        )
        raise _StopReadingError

    def _block_in_buffer(self, block_type: int, block_length: int, number: int) -> bool:
        """Check a block's length, then buffer it whole (True) or skip it (False).

        Blocks netdiag does not use (name resolution, statistics, decryption
        secrets, unknown) are skipped without being loaded, whatever their size.
        On damage, reading stops (``_damaged`` set) and False is returned.
        """
        block_offset = self._offset()
        if block_length < 12 or block_length % 4:
            self._stop(
                f"damaged pcapng block at byte {block_offset} (type {block_type:#x}, "
                f"invalid length {block_length}) after frame {number}: stopped reading"
            )
            return False
        left = self._bytes_left()
        if block_length > left and self._file_size is not None:
            self._stop(
                f"file cut short at byte {block_offset} inside a pcapng block "
                f"(type {block_type:#x}, {left} of {block_length} bytes present) "
                f"after frame {number}"
            )
            return False
        if block_type not in _PCAPNG_LOADED_BLOCKS:
            if not self._skip(block_length):
                self._stop(
                    f"file cut short at byte {block_offset} inside a pcapng block "
                    f"(type {block_type:#x}) after frame {number}"
                )
            return False
        if block_length > MAX_PARSED_BLOCK + MAX_CAPLEN:
            self._stop(
                f"damaged pcapng block at byte {block_offset} (type {block_type:#x}, "
                f"implausible length {block_length}) after frame {number}: "
                "stopped reading"
            )
            return False
        if len(self._buffer) - self._position < block_length and not self._fill(block_length):
            self._stop(
                f"file cut short at byte {block_offset} inside a pcapng block "
                f"(type {block_type:#x}, {len(self._buffer) - self._position} of "
                f"{block_length} bytes present) after frame {number}"
            )
            return False
        if block_type == PCAPNG_EPB and block_length < 32:
            self._stop(
                f"damaged pcapng block at byte {block_offset} after frame {number} "
                f"(enhanced packet block too short: {block_length} bytes): stopped reading"
            )
            return False
        return True

    def _parse_interface(self, buffer: bytes, body: int, body_end: int, prefix: str) -> _Interface:
        if body_end - body < 8:
            raise _DamagedBlockError("interface description block too short")
        linktype, _reserved, snaplen = struct.unpack_from(prefix + "HHI", buffer, body)
        interface = _Interface(linktype=linktype, snaplen=snaplen)
        for code, value in _parse_options(buffer, body + 8, body_end, prefix):
            if code == IF_TSRESOL and value:
                exponent = value[0] & 0x7F
                if value[0] & 0x80:  # 2^-exponent seconds
                    interface.multiplier = NS_PER_S
                    interface.divisor = 1 << exponent
                elif exponent <= 9:
                    interface.multiplier = 10 ** (9 - exponent)
                    interface.divisor = 1
                else:
                    interface.multiplier = 1
                    interface.divisor = 10 ** (exponent - 9)
                fine = interface.divisor > 1 or interface.multiplier < 1000
                interface.resolution = "ns" if fine else "us"
            elif code == IF_TSOFFSET and len(value) >= 8:
                interface.offset_ns = struct.unpack_from(prefix + "q", value)[0] * NS_PER_S
        self._interfaces += 1
        self._add_link_type(linktype)
        self._resolutions.add(interface.resolution)
        return interface


# PcapCursor.next_record: number, ts_ns, caplen, wirelen, buffer, start (the
# frame's bytes are buffer[start:start + caplen]); number 0 once the file ended.
PcapRecord = tuple[int, int, int, int, bytes, int]
_PCAP_END: Final[PcapRecord] = (0, 0, 0, 0, b"", 0)


def u32_times(value: int, factor: int) -> int:
    """``value * factor`` for ``0 <= value < 2**32`` and ``0 <= factor < 2**30``.

    Compiled, ``seconds * NS_PER_S`` left mypyc's native arithmetic for
    every frame (it multiplies natively only operands below 2**30, and a
    timestamp's seconds are above): CPython's multiplication then allocated a
    number, and, since it checks for signals, a Ctrl-C arriving in it raised
    where mypyc assumes nothing can, which aborted the process ("fatal: out of
    memory"). In 16-bit halves every step is native: the result is below
    2**62 for any such value and factor.
    """
    return ((value >> 16) * factor << 16) + (value & 0xFFFF) * factor


class PcapCursor:
    """The records of a pcap file, one ``next_record`` call each.

    Iterating a ``CaptureReader`` goes through this too; the analysis pass
    calls it directly, because compiled by mypyc a call returning a tuple of
    fixed types returns a C struct: no tuple, no int objects and no generator
    frame per record. The reader's counters (frames, bytes, timestamps,
    truncated frames, why reading stopped) are kept up to date as it goes.
    """

    def __init__(self, reader: CaptureReader) -> None:
        self.reader = reader
        self.linktype = reader._pcap_linktype
        self._little_endian = reader._byte_order == "little"
        self._unpack_record = _PCAP_RECORD[reader._byte_order].unpack_from
        self._record_size = reader._pcap_record_size
        self._fraction_limit = NS_PER_S if reader._pcap_nanoseconds else 1_000_000
        self._fraction_scale = 1 if reader._pcap_nanoseconds else 1000
        self._number = 0
        self._buffer = reader._buffer
        self._position = reader._position

    def next_record(self) -> PcapRecord:
        reader = self.reader
        record_size = self._record_size
        buffer = self._buffer
        position = self._position
        number = self._number
        if len(buffer) - position < record_size:
            reader._position = position
            if not reader._fill(record_size):
                if len(reader._buffer) > reader._position:
                    reader._stop(
                        f"file cut short at byte {reader._offset()} inside the record "
                        f"header of frame {number + 1} "
                        f"({len(reader._buffer) - reader._position} of {record_size} bytes)"
                    )
                reader._finished = True
                return _PCAP_END
            buffer = self._buffer = reader._buffer
            position = reader._position
        # The record header: seconds, fraction (us or ns), captured length,
        # original length (then 8 more bytes in the 24-byte variants). Read
        # byte by byte when compiled: native loads and ints, where unpack_from
        # made a tuple and up to four int objects per record (the interpreter
        # is faster with unpack_from: packet.COMPILED).
        seconds: int
        fraction: int
        caplen: int
        wirelen: int
        if not COMPILED:
            seconds, fraction, caplen, wirelen = self._unpack_record(buffer, position)
        elif self._little_endian:
            seconds = _little_endian_u32(buffer, position)
            fraction = _little_endian_u32(buffer, position + 4)
            caplen = _little_endian_u32(buffer, position + 8)
            wirelen = _little_endian_u32(buffer, position + 12)
        else:
            seconds = big_endian_u32(buffer, position)
            fraction = big_endian_u32(buffer, position + 4)
            caplen = big_endian_u32(buffer, position + 8)
            wirelen = big_endian_u32(buffer, position + 12)
        if caplen > MAX_CAPLEN:
            reader._position = position
            reader._stop(
                f"corrupt record header at byte {reader._offset()} (frame {number + 1} "
                f"claims {caplen} captured bytes): trailing garbage or damage, "
                "stopped reading there"
            )
            reader._finished = True
            return _PCAP_END
        start = position + record_size
        end = start + caplen
        if end > len(buffer):
            reader._position = position
            if not reader._fill(record_size + caplen):
                reader._stop(
                    f"file cut short at byte {reader._offset()} inside frame {number + 1} "
                    f"({len(reader._buffer) - reader._position - record_size} of {caplen} "
                    "captured bytes present)"
                )
                reader._finished = True
                return _PCAP_END
            buffer = self._buffer = reader._buffer
            position = reader._position
            start = position + record_size
            end = start + caplen
        number += 1
        self._number = number
        self._position = end
        if fraction >= self._fraction_limit:
            # tshark keeps the out-of-range fraction, which amounts to
            # carrying it into the seconds; so does this sum.
            reader._invalid_ts += 1
            if reader._invalid_ts == 1:
                reader._first_invalid_ts = number
        ts_ns = u32_times(seconds, NS_PER_S) + u32_times(fraction, self._fraction_scale)
        if number == 1:
            reader._first_ts_ns = ts_ns
        reader._last_ts_ns = ts_ns
        reader._count_frame(number, caplen, wirelen)
        return (number, ts_ns, caplen, wirelen, buffer, start)


def _little_endian_u32(data: bytes, offset: int) -> int:
    """The little-endian 32-bit number at ``offset`` (in range); see ``big_endian_u32``."""
    return data[offset + 3] << 24 | data[offset + 2] << 16 | data[offset + 1] << 8 | data[offset]


def _parse_options(buffer: bytes, start: int, end: int, prefix: str) -> list[tuple[int, bytes]]:
    """The (code, value) options of a block body; an option overrunning its block is damage."""
    options: list[tuple[int, bytes]] = []
    header = struct.Struct(prefix + "HH")
    position = start
    while position + 4 <= end:
        code, length = header.unpack_from(buffer, position)
        position += 4
        if code == OPT_ENDOFOPT:
            break
        if position + length > end:
            raise _DamagedBlockError(f"option {code} of length {length} overruns its block")
        options.append((code, buffer[position : position + length]))
        position += (length + 3) & ~3
    return options


def _read_error(path: str, error: OSError | zlib.error) -> InputError:
    reason = error.strerror if isinstance(error, OSError) and error.strerror else error
    return InputError(
        f"capture file {path} cannot be read: {reason}",
        "check the file system (dmesg), or copy the capture elsewhere and read the copy",
    )


def _open_capture(path: str) -> BinaryIO:
    """Open read-only, turning the usual failures into one clear InputError line."""
    try:
        return open(path, "rb", buffering=0)
    except FileNotFoundError as error:
        raise InputError(f"capture file {path} does not exist") from error
    except IsADirectoryError as error:
        raise InputError(f"{path} is a directory, not a capture file") from error
    except PermissionError as error:
        raise InputError(f"capture file {path} cannot be read: permission denied") from error
    except OSError as error:
        raise InputError(f"capture file {path} cannot be opened: {error.strerror}") from error
