"""Named rules: one per restricted cell text of the seeds, plus the seeds' prose rules.

A cell rule answers for one principal, action and object kind; with `target=None` it answers
whether the action is possible on some object of that kind (field level); with a target it
answers for that object. `filters` give the same restriction as a queryset filter, so lists
are narrowed in SQL rather than in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tortoise.expressions import Q

from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.models.tenancy import OrgKind

Check = Callable[[Principal, Action, str, Target | None], bool]
Filter = Callable[[Principal, str], Q | None]


@dataclass(frozen=True)
class CellRule:
    name: str
    description: str
    check: Check
    filter: Filter | None = None


def _except_creation_and_removal(p: Principal, action: Action, kind: str, t: Target | None) -> bool:
    # "Full (except for creation and removal)" of Client companies: the operator manages
    # the companies in scope (and their locations) but does not create or remove companies.
    return not (kind in {"company", "reseller"} and action in {Action.CREATE, Action.DELETE})


def _only_managed_companies_users(
    p: Principal, action: Action, kind: str, t: Target | None
) -> bool:
    if kind != "user":
        return False
    return t is None or t.organization_kind is OrgKind.COMPANY


def _only_managed_companies_users_filter(p: Principal, kind: str) -> Q | None:
    return Q(organization__kind=OrgKind.COMPANY.value) if kind == "user" else None


def _only_portal_users(p: Principal, action: Action, kind: str, t: Target | None) -> bool:
    # "Only portal users": of the configuration tasks, a Location Administrator manages
    # portal users (within their locations, see scope) and nothing else. Seed 003 takes away
    # creating, modifying and removing locations, not seeing them: locations and company info
    # stay readable (a Location Administrator picks locations when giving users a scope).
    return kind == "user" or (action is Action.READ and kind in {"company", "location"})


def _only_generated_invoices(p: Principal, action: Action, kind: str, t: Target | None) -> bool:
    if kind != "invoice":
        return False
    return t is None or bool(t.generated)


def _only_generated_invoices_filter(p: Principal, kind: str) -> Q | None:
    return Q(generated=True) if kind == "invoice" else None


def _subtenant_own_computers(p: Principal, action: Action, kind: str, t: Target | None) -> bool:
    return t is None or t.subtenant_user_id == p.user_id


def _subtenant_own_computers_filter(p: Principal, kind: str) -> Q | None:
    # Rows of workloads carry the Subtenant account (not the user) they back up to: the
    # computers whose account is one of this user's. `scope.workload_q` applies the same
    # restriction to every workload row of a principal whose role scope is own_computers.
    from app.authz.scope import own_subtenants

    return Q(subtenant_id__in=own_subtenants(p))


RULES: dict[str, CellRule] = {
    r.name: r
    for r in (
        CellRule(
            "except_creation_and_removal",
            "Full (except for creation and removal): no creating or removing companies",
            _except_creation_and_removal,
        ),
        CellRule(
            "only_managed_companies_users",
            "Only managed companies users: configuration limited to users of companies in scope",
            _only_managed_companies_users,
            _only_managed_companies_users_filter,
        ),
        CellRule(
            "only_portal_users",
            "Only portal users: of the configuration tasks, only portal users",
            _only_portal_users,
        ),
        CellRule(
            "only_generated_invoices",
            "Full (for generated invoices): only invoices already generated",
            _only_generated_invoices,
            _only_generated_invoices_filter,
        ),
        CellRule(
            "subtenant_own_computers",
            "Read* / Full*: only computers whose backups go to the Subtenant's own account",
            _subtenant_own_computers,
            _subtenant_own_computers_filter,
        ),
    )
}


# Prose rules of the seeds that hold whatever the cell says.
ProseRule = Callable[[Principal, Action, str, Target], bool]


def primary_user_is_protected(p: Principal, action: Action, kind: str, t: Target) -> bool:
    """One Owner / Global Administrator per organization, created with it: nobody removes
    them (they go with their organization), and nobody of the same organization but the
    owner themselves modifies them. Staff of a parent organization may manage them."""
    if kind != "user" or not t.primary:
        return True
    if action is Action.DELETE:
        return False
    if action is Action.UPDATE and t.organization_id == p.organization_id:
        return t.user_id == p.user_id
    return True


def nobody_acts_on_themselves_destructively(
    p: Principal, action: Action, kind: str, t: Target
) -> bool:
    """A user cannot remove their own account (it would leave the session orphaned)."""
    return not (kind == "user" and action is Action.DELETE and t.user_id == p.user_id)


PROSE_RULES: tuple[ProseRule, ...] = (
    primary_user_is_protected,
    nobody_acts_on_themselves_destructively,
)


def describe() -> list[dict[str, Any]]:
    return [{"name": r.name, "description": r.description} for r in RULES.values()]
