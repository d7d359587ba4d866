"""examples/pageviews end to end, as a team would use it, against a real broker.

The example is installed by pip from its own pyproject (into a folder of its own, so no other
test sees its entry point), its schema folder is added to LOGSTREAM_SCHEMA_DIR and its view is
found by its entry point: no file of logstream is edited. Then, through the CLI and the HTTP
API only: topics, POST (single, JSON array, NDJSON, client retries), consume, query, a
backfill to a datetime after late events, a rebuild and promote. Every answer is compared
with an independent computation from the events posted; the rebuild's store must equal the
live one row for row.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port_block

pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "pageviews"
VIEW = "page-views"
HOUR_MS = 3_600_000
BASE_MS = 1_714_521_600_000  # 2024-05-01T00:00:00Z
PAGES = [f"https://shop.example/p/{i}" for i in range(4)]
REFERRERS = [None, "https://a.example/", "https://b.example/", "https://c.example/"]
DEADLINE_S = 120.0


@dataclass
class Posted:
    """What the test wrote, and where the log put it: the independent record."""

    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # event_id -> event
    places: dict[str, tuple[int, int]] = field(default_factory=dict)  # first copy's place

    def accept(self, event: dict[str, Any], answer: dict[str, Any]) -> None:
        assert answer.get("status", "written") == "written", answer
        event_id = answer["event_id"]
        if event_id not in self.events:  # a retry's later copy is not applied
            self.events[event_id] = event
            self.places[event_id] = (answer["partition"], answer["offset"])

    def expected(self, url: str, since_ms: int | None = None) -> dict[str, Any]:
        """The view's answer for one page over [since, ∞), computed from the events."""
        mine = [
            (e, self.places[i])
            for i, e in self.events.items()
            if e["url"] == url and (since_ms is None or e["occurred_at"] >= since_ms)
        ]
        if not mine:
            return {"count": 0}
        newest = max(
            ((e["occurred_at"], *place, e) for e, place in mine if e["referrer"] is not None),
            key=lambda t: t[:3],
            default=None,
        )
        return {
            "count": len(mine),
            "visitors": len({e["visitor_id"] for e, _ in mine}),
            "time_on_page": sum(e["seconds_on_page"] for e, _ in mine),
            "latest_referrer": None if newest is None else newest[3]["referrer"],
            "first_ms": min(e["occurred_at"] for e, _ in mine),
            "last_ms": max(e["occurred_at"] for e, _ in mine),
        }


def page_view(rng: random.Random, hours: range) -> dict[str, Any]:
    """Seconds are multiples of 1/4: their sums are exact in binary floating point, in any
    order, so the comparison can be exact."""
    return {
        "event_id": str(uuid.uuid4()),
        "url": rng.choice(PAGES),
        "visitor_id": f"visitor-{rng.randrange(40)}",
        "seconds_on_page": rng.randrange(1, 400) / 4,
        "referrer": rng.choice(REFERRERS),
        "occurred_at": BASE_MS + rng.choice(hours) * HOUR_MS + rng.randrange(HOUR_MS),
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed by pip (a copy is built, so the repository stays clean)."""
    source = tmp_path_factory.mktemp("pageviews-src") / "pageviews"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp_path_factory.mktemp("pageviews-site")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    command += ["--target", str(target), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert list(target.glob("logstream_pageviews_example-*.dist-info/entry_points.txt"))
    return target


class Deployment:
    """The environment of every process of this deployment, and its ingest server."""

    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.env = env
        self.data_dir = data_dir
        self.base = ""
        self.server: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "logstream", *args]
        result = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout_s, cwd=REPO
        )
        assert result.returncode == 0, f"logstream {' '.join(args)}: {result.stderr[-2000:]}"
        return result

    def serve(self) -> None:
        port = free_port_block(1)
        self.base = f"http://127.0.0.1:{port}"
        log = (self.data_dir / "ingest.log").open("ab")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "logstream", "ingest", "--port", str(port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            assert self.server.poll() is None, (self.data_dir / "ingest.log").read_text()
            try:
                if httpx.get(f"{self.base}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("ingest not ready in time")

    def stop(self) -> None:
        if self.server is not None:
            self.server.terminate()
            self.server.wait(timeout=60)

    def post_batch(self, events: list[dict[str, Any]], posted: Posted, ndjson: bool) -> None:
        url = f"{self.base}/v1/events/page_views/batch"
        if ndjson:
            body = "\n".join(json.dumps(e) for e in events).encode()
            response = httpx.post(
                url, content=body, headers={"content-type": "application/x-ndjson"}, timeout=60
            )
        else:
            response = httpx.post(url, json=events, timeout=60)
        assert response.status_code == 202, response.text
        for event, answer in zip(events, response.json()["events"], strict=True):
            posted.accept(event, answer)

    def post_one(self, event: dict[str, Any], posted: Posted) -> None:
        response = httpx.post(f"{self.base}/v1/events/page_views", json=event, timeout=60)
        assert response.status_code == 202, response.text
        posted.accept(event, response.json())

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = httpx.get(f"{self.base}{path}", params=params, timeout=60)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


@pytest.fixture(scope="module")
def deployment(
    site: Path, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("pageviews-data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), str(REPO)]),
        LOGSTREAM_BOOTSTRAP_SERVERS=kafka_bootstrap,
        LOGSTREAM_TOPIC_PREFIX=f"pv-{uuid.uuid4().hex[:8]}.",
        LOGSTREAM_SCHEMA_DIR=os.pathsep.join(
            [str(REPO / "avro_schemas"), str(site / "pageviews" / "schemas")]
        ),
        LOGSTREAM_DATA_DIR=str(data_dir),
        LOGSTREAM_METRICS="false",
    )
    deployment = Deployment(env, data_dir)
    created = deployment.cli("topics", "create", "--partitions", "3").stdout
    prefix = env["LOGSTREAM_TOPIC_PREFIX"]
    assert f"{prefix}page_views: created" in created
    assert f"{prefix}page_views.dlq: created" in created
    deployment.serve()
    try:
        yield deployment
    finally:
        deployment.stop()


def assert_view_equals(deployment: Deployment, posted: Posted) -> None:
    """Every page's all-time answer, and the ranking by distinct visitors, as computed."""
    for url in PAGES:
        want = posted.expected(url)
        got = deployment.get(f"/v1/views/{VIEW}/key", url=url)
        assert got["count"] == want["count"], url
        if want["count"]:
            assert got["time_on_page"] == want["time_on_page"], url
            assert got["latest_referrer"] == want["latest_referrer"], url
            # At these cardinalities the sketch is still a list of coupons: exact.
            assert got["visitors"] == want["visitors"], url
    top = deployment.get(f"/v1/views/{VIEW}/top", by="visitors", limit=len(PAGES))
    ranked = sorted(PAGES, key=lambda u: (-posted.expected(u).get("visitors", 0), u))
    assert [item["url"] for item in top["items"]] == [u for u in ranked if posted.expected(u)]


def test_pageviews_example_end_to_end(deployment: Deployment) -> None:
    rng = random.Random(20261130)
    posted = Posted()

    # The view is found by the example's entry point alone.
    views = deployment.cli("views").stdout
    assert VIEW in views

    # Ingest: batches (JSON array and NDJSON), single events, and client retries.
    first_wave = [page_view(rng, range(2, 8)) for _ in range(400)]
    for i in range(0, 300, 100):
        deployment.post_batch(first_wave[i : i + 100], posted, ndjson=i == 100)
    for event in first_wave[300:]:
        deployment.post_one(event, posted)
    for event in rng.sample(first_wave, 15):  # a client retrying what was already written
        deployment.post_one(dict(event), posted)
    assert len(posted.events) == 400

    deployment.cli("consume", VIEW, "--until-caught-up", "--no-progress")
    assert_view_equals(deployment, posted)

    # Windows of 2 h over the 1 h buckets, for one page, against the computation.
    url = PAGES[0]
    windows = deployment.get(
        f"/v1/views/{VIEW}/windows",
        url=url,
        size="2h",
        since=BASE_MS,
        until=BASE_MS + 10 * HOUR_MS,
    )["windows"]
    expected_counts: dict[int, int] = {}
    for event in posted.events.values():
        if event["url"] == url:
            start = event["occurred_at"] - event["occurred_at"] % (2 * HOUR_MS)
            expected_counts[start] = expected_counts.get(start, 0) + 1
    got_counts = {epoch_ms(w["start"]): w["count"] for w in windows}
    assert got_counts == expected_counts

    # Late events (event times older than what the view has seen), then an exact backfill
    # from a datetime: hours 4.. are dropped and recomputed, older buckets stay as counted.
    late = [page_view(rng, range(0, 6)) for _ in range(150)]
    deployment.post_batch(late, posted, ndjson=False)
    cut = "2024-05-01T04:00:00Z"
    deployment.cli("backfill", VIEW, "--to-datetime", cut, "--execute")
    deployment.cli("consume", VIEW, "--until-caught-up", "--no-progress")
    assert_view_equals(deployment, posted)
    since = BASE_MS + 4 * HOUR_MS
    for page in PAGES:
        ranged = deployment.get(f"/v1/views/{VIEW}/key", url=page, since=since)
        want = posted.expected(page, since_ms=since)
        assert ranged["count"] == want["count"], page
        if want["count"]:
            assert ranged["time_on_page"] == want["time_on_page"], page
            assert ranged["visitors"] == want["visitors"], page

    # Rebuild beside the live version, promote it: the same rows, byte for byte.
    deployment.cli("rebuild", VIEW, "--no-progress")
    deployment.cli("promote", VIEW)
    assert_view_equals(deployment, posted)
    live, rebuilt = store_rows(deployment, "v1"), store_rows(deployment, "v2")
    assert rebuilt == live
    assert len(live) > 0


def epoch_ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def store_rows(deployment: Deployment, version: str) -> list[tuple[Any, ...]]:
    """Every bucket and totals row of one version's SQLite store, as stored."""
    import sqlite3

    from logstream.stores.base import safe_name

    namespace = VIEW if version == "v1" else f"{VIEW}@{version}"
    path = deployment.data_dir / "views" / f"{safe_name(namespace)}.sqlite"
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        rows = [("buckets", *row) for row in db.execute("SELECT * FROM buckets ORDER BY 1, 2, 3")]
        rows += [("totals", *row) for row in db.execute("SELECT * FROM totals ORDER BY 1, 2")]
    finally:
        db.close()
    return rows
