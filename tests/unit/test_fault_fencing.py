"""The fault suite's check that no live broker was fenced (tests/faults/fencing.py)."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

from tests.faults.fencing import RESTART_GRACE_S, Downtime, fencings_in, unexplained, unseen

LOG = """\
[2026-11-30 18:42:38,880] INFO [QuorumController id=103] Fencing broker 1 at epoch 9 because its session has timed out. (org.apache.kafka.controller.ReplicationControlManager)
[2026-11-30 18:42:39,001] INFO [QuorumController id=103] something else (kafka.server.X)
[2026-11-30 18:42:55,055] INFO [QuorumController id=103] Fencing broker 2 at epoch 11 because its session has timed out. (org.apache.kafka.controller.ReplicationControlManager)
"""  # noqa: E501


def at(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").timestamp()


def test_fencings_are_read_once_each_from_every_controller_log(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text(LOG)
    (tmp_path / "b.log").write_text(LOG.splitlines()[0] + "\n")  # logged twice: one fencing
    found = fencings_in([tmp_path / "a.log", tmp_path / "b.log", tmp_path / "missing.log"])
    assert [(f.node, f.epoch) for f in found] == [(1, 9), (2, 11)]
    assert abs(found[0].at - (at("2026-11-30 18:42:38") + 0.88)) < 1e-6


def test_a_fencing_is_explained_only_while_its_node_was_down(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text(LOG)
    found = fencings_in([tmp_path / "a.log"])
    one_down = Downtime(1, at("2026-11-30 18:42:37"), at("2026-11-30 18:42:50"))
    two_down = Downtime(2, at("2026-11-30 18:42:54"), math.inf)  # not back yet
    assert unexplained(found, [one_down, two_down]) == []
    assert [f.node for f in unexplained(found, [one_down])] == [2]  # broker 2 was alive
    wrong_node = Downtime(2, one_down.killed_at, one_down.back_at)
    assert [f.node for f in unexplained(found, [wrong_node, two_down])] == [1]
    # Back and settled long before the fencing: a live broker was fenced.
    earlier = Downtime(
        2, at("2026-11-30 18:40:00"), at("2026-11-30 18:42:55") - RESTART_GRACE_S - 1
    )
    assert [f.node for f in unexplained(found, [one_down, earlier])] == [2]
    # Still settling after its restart: the suite's own doing.
    settling = Downtime(
        2, at("2026-11-30 18:40:00"), at("2026-11-30 18:42:55") - RESTART_GRACE_S + 1
    )
    assert unexplained(found, [one_down, settling]) == []
    later = Downtime(1, at("2026-11-30 18:42:45"), math.inf)  # killed after the fencing
    assert [f.node for f in unexplained(found, [later, two_down])] == [1]


def test_a_kill_without_its_fencing_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text(LOG)
    found = fencings_in([tmp_path / "a.log"])
    seen = Downtime(1, at("2026-11-30 18:42:37"), at("2026-11-30 18:42:50"))
    missed = Downtime(3, at("2026-11-30 18:42:37"), at("2026-11-30 18:42:50"))
    assert unseen(found, [seen, missed]) == [missed]
    assert unseen([], [seen]) == [seen]  # nothing read: the check must not pass silently
