"""`/v1/projects`: create, list, read, update and delete the caller's projects.

Updates are `POST /v1/projects/{id}`, as OpenAI updates its objects (and our conversations); `PATCH`
is the same operation, for clients of the reference system. Deleting a project detaches its
conversations (they stay, with `project_id: null`); see `services/projects.py` for why.
"""

from __future__ import annotations

from fastapi import APIRouter

from apps.common.auth.principal import PrincipalDep
from apps.common.guard import GuardedRoute
from apps.common.openapi import error_responses
from apps.llm_api.deps import Limit, OrderQuery, ProjectsDep
from apps.llm_api.services.projects import project_missing
from apps.llm_api.types import Page, Project, ProjectDeleted
from apps.llm_api.wire.conversations import page_json
from apps.llm_api.wire.projects import ProjectCreate, ProjectUpdate, project_json

router = APIRouter(prefix="/v1/projects", tags=["projects"], route_class=GuardedRoute)


@router.post("", responses=error_responses(409), response_model=None)
async def create_project(body: ProjectCreate, principal: PrincipalDep, store: ProjectsDep) -> Project:
    """Create a project; names are unique per user (409 for a second one)."""
    row = await store.create(
        principal.user_id, name=body.name, instructions=body.instructions, metadata=body.metadata
    )
    return project_json(row)


@router.get("", response_model=None)
async def list_projects(
    principal: PrincipalDep,
    store: ProjectsDep,
    limit: Limit = 20,
    order: OrderQuery = "desc",
    after: str | None = None,
) -> Page[Project]:
    """The caller's projects, newest first by default; pass the last id as `after` for the next page."""
    page = await store.list_projects(principal.user_id, limit=limit, after=after, order=order)
    return page_json([project_json(row) for row in page.rows], page.has_more)


@router.get("/{project_id}", response_model=None)
async def get_project(project_id: str, principal: PrincipalDep, store: ProjectsDep) -> Project:
    row = await store.get(principal.user_id, project_id)
    if row is None:
        raise project_missing(project_id)
    return project_json(row)


@router.post("/{project_id}", responses=error_responses(409), response_model=None)
@router.patch("/{project_id}", responses=error_responses(409), response_model=None)
async def update_project(
    project_id: str, body: ProjectUpdate, principal: PrincipalDep, store: ProjectsDep
) -> Project:
    """Change the fields sent: `instructions: null` clears them, `metadata` replaces the old."""
    row = await store.update(principal.user_id, project_id, body.model_dump(exclude_unset=True))
    if row is None:
        raise project_missing(project_id)
    return project_json(row)


@router.delete("/{project_id}", response_model=None)
async def delete_project(project_id: str, principal: PrincipalDep, store: ProjectsDep) -> ProjectDeleted:
    """Delete the project. Its conversations are kept and detached (`project_id` becomes null)."""
    if not await store.delete(principal.user_id, project_id):
        raise project_missing(project_id)
    return {"id": project_id, "object": "project.deleted", "deleted": True}
