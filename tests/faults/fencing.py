"""Which brokers the controllers fenced, and whether each fencing was one the suite caused.

A short broker session (`broker.session.timeout.ms`) makes failover fast, and would make a
live broker lose its leaderships if its heartbeats were late. The controllers log every
fencing ("Fencing broker N at epoch E because its session has timed out", logged at INFO by
the runtime's logging configuration). A fencing is the suite's own when it falls while
that node was down or starting: from its SIGKILL (or the cluster's first start) until it
was up again, plus `RESTART_GRACE_S` (a JVM that just started competes with the load for
the CPU, and a heartbeat of a broker still recovering, leading nothing, can be late). Any
other fencing hit a live broker.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

__all__ = ["RESTART_GRACE_S", "Downtime", "Fencing", "fencings_in", "unexplained", "unseen"]

RESTART_GRACE_S = 20.0

_LINE = re.compile(
    r"^\[(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] INFO .*Fencing broker (?P<node>\d+) "
    r"at epoch (?P<epoch>\d+) because its session has timed out"
)


@dataclass(frozen=True)
class Fencing:
    node: int
    epoch: int
    at: float  # wall-clock seconds (the log's local time)


@dataclass(frozen=True)
class Downtime:
    """A node the suite killed, from the kill until it was started again (wall clock)."""

    node: int
    killed_at: float
    back_at: float  # inf: not started again yet

    def explains(self, fencing: Fencing, slack_s: float = 1.0) -> bool:
        """`slack_s`: the log's millisecond stamps against our clock."""
        return (
            fencing.node == self.node
            and self.killed_at - slack_s <= fencing.at <= self.back_at + RESTART_GRACE_S
        )


def fencings_in(logs: Iterable[Path]) -> list[Fencing]:
    """Every fencing the controllers' logs record, oldest first; a line found in two logs
    (same broker, epoch and millisecond) counts once."""
    found: dict[tuple[int, int, float], Fencing] = {}
    for path in logs:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            match = _LINE.match(line)
            if match is None:
                continue
            at = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            fencing = Fencing(int(match["node"]), int(match["epoch"]), at)
            found.setdefault((fencing.node, fencing.epoch, at), fencing)
    return sorted(found.values(), key=lambda f: f.at)


def unseen(fencings: list[Fencing], downtimes: list[Downtime]) -> list[Downtime]:
    """Kills of a single broker that no fencing follows: each must be fenced (that is how
    failover starts), so none seen means the logs were not read right, and the check that
    no live broker was fenced would prove nothing."""
    return [d for d in downtimes if not any(d.explains(f) for f in fencings)]


def unexplained(fencings: list[Fencing], downtimes: list[Downtime]) -> list[Fencing]:
    """The fencings that fell while their broker was up and settled: live brokers fenced."""
    return [f for f in fencings if not any(d.explains(f) for d in downtimes)]
