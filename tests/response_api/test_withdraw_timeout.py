"""Undoing a write the client is told failed is bounded: a stuck llm-api does not hold up the error."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from apps.response_api.services import ending
from apps.response_api.services.conversations import Conversations
from apps.response_api.services.ending import ResponseWriter


async def test_a_withdrawal_llm_api_never_answers_gives_up_and_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    received = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the request arrives; no answer ever leaves
        received.set()
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(ending, "WITHDRAW_SECONDS", 0.2)
    async with server, aiohttp.ClientSession() as http:
        conversations = Conversations(http, f"http://127.0.0.1:{port}", "internal")
        writer = ResponseWriter(None, conversations, budget=1.0, background_budget=1.0)  # type: ignore[arg-type]
        with caplog.at_level(logging.WARNING, logger=ending.__name__):
            await asyncio.wait_for(writer.withdraw("conv_x", {}, key="resp_x"), timeout=10)
    assert received.is_set()
    assert any("stays" in record.getMessage() for record in caplog.records)
