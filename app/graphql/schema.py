"""The schema: the domain packages' Query and Mutation types merged, with the limits and the
error shaping every request goes through."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.tools import merge_types

from app.graphql.alarms.mutations import AlarmMutation
from app.graphql.alarms.notifications import AlarmNotificationMutation, AlarmNotificationQuery
from app.graphql.alarms.queries import AlarmQuery
from app.graphql.alarms.subscriptions import AlarmSubscription
from app.graphql.audit.queries import AuditQuery
from app.graphql.authz.queries import AuthzQuery
from app.graphql.billing.invoices import InvoiceMutation, InvoiceQuery
from app.graphql.billing.plans import SubscriptionPlanMutation, SubscriptionPlanQuery
from app.graphql.cloud.allocations import AllocationMutation, AllocationQuery
from app.graphql.cloud.certificates import CertificateMutation, CertificateQuery
from app.graphql.cloud.gateways import GatewayMutation, GatewayQuery
from app.graphql.cloud.hardware_plans import HardwarePlanMutation, HardwarePlanQuery
from app.graphql.cloud.networks import CloudNetworkMutation, CloudNetworkQuery
from app.graphql.cloud.remote import RemoteMutation, RemoteQuery
from app.graphql.cloud.repositories import CloudRepositoryMutation, CloudRepositoryQuery
from app.graphql.cloud.reseller_resources import ResellerResourceMutation, ResellerResourceQuery
from app.graphql.cloud.tenants import TenantMutation, TenantQuery
from app.graphql.common import Node, resolve_node
from app.graphql.context import Context
from app.graphql.errors import ErrorCodes, shape_errors
from app.graphql.failover.plans import FailoverPlanMutation, FailoverPlanQuery
from app.graphql.failover.sessions import (
    FailoverSessionMutation,
    FailoverSessionQuery,
    FailoverSessionSubscription,
)
from app.graphql.identity.mutations import IdentityMutation
from app.graphql.identity.queries import IdentityQuery
from app.graphql.identity.types import UserType
from app.graphql.jobs.mutations import JobMutation
from app.graphql.jobs.queries import JobQuery
from app.graphql.jobs.subscriptions import JobSubscription
from app.graphql.permissions import authenticated
from app.graphql.tenancy.mutations import TenancyMutation
from app.graphql.tenancy.queries import TenancyQuery
from app.graphql.tenancy.types import (
    CompanyType,
    LocationType,
    ResellerType,
    ServiceProviderType,
)
from app.graphql.workloads.agent_keys import AgentKeyMutation, AgentKeyQuery
from app.graphql.workloads.discovery import DiscoveryMutation, DiscoveryQuery
from app.graphql.workloads.licensing import LicensingMutation, LicensingQuery
from app.graphql.workloads.monitoring import MonitoringQuery
from app.graphql.workloads.operations import BackupJobOperationMutation
from app.graphql.workloads.plugins import PluginMutation, PluginQuery
from app.graphql.workloads.protected import ProtectedDataQuery
from app.graphql.workloads.queries import WorkloadQuery
from app.graphql.workloads.reports import BackupReportMutation, BackupReportQuery
from app.graphql.workloads.restores import FileRestoreMutation, FileRestoreQuery
from app.graphql.workloads.veeam_one import VeeamOneQuery
from app.settings import get_settings


@strawberry.type
class NodeQuery:
    @strawberry.field(
        extensions=authenticated(),
        description="Any object by its global id; NOT_FOUND when outside your scope.",
    )
    async def node(self, info: strawberry.Info[Context, Any], id: strawberry.ID) -> Node | None:
        return await resolve_node(info, id)


from app.graphql.identity.user_mutations import UserMutation  # noqa: E402
from app.graphql.identity.user_queries import UserQuery  # noqa: E402

Query = merge_types(
    "Query",
    (
        NodeQuery,
        AuthzQuery,
        IdentityQuery,
        TenancyQuery,
        AuditQuery,
        UserQuery,
        JobQuery,
        CloudRepositoryQuery,
        GatewayQuery,
        CertificateQuery,
        HardwarePlanQuery,
        CloudNetworkQuery,
        TenantQuery,
        AllocationQuery,
        RemoteQuery,
        ResellerResourceQuery,
        LicensingQuery,
        PluginQuery,
        VeeamOneQuery,
        WorkloadQuery,
        ProtectedDataQuery,
        MonitoringQuery,
        AgentKeyQuery,
        DiscoveryQuery,
        FileRestoreQuery,
        BackupReportQuery,
        FailoverPlanQuery,
        FailoverSessionQuery,
        SubscriptionPlanQuery,
        InvoiceQuery,
        AlarmQuery,
        AlarmNotificationQuery,
    ),
)
Mutation = merge_types(
    "Mutation",
    (
        IdentityMutation,
        TenancyMutation,
        UserMutation,
        JobMutation,
        CloudRepositoryMutation,
        GatewayMutation,
        CertificateMutation,
        HardwarePlanMutation,
        CloudNetworkMutation,
        TenantMutation,
        AllocationMutation,
        RemoteMutation,
        ResellerResourceMutation,
        LicensingMutation,
        PluginMutation,
        AgentKeyMutation,
        BackupJobOperationMutation,
        DiscoveryMutation,
        FileRestoreMutation,
        BackupReportMutation,
        FailoverPlanMutation,
        FailoverSessionMutation,
        SubscriptionPlanMutation,
        InvoiceMutation,
        AlarmMutation,
        AlarmNotificationMutation,
    ),
)
Subscription = merge_types(
    "Subscription", (JobSubscription, FailoverSessionSubscription, AlarmSubscription)
)


# Guarded query fields are nullable: a field the viewer may not read, or an object outside
# their scope, comes back as null with its error, and the rest of the answer survives (a
# denied non-null field would null its parents up to `data: null`).
class TenantrySchema(strawberry.Schema):
    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        # Expected errors are part of the API; unexpected ones are logged by ErrorCodes.
        return None

    async def execute(
        self,
        query: Any,
        variable_values: Any = None,
        context_value: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:  # type: ignore[override]
        # ParserCache parses in its own hook: a syntax error or the token limit ends the
        # operation before ErrorCodes runs, so shape what is left here.
        result = await super().execute(query, variable_values, context_value, *args, **kwargs)
        if result.errors:
            result.errors = shape_errors(result.errors, getattr(context_value, "request_id", ""))
        return result

    async def stream(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        # Subscriptions (and operations over WebSocket): every result leaves with its code,
        # like an HTTP answer, including the refusal before the stream starts.
        source = await super().stream(*args, **kwargs)
        request_id = getattr(kwargs.get("context_value"), "request_id", "")

        async def shaped() -> Any:
            async with aclosing(source):
                async for result in source:
                    errors = getattr(result, "errors", None)
                    if errors:
                        result.errors = shape_errors(errors, request_id)  # type: ignore[union-attr]
                    yield result

        return shaped()


def build_schema() -> strawberry.Schema:
    settings = get_settings()
    limit_rules = [
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_aliases).validation_rules,
    ]
    return TenantrySchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[ServiceProviderType, CompanyType, ResellerType, LocationType, UserType],
        extensions=[
            # The limit rules are built once: ValidationCache keys on the rule classes, and a
            # limiter built per request brings new classes, so the cache would never hit.
            lambda: AddValidationRules(limit_rules),
            lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
            lambda: ParserCache(maxsize=256),
            lambda: ValidationCache(maxsize=256),
            ErrorCodes,
        ],
    )


schema = build_schema()
