"""Which brokers the controllers fenced, and whether each fencing was one the suite caused.

A short broker session (`broker.session.timeout.ms`) makes failover fast, and would make a
live but busy broker lose its leaderships if heartbeats were late. The controllers log every
fencing ("Fencing broker N at epoch E because its session has timed out", logged at INFO by
the runtime's logging configuration); each must follow a SIGKILL of that node that no other
fencing already answered. Anything else fenced a live broker.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

__all__ = ["Fencing", "fencings_in", "unexplained"]

_LINE = re.compile(
    r"^\[(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] INFO .*Fencing broker (?P<node>\d+) "
    r"at epoch (?P<epoch>\d+) because its session has timed out"
)


@dataclass(frozen=True)
class Fencing:
    node: int
    epoch: int
    at: float  # wall-clock seconds (the log's local time)


def fencings_in(logs: Iterable[Path]) -> list[Fencing]:
    """Every fencing the controllers' logs record, once each (a broker epoch is fenced once,
    whichever controller logged it), oldest first."""
    found: dict[tuple[int, int], Fencing] = {}
    for path in logs:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            match = _LINE.match(line)
            if match is None:
                continue
            at = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            fencing = Fencing(int(match["node"]), int(match["epoch"]), at)
            found.setdefault((fencing.node, fencing.epoch), fencing)
    return sorted(found.values(), key=lambda f: f.at)


def unexplained(
    fencings: list[Fencing],
    kills: list[tuple[int, float]],
    *,
    within_s: float = 90.0,
    slack_s: float = 1.0,
) -> list[Fencing]:
    """Fencings no kill explains: a kill (node, wall time) explains the first fencing of that
    node up to `within_s` after it (a whole-cluster outage is fenced only once the
    controllers are back); `slack_s`: the log's millisecond stamps against our clock."""
    open_kills = sorted(kills, key=lambda kill: kill[1])
    spurious = []
    for fencing in fencings:
        cause = next(
            (
                k
                for k in open_kills
                if k[0] == fencing.node and k[1] - slack_s <= fencing.at <= k[1] + within_s
            ),
            None,
        )
        if cause is None:
            spurious.append(fencing)
        else:
            open_kills.remove(cause)
    return spurious
