"""Compile netdiag's hot analysis modules with mypyc (optional; ``make`` runs it).

    .venv/bin/python build_mypyc.py          # build if the sources changed
    .venv/bin/python build_mypyc.py --force  # build anyway

The extensions go to ``build/mypyc/lib/`` (git-ignored), never beside the
``.py`` files; ``netdiag/analysis/_compiled.py`` uses them only while the
digest in ``build/mypyc/manifest.json`` matches the current sources. If mypyc
is missing or the build fails, this prints a note and exits 0: netdiag then
runs in pure Python, with the same results, only slower.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# Import the module list without activating a previous build.
os.environ["NETDIAG_PURE_PYTHON"] = "1"
sys.path.insert(0, str(ROOT))

from netdiag.analysis._compiled import (  # noqa: E402
    BUILD_DIR,
    COMPILED_MODULES,
    GROUP_NAME,
    LIBRARY_DIR,
    MANIFEST,
    fresh_build,
    source_digest,
)


def note(message: str) -> None:
    print(f"build_mypyc: {message}", file=sys.stderr)


def build() -> bool:
    try:
        from mypyc.build import mypycify
        from setuptools import Distribution  # type: ignore[import-untyped]
    except ImportError as error:
        note(f"mypyc is not available ({error}); netdiag runs in pure Python")
        return False
    digest = source_digest()
    MANIFEST.unlink(missing_ok=True)
    shutil.rmtree(LIBRARY_DIR, ignore_errors=True)
    paths = [f"netdiag/analysis/{name}.py" for name in COMPILED_MODULES]
    started = time.monotonic()
    try:
        extensions = mypycify(
            paths, opt_level="3", target_dir=str(BUILD_DIR / "c"), group_name=GROUP_NAME
        )
        distribution = Distribution({"name": "netdiag-compiled", "ext_modules": extensions})
        command = distribution.get_command_obj("build_ext")
        command.build_lib = str(LIBRARY_DIR)
        command.build_temp = str(BUILD_DIR / "temp")
        command.parallel = os.cpu_count() or 1
        distribution.run_command("build_ext")
    except (Exception, SystemExit) as error:  # mypyc type errors exit; gcc failures raise
        shutil.rmtree(LIBRARY_DIR, ignore_errors=True)
        note(f"compilation failed ({error}); netdiag runs in pure Python")
        return False
    manifest = {
        "digest": digest,
        "modules": list(COMPILED_MODULES),
        "python": sys.version.split()[0],
        "seconds": round(time.monotonic() - started, 1),
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    note(f"compiled {', '.join(COMPILED_MODULES)} into {LIBRARY_DIR.relative_to(ROOT)}")
    return True


def main() -> int:
    os.chdir(ROOT)  # mypycify takes paths relative to the project
    if "--force" not in sys.argv[1:] and fresh_build():
        note("compiled modules are up to date")
        return 0
    build()
    return 0


if __name__ == "__main__":
    sys.exit(main())
