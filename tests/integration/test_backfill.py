"""`logstream backfill` against a real broker: every mode is exact, dry runs change nothing,
running groups are refused, and targets equal those of Kafka's own ConsumerGroupCommand."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from consumers import VIEWS
from logstream.backfill import (
    BackfillRefused,
    KafkaState,
    Kind,
    Plan,
    Scope,
    Target,
    execute_plan,
    make_plan,
)
from logstream.backfill.targets import format_ms
from logstream.codec import Codec
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores.factory import open_view_store
from logstream.view import View
from tests.integration.likes import (
    BASE_MS,
    DAY_MS,
    assert_views_match,
    expected_views,
    generate_likes,
    produce_likes,
)

PARTITIONS = 3
FIRST, MORE = 1200, 400  # events before the first build, and produced after it
MIDDLE_MS = BASE_MS + 2 * DAY_MS + 7 * 60_000 + 123  # inside the stream, not on a bucket


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))


class Scenario:
    """A private topic, its events, and all views built on it with private groups."""

    def __init__(self, settings: Settings, codec: Codec, topic: str, suffix: str) -> None:
        self.settings = settings
        self.codec = codec
        self.topic = topic
        self.groups = {name: f"{name}-{suffix}" for name in VIEWS}
        self.stores = {
            name: open_view_store(None, settings.data_dir, v) for name, v in VIEWS.items()
        }
        self.events: list[dict[str, Any]] = []
        self.kafka = KafkaState(settings)

    def produce(self, events: list[dict[str, Any]]) -> None:
        produce_likes(self.settings.bootstrap_servers, self.topic, events, self.codec)
        self.events += events

    def consume_all(self) -> dict[str, int]:
        """Run every view until caught up; returns events skipped by guards per view."""
        skipped = {}
        for name, view in VIEWS.items():
            result = self.runner(name, view, until_caught_up=True).run()
            assert result.caught_up
            skipped[name] = result.events_skipped
        return skipped

    def runner(self, name: str, view: View, **kwargs: Any) -> ViewRunner:
        return ViewRunner(
            self.settings,
            view,
            self.stores[name],
            self.codec,
            group_id=self.groups[name],
            topics=(self.topic,),
            **kwargs,
        )

    def plan(self, name: str, target: Target, scopes: list[Scope] | None = None) -> Plan:
        return make_plan(
            VIEWS[name],
            target,
            scopes or [],
            positions=self.stores[name].positions(),
            log=self.kafka,
            group_id=self.groups[name],
            topics=(self.topic,),
        )

    def snapshot(self) -> dict[str, Any]:
        """Stored positions, Kafka committed offsets and every row of every view."""
        tps = [(self.topic, p) for p in range(PARTITIONS)]
        return {
            name: (
                store.positions(),
                self.kafka.committed_offsets(self.groups[name], tps),
                store.bucket_rows(),
                store.totals_rows(),
                store.stats().skipped,
            )
            for name, store in self.stores.items()
        }

    def close(self) -> None:
        self.kafka.close()
        for store in self.stores.values():
            store.close()


@pytest.fixture
def scenario(kafka_bootstrap, make_topic, codec, tmp_path, unique_name) -> Iterator[Scenario]:
    """FIRST late-laden events built into every view, then MORE produced and not consumed."""
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        data_dir=tmp_path,
        flush_max_keys=300,
        flush_interval_s=0.05,
    )
    s = Scenario(settings, codec, make_topic(partitions=PARTITIONS, prefix="likes"), unique_name())
    events = generate_likes(FIRST + MORE, seed=23, late_fraction=0.15)
    s.produce(events[:FIRST])
    s.consume_all()
    assert_views_match(s.stores, expected_views(s.events))
    s.produce(events[FIRST:])
    try:
        yield s
    finally:
        s.close()


def duration_to(time_ms: int) -> str:
    """An ISO 8601 duration D such that now - D is about `time_ms`."""
    return f"PT{(int(time.time() * 1000) - time_ms) / 1000:.3f}S"


def mode_target(mode: str, tmp_path: Path, topic: str) -> Target:
    if mode == "to-earliest":
        return Target.from_options(to_earliest=True)
    if mode == "to-latest":
        return Target.from_options(to_latest=True)
    if mode == "to-datetime":
        return Target.from_options(to_datetime=format_ms(MIDDLE_MS))
    if mode == "by-duration":
        return Target.from_options(by_duration=duration_to(MIDDLE_MS))
    if mode == "to-offset":
        return Target.from_options(to_offset=150)
    if mode == "shift-by":
        return Target.from_options(shift_by=-170)
    csv_file = tmp_path / "offsets.csv"
    csv_file.write_text(f"{topic},0,90\n{topic},2,310\n")
    return Target.from_options(from_file=csv_file)


MODES = ["to-earliest", "to-latest", "to-datetime", "by-duration", "to-offset", "shift-by", "file"]


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_dry_run_changes_nothing_and_execute_replays_exactly(
    scenario: Scenario, mode: str, tmp_path: Path
) -> None:
    s = scenario
    target = mode_target(mode, tmp_path, s.topic)
    before = s.snapshot()
    plans = {name: s.plan(name, target) for name in VIEWS}
    assert s.snapshot() == before  # the dry run changed nothing
    for name, plan in plans.items():
        assert plan.refused == []
        assert plan.kind is {"to-earliest": Kind.REBUILD, "to-latest": Kind.FORWARD}.get(
            mode, Kind.DROP_FROM
        ), name
        done = execute_plan(plan, store=s.stores[name], kafka=s.kafka)
        tps = list(done.committed)
        assert s.kafka.committed_offsets(s.groups[name], tps) == done.committed
        stored = s.stores[name].positions()
        assert {tp: stored[tp].next_offset for tp in tps} == done.committed
    skipped = s.consume_all()
    if mode == "to-latest":  # skipped the MORE events, and says so
        assert_views_match(s.stores, expected_views(s.events[:FIRST]))
        for store in s.stores.values():
            assert sum(b - a for _t, _p, a, b in store.stats().skipped) == MORE
        return
    assert_views_match(s.stores, expected_views(s.events))
    if mode in ("to-datetime", "by-duration"):
        assert plans["likes-by-url"].drop_from_ms == MIDDLE_MS - MIDDLE_MS % 3_600_000
        assert all(n > 0 for n in skipped.values())  # old late events were guarded, not redone


def test_reset_to_datetime_with_late_events_on_both_sides_is_exact(scenario: Scenario) -> None:
    """Late events sit after the target offset with times before T', and before it with
    times after; a second reset later in time, mid-replay, stays exact too."""
    s = scenario
    late_after = [e for e in s.events[FIRST // 2 :] if e["occurred_at"] < MIDDLE_MS - 3_600_000]
    assert late_after, "the stream must hold late events"
    for name in VIEWS:
        execute_plan(
            s.plan(name, Target.from_options(to_datetime=format_ms(MIDDLE_MS))),
            store=s.stores[name],
            kafka=s.kafka,
        )
    # Replay only part of the way: stop each view after its first flush.
    for name, view in VIEWS.items():
        runner = s.runner(name, view)
        runner.on_progress = lambda _n, r=runner: r.stop()
        runner.run()
    for name in VIEWS:
        plan = s.plan(name, Target.from_options(to_datetime=format_ms(MIDDLE_MS + DAY_MS)))
        assert plan.kind is Kind.DROP_FROM
        execute_plan(plan, store=s.stores[name], kafka=s.kafka)
    s.consume_all()
    assert_views_match(s.stores, expected_views(s.events))


def test_execute_is_refused_while_a_consumer_runs(scenario: Scenario) -> None:
    s = scenario
    name = "likes-by-user"
    runner = s.runner(name, VIEWS[name])
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while s.kafka.active_members(s.groups[name]) == 0:
            assert time.monotonic() < deadline, "the consumer never joined its group"
            time.sleep(0.2)
        plan = s.plan(name, Target.from_options(to_earliest=True))
        with pytest.raises(BackfillRefused, match="active member"):
            execute_plan(plan, store=s.stores[name], kafka=s.kafka)
    finally:
        runner.stop()
        thread.join(30)
    assert not thread.is_alive()
    s.consume_all()
    assert_views_match(s.stores, expected_views(s.events))


# ----- the CLI -----------------------------------------------------------------------------------
@pytest.fixture
def cli_view(scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Scenario]:
    """Point the likes-by-url view at the scenario's topic and group for in-process CLI runs."""
    name = "likes-by-url"
    view = VIEWS[name]
    monkeypatch.setattr(view, "name", scenario.groups[name])
    monkeypatch.setattr(view, "topics", (scenario.topic,))
    scenario.stores[name].close()
    scenario.stores[name] = open_view_store(None, scenario.settings.data_dir, view)
    monkeypatch.setenv("LOGSTREAM_BOOTSTRAP_SERVERS", scenario.settings.bootstrap_servers)
    monkeypatch.setenv("LOGSTREAM_DATA_DIR", str(scenario.settings.data_dir))
    monkeypatch.delenv("LOGSTREAM_STORE_URL", raising=False)
    return name, scenario


def run_cli(*args: str) -> Any:
    from logstream.cli.main import app

    return CliRunner().invoke(app, ["backfill", *args])


def test_cli_dry_run_json_execute_and_exit_codes(cli_view: tuple[str, Scenario]) -> None:
    name, s = cli_view
    # A build into the freshly named store (the view's namespace changed with its name).
    s.consume_all()
    before = s.snapshot()
    dry = run_cli(name, "--to-datetime", format_ms(MIDDLE_MS), "--json")
    assert dry.exit_code == 0, dry.output
    data = json.loads(dry.stdout)
    assert data["dry_run"] is True and data["kind"] == "drop-from"
    assert data["dropped_buckets"] == f"from {format_ms(MIDDLE_MS - MIDDLE_MS % 3_600_000)}"
    assert len(data["partitions"]) == PARTITIONS
    text = run_cli(name, "--to-datetime", format_ms(MIDDLE_MS))
    assert text.exit_code == 0
    assert "REPLAY-FROM" in text.stdout and "buckets dropped: from " in text.stdout
    assert s.snapshot() == before

    assert run_cli(name).exit_code == 2
    assert run_cli(name, "--to-earliest", "--to-latest").exit_code == 2
    assert run_cli(name, "--by-duration", "soon").exit_code == 2
    assert run_cli(name, "--to-earliest", "--topic", "elsewhere").exit_code == 2

    done = run_cli(name, "--shift-by", "-50", "--topic", f"{s.topic}:1", "--execute")
    assert done.exit_code == 0, done.output
    assert f"next: logstream consume {s.groups[name]} --until-caught-up" in done.stdout
    s.consume_all()
    assert_views_match(s.stores, expected_views(s.events))


def test_cli_refuses_below_log_start_and_mixed_directions(
    cli_view: tuple[str, Scenario], admin
) -> None:
    from confluent_kafka import TopicPartition

    name, s = cli_view
    s.consume_all()
    [future] = admin.delete_records([TopicPartition(s.topic, 0, 40)]).values()
    future.result(timeout=30)
    s.produce(generate_likes(150, seed=99))  # now every partition has unread events
    before = s.snapshot()
    below = run_cli(name, "--to-offset", "10", "--execute")
    assert below.exit_code == 4
    assert "below its log start offset 40" in below.output
    dry = run_cli(name, "--to-offset", "10")
    assert dry.exit_code == 4
    csv_file = s.settings.data_dir / "mixed.csv"
    csv_file.write_text(f"{s.topic},0,100\n{s.topic},1,100000\n")
    mixed = run_cli(name, "--from-file", str(csv_file), "--execute")
    assert mixed.exit_code == 4
    assert "run two backfills" in mixed.output
    assert s.snapshot() == before


def test_cli_refuses_while_the_group_is_active(cli_view: tuple[str, Scenario]) -> None:
    name, s = cli_view
    runner = s.runner(name, VIEWS[name])
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while s.kafka.active_members(s.groups[name]) == 0:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        refused = run_cli(name, "--to-earliest", "--execute")
        assert refused.exit_code == 4
        assert "active member" in refused.output
    finally:
        runner.stop()
        thread.join(30)


# ----- Kafka's own tool agrees -------------------------------------------------------------------
def kafka_dry_run(settings: Settings, group: str, *option: str) -> subprocess.Popen[str]:
    """Start `kafka-consumer-groups --reset-offsets ... --dry-run` (Kafka's own tool)."""
    from logstream.broker.assemble import ensure_kafka_runtime

    runtime = ensure_kafka_runtime(settings.kafka_version, settings.kafka_cache_dir)
    command = runtime.java_command(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        "--bootstrap-server",
        settings.bootstrap_servers,
        "--group",
        group,
        "--reset-offsets",
        *option,
        "--dry-run",
    )
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def new_offsets(proc: subprocess.Popen[str], group: str, topic: str) -> dict[int, int]:
    """NEW-OFFSET per partition from the tool's table (GROUP TOPIC PARTITION NEW-OFFSET)."""
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    pattern = rf"^\s*{re.escape(group)}\s+{re.escape(topic)}\s+(\d+)\s+(\d+)\s*$"
    rows = re.findall(pattern, out, re.M)
    assert rows, out
    return {int(p): int(o) for p, o in rows}


def test_plan_targets_equal_kafka_consumer_group_command(scenario: Scenario) -> None:
    s = scenario
    name = "likes-by-url"
    group = s.groups[name]
    times = sorted({e["occurred_at"] for e in s.events})
    gap = max(itertools.pairwise(times), key=lambda ab: ab[1] - ab[0])
    quiet_ms = (gap[0] + gap[1]) // 2  # no event within a minute: by-duration cannot race
    assert gap[1] - gap[0] > 60_000
    csv_file = s.settings.data_dir / "from.csv"
    csv_file.write_text(f"{s.topic},0,5\n{s.topic},1,400\n{s.topic},2,99999\n")
    cases = [
        (Target.from_options(to_earliest=True), ["--to-earliest"]),
        (Target.from_options(to_latest=True), ["--to-latest"]),
        (Target.from_options(to_offset=300), ["--to-offset", "300"]),
        (Target.from_options(shift_by=-123), ["--shift-by", "-123"]),
        (Target.from_options(shift_by=80), ["--shift-by", "80"]),
        (
            Target.from_options(to_datetime=format_ms(MIDDLE_MS)),
            ["--to-datetime", format_ms(MIDDLE_MS)],
        ),
        (Target.from_options(by_duration=duration_to(quiet_ms)), None),
        (Target.from_options(from_file=csv_file), ["--from-file", str(csv_file)]),
    ]
    running = []
    for target, option in cases:
        if option is None:  # the same duration string for both tools
            option = ["--by-duration", target.label.split(" ", 1)[1]]
        scope = [] if target.file_offsets else ["--topic", s.topic]
        running.append((target, kafka_dry_run(s.settings, group, *option, *scope)))
    for target, proc in running:
        theirs = new_offsets(proc, group, s.topic)
        plan = s.plan(name, target)
        ours = {p.state.partition: p.requested.target for p in plan.partitions if p.requested}
        assert ours == theirs, (target.label, ours, theirs)
