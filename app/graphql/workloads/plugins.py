"""GraphQL for the plugin library: the entries, their state per organization, and switching them
on and off (`app.services.plugins` has the inheritance rules)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import strawberry
from strawberry.dataloader import DataLoader

from app.authz.capabilities import PLUGIN_ENTRIES, PLUGINS
from app.authz.matrix import Action
from app.authz.principal import Principal
from app.errors import BadInput
from app.graphql.common import Node, actor, principal, register_node, viewer_allows
from app.graphql.context import Context
from app.graphql.ids import ORG_TYPE_NAMES, from_global_id, pk_of, to_global_id
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.models import Organization
from app.models.licensing import Plugin
from app.services import plugins

Info = strawberry.Info[Context, Any]

INHERITANCE = (
    "A plugin is enabled for an organization when at least one organization of its chain "
    "(itself, its reseller, the provider) has switched it, and every one that has switched it "
    "has it enabled: enabling it for a reseller enables it for its companies, disabling it "
    "above disables it below."
)


def _org_id(org: Organization) -> strawberry.ID:
    return strawberry.ID(to_global_id(ORG_TYPE_NAMES[org.kind], org.id))


@strawberry.type(name="PluginActivation", description="A plugin switched for one organization.")
class PluginActivationType:
    organization_id: strawberry.ID
    organization_name: str
    enabled: bool = strawberry.field(description="As set for this organization.")
    effective: bool = strawberry.field(description="With the organizations above: " + INHERITANCE)
    locked: bool = strawberry.field(
        description="Disabled by an organization above yours: you cannot enable it."
    )
    updated_at: datetime

    @classmethod
    def from_view(cls, view: plugins.ActivationView) -> PluginActivationType:
        org = view.row.organization
        return cls(
            organization_id=_org_id(org),
            organization_name=org.name,
            enabled=view.row.enabled,
            effective=view.effective,
            locked=view.locked,
            updated_at=view.row.updated_at,
        )


_LOADER_ATTR = "_plugin_states"
StateKey = tuple[int, int | None]  # (plugin id, organization asked about)


def _states(info: Info) -> DataLoader[StateKey, plugins.LibraryState]:
    """Per request: the states of every plugin of a page, in three queries per organization
    asked about."""
    loader = getattr(info.context, _LOADER_ATTR, None)
    if loader is None:
        p = principal(info)

        async def load(keys: Sequence[StateKey]) -> list[plugins.LibraryState]:
            found: dict[StateKey, plugins.LibraryState] = {}
            for focus_id in {focus for _, focus in keys}:
                focus = (
                    await plugins.organization_in_scope(p, focus_id, "organizationId")
                    if focus_id is not None
                    else None
                )
                ids = [pk for pk, f in keys if f == focus_id]
                for pk, state in (await plugins.library_states(p, ids, focus)).items():
                    found[(pk, focus_id)] = state
            return [found[key] for key in keys]

        loader = DataLoader(load)
        setattr(info.context, _LOADER_ATTR, loader)
    return loader


@strawberry.type(name="Plugin", description="An entry of the provider's plugin library.")
class PluginType(Node):
    id: strawberry.ID
    name: str
    version: str
    description: str
    vendor: str
    created_at: datetime
    updated_at: datetime
    _pk: strawberry.Private[int]
    _focus: strawberry.Private[int | None] = None

    @classmethod
    def from_row(cls, row: Plugin, focus: int | None = None) -> PluginType:
        return cls(
            id=strawberry.ID(to_global_id("Plugin", row.id)),
            name=row.name,
            version=row.version,
            description=row.description,
            vendor=row.vendor,
            created_at=row.created_at,
            updated_at=row.updated_at,
            _pk=row.id,
            _focus=focus,
        )

    async def _state(self, info: Info) -> plugins.LibraryState:
        return await _states(info).load((self._pk, self._focus))

    @strawberry.field(description="Enabled for your own organization. " + INHERITANCE)
    async def enabled_for_me(self, info: Info) -> bool:
        return (await self._state(info)).enabled_for_me

    @strawberry.field(
        description="Enabled for the organization `plugins(organizationId:)` asked about; "
        "null when none was."
    )
    async def enabled_for_organization(self, info: Info) -> bool | None:
        return (await self._state(info)).enabled_for_organization

    @strawberry.field(
        description="Where the plugin was switched on or off, among the organizations in your "
        "scope (only the one `plugins(organizationId:)` asked about, when one was)."
    )
    async def activations(self, info: Info) -> list[PluginActivationType]:
        views = (await self._state(info)).activations
        return [PluginActivationType.from_view(v) for v in views]

    @strawberry.field(description="True when you may edit the entry (the provider's).")
    def viewer_can_update(self, info: Info) -> bool:
        return viewer_allows(info, PLUGIN_ENTRIES, Action.UPDATE)

    @strawberry.field(description="True when you may remove the entry (the provider's).")
    def viewer_can_delete(self, info: Info) -> bool:
        return viewer_allows(info, PLUGIN_ENTRIES, Action.DELETE)

    @strawberry.field(description="True when you may switch it for organizations in your scope.")
    def viewer_can_set_enabled(self, info: Info) -> bool:
        return viewer_allows(info, PLUGINS, Action.UPDATE)


@strawberry.input
class PluginCreateInput:
    name: str
    version: str = strawberry.field(description="1 to 4 numbers separated by dots (12.3.0.310).")
    description: str = ""
    vendor: str = ""


@strawberry.input(description="Omitted fields keep their value.")
class PluginUpdateInput:
    id: strawberry.ID
    name: str | None = None
    version: str | None = None
    description: str | None = None
    vendor: str | None = None


@strawberry.input
class PluginSetEnabledInput:
    plugin_id: strawberry.ID
    organization_id: strawberry.ID = strawberry.field(
        description="Your own organization or one below it (a Reseller, Company or the "
        "ServiceProvider id)."
    )
    enabled: bool


async def _plugin(p: Principal, pk: int) -> PluginType:
    return PluginType.from_row(await plugins.plugin(pk))


register_node("Plugin", PLUGINS, _plugin)


def organization_pk(global_id: str, field: str) -> int:
    """The id of a ServiceProvider, Reseller or Company."""
    type_name, pk = from_global_id(global_id, field)
    if type_name not in ORG_TYPE_NAMES.values():
        raise BadInput("expected the id of an organization", field=field)
    return pk


@strawberry.type
class PluginQuery:
    @strawberry.field(extensions=guard(PLUGINS, Action.READ))
    async def plugins(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        organization_id: strawberry.ID | None = None,
    ) -> Connection[PluginType] | None:
        focus = None
        if organization_id is not None:
            pk = organization_pk(organization_id, "organizationId")
            focus = (await plugins.organization_in_scope(principal(info), pk, "organizationId")).id
        return await paginate(
            Plugin.all(), first, after, lambda row: PluginType.from_row(row, focus)
        )

    @strawberry.field(extensions=guard(PLUGINS, Action.READ))
    async def plugin(self, info: Info, id: strawberry.ID) -> PluginType | None:
        return await _plugin(principal(info), pk_of(id, "Plugin"))


@strawberry.type
class PluginMutation:
    @strawberry.mutation(
        extensions=guard(PLUGIN_ENTRIES, Action.CREATE),
        description="Adds an entry to the library (the provider's). CONFLICT on a name taken.",
    )
    async def plugin_create(self, info: Info, input: PluginCreateInput) -> PluginType:
        row = await plugins.create(
            actor(info), input.name, input.version, input.description, input.vendor
        )
        return PluginType.from_row(row)

    @strawberry.mutation(
        extensions=guard(PLUGIN_ENTRIES, Action.UPDATE),
        description="Edits an entry of the library (the provider's).",
    )
    async def plugin_update(self, info: Info, input: PluginUpdateInput) -> PluginType:
        row = await plugins.update(
            actor(info),
            pk_of(input.id, "Plugin", "input.id"),
            name=input.name,
            version=input.version,
            description=input.description,
            vendor=input.vendor,
        )
        return PluginType.from_row(row)

    @strawberry.mutation(
        extensions=guard(PLUGIN_ENTRIES, Action.DELETE),
        description="Removes an entry from the library, and its switches everywhere.",
    )
    async def plugin_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await plugins.delete(actor(info), pk_of(id, "Plugin"))
        return DeletePayload(deleted_id=id)

    @strawberry.mutation(
        extensions=guard(PLUGINS, Action.UPDATE),
        description="Switches a plugin on or off for your organization or one below it. "
        + INHERITANCE
        + " CONFLICT when enabling what an organization above disabled.",
    )
    async def plugin_set_enabled(
        self, info: Info, input: PluginSetEnabledInput
    ) -> PluginActivationType:
        view = await plugins.set_enabled(
            actor(info),
            pk_of(input.plugin_id, "Plugin", "input.pluginId"),
            organization_pk(input.organization_id, "input.organizationId"),
            input.enabled,
        )
        return PluginActivationType.from_view(view)
