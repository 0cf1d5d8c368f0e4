"""One page of a keyset-paginated list (conversations, their items, projects).

Cursors are public ids; the caller turns one into its row's key (`anchor`), and the page is the rows
past it in the requested order, one more than asked fetched to tell whether more follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

Order = Literal["asc", "desc"]
T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    rows: list[T]
    has_more: bool


async def keyset_page(
    session: AsyncSession,
    query: Select[tuple[T]],
    key: InstrumentedAttribute[Any],
    anchor: Any | None,
    *,
    limit: int,
    order: Order,
) -> Page[T]:
    """The `limit` rows of `query` after `anchor` (a value of `key`; None: from the start)."""
    descending = order == "desc"
    if anchor is not None:
        query = query.where(key < anchor if descending else key > anchor)
    query = query.order_by(key.desc() if descending else key).limit(limit + 1)
    rows = list((await session.scalars(query)).all())
    return Page(rows[:limit], len(rows) > limit)
