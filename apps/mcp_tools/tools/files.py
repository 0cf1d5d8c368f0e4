"""`file_search_index` and `file_search_query`: a per-user vector store.

A document is indexed from `text`, or, for a file uploaded to media-api, from its `jan_…` id alone.
Collections group documents (`default` unless named); they belong to the caller, so the same
collection name of another user is a different collection.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from mcp.server.mcpserver import MCPServer
from pydantic import Field

from apps.mcp_tools.services.errors import ToolFailure
from apps.mcp_tools.services.file_search import IndexRequest, QueryRequest
from apps.mcp_tools.tools.context import ToolContext, principal_of, services_of
from apps.mcp_tools.tools.progress import with_progress

MAX_TEXT_CHARS = 2_000_000
MAX_METADATA_BYTES = 16 * 1024

INDEX_DESCRIPTION = (
    "Add a document to your searchable collection (or replace it, if the document_id exists). Pass "
    "the content as `text`, or give a media id (jan_…) of an uploaded text or PDF file as "
    "`document_id` and leave `text` out. Then find passages with file_search_query."
)
QUERY_DESCRIPTION = (
    "Search your indexed documents by meaning. Returns the best-matching passages, best first, with "
    "a similarity score (higher is closer), the document_id they came from and their text."
)

Collection = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9_.-]{1,128}$",
        description="Collection name (letters, digits, '_', '-', '.'); 'default' unless given.",
    ),
]


async def file_search_index(
    document_id: Annotated[
        str,
        Field(
            pattern=r"^[A-Za-z0-9_.:/-]{1,255}$",
            description="Your id for the document (or a media id jan_… to index an uploaded file).",
        ),
    ],
    ctx: ToolContext,
    text: Annotated[
        str | None, Field(max_length=MAX_TEXT_CHARS, description="The document's content.")
    ] = None,
    collection: Collection = "default",
    tags: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=128)]],
        Field(max_length=32, description="Labels stored with the document and returned with matches."),
    ] = [],  # noqa: B006 - never mutated; the SDK builds the schema from the signature
    metadata: Annotated[
        dict[str, Any] | None, Field(description="Any JSON object to keep with the document.")
    ] = None,
) -> dict[str, Any]:
    if metadata is not None and len(orjson.dumps(metadata)) > MAX_METADATA_BYTES:
        raise ToolFailure(f"`metadata` is too large (limit {MAX_METADATA_BYTES} bytes of JSON).")
    request = IndexRequest(
        document_id=document_id,
        text=text,
        collection=collection,
        tags=tuple(tags),
        metadata=metadata or {},
    )
    services = services_of(ctx)
    work = services.files.index(request, principal_of(ctx))
    return await with_progress(ctx, work, what="file_search_index", every=services.progress_seconds)


async def file_search_query(
    query: Annotated[str, Field(min_length=1, max_length=4000, description="What to look for.")],
    ctx: ToolContext,
    top_k: Annotated[int, Field(ge=1, le=20, description="How many passages to return (1-20).")] = 5,
    collection: Collection = "default",
    document_ids: Annotated[
        list[Annotated[str, Field(max_length=255)]],
        Field(max_length=100, description="Only search these documents."),
    ] = [],  # noqa: B006 - never mutated; the SDK builds the schema from the signature
) -> dict[str, Any]:
    request = QueryRequest(query=query, top_k=top_k, collection=collection, document_ids=tuple(document_ids))
    return await services_of(ctx).files.query(request, principal_of(ctx))


def register(server: MCPServer[Any]) -> None:
    server.add_tool(file_search_index, description=INDEX_DESCRIPTION)
    server.add_tool(file_search_query, description=QUERY_DESCRIPTION)
