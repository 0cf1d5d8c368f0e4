"""What the kit's database instrumentation traces."""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text
from sqlalchemy.engine import Engine

from apps.common.db import create_engine
from apps.common.telemetry import setup_telemetry


async def test_no_connect_span_around_each_statement(database_url: str) -> None:
    """The instrumentation's `connect` span (one per pool checkout, i.e. around every statement the
    apps run) is removed; statements keep their own spans, from the engine's event listeners."""
    telemetry = setup_telemetry(
        FastAPI(), service_name="db-test", version="0", environment="test", otlp_endpoint=None
    )
    exporter = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    engine = create_engine(database_url, schema="public", pool_size=1)
    try:
        telemetry.instrument_engine(engine)
        assert not hasattr(Engine.connect, "__wrapped__")
        with telemetry.tracer.start_as_current_span("request"):
            async with engine.connect() as connection:
                assert await connection.scalar(text("SELECT 1")) == 1
        assert "connect" not in {span.name for span in exporter.get_finished_spans()}
    finally:
        await engine.dispose()
        telemetry.shutdown()
