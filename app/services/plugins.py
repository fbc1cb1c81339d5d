"""The plugin library: entries the provider installs, switched on and off per organization.

Who may do what is the engine's (capability PLUGINS): library entries are created, edited and
removed by the provider only (the capability's structure function; editing an entry is
publishing it, so it is checked as CREATE); resellers switch plugins for themselves and their
companies, company administrators for their own company (UPDATE).

Inheritance. An organization's chain is itself, its parent and its parent's parent (company →
reseller → provider). A plugin is *effectively enabled* for an organization when at least one
organization of its chain has an activation row for it and every such row is enabled: the
library is opt-in, an enabled row switches it on for the organization and everything below,
and a disabled row anywhere above switches it off whatever lies below.

Decisions from above stick. A row records the organization whose user set it (`set_by`). A
disabled row set by an organization above the caller's is that organization's decision: the
caller cannot enable it (CONFLICT), and disabling it again keeps the higher decision. Enabling
is also refused while an organization above the target has a disabled row (enable it there
first), so enabling always makes the plugin effectively enabled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from app.authz import scope
from app.authz.capabilities import PLUGIN_ENTRIES, PLUGINS
from app.authz.matrix import Action
from app.authz.principal import Principal, Target
from app.db import connection_name, serialize
from app.errors import BadInput, Conflict, NotFound
from app.models import Organization
from app.models.licensing import Plugin, PluginActivation
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require

VERSION = re.compile(r"\d+(\.\d+){0,3}")
LIMITS = {"name": 100, "version": 50, "description": 1000, "vendor": 200}


# --- reading ---------------------------------------------------------------------------------


async def plugin(pk: int) -> Plugin:
    """A library entry (the library is the same for everyone who may read it)."""
    row = await Plugin.get_or_none(id=pk)
    if row is None:
        raise NotFound("plugin")
    return row


async def organization_in_scope(p: Principal, org_id: int, field_name: str) -> Organization:
    """An organization of the caller's tree with its parent (and the parent's parent id)."""
    org = await Organization.filter(scope.org_q(p), id=org_id).select_related("parent").first()
    if org is None:
        raise NotFound("organization", field=field_name)
    return org


def chain_of(org: Organization) -> list[int]:
    """The organization, its parent and its parent's parent (`org` fetched with its parent)."""
    chain = [org.id]
    parent = org.parent if org.parent_id is not None else None  # type: ignore[attr-defined]
    if parent is not None:
        chain.append(parent.id)
        if parent.parent_id is not None:  # type: ignore[attr-defined]
            chain.append(parent.parent_id)  # type: ignore[attr-defined]
    return chain


def effective(chain: Sequence[int], rows: dict[int, PluginActivation]) -> bool:
    found = [rows[org_id] for org_id in chain if org_id in rows]
    return bool(found) and all(row.enabled for row in found)


def locked_above(row: PluginActivation | None, chain: Sequence[int], actor_org: int) -> bool:
    """A disabled row set by an organization above `actor_org` on the row's chain."""
    if row is None or row.enabled or row.set_by_id is None:  # type: ignore[attr-defined]
        return False
    setter = row.set_by_id  # type: ignore[attr-defined]
    if setter not in chain or actor_org not in chain:
        return False
    return chain.index(setter) > chain.index(actor_org)


@dataclass
class ActivationView:
    row: PluginActivation
    effective: bool
    locked: bool  # disabled by an organization above the viewer's


@dataclass
class LibraryState:
    """What one viewer sees of one plugin: its effective state for the viewer's own
    organization (and for the organization asked about), and the activation rows of the
    organizations in the viewer's scope (only the asked one's, when one is asked about)."""

    enabled_for_me: bool = False
    enabled_for_organization: bool | None = None
    activations: list[ActivationView] = field(default_factory=list)


async def library_states(
    p: Principal, plugin_ids: Iterable[int], focus: Organization | None = None
) -> dict[int, LibraryState]:
    """For a page of plugins, three queries whatever its size: the viewer's chain, the rows in
    scope (with their organization's parent), and the rows of the organizations above them.
    `focus`: an organization in scope (from `organization_in_scope`)."""
    ids = sorted(set(plugin_ids))
    out = {pk: LibraryState() for pk in ids}
    if not ids:
        return out
    viewer = await Organization.filter(id=p.organization_id).select_related("parent").first()
    viewer_chain = chain_of(viewer) if viewer is not None else [p.organization_id]
    focus_chain = chain_of(focus) if focus is not None else []
    query = PluginActivation.filter(scope.org_q(p, "organization"), plugin_id__in=ids)
    if focus is not None:
        query = query.filter(organization_id=focus.id)
    in_scope = await query.select_related("organization__parent").order_by("organization_id")
    chains = {row.organization_id: chain_of(row.organization) for row in in_scope}  # type: ignore[attr-defined]
    rows: dict[int, dict[int, PluginActivation]] = {pk: {} for pk in ids}
    for row in in_scope:
        rows[row.plugin_id][row.organization_id] = row  # type: ignore[attr-defined]
    wanted = {org_id for chain in chains.values() for org_id in chain}
    above = (wanted | set(viewer_chain) | set(focus_chain)) - set(chains)
    if above:
        for row in await PluginActivation.filter(
            plugin_id__in=ids, organization_id__in=sorted(above)
        ):
            rows[row.plugin_id][row.organization_id] = row  # type: ignore[attr-defined]
    for row in in_scope:
        chain = chains[row.organization_id]  # type: ignore[attr-defined]
        out[row.plugin_id].activations.append(  # type: ignore[attr-defined]
            ActivationView(
                row,
                effective(chain, rows[row.plugin_id]),  # type: ignore[attr-defined]
                locked_above(row, chain, p.organization_id),
            )
        )
    for pk in ids:
        out[pk].enabled_for_me = effective(viewer_chain, rows[pk])
        if focus is not None:
            out[pk].enabled_for_organization = effective(focus_chain, rows[pk])
    return out


# --- the library's entries (the provider's) ------------------------------------------------


def _text(value: str | None, name: str, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise BadInput("a value is required", field=f"input.{name}")
        return None
    value = value.strip()
    if required and not value:
        raise BadInput("a value is required", field=f"input.{name}")
    if len(value) > LIMITS[name]:
        raise BadInput(f"longer than {LIMITS[name]} characters", field=f"input.{name}")
    return value


def _version(value: str | None, *, required: bool) -> str | None:
    value = _text(value, "version", required=required)
    if value is not None and not VERSION.fullmatch(value):
        raise BadInput(
            "a version is 1 to 4 numbers separated by dots, like 2.1 or 12.3.0.310",
            field="input.version",
        )
    return value


async def _name_free(name: str, exclude: int | None = None) -> None:
    query = Plugin.filter(name=name)
    if exclude is not None:
        query = query.exclude(id=exclude)
    if await query.exists():
        raise Conflict("the library already has a plugin with this name", field="input.name")


async def create(actor: Actor, name: str, version: str, description: str, vendor: str) -> Plugin:
    p = actor.p
    require(p, PLUGIN_ENTRIES, Action.CREATE)
    clean_name = _text(name, "name", required=True)
    clean_version = _version(version, required=True)
    clean_description = _text(description, "description", required=False) or ""
    clean_vendor = _text(vendor, "vendor", required=False) or ""
    assert clean_name is not None and clean_version is not None
    async with audited(actor, "pluginCreate", "Plugin", organization_id=p.organization_id) as entry:
        await _name_free(clean_name)
        try:
            async with in_transaction(connection_name()):
                row = await Plugin.create(
                    name=clean_name,
                    version=clean_version,
                    description=clean_description,
                    vendor=clean_vendor,
                )
        except IntegrityError:
            raise Conflict(
                "the library already has a plugin with this name", field="input.name"
            ) from None
        entry.bind(row.id, name=clean_name, version=clean_version)
    return row


async def update(
    actor: Actor,
    pk: int,
    *,
    name: str | None = None,
    version: str | None = None,
    description: str | None = None,
    vendor: str | None = None,
) -> Plugin:
    """Edits an entry of the library (the provider's)."""
    p = actor.p
    require(p, PLUGIN_ENTRIES, Action.UPDATE)
    row = await plugin(pk)
    changes = {
        "name": _text(name, "name", required=False),
        "version": _version(version, required=False),
        "description": _text(description, "description", required=False),
        "vendor": _text(vendor, "vendor", required=False),
    }
    if changes["name"] == "":
        raise BadInput("a value is required", field="input.name")
    changed = {k: v for k, v in changes.items() if v is not None and v != getattr(row, k)}
    async with audited(actor, "pluginUpdate", "Plugin", row.id, p.organization_id) as entry:
        if "name" in changed:
            await _name_free(changed["name"], exclude=row.id)
        for key, value in changed.items():
            setattr(row, key, value)
        if changed:
            try:
                async with in_transaction(connection_name()):
                    await row.save(update_fields=[*changed, "updated_at"])
            except IntegrityError:
                raise Conflict(
                    "the library already has a plugin with this name", field="input.name"
                ) from None
        entry.details.update(changed=sorted(changed), name=row.name, version=row.version)
    return row


async def delete(actor: Actor, pk: int) -> Plugin:
    p = actor.p
    require(p, PLUGIN_ENTRIES, Action.DELETE)
    row = await plugin(pk)
    async with audited(actor, "pluginDelete", "Plugin", row.id, p.organization_id) as entry:
        await row.delete()  # its activations go with it (ON DELETE CASCADE)
        entry.details.update(name=row.name, version=row.version)
    return row


# --- switching plugins on and off ------------------------------------------------------------


async def set_enabled(
    actor: Actor, plugin_id: int, organization_id: int, enabled: bool
) -> ActivationView:
    """Enables or disables a plugin for an organization of the caller's tree (see the module's
    inheritance rules)."""
    p = actor.p
    require(p, PLUGINS, Action.UPDATE)
    row_plugin = await plugin(plugin_id)
    org = await organization_in_scope(p, organization_id, "organizationId")
    require(
        p,
        PLUGINS,
        Action.UPDATE,
        Target(kind=PLUGINS.kind, organization_id=org.id, organization_kind=org.kind),
    )
    chain = chain_of(org)
    async with audited(actor, "pluginSetEnabled", "Plugin", row_plugin.id, org.id) as entry:
        # One switch of a plugin at a time: the rows above are read and this one written
        # without another change slipping in between (rows that do not exist yet included).
        await serialize(f"plugin_activation:{row_plugin.id}")
        rows = {
            r.organization_id: r  # type: ignore[attr-defined]
            for r in await PluginActivation.filter(
                plugin_id=row_plugin.id, organization_id__in=chain
            )
        }
        own = rows.get(org.id)
        if enabled:
            if locked_above(own, chain, p.organization_id):
                raise Conflict(
                    "the plugin was disabled for this organization by an organization above "
                    "yours; only it can enable it again"
                )
            for ancestor in chain[1:]:
                above = rows.get(ancestor)
                if above is not None and not above.enabled:
                    raise Conflict(
                        "the plugin is disabled for an organization above this one; "
                        "enable it there first"
                    )
        setter = p.organization_id
        if (
            own is not None
            and not enabled
            and not own.enabled
            and locked_above(own, chain, p.organization_id)
        ):
            setter = own.set_by_id  # type: ignore[attr-defined]  # the higher decision stays
        if own is None:
            own = await PluginActivation.create(
                plugin=row_plugin, organization=org, enabled=enabled, set_by_id=setter
            )
        elif own.enabled != enabled or own.set_by_id != setter:  # type: ignore[attr-defined]
            own.enabled = enabled
            own.set_by_id = setter  # type: ignore[attr-defined]
            await own.save(update_fields=["enabled", "set_by_id", "updated_at"])
        rows[org.id] = own
        entry.details.update(plugin=row_plugin.name, organization=org.name, enabled=enabled)
    own.organization = org
    return ActivationView(own, effective(chain, rows), locked_above(own, chain, p.organization_id))
