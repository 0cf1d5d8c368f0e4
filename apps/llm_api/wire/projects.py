"""Project shapes (our own resource: strict, unknown fields refused).

A project groups conversations under a name and gives them shared `instructions`, which llm-api puts
before every chat turn of its conversations (and response-api before every response in them) as a
system message; they are never stored as a conversation item.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from apps.llm_api.chat_tables import ProjectRow
from apps.llm_api.types import Project
from apps.llm_api.wire.conversations import Metadata

MAX_INSTRUCTIONS = 32_768


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(min_length=1, max_length=120, pattern=r"\S")
    instructions: StrictStr | None = Field(None, max_length=MAX_INSTRUCTIONS)
    metadata: Metadata | None = None


class ProjectUpdate(BaseModel):
    """Only the fields sent change; `instructions: null` (or "") clears them, metadata replaces."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr | None = Field(None, min_length=1, max_length=120, pattern=r"\S")
    instructions: StrictStr | None = Field(None, max_length=MAX_INSTRUCTIONS)
    metadata: Metadata | None = None


def project_json(row: ProjectRow) -> Project:
    return {
        "id": row.public_id,
        "object": "project",
        "name": row.name,
        "instructions": row.instructions,
        "metadata": row.metadata_ or {},
        "created_at": int(row.created_at.timestamp()),
        "updated_at": int(row.updated_at.timestamp()),
    }
