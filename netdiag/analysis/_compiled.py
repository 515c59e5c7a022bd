"""Optional mypyc-compiled hot modules of the analysis stage (issue 6).

``build_mypyc.py`` (run by ``make``) compiles ``COMPILED_MODULES`` with mypyc
into ``build/mypyc/lib/`` beside the project, never into the source tree, and
writes ``build/mypyc/manifest.json`` with a digest of the sources it compiled.
``activate`` puts that folder first on ``netdiag.analysis.__path__`` only
while the digest still matches the ``.py`` files: a module edited after the
build makes the whole compiled set unused (pure Python) until the next
build, so a stale extension never shadows the code being edited. All or
nothing, because the compiled modules call each other natively.

``NETDIAG_PURE_PYTHON=1`` forces the pure-Python modules (the corpus test
compares both paths). Results are identical either way; only speed differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

# packet.py too: as a native class DecodedPacket is a C struct, read and
# written by offset from the other compiled modules (it loses __slots__, which
# tests no longer read). RawFrame stays a frozen dataclass, built through its
# interpreted __init__, so the analysis pass builds none (reader.Record).
# scan.py is the per-packet loop, so that every call it makes is native.
COMPILED_MODULES = ("packet", "tcpopts", "reader", "decode", "icmp", "samples", "tcp", "scan")
GROUP_NAME = "netdiag_fast"  # mypyc's shared library: netdiag_fast__mypyc
PACKAGE_DIR = Path(__file__).resolve().parent
BUILD_DIR = PACKAGE_DIR.parent.parent / "build" / "mypyc"
LIBRARY_DIR = BUILD_DIR / "lib"
MANIFEST = BUILD_DIR / "manifest.json"
PURE_PYTHON_VARIABLE = "NETDIAG_PURE_PYTHON"


def source_digest() -> str:
    """SHA-256 of the compiled modules' sources and the interpreter's ABI tag."""
    digest = hashlib.sha256(sys.implementation.cache_tag.encode())
    for name in COMPILED_MODULES:
        digest.update(name.encode() + b"\0")
        digest.update((PACKAGE_DIR / f"{name}.py").read_bytes())
    return digest.hexdigest()


def fresh_build() -> bool:
    """True when build/mypyc holds extensions made from the current sources."""
    try:
        manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
        return bool(manifest.get("digest") == source_digest())
    except (OSError, ValueError, AttributeError):
        return False


def activate(package_path: list[str]) -> bool:
    """Use the compiled modules for ``netdiag.analysis`` when fresh; True if so."""
    if os.environ.get(PURE_PYTHON_VARIABLE) or not fresh_build():
        return False
    package_path.insert(0, str(LIBRARY_DIR / "netdiag" / "analysis"))
    # The shared runtime library is a top-level module; last on the path, so
    # it cannot shadow anything else.
    if str(LIBRARY_DIR) not in sys.path:
        sys.path.append(str(LIBRARY_DIR))
    return True
