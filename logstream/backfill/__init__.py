"""Backfill: reset a view's offsets and the state those offsets produced, exactly.

`targets` parses what is asked, `planner` decides (pure), `kafka_state` reads and writes
Kafka, `execute` ties them together. See docs/architecture.md, invariants 3 and 4.
"""

from __future__ import annotations

from logstream.backfill.execute import Executed, execute_plan, make_plan
from logstream.backfill.kafka_state import KafkaState
from logstream.backfill.planner import BackfillRefused, Kind, Plan
from logstream.backfill.targets import Mode, Scope, Target, TargetError, parse_scope

__all__ = [
    "BackfillRefused",
    "Executed",
    "KafkaState",
    "Kind",
    "Mode",
    "Plan",
    "Scope",
    "Target",
    "TargetError",
    "execute_plan",
    "make_plan",
    "parse_scope",
]
