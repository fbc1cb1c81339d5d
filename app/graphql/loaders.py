"""DataLoaders, built per request for one principal: nested lists cost one query per level,
whatever the page size, and each query carries the principal's row scope."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from strawberry.dataloader import DataLoader

from app.authz import scope
from app.authz.matrix import load_matrix
from app.authz.principal import Principal
from app.graphql.workloads.loaders import WorkloadLoaders
from app.models import Location, Organization, User


def primary_role_names() -> list[str]:
    return sorted({r.name for p in load_matrix().portals.values() for r in p.roles if r.primary})


class Loaders:
    def __init__(self, principal: Principal | None = None) -> None:
        self.principal = principal
        self.locations_by_company: DataLoader[int, list[Location]] = DataLoader(
            self._locations_by_company
        )
        self.owner_by_org: DataLoader[int, User | None] = DataLoader(self._owner_by_org)
        self.organization: DataLoader[int, Organization | None] = DataLoader(self._organization)
        # Whether an organization and its ancestors are all enabled (None: no parent).
        self.tree_enabled: DataLoader[int | None, bool] = DataLoader(self._tree_enabled)
        self.workloads = WorkloadLoaders(principal)

    async def _locations_by_company(self, company_ids: Sequence[int]) -> list[list[Location]]:
        grouped: dict[int, list[Location]] = defaultdict(list)
        query = Location.filter(company_id__in=list(company_ids))
        if self.principal is not None:
            query = query.filter(scope.location_q(self.principal))
        for loc in await query.order_by("id"):
            grouped[loc.company_id].append(loc)  # type: ignore[attr-defined]
        return [grouped.get(cid, []) for cid in company_ids]

    async def _owner_by_org(self, org_ids: Sequence[int]) -> list[User | None]:
        owners = {
            u.organization_id: u  # type: ignore[attr-defined]
            for u in await User.filter(
                organization_id__in=list(org_ids), role__in=primary_role_names()
            )
        }
        return [owners.get(oid) for oid in org_ids]

    async def _organization(self, org_ids: Sequence[int]) -> list[Organization | None]:
        query: Any = Organization.filter(id__in=list(org_ids))
        if self.principal is not None:
            query = query.filter(scope.org_q(self.principal))
        found = {o.id: o for o in await query}
        return [found.get(oid) for oid in org_ids]

    async def _tree_enabled(self, org_ids: Sequence[int | None]) -> list[bool]:
        # The tree is at most provider → reseller → company: two levels above a company.
        wanted = [oid for oid in org_ids if oid is not None]
        rows = await Organization.filter(id__in=wanted).values("id", "enabled", "parent__enabled")
        state = {r["id"]: r["enabled"] and r["parent__enabled"] is not False for r in rows}
        return [True if oid is None else state.get(oid, False) for oid in org_ids]
