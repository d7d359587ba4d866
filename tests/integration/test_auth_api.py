"""API keys against a real broker: every route but /healthz needs a key with the right
scope, answers 401/403/429 in the shared error shape, and a key that may write puts its
events in the log, which a reader's key then sees counted exactly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from consumers import get_view
from ingest_api.app import create_app
from logstream.auth.keys import KeyFile
from logstream.codec import Codec
from logstream.errors import ConfigError
from logstream.kafka.admin import create_topics, make_admin
from logstream.runtime import ViewRunner
from logstream.schemas import SchemaCatalogue
from logstream.settings import Settings
from logstream.stores.factory import open_view_store
from logstream.topics import event_topic_specs, resolve_topics

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Keys:
    writer: str
    reader: str
    url_reader: str
    admin: str
    file: KeyFile


@pytest.fixture
def secured(kafka_bootstrap: str, tmp_path: Path, unique_name) -> Iterator[tuple[Settings, Keys]]:
    """Settings on a fresh topic prefix, with a key file holding one key per role."""
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        data_dir=tmp_path / "data",
        topic_prefix=unique_name("auth") + ".",
        topic_partitions=3,
    )
    create_topics(
        make_admin(settings), event_topic_specs(settings, list(resolve_topics(settings, ["likes"])))
    )
    files = KeyFile(settings.resolved_auth_keys_file)
    keys = Keys(
        writer=files.create("writer", ["write:likes"])[1],
        reader=files.create("reader", ["read:*"])[1],
        url_reader=files.create("url-reader", ["read:likes-by-url"])[1],
        admin=files.create("ops", ["admin"])[1],
        file=files,
    )
    yield settings, keys


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post_acked(client: TestClient, path: str, body: Any, token: str) -> httpx.Response:
    """POST until the broker acknowledges (a fresh broker may answer 503 at first), as a
    client would: retrying with the same event ids, so the view counts each once."""
    deadline = time.monotonic() + 60
    while True:
        response = client.post(path, json=body, headers=bearer(token))
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def like(url: str, user: str) -> dict[str, str]:
    return {"url": url, "user_id": user, "event_id": str(uuid.uuid4())}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code and body["error"]["message"], body
    return body["error"]


def test_every_route_but_healthz_needs_a_key(secured: tuple[Settings, Keys]) -> None:
    settings, keys = secured
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        for method, path in [
            ("POST", "/v1/events/likes"),
            ("POST", "/v1/events/likes/batch"),
            ("GET", "/v1/views"),
            ("GET", "/v1/views/likes-by-url?url=x"),
            ("GET", "/v1/views/likes-by-window?size=1h"),
            ("GET", "/docs"),
            ("GET", "/openapi.json"),
            ("GET", "/v1/schemas"),
            ("GET", "/asyncapi.json"),
            ("GET", "/readyz"),
            ("GET", "/no-such-route"),
        ]:
            response = client.request(method, path, json={"url": "u", "user_id": "x"})
            assert_error(response, 401, "unauthorized")
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="logstream"'
            for bad in ("Bearer lsk_0000_nope", "Basic dXNlcjpwYXNz", "Bearer "):
                response = client.request(method, path, headers={"Authorization": bad})
                assert_error(response, 401, "unauthorized")
        for path in ("/docs", "/openapi.json", "/v1/schemas"):
            assert client.get(path, headers=bearer(keys.writer)).status_code == 200, path
        # Readiness may still be 503 while the producer starts: past auth either way.
        assert client.get("/readyz", headers=bearer(keys.writer)).status_code in (200, 503)
        assert_error(client.get("/no-such-route", headers=bearer(keys.reader)), 404, "not_found")


def test_scopes_decide_who_writes_and_who_reads(secured: tuple[Settings, Keys]) -> None:
    settings, keys = secured
    url = "https://example.com/scoped"
    with TestClient(create_app(settings)) as client:
        written = 0
        for token in (keys.writer, keys.admin):
            response = post_acked(client, "/v1/events/likes", like(url, "u"), token)
            assert response.status_code == 202, response.text
            written += 1
        response = post_acked(
            client,
            "/v1/events/likes/batch",
            [like(url, f"u{i}") for i in range(5)],
            keys.writer,
        )
        assert response.status_code == 202, response.text
        written += 5
        for token in (keys.reader, keys.url_reader):
            response = client.post(
                "/v1/events/likes", json={"url": url, "user_id": "u"}, headers=bearer(token)
            )
            error = assert_error(response, 403, "forbidden")
            assert "write:likes" in error["message"]
            assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
        assert_error(
            client.get("/v1/views/likes-by-url", params={"url": url}, headers=bearer(keys.writer)),
            403,
            "forbidden",
        )
        assert_error(
            client.get(
                "/v1/views/likes-by-user", params={"user_id": "u"}, headers=bearer(keys.url_reader)
            ),
            403,
            "forbidden",
        )
        assert_error(client.get("/v1/views", headers=bearer(keys.url_reader)), 403, "forbidden")

        # The events the writers were let in with are in the log: build the view from it.
        view = get_view("likes-by-url")
        store = open_view_store(None, settings.data_dir, view)
        ViewRunner(
            settings,
            view,
            store,
            Codec(SchemaCatalogue.load(settings.resolved_schema_dir)),
            topics=resolve_topics(settings, view.topics),
            until_caught_up=True,
        ).run()
        store.close()
        for token in (keys.reader, keys.url_reader, keys.admin):
            response = client.get(
                "/v1/views/likes-by-url", params={"url": url}, headers=bearer(token)
            )
            assert response.status_code == 200, response.text
            assert response.json()["count"] == written
        assert client.get("/v1/views", headers=bearer(keys.reader)).status_code == 200


def test_revoked_and_new_keys_take_effect_without_restart(
    secured: tuple[Settings, Keys],
) -> None:
    settings, keys = secured
    with TestClient(create_app(settings)) as client:
        key_id = keys.reader.split("_")[1]
        assert client.get("/v1/views", headers=bearer(keys.reader)).status_code == 200
        keys.file.revoke(key_id)
        _, fresh = keys.file.create("late", ["read:likes-by-url"])
        deadline = time.monotonic() + 10
        while client.get("/v1/views", headers=bearer(keys.reader)).status_code != 401:
            assert time.monotonic() < deadline, "revocation not picked up"
            time.sleep(0.05)
        response = client.get("/v1/views/likes-by-url", params={"url": "x"}, headers=bearer(fresh))
        assert response.status_code == 200, response.text


def test_rate_limits_answer_429_with_retry_after(
    kafka_bootstrap: str, tmp_path: Path, unique_name
) -> None:
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        data_dir=tmp_path / "data",
        topic_prefix=unique_name("rate") + ".",
        topic_partitions=1,
        rate_burst_s=1.0,
    )
    create_topics(
        make_admin(settings), event_topic_specs(settings, list(resolve_topics(settings, ["likes"])))
    )
    files = KeyFile(settings.resolved_auth_keys_file)
    _, few_requests = files.create("few-requests", ["write:likes"], requests_per_s=3)
    _, few_events = files.create("few-events", ["write:likes"], events_per_s=4)
    _, other = files.create("other", ["write:likes"], requests_per_s=1000)
    like = {"url": "https://example.com/r", "user_id": "u"}
    with TestClient(create_app(settings)) as client:
        warm = post_acked(client, "/v1/events/likes", like, other)
        assert warm.status_code == 202, warm.text
        answers = [
            client.post("/v1/events/likes", json=like, headers=bearer(few_requests))
            for _ in range(6)
        ]
        codes = [a.status_code for a in answers]
        assert codes.count(202) >= 3 and 429 in codes, codes
        limited = answers[codes.index(429)]
        error = assert_error(limited, 429, "rate_limited")
        assert "request rate" in error["message"]
        assert int(limited.headers["Retry-After"]) >= 1
        # Another key is not slowed down by the first one.
        assert client.post("/v1/events/likes", json=like, headers=bearer(other)).status_code == 202

        batch = [like] * 4
        first = client.post("/v1/events/likes/batch", json=batch, headers=bearer(few_events))
        assert first.status_code == 202, first.text
        second = client.post("/v1/events/likes/batch", json=batch, headers=bearer(few_events))
        error = assert_error(second, 429, "rate_limited")
        assert "event rate" in error["message"] and int(second.headers["Retry-After"]) >= 1
        deadline = time.monotonic() + 10
        while (
            client.post("/v1/events/likes/batch", json=batch, headers=bearer(few_events))
        ).status_code != 202:
            assert time.monotonic() < deadline, "the event budget never refilled"
            time.sleep(0.1)


def test_loopback_without_key_file_is_open(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = Settings(bootstrap_servers=kafka_bootstrap, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/schemas").status_code == 200


def test_exposed_server_refuses_to_start_without_keys(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", ingest_host="0.0.0.0")
    with pytest.raises(ConfigError, match="without API keys"):
        create_app(settings)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")},
        "LOGSTREAM_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, "-m", "logstream", "ingest", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing to serve on 0.0.0.0"), lines


def test_openapi_documents_the_bearer_scheme(secured: tuple[Settings, Keys]) -> None:
    settings, keys = secured
    with TestClient(create_app(settings)) as client:
        doc = client.get("/openapi.json", headers=bearer(keys.admin)).json()
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    post = doc["paths"]["/v1/events/likes"]["post"]
    assert post["security"] == [{"apiKey": []}]
    for status in ("401", "403", "429"):
        ref = post["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/ErrorBody"


def test_invalid_batches_are_not_charged_to_the_event_rate(
    kafka_bootstrap: str, tmp_path: Path, unique_name
) -> None:
    """A batch is charged after validation, as a single event is: 422s cost no budget."""
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        data_dir=tmp_path / "data",
        topic_prefix=unique_name("charge") + ".",
        topic_partitions=1,
        rate_burst_s=1.0,
    )
    create_topics(
        make_admin(settings), event_topic_specs(settings, list(resolve_topics(settings, ["likes"])))
    )
    _, few_events = KeyFile(settings.resolved_auth_keys_file).create(
        "few-events", ["write:likes"], events_per_s=4
    )
    bad = [{"url": "https://example.com/r"}] * 4  # no user_id
    good = [{"url": "https://example.com/r", "user_id": "u"}] * 4
    with TestClient(create_app(settings)) as client:
        for _ in range(3):
            answer = client.post("/v1/events/likes/batch", json=bad, headers=bearer(few_events))
            assert_error(answer, 422, "validation_failed")
        answer = post_acked(client, "/v1/events/likes/batch", good, few_events)
        assert answer.status_code == 202, answer.text


def test_deleting_the_key_file_does_not_turn_auth_off(secured: tuple[Settings, Keys]) -> None:
    settings, keys = secured
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/schemas", headers=bearer(keys.reader)).status_code == 200
        settings.resolved_auth_keys_file.unlink()
        deadline = time.monotonic() + 10
        while client.get("/v1/schemas", headers=bearer(keys.reader)).status_code != 401:
            assert time.monotonic() < deadline, "the deleted key file was never noticed"
            time.sleep(0.05)
        assert_error(client.get("/v1/schemas"), 401, "unauthorized")  # not open either
        assert client.get("/healthz").status_code == 200


def test_broker_addresses_are_shown_to_admin_keys_only(secured: tuple[Settings, Keys]) -> None:
    settings, keys = secured
    with TestClient(create_app(settings)) as client:
        admin_doc = client.get("/asyncapi.json", headers=bearer(keys.admin))
        assert admin_doc.status_code == 200, admin_doc.text
        assert settings.bootstrap_servers.split(",")[0] in json.dumps(admin_doc.json()["servers"])
        for token in (keys.writer, keys.reader):
            doc = client.get("/asyncapi.json", headers=bearer(token))
            assert doc.status_code == 200 and "servers" not in doc.json(), doc.text
            assert settings.bootstrap_servers not in doc.text
            assert doc.json()["channels"]  # the contract itself is still there


def test_readyz_names_the_broker_to_admin_keys_only(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{sock.getsockname()[1]}"  # closed once the block ends
    settings = Settings(bootstrap_servers=down, data_dir=tmp_path / "data")
    files = KeyFile(settings.resolved_auth_keys_file)
    _, writer = files.create("writer", ["write:likes"])
    _, admin = files.create("ops", ["admin"])
    with TestClient(create_app(settings)) as client:
        answer = client.get("/readyz", headers=bearer(writer))
        assert answer.status_code == 503, answer.text
        assert down not in answer.text and "127.0.0.1" not in answer.text, answer.text
        assert answer.json()["broker"] == "unreachable"
        answer = client.get("/readyz", headers=bearer(admin))
        assert answer.status_code == 503 and down in answer.text, answer.text
