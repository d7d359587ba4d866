"""The Grafana dashboard and the Prometheus alert rules name only metrics the code exposes,
and cover what operators need (lag, ingest rate, error rate; lag, DLQ growth, consumer down).

The exposed names are taken from the metric objects themselves, not from a list kept by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, ProcessCollector

from ingest_api.metrics import IngestMetrics
from logstream.freshness import EndOffsets
from logstream.metrics.arrivals import LogEndHistory
from logstream.metrics.consumer import ConsumerMetrics
from logstream.metrics.views import ViewsCollector
from logstream.runtime.runner import RunResult
from logstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "logstream.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
COMPOSE = ROOT / "docker-compose.yml"
BUILTIN = {"up"}  # Prometheus's own, per scrape target
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}
# A metric name in PromQL: an identifier followed by a selector, a range or a closing paren,
# that is not a function, an aggregation or a keyword.
NAME = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=\{|\[|\)|$|\s*[><=!/*+-])")
NOT_METRICS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "delta", "by", "without",
    "histogram_quantile", "scalar", "le", "on", "ignoring", "and", "or", "unless", "bool",
}  # fmt: skip


def exposed_names() -> set[str]:
    registry = CollectorRegistry(auto_describe=False)
    IngestMetrics(registry)
    ConsumerMetrics("v", RunResult, int, registry)
    ProcessCollector(registry=registry)
    settings = Settings()
    registry.register(
        ViewsCollector(settings, list, None, EndOffsets(settings), LogEndHistory())  # type: ignore[arg-type]
    )
    names = set(BUILTIN)
    for family in registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def names_in(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_groupings = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_labels)
    found = {m.group(1) for m in NAME.finditer(without_groupings)}
    return {n for n in found if n not in NOT_METRICS and not re.fullmatch(r"\d.*", n)}


def dashboard_exprs() -> list[tuple[str, str]]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_the_name_parser_finds_metric_names_only():
    expr = (
        "histogram_quantile(0.99, sum by (le, route) "
        '(rate(logstream_http_request_duration_seconds_bucket{route=~"/v1.*"}[5m]))) '
        '/ scalar(up{job="x"}) > 0.5'
    )
    assert names_in(expr) == {"logstream_http_request_duration_seconds_bucket", "up"}


def test_every_dashboard_expression_names_exposed_metrics():
    exposed = exposed_names()
    exprs = dashboard_exprs()
    assert exprs
    for title, expr in exprs:
        names = names_in(expr)
        assert names, (title, expr)
        assert names <= exposed, (title, sorted(names - exposed))


def test_every_alert_expression_names_exposed_metrics():
    exposed = exposed_names()
    for rule in alert_rules():
        names = names_in(rule["expr"])
        assert names, rule["alert"]
        assert names <= exposed, (rule["alert"], sorted(names - exposed))


def test_the_dashboard_and_alerts_cover_lag_ingest_errors_dlq_and_consumers():
    used = set().union(*(names_in(e) for _t, e in dashboard_exprs()))
    assert {
        "logstream_view_lag_seconds",
        "logstream_view_lag_offsets",
        "logstream_ingest_events_accepted_total",
        "logstream_http_requests_total",
    } <= used
    alerting = {r["alert"]: names_in(r["expr"]) for r in alert_rules()}
    assert any("logstream_view_lag_seconds" in n for n in alerting.values())
    assert any("logstream_view_dead_letters" in n for n in alerting.values())
    assert any(n == {"up"} for n in alerting.values())


def test_prometheus_scrapes_every_consumer_of_the_compose_file():
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    ports = {}
    for name, service in compose.items():
        argv = service.get("command") or []
        if "--metrics-port" in argv:
            ports[name] = argv[argv.index("--metrics-port") + 1]
    scrape = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]
    targets = {t for job in scrape for c in job["static_configs"] for t in c["targets"]}
    assert ports
    assert {f"{name}:{port}" for name, port in ports.items()} <= targets
    assert "ingest:8000" in targets


def test_prometheus_and_grafana_listen_on_loopback_only():
    """Grafana lets anyone view without a login and Prometheus has no auth at all: neither
    is published beyond this machine unless the compose file is changed on purpose."""
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ("prometheus", "grafana"):
        ports = compose[name]["ports"]
        assert ports and all(str(p).startswith("127.0.0.1:") for p in ports), (name, ports)
    assert "GF_SECURITY_ADMIN_PASSWORD" in compose["grafana"]["environment"]
