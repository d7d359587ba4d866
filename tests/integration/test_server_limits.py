"""The real server (`logstream ingest`, uvicorn) under abusive clients: 413 reaches clients
that read only after sending (requests, urllib), huge or countless headers get 431, slow
clients get 408 and are cut off, and the connection cap answers 503."""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.ingest_server import running_ingest

REPO = Path(__file__).resolve().parents[2]
HEADER_TIMEOUT_S = 1.5
MAX_CONNECTIONS = 12
MAX_PER_CLIENT = 8
MAX_BODY = 1024 * 1024
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")},
        "PYTHONPATH": str(REPO),
        "LOGSTREAM_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOGSTREAM_DATA_DIR": str(tmp_path_factory.mktemp("limits")),
        "LOGSTREAM_INGEST_MAX_BODY_BYTES": str(MAX_BODY),
        "LOGSTREAM_INGEST_MAX_HEADER_BYTES": "8192",
        "LOGSTREAM_INGEST_MAX_HEADERS": "50",
        "LOGSTREAM_INGEST_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "LOGSTREAM_INGEST_BODY_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "LOGSTREAM_INGEST_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "LOGSTREAM_INGEST_MAX_CONNECTIONS_PER_CLIENT": str(MAX_PER_CLIENT),
    }
    with running_ingest(env) as base:
        yield base


def raw(
    base: str, payload: bytes, wait_s: float = 10.0, source: str | None = None
) -> tuple[bytes, float]:
    """Send `payload` on a fresh connection (from loopback address `source` if given); what
    came back until the server closed it."""
    host, port = base.removeprefix("http://").split(":")
    started = time.monotonic()
    bind = (source, 0) if source else None
    with socket.create_connection((host, int(port)), timeout=wait_s, source_address=bind) as sock:
        sock.sendall(payload)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            received += chunk
    return received, time.monotonic() - started


def too_big() -> bytes:
    return b"[" + b'{"url":"https://e.com/x","user_id":"u"},' * (4 * MAX_BODY // 40) + b"{}]"


def test_413_reaches_requests_and_urllib(server: str) -> None:
    body = too_big()
    for _ in range(3):
        answer = requests.post(f"{server}/v1/events/likes/batch", data=body, headers=JSON)
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["code"] == "payload_too_large"
        closing = requests.post(
            f"{server}/v1/events/likes/batch", data=body, headers={**JSON, "Connection": "close"}
        )
        assert closing.status_code == 413
        request = urllib.request.Request(f"{server}/v1/events/likes/batch", data=body, headers=JSON)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=30)
        assert caught.value.code == 413


def test_oversized_or_countless_headers_get_431(server: str) -> None:
    huge, _ = raw(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 5_000_000)
    assert huge.startswith(b"HTTP/1.1 431 "), huge[:100]
    assert b'"headers_too_large"' in huge
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(60))
    answer, _ = raw(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ") and b'"too_many_headers"' in answer
    assert requests.get(f"{server}/healthz", timeout=5).status_code == 200


def test_a_large_header_block_in_one_read_or_pipelined_gets_431(server: str) -> None:
    """The limit holds however the bytes arrive: a 100 KB header block sent complete in one
    write, and the same behind a small pipelined request on one connection."""
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 100_000 + b"\r\n\r\n"
    answer, _ = raw(server, big)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert b'"headers_too_large"' in answer
    small = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    answer, _ = raw(server, small + big)  # the first may be answered or not: the big one never
    assert b"HTTP/1.1 431 " in answer and b'"headers_too_large"' in answer, answer[-300:]
    assert requests.get(f"{server}/healthz", timeout=5).status_code == 200


def test_slow_clients_are_cut_off(server: str) -> None:
    answer, took = raw(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert HEADER_TIMEOUT_S * 0.8 <= took < HEADER_TIMEOUT_S + 3
    answer, took = raw(server, b"")  # connects and says nothing
    assert answer == b"" and took < HEADER_TIMEOUT_S + 3
    partial = (
        b"POST /v1/events/likes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"url":'
    )
    answer, took = raw(server, partial)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"body" in answer, answer[:200]
    assert took < HEADER_TIMEOUT_S + 3


def test_connection_cap_answers_503(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    # From two loopback addresses, so that no one address passes its own share.
    held = [
        socket.create_connection((host, int(port)), source_address=(f"127.0.0.{1 + i % 2}", 0))
        for i in range(MAX_CONNECTIONS)
    ]
    try:
        deadline = time.monotonic() + 5
        answer = b""
        while not answer.startswith(b"HTTP/1.1 503 ") and time.monotonic() < deadline:
            answer, _ = raw(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", source="127.0.0.3")
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:100]
        assert b'"too_many_connections"' in answer
        assert b"retry-after: 1" in answer.lower()
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while requests.get(f"{server}/healthz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_one_client_holds_at_most_its_share_of_connections(server: str) -> None:
    """One peer address (loopback too) gets 503 past its share while the cap is not
    reached, and another address is still served."""
    host, port = server.removeprefix("http://").split(":")
    hog = "127.0.0.4"
    held = [
        socket.create_connection((host, int(port)), source_address=(hog, 0))
        for _ in range(MAX_PER_CLIENT)
    ]
    try:
        deadline = time.monotonic() + 5
        answer = b""
        while not answer.startswith(b"HTTP/1.1 503 ") and time.monotonic() < deadline:
            answer, _ = raw(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", source=hog)
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:100]
        assert b'"too_many_client_connections"' in answer and b"retry-after: 1" in answer.lower()
        other, _ = raw(
            server,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            source="127.0.0.5",
        )
        assert other.startswith(b"HTTP/1.1 200 "), other[:100]
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while True:
        answer, _ = raw(
            server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", source=hog
        )
        if answer.startswith(b"HTTP/1.1 200 "):
            break
        assert time.monotonic() < deadline, "the share was not given back"
        time.sleep(0.1)
