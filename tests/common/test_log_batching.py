"""`TurnBatchingHandler` (apps/common/logs.py): a loop turn's lines in one write, none held past it."""

from __future__ import annotations

import asyncio
import io
import logging
import threading

from apps.common.logs import JsonFormatter, TurnBatchingHandler, request_id_var


class Recording(io.StringIO):
    """A stream that remembers each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def logger_to(stream: Recording) -> tuple[logging.Logger, TurnBatchingHandler]:
    handler = TurnBatchingHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(f"test.batching.{id(stream)}")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    return logger, handler


def test_lines_of_one_loop_turn_go_out_together_at_its_end() -> None:
    stream = Recording()
    logger, _ = logger_to(stream)

    async def main() -> list[str]:
        for number in range(3):
            logger.info("line %d", number)
        held = list(stream.writes)
        await asyncio.sleep(0)  # the turn ends
        return held

    held = asyncio.run(main())
    assert held == []
    assert stream.writes == ["line 0\nline 1\nline 2\n"]


def test_lines_off_a_loop_are_written_at_once() -> None:
    stream = Recording()
    logger, _ = logger_to(stream)
    logger.info("first")
    assert stream.getvalue() == "first\n"
    logger.info("second")
    assert stream.writes == ["first\n", "second\n"]


def test_flush_writes_what_is_pending_and_another_thread_keeps_the_order() -> None:
    stream = Recording()
    logger, handler = logger_to(stream)

    async def main() -> None:
        logger.info("on the loop")
        other = threading.Thread(target=logger.info, args=("from a thread",))
        other.start()
        other.join()
        assert stream.getvalue() == "on the loop\nfrom a thread\n"  # the thread's line took it along
        logger.info("pending")
        handler.flush()  # as logging.shutdown does at exit
        assert stream.getvalue().endswith("pending\n")
        await asyncio.sleep(0)

    asyncio.run(main())
    assert stream.getvalue() == "on the loop\nfrom a thread\npending\n"


def test_a_line_keeps_the_request_id_of_when_it_was_logged() -> None:
    stream = Recording()
    logger, handler = logger_to(stream)
    handler.setFormatter(JsonFormatter())

    async def main() -> None:
        token = request_id_var.set("req-1")
        logger.info("served")
        request_id_var.reset(token)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert '"request_id":"req-1"' in stream.getvalue()
