"""The fault suite (issue 9, item 7): the whole stack under load through the faults a
production deployment meets, then an exact audit of the log and of every view.

Set-up: a private 3-node KRaft cluster (`min.insync.replicas=2`), the event topic created by
the real CLI with replication factor 3, `logstream ingest` and one `logstream consume VIEW`
per built-in view as processes, their SQLite stores on a small tmpfs. Clients POST single
likes and retry each one (same body, same `event_id`) until it is acknowledged.

Faults, in order: 5 leader kills (SIGKILL of the JVM leading a partition, restarted and back
in every ISR before the next; each view must then apply an event written after the kill), a
SIGKILL of ingest, a SIGKILL of each consumer, a full disk under the view stores, and a 30 s
outage of the whole cluster. A consumer that exits, stalls or ignores SIGTERM is a finding;
a stalled one is SIGABRTed for its stacks. Either is restarted, so that one hang does not
hide what the later faults would show.

Afterwards: every acknowledged event is in the log (at the partition and offset it was
acknowledged with); after the README's dedupe rule the log holds each event id once; every
view equals a recomputation from the log; no consumer died, stalled or ignored SIGTERM; the
longest unavailability after a leader kill and the consumers' recovery after the outage are
within the issue's limits. Every number is printed (also written to `summary.txt` in the
test's tmp dir, and put in the failure message).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from consumers import VIEWS
from logstream.broker.local import LocalCluster
from logstream.codec import Codec
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores.factory import open_view_store
from tests.conftest import free_port_block, local_cluster
from tests.faults import disk
from tests.faults.cluster import ClusterProbe
from tests.faults.fencing import fencings_in, unexplained, unseen
from tests.faults.load import Ack, LoadGenerator
from tests.faults.report import SIGTERM_LIMIT_S, Report, seconds
from tests.faults.services import (
    PositionsWatcher,
    Service,
    StorePositions,
    wait_ingest_ready,
)
from tests.integration.likes import (
    assert_views_match,
    expected_from_log,
    expected_views,
    read_log,
    read_views,
    views_off_by,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

TOPIC = "likes"
PARTITIONS = 6
# Far more than the events one partition gets in a run: every retry is within the horizon,
# so after the rule no id may be left twice.
HORIZON = 1_000_000
# The product's default. A lower bound (2 s was tried) sits inside the failover window on a
# loaded machine: librdkafka then expires writes still in flight (message.timeout.ms equals
# this bound) and the idempotent producer must reset its sequence state before writing again,
# which stalls every partition for about a second more (3.1-3.3 s seen) — a cost of the
# setting, not of failover. Clients still retry with the same event_id here: after the
# ingest SIGKILL (a written event whose answer was lost) and through the cluster outage.
ACK_TIMEOUT_S = 5
LEADER_KILLS = 5
OUTAGE_S = 30.0
VIEWS_TMPFS_MB = 256
RETRY_BUDGET_S = 150.0
# After a leader kill, once the node is back and every ISR is full: how long a consumer may
# still take to apply an event written after the kill before it counts as hung.
CONSUMER_GRACE_S = 30.0


@dataclass
class Stack:
    """Everything the faults act on, and what they are measured with."""

    data_dir: Path
    cluster: LocalCluster
    probe: ClusterProbe
    ingest: Service
    base_url: str
    consumers: dict[str, Service]
    positions: dict[str, StorePositions]
    watcher: PositionsWatcher
    load: LoadGenerator
    report: Report

    @property
    def views_dir(self) -> Path:
        return self.data_dir / "views"

    def restart_dead_consumers(self, during: str) -> None:
        """A consumer that exited on its own is a finding; start it again so that the later
        faults still have all three views to act on."""
        for name, service in self.consumers.items():
            if not service.check_alive():
                exit_line = service.unexpected_exits[-1]
                self.report.consumer_exits.append(exit_line)
                self.report.hang(name, f"exited during {during}")
                self.report.finding(f"during {during}: {exit_line}")
                service.start()

    def new_event_after(self, since: float, mark: int, timeout_s: float = 60.0) -> Ack | None:
        """The first event acknowledged for a request sent after `since`: an event written
        after a fault, which a view can only have applied if it works again."""
        deadline = time.monotonic() + timeout_s
        while True:
            first = self.load.first_acks_after(since, mark)
            if first:
                return min(first.values(), key=lambda ack: ack.received)
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def wait_new_event_applied(self, since: float, mark: int, timeout_s: float) -> dict[str, float]:
        """Per view, seconds from `since` until it applied the first event written after
        `since` (inf if none within `timeout_s`, or if ingest acknowledged nothing)."""
        event = self.new_event_after(since, mark)
        if event is None:
            self.report.finding("ingest acknowledged no new event within 60 s")
            return dict.fromkeys(self.positions, math.inf)
        deadline = time.monotonic() + timeout_s
        while True:
            applied = {
                name: self.watcher.applied_at(name, event.partition, event.offset)
                for name in self.positions
            }
            if all(at is not None for at in applied.values()) or time.monotonic() > deadline:
                return {
                    name: math.inf if at is None else max(0.0, at - since)
                    for name, at in applied.items()
                }
            time.sleep(0.1)

    def replace_stalled(self, times: dict[str, float], during: str) -> None:
        """A consumer that did not apply a new event in time: dead (an exit) or alive and
        stuck (hung). Either way a finding; it is restarted so the audit can still run."""
        for name, took in times.items():
            if math.isfinite(took):
                continue
            service = self.consumers[name]
            if service.check_alive():
                self.report.hang(name, f"stalled during {during}")
                service.abort_with_stacks()
                self.report.finding(
                    f"during {during}: {name} alive but applied nothing new; its stacks "
                    f"(SIGABRT) are in {service.log_file}"
                )
                service.start()
            else:
                self.restart_dead_consumers(during)


def clean_env(**settings: str) -> dict[str, str]:
    """This environment without any LOGSTREAM_* the developer may have set, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")}
    env.update({f"LOGSTREAM_{k.upper()}": v for k, v in settings.items()})
    return env


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    reason = disk.can_mount()
    if reason:
        pytest.skip(reason)
    report = Report()
    data_dir = tmp_path / "data"
    with contextlib.ExitStack() as cleanup:
        cluster = local_cluster(tmp_path / "kafka", nodes=3)
        cleanup.callback(cluster.stop, timeout_s=15)
        started, started_wall = time.monotonic(), time.time()
        cluster.start(timeout_s=180)
        up_wall = time.time()
        report.note(
            f"3-node cluster {cluster.bootstrap_servers} up in {time.monotonic() - started:.1f} s"
        )
        cleanup.enter_context(disk.tmpfs(data_dir / "views", VIEWS_TMPFS_MB))
        port = free_port_block(1)
        env = clean_env(
            bootstrap_servers=cluster.bootstrap_servers,
            data_dir=str(data_dir),
            dedupe_horizon_events=str(HORIZON),
            ingest_ack_timeout_s=str(ACK_TIMEOUT_S),
            ingest_port=str(port),
        )
        env["PYTHONFAULTHANDLER"] = "1"  # a hung process, SIGABRTed, shows its stacks
        create = subprocess.run(
            [
                sys.executable,
                "-m",
                "logstream",
                "topics",
                "create",
                "--partitions",
                str(PARTITIONS),
                "--replication-factor",
                "3",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert create.returncode == 0, create.stderr
        probe = ClusterProbe(cluster)
        probe.note_first_start(started_wall, up_wall)
        probe.wait_fully_replicated(timeout_s=60)
        topic_min_isr, broker_min_isr = probe.min_insync_replicas(TOPIC)
        report.note(
            f"topic {TOPIC}: {PARTITIONS} partitions x 3 replicas, min.insync.replicas "
            f"topic={topic_min_isr} brokers={broker_min_isr}"
        )
        assert topic_min_isr == "2" and set(broker_min_isr.split(",")) == {"2"}

        logs = tmp_path / "logs"
        ingest = Service("ingest", ["ingest", "--port", str(port)], env, logs)
        consumers = {name: Service(name, ["consume", name], env, logs) for name in VIEWS}
        for service in (ingest, *consumers.values()):
            cleanup.callback(service.kill_quietly)
            service.start()
        base_url = f"http://127.0.0.1:{port}"
        wait_ingest_ready(base_url, ingest, timeout_s=60)
        positions = {name: StorePositions(data_dir, name) for name in VIEWS}
        watcher = PositionsWatcher(positions, TOPIC)
        cleanup.callback(watcher.stop)
        watcher.start()
        load = LoadGenerator(base_url, retry_budget_s=RETRY_BUDGET_S)
        cleanup.callback(load.stop, 1.0)
        load.start()
        yield Stack(
            data_dir,
            cluster,
            probe,
            ingest,
            base_url,
            consumers,
            positions,
            watcher,
            load,
            report,
        )


def test_fault_suite(stack: Stack, tmp_path: Path) -> None:
    report = stack.report
    try:
        warm_up(stack)
        leader_kills(stack)
        ingest_kill(stack)
        consumer_kills(stack)
        full_disk(stack)
        whole_cluster_outage(stack)
        finish(stack)
        audit(stack)
    except BaseException as exc:  # still print what was measured up to here
        report.finding(f"the suite stopped early: {exc!r}")
        report.write(tmp_path / "summary.txt")
        raise
    report.judge()
    summary = report.write(tmp_path / "summary.txt")
    assert not report.findings, summary


# ----- phases ------------------------------------------------------------------------------
def warm_up(s: Stack) -> None:
    """Load reaches every partition and every view applies it before any fault."""
    started = time.monotonic()
    writable = s.load.wait_partitions_writable(started, PARTITIONS, timeout_s=60)
    assert len(writable) == PARTITIONS, f"no acks on some partitions: {writable}"
    took = s.wait_new_event_applied(started, 0, timeout_s=90)
    assert all(math.isfinite(t) for t in took.values()), f"views not building: {took}"
    s.report.note(f"warm-up: every partition written, every view applying ({len(s.load.acks)})")


def leader_kills(s: Stack) -> None:
    """SIGKILL the leader of partition k, measure until every partition takes a write that
    was sent after the kill, restart the node and wait for full ISRs and for its JVM to be
    past start-up before the next kill: each kill hits a settled cluster, not one still
    recovering from the last (two faults at once).

    Every partition, not only those the dead node led: with acks=all a write also waits for
    each follower still in the ISR, so a dead follower stalls a partition until it is
    dropped from the ISR. A client feels both the same way."""
    for k in range(LEADER_KILLS):
        brokers = [n.node_id for n in s.cluster.layout() if n.is_broker]
        settled = max(s.probe.wait_settled(b) for b in brokers)
        if math.isinf(settled):
            s.report.note(f"leader kill {k + 1}: a broker stayed busy; killing anyway")
        leaders = s.probe.leaders(TOPIC)
        node = leaders[k % PARTITIONS]
        led = sorted(p for p, leader in leaders.items() if leader == node)
        mark = s.load.mark()
        killed_at = s.probe.kill_node(node)
        writable = s.load.wait_partitions_writable(killed_at, PARTITIONS, 60.0, mark)
        took = max(writable.values()) if len(writable) == PARTITIONS else math.inf
        s.report.unavailability_s.append(took)
        per_partition = " ".join(f"p{p}={t:.2f}" for p, t in writable.items())
        restart = time.monotonic()
        s.probe.start(timeout_s=180)
        restarted = time.monotonic() - restart
        in_sync = s.probe.wait_fully_replicated(timeout_s=120)
        # The cluster is whole again: each view must now apply an event written after the
        # kill, or its consumer is hung (a live process that applies nothing).
        applied = s.wait_new_event_applied(killed_at, mark, timeout_s=CONSUMER_GRACE_S)
        s.report.note(
            f"leader kill {k + 1}: node {node} (led {led}): every partition took a 202 "
            f"again after {seconds(took)} [{per_partition}] (first waited {seconds(settled)} "
            f"for the brokers' CPU to settle); node back in {restarted:.1f} s, "
            f"ISRs full {in_sync:.1f} s later; an event written after the kill applied by "
            + ", ".join(f"{name} {seconds(t)}" for name, t in applied.items())
        )
        s.restart_dead_consumers(f"leader kill {k + 1}")
        s.replace_stalled(applied, f"leader kill {k + 1}")


def ingest_kill(s: Stack) -> None:
    """SIGKILL ingest mid-load and start it again; clients retry meanwhile."""
    mark = s.load.mark()
    killed_at = s.ingest.sigkill()
    s.ingest.start()
    ready = wait_ingest_ready(s.base_url, s.ingest, timeout_s=60)
    writable = s.load.wait_partitions_writable(killed_at, PARTITIONS, 60.0, mark)
    took = max(writable.values()) if len(writable) == PARTITIONS else math.inf
    s.report.note(
        f"ingest SIGKILL: restarted, ready after {ready:.1f} s; every partition took a 202 "
        f"again {seconds(took)} after the kill"
    )
    if not math.isfinite(took):
        s.report.finding(f"ingest did not take writes on every partition again: {writable}")


def consumer_kills(s: Stack) -> None:
    """SIGKILL each consumer at a random instant after it committed something new, restart
    it, and check that all three apply new events again."""
    rng = random.Random(9)
    mark = s.load.mark()
    for name, service in s.consumers.items():
        store = s.positions[name]
        before, waited = store.read(TOPIC), time.monotonic()
        while store.read(TOPIC) == before and time.monotonic() < waited + 15:
            time.sleep(0.05)
        waited = time.monotonic() - waited
        time.sleep(rng.uniform(0.0, 0.5))  # a random instant after a commit
        service.sigkill()
        service.start()
        s.report.note(
            f"{name}: SIGKILLed after its positions moved ({waited:.1f} s)"
            f"{' (they did not move for 15 s)' if waited >= 15 else ''}, restarted; "
            f"{len(s.load.acks)} acks so far"
        )
    restarted = time.monotonic()
    took = s.wait_new_event_applied(restarted, mark, timeout_s=60)
    s.report.note(
        "consumer SIGKILLs: each restarted; new events applied after "
        + ", ".join(f"{name} {seconds(t)}" for name, t in took.items())
    )
    s.replace_stalled(took, "consumer SIGKILLs")


def full_disk(s: Stack) -> None:
    """Fill the tmpfs under the stores while load runs, until every consumer has stopped
    committing (or died), then free it: the consumers must still run and catch up."""
    views = s.views_dir
    mark = s.load.mark()
    filled = disk.fill(views)
    filled_at = time.monotonic()
    s.report.note(f"full disk: {filled >> 20} MiB filler, {disk.bytes_free(views)} bytes free")
    last = {name: store.read(TOPIC) for name, store in s.positions.items()}
    changed = dict.fromkeys(s.positions, filled_at)
    felt: dict[str, str] = {}
    deadline = filled_at + 60
    while len(felt) < len(s.positions) and time.monotonic() < deadline:
        time.sleep(0.2)
        now = time.monotonic()
        for name, store in s.positions.items():
            if name in felt:
                continue
            if not s.consumers[name].alive():
                felt[name] = f"exited after {now - filled_at:.1f} s"
                continue
            current = store.read(TOPIC)
            if current != last[name]:
                last[name], changed[name] = current, now
            elif now - changed[name] >= 5.0:
                felt[name] = f"stopped committing {changed[name] - filled_at:.1f} s after the fill"
    # Keep the load on the full disk a little longer: consumers must keep failing politely.
    hold_until = time.monotonic() + 10.0
    while time.monotonic() < hold_until:
        time.sleep(0.2)
    disk.free_space(views)
    freed_at = time.monotonic()
    s.report.note(
        "full disk felt: "
        + ", ".join(f"{name} {felt.get(name, 'NOT (kept committing)')}" for name in s.positions)
    )
    for name in s.positions:
        if name not in felt:
            s.report.finding(f"full disk: {name} kept committing; the fill did not bite")
    s.restart_dead_consumers("full disk")
    took = s.wait_new_event_applied(freed_at, mark, timeout_s=60)
    s.report.note(
        "space freed: new events applied after "
        + ", ".join(f"{name} {seconds(t)}" for name, t in took.items())
    )
    s.replace_stalled(took, "full disk")


def whole_cluster_outage(s: Stack) -> None:
    """All nodes SIGKILLed, down for OUTAGE_S, started again; consumers must apply new
    events within the limit, without a restart."""
    mark = s.load.mark()
    killed_at = s.probe.kill_all()
    s.probe.wait_all_down()
    s.report.note(f"whole-cluster outage: all {len(s.cluster.layout())} nodes SIGKILLed")
    while time.monotonic() < killed_at + OUTAGE_S:  # the outage itself, deliberately
        time.sleep(0.5)
    dead_during = [name for name, svc in s.consumers.items() if not svc.alive()]
    start = time.monotonic()
    s.probe.start(timeout_s=180)
    back = time.monotonic()
    took = s.wait_new_event_applied(back, mark, timeout_s=60)
    s.report.outage_recovery_s.update(took)
    s.report.note(
        f"outage: down {back - killed_at:.1f} s (start took {back - start:.1f} s); ingest's "
        f"first new 202 {first_202_after(s, back, mark)} after; new event applied after "
        + ", ".join(f"{name} {seconds(t)}" for name, t in took.items())
        + (f"; consumers that died during it: {dead_during}" if dead_during else "")
    )
    s.replace_stalled(took, "the whole-cluster outage")
    s.probe.wait_fully_replicated(timeout_s=120)


def finish(s: Stack) -> None:
    """Stop the load, let the views catch up with the log end, then SIGTERM every process:
    a consumer that is dead, does not catch up or does not exit within 10 s is hung."""
    stuck = s.load.stop(timeout_s=RETRY_BUDGET_S + 30)
    stats = s.load.stats
    s.report.note(
        f"load stopped: {len(s.load.acks)} acknowledged, {stats.attempts} requests, "
        f"{stats.retries} retries, answers {dict(sorted(stats.statuses.items()))}"
    )
    if stuck:
        s.report.finding(f"clients still waiting for an answer: {stuck}")
    if stats.given_up:
        s.report.finding(f"{len(stats.given_up)} events never acknowledged within the budget")
    if stats.unexpected:
        s.report.finding(f"unexpected answers: {stats.unexpected[:3]}")
    s.restart_dead_consumers("the final load")
    ends = log_end_offsets(s.cluster.bootstrap_servers)
    caught_up: dict[str, float] = {}
    started = time.monotonic()
    while len(caught_up) < len(s.positions) and time.monotonic() < started + 120:
        for name, store in s.positions.items():
            if name not in caught_up and store.read(TOPIC) == ends:
                caught_up[name] = time.monotonic() - started
        time.sleep(0.2)
    s.report.note(f"caught up with the log end {ends}: {caught_up}")
    for name, service in s.consumers.items():
        if name not in caught_up:
            alive = service.check_alive()
            s.report.hang(name, "not caught up at the end")
            s.report.finding(
                f"{name} {'alive' if alive else 'dead'} but not caught up: "
                f"{s.positions[name].read(TOPIC)}; log: {service.log_tail()}"
            )
        exited = service.sigterm(SIGTERM_LIMIT_S)
        if exited is None:
            s.report.hang(name, "ignored SIGTERM")
            s.report.finding(f"{name} did not exit within {SIGTERM_LIMIT_S} s of SIGTERM")
        s.report.note(f"{name}: SIGTERM -> exit after {seconds(exited or math.inf)}")
    # Ingest's graceful shutdown lets in-flight requests wait up to the ack bound + 5 s.
    ingest_exit = s.ingest.sigterm(ACK_TIMEOUT_S + 10)
    s.report.note(f"ingest: SIGTERM -> exit after {seconds(ingest_exit or math.inf)}")
    if ingest_exit is None:
        s.report.finding(f"ingest did not exit after SIGTERM; stacks in {s.ingest.log_file}")


def audit(s: Stack) -> None:
    """The log against the acks, the dedupe rule over the log, the views against it."""
    r = s.report
    codec = Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))
    log = read_log(s.cluster.bootstrap_servers, TOPIC, codec, PARTITIONS)
    in_log = {event["event_id"] for events in log for event in events}
    r.acknowledged = len({ack.event_id for ack in s.load.acks})
    r.lost = r.acknowledged - len({ack.event_id for ack in s.load.acks} & in_log)
    misplaced = [
        ack
        for ack in s.load.acks
        if ack.offset >= len(log[ack.partition])
        or log[ack.partition][ack.offset]["event_id"] != ack.event_id
    ]
    if misplaced:
        r.finding(f"{len(misplaced)} acks name a partition/offset holding another event")
    r.log_records = sum(len(events) for events in log)
    r.raw_duplicates = r.log_records - len(in_log)
    kept, _duplicates = expected_from_log(log, HORIZON)
    r.duplicates_left = len(kept) - len({event["event_id"] for event in kept})
    stores = {name: open_view_store(None, s.data_dir, view) for name, view in VIEWS.items()}
    try:
        expected = expected_views(kept)
        r.views_off_by = views_off_by(read_views(stores, expected), expected)
        if not any(r.views_off_by.values()):
            try:  # the helper the other exactness tests use must agree
                assert_views_match(stores, expected)
            except AssertionError as exc:
                r.finding(f"assert_views_match disagrees with views_off_by: {exc!r}")
    finally:
        for store in stores.values():
            store.close()
    fencings = fencings_in(s.probe.fencing_logs())
    r.fencings = len(fencings)
    r.live_brokers_fenced = [
        f"broker {f.node} (epoch {f.epoch}) at {time.strftime('%H:%M:%S', time.localtime(f.at))}"
        for f in unexplained(fencings, s.probe.all_downtimes())
    ]
    for kill in unseen(fencings, s.probe.single_kills):
        r.finding(f"no fencing of broker {kill.node} after its kill: are fencings logged?")


def first_202_after(s: Stack, since: float, mark: int) -> str:
    event = s.new_event_after(since, mark, timeout_s=0)
    return "never" if event is None else seconds(event.received - since)


def log_end_offsets(bootstrap: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "fault-suite-ends"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=30)[1]
            for p in range(PARTITIONS)
        }
    finally:
        consumer.close()
