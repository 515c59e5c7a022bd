"""A packet sniffer that runs inside a network namespace and writes pcap.

This is the capture stage: frames seen on one interface of one namespace go
to a pcap file that the analysis stage reads later. ``netdiag run`` and
``netdiag capture`` both use it; no tcpdump binary is involved.

How it keeps its promises:
- The AF_PACKET socket is created inside the namespace (a socket stays in the
  namespace it was made in) with protocol 0, so it receives nothing until it
  is bound to the interface: no frame of another interface slips in first.
- Readiness is proven, not assumed: after binding, a marker frame (ethertype
  0x88B5, IEEE "local experimental", addressed to the interface's own MAC so the
  peer drops it) is sent out of the interface from inside the namespace, and
  ``start`` returns only once the reader thread has read it back. The kernel
  queues every frame on the socket from the bind on, so nothing sent after
  ``start`` returns can be missed (except by an overflow, which the kernel
  counts: ``kernel_drops``).
- Draining is proven the same way: ``stop`` waits for a quiet moment, sends an
  end marker and keeps reading until that marker comes back; the socket's queue
  is FIFO, so every earlier frame has then been written. Marker frames are not
  written to the pcap.
- Timestamps are the kernel's software timestamps (SO_TIMESTAMPING), taken when
  the frame passes the interface, as tcpdump's are, so RTTs computed from the
  file are kernel time. The kernel switches its timestamping on lazily (a
  deferred static key) after the first socket asks for it; until then frames
  carry no stamp, and SO_TIMESTAMPNS would silently stamp them at read time.
  SO_TIMESTAMPING reports "no stamp" instead, so readiness also waits for a
  marker that comes back *stamped*. A frame that still arrives unstamped gets
  the read time and is counted in ``unstamped``.
- Frames are written as they arrive and flushed in batches, so an interrupted
  capture leaves a readable file with everything up to the interruption.

The pcap file is written here with ``struct`` (a 24-byte file header and a
16-byte header per record): dpkt's writer takes float timestamps (it can round
to a microsecond value of 1000000) and cannot record the original length.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from netdiag.errors import InputError, OutputError, UnsupportedEnvironmentError
from netdiag.live.namespaces import inside

ETH_P_ALL = 0x0003
ETH_P_MARKER = 0x88B5  # IEEE 802 local experimental ethertype 1
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_TIMESTAMPING = 37
SOF_TIMESTAMPING_RX_SOFTWARE = 1 << 3
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
SO_RCVBUFFORCE = 33
PACKET_OUTGOING = 4
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ARPHRD_NONE = 0xFFFE
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
PCAP_MAGIC_MICROSECONDS = 0xA1B2C3D4
SNAPLEN = 262144
RECEIVE_BUFFER_BYTES = 8 * 1024 * 1024
MARKER_TEXT = b"netdiag capture marker "
_TIMESPEC = struct.Struct("@qq")
_TIMESTAMPING_SIZE = 3 * _TIMESPEC.size  # software, (deprecated), hardware
# A failed write of the pcap (not of the socket): the file, not the capture, is at fault.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


@dataclass(frozen=True, slots=True)
class CaptureResult:
    path: str
    namespace: str
    interface: str
    link_type: int
    packets: int  # frames written to the pcap
    kernel_packets: int  # frames the kernel passed to the socket (incl. markers, drops)
    kernel_drops: int  # frames the kernel dropped because the socket queue was full
    ready_ms: float  # from opening the socket to proven readiness
    ready_proven: bool  # a marker frame came back before traffic
    drained: bool  # the end marker came back: everything before it is in the file
    stopped_by: str  # "stop", "count", "error"
    error: str | None = None
    unstamped: int = 0  # frames without a kernel timestamp (stamped at read time)
    # The pcap could not be written (disk full, quota): the file ends where the disk
    # filled up, perhaps inside a record, and the analyzer reads it up to that cut.
    # Also in ``error``. Callers report it as an OutputError after teardown (issue 7).
    write_error: str | None = None


class Sniffer:
    """Capture frames of ``interface`` inside ``namespace`` into ``path``.

    Use as a context manager or call ``start``/``stop``. ``count`` stops the
    capture by itself after that many frames (``wait`` blocks until then).
    """

    def __init__(
        self,
        namespace: str,
        interface: str,
        path: Path,
        *,
        count: int | None = None,
        prove_with_marker: bool = True,
    ) -> None:
        self.namespace = namespace
        self.interface = interface
        self.path = path
        self.count = count
        self.prove_with_marker = prove_with_marker
        self.packets = 0
        self._socket: socket.socket | None = None
        self._marker_socket: socket.socket | None = None
        self._file: BinaryIO | None = None
        self._thread: threading.Thread | None = None
        self._stop_requested = threading.Event()
        # stop() writes to this pipe so the reader leaves poll() at once.
        self._wake_reader, self._wake_writer = os.pipe()
        self._finished = threading.Event()
        self._markers_seen: dict[bytes, bool] = {}  # marker payload -> had a kernel stamp
        self.unstamped = 0
        self._marker_condition = threading.Condition()
        self._last_frame_at = time.monotonic()
        self._kernel_packets = 0
        self._kernel_drops = 0
        self._link_type = LINKTYPE_ETHERNET
        self._own_mac = b""
        self._ready_ms = 0.0
        self._ready_proven = False
        self._stopped_by = "stop"
        self._error: str | None = None
        self._write_error: str | None = None
        self.result: CaptureResult | None = None

    # ---- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Sniffer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, timeout: float = 2.0) -> float:
        """Open, bind, start reading; return once readiness is proven (ms taken)."""
        started = time.perf_counter()
        try:
            self._open_socket()
            self._open_file()
        except BaseException:
            self._close_wake_pipe()
            raise
        self._thread = threading.Thread(
            target=self._read_loop, name=f"sniffer-{self.interface}", daemon=True
        )
        self._thread.start()
        if self.prove_with_marker and self._link_type == LINKTYPE_ETHERNET:
            self._ready_proven = self._round_trip_marker(b"start", timeout)
            if not self._ready_proven:
                self.stop()
                raise UnsupportedEnvironmentError(
                    f"the sniffer on {self.interface} in {self.namespace} did not see its own "
                    f"readiness marker within {timeout:.0f} s"
                )
        self._ready_ms = (time.perf_counter() - started) * 1000.0
        return self._ready_ms

    def _open_socket(self) -> None:
        try:
            with inside(self.namespace):
                # Protocol 0: the socket receives nothing until bound to the interface.
                capture = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                marker: socket.socket | None = None
                if self.prove_with_marker:
                    try:
                        marker = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                    except BaseException:
                        capture.close()  # not left for the garbage collector
                        raise
        except PermissionError as error:
            raise UnsupportedEnvironmentError(
                "capturing needs root (CAP_NET_RAW)", advice="run as root"
            ) from error
        try:
            capture.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
            capture.setsockopt(
                socket.SOL_SOCKET,
                SO_TIMESTAMPING,
                SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE,
            )
            capture.bind((self.interface, ETH_P_ALL))
            address = capture.getsockname()
            if marker is not None:
                marker.bind((self.interface, 0))
        except OSError as error:
            capture.close()
            if marker is not None:
                marker.close()
            raise InputError(
                f"cannot capture on {self.interface} in namespace {self.namespace}: "
                f"{error.strerror or error}"
            ) from error
        hardware_type = int(address[3])
        self._own_mac = bytes(address[4])[:6]
        if hardware_type in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
            self._link_type = LINKTYPE_ETHERNET
        elif hardware_type == ARPHRD_NONE:
            self._link_type = LINKTYPE_RAW  # tun-like devices: frames start at the IP header
        else:
            capture.close()
            if marker is not None:
                marker.close()
            raise InputError(
                f"{self.interface} has link type {hardware_type}, which netdiag cannot capture yet"
            )
        capture.setblocking(False)
        self._socket = capture
        self._marker_socket = marker
        self._read_statistics()  # reading resets the kernel's counters: start from zero

    def _open_file(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed in stop()
            self._file.write(
                struct.pack(
                    "=IHHiIII", PCAP_MAGIC_MICROSECONDS, 2, 4, 0, 0, SNAPLEN, self._link_type
                )
            )
            self._file.flush()
        except OSError as error:
            self._close_socket()
            raise OutputError(f"cannot write capture file {self.path}: {error}") from error

    # ---- markers -------------------------------------------------------------------------

    def _marker_frame(self, tag: bytes) -> bytes:
        payload = MARKER_TEXT + tag + b" " + os.urandom(8).hex().encode()
        frame = self._own_mac + self._own_mac + struct.pack("!H", ETH_P_MARKER) + payload
        return frame.ljust(60, b"\0")

    def _round_trip_marker(self, tag: bytes, timeout: float) -> bool:
        """Send markers until one comes back carrying a kernel timestamp."""
        if self._marker_socket is None:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = self._marker_frame(tag)
            key = frame[14:].rstrip(b"\0")
            try:
                self._marker_socket.send(frame)
            except OSError:
                return False  # interface down, for example: nothing to prove against
            with self._marker_condition:
                while key not in self._markers_seen:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._finished.is_set():
                        return False
                    self._marker_condition.wait(remaining)
                if self._markers_seen[key]:
                    return True
            time.sleep(0.001)  # timestamping not switched on yet: try again shortly
        return False

    # ---- reading -------------------------------------------------------------------------

    def _read_loop(self) -> None:
        assert self._socket is not None and self._file is not None
        poller = select.poll()
        poller.register(self._socket, select.POLLIN)
        poller.register(self._wake_reader, select.POLLIN)
        try:
            while True:
                stopping = self._stop_requested.is_set()
                events = poller.poll(0 if stopping else 500)
                if any(descriptor == self._socket.fileno() for descriptor, _event in events):
                    self._read_available()
                    if self.count is not None and self.packets >= self.count:
                        self._stopped_by = "count"
                        break
                elif stopping:
                    break  # queue empty and asked to stop
                elif events:
                    os.read(self._wake_reader, 64)  # woken by stop(): loop once more
        except OSError as error:
            if error.errno in _WRITE_ERRNOS:
                self._note_write_error(error)
            else:
                self._error = str(error)
                self._stopped_by = "error"
        finally:
            try:
                self._file.flush()
            except OSError as error:  # disk full: reported, never a traceback in a thread
                self._note_write_error(error)
            self._finished.set()
            with self._marker_condition:
                self._marker_condition.notify_all()

    def _read_available(self) -> None:
        assert self._socket is not None and self._file is not None
        ancillary_size = socket.CMSG_SPACE(_TIMESTAMPING_SIZE)
        write = self._file.write
        while True:
            try:
                data, ancillary, _flags, _address = self._socket.recvmsg(SNAPLEN, ancillary_size)
            except BlockingIOError:
                break
            self._last_frame_at = time.monotonic()
            seconds, nanoseconds = 0, 0
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(value)
            stamped = seconds != 0
            if self._is_marker(data, stamped):
                continue
            if not stamped:
                self.unstamped += 1
                seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
            length = len(data)
            write(struct.pack("=IIII", seconds, nanoseconds // 1000, length, length) + data)
            self.packets += 1
            if self.count is not None and self.packets >= self.count:
                break
        self._file.flush()

    def _drain_here(self) -> None:
        try:
            self._read_available()
        except OSError as error:  # as the reader's loop files them
            if error.errno in _WRITE_ERRNOS:
                self._note_write_error(error)
            else:
                self._error = str(error)
                self._stopped_by = "error"

    def _note_write_error(self, error: OSError) -> None:
        if self._write_error is None:
            self._write_error = f"cannot write capture file {self.path}: {error.strerror or error}"
        self._error = self._error or self._write_error
        self._stopped_by = "error"

    def _is_marker(self, data: bytes, stamped: bool) -> bool:
        if len(data) < 14 + len(MARKER_TEXT) or data[12:14] != b"\x88\xb5":
            return False
        payload = data[14:].rstrip(b"\0")
        if not payload.startswith(MARKER_TEXT) or data[6:12] != self._own_mac:
            return False
        with self._marker_condition:
            self._markers_seen[payload] = stamped
            self._marker_condition.notify_all()
        return True

    def _read_statistics(self) -> None:
        if self._socket is None:
            return
        packets, drops = struct.unpack(
            "=II", self._socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        )
        self._kernel_packets += packets
        self._kernel_drops += drops

    # ---- stopping ------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the capture stops by itself (``count`` reached) or ``timeout``."""
        return self._finished.wait(timeout)

    def settle(self, quiet_ms: float = 20.0, limit_ms: float = 500.0) -> None:
        """Wait until no frame has arrived for ``quiet_ms`` (late ACKs of a closed connection)."""
        deadline = time.monotonic() + limit_ms / 1000.0
        while time.monotonic() < deadline and not self._finished.is_set():
            idle = time.monotonic() - self._last_frame_at
            if idle * 1000.0 >= quiet_ms:
                return
            time.sleep(quiet_ms / 1000.0 - idle)

    def stop(self, settle: bool = True) -> CaptureResult:
        """Drain (proven by the end marker when possible), close everything, report."""
        if self.result is not None:
            return self.result
        drained = False
        reader_started = self._thread is not None and self._thread.ident is not None
        if self._thread is not None and reader_started and not self._finished.is_set():
            if settle:
                self.settle()
            if self._ready_proven:
                drained = self._round_trip_marker(b"end", 2.0)
            self._stop_requested.set()
            os.write(self._wake_writer, b"x")
            self._thread.join()
        elif self._finished.is_set():
            drained = self._stopped_by == "count"
        elif self._socket is not None and self._file is not None:
            # Stopped between the bind and the reader's start (a Ctrl-C inside
            # start()): what the kernel queued since the bind is read here, as
            # the reader would have, instead of being lost with the socket.
            self._drain_here()
        with contextlib.suppress(OSError):
            self._read_statistics()
        self._close_socket()
        self._close_wake_pipe()
        if self._file is not None:
            try:
                self._file.close()  # closes the descriptor even when the last flush fails
            except OSError as error:
                self._note_write_error(error)
            self._file = None
        self.result = CaptureResult(
            path=str(self.path),
            namespace=self.namespace,
            interface=self.interface,
            link_type=self._link_type,
            packets=self.packets,
            kernel_packets=self._kernel_packets,
            kernel_drops=self._kernel_drops,
            ready_ms=self._ready_ms,
            ready_proven=self._ready_proven,
            drained=drained or not self.prove_with_marker,
            stopped_by=self._stopped_by,
            error=self._error,
            unstamped=self.unstamped,
            write_error=self._write_error,
        )
        return self.result

    def _close_wake_pipe(self) -> None:
        for descriptor in (self._wake_reader, self._wake_writer):
            if descriptor >= 0:
                os.close(descriptor)
        self._wake_reader = self._wake_writer = -1

    def _close_socket(self) -> None:
        for sock in (self._socket, self._marker_socket):
            if sock is not None:
                sock.close()
        self._socket = None
        self._marker_socket = None
