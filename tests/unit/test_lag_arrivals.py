"""Arrival times from sampled log ends (kafka-lag-exporter's method), against a simulated
log whose true arrival times are known: the estimate is within one sampling interval."""

from __future__ import annotations

import random

from logstream.metrics.arrivals import EndOffsetTable


def simulate(seed: int, seconds: float, interval: float) -> tuple[EndOffsetTable, list[float]]:
    """A log written at random moments (bursts and idle stretches), sampled every `interval`;
    returns the table and each offset's true arrival time."""
    rng = random.Random(seed)
    arrivals, t = [], 0.0
    while (t := t + rng.choice((0.001, 0.01, 0.3, 2.5, 7.0))) < seconds:
        arrivals.append(t)
    table = EndOffsetTable(capacity=100_000)
    at = 0.0
    while at <= seconds + interval:
        table.add(at, sum(1 for a in arrivals if a <= at))
        at += interval
    return table, arrivals


def test_estimates_are_within_one_sampling_interval_of_the_truth():
    for seed in range(5):
        table, arrivals = simulate(seed, seconds=120, interval=1.0)
        for offset, truth in enumerate(arrivals):
            estimate = table.arrived_at(offset)
            assert estimate is not None
            assert abs(estimate - truth) <= 1.0, (seed, offset, estimate, truth)


def test_idle_stretches_cost_two_points_and_keep_the_arrival_exact_to_the_interval():
    table = EndOffsetTable()
    for second in range(100):
        table.add(float(second), 5)  # nothing written for 100 s
    assert len(table.points) == 2
    table.add(100.0, 6)  # offset 5 written between 99 s and 100 s
    assert 99.0 <= (table.arrived_at(5) or 0) <= 100.0
    assert table.arrived_at(4) == 0.0  # before the first sample: at least that old


def test_a_full_table_thins_its_old_half_and_stays_bounded():
    table = EndOffsetTable(capacity=64)
    for second in range(10_000):
        table.add(float(second), second * 10)  # 10 records/s
    assert len(table.points) <= 64
    assert table.points[0] == (0.0, 0)  # the horizon is kept
    assert abs((table.arrived_at(99_990) or 0) - 9_999.0) <= 1.0  # recent: exact
    old = table.arrived_at(5_000)  # old: coarser, but the relative error stays small
    assert old is not None and abs(old - 500.0) <= 0.05 * (10_000 - 500)


def test_a_recreated_topic_starts_the_table_over_and_stale_answers_are_ignored():
    table = EndOffsetTable()
    table.add(1.0, 50)
    table.add(1.0, 60)  # a cached answer seen again at the same time: ignored
    assert table.points == [(1.0, 50)]
    table.add(2.0, 3)  # log end went back: a new topic
    assert table.points == [(2.0, 3)]
    assert EndOffsetTable().arrived_at(0) is None
