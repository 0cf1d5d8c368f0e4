"""Database spans of several apps in one process (local mode runs all four in one) stay each app's own."""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text

from apps.common.db import create_engine
from apps.common.telemetry import setup_telemetry


async def test_each_apps_statements_are_traced_by_that_app_and_checkouts_are_not_spans(
    database_url: str,
) -> None:
    traced = []
    for name in ("first-app", "second-app"):
        exporter = InMemorySpanExporter()
        telemetry = setup_telemetry(
            FastAPI(),
            service_name=name,
            version="0",
            environment="test",
            otlp_endpoint=None,
            span_exporter=exporter,
        )
        engine = create_engine(database_url, schema="public")
        telemetry.instrument_engine(engine)
        traced.append((name, exporter, telemetry, engine))
    try:
        for name, _, _, engine in traced:
            async with engine.connect() as connection:
                await connection.execute(text(f"SELECT '{name}'"))
        for name, exporter, telemetry, _ in traced:
            telemetry.tracer_provider.force_flush()
            spans = exporter.get_finished_spans()
            statements = [(span, dict(span.attributes or {})) for span in spans]
            statements = [(span, found) for span, found in statements if "db.statement" in found]
            assert [found["db.statement"] for _, found in statements] == [f"SELECT '{name}'"], spans
            assert {span.resource.attributes["service.name"] for span, _ in statements} == {name}
            assert not [span for span in spans if span.name == "connect"]
    finally:
        for _, _, telemetry, engine in traced:
            await engine.dispose()
            telemetry.shutdown()
