"""Checks that the process may build network namespaces, before it tries.

Being uid 0 is not what matters: creating namespaces and veth links needs the
CAP_SYS_ADMIN and CAP_NET_ADMIN capabilities, which a container's root may lack
and which `setpriv --bounding-set -all` removes. Reading /proc/self/status
tells the truth without touching the kernel's network state.
"""

from __future__ import annotations

from pathlib import Path

from netdiag.errors import UnsupportedEnvironmentError

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21


def effective_capabilities() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def missing_netns_privileges() -> str | None:
    """Say what is missing to build namespaces here, or None when nothing is."""
    if not Path("/proc/self/ns/net").exists():
        return "this kernel has no network namespace support (/proc/self/ns/net is missing)"
    capabilities = effective_capabilities()
    missing = [
        name
        for name, bit in (("CAP_SYS_ADMIN", CAP_SYS_ADMIN), ("CAP_NET_ADMIN", CAP_NET_ADMIN))
        if not capabilities & (1 << bit)
    ]
    if missing:
        return f"needs root ({' and '.join(missing)}) to create network namespaces"
    return None


def require_netns_privileges(command: str) -> None:
    """Raise UnsupportedEnvironmentError (exit 3) when namespaces cannot be built."""
    problem = missing_netns_privileges()
    if problem is not None:
        raise UnsupportedEnvironmentError(
            f"netdiag {command} {problem}", advice=f"run it as root: sudo netdiag {command}"
        )
