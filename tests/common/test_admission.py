"""Admission control (`apps.common.admission`): refusals past the bounds, fairness between users, streams.

Handlers wait behind a gate the test opens, so "a request holds a slot" is a state, not a duration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from apps.common.admission import Admission
from apps.common.auth import PrincipalDep
from apps.common.errors import APIError
from apps.common.service import service_app
from apps.common.settings import AdmissionSettings, ServiceSettings
from tests.harness.issuer import TestIssuer
from tests.harness.server import serve
from tests.harness.waiting import CLIENT_TIMEOUT, eventually_async


def build(issuer: TestIssuer, **limits: Any) -> FastAPI:
    # The loop-lag refusal is tested on its own: on a busy test machine it would refuse anyone.
    limits.setdefault("max_loop_lag_ms", 0)
    # A held request keeps its slot until the gate opens, unless the test is about giving it back.
    limits.setdefault("slot_hold_ms", 0)
    settings = ServiceSettings(
        service_name="admission-test", auth=issuer.auth_settings(), admission=AdmissionSettings(**limits)
    )
    app = service_app(settings, title="admission")
    gate = {"open": False}
    app.state.gate = gate

    async def wait_for_gate() -> None:
        # Polled: the test opens the gate from its own thread, outside the server's event loop.
        while not gate["open"]:  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    @app.get("/work")
    async def work(principal: PrincipalDep) -> dict[str, str]:
        await wait_for_gate()
        return {"sub": principal.subject}

    @app.get("/stream")
    async def stream(principal: PrincipalDep) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            await wait_for_gate()
            yield b"data: last\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    return app


@dataclass
class Served:
    """The app under test, a client of it, and the moves every scenario makes."""

    app: FastAPI
    client: httpx.AsyncClient
    issuer: TestIssuer

    @property
    def admission(self) -> Admission:
        result: Admission = self.app.state.admission
        return result

    def auth(self, user: str | None) -> dict[str, str]:
        """`user`'s credentials (a bearer token minted for them); none for None."""
        return {"Authorization": f"Bearer {self.issuer.mint(user)}"} if user else {}

    def get(self, path: str, user: str | None = None) -> Coroutine[Any, Any, httpx.Response]:
        """`GET path` as `user`, or unauthenticated."""
        return self.client.get(path, headers=self.auth(user))

    def hold(self, count: int, user: str) -> list[asyncio.Task[httpx.Response]]:
        """`count` requests of `user` to `/work`, which stay in flight until `open_gate`."""
        return [asyncio.create_task(self.get("/work", user)) for _ in range(count)]

    def open_gate(self) -> None:
        self.app.state.gate["open"] = True

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        await eventually_async(condition, what)


def limits(**values: Any) -> pytest.MarkDecorator:
    """The admission settings the test's `served` app is built with."""
    return pytest.mark.parametrize("served", [values], indirect=True)


@pytest.fixture
async def served(issuer: TestIssuer, request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    app = build(issuer, **request.param)
    with serve(app) as server:
        async with httpx.AsyncClient(
            base_url=server.url, timeout=CLIENT_TIMEOUT, limits=httpx.Limits(max_connections=200)
        ) as client:
            yield Served(app, client, issuer)
        app.state.gate["open"] = True


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == ("rate_limit_error" if status == 429 else "service_unavailable")


@limits(max_concurrent=8, max_concurrent_per_user=2, max_wait_ms=5000)
async def test_a_user_past_their_bound_gets_429_and_admitted_requests_succeed(served: Served) -> None:
    held = served.hold(2, "flooder")
    await served.until(lambda: served.admission.per_user.get("flooder") == 2, "the flooder holds 2 slots")
    for response in await asyncio.gather(*(served.get("/work", "flooder") for _ in range(5))):
        assert_refused(response, 429, "too_many_concurrent_requests")
    served.open_gate()
    for response in await asyncio.gather(*held):
        assert response.status_code == 200
    # The slot is released just after the last byte is sent, so the client may see it first.
    await served.until(
        lambda: served.admission.in_flight == 0 and served.admission.per_user == {}, "every slot is free"
    )


@limits(max_concurrent=2, max_concurrent_per_user=2, max_waiting=0)
async def test_at_capacity_a_request_gets_503_and_health_stays_exempt(served: Served) -> None:
    held = served.hold(2, "a")
    await served.until(lambda: served.admission.in_flight == 2, "the app is at capacity")
    assert_refused(await served.get("/work", "b"), 503, "server_overloaded")
    assert (await served.get("/healthz")).status_code == 200
    assert (await served.get("/readyz")).status_code == 200
    # The app is full, so the door refuses before authentication: the guard would refuse it anyway.
    assert_refused(await served.get("/work"), 503, "server_overloaded")
    served.open_gate()
    assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
    # With room again, an unauthenticated request is refused by authentication, and not counted.
    assert (await served.get("/work")).status_code == 401


@limits(max_concurrent=1, max_concurrent_per_user=1, max_waiting=1, max_wait_ms=10_000)
async def test_a_queued_request_takes_the_slot_a_finished_one_frees(served: Served) -> None:
    (first,) = served.hold(1, "a")
    await served.until(lambda: served.admission.in_flight == 1, "the first request holds the slot")
    (queued,) = served.hold(1, "b")
    await served.until(lambda: len(served.admission._waiters) == 1, "the second request waits")
    # The queue is full: the next one is refused at once.
    assert_refused(await served.get("/work", "c"), 503, "server_overloaded")
    served.open_gate()
    assert (await first).status_code == 200
    assert (await queued).status_code == 200
    await served.until(lambda: served.admission.in_flight == 0, "the slot is free")


@limits(max_concurrent=6, max_concurrent_per_user=2, max_wait_ms=10_000)
async def test_one_user_flooding_does_not_keep_another_user_out(served: Served) -> None:
    flood = served.hold(60, "flooder")
    await served.until(lambda: served.admission.per_user.get("flooder") == 2, "the flooder holds 2 slots")
    # While the flood is held, the other user's request is admitted (it holds a slot) ...
    (other,) = served.hold(1, "quiet")
    await served.until(lambda: served.admission.per_user.get("quiet") == 1, "the quiet user holds a slot")
    assert not served.admission._waiters
    served.open_gate()
    # ... and answered; the flooder got its share and 429s for the rest, never a 503.
    assert (await other).status_code == 200
    statuses = [r.status_code for r in await asyncio.gather(*flood)]
    assert set(statuses) <= {200, 429} and statuses.count(200) >= 2


@limits(max_concurrent=1, max_concurrent_per_user=1, max_waiting=0, slot_hold_ms=50)
async def test_a_stream_keeps_its_users_share_until_it_ends_and_frees_its_app_slot(served: Served) -> None:
    async with served.client.stream("GET", "/stream", headers=served.auth("a")) as stream:
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        assert await anext(lines) == "data: first"
        # Past the hold, the still open stream gives the app's only slot back ...
        await served.until(lambda: served.admission.in_flight == 0, "the held slot is given back")
        # ... but not its user's share.
        assert_refused(await served.get("/work", "a"), 429, "too_many_concurrent_requests")
        assert served.admission.per_user == {"a": 1}
        # Another user's request is admitted while it streams (its share shows it: its slot, too, is
        # given back 50 ms later, a window a poll on a loaded machine can miss).
        (other,) = served.hold(1, "b")
        await served.until(
            lambda: served.admission.per_user == {"a": 1, "b": 1}, "the other user's request runs"
        )
        served.open_gate()
        rest = [line async for line in lines]
        assert "data: last" in rest
        assert (await other).status_code == 200
    await served.until(lambda: not served.admission.per_user, "the stream's share is free")
    assert served.admission.in_flight == 0 and served.admission.inside == 0
    assert (await served.get("/work", "a")).status_code == 200


@limits(max_concurrent=1, max_concurrent_per_user=4, max_wait_ms=5000, slot_hold_ms=50)
async def test_a_request_waiting_past_the_hold_gives_its_slot_back_and_keeps_running(served: Served) -> None:
    # A plain answer from a slow model: no byte goes out until it is whole.
    (slow,) = served.hold(1, "a")
    await served.until(lambda: served.admission.per_user == {"a": 1}, "the slow request is admitted")
    await served.until(lambda: served.admission.in_flight == 0, "its slot is given back past the hold")
    # The only slot goes to the next requests in turn, of this user or another, while the first runs.
    queued = served.hold(1, "b") + served.hold(1, "a")
    await served.until(lambda: served.admission.per_user == {"a": 2, "b": 1}, "both are admitted")
    served.open_gate()
    assert [r.status_code for r in await asyncio.gather(slow, *queued)] == [200, 200, 200]
    await served.until(lambda: not served.admission.per_user, "every share is free")
    assert served.admission.in_flight == 0 and served.admission.inside == 0


@limits(max_concurrent=1, max_waiting=0, slot_hold_ms=60_000)
async def test_a_stream_that_ends_within_the_hold_keeps_its_slot_to_the_end(served: Served) -> None:
    async with served.client.stream("GET", "/stream", headers=served.auth("a")) as stream:
        lines = stream.aiter_lines()
        assert await anext(lines) == "data: first"
        # Streaming, within its hold: the only slot is still the stream's.
        assert served.admission.in_flight == 1
        assert_refused(await served.get("/work", "b"), 503, "server_overloaded")
        served.open_gate()
        assert "data: last" in [line async for line in lines]
    await served.until(lambda: served.admission.in_flight == 0, "the ended stream's slot is free")
    assert served.admission.inside == 0 and not served.admission.per_user
    assert (await served.get("/work", "b")).status_code == 200


@limits(max_concurrent=1, max_wait_ms=5000, slot_hold_ms=50)
async def test_a_stream_still_open_after_the_hold_gives_its_slot_back(served: Served) -> None:
    async with served.client.stream("GET", "/stream", headers=served.auth("a")) as stream:
        lines = stream.aiter_lines()
        assert await anext(lines) == "data: first"
        await served.until(lambda: served.admission.in_flight == 0, "the held slot is given back")
        assert served.admission.per_user == {"a": 1}  # the user's share stays until the end
        (other,) = served.hold(1, "b")
        await served.until(lambda: served.admission.in_flight == 1, "the other user's request runs")
        served.open_gate()
        assert "data: last" in [line async for line in lines]
        assert (await other).status_code == 200
    await served.until(lambda: not served.admission.per_user, "the stream's share is free")
    assert served.admission.in_flight == 0 and served.admission.inside == 0


@limits(max_concurrent=8, max_concurrent_per_user=8, max_in_process=2)
async def test_past_max_in_process_the_door_refuses_before_authentication_and_probes_pass(
    served: Served,
) -> None:
    held = served.hold(2, "a")
    await served.until(lambda: served.admission.in_flight == 2, "two requests are in flight")
    assert served.admission.inside == 2
    assert_refused(await served.get("/work", "b"), 503, "server_overloaded")
    # Refused at the door: not even authenticated (no 401), and no slot or share taken.
    assert_refused(await served.get("/work"), 503, "server_overloaded")
    assert served.admission.per_user == {"a": 2}
    assert (await served.get("/healthz")).status_code == 200
    assert (await served.get("/readyz")).status_code == 200
    served.open_gate()
    assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
    await served.until(lambda: served.admission.inside == 0, "no request is inside")
    assert (await served.get("/work", "b")).status_code == 200


@limits(max_loop_lag_ms=10_000)
async def test_while_the_loop_lags_the_door_refuses_and_probes_pass(served: Served) -> None:
    served.open_gate()
    gate = served.admission
    measured = gate.saturated
    # Stands for `watch_loop` measuring a lag past the limit (a saturated core), which it re-measures
    # every 50 ms: that measurement itself is tested below.
    gate.saturated = lambda: True  # type: ignore[method-assign]
    assert_refused(await served.get("/work", "a"), 503, "server_overloaded")
    assert (await served.get("/healthz")).status_code == 200
    assert gate.inside == 0 and gate.in_flight == 0
    gate.saturated = measured  # type: ignore[method-assign]
    assert (await served.get("/work", "a")).status_code == 200


async def test_a_waiter_that_times_out_is_refused_and_leaves_no_slot_behind() -> None:
    gate = Admission(AdmissionSettings(max_concurrent=1, max_concurrent_per_user=5, max_wait_ms=1))
    await gate.admit("a")
    with pytest.raises(APIError) as refused:
        await gate.admit("b")
    assert refused.value.status_code == 503 and refused.value.headers == {"Retry-After": "1"}
    assert gate.per_user == {"a": 1} and not gate._waiters
    gate.release_user("a")
    gate.release_slot()
    assert gate.in_flight == 0 and gate.per_user == {}


async def test_a_waiter_cancelled_after_being_handed_a_slot_gives_it_back() -> None:
    gate = Admission(AdmissionSettings(max_concurrent=1, max_wait_ms=10_000))
    await gate.admit("a")
    waiting = asyncio.create_task(gate.admit("b"))
    await asyncio.sleep(0)
    assert len(gate._waiters) == 1
    gate.release_user("a")
    gate.release_slot()  # hands the slot to "b" ...
    waiting.cancel()  # ... which is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert gate.in_flight == 0 and gate.per_user == {}


async def test_a_lagging_event_loop_refuses_new_requests_with_503() -> None:
    gate = Admission(AdmissionSettings(max_loop_lag_ms=100))
    gate.loop_lag = 0.5  # as `watch_loop` measures it when the process is out of CPU
    with pytest.raises(APIError) as refused:
        await gate.admit("a")
    assert refused.value.status_code == 503 and refused.value.code == "server_overloaded"
    assert gate.in_flight == 0 and gate.per_user == {}
    gate.loop_lag = 0.0
    await gate.admit("a")
    assert gate.in_flight == 1


async def test_the_loop_watch_measures_a_blocked_loop() -> None:
    gate = Admission(AdmissionSettings(max_loop_lag_ms=100))
    watch = asyncio.create_task(gate.watch_loop(interval=0.01))
    await asyncio.sleep(0)
    time.sleep(0.3)  # noqa: ASYNC251 - blocking the loop on purpose, as a saturated core does
    for _ in range(100):  # until the watch has woken (late) once
        await asyncio.sleep(0)
        if gate.loop_lag:
            break
    watch.cancel()
    assert gate.saturated()


async def queue(gate: Admission, *users: str) -> list[asyncio.Task[None]]:
    """`users`' requests, each queued for the app slot after the one before it."""
    waiting = []
    for user in users:
        waiting.append(asyncio.create_task(gate.admit(user)))
        await asyncio.sleep(0)
    return waiting


async def test_a_draining_queue_admits_its_oldest_waiter_first() -> None:
    gate = Admission(AdmissionSettings(max_concurrent=1, max_wait_ms=10_000))
    await gate.admit("holder")
    first, second = await queue(gate, "first", "second")
    gate.release_slot()
    await first
    assert not second.done() and gate.in_flight == 1
    gate.release_slot()
    await second


async def test_a_standing_queue_admits_its_newest_waiter_and_lets_the_oldest_expire() -> None:
    gate = Admission(AdmissionSettings(max_concurrent=1, max_concurrent_per_user=5, max_wait_ms=2_000))
    await gate.admit("holder")
    (oldest,) = await queue(gate, "oldest")
    await asyncio.sleep(1.2)  # the oldest has waited past half of max_wait_ms: the queue is standing
    middle, newest = await queue(gate, "middle", "newest")
    gate.release_slot()
    await newest
    assert not middle.done() and not oldest.done()
    gate.release_slot()
    await middle
    with pytest.raises(APIError) as refused:
        await oldest
    assert refused.value.status_code == 503
    assert gate.in_flight == 1 and not gate._waiters
