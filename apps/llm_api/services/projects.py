"""Projects in Postgres, always scoped to one user: a name, instructions and metadata.

As for conversations, every lookup takes the caller's user id, so another user's project is
indistinguishable from a missing one (404). Names are unique per user (409 on a second one).

Deleting a project *detaches* its conversations: they stay, with `project_id` null, and the project's
instructions no longer apply to them. Why not cascade: a conversation is the user's record of what
was said, and deleting a folder should not silently delete it; the client that wants both deletes the
conversations first (list them with `?project_id=`). Why not refuse while non-empty: that turns a
delete into a chore of moving every conversation out first, for no safety the detach does not give.
The foreign key does the detaching, in the same statement as the delete.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apps.common.errors import APIError
from apps.common.ids import random_id
from apps.llm_api.chat_tables import ProjectRow
from apps.llm_api.services.paging import Order, Page, keyset_page


def project_missing(project_id: str, param: str | None = None) -> APIError:
    return APIError(404, f"Project '{project_id}' not found.", param=param, code="not_found")


def _name_taken(name: str) -> APIError:
    return APIError(409, f"You already have a project named '{name}'.", param="name", code="conflict")


class ProjectStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(
        self, user_id: str, *, name: str, instructions: str | None, metadata: dict[str, str] | None
    ) -> ProjectRow:
        row = ProjectRow(
            public_id=random_id("proj"),
            user_id=user_id,
            name=name,
            instructions=instructions or None,
            metadata_=metadata or {},
        )
        try:
            async with self._sessions() as session, session.begin():
                session.add(row)
                await session.flush()
        except IntegrityError as exc:
            raise _name_taken(name) from exc
        return row

    async def get(self, user_id: str, public_id: str) -> ProjectRow | None:
        async with self._sessions() as session:
            return await find_project(session, user_id, public_id)

    async def list_projects(
        self, user_id: str, *, limit: int, after: str | None, order: Order
    ) -> Page[ProjectRow]:
        """One page of the caller's projects; `after` is a project id."""
        async with self._sessions() as session:
            query = select(ProjectRow).where(ProjectRow.user_id == user_id)
            key: int | None = None
            if after is not None:
                anchor = await find_project(session, user_id, after)
                if anchor is None:
                    return Page([], False)
                key = anchor.id
            return await keyset_page(session, query, ProjectRow.id, key, limit=limit, order=order)

    async def update(self, user_id: str, public_id: str, changes: dict[str, Any]) -> ProjectRow | None:
        """Apply the fields given (`name`, `instructions`, `metadata`); null or "" instructions clear
        them, metadata replaces. None if the project is not the caller's."""
        try:
            async with self._sessions() as session, session.begin():
                row = await find_project(session, user_id, public_id)
                if row is None:
                    return None
                if changes.get("name") is not None:
                    row.name = changes["name"]
                if "instructions" in changes:
                    row.instructions = changes["instructions"] or None
                if changes.get("metadata") is not None:
                    row.metadata_ = changes["metadata"]
                row.updated_at = datetime.now(UTC)
                await session.flush()
        except IntegrityError as exc:
            raise _name_taken(str(changes.get("name"))) from exc
        return row

    async def delete(self, user_id: str, public_id: str) -> bool:
        """Delete the project; its conversations are detached (see the module docstring)."""
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(ProjectRow).where(ProjectRow.user_id == user_id, ProjectRow.public_id == public_id)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]


async def find_project(
    session: AsyncSession, user_id: str, public_id: str, *, lock: bool = False
) -> ProjectRow | None:
    """The caller's project; with `lock`, held against deletion until the transaction ends (a
    conversation being attached to it must not end up pointing at nothing)."""
    query = select(ProjectRow).where(ProjectRow.public_id == public_id, ProjectRow.user_id == user_id)
    if lock:
        query = query.with_for_update(key_share=True)
    return (await session.scalars(query)).first()
