"""netdiag's run records on disk: a failed save leaves no temporary, and temporaries are
never read as records (no root needed: no namespace is made)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netdiag.errors import OutputError
from netdiag.live import registry


def test_a_failed_save_leaves_no_temporary(isolated_registry: Path) -> None:
    record = registry.new_record("20261129-000000-dead", "run", "seed", "t-")
    # A folder where the record goes: the write succeeds, the rename over it fails.
    record.path.mkdir(parents=True)
    with pytest.raises(OutputError, match="cannot write netdiag's run record"):
        registry.save(record)
    assert sorted(path.name for path in isolated_registry.iterdir()) == [record.path.name]
    assert registry.load_records() == []


def test_a_leftover_temporary_is_not_a_record(isolated_registry: Path) -> None:
    """One left by a crash between the write and the rename (or by an older netdiag):
    never a dead run in status or clean, whatever it holds."""
    record = registry.new_record("20261129-000000-beef", "run", "seed", "t-")
    isolated_registry.mkdir()
    leftover = isolated_registry / ".tmp-x1y2z3.json"
    leftover.write_text(json.dumps(record.to_json()), encoding="utf-8")
    assert registry.load_records() == []
    registry.save(record)
    assert [loaded.run_id for loaded in registry.load_records()] == [record.run_id]
