"""Entering network namespaces, and checking the machine can make them.

A namespace is named either as netdiag/`ip netns` does (``ns1`` ->
``/run/netns/ns1``) or as ``pid:N`` (the network namespace of process N,
``/proc/N/ns/net``), which is how a container's network is reached.

setns(2) moves only the calling *thread*, and a socket stays in the namespace
where it was created whatever thread uses it later. So the pattern everywhere
is: enter, create the socket (netlink, packet, TCP), leave. ``inside`` saves
the thread's own namespace (``/proc/thread-self``) rather than the process's,
so it is correct from any thread. pyroute2's ``setns`` is given an open file
descriptor, never a name: with a name it would *create* a missing namespace.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from netdiag.errors import InputError, UnsupportedEnvironmentError

NETNS_RUN_DIR = Path("/run/netns")
_PID_REFERENCE = re.compile(r"^pid:(\d+)$")

# Capability bits (linux/capability.h) that building namespaces needs.
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SYS_ADMIN = 21


def configure_pyroute2() -> None:
    """Make pyroute2's short-lived helper processes die on SIGTERM/SIGINT.

    A forked helper inherits our signal handlers: without this it would unwind
    through our ``finally`` blocks and run our teardown mid-run.
    """
    from pyroute2 import config

    config.disable_mp_signal = True


def namespace_path(reference: str) -> Path:
    """The nsfs file of ``reference`` (a name or ``pid:N``); it must exist."""
    match = _PID_REFERENCE.match(reference)
    if match:
        path = Path(f"/proc/{match.group(1)}/ns/net")
        if not path.exists():
            raise InputError(f"no process {match.group(1)} (namespace {reference})")
        return path
    if not reference or "/" in reference or reference in (".", ".."):
        raise InputError(f"{reference!r} is not a namespace name")
    path = NETNS_RUN_DIR / reference
    if not path.exists():
        raise InputError(
            f"namespace {reference} does not exist",
            advice="list namespaces with `ip netns list` (or use pid:N for a process's)",
        )
    return path


def namespace_exists(name: str) -> bool:
    return (NETNS_RUN_DIR / name).exists()


def namespace_identity(name: str) -> tuple[int, int] | None:
    """(device, inode) of a named namespace: what makes it *this* namespace."""
    try:
        status = os.stat(NETNS_RUN_DIR / name)
    except FileNotFoundError:
        return None
    return (status.st_dev, status.st_ino)


def list_namespaces() -> list[str]:
    from pyroute2 import netns

    return sorted(netns.listnetns())


def _set_thread_namespace(descriptor: int) -> None:
    from pyroute2 import netns

    netns.setns(descriptor, flags=0)


@contextmanager
def inside(reference: str) -> Iterator[None]:
    """Run the body with the calling thread inside namespace ``reference``."""
    target = os.open(namespace_path(reference), os.O_RDONLY)
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _set_thread_namespace(target)
        try:
            yield
        finally:
            _set_thread_namespace(saved)
    finally:
        os.close(target)
        os.close(saved)


def _effective_capabilities() -> int:
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def check_environment() -> None:
    """Raise ``UnsupportedEnvironmentError`` (exit 3) when namespaces cannot be built here."""
    capabilities = _effective_capabilities()
    missing = [
        name
        for name, bit in (
            ("CAP_SYS_ADMIN", CAP_SYS_ADMIN),
            ("CAP_NET_ADMIN", CAP_NET_ADMIN),
            ("CAP_NET_RAW", CAP_NET_RAW),
        )
        if not capabilities & (1 << bit)
    ]
    if os.geteuid() != 0 or missing:
        detail = f" (missing {', '.join(missing)})" if missing else ""
        raise UnsupportedEnvironmentError(
            f"building network namespaces needs root{detail}",
            advice="run as root, e.g. `sudo netdiag run`",
        )
    if not Path("/proc/self/ns/net").exists():
        raise UnsupportedEnvironmentError("this kernel has no network namespace support")
    try:
        import pyroute2  # noqa: F401
    except ImportError as error:
        raise UnsupportedEnvironmentError("pyroute2 is not installed") from error
