"""The usage of hardware plan subscriptions, one loader per request: a page of subscriptions
costs one grouped statement over their replicas (app.services.plan_usage), whatever its size
and however many usage fields it asks for. Keys are subscriptions the request already read
within the principal's scope."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from weakref import WeakKeyDictionary

import strawberry
from strawberry.dataloader import DataLoader

from app.graphql.context import Context
from app.graphql.loaders import Loaders
from app.services.plan_usage import NONE, PlanUsage, usage_of

Info = strawberry.Info[Context, Any]


async def _load(subscription_ids: Sequence[int]) -> list[PlanUsage]:
    found = await usage_of(subscription_ids)
    return [found.get(pk, NONE) for pk in subscription_ids]


_LOADERS: WeakKeyDictionary[Loaders, DataLoader[int, PlanUsage]] = WeakKeyDictionary()


def plan_usage(info: Info) -> DataLoader[int, PlanUsage]:
    found = _LOADERS.get(info.context.loaders)
    if found is None:
        found = _LOADERS[info.context.loaders] = DataLoader(_load)
    return found
