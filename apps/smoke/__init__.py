"""`jan-server smoke --base-url URL`: an end-to-end check of a deployed stack through its public entry.

It does what a new user would do — health, guest login, models, a chat completion (plain and
streamed) into a conversation, a response with an MCP tool round, a media upload and its resolve,
MCP `tools/list` — prints one line per step with its result and time, deletes everything it
created, and exits non-zero if any step failed. The whole run is bounded by `--timeout`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TextIO

import httpx

from apps.smoke import steps
from apps.smoke.steps import SmokeSession, StepFailed, StepSkipped

Outcome = Literal["pass", "FAIL", "skip"]
Step = Callable[[SmokeSession], Awaitable[str]]

STEPS: tuple[tuple[str, Step], ...] = (
    ("health", steps.health),
    ("guest login", steps.guest_login),
    ("models", steps.models),
    ("chat completion", steps.chat),
    ("chat completion, streamed", steps.chat_stream),
    ("conversation items", steps.conversation_items),
    ("response with an MCP tool", steps.response_with_tool),
    ("media upload", steps.media_upload),
    ("media resolve", steps.media_resolve),
    ("MCP tools/list", steps.mcp_tools_list),
)


@dataclass(frozen=True, slots=True)
class StepResult:
    name: str
    outcome: Outcome
    seconds: float
    detail: str


async def run_smoke(
    base_url: str,
    *,
    credential: str | None = None,
    model: str | None = None,
    timeout: float = 180.0,
    request_timeout: float = 60.0,
) -> list[StepResult]:
    """Run every step in order, then the cleanup, within `timeout` seconds in all."""
    deadline = time.monotonic() + timeout
    results: list[StepResult] = []
    async with httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=request_timeout) as http:
        session = SmokeSession(http=http, base_url=base_url.rstrip("/"), model=model, credential=credential)
        for name, step in STEPS:
            results.append(await _run_step(name, step, session, deadline))
        # Cleanup gets its own short budget so a run that timed out still removes what it made.
        results.append(await _run_step("cleanup", steps.cleanup, session, time.monotonic() + 30.0))
    return results


async def _run_step(name: str, step: Step, session: SmokeSession, deadline: float) -> StepResult:
    started = time.monotonic()
    remaining = deadline - started
    if remaining <= 0:
        return StepResult(name, "skip", 0.0, "the smoke run's time budget is spent")
    outcome: Outcome
    try:
        detail = await asyncio.wait_for(step(session), timeout=remaining)
        outcome = "pass"
    except StepSkipped as exc:
        outcome, detail = "skip", str(exc)
    except StepFailed as exc:
        outcome, detail = "FAIL", str(exc)
    except TimeoutError:
        outcome, detail = "FAIL", f"no answer within the remaining {remaining:.0f} s"
    except Exception as exc:  # any error is this step's failure, reported in the table
        outcome, detail = "FAIL", _describe(exc)
    return StepResult(name, outcome, time.monotonic() - started, detail)


def _describe(exc: BaseException) -> str:
    # The MCP client raises from inside task groups: report the first real cause, not the group.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def passed(results: Sequence[StepResult]) -> bool:
    return all(result.outcome == "pass" for result in results)


def print_table(results: Sequence[StepResult], out: TextIO) -> None:
    width = max(len(result.name) for result in results)
    for result in results:
        millis = f"{result.seconds * 1000:8.0f} ms"
        out.write(f"{result.name:<{width}}  {result.outcome:<4}  {millis}  {result.detail}\n")
    failed = [result.name for result in results if result.outcome != "pass"]
    summary = "all steps passed" if not failed else f"not passed: {', '.join(failed)}"
    out.write(f"{sum(r.outcome == 'pass' for r in results)} passed, {len(failed)} failed — {summary}\n")
