"""Issue 7, teardown under faults: signals at named moments, kill -9, half-way failures.

Every test runs the real CLI (``python -m netdiag``) in a subprocess on real
namespaces with a unique prefix, and its run registry in a folder of its own
(``NETDIAG_RUN_DIR``). Moments are hit deterministically, without sleeps:
``NETDIAG_PAUSE_AT=<point>`` makes the run print ``netdiag: paused at <point>``
and wait there for a signal (SIGUSR1 lets it go on; see
``netdiag.experiment.runner.pause_point``). The fixtures stop only the
processes the test started (by pid) and remove whatever of the test's prefix
survived, failing the test if anything did.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.netns

COUNT = 3  # echoes each way: enough to see, quick to send


def namespaces_with(prefix: str) -> list[str]:
    from pyroute2 import netns

    return sorted(name for name in netns.listnetns() if name.startswith(prefix))


def remove_namespaces_with(prefix: str) -> list[str]:
    from pyroute2 import netns

    left = namespaces_with(prefix)
    for name in left:
        netns.remove(name)
    return left


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The run registry of this test only (inherited by the netdiag subprocesses)."""
    folder = tmp_path / "registry"
    monkeypatch.setenv("NETDIAG_RUN_DIR", str(folder))
    return folder


class Runs:
    """Starts `netdiag run` subprocesses and stops, on teardown, those still running."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, prefix: str, out: Path, pause_at: str, *extra: str) -> subprocess.Popen[str]:
        environment = {**os.environ, "NETDIAG_PAUSE_AT": pause_at}
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "netdiag", "run", "--prefix", prefix, "--out", str(out)),
                *("--json", "--count", str(COUNT), *extra),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)  # only processes this test started
            process.communicate()


@pytest.fixture
def runs(unique_prefix: str, run_dir: Path) -> Iterator[Runs]:
    started = Runs()
    yield started
    started.stop_all()
    left = remove_namespaces_with(unique_prefix)
    assert left == [], f"left behind: {left}"


def wait_until_paused(process: subprocess.Popen[str], point: str) -> list[str]:
    """Read the run's stderr up to its ``paused at POINT`` line (fail if it ends first)."""
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith(f"netdiag: paused at {point} "):
            return lines
    process.wait()
    raise AssertionError(f"the run ended (code {process.returncode}) before {point}: {lines}")


def python(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *arguments], capture_output=True, text=True, timeout=120, check=False
    )


def netdiag(*arguments: str) -> subprocess.CompletedProcess[str]:
    return python("-m", "netdiag", *arguments)


def the_pcap(out: Path) -> Path | None:
    found = sorted(out.glob("captures/*/*.pcap"))
    assert len(found) <= 1, found
    return found[0] if found else None


def answered_echoes(pcap: Path) -> int:
    from netdiag.analysis.analyze import analyze_file

    analysis = analyze_file(pcap)
    assert analysis.file.packets > 0
    return sum(1 for echo in analysis.icmp_echo if echo.frame_rep is not None)


EXIT_CODE = {signal.SIGINT: 130, signal.SIGTERM: 143}
SAYS = {signal.SIGINT: "netdiag: interrupted;", signal.SIGTERM: "netdiag: terminated;"}


# (pause point, signal, echo pairs already in the capture; None: no capture started yet)
MOMENTS = [
    ("links", signal.SIGINT, None),  # setup: namespaces made, no veth yet
    ("ns2", signal.SIGTERM, None),  # setup: one side configured
    ("ping-ns1-ns2", signal.SIGINT, COUNT),  # traffic: one direction pinged, sniffer running
    ("tcp-7096", signal.SIGTERM, 2 * COUNT),  # traffic: before the TCP exchange
    ("capture", signal.SIGINT, 2 * COUNT),  # stopping the capture
    ("analysis", signal.SIGTERM, 2 * COUNT),  # torn down, analysis starting
    ("report", signal.SIGINT, 2 * COUNT),  # analysed, report starting
]


@pytest.mark.parametrize(
    ("point", "which", "echoes"), MOMENTS, ids=[f"{p}-{s.name}" for p, s, _e in MOMENTS]
)
def test_signal_at_a_moment_removes_everything_and_keeps_the_capture(
    point: str,
    which: signal.Signals,
    echoes: int | None,
    runs: Runs,
    unique_prefix: str,
    run_dir: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    process = runs.start(unique_prefix, out, point)
    wait_until_paused(process, point)
    if point in ("links", "ns2", "tcp-7096"):
        assert namespaces_with(unique_prefix) == [f"{unique_prefix}ns1", f"{unique_prefix}ns2"]
    process.send_signal(which)
    _stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == EXIT_CODE[which], stderr
    assert "Traceback" not in stderr
    assert f"{SAYS[which]} everything the run created was removed" in stderr
    assert namespaces_with(unique_prefix) == []
    assert list(run_dir.glob("*.json")) == []  # the run's record went with its namespaces
    pcap = the_pcap(out)
    if echoes is None:
        assert pcap is None
        return
    # The capture written so far is kept, complete, and the analyzer reads it.
    assert pcap is not None
    from netdiag.analysis.analyze import analyze_file

    analysis = analyze_file(pcap)
    assert analysis.file.complete and analysis.file.warnings == ()
    assert answered_echoes(pcap) == echoes
    if point in ("capture", "analysis", "report"):
        (stream,) = [s for s in analysis.tcp if s.server == "10.0.1.0:7096"]
        assert stream.bytes_c2s == len("this is a test message") and stream.fin_seen
    # Nothing half-written under a report's final name: the report had not been written.
    reports = sorted(path.name for path in out.glob("reports/*/*") if path.is_file())
    assert not {"report.md", "report.html", "report.json"} & set(reports)


def test_an_interrupted_keep_run_is_not_kept(
    runs: Runs, unique_prefix: str, run_dir: Path, tmp_path: Path
) -> None:
    """--keep is for a run that finished; Ctrl-C means stop and clean up."""
    process = runs.start(unique_prefix, tmp_path / "out", "tcp-7096", "--keep")
    wait_until_paused(process, "tcp-7096")
    process.send_signal(signal.SIGINT)
    _stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "everything the run created was removed" in stderr
    assert namespaces_with(unique_prefix) == []
    assert list(run_dir.glob("*.json")) == []


def test_a_second_signal_while_tearing_down_is_held_until_teardown_is_done(
    runs: Runs, unique_prefix: str, run_dir: Path, tmp_path: Path
) -> None:
    """Ctrl-C, then SIGTERM while the capture is being stopped on the way out."""
    out = tmp_path / "out"
    process = runs.start(unique_prefix, out, "tcp-7096,capture")
    wait_until_paused(process, "tcp-7096")
    process.send_signal(signal.SIGINT)
    wait_until_paused(process, "capture")  # reached from the teardown path
    process.send_signal(signal.SIGTERM)
    _stdout, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr
    assert namespaces_with(unique_prefix) == []
    assert list(run_dir.glob("*.json")) == []
    assert process.returncode == 143, stderr  # the held-back SIGTERM, delivered after
    assert "everything the run created was removed" in stderr
    pcap = the_pcap(out)
    assert pcap is not None and answered_echoes(pcap) == 2 * COUNT


HELPER_TRAP = """
import json, os, signal, sys, time
from netdiag.live.namespaces import list_namespaces
from netdiag.live.signals import terminate_as_exception
from netdiag.live.topology import LiveTopology
from netdiag.topology.loader import load_topology

spec = load_topology(None).with_prefix(sys.argv[1])
names = set(spec.namespace_names())
builder = os.getpid()
report = {}
try:
    with terminate_as_exception(), LiveTopology(spec, "helper-trap") as live:
        live.build()
        # 1. A forked copy (as pyroute2 forks helpers) unwinds through the same blocks.
        child = os.fork()
        if child == 0:
            raise SystemExit(0)
        os.waitpid(child, 0)
        report["after_unwinding_copy"] = sorted(names & set(list_namespaces()))
        # 2. A forked copy stopped with SIGTERM, as pyroute2 stops its helpers.
        reader, writer = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(reader)
            os.write(writer, b"x")
            while True:
                signal.pause()
        os.close(writer)
        os.read(reader, 1)
        os.kill(child, signal.SIGTERM)
        _pid, status = os.waitpid(child, 0)
        report["copy_exit_code"] = os.waitstatus_to_exitcode(status)
        report["after_terminated_copy"] = sorted(names & set(list_namespaces()))
        # 3. A copy calling teardown directly is refused.
        child = os.fork()
        if child == 0:
            try:
                live.teardown()
                os._exit(0)
            except RuntimeError:
                os._exit(7)
        _pid, status = os.waitpid(child, 0)
        report["copy_teardown_exit_code"] = os.waitstatus_to_exitcode(status)
        report["after_teardown_attempt"] = sorted(names & set(list_namespaces()))
finally:
    if os.getpid() != builder:
        os._exit(0)
report["after_builder_left"] = sorted(names & set(list_namespaces()))
print(json.dumps(report))
"""


def test_teardown_runs_only_in_the_process_that_built(
    unique_prefix: str, run_dir: Path, runs: Runs
) -> None:
    """The pyroute2 helper trap: forked copies never tear down, however they leave."""
    from pyroute2 import config

    from netdiag.live.namespaces import configure_pyroute2

    configure_pyroute2()
    assert config.disable_mp_signal is True
    result = python("-c", HELPER_TRAP, unique_prefix)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    both = [f"{unique_prefix}ns1", f"{unique_prefix}ns2"]
    assert report["after_unwinding_copy"] == both
    assert report["copy_exit_code"] == 143  # left at once, not through our finally blocks
    assert report["after_terminated_copy"] == both
    assert report["copy_teardown_exit_code"] == 7
    assert report["after_teardown_attempt"] == both
    assert report["after_builder_left"] == []


@pytest.fixture
def foreign(unique_prefix: str, runs: Runs) -> Iterator[Callable[..., None]]:
    """Look-alikes netdiag did not make: namespaces, and veth pairs (down, no address).

    Depends on ``runs`` so that it is removed first, before ``runs`` checks that
    nothing of the prefix is left.
    """
    from pyroute2 import IPRoute, netns

    made_namespaces: list[str] = []
    made_root_links: list[str] = []

    def make(kind: str, name: str, peer: str = "", inside: str | None = None) -> None:
        if kind == "netns":
            netns.create(name)
            made_namespaces.append(name)
            return
        if inside is None:
            made_root_links.append(name)
        with IPRoute(netns=inside, flags=0) if inside else IPRoute() as handle:
            handle.link("add", ifname=name, kind="veth", peer={"ifname": peer})

    yield make
    with IPRoute() as handle:
        for name in made_root_links:
            for index in handle.link_lookup(ifname=name):
                handle.link("del", index=index)
    for name in made_namespaces:
        if name in netns.listnetns():
            netns.remove(name)


def root_interfaces() -> set[str]:
    from pyroute2 import IPRoute

    with IPRoute() as handle:
        return {str(link.get("IFLA_IFNAME")) for link in handle.get_links()}


def interfaces_in(namespace: str) -> set[str]:
    from pyroute2 import IPRoute

    with IPRoute(netns=namespace, flags=0) as handle:
        return {str(link.get("IFLA_IFNAME")) for link in handle.get_links()}


def test_kill_9_leftovers_are_noticed_and_cleaned_exactly(
    runs: Runs,
    foreign: Callable[..., None],
    unique_prefix: str,
    run_dir: Path,
    tmp_path: Path,
) -> None:
    prefix = unique_prefix
    out = tmp_path / "out"
    process = runs.start(prefix, out, "tcp-7096")
    wait_until_paused(process, "tcp-7096")
    process.send_signal(signal.SIGKILL)
    process.communicate()
    left = [f"{prefix}ns1", f"{prefix}ns2"]
    assert namespaces_with(prefix) == left  # kill -9: nothing could clean up
    # The capture of the killed run is still readable, up to the kill.
    pcap = the_pcap(out)
    assert pcap is not None and answered_echoes(pcap) == 2 * COUNT

    # Look-alikes: same prefix, netdiag's own interface names, in and out of namespaces.
    foreign("netns", f"{prefix}ns3")
    foreign("veth", f"{prefix}veth0", f"{prefix}veth1", inside=f"{prefix}ns3")
    foreign("veth", f"{prefix}veth0", f"{prefix}veth1")  # in the root namespace, down

    def foreign_intact() -> None:
        assert f"{prefix}ns3" in namespaces_with(prefix)
        assert {f"{prefix}veth0", f"{prefix}veth1"} <= interfaces_in(f"{prefix}ns3")
        assert {f"{prefix}veth0", f"{prefix}veth1"} <= root_interfaces()

    # The next run (another prefix) notices the leftovers, says so, and works.
    other = f"t{uuid.uuid4().hex[:4]}-"
    try:
        next_run = netdiag("run", "--prefix", other, "--out", str(tmp_path / "next"), "--json")
    finally:
        remove_namespaces_with(other)
    assert next_run.returncode == 0, next_run.stderr
    notes = [line for line in next_run.stderr.splitlines() if line.startswith("netdiag: note:")]
    assert len(notes) == 1 and "died" in notes[0] and "`netdiag clean`" in notes[0]
    assert all(name in notes[0] for name in left)
    assert f"{prefix}ns3" not in notes[0]
    foreign_intact()
    assert namespaces_with(prefix) == [*left, f"{prefix}ns3"]

    # A run on the same names refuses them and points at `netdiag clean`.
    same = netdiag("run", "--prefix", prefix, "--out", str(tmp_path / "same"))
    assert same.returncode == 2
    assert "netdiag clean" in same.stderr and "Traceback" not in same.stderr
    foreign_intact()

    cleaned = netdiag("clean", "--json")
    assert cleaned.returncode == 0, cleaned.stderr
    assert sorted(json.loads(cleaned.stdout)["removed"]) == left
    assert namespaces_with(prefix) == [f"{prefix}ns3"]
    foreign_intact()
    assert list(run_dir.glob("*.json")) == []
    again = netdiag("clean", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["removed"] == []
    foreign_intact()


THREE_LINKS = """\
name: three-links
namespaces: [ns1, ns2, ns3]
links:
  - kind: veth
    ends:
      - {namespace: ns1, interface: veth0, addresses: [10.0.1.0/24]}
      - {namespace: ns2, interface: veth1, addresses: [10.0.2.0/24]}
  - kind: veth
    ends:
      - {namespace: ns2, interface: veth2, addresses: [10.0.3.1/24]}
      - {namespace: ns3, interface: veth3, addresses: [10.0.3.2/24]}
  - kind: veth
    ends:
      - {namespace: ns3, interface: veth4, addresses: [10.0.4.1/24]}
      - {namespace: ns1, interface: veth5, addresses: [10.0.4.2/24]}
routes:
  - {namespace: ns1, destination: 10.0.2.0/24, device: veth0}
  - {namespace: ns2, destination: 10.0.1.0/24, device: veth1}
probe:
  server: {namespace: ns1, address: 10.0.1.0}
  client: {namespace: ns2, address: 10.0.2.0}
  capture: {namespace: ns1, interface: veth0}
"""


def clash_then_go_on(
    process: subprocess.Popen[str], namespace: str, interface: str, peer: str
) -> dict[str, Any]:
    """A run paused at "links": take ``interface``'s name in ``namespace`` (a veth whose
    peer is ``peer``), let the run go on, and return its JSON (veth-pair failed, exit 1)."""
    from pyroute2 import IPRoute

    with IPRoute(netns=namespace, flags=0) as handle:
        handle.link("add", ifname=interface, kind="veth", peer={"ifname": peer})
    process.send_signal(signal.SIGUSR1)  # go on
    stdout, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr
    assert process.returncode == 1, stderr
    document: dict[str, Any] = json.loads(stdout)
    (veth_pair,) = [step for step in document["steps"] if step["id"] == "veth-pair"]
    assert veth_pair["ok"] is False
    return document


def test_a_clash_on_the_third_link_rolls_back_the_first_two(
    runs: Runs,
    foreign: Callable[..., None],
    unique_prefix: str,
    run_dir: Path,
    tmp_path: Path,
) -> None:
    prefix = unique_prefix
    topology = tmp_path / "three-links.yaml"
    topology.write_text(THREE_LINKS)
    foreign("netns", f"{prefix}ns4")  # a look-alike that must survive the rollback
    process = runs.start(prefix, tmp_path / "out", "links", "--topology", str(topology))
    wait_until_paused(process, "links")
    ours = [f"{prefix}ns1", f"{prefix}ns2", f"{prefix}ns3"]
    assert namespaces_with(prefix) == [*ours, f"{prefix}ns4"]
    record = json.loads(next(run_dir.glob("*.json")).read_text())
    assert [item["name"] for item in record["created"] if item["kind"] == "netns"] == ours
    # Someone takes the third link's name in the meantime: creating it will clash.
    document = clash_then_go_on(process, f"{prefix}ns3", f"{prefix}veth4", f"{prefix}x")
    steps = {step["id"]: step for step in document["steps"]}
    assert f"{prefix}veth4" in steps["veth-pair"]["detail"]
    assert steps["routes"]["detail"].startswith("not run")
    assert steps["teardown"]["ok"] is True, steps["teardown"]
    # The first two links and all three namespaces are gone; the look-alike is not.
    assert namespaces_with(prefix) == [f"{prefix}ns4"]
    assert list(run_dir.glob("*.json")) == []


def test_keep_with_a_failed_setup_says_it_kept_nothing(
    runs: Runs, unique_prefix: str, run_dir: Path, tmp_path: Path
) -> None:
    """--keep keeps only a topology whose setup held: an aborted one is removed, and the
    result says so (not "kept", not "still up")."""
    prefix = unique_prefix
    process = runs.start(prefix, tmp_path / "out", "links", "--keep")
    wait_until_paused(process, "links")
    # Someone takes the veth's name in ns1 in the meantime: creating it will clash.
    document = clash_then_go_on(process, f"{prefix}ns1", f"{prefix}veth0", f"{prefix}x")
    steps = {step["id"]: step for step in document["steps"]}
    assert steps["teardown"]["ok"] is True, steps["teardown"]
    assert steps["teardown"]["title"] == "Remove everything the run created"
    assert document["kept"] is False
    assert namespaces_with(prefix) == []
    assert list(run_dir.glob("*.json")) == []


def test_a_sniffer_that_cannot_start_names_the_probes_capture_point(
    runs: Runs, unique_prefix: str, run_dir: Path, tmp_path: Path
) -> None:
    """routed captures cli0 in client: the failed capture step says so, not veth0 in ns1."""
    prefix, out = unique_prefix, tmp_path / "out"
    process = runs.start(prefix, out, "routes", "--topology", "routed")
    wait_until_paused(process, "routes")
    (capture_dir,) = (out / "captures").iterdir()
    (capture_dir / f"{prefix}cli0.pcap").mkdir()  # the pcap cannot be opened for writing
    process.send_signal(signal.SIGUSR1)  # go on
    stdout, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr
    assert process.returncode == 1, stderr
    steps = {step["id"]: step for step in json.loads(stdout)["steps"]}
    capture = steps["capture"]
    assert capture["ok"] is False
    assert capture["detail"].startswith("sniffer did not start"), capture
    assert capture["title"] == f"Capture {prefix}cli0 inside {prefix}client to pcap"
    assert steps["teardown"]["ok"] is True, steps["teardown"]
    assert namespaces_with(prefix) == []


def test_two_runs_overlapping_do_not_interfere(
    runs: Runs, unique_prefix: str, run_dir: Path, tmp_path: Path
) -> None:
    """Run A waits with its topology up and its sniffer on while run B runs start to end."""
    first = runs.start(unique_prefix, tmp_path / "a", "tcp-7096")
    wait_until_paused(first, "tcp-7096")
    other = f"t{uuid.uuid4().hex[:4]}-"
    try:
        second = netdiag(
            "run", "--prefix", other, "--out", str(tmp_path / "b"), "--json", "--count", str(COUNT)
        )
    finally:
        left_by_second = remove_namespaces_with(other)
    assert left_by_second == []
    assert second.returncode == 0, second.stderr
    assert "netdiag: note:" not in second.stderr  # a live run is not a leftover
    # B's teardown left A alone: A's namespaces are still there, and A goes on.
    assert namespaces_with(unique_prefix) == [f"{unique_prefix}ns1", f"{unique_prefix}ns2"]
    first.send_signal(signal.SIGUSR1)
    stdout, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr
    for document in (json.loads(stdout), json.loads(second.stdout)):
        steps = {step["id"]: step for step in document["steps"]}
        assert all(step["ok"] for step in document["steps"]), document["steps"]
        # Each capture holds exactly its own run's packets (capture-complete compares).
        assert steps["capture-complete"]["ok"] is True
        pcap = Path(document["artifacts"]["pcap"][0])
        pcap = pcap if pcap.is_absolute() else Path.cwd() / pcap
        assert answered_echoes(pcap) == 2 * COUNT
    assert namespaces_with(unique_prefix) == []


def test_a_signal_whose_exception_was_swallowed_is_raised_at_the_next_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Ctrl-C whose KeyboardInterrupt Python raised inside a weakref callback
    (printed as "Exception ignored in", then lost: a CI run once went on to the
    end and exited 0) is raised again by raise_if_signalled, where the run
    checks between steps. Real signals, in this process."""
    import weakref

    from netdiag.live.signals import Terminated, raise_if_signalled, terminate_as_exception

    class Collected:
        pass

    def on_collect(_reference: object) -> None:
        signal.raise_signal(signal.SIGINT)  # its handler runs here, inside the callback

    with terminate_as_exception():
        thing = Collected()
        reference = weakref.ref(thing, on_collect)
        del thing  # the callback runs; the KeyboardInterrupt raised in it is swallowed
        assert reference() is None
        assert "Traceback" not in capsys.readouterr().err  # not printed: raised below
        with pytest.raises(KeyboardInterrupt):
            raise_if_signalled()
        raise_if_signalled()  # raised once: nothing more
        with pytest.raises(Terminated):
            signal.raise_signal(signal.SIGTERM)  # delivered normally, as usual
    raise_if_signalled()  # leaving the context forgets what was noted in it


def test_a_signal_inside_an_event_loop_lets_the_loop_finish_and_is_raised_after() -> None:
    """pyroute2 runs each netlink request in an asyncio loop. SIGTERM's exception,
    raised inside one of the loop's callbacks, was taken by asyncio for the
    callback's own error ("Exception in callback"), and the request was never
    resumed: a run stopped after "isolation" hung until killed. Now the request
    finishes and raise_if_signalled raises it. Real signals, in this process."""
    import asyncio

    from netdiag.live.signals import Terminated, raise_if_signalled, terminate_as_exception

    async def request() -> str:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[str] = loop.create_future()

        def on_answer() -> None:
            signal.raise_signal(signal.SIGTERM)  # its handler runs here, inside the callback
            answer.set_result("answered")

        loop.call_soon(on_answer)
        return await asyncio.wait_for(answer, 30)  # bounded: it hung before

    with terminate_as_exception():
        assert asyncio.run(request()) == "answered"
        with pytest.raises(Terminated):
            raise_if_signalled()
        raise_if_signalled()  # raised once: nothing more
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # outside a loop: raised at once, as usual
