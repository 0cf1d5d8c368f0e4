"""What `configure_logging` makes each record carry (apps/common/logs.py): the fields both formats
write, and no caller lookup, which neither format writes and which walked the stack on every record."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from apps.common.logs import configure_logging, request_id_var


@pytest.fixture
def configured() -> Iterator[io.StringIO]:
    """`configure_logging()`, its handler writing to a buffer; the switches it turns put back after."""
    switches = (logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    configure_logging()
    buffer = io.StringIO()
    ours = [handler for handler in root.handlers if getattr(handler, "_jan_handler", False)]
    assert len(ours) == 1
    ours[0].setStream(buffer)  # type: ignore[attr-defined]
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)
    logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing = switches


def test_a_record_skips_the_caller_lookup_and_keeps_its_fields(configured: io.StringIO) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("test.records")
    keep = Keep()
    logger.addHandler(keep)
    token = request_id_var.set("req-1")
    try:
        logger.warning("answered %s", "ok", extra={"status": 200})
    finally:
        request_id_var.reset(token)
        logger.removeHandler(keep)
    logging.getLogger().handlers[-1].flush()
    (record,) = records
    assert (record.lineno, record.funcName) == (0, "(unknown function)")  # the stack was not walked
    line = orjson.loads(configured.getvalue())
    assert (
        line["message"] == "answered ok" and line["level"] == "warning" and line["logger"] == "test.records"
    )
    assert line["request_id"] == "req-1" and line["status"] == 200
