"""Clients that POST single likes to ingest and retry like a well-behaved client should.

Each event gets a client-chosen `event_id`; on a 503, a timeout or a connection error the
SAME body is sent again (same id, same url, same time) after a short backoff, until a 202 or
the retry budget runs out. That is the README's contract ("retry with the same `event_id`"),
and it is what puts duplicates in the log when an ack is lost: the suite then checks that
every view counts such an event once.

Every 202 is recorded with when its request was sent and where the event landed, so the
suite can tell, per partition, when writes were accepted again after a fault.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.integration.likes import BASE_MS, DAY_MS

URLS = [f"https://faults.example/page/{i}" for i in range(48)]  # spread over every partition
USERS = [f"user-{i}" for i in range(500)]


@dataclass(frozen=True, slots=True)
class Ack:
    """A 202: the event is in the log at (partition, offset), says ingest."""

    event_id: str
    partition: int
    offset: int
    sent: float  # time.monotonic() when the acknowledged attempt was sent
    received: float
    attempts: int


@dataclass
class LoadStats:
    attempts: int = 0
    retries: int = 0
    statuses: dict[str, int] = field(default_factory=dict)  # "503", "ConnectError", ...
    given_up: list[str] = field(default_factory=list)  # event ids that never got a 202
    unexpected: list[str] = field(default_factory=list)  # answers no retry can fix


class LoadGenerator:
    """`threads` clients, together about `rate` new events/s, retrying each until acknowledged."""

    def __init__(
        self,
        base_url: str,
        *,
        threads: int = 4,
        rate: float = 150.0,
        request_timeout_s: float = 5.0,
        retry_budget_s: float = 150.0,
        seed: int = 1,
    ) -> None:
        self.url = f"{base_url}/v1/events/likes"
        self.threads = threads
        self.interval = threads / rate
        self.timeout = httpx.Timeout(request_timeout_s, connect=1.0)
        self.retry_budget_s = retry_budget_s
        self.seed = seed
        self.acks: list[Ack] = []  # appended by the client threads (list.append is atomic)
        self.stats = LoadStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.threads):
            worker = threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self, timeout_s: float) -> list[str]:
        """Stop making new events, let each client finish (or give up) its current one;
        returns the names of clients still running after `timeout_s` (stuck)."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        return [w.name for w in self._workers if w.is_alive()]

    # ----- what the suite asks while the load runs ---------------------------------------
    def mark(self) -> int:
        """A position in the ack list: later questions look only at acks after it."""
        return len(self.acks)

    def first_acks_after(self, since: float, mark: int = 0) -> dict[int, Ack]:
        """Per partition, the earliest-received ack of a request SENT after `since`,
        looking at acks from position `mark` on.

        Sent-after, not received-after: an answer to a request that was already in flight at
        a kill may have been settled before it, so only a request made after the fault proves
        that the partition accepts writes again."""
        first: dict[int, Ack] = {}
        for ack in self.acks[mark:]:
            if ack.sent >= since:
                best = first.get(ack.partition)
                if best is None or ack.received < best.received:
                    first[ack.partition] = ack
        return first

    def wait_partitions_writable(
        self, since: float, partitions: int, timeout_s: float, mark: int = 0
    ) -> dict[int, float]:
        """Per partition, seconds from `since` to its first 202 of a request sent after it;
        partitions without one after `timeout_s` are missing from the answer. Polls only the
        acks that arrived since the last look (the clients share this process's GIL)."""
        deadline = since + timeout_s
        first: dict[int, Ack] = {}
        while len(first) < partitions and time.monotonic() <= deadline:
            end = len(self.acks)
            for partition, ack in self.first_acks_after(since, mark).items():
                if partition not in first or ack.received < first[partition].received:
                    first[partition] = ack
            mark = end
            time.sleep(0.05)
        return {p: ack.received - since for p, ack in sorted(first.items())}

    # ----- one client -------------------------------------------------------------------
    def _run(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        with httpx.Client(timeout=self.timeout) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                body = {
                    "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "url": rng.choice(URLS),
                    "user_id": rng.choice(USERS),
                    # Event times inside the window the view comparison reads (likes.py).
                    "occurred_at": BASE_MS + rng.randrange(4 * DAY_MS),
                }
                self._send_until_acknowledged(client, body)
                next_at = max(next_at + self.interval, time.monotonic() - 1.0)
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)

    def _send_until_acknowledged(self, client: httpx.Client, body: dict[str, Any]) -> None:
        started = time.monotonic()
        backoff = 0.05
        attempts = 0
        while True:
            attempts += 1
            sent = time.monotonic()
            try:
                response = client.post(self.url, json=body)
                outcome = str(response.status_code)
            except httpx.HTTPError as exc:
                response, outcome = None, type(exc).__name__
            self._count(outcome, attempts)
            if response is not None and response.status_code == 202:
                answer = response.json()
                self.acks.append(
                    Ack(
                        body["event_id"],
                        answer["partition"],
                        answer["offset"],
                        sent,
                        time.monotonic(),
                        attempts,
                    )
                )
                return
            if response is not None and response.status_code != 503:
                with self._lock:
                    self.stats.unexpected.append(f"{outcome}: {response.text[:200]}")
                return
            if time.monotonic() - started > self.retry_budget_s:
                with self._lock:
                    self.stats.given_up.append(body["event_id"])
                return
            time.sleep(backoff)
            backoff = min(backoff * 2, 0.5)

    def _count(self, outcome: str, attempts: int) -> None:
        with self._lock:
            self.stats.attempts += 1
            self.stats.retries += attempts > 1
            self.stats.statuses[outcome] = self.stats.statuses.get(outcome, 0) + 1
