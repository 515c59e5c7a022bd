"""Findings (stub, replaced below)."""

from __future__ import annotations

from typing import Any

from netdiag.analysis.model import Finding


def build_findings(*_args: Any) -> tuple[Finding, ...]:
    return ()
