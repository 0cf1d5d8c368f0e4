"""A background response left running by a process that died is failed by the sweeper, not kept forever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import text

from apps.common.db import create_engine
from apps.common.ids import random_id
from apps.response_api.services.store import ResponseStore


async def test_orphaned_responses_are_failed_and_fresh_ones_kept(database_url: str) -> None:
    engine = create_engine(database_url, schema="response_api")
    store = ResponseStore(engine)
    user = random_id("user")
    old, fresh = random_id("resp"), random_id("resp")
    try:
        async with engine.begin() as connection:
            for response_id, age in ((old, timedelta(hours=2)), (fresh, timedelta(seconds=1))):
                body = {"id": response_id, "object": "response", "status": "in_progress", "output": []}
                await connection.execute(
                    text(
                        "INSERT INTO responses (id, user_id, status, model, body, created_at) VALUES (:id, "
                        ":user, 'in_progress', 'm', CAST(:body AS jsonb), :created_at)"
                    ),
                    {
                        "id": response_id,
                        "user": user,
                        "body": orjson.dumps(body).decode(),
                        "created_at": datetime.now(UTC) - age,
                    },
                )
        assert await store.fail_orphans(older_than_seconds=3600) >= 1
        orphan = await store.get(user, old)
        error = orphan["error"]
        assert orphan["status"] == "failed" and error is not None and error["code"] == "server_error"
        assert (await store.get(user, fresh))["status"] == "in_progress"
    finally:
        await engine.dispose()
