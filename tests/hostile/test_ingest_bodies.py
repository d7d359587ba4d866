"""Ingest against hostile bodies (issue 11): a URL holding NUL is refused (422 naming `url`,
nothing written) single, in a JSON batch and in NDJSON; and an 8 MiB NDJSON body of bad
lines, or of more events than a batch may hold, is answered at once while `/healthz`
keeps answering and the server's memory stays bounded (it once cost ~50 s of CPU and
2.7 GB on the event loop)."""

from __future__ import annotations

import json
import statistics
import threading
import time

import httpx

from tests.hostile.test_bounded_reads import _rss_kb
from tests.integration.test_transfer import end_offsets

NUL_URL = "https://victim.example/\u0000a"
BODY_BYTES = 8 * 1024 * 1024  # LOGSTREAM_INGEST_MAX_BODY_BYTES' default: the largest allowed
ANSWER_BOUND_S = 2.0
HEALTHZ_P99_BOUND_MS = 200.0
RSS_GROWTH_BOUND_MB = 200


def _like(**fields: object) -> dict[str, object]:
    return {"url": "https://ok.example/", "user_id": "u1", **fields}


def test_a_nul_url_is_refused_naming_url_and_nothing_is_written(hostile, kafka_bootstrap):
    topic = hostile.prefix + "likes"
    before = end_offsets(kafka_bootstrap, topic)
    bad = _like(url=NUL_URL)
    with httpx.Client(base_url=hostile.base, headers=hostile.headers(hostile.writer_key)) as c:
        answers = {
            "single": c.post("/v1/events/likes", json=bad),
            "batch": c.post("/v1/events/likes/batch", json=[_like(), bad]),
            "ndjson": c.post(
                "/v1/events/likes/batch",
                content=f"{json.dumps(_like())}\n{json.dumps(bad)}\n",
                headers={"Content-Type": "application/x-ndjson"},
            ),
        }
    for name, response in answers.items():
        assert response.status_code == 422, (name, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_failed"
        assert [f["field"] for f in error["fields"]] == ["url"], name
        assert "U+0000" in error["fields"][0]["message"]
        assert "\\u0000" not in response.text and "\x00" not in response.text
        if name != "single":
            assert error["fields"][0]["index"] == 1
    assert end_offsets(kafka_bootstrap, topic) == before


def _post_timed(hostile, body: bytes) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = httpx.post(
        hostile.base + "/v1/events/likes/batch",
        content=body,
        headers={**hostile.headers(hostile.writer_key), "Content-Type": "application/x-ndjson"},
        timeout=60,
    )
    return response, time.perf_counter() - started


def test_an_8_mib_ndjson_flood_is_answered_at_once_and_healthz_keeps_answering(hostile):
    bad_lines = b"{x\n" * (BODY_BYTES // 3)  # 2.8 million bad lines
    tiny_events = b"{}\n" * (BODY_BYTES // 3)  # 2.8 million events, the limit is 10,000
    assert len(bad_lines) <= BODY_BYTES and len(tiny_events) <= BODY_BYTES
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=hostile.base, timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                latencies.append((time.perf_counter() - started) * 1000)

    rss_before = _rss_kb(hostile.server_pid())
    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(3):
            response, elapsed = _post_timed(hostile, bad_lines)
            assert response.status_code == 400, response.text[:500]
            error = response.json()["error"]
            assert error["code"] == "malformed_json"
            assert len(error["fields"]) == 100
            assert error["fields"][0]["index"] == 0 and "line 1" in error["fields"][0]["message"]
            assert elapsed < ANSWER_BOUND_S, f"400 after {elapsed:.2f} s"
            response, elapsed = _post_timed(hostile, tiny_events)
            assert response.status_code == 413, response.text[:500]
            assert response.json()["error"]["code"] == "too_many_events"
            assert elapsed < ANSWER_BOUND_S, f"413 after {elapsed:.2f} s"
    finally:
        stop.set()
        prober.join(timeout=30)
    growth_mb = (_rss_kb(hostile.server_pid()) - rss_before) / 1024
    p99 = statistics.quantiles(latencies, n=100)[98]
    print(
        f"healthz during 6 x 8 MiB NDJSON: {len(latencies)} answers, "
        f"p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms; "
        f"server RSS growth {growth_mb:.0f} MB"
    )
    assert len(latencies) >= 20
    assert p99 < HEALTHZ_P99_BOUND_MS
    assert growth_mb < RSS_GROWTH_BOUND_MB
