"""Benchmark runner: netdiag's analyzer against tshark, tcptrace and a Python floor.

Not part of the test suite (no timing is asserted anywhere): this is where speed
is measured, as issue 6 asks, with every contender timed in the same run on the
same machine and the same files, so that ratios mean something even on a noisy
machine. It generates (or reuses, in bench/out/) captures of N and 2N packets
with bench/gen.py, then runs each contender as a child process and takes its wall
time and its peak resident memory from the kernel's accounting of that child
(``os.wait4`` -> ``ru_maxrss``). It prints a table (or JSON with ``--json``):
time at N and 2N, linearity (time(2N) / time(N)), peak memory, and how many times
faster netdiag is than each peer. A contender that is missing is skipped with a
note; one that fails is reported with its error, never fatal to the run.

It also times ``netdiag --help`` (start-up) and, when run as root and the
commands exist, ``netdiag up`` / ``netdiag down`` of the seed topology and of a
50-namespace chain under a unique ``bNN-`` prefix.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
REPORT_DIR = OUT_DIR / "reports"  # the --report-row's folders, removed after the run
GENERATOR = BENCH_DIR / "gen.py"
VENV_BIN = PROJECT_ROOT / ".venv" / "bin"
CHUNK = 1 << 20


@dataclass
class Measurement:
    """One child process: its wall time, peak RSS, and how it ended."""

    seconds: float | None = None
    cpu_seconds: float | None = None
    peak_rss_mb: float | None = None
    exit_code: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Contender:
    """A program timed on both files."""

    name: str
    command: list[str] | None
    note: str = ""
    results: dict[str, Measurement] = field(default_factory=dict)
    # Files per call, for netdiag's --jobs row: its ratio column is then the
    # speed-up over analyzing the copies one after another.
    files_per_call: int = 1
    environment: dict[str, str] | None = None


def python_for_netdiag() -> str:
    candidate = VENV_BIN / "python"
    return str(candidate) if candidate.exists() else sys.executable


def netdiag_command() -> list[str]:
    executable = VENV_BIN / "netdiag"
    if executable.exists():
        return [str(executable)]
    return [python_for_netdiag(), "-m", "netdiag"]


def measure(
    command: list[str],
    timeout: float,
    cwd: Path = PROJECT_ROOT,
    environment: dict[str, str] | None = None,
) -> Measurement:
    """Run ``command`` with stdout to /dev/null; wall time and peak RSS of the child.

    ``os.wait4`` returns the child's own resource usage, so the figure is the
    child's, not this runner's; ``ru_maxrss`` is in KiB on Linux.
    """
    # An anonymous in-memory file for stderr: a pipe could fill and block the child
    # while this runner sits in wait4, and tempfile's imports would grow the runner.
    with os.fdopen(os.memfd_create("bench-stderr"), "w+b") as stderr:
        started = time.perf_counter()
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=cwd,
                env=None if environment is None else {**os.environ, **environment},
            )
        except OSError as error:
            return Measurement(error=f"cannot start: {error}")
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        elapsed = time.perf_counter() - started
        exit_code = os.waitstatus_to_exitcode(status)
        process.returncode = exit_code  # reaped here; keep Popen from waiting again
        result = Measurement(
            seconds=elapsed,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            peak_rss_mb=usage.ru_maxrss / 1024,
            exit_code=exit_code,
        )
        if exit_code != 0:
            stderr.seek(0)
            reason = error_summary(stderr.read().decode("utf-8", "replace"))
            if exit_code < 0 and elapsed >= timeout:
                reason = f"killed after the {timeout:.0f} s timeout"
            result.error = f"exit {exit_code}: {reason}"[:160]
        return result


def error_summary(stderr: str) -> str:
    """The line of a child's stderr that says what went wrong.

    netdiag's own ``netdiag: error:`` line when there is one; else the last line
    with words in it (a traceback's exception, not the border of a rich panel).
    """
    lines = [line.strip(" │╭╮╰╯─\t") for line in stderr.splitlines()]
    lines = [line for line in lines if line and "Running as user" not in line]
    for line in lines:
        if line.startswith("netdiag: error:"):
            return line
    worded = [line for line in lines if any(character.isalpha() for character in line)]
    return worded[-1] if worded else "no message"


def floor_loop(path: Path) -> int:
    """The floor for a pure-Python reader: walk record headers, touch nothing else.

    Reads 1 MiB chunks and steps from one record header to the next with
    ``struct.unpack_from``; handles pcap (either byte order, µs or ns) and pcapng
    (blocks by type and length). Prints the record count.
    """
    records = 0
    with path.open("rb", buffering=0) as handle:
        head = handle.read(24)
        magic = head[:4]
        if magic == b"\x0a\x0d\x0d\x0a":
            order = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
            block = struct.Struct(order + "II")
            buffer = head
            offset = 0
            while True:
                available = len(buffer) - offset
                block_type, length = block.unpack_from(buffer, offset) if available >= 8 else (0, 8)
                if available < length:
                    more = handle.read(CHUNK)
                    if not more:
                        break
                    buffer = buffer[offset:] + more
                    offset = 0
                    continue
                if block_type in (6, 3):
                    records += 1
                offset += length
        else:
            order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
            record = struct.Struct(order + "8xI4x")
            unpack_from = record.unpack_from
            buffer = b""
            offset = 0
            while True:
                more = handle.read(CHUNK)
                if not more:
                    break
                buffer = buffer[offset:] + more
                offset = 0
                end = len(buffer) - 16
                while offset <= end:
                    (captured,) = unpack_from(buffer, offset)
                    following = offset + 16 + captured
                    if following > len(buffer):
                        break
                    records += 1
                    offset = following
    print(records)
    return 0


def dpkt_loop(path: Path) -> int:
    """The slow path for reference: dpkt's reader and a full dpkt object per frame."""
    import dpkt

    frames = 0
    with path.open("rb") as handle:
        magic = handle.read(4)
        handle.seek(0)
        reader = dpkt.pcapng.Reader(handle) if magic == b"\x0a\x0d\x0d\x0a" else None
        for _, buffer in reader or dpkt.pcap.Reader(handle):
            dpkt.ethernet.Ethernet(buffer)
            frames += 1
    print(frames)
    return 0


def generator_digest() -> str:
    # CRC-32 is enough to tell generator versions apart, and zlib is already loaded
    # (hashlib would add OpenSSL's megabytes to the runner: see runner_rss_mb).
    return f"{zlib.crc32(GENERATOR.read_bytes()):08x}"


def ensure_capture(packets: int, seed: int, file_format: str, fresh: list[Path]) -> Path:
    """A capture of ``packets`` from bench/out/, generated when missing or stale.

    The name carries the generator's hash, so a changed generator never feeds
    an old file to the benchmark.
    """
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    suffix = ".pcapng" if file_format.startswith("pcapng") else ".pcap"
    if file_format.endswith("-ns"):
        suffix = ".ns" + suffix
    name = f"gen-{generator_digest()}-s{seed}-{packets}{suffix}"
    path = OUT_DIR / name
    sidecar = Path(f"{path}.gen.json")
    if path.exists() and sidecar.exists():
        return path
    command = [sys.executable, str(GENERATOR), "--packets", str(packets), "--out", str(path)]
    command += ["--seed", str(seed), "--format", file_format]
    subprocess.run(command, check=True)
    fresh.extend((path, sidecar))
    return path


def warm_page_cache(path: Path) -> None:
    """Read the file once so every contender finds it in memory, none pays the disk."""
    # A reused buffer keeps this runner small: see runner_rss_mb for why it matters.
    buffer = bytearray(CHUNK)
    with path.open("rb", buffering=0) as handle:
        while handle.readinto(buffer):
            pass


def runner_rss_mb() -> float | None:
    """This runner's own peak RSS, the floor under every child's ``ru_maxrss``.

    Linux charges a child, at exec, with the high-water RSS of the memory it
    leaves behind, which for a vfork'ed or forked child is this process's. So no
    child reads below this figure; the runner stays lean to keep it low.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def first_line(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return lines[0].strip() if lines else "unknown"


def compiled_analysis() -> bool | None:
    """Whether netdiag uses its mypyc-compiled analysis modules (None: cannot tell)."""
    check = "import netdiag.analysis as a; print(getattr(a, 'COMPILED', False))"
    try:
        result = subprocess.run(
            [python_for_netdiag(), "-c", check], capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() == "True"


def code_state() -> dict[str, object]:
    """The commit measured, and whether netdiag/ differed from it (a shared work tree)."""

    def git(*arguments: str) -> str:
        try:
            result = subprocess.run(
                ["git", *arguments], capture_output=True, text=True, cwd=PROJECT_ROOT, check=False
            )
        except OSError:
            return ""
        return result.stdout.strip()

    status = git("status", "--porcelain", "--", "netdiag").splitlines()
    changed = [line.split(maxsplit=1)[1] for line in status if line.strip()]
    return {
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "netdiag_uncommitted": changed,
        "compiled_analysis": compiled_analysis(),
    }


def machine() -> dict[str, object]:
    cpu_model = "unknown"
    memory_gb: float | None = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    tcptrace = shutil.which("tcptrace")
    tshark = shutil.which("tshark")
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model,
        "memory_gb": memory_gb,
        "kernel": platform.release(),
        "python": first_line([python_for_netdiag(), "--version"]),
        "tshark": first_line([tshark, "--version"]) if tshark else "not installed",
        "tcptrace": first_line([tcptrace, "-v"]) if tcptrace else "not installed",
    }


def module_exists(module: str) -> bool:
    check = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    try:
        result = subprocess.run(
            [python_for_netdiag(), "-c", check], capture_output=True, check=False
        )
    except OSError:
        return False
    return result.returncode == 0


def startup(repeats: int, timeout: float) -> dict[str, object]:
    runs = [measure([*netdiag_command(), "--help"], timeout) for _ in range(repeats)]
    good = [run.seconds for run in runs if run.ok and run.seconds is not None]
    if not good:
        return {"error": runs[0].error}
    return {
        "median_s": sorted(good)[len(good) // 2],
        "min_s": min(good),
        "runs": len(good),
        "peak_rss_mb": max(run.peak_rss_mb or 0 for run in runs),
    }


def unused_prefix() -> str:
    """A ``bNN-`` prefix no namespace on this machine starts with."""
    existing = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    ).stdout
    names = [line.split()[0] for line in existing.splitlines() if line.strip()]
    for _ in range(100):
        prefix = f"b{random.randrange(100):02d}-"
        if not any(name.startswith(prefix) for name in names):
            return prefix
    raise RuntimeError("no free bNN- prefix")


# The seed topology as a shell script would build it with iproute2, one `ip`
# process per step (the peer of `netdiag up`; issue 6 quotes ~140 ms for it).
SEED_UP_BY_IP = (
    "netns add {p}ns1",
    "netns add {p}ns2",
    "link add {p}veth0 netns {p}ns1 type veth peer name {p}veth1 netns {p}ns2",
    "-n {p}ns1 address add 10.0.1.0/24 dev {p}veth0",
    "-n {p}ns2 address add 10.0.2.0/24 dev {p}veth1",
    "-n {p}ns1 link set lo up",
    "-n {p}ns2 link set lo up",
    "-n {p}ns1 link set {p}veth0 up",
    "-n {p}ns2 link set {p}veth1 up",
    "-n {p}ns1 route add 10.0.2.0/24 dev {p}veth0",
    "-n {p}ns2 route add 10.0.1.0/24 dev {p}veth1",
)
SEED_DOWN_BY_IP = ("netns del {p}ns1", "netns del {p}ns2")
SETUP_ROUNDS = 9


def _best_and_median(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"best_ms": ordered[0] * 1000, "median_ms": ordered[len(ordered) // 2] * 1000}


def seed_by_ip(rounds: int) -> dict[str, object]:
    """The seed up and down with `ip` commands, ``rounds`` times: wall ms of each half."""
    ups: list[float] = []
    downs: list[float] = []
    for _ in range(rounds):
        prefix = unused_prefix()
        try:
            started = time.perf_counter()
            for step in SEED_UP_BY_IP:
                subprocess.run(["ip", *step.format(p=prefix).split()], check=True)
            ups.append(time.perf_counter() - started)
        except subprocess.CalledProcessError as error:
            return {"error": f"{' '.join(error.cmd)}: exit {error.returncode}"}
        finally:
            # Only what this round made: the prefix was free when it began.
            started = time.perf_counter()
            for step in SEED_DOWN_BY_IP:
                subprocess.run(
                    ["ip", *step.format(p=prefix).split()], check=False, stderr=subprocess.DEVNULL
                )
            downs.append(time.perf_counter() - started)
    return {"up": _best_and_median(ups), "down": _best_and_median(downs), "rounds": rounds}


def seed_in_process(rounds: int) -> int:
    """Child mode (``--seed-in-process``): netdiag's own time for the seed, its modules
    loaded, as JSON on stdout: ``LiveTopology.build()`` and the teardown, ``rounds``
    times under fresh prefixes, and what importing the modules took before."""
    started = time.perf_counter()
    import pyroute2  # noqa: F401  (timed: the setup's import, in its package form)

    from netdiag.live.registry import new_run_id
    from netdiag.live.topology import LiveTopology
    from netdiag.topology.loader import load_topology

    imports = time.perf_counter() - started
    builds: list[float] = []
    teardowns: list[float] = []
    for _ in range(rounds):
        spec = load_topology(None).with_prefix(unused_prefix())
        with LiveTopology(spec, new_run_id(), command="up") as live:
            started = time.perf_counter()
            live.build()
            builds.append(time.perf_counter() - started)
            started = time.perf_counter()
        # Not kept: leaving the block tore it down.
        teardowns.append(time.perf_counter() - started)
    document = {
        "imports_ms": imports * 1000,
        "build": _best_and_median(builds),
        "teardown": _best_and_median(teardowns),
        "rounds": rounds,
    }
    print(json.dumps(document))
    return 0


def seed_in_process_timing(timeout: float) -> dict[str, object]:
    command = [
        python_for_netdiag(),
        str(Path(__file__).resolve()),
        "--seed-in-process",
        str(SETUP_ROUNDS),
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd=PROJECT_ROOT
        )
    except subprocess.TimeoutExpired:
        return {"error": f"killed after the {timeout:.0f} s timeout"}
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {error_summary(done.stderr)}"[:160]}
    result: dict[str, object] = json.loads(done.stdout)
    return result


def setup_timing(timeout: float) -> dict[str, object]:
    """Seed topology and a 50-namespace chain, up then down, under a fresh prefix."""
    if os.geteuid() != 0:
        return {"skipped": "not root"}
    if shutil.which("ip") is None:
        return {"skipped": "the ip command is missing (needed to pick a free prefix)"}
    if not module_exists("netdiag.commands.topo"):
        return {"skipped": "netdiag up/down are not implemented yet (no netdiag.commands.topo)"}
    results: dict[str, object] = {}
    startup_s = startup(3, timeout).get("min_s")
    for label, topology, size in (
        ("seed", [], []),
        ("chain-50", ["--topology", "chain"], ["-n", "50"]),
    ):
        prefix = unused_prefix()
        up = measure([*netdiag_command(), "up", *topology, *size, "--prefix", prefix], timeout)
        down = measure([*netdiag_command(), "down", *topology, "--prefix", prefix], timeout)
        left = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=False
        ).stdout
        leftovers = [line.split()[0] for line in left.splitlines() if line.startswith(prefix)]
        results[label] = {
            "prefix": prefix,
            "startup_s": startup_s,
            "up": asdict(up),
            "down": asdict(down),
            "left_behind": leftovers,
        }
    results["seed, in process"] = seed_in_process_timing(timeout)
    results["seed, ip commands"] = seed_by_ip(SETUP_ROUNDS)
    return results


def run_contenders(
    files: dict[str, Path],
    timeout: float,
    repeats: int,
    jobs_row: bool,
    dpkt_row: bool,
    only: list[str],
    report_row: bool = False,
) -> list[Contender]:
    python = python_for_netdiag()
    contenders = [
        Contender(
            "netdiag analyze --json",
            [*netdiag_command(), "analyze", "{}", "--json"],
            "default --jobs: one process per CPU, a big file split by conversation;"
            " peak RSS is the largest process's",
        ),
        Contender(
            "netdiag analyze --json --jobs 1",
            [*netdiag_command(), "analyze", "{}", "--json", "--jobs", "1"],
            "one process",
        ),
    ]
    tshark = shutil.which("tshark")
    tcptrace = shutil.which("tcptrace")
    if compiled_analysis():
        # The mypyc-compiled hot modules are in use: time the pure-Python path too.
        contenders.append(
            Contender(
                "netdiag analyze --json, pure Python",
                [*netdiag_command(), "analyze", "{}", "--json"],
                "NETDIAG_PURE_PYTHON=1: the compiled modules left out",
                environment={"NETDIAG_PURE_PYTHON": "1"},
            )
        )
    contenders.append(
        Contender("tshark -q -z conv,tcp", [tshark, "-q", "-z", "conv,tcp", "-r", "{}"])
        if tshark
        else Contender("tshark -q -z conv,tcp", None, "not installed: apt-get install -y tshark")
    )
    contenders.append(
        Contender("tcptrace -n -l", [tcptrace, "-n", "-l", "-r", "{}"])
        if tcptrace
        else Contender("tcptrace -n -l", None, "not installed: apt-get install -y tcptrace")
    )
    contenders.append(
        Contender(
            "floor: Python record-header loop", [python, str(Path(__file__)), "--floor", "{}"]
        )
    )
    if dpkt_row:
        contenders.append(
            Contender(
                "dpkt: Ethernet object per frame",
                [python, str(Path(__file__)), "--dpkt-loop", "{}"],
            )
        )
    if jobs_row:
        contenders.append(
            Contender(
                "netdiag analyze F F --jobs 2 --json",
                [*netdiag_command(), "analyze", "{}", "{}", "--jobs", "2", "--json"],
                "two copies of the file in one call; ratio column: speed-up over 2 serial runs",
                files_per_call=2,
            )
        )
    if report_row:
        contenders.append(
            Contender(
                "netdiag analyze --out (md, html, json)",
                [*netdiag_command(), "analyze", "{}", "--out", str(REPORT_DIR), "--force"],
                "a report folder: plots, Markdown, HTML and report.json; default --jobs",
            )
        )
    for contender in contenders:
        if contender.command is None:
            continue
        if only and not any(word in contender.name for word in only):
            contender.note = "left out (--only)"
            continue
        for size, path in files.items():
            command = [str(path) if part == "{}" else part for part in contender.command]
            runs = [
                measure(command, timeout, environment=contender.environment) for _ in range(repeats)
            ]
            good = [run for run in runs if run.ok]
            if good:
                contender.results[size] = min(good, key=lambda run: run.seconds or 0.0)
            else:
                contender.results[size] = runs[0]
            print(
                f"  {contender.name:<38} {size:>3}: {_seconds(contender.results[size])}",
                file=sys.stderr,
            )
    return contenders


def time_formats(
    packets: int, seed: int, timeout: float, fresh: list[Path]
) -> dict[str, dict[str, object]]:
    """The same frames in each format: how much each reader pays for its format."""
    tshark = shutil.which("tshark")
    commands: dict[str, list[str]] = {
        "netdiag analyze --json": [*netdiag_command(), "analyze", "{}", "--json"],
        "floor": [python_for_netdiag(), str(Path(__file__)), "--floor", "{}"],
    }
    if tshark:
        commands["tshark -q -z conv,tcp"] = [tshark, "-q", "-z", "conv,tcp", "-r", "{}"]
    table: dict[str, dict[str, object]] = {}
    for file_format in ("pcap", "pcap-ns", "pcapng", "pcapng-ns"):
        path = ensure_capture(packets, seed, file_format, fresh)
        warm_page_cache(path)
        row: dict[str, object] = {}
        for name, command in commands.items():
            result = measure([str(path) if part == "{}" else part for part in command], timeout)
            row[name] = asdict(result)
            print(f"  {file_format:<10} {name:<24} {_seconds(result)}", file=sys.stderr)
        table[file_format] = row
    return table


def _cpu_linearity(row: dict[str, object]) -> float | None:
    """CPU(2N) / CPU(N): linearity with the noise of a shared machine mostly left out."""
    small, large = row.get("N"), row.get("2N")
    if not isinstance(small, dict) or not isinstance(large, dict):
        return None
    if small["error"] or large["error"] or not small.get("cpu_seconds"):
        return None
    return float(large["cpu_seconds"]) / float(small["cpu_seconds"])


def _seconds(result: Measurement | None) -> str:
    if result is None:
        return "-"
    if not result.ok:
        return f"error ({result.error})"
    return f"{result.seconds:.2f} s"


def _number(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def build_report(
    contenders: list[Contender],
    files: dict[str, Path],
    packets: int,
    started: str,
    extra: dict[str, object],
) -> dict[str, object]:
    netdiag = contenders[0]
    rows = []
    for contender in contenders:
        small = contender.results.get("N")
        large = contender.results.get("2N")
        row: dict[str, object] = {"name": contender.name, "note": contender.note}
        row["N"] = asdict(small) if small else None
        row["2N"] = asdict(large) if large else None
        linearity = None
        if small and large and small.ok and large.ok and small.seconds and large.seconds:
            linearity = large.seconds / small.seconds
        row["linearity"] = linearity
        ratios: dict[str, float | None] = {}
        for size in ("N", "2N"):
            ours = netdiag.results.get(size)
            theirs = contender.results.get(size)
            if not (ours and theirs and ours.ok and theirs.ok and ours.seconds and theirs.seconds):
                ratios[size] = None
            elif contender.files_per_call > 1:
                ratios[size] = contender.files_per_call * ours.seconds / theirs.seconds
            else:
                ratios[size] = theirs.seconds / ours.seconds
        row["netdiag_speedup"] = ratios
        rows.append(row)
    sidecars = {}
    for size, path in files.items():
        sidecar = json.loads(Path(f"{path}.gen.json").read_text(encoding="utf-8"))
        sidecars[size] = {
            "path": str(path.relative_to(PROJECT_ROOT)),
            "packets": sidecar["packets"],
            "tcp_conversations": sidecar["tcp_conversations"],
            "megabytes": round(path.stat().st_size / 1e6, 1),
        }
    return {
        "started_utc": started,
        "packets": packets,
        "machine": machine(),
        "code": code_state(),
        "files": sidecars,
        "contenders": rows,
        "runner_rss_mb": runner_rss_mb(),
        **extra,
    }


def render_table(report: dict[str, object]) -> str:
    files = report["files"]
    assert isinstance(files, dict)
    lines = [
        f"files: N = {files['N']['packets']:,} packets ({files['N']['megabytes']} MB, "
        f"{files['N']['tcp_conversations']:,} TCP conversations); 2N = "
        f"{files['2N']['packets']:,} packets ({files['2N']['megabytes']} MB, "
        f"{files['2N']['tcp_conversations']:,} conversations)",
        "",
        "| contender | time N | time 2N | CPU N | linearity 2N/N | peak RSS N | peak RSS 2N "
        "| netdiag faster by (N / 2N) | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    rows = report["contenders"]
    assert isinstance(rows, list)
    for row in rows:
        cells = [row["name"]]
        notes = [row["note"]] if row["note"] else []
        for size in ("N", "2N"):
            result = row[size]
            if result is None:
                cells.append("skipped")
            elif result["error"]:
                cells.append("error")
                notes.append(f"{size}: {result['error']}")
            else:
                cells.append(_number(result["seconds"], 2, " s"))
        small = row["N"]
        cells.append("-" if not small or small["error"] else _number(small["cpu_seconds"], 2, " s"))
        linearity_cell = _number(row["linearity"], 2, "×")
        cpu_linearity = _cpu_linearity(row)
        if cpu_linearity is not None:
            linearity_cell += f" (CPU {cpu_linearity:.2f}×)"
        cells.append(linearity_cell)
        for size in ("N", "2N"):
            result = row[size]
            cells.append("-" if not result else _number(result["peak_rss_mb"], 0, " MB"))
        speedup = row["netdiag_speedup"]
        if row is rows[0] or (speedup["N"] is None and speedup["2N"] is None):
            cells.append("-")
        else:
            cells.append(f"{_number(speedup['N'], 2, '×')} / {_number(speedup['2N'], 2, '×')}")
        cells.append("; ".join(notes))
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    start = report.get("startup")
    if isinstance(start, dict):
        if "error" in start:
            lines += ["", f"`netdiag --help`: error ({start['error']})"]
        else:
            lines += [
                "",
                f"`netdiag --help`: median {start['median_s']:.3f} s, min {start['min_s']:.3f} s "
                f"over {start['runs']} runs, peak RSS {start['peak_rss_mb']:.0f} MB",
            ]
    small = report.get("small_analyze")
    if isinstance(small, dict):
        if small.get("error"):
            lines.append(f"`netdiag analyze` on a 2,000-packet file: error ({small['error']})")
        else:
            lines.append(
                f"`netdiag analyze` on a 2,000-packet file: {small['seconds']:.3f} s, "
                f"peak RSS {small['peak_rss_mb']:.0f} MB"
            )
    formats = report.get("formats")
    if isinstance(formats, dict) and formats:
        names = list(next(iter(formats.values())).keys())
        lines += [
            "",
            f"formats ({report.get('formats_packets', '?')} packets, same frames):",
            "",
            "| format | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        for file_format, row in formats.items():
            cells = [_seconds(Measurement(**row[name])) for name in names]
            lines.append(f"| {file_format} | " + " | ".join(cells) + " |")
        lines.append("")
    setup = report.get("setup")
    if isinstance(setup, dict):
        if "skipped" in setup:
            lines.append(f"setup timing: skipped ({setup['skipped']})")
        else:
            for label, value in setup.items():
                if label.startswith("seed, "):
                    lines.append(_setup_comparison_line(label, value))
                    continue
                up, down = value["up"], value["down"]
                own = ""
                if up["seconds"] is not None and not up["error"] and value["startup_s"]:
                    own = f" (about {up['seconds'] - value['startup_s']:.3f} s past start-up)"
                lines.append(
                    f"setup {label} (prefix {value['prefix']}): up {_seconds(Measurement(**up))}"
                    f"{own}, down {_seconds(Measurement(**down))}"
                    + (f", LEFT BEHIND: {value['left_behind']}" if value["left_behind"] else "")
                )
    lines.append(
        f"peak RSS figures cannot read below the runner's own {report['runner_rss_mb']} MB "
        "(Linux charges the parent's RSS to a child at exec)"
    )
    code = report.get("code")
    if isinstance(code, dict):
        changed = code["netdiag_uncommitted"]
        compiled = {True: "mypyc-compiled", False: "pure Python", None: "unknown"}[
            code.get("compiled_analysis")
        ]
        lines.append(
            f"code: commit {code['commit']}, analysis modules {compiled}"
            + (f", with uncommitted changes in {', '.join(changed)}" if changed else "")
        )
    machine_info = report["machine"]
    assert isinstance(machine_info, dict)
    lines += [
        "",
        "machine: "
        + ", ".join(f"{key} {value}" for key, value in machine_info.items() if value is not None),
    ]
    return "\n".join(lines)


def _setup_comparison_line(label: str, value: dict[str, Any]) -> str:
    """One line for the in-process timing of netdiag's setup or for its `ip` peer."""
    if "error" in value:
        return f"setup {label}: {value['error']}"
    rounds = value["rounds"]
    if "build" in value:
        build, teardown = value["build"], value["teardown"]
        return (
            f"setup {label} (netdiag's own time, modules loaded; best / median of {rounds}): "
            f"build {build['best_ms']:.1f} / {build['median_ms']:.1f} ms, teardown "
            f"{teardown['best_ms']:.1f} / {teardown['median_ms']:.1f} ms; importing pyroute2 "
            f"and the setup modules first took {value['imports_ms']:.0f} ms"
        )
    up, down = value["up"], value["down"]
    return (
        f"setup {label} ({len(SEED_UP_BY_IP)} + {len(SEED_DOWN_BY_IP)} `ip` processes; "
        f"best / median of {rounds}): up {up['best_ms']:.1f} / {up['median_ms']:.1f} ms, "
        f"down {down['best_ms']:.1f} / {down['median_ms']:.1f} ms"
    )


def render_targets(report: dict[str, object]) -> str:
    """Issue 6's targets next to this run's figures, as a markdown table."""
    rows = {row["name"]: row for row in report["contenders"]}  # type: ignore[attr-defined]
    ours = rows["netdiag analyze --json"]
    lines = ["| target (issue 6) | now | met? |", "|---|---|---|"]

    def seconds(row: dict[str, object], size: str) -> float | None:
        result = row.get(size)
        if not isinstance(result, dict) or result["error"]:
            return None
        value = result["seconds"]
        return float(value) if value is not None else None

    def peak(row: dict[str, object], size: str) -> float | None:
        result = row.get(size)
        if not isinstance(result, dict) or result["error"]:
            return None
        return float(result["peak_rss_mb"])

    def met(condition: bool) -> str:
        return "yes" if condition else "no"

    def cpu(row: dict[str, object], size: str) -> float | None:
        result = row.get(size)
        if not isinstance(result, dict) or result["error"] or not result.get("cpu_seconds"):
            return None
        return float(result["cpu_seconds"])

    n_time = seconds(ours, "N")
    n_cpu = cpu(ours, "N")
    single = rows.get("netdiag analyze --json --jobs 1")
    single_time = seconds(single, "N") if single else None
    for name, label, factor in (
        ("tshark -q -z conv,tcp", "≥ 4× faster than tshark", 4.0),
        ("tcptrace -n -l", "ahead of tcptrace", 1.0),
    ):
        peer = rows.get(name)
        peer_time = seconds(peer, "N") if peer else None
        peer_cpu = cpu(peer, "N") if peer else None
        if n_time and peer_time:
            also = []
            if single_time:
                also.append(f"one process {peer_time / single_time:.2f}×")
            if n_cpu and peer_cpu:
                also.append(f"in CPU time {peer_cpu / n_cpu:.2f}×")
            lines.append(
                f"| {label} | {peer_time / n_time:.2f}× ({n_time:.2f} s vs {peer_time:.2f} s"
                f"{'; ' if also else ''}{'; '.join(also)}) | {met(peer_time / n_time >= factor)} |"
            )
    small_peak, large_peak = peak(ours, "N"), peak(ours, "2N")
    if small_peak is not None:
        lines.append(f"| peak memory < 200 MB | {small_peak:.0f} MB | {met(small_peak < 200)} |")
    if small_peak is not None and large_peak is not None:
        lines.append(
            f"| memory flat when the file doubles | {small_peak:.0f} → {large_peak:.0f} MB "
            f"| {met(large_peak < 1.1 * small_peak)} |"
        )
    linearity = ours.get("linearity")
    cpu_linearity = _cpu_linearity(ours)
    if isinstance(linearity, float):
        cpu = "" if cpu_linearity is None else f", CPU time {cpu_linearity:.2f}×"
        lines.append(
            f"| time(2N) ≤ 2.1 × time(N) | wall {linearity:.2f}×{cpu} "
            f"| {met(min(linearity, cpu_linearity or linearity) <= 2.1)} |"
        )
    jobs = rows.get("netdiag analyze F F --jobs 2 --json")
    speedup = jobs["netdiag_speedup"]["N"] if jobs else None
    if speedup:
        lines.append(
            f"| `--jobs N` uses N processes | 2 files, `--jobs 2`: {speedup:.2f}× the speed "
            f"of 2 serial runs | {met(speedup > 1.1)} |"
        )
    start = report.get("startup")
    if isinstance(start, dict) and "median_s" in start:
        median = start["median_s"]
        lines.append(f"| `netdiag --help` < 0.5 s | {median:.3f} s | {met(median < 0.5)} |")
    small = report.get("small_analyze")
    if isinstance(small, dict) and not small.get("error"):
        value = small["seconds"]
        lines.append(f"| `analyze` of a small file < 0.5 s | {value:.3f} s | {met(value < 0.5)} |")
    setup = report.get("setup")
    if isinstance(setup, dict):
        seed = setup.get("seed")
        inside = setup.get("seed, in process")
        by_ip = setup.get("seed, ip commands")
        if isinstance(inside, dict) and "build" in inside:
            build_ms = inside["build"]["median_ms"]
            peer = ""
            if isinstance(by_ip, dict) and "up" in by_ip:
                peer = f"; the same with `ip` commands: {by_ip['up']['median_ms']:.0f} ms"
            wall = ""
            if isinstance(seed, dict) and not seed["up"]["error"] and seed["startup_s"]:
                past = seed["up"]["seconds"] - seed["startup_s"]
                wall = (
                    f"; `netdiag up` {seed['up']['seconds']:.2f} s wall, ~{past * 1000:.0f} ms "
                    f"past interpreter start-up, most of it importing pyroute2 "
                    f"({inside['imports_ms']:.0f} ms with the setup modules) and typer's pydantic"
                )
            lines.append(
                f"| seed topology up < 50 ms of netdiag's own time | build {build_ms:.1f} ms "
                f"(median, in process){peer}{wall} | {met(build_ms < 50)}, in process; "
                f"not counting imports |"
            )
        chain = setup.get("chain-50")
        if isinstance(chain, dict) and not chain["up"]["error"] and not chain["down"]["error"]:
            up, down = chain["up"]["seconds"], chain["down"]["seconds"]
            lines.append(
                f"| 50-namespace chain up and down < 3 s | {up + down:.2f} s "
                f"({up:.2f} + {down:.2f}) | {met(up + down < 3)} |"
            )
    return "\n".join(lines)


def update_readme(report: dict[str, object], command: str) -> None:
    """Replace the figures section of bench/README.md with this run's."""
    readme = BENCH_DIR / "README.md"
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split("## Latest figures\n", 1)
    _, tail = rest.split("## Reading the figures\n", 1)
    block = (
        "## Latest figures\n\n"
        f"Run of {report['started_utc']} UTC, `{command}`:\n\n"
        f"{render_targets(report)}\n\n{render_table(report)}\n\n"
    )
    readme.write_text(head + block + "## Reading the figures\n" + tail, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time netdiag analyze against its peers.")
    parser.add_argument("--packets", type=int, default=1_000_000, help="N (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--format",
        default="pcap",
        choices=("pcap", "pcap-ns", "pcapng", "pcapng-ns"),
        dest="file_format",
        help="capture format of the generated files",
    )
    parser.add_argument("--keep", action="store_true", help="keep the captures this run made")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (best kept)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per child")
    parser.add_argument("--no-setup", action="store_true", help="skip the netdiag up/down timing")
    parser.add_argument("--jobs-row", action="store_true", help="also time --jobs 2 on 2 files")
    parser.add_argument(
        "--report-row", action="store_true", help="also time analyze --out (a report folder)"
    )
    parser.add_argument(
        "--formats-packets",
        type=int,
        default=0,
        metavar="M",
        help="also time netdiag, tshark and the floor on M packets in each of the 4 formats",
    )
    parser.add_argument(
        "--dpkt-row", action="store_true", help="also time a loop building dpkt objects"
    )
    parser.add_argument(
        "--only",
        type=lambda value: [word.strip() for word in value.split(",") if word.strip()],
        default=[],
        metavar="WORDS",
        help="time only contenders whose name contains one of these words "
        "(e.g. netdiag,tshark); netdiag's row is needed for the ratios",
    )
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="write this run's figures into bench/README.md",
    )
    parser.add_argument("--floor", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dpkt-loop", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed-in-process", type=int, metavar="ROUNDS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seed_in_process is not None:
        return seed_in_process(args.seed_in_process)
    if args.floor is not None:
        return floor_loop(args.floor)
    if args.dpkt_loop is not None:
        return dpkt_loop(args.dpkt_loop)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    fresh: list[Path] = []
    try:
        print(f"preparing captures of {args.packets:,} and {2 * args.packets:,}", file=sys.stderr)
        files = {
            "N": ensure_capture(args.packets, args.seed, args.file_format, fresh),
            "2N": ensure_capture(2 * args.packets, args.seed, args.file_format, fresh),
        }
        small = ensure_capture(2000, args.seed, args.file_format, fresh)
        for path in (*files.values(), small):
            warm_page_cache(path)
        print("startup", file=sys.stderr)
        extra: dict[str, object] = {"startup": startup(5, args.timeout)}
        extra["small_analyze"] = asdict(
            measure([*netdiag_command(), "analyze", str(small), "--json"], args.timeout)
        )
        print("contenders", file=sys.stderr)
        contenders = run_contenders(
            *(files, args.timeout, args.repeat, args.jobs_row, args.dpkt_row, args.only),
            report_row=args.report_row,
        )
        if args.formats_packets:
            print("formats", file=sys.stderr)
            extra["formats"] = time_formats(args.formats_packets, args.seed, args.timeout, fresh)
            extra["formats_packets"] = args.formats_packets
        if not args.no_setup:
            print("setup", file=sys.stderr)
            extra["setup"] = setup_timing(args.timeout)
        report = build_report(contenders, files, args.packets, started, extra)
    finally:
        shutil.rmtree(REPORT_DIR, ignore_errors=True)
        if not args.keep:
            for path in fresh:
                path.unlink(missing_ok=True)
    if args.update_readme:
        shown = " ".join(argument for argument in sys.argv[1:] if argument != "--update-readme")
        update_readme(report, f"python bench/run.py {shown}".strip())
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_targets(report) + "\n\n" + render_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
