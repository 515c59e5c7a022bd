"""TCP between namespaces with kernel sockets: a message, a clean close, optional bulk.

The listening socket is created while the thread is inside the server
namespace and the client socket inside the client namespace (a socket stays
in the namespace where it was made), so the kernel of each namespace owns its
end of a real connection; a scapy-crafted SYN would instead get a RST from the
sender's own kernel.

The exchange mirrors the article's ``nc``: the client connects, sends the
message and shuts its side (FIN); the server reads to end-of-stream, checks the
bytes, and closes (FIN); the client reads the server's end-of-stream. Both
FINs are thereby observed by the sockets themselves, not inferred.

``--bulk N`` opens a second connection and streams N bytes of a known pattern
(64 KiB random blocks, each stamped with its index) that the server verifies
byte for byte as it reads; throughput is measured at the server from accept to
end-of-stream.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from dataclasses import dataclass

from netdiag.live.namespaces import inside

BLOCK_BYTES = 65536


@dataclass(frozen=True, slots=True)
class ServerView:
    received: bytes
    fin_received: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TcpOutcome:
    connected: bool
    message_received: bytes | None
    fin_from_client: bool  # the server read end-of-stream
    fin_from_server: bool  # the client read end-of-stream
    error: str | None = None
    client_port: int | None = None


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    """``--bulk``: what the server received of the stream, and whether it was the pattern."""

    received: int  # bytes
    verified: bool
    throughput_mbps: float | None  # at the server, accept to end-of-stream
    error: str | None = None


class Listener:
    """A listening TCP socket opened inside ``namespace``."""

    def __init__(self, namespace: str, address: str, port: int) -> None:
        with inside(namespace):
            self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((address, port))
            self.socket.listen(4)
        except BaseException:
            # Closed now, not at garbage collection: an open socket keeps its
            # namespace alive after the namespace is deleted.
            self.socket.close()
            raise
        self.namespace = namespace

    def close(self) -> None:
        self.socket.close()

    def accept(self, timeout: float, give_up: threading.Event) -> socket.socket:
        """Accept one connection; stop waiting early once ``give_up`` is set.

        The client sets ``give_up`` when its connect fails, so a refused or
        unreachable connection does not cost the whole timeout.
        """
        deadline = time.monotonic() + timeout
        self.socket.settimeout(0.02)
        while True:
            try:
                connection, _peer = self.socket.accept()
            except TimeoutError:
                if give_up.is_set() or time.monotonic() >= deadline:
                    raise
                continue
            connection.settimeout(timeout)
            return connection


def _client_socket(namespace: str, timeout: float) -> socket.socket:
    with inside(namespace):
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.settimeout(timeout)
    return client


def _serve_message(
    listener: Listener, timeout: float, give_up: threading.Event, result: list[ServerView]
) -> None:
    try:
        connection = listener.accept(timeout, give_up)
    except OSError as error:
        result.append(ServerView(b"", False, f"accept: {_describe(error)}"))
        return
    received = bytearray()
    try:
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                result.append(ServerView(bytes(received), True))
                return
            received += chunk
    except OSError as error:
        result.append(ServerView(bytes(received), False, f"receive: {_describe(error)}"))
    finally:
        connection.close()  # the server's FIN


def exchange_message(
    listener: Listener,
    client_namespace: str,
    server_address: str,
    port: int,
    message: bytes,
    timeout: float = 5.0,
) -> TcpOutcome:
    """Connect from ``client_namespace``, send ``message``, close cleanly both ways."""
    views: list[ServerView] = []
    give_up = threading.Event()
    server = threading.Thread(
        target=_serve_message, args=(listener, timeout, give_up, views), daemon=True
    )
    server.start()
    client = _client_socket(client_namespace, timeout)
    connected = False
    fin_from_server = False
    client_port = None
    error = None
    try:
        client.connect((server_address, port))
        connected = True
        client_port = int(client.getsockname()[1])
        client.sendall(message)
        client.shutdown(socket.SHUT_WR)  # the client's FIN
        fin_from_server = client.recv(1) == b""
    except OSError as exception:
        error = _describe(exception)
        give_up.set()
    finally:
        client.close()
        server.join(timeout + 1.0)
    view = views[0] if views else ServerView(b"", False, "the server saw no connection")
    return TcpOutcome(
        connected=connected,
        message_received=view.received if connected else None,
        fin_from_client=view.fin_received,
        fin_from_server=fin_from_server,
        error=error or view.error,
        client_port=client_port,
    )


def _describe(exception: OSError) -> str:
    if isinstance(exception, TimeoutError):
        return "timed out"
    return os.strerror(exception.errno) if exception.errno else str(exception)


def _pattern_block(base: bytes, index: int) -> bytes:
    return struct.pack("!Q", index) + base[8:]


@dataclass(frozen=True, slots=True)
class _BulkView:
    received: int
    verified: bool
    seconds: float
    error: str | None


def _serve_bulk(
    listener: Listener,
    base: bytes,
    total: int,
    timeout: float,
    give_up: threading.Event,
    result: list[_BulkView],
) -> None:
    try:
        connection = listener.accept(timeout, give_up)
    except OSError as error:
        result.append(_BulkView(0, False, 0.0, f"accept: {_describe(error)}"))
        return
    started = time.perf_counter()
    received = 0
    verified = True
    pending = bytearray()
    block_index = 0
    try:
        while True:
            chunk = connection.recv(1 << 20)
            if not chunk:
                break
            received += len(chunk)
            pending += chunk
            while len(pending) >= BLOCK_BYTES:
                if pending[:BLOCK_BYTES] != _pattern_block(base, block_index):
                    verified = False
                del pending[:BLOCK_BYTES]
                block_index += 1
        tail = total - block_index * BLOCK_BYTES
        if pending != _pattern_block(base, block_index)[: max(tail, 0)]:
            verified = False
        failure = None
    except OSError as exception:
        verified = False
        failure = f"receive: {_describe(exception)}"
    finally:
        connection.close()
    seconds = time.perf_counter() - started
    result.append(_BulkView(received, verified and received == total, seconds, failure))


def bulk_transfer(
    listener: Listener,
    client_namespace: str,
    server_address: str,
    port: int,
    total: int,
    timeout: float = 30.0,
) -> BulkOutcome:
    """Stream ``total`` bytes client -> server."""
    base = os.urandom(BLOCK_BYTES)
    views: list[_BulkView] = []
    give_up = threading.Event()
    server = threading.Thread(
        target=_serve_bulk, args=(listener, base, total, timeout, give_up, views), daemon=True
    )
    server.start()
    client = _client_socket(client_namespace, timeout)
    error = None
    try:
        client.connect((server_address, port))
        sent = 0
        index = 0
        while sent < total:
            block = _pattern_block(base, index)[: total - sent]
            client.sendall(block)
            sent += len(block)
            index += 1
        client.shutdown(socket.SHUT_WR)
        client.recv(1)
    except OSError as exception:
        error = f"send: {_describe(exception)}"
        give_up.set()
    finally:
        client.close()
        server.join(timeout + 1.0)
    view = views[0] if views else _BulkView(0, False, 0.0, "the server saw no connection")
    throughput = (
        view.received * 8 / view.seconds / 1e6 if view.seconds > 0 and view.received else None
    )
    return BulkOutcome(view.received, view.verified, throughput, error or view.error)
