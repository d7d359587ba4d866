"""The fault suite's check that no live broker was fenced (tests/faults/fencing.py)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.faults.fencing import fencings_in, unexplained

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


def test_a_kill_explains_one_fencing_of_its_node_soon_after(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text(LOG)
    found = fencings_in([tmp_path / "a.log"])
    kill_1 = (1, at("2026-11-30 18:42:37"))
    kill_2 = (2, at("2026-11-30 18:42:54"))
    assert unexplained(found, [kill_1, kill_2]) == []
    assert [f.node for f in unexplained(found, [kill_1])] == [2]  # broker 2 was alive
    assert [f.node for f in unexplained(found, [(2, kill_1[1]), kill_2])] == [1]  # wrong node
    late = (2, at("2026-11-30 18:40:00"))  # killed long before: not this fencing's cause
    assert [f.node for f in unexplained(found, [kill_1, late])] == [2]
    after = (1, at("2026-11-30 18:42:45"))  # a kill after the fencing explains nothing
    assert [f.node for f in unexplained(found, [after, kill_2])] == [1]
    twice = found + found[:1]  # one kill, two fencings of its node: one is unexplained
    assert len(unexplained(twice, [kill_1, kill_2])) == 1
