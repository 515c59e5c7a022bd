"""netdiag's own record of what each run created, so leftovers can be removed exactly.

Every run (``run``, ``up``) writes ``/run/netdiag/<run-id>.json`` (override the
folder with ``NETDIAG_RUN_DIR``) *as it creates things*: the process id and its
start time, and each namespace with the device/inode that identifies it. When
a run dies without tearing down (``kill -9``), its record outlives it:
``abandoned_records`` finds records whose process is gone, and
``remove_recorded`` deletes exactly the namespaces whose identity still
matches the record. Nothing is ever found by name pattern, so a foreign
namespace that merely looks like netdiag's is never touched.

Records live in /run (a tmpfs): after a reboot both the namespaces and the
records are gone together.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from netdiag.errors import OutputError
from netdiag.live.namespaces import NETNS_RUN_DIR, namespace_identity

DEFAULT_REGISTRY_DIR = Path("/run/netdiag")


def registry_dir() -> Path:
    return Path(os.environ.get("NETDIAG_RUN_DIR", str(DEFAULT_REGISTRY_DIR)))


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: tells a live process from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


@dataclass(frozen=True, slots=True)
class CreatedNamespace:
    name: str
    device: int
    inode: int

    def to_json(self) -> dict[str, Any]:
        return {"kind": "netns", "name": self.name, "device": self.device, "inode": self.inode}


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    pid: int
    pid_start: int | None
    command: str  # "run", "up"
    topology: str
    prefix: str
    kept: bool = False
    namespaces: tuple[CreatedNamespace, ...] = ()
    links: tuple[tuple[str, str], ...] = ()  # (namespace, interface), informational
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return registry_dir() / f"{self.run_id}.json"

    def process_alive(self) -> bool:
        return self.pid_start is not None and process_start_time(self.pid) == self.pid_start

    @property
    def abandoned(self) -> bool:
        """Left behind by a run that died: not kept on purpose and its process is gone."""
        return not self.kept and not self.process_alive()

    def owns_namespace(self, name: str) -> bool:
        identity = namespace_identity(name)
        return any(
            created.name == name and identity == (created.device, created.inode)
            for created in self.namespaces
        )

    def existing_namespaces(self) -> list[str]:
        return [created.name for created in self.namespaces if self.owns_namespace(created.name)]

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "command": self.command,
            "topology": self.topology,
            "prefix": self.prefix,
            "kept": self.kept,
            "created": [created.to_json() for created in self.namespaces]
            + [
                {"kind": "link", "namespace": namespace, "interface": interface}
                for namespace, interface in self.links
            ],
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> RunRecord:
        created = document.get("created", [])
        return cls(
            run_id=str(document["run_id"]),
            pid=int(document["pid"]),
            pid_start=document.get("pid_start"),
            command=str(document.get("command", "run")),
            topology=str(document.get("topology", "")),
            prefix=str(document.get("prefix", "")),
            kept=bool(document.get("kept", False)),
            namespaces=tuple(
                CreatedNamespace(str(item["name"]), int(item["device"]), int(item["inode"]))
                for item in created
                if item.get("kind") == "netns"
            ),
            links=tuple(
                (str(item["namespace"]), str(item["interface"]))
                for item in created
                if item.get("kind") == "link"
            ),
            extra=dict(document.get("extra", {})),
        )

    def with_namespace(self, name: str) -> RunRecord:
        identity = namespace_identity(name)
        if identity is None:
            raise FileNotFoundError(NETNS_RUN_DIR / name)
        return replace(self, namespaces=(*self.namespaces, CreatedNamespace(name, *identity)))


def new_run_id() -> str:
    """``20261129-014512-ab12``: UTC time of the start and 4 random hex digits.

    Here rather than in the runner: ``netdiag up`` needs an id without the
    runner's imports (the analysis model), about 25 ms.
    """
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{os.urandom(2).hex()}"


def new_record(run_id: str, command: str, topology: str, prefix: str) -> RunRecord:
    pid = os.getpid()
    return RunRecord(
        run_id=run_id,
        pid=pid,
        pid_start=process_start_time(pid),
        command=command,
        topology=topology,
        prefix=prefix,
    )


# Records are written to a temporary of this prefix, then renamed: the name no record has.
TEMPORARY_PREFIX = ".tmp-"


def save(record: RunRecord) -> None:
    """Write the record atomically (a crash never leaves half a record)."""
    folder = registry_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            dir=folder, prefix=TEMPORARY_PREFIX, suffix=".json"
        )
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(record.to_json(), handle, indent=1)
            os.replace(temporary, record.path)
        except BaseException:
            # Removed now: nothing (not forget(), not clean) would remove it later.
            with suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as error:
        raise OutputError(f"cannot write netdiag's run record in {folder}: {error}") from error


def forget(record: RunRecord) -> None:
    record.path.unlink(missing_ok=True)


def load_records() -> list[RunRecord]:
    """Every readable record, oldest run first. Unreadable files are skipped."""
    folder = registry_dir()
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith(TEMPORARY_PREFIX):
            continue  # a save that died before its rename: not a record (pathlib globs dot-files)
        try:
            records.append(RunRecord.from_json(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return records


def abandoned_records() -> list[RunRecord]:
    return [record for record in load_records() if record.abandoned]


def owner_of_namespace(name: str) -> RunRecord | None:
    """The netdiag run that created the namespace now called ``name``, if any."""
    for record in load_records():
        if record.owns_namespace(name):
            return record
    return None
