"""Which endpoints of a live topology reach each other: the walk, for every pair, no probes.

``netdiag status`` asks this about what netdiag has up. The answer comes from
the same read-only path walk ``netdiag diagnose`` makes (links, addresses,
routes, forwarding, MTU, the way back), with probes off: nothing is sent, from
the root namespace or any other, and nothing is changed.

An *endpoint* is a namespace that holds an IPv4 address and does not forward:
the client and server of ``routed``, the two ends of a ``chain`` (the routers
between are not endpoints), every leaf of a ``star`` (its hub holds no
address). A topology whose every namespace forwards has all of them as endpoints.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from typing import Any

from netdiag.diagnose.engine import diagnose
from netdiag.diagnose.walk import Catalog


@dataclass(frozen=True, slots=True)
class PairReachability:
    source: str
    target: str  # the destination namespace
    address: str | None  # its first address, the one diagnosed
    reachable: bool
    routed: bool  # the source has a route towards the address
    path: tuple[str, ...]
    codes: tuple[str, ...]  # the findings' codes, first cause first
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.address,
            "to_namespace": self.target,
            "reachable": self.reachable,
            "routed": self.routed,
            "path": list(self.path),
            "findings": list(self.codes),
            "verdict": self.verdict,
        }


def endpoints(namespaces: list[str]) -> list[str]:
    """The namespaces among ``namespaces`` that hold an address and do not forward."""
    with closing(Catalog(tuple(namespaces))) as catalog:
        holding = [name for name in namespaces if catalog.state(name).addresses()]
        ends = [name for name in holding if catalog.state(name).forwarding is not True]
    return ends or holding


def reachability(namespaces: list[str]) -> list[PairReachability]:
    """Every ordered pair of endpoints, walked without probes."""
    ends = endpoints(namespaces)
    pairs = []
    for source in ends:
        for target in ends:
            if target == source:
                continue
            diagnosis = diagnose(source, target, None, probe=False)
            routed = any(
                check.name == "route" and check.namespace == source and check.ok
                for check in diagnosis.checks
            )
            pairs.append(
                PairReachability(
                    source=source,
                    target=target,
                    address=diagnosis.destination,
                    reachable=diagnosis.reachable,
                    routed=routed,
                    path=diagnosis.path,
                    codes=tuple(finding.code for finding in diagnosis.findings),
                    verdict=diagnosis.verdict,
                )
            )
    return pairs
