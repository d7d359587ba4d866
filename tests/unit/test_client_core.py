"""The client's shared, I/O-free core: retry delays, receipts, bodies and the operations.

Operations are generators that yield HTTP calls and pauses; these tests drive them by hand,
answering each call with an httpx.Response as ingest would, and check what the client does
next (what it resends, with which ids, after how long).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from logstream.client import operations as ops
from logstream.client.bodies import AVRO, JSON, avro_record, encode_event, with_event_id
from logstream.client.errors import BatchIncompleteError, RequestFailedError, UnreachableError
from logstream.client.receipts import Receipt, ReceiptLog, wait_for_values
from logstream.client.retry import RetryPolicy, is_retryable, retry_after_s
from logstream.codec import Codec
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings

NO_JITTER = RetryPolicy(max_retries=3, backoff_s=0.5, backoff_max_s=1.5, jitter=0)
LIKE = {"url": "https://example.com/a", "user_id": "u-1"}


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body if body is not None else {}, headers=headers)


def accepted(event_id: str, partition: int = 0, offset: int = 0) -> httpx.Response:
    body = {"event_id": event_id, "topic": "likes", "partition": partition, "offset": offset}
    return answer(202, body)


Responder = Callable[[ops.HttpCall], ops.Outcome]


def drive(operation: ops.Operation[Any], respond: Responder) -> tuple[Any, list[Any]]:
    """Run an operation to its end; returns its result and every step it took."""
    steps: list[Any] = []
    outcome: ops.Outcome | None = None
    while True:
        try:
            step = operation.send(outcome)
        except StopIteration as done:
            return done.value, steps
        steps.append(step)
        outcome = respond(step) if isinstance(step, ops.HttpCall) else None


def sequence(*outcomes: ops.Outcome | Callable[[ops.HttpCall], ops.Outcome]) -> Responder:
    pending = list(outcomes)

    def respond(call: ops.HttpCall) -> ops.Outcome:
        nxt = pending.pop(0)
        return nxt(call) if callable(nxt) else nxt

    return respond


# ----- retry policy ---------------------------------------------------------------------------
def test_retry_after_seconds_and_http_date():
    assert retry_after_s(answer(503, headers={"Retry-After": "3"})) == 3.0
    now = datetime(2026, 1, 1, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert retry_after_s(answer(503, headers={"Retry-After": date}), now=now) == 7.0
    assert retry_after_s(answer(503, headers={"Retry-After": "soon"})) is None
    assert retry_after_s(answer(503)) is None


def test_delay_honours_retry_after_capped_else_backs_off():
    assert NO_JITTER.delay_s(1, answer(503, headers={"Retry-After": "4"})) == 4.0
    capped = RetryPolicy(retry_after_max_s=2, jitter=0)
    assert capped.delay_s(1, answer(429, headers={"Retry-After": "3600"})) == 2.0
    backoffs = [NO_JITTER.delay_s(n, answer(503)) for n in (1, 2, 3, 4)]
    assert backoffs == [0.5, 1.0, 1.5, 1.5]
    jittered = RetryPolicy(backoff_s=1, jitter=0.5, random=lambda: 1.0)
    assert jittered.delay_s(1, httpx.ConnectError("refused")) == 0.5


def test_what_is_retried():
    for status in (429, 502, 503, 504):
        assert is_retryable(answer(status))
    for status in (200, 202, 400, 404, 413, 415, 422):
        assert not is_retryable(answer(status))
    assert is_retryable(httpx.ConnectError("refused"))
    assert is_retryable(httpx.ReadTimeout("slow"))
    assert is_retryable(httpx.RemoteProtocolError("closed"))
    assert not is_retryable(httpx.UnsupportedProtocol("ftp"))


# ----- receipts -------------------------------------------------------------------------------
def test_wait_for_keeps_the_highest_offset_per_partition():
    receipts = [
        Receipt("a", "likes", 1, 5),
        Receipt("b", "likes", 1, 9),
        Receipt("c", "likes", 0, 2),
        Receipt("d", "other", 1, 1),
    ]
    assert wait_for_values(receipts) == ["likes:0:2", "likes:1:9", "other:1:1"]
    log = ReceiptLog()
    log.add([*receipts, None])
    assert [r.event_id for r in log.newest()] == ["c", "b", "d"]


# ----- bodies ---------------------------------------------------------------------------------
def test_event_id_is_chosen_once_and_a_given_one_kept():
    prepared = with_event_id(LIKE)
    assert uuid.UUID(prepared["event_id"]).version == 4
    assert "event_id" not in LIKE  # the caller's dict is left alone
    assert with_event_id({**LIKE, "event_id": "mine"})["event_id"] == "mine"


def test_avro_body_is_single_object_encoding_of_the_latest_schema():
    codec = Codec(SchemaCatalogue.load(Settings().resolved_schema_dir))
    moment = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    event = with_event_id({**LIKE, "occurred_at": moment, "referrer": "https://r"})
    body, content_type = encode_event("likes", event, "avro", codec)
    assert content_type == AVRO
    assert body[:2] == b"\xc3\x01"
    writer, decoded = codec.decode(body)
    assert writer is codec.catalogue.latest("like")
    assert decoded == {**event, "occurred_at": int(moment.timestamp() * 1000)}
    assert encode_event("likes", event, "json", None)[1] == JSON


def test_avro_record_fills_now_and_refuses_ambiguous_times():
    before = int(datetime.now(UTC).timestamp() * 1000)
    assert avro_record(LIKE)["occurred_at"] >= before
    assert avro_record({**LIKE, "occurred_at": 5})["occurred_at"] == 5
    with pytest.raises(ValueError, match="UTC offset"):
        avro_record({**LIKE, "occurred_at": datetime(2026, 1, 1)})
    with pytest.raises(TypeError, match="epoch milliseconds"):
        avro_record({**LIKE, "occurred_at": "2026-01-01T00:00:00Z"})


# ----- operations -----------------------------------------------------------------------------
def test_send_retries_503_and_connection_errors_with_the_same_event_id():
    bodies: list[dict[str, Any]] = []

    def record(status: int | None) -> Callable[[ops.HttpCall], ops.Outcome]:
        def respond(call: ops.HttpCall) -> ops.Outcome:
            assert call.content is not None
            bodies.append(json.loads(call.content))
            if status is None:
                return httpx.ConnectError("refused")
            if status == 202:
                return accepted(bodies[-1]["event_id"], 2, 41)
            return answer(status, {"error": {"code": "broker_unavailable"}}, {"Retry-After": "2"})

        return respond

    receipt, steps = drive(
        ops.send_one("likes", LIKE, NO_JITTER), sequence(record(503), record(None), record(202))
    )
    assert receipt == Receipt(bodies[0]["event_id"], "likes", 2, 41)
    assert len({b["event_id"] for b in bodies}) == 1
    pauses = [s.seconds for s in steps if isinstance(s, ops.Pause)]
    assert pauses == [2.0, 1.0]  # Retry-After, then backoff (second retry)
    call = steps[0]
    assert (call.method, call.path, call.content_type) == ("POST", "/v1/events/likes", JSON)


def test_send_gives_up_after_max_retries_and_at_once_on_4xx():
    refused = httpx.ConnectError("refused")
    with pytest.raises(UnreachableError):
        drive(ops.send_one("likes", LIKE, NO_JITTER), sequence(*[refused] * 4))
    busy = answer(503, {"error": {"code": "broker_unavailable", "message": "down"}})
    with pytest.raises(RequestFailedError) as failed:
        drive(ops.send_one("likes", LIKE, NO_JITTER), sequence(*[busy] * 4))
    assert (failed.value.status, failed.value.code) == (503, "broker_unavailable")
    invalid = answer(422, {"error": {"code": "validation_failed", "fields": [{"field": "url"}]}})
    with pytest.raises(RequestFailedError) as failed:
        drive(ops.send_one("likes", LIKE, NO_JITTER), sequence(invalid))
    assert failed.value.fields == [{"field": "url"}]


def test_send_many_splits_and_resends_only_the_failed_events():
    events = [{**LIKE, "user_id": f"u-{i}"} for i in range(5)]
    sent: list[list[dict[str, Any]]] = []

    def partial(call: ops.HttpCall) -> ops.Outcome:
        assert call.content is not None
        batch = json.loads(call.content)
        sent.append(batch)
        entries = []
        for i, e in enumerate(batch):
            entry = {"index": i, "event_id": e["event_id"], "topic": "likes"}
            if len(sent) == 1 and i == 1:  # the first answer fails the second event
                entries.append({**entry, "status": "failed", "error": "timed out"})
            else:
                entries.append({**entry, "status": "written", "partition": 0, "offset": 10 + i})
        status = 503 if any(e["status"] == "failed" for e in entries) else 202
        headers = {"Retry-After": "1"} if status == 503 else None
        return answer(status, {"events": entries, "accepted": 0}, headers)

    receipts, steps = drive(
        ops.send_many("likes", events, NO_JITTER, batch_size=3), sequence(*[partial] * 3)
    )
    assert [len(batch) for batch in sent] == [3, 1, 2]
    assert sent[1] == [sent[0][1]]  # only the failed one, with its id
    assert [r.event_id for r in receipts] == [e["event_id"] for e in sent[0] + sent[2]]
    assert [s.seconds for s in steps if isinstance(s, ops.Pause)] == [1.0]


def test_send_many_that_cannot_finish_says_what_to_resend():
    events = [{**LIKE, "user_id": f"u-{i}"} for i in range(4)]
    first = []

    def ok_then_down(call: ops.HttpCall) -> ops.Outcome:
        assert call.content is not None
        batch = json.loads(call.content)
        first.extend(batch)
        entries = [
            {"index": i, "event_id": e["event_id"], "status": "written", "topic": "likes"}
            | {"partition": 1, "offset": i}
            for i, e in enumerate(batch)
        ]
        return answer(202, {"events": entries, "accepted": len(batch)})

    down = httpx.ConnectError("refused")
    with pytest.raises(BatchIncompleteError) as failed:
        drive(
            ops.send_many("likes", events, NO_JITTER, batch_size=2),
            sequence(ok_then_down, down, down, down, down),
        )
    error = failed.value
    assert [r is not None for r in error.receipts] == [True, True, False, False]
    assert [e["user_id"] for e in error.unconfirmed] == ["u-2", "u-3"]
    assert all(uuid.UUID(e["event_id"]) for e in error.unconfirmed)
    assert isinstance(error.error, UnreachableError)


def test_get_view_passes_params_wait_for_and_retries_504():
    receipts = [Receipt("a", "likes", 3, 7), Receipt("b", "likes", 3, 9)]
    calls: list[ops.HttpCall] = []

    def respond(status: int) -> Callable[[ops.HttpCall], ops.Outcome]:
        def inner(call: ops.HttpCall) -> ops.Outcome:
            calls.append(call)
            headers = {"Retry-After": "1"} if status == 504 else None
            return answer(status, {"count": 2}, headers)

        return inner

    body, _ = drive(
        ops.get_view("likes-by-url", "", {"url": "https://x"}, NO_JITTER, receipts, wait_ms=500),
        sequence(respond(504), respond(200)),
    )
    assert body == {"count": 2}
    assert calls[0].path == "/v1/views/likes-by-url"
    assert calls[0].params == (("url", "https://x"), ("wait_for", "likes:3:9"), ("wait_ms", "500"))
    top, _ = drive(
        ops.get_view("likes-by-url", "top", [("limit", 3)], NO_JITTER),
        sequence(respond(200)),
    )
    assert top == {"count": 2}
    assert calls[-1].path == "/v1/views/likes-by-url/top"
