"""Database spans of several apps in one process (local mode runs all four in one) stay each app's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv.metrics import MetricInstruments
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

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


def _pool_listeners(engine: AsyncEngine) -> list[object]:
    """Listeners of the pool's checkout/checkin/connect/close events that belong to the instrumentation."""
    dispatch = engine.sync_engine.pool.dispatch
    found: list[object] = []
    for listeners in (dispatch.checkout, dispatch.checkin, dispatch.connect, dispatch.close):
        found += [fn for fn in listeners if isinstance(getattr(fn, "__self__", None), EngineTracer)]
    return found


@asynccontextmanager
async def instrumented(database_url: str, **options: Any) -> AsyncIterator[AsyncEngine]:
    """An engine instrumented by a fresh app's telemetry (`setup_telemetry`'s `options`)."""
    telemetry = setup_telemetry(
        FastAPI(), service_name="pool", version="0", environment="test", otlp_endpoint=None, **options
    )
    engine = create_engine(database_url, schema="public")
    telemetry.instrument_engine(engine)
    try:
        yield engine
    finally:
        await engine.dispose()
        telemetry.shutdown()


async def test_pool_metrics_are_left_out_when_no_reader_exists(database_url: str) -> None:
    # Four counter adds per checkout and checkin (~20 µs of a conversation turn) for data nobody reads;
    # the statement spans stay.
    exporter = InMemorySpanExporter()
    async with instrumented(database_url, span_exporter=exporter) as engine:
        assert _pool_listeners(engine) == []
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 'spanned'"))
    statements = [dict(span.attributes or {}).get("db.statement") for span in exporter.get_finished_spans()]
    assert "SELECT 'spanned'" in statements


async def test_pool_metrics_are_recorded_when_a_reader_exists(database_url: str) -> None:
    reader = InMemoryMetricReader()
    async with instrumented(database_url, metric_reader=reader) as engine:
        assert _pool_listeners(engine)
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        data = reader.get_metrics_data()
    assert data is not None
    usage = {
        dict(point.attributes or {})["state"]: getattr(point, "value", None)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == MetricInstruments.DB_CLIENT_CONNECTIONS_USAGE
        for point in metric.data.data_points
    }
    assert usage == {"idle": 1, "used": 0}
