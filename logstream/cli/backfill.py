"""`logstream backfill VIEW TARGET [--topic T[:p,..]] [--execute] [--json]`.

Resets a view's consumer group like `kafka-consumer-groups --reset-offsets`, together with
the view state those offsets produced, so that the replay (`logstream consume VIEW
--until-caught-up`) leaves the view equal to a computation from scratch. Dry run by default.

Exit codes: 0 done (or planned), 1 error, 2 usage (no or several targets, bad datetime,
duration, CSV or scope), 4 refused (the group has active members, a target offset below the
log start offset, or a target moving some partitions back and others forward). A dry run
whose plan would be refused prints the plan and exits 4 too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from logstream.backfill import (
    BackfillRefused,
    Executed,
    KafkaState,
    Kind,
    Plan,
    Target,
    TargetError,
    execute_plan,
    make_plan,
    parse_scope,
)
from logstream.backfill.planner import PartitionPlan
from logstream.cli.output import fail, say
from logstream.registry import resolve_view
from logstream.settings import load_settings
from logstream.stores.factory import open_view_store
from logstream.topics import resolve_topics
from logstream.versions import VersionRegistry

__all__ = ["backfill", "render_plan"]

EXIT_USAGE = 2
EXIT_REFUSED = 4


def backfill(
    view: Annotated[
        str, typer.Argument(help="view name (= consumer group id) or module:attribute")
    ],
    to_earliest: Annotated[
        bool, typer.Option("--to-earliest", help="replay from each partition's log start")
    ] = False,
    to_latest: Annotated[
        bool, typer.Option("--to-latest", help="skip to the log end (recorded as skipped)")
    ] = False,
    to_datetime: Annotated[
        str | None,
        typer.Option("--to-datetime", help="RFC 3339 event time, e.g. 2026-01-02T12:00:00Z"),
    ] = None,
    by_duration: Annotated[
        str | None, typer.Option("--by-duration", help="now minus D: PT6H, P2D, 90m, 2d")
    ] = None,
    to_offset: Annotated[
        int | None, typer.Option("--to-offset", help="this offset on every partition in scope")
    ] = None,
    shift_by: Annotated[
        int | None, typer.Option("--shift-by", help="stored offset + N (negative: back)")
    ] = None,
    from_file: Annotated[
        Path | None, typer.Option("--from-file", help="CSV lines topic,partition,offset")
    ] = None,
    topic: Annotated[
        list[str] | None,
        typer.Option("--topic", help="scope: T or T:p1,p2 (repeatable); default all"),
    ] = None,
    execute: Annotated[
        bool, typer.Option("--execute", help="apply the plan (default: dry run)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
) -> None:
    """Plan (dry run) or --execute an exact offset reset and replay of VIEW."""
    try:
        target = Target.from_options(
            to_earliest=to_earliest,
            to_latest=to_latest,
            to_datetime=to_datetime,
            by_duration=by_duration,
            to_offset=to_offset,
            shift_by=shift_by,
            from_file=from_file,
        )
        scopes = parse_scope(topic)
    except TargetError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    settings = load_settings()
    spec = resolve_view(view, settings)
    # The current version of the view: its store namespace is also its consumer group id.
    namespace = VersionRegistry.namespace(spec.name, VersionRegistry(settings).current(spec.name))
    store = open_view_store(settings.store_url, settings.data_dir, spec, namespace)
    try:
        with KafkaState(settings) as kafka:
            try:
                plan = make_plan(
                    spec,
                    target,
                    scopes,
                    positions=store.positions(),
                    log=kafka,
                    group_id=namespace,
                    topics=resolve_topics(settings, spec.topics),
                )
            except TargetError as exc:
                raise fail(str(exc), EXIT_USAGE) from None
            if not execute:
                members = kafka.active_members(plan.group)
                _show_plan(plan, as_json, members)
                if plan.refused:
                    raise fail(f"--execute would refuse: {plan.refused[0]}", EXIT_REFUSED)
                return
            if not as_json:
                say(render_plan(plan))
            try:
                done = execute_plan(plan, store=store, kafka=kafka)
            except BackfillRefused as exc:
                raise fail(f"refused: {exc}", EXIT_REFUSED) from None
            _show_done(done, as_json)
    finally:
        store.close()


def render_plan(plan: Plan) -> str:
    """The dry-run table: one row per partition, then the buckets dropped and totals."""
    header = (
        "TOPIC",
        "PARTITION",
        "STORED",
        "TARGET",
        "REPLAY-FROM",
        "REPLAY",
        "SKIP",
        "LOG-START",
        "LOG-END",
    )
    rows = [header]
    for p in plan.partitions:
        s = p.state
        rows.append(
            (
                s.topic,
                str(s.partition),
                "-" if s.stored is None else str(s.stored.next_offset),
                _target_cell(p),
                str(p.replay_from),
                str(p.events_to_replay),
                str(p.events_to_skip),
                str(s.log_start),
                str(s.log_end),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    table = "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
    replay = sum(p.events_to_replay for p in plan.partitions)
    skip = sum(p.events_to_skip for p in plan.partitions)
    lines = [
        f"backfill {plan.view} (group {plan.group}) {plan.target}: {_kind_text(plan.kind)}",
        table,
        f"buckets dropped: {plan.dropped_buckets}",
        f"events to replay: {replay}, to skip: {skip}",
    ]
    return "\n".join(line.rstrip() for line in lines)


def _target_cell(row: PartitionPlan) -> str:
    """The target offset; `asked->set` when Kafka's clamping to the log range applies."""
    if row.requested is None:
        return "-"
    asked, target = row.requested.requested, row.requested.target
    return str(target) if target == asked else f"{asked}->{target}"


def _kind_text(kind: Kind) -> str:
    return {
        Kind.REBUILD: "full rebuild (every partition from its log start)",
        Kind.DROP_FROM: "replay from a point in event time",
        Kind.FORWARD: "move forward, skipping events (recorded as skipped ranges)",
        Kind.NOTHING: "nothing to do (every partition is already at its target)",
        Kind.MIXED: "refused (some partitions move back, others forward)",
    }[kind]


def _show_plan(plan: Plan, as_json: bool, members: int) -> None:
    if as_json:
        say(json.dumps({**plan.to_json(), "dry_run": True, "active_members": members}, indent=2))
        return
    say(render_plan(plan))
    if members:
        print(
            f"note: group {plan.group!r} has {members} active member(s); --execute refuses "
            "until they stop",
            file=sys.stderr,
        )
    if not plan.refused:
        say("dry run: nothing changed; add --execute to apply")


def _show_done(done: Executed, as_json: bool) -> None:
    plan = done.plan
    next_step = f"logstream consume {plan.view} --until-caught-up"
    if as_json:
        payload = {
            **plan.to_json(),
            "dry_run": False,
            "committed_offsets": [
                {"topic": t, "partition": p, "offset": o}
                for (t, p), o in sorted(done.committed.items())
            ],
            "next": next_step if plan.kind is not Kind.NOTHING else None,
        }
        say(json.dumps(payload, indent=2))
        return
    if plan.kind is Kind.NOTHING:
        say("nothing changed: every partition is already at its target")
        return
    say(
        f"done: view store reset (buckets dropped: {plan.dropped_buckets}); "
        f"committed offsets of group {plan.group!r} set and verified on "
        f"{len(done.committed)} partition(s)"
    )
    say(f"next: {next_step}")
