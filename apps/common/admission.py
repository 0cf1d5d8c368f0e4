"""Admission control: how many requests an app works on at once, in total and per user.

Past its knee an app that accepts everything queues everything: latency grows to tens of seconds and
throughput falls (issue 18 measured 58 req/s at 200 offered, against a knee near 150). Bounding the
work in flight keeps the event loop at the knee; what is beyond the bound is answered at once:

- a user already running `max_concurrent_per_user` requests gets **429** (`rate_limit_error`) and
  `Retry-After`, without waiting: their own requests are what holds them back;
- when the app runs `max_concurrent` requests, a new one waits in a short queue (at most
  `max_waiting` requests, each at most `max_wait_ms`) for a slot another request frees; beyond that,
  **503** (`service_unavailable`) and `Retry-After`. A draining queue admits its oldest waiter first,
  a standing one its newest (`Admission._next_waiter`);
- when the process's event loop lags more than `max_loop_lag_ms` behind (measured every 50 ms),
  **503** at once: the process is out of CPU, and a request admitted now would only slow every request
  already in flight. This is the signal that catches a saturated core, which a concurrency bound
  alone does not: the requests then queue before they ever reach the bound (in the loop's ready
  queue). A flood that saturates the core by itself is for the gateway's rate limits to stop; this
  keeps the process answering meanwhile.

Where the user is known. The per-user bound is keyed on the authenticated `Principal.user_id`, so a user
holding several API keys or tokens is one user. The route guard (`apps.common.guard`) authenticates
before the body is parsed, and admits right after: authentication is cheap (a cached key lookup or a
signature check), and keying on the raw credential before it would let one user with ten keys take ten
shares. The per-user check comes before the app-wide queue, so a user's excess requests are refused
without ever holding an app slot: however hard one user floods, at most `max_concurrent_per_user` of
the app's slots are theirs, and another user's request finds a free slot (or waits at most
`max_wait_ms` behind other users).

Only routes that authenticate a caller are admitted this way; health, readiness, JWKS and the
internal routes (peer-to-peer, guarded by the internal token) never are, so probes and API-key
validation keep working under overload.

The door. When the process is out of CPU, requests queue in the event loop before they reach the
guard, so a refusal decided there comes late (issue 18 measured refusals seconds after the request)
and costs nearly what serving does (every middleware, a span, authentication). `Admission.door` runs
first, in the app's own `__call__` before any middleware: while the loop lags past
`max_loop_lag_ms`, or `max_in_process` requests are already inside (admitted or not yet), or every
app slot is taken and the wait queue is full (the guard would refuse it too, after authenticating it),
it answers 503 with a prebuilt body, at a small fraction of a request's cost (`bench/load.py`: with the
last check, 727 of 800 req/s served at twice the knee instead of 348-444, refusals within 44 ms at p99
instead of seconds). Health, readiness, JWKS and the internal routes pass the door unconditionally.

What a slot bounds. The door gives each request a `Ticket`, the guard fills it, and the door releases it
when the app's ASGI call returns. An app slot is the CPU-heavy part of a request: authentication, the
body, the database, sending to the model. A request still running `slot_hold_ms` after it was admitted
gives its app slot back and keeps running: by then it is waiting on something outside the process (a
model generating a whole answer before its first byte, a stream paced by its model, a tool), which
costs little CPU, so holding slots for all of it would cap a process at `max_concurrent` requests to
a slow model while its CPU idles (with a model taking 5 s an answer, 16 slots would be ~3 answers a
second). A request that ends within the hold (a fast upstream, a short stream whose relay costs as
much CPU as a plain answer) keeps its slot to the end, so a flood of fast requests is bounded by the
slots, and what is left inside the process by `max_in_process`. (`bench/load.py`, quiet machine, at
twice the knee, streams only: with the slot given back at the headers 510 of 800 req/s were served,
admitted p99 168 ms, refusal p99 350 ms; with a 250 ms hold 461-482, 128-170 ms and 105-220 ms.) The
user's share is kept until the request ends (a user's open streams and slow answers count against
`max_concurrent_per_user`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from apps.common.errors import APIError
from apps.common.settings import AdmissionSettings

SCOPE_KEY = "jan.admission"
LAG_INTERVAL = 0.05
# Paths the door never closes on: probes, key sets, peer-to-peer routes (their own token guards them).
EXEMPT_PREFIXES = ("/healthz", "/readyz", "/.well-known/", "/internal/")
_CAPACITY_MESSAGE = "The service is at capacity; retry after the indicated delay."


class Admission:
    """Counts of requests in flight, app-wide and per user, with a short wait for an app slot."""

    def __init__(self, settings: AdmissionSettings) -> None:
        self.settings = settings
        self.in_flight = 0
        self.per_user: dict[str, int] = {}
        # Each waiter with the loop time it joined the queue at.
        self._waiters: deque[tuple[asyncio.Future[bool], float]] = deque()
        self.loop_lag = 0.0  # seconds, the latest measurement of `watch_loop`
        self.inside = 0  # requests past the door, admitted or not yet
        self._door_body = orjson.dumps(self._overloaded().body())
        self._door_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._door_body)).encode()),
            (b"retry-after", str(settings.retry_after_seconds).encode()),
        ]

    async def door(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        """Run `app` for this request, or answer 503 at once when the process cannot take it.

        The request's `Ticket` is given here and released when `app` returns: for a streaming
        response, when the stream has ended (or the client has gone)."""
        if scope["type"] != "http" or not self.settings.enabled:
            await app(scope, receive, send)
            return
        counted = not _exempt(scope)
        if counted and (self.inside >= self.settings.max_in_process or self.saturated() or self.full()):
            await send({"type": "http.response.start", "status": 503, "headers": self._door_headers})
            await send({"type": "http.response.body", "body": self._door_body})
            return
        ticket = scope[SCOPE_KEY] = Ticket(self)
        self.inside += counted
        try:
            await app(scope, receive, send)
        finally:
            self.inside -= counted
            ticket.release()

    async def watch_loop(self, interval: float = LAG_INTERVAL) -> None:
        """Measure how late the event loop wakes a sleeper; runs for the app's lifetime."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(interval)
            self.loop_lag = max(0.0, loop.time() - started - interval)

    def full(self) -> bool:
        """Every app slot is taken and the wait queue is full: the guard would refuse this request too,
        after authenticating it and parsing its body; the door refuses it for a fraction of that."""
        limits = self.settings
        return self.in_flight >= limits.max_concurrent and len(self._waiters) >= limits.max_waiting

    def saturated(self) -> bool:
        limit = self.settings.max_loop_lag_ms
        return limit > 0 and self.loop_lag * 1000 > limit

    async def admit(self, user_id: str) -> None:
        """Take a slot for `user_id`, or raise the 429/503 that says why not."""
        limits = self.settings
        held = self.per_user.get(user_id, 0)
        if held >= limits.max_concurrent_per_user:
            raise self._refusal(
                429,
                f"Too many concurrent requests: at most {limits.max_concurrent_per_user} per user.",
                "too_many_concurrent_requests",
            )
        if self.saturated():
            raise self._overloaded()
        self.per_user[user_id] = held + 1
        try:
            await self._take_app_slot()
        except BaseException:
            self.release_user(user_id)
            raise

    async def _take_app_slot(self) -> None:
        limits = self.settings
        if self.in_flight < limits.max_concurrent and not self._waiters:
            self.in_flight += 1
            return
        if len(self._waiters) >= limits.max_waiting or limits.max_wait_ms == 0:
            raise self._overloaded()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        entry = (waiter, loop.time())
        self._waiters.append(entry)
        expiry = loop.call_later(limits.max_wait_ms / 1000, _expire, waiter)
        try:
            handed = await waiter
        except asyncio.CancelledError:
            # Cancelled after a slot was handed over but before this task resumed: give it back.
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.release_slot()
            raise
        finally:
            expiry.cancel()
            if entry in self._waiters:
                self._waiters.remove(entry)
        if not handed:
            raise self._overloaded()

    def release_slot(self) -> None:
        # The slot passes straight to a waiter, so a newcomer cannot overtake the queue.
        while self._waiters:
            waiter = self._next_waiter()
            if not waiter.done():
                waiter.set_result(True)
                return
        self.in_flight -= 1

    def _next_waiter(self) -> asyncio.Future[bool]:
        """The oldest waiter, unless the queue is standing: then the newest (adaptive LIFO).

        A queue whose oldest waiter has waited half of `max_wait_ms` is not a burst draining but an
        app past its knee, where some waiter will be refused whatever the order. In FIFO order every
        admitted request would first wait about as long as the queue is deep, and that wait is most
        of the admitted latency past the knee; serving the newest one admits it at once, and those
        already waiting longest are the ones that expire with a 503 after `max_wait_ms`."""
        oldest, oldest_since = self._waiters[0]
        standing = oldest.get_loop().time() - oldest_since > self.settings.max_wait_ms / 2000
        return (self._waiters.pop() if standing else self._waiters.popleft())[0]

    def release_user(self, user_id: str) -> None:
        held = self.per_user.get(user_id, 0) - 1
        if held > 0:
            self.per_user[user_id] = held
        else:
            self.per_user.pop(user_id, None)

    def _overloaded(self) -> APIError:
        return self._refusal(503, _CAPACITY_MESSAGE, "server_overloaded")

    def _refusal(self, status: int, message: str, code: str) -> APIError:
        return APIError(
            status, message, code=code, headers={"Retry-After": str(self.settings.retry_after_seconds)}
        )


def _exempt(scope: Scope) -> bool:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.startswith(EXEMPT_PREFIXES)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


@dataclass
class Ticket:
    """One request's admission: filled by the route guard, released by the door."""

    admission: Admission
    user_id: str | None = field(default=None, init=False)
    holds_slot: bool = field(default=False, init=False)
    _hold: asyncio.TimerHandle | None = field(default=None, init=False)

    async def admit(self, user_id: str) -> None:
        if self.user_id is not None:
            return
        await self.admission.admit(user_id)
        self.user_id = user_id
        self.holds_slot = True
        hold = self.admission.settings.slot_hold_ms
        if hold:
            self._hold = asyncio.get_running_loop().call_later(hold / 1000, self.release_slot)

    def release_slot(self) -> None:
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        if self.holds_slot:
            self.holds_slot = False
            self.admission.release_slot()

    def release(self) -> None:
        self.release_slot()
        if self.user_id is not None:
            self.admission.release_user(self.user_id)
            self.user_id = None


async def admit(scope: Scope, user_id: str) -> None:
    """Admit the request of `scope` for `user_id` (no-op when the app has no admission control)."""
    ticket: Ticket | None = scope.get(SCOPE_KEY)
    if ticket is not None:
        await ticket.admit(user_id)
