"""Cursor connections over scoped querysets: keyset pagination on the primary key.

`first` has a default and a maximum; the cursor is opaque (base64 of the last id). One query
for the page (LIMIT first+1 tells whether there is a next page); `totalCount` costs a COUNT
only when asked for.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import strawberry
from tortoise.queryset import QuerySet

from app.errors import BadInput
from app.settings import get_settings

T = TypeVar("T")


def encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(f"c:{value}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "c":
            raise ValueError
        return int(value)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("the cursor is not valid", field="after") from None


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    _count_query: strawberry.Private[QuerySet | None] = None
    # Nested lists count through a loader instead (one grouped COUNT for the whole page).
    _count: strawberry.Private[Callable[[], Awaitable[int]] | None] = None

    @strawberry.field(description="Number of items in the whole list (costs one COUNT query).")
    async def total_count(self) -> int:
        if self._count is not None:
            return await self._count()
        return await self._count_query.count() if self._count_query is not None else 0

    @strawberry.field
    def nodes(self) -> list[T]:
        return [edge.node for edge in self.edges]


def page_size(first: int | None) -> int:
    settings = get_settings()
    if first is None:
        return settings.page_size_default
    if first < 0:
        raise BadInput("'first' must not be negative", field="first")
    if first > settings.page_size_max:
        raise BadInput(f"'first' may be at most {settings.page_size_max}", field="first")
    return first


async def paginate(
    queryset: QuerySet,
    first: int | None,
    after: str | None,
    to_node: Callable[[Any], Any],
    *,
    descending: bool = False,
) -> Connection[Any]:
    """Keyset pagination on the primary key, oldest first, or newest first (`descending`)."""
    size = page_size(first)
    page_query = queryset.order_by("-id" if descending else "id")
    if after:
        cursor = decode_cursor(after)
        page_query = (
            page_query.filter(id__lt=cursor) if descending else page_query.filter(id__gt=cursor)
        )
    rows = list(await page_query.limit(size + 1)) if size else []
    has_next = len(rows) > size
    rows = rows[:size]
    edges = [Edge(cursor=encode_cursor(row.id), node=to_node(row)) for row in rows]
    return Connection(
        edges=edges,
        page_info=PageInfo(has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None),
        _count_query=queryset,
    )
