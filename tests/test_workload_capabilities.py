"""The managed-workload capabilities against the matrix data: every functionality row of the
three seeds is governed by some object kind, and the job and server families answer the way the
seeds' cells read."""

from __future__ import annotations

import pytest

from app.authz import capabilities as caps
from app.authz import engine
from app.authz.matrix import Action, Functionality, Portal, RoleScope, load_matrix
from tests.permission_cases import make_principal

# Every row governs objects now.
LATER: set[Functionality] = set()


def test_every_row_of_every_matrix_governs_some_object() -> None:
    matrix = load_matrix()
    for portal, pm in matrix.portals.items():
        governed = {c.functionality_for(portal) for c in caps.ALL} - {None}
        missing = {Functionality(r.key) for r in pm.rows} - governed - LATER
        assert not missing, f"{portal.value}: rows without objects: {sorted(missing)}"


def _roles(portal: Portal) -> list[str]:
    return [r.name for r in load_matrix().portals[portal].roles]


@pytest.mark.parametrize("portal", list(Portal))
def test_job_capabilities_follow_each_kinds_row(portal: Portal) -> None:
    for role in _roles(portal):
        p = make_principal(portal, role)
        for (kind, assigned), cap in caps.BACKUP_JOBS.items():
            row = caps.JOB_FUNCTIONALITY[kind]
            if assigned and portal is Portal.CLIENT:
                row = Functionality.PROVIDER_ASSIGNED_JOBS
            cell = p.cell(row)
            has_row = cap.functionality_for(portal) is not None
            for action in (Action.READ, Action.UPDATE):
                want = has_row and cell is not None and action in cell.actions
                assert engine.allows(p, cap, action) is want, (role, kind, assigned, action)


def test_a_company_operates_but_does_not_configure_provider_assigned_jobs() -> None:
    owner = make_principal(Portal.CLIENT, "Company Owner")
    assigned = caps.backup_job("AGENT", True)
    settings = caps.backup_job("AGENT", True, settings=True)
    assert engine.allows(owner, assigned, Action.UPDATE)
    assert engine.allows(owner, settings, Action.READ)
    assert not engine.allows(owner, settings, Action.UPDATE)
    assert not engine.allows(owner, settings, Action.DELETE)
    # Its own agent jobs it configures.
    assert engine.allows(owner, caps.backup_job("AGENT", False, settings=True), Action.UPDATE)
    # The provider configures the jobs it assigned.
    admin = make_principal(Portal.RESELLER, "Service Provider Administrator")
    assert engine.allows(admin, settings, Action.UPDATE)


def test_the_department_portal_has_no_cloud_or_365_products() -> None:
    owner = make_principal(Portal.ENTERPRISE, "Department Owner")
    for kind in ("PUBLIC_CLOUD_POLICY", "MICROSOFT_365"):
        assert not engine.allows(owner, caps.backup_job(kind, False), Action.READ)
    for server in ("MICROSOFT_365", "PUBLIC_CLOUDS", "VEEAM_ONE"):
        assert not engine.allows(owner, caps.backup_server(server), Action.READ)
    assert engine.allows(owner, caps.backup_job("VBR_BACKUP", False), Action.UPDATE)
    assert not engine.allows(owner, caps.FILE_RESTORES, Action.READ)


def test_read_only_rows_refuse_changes_even_for_owners() -> None:
    for portal in Portal:
        for role in _roles(portal):
            p = make_principal(portal, role)
            for cap in (caps.PROTECTED_DATA, caps.MONITORING, caps.VEEAM_ONE):
                for action in (Action.CREATE, Action.UPDATE, Action.DELETE):
                    assert not engine.allows(p, cap, action), (portal, role, cap.kind, action)


def test_only_the_providers_unrestricted_staff_add_to_the_plugin_library() -> None:
    from app.models import OrgKind

    provider_admin = make_principal(Portal.RESELLER, "Service Provider Administrator")
    reseller_admin = make_principal(
        Portal.RESELLER, "Service Provider Administrator", org_kind=OrgKind.RESELLER
    )
    for action in (Action.CREATE, Action.UPDATE, Action.DELETE):
        assert engine.allows(provider_admin, caps.PLUGIN_ENTRIES, action)
        assert not engine.allows(reseller_admin, caps.PLUGIN_ENTRIES, action)
    assert engine.allows(reseller_admin, caps.PLUGIN_ENTRIES, Action.READ)
    assert engine.allows(reseller_admin, caps.PLUGINS, Action.UPDATE)
    owner = make_principal(Portal.CLIENT, "Company Owner")
    assert engine.allows(owner, caps.PLUGINS, Action.UPDATE)
    assert not engine.allows(owner, caps.PLUGIN_ENTRIES, Action.READ)
    assert not engine.allows(owner, caps.PLUGINS, Action.CREATE)
    assert not engine.allows(
        make_principal(Portal.ENTERPRISE, "Department Owner"), caps.PLUGINS, Action.READ
    )


@pytest.mark.parametrize("portal", [Portal.CLIENT, Portal.ENTERPRISE])
def test_the_subtenant_reads_only_starred_rows(portal: Portal) -> None:
    role = next(
        r for r in load_matrix().portals[portal].roles if r.scope is RoleScope.OWN_COMPUTERS
    )
    p = make_principal(portal, role.name)
    starred = {f for f, cell in p.grants.items() if cell.actions}
    assert all(p.grants[f].rule == "subtenant_own_computers" for f in starred)
    assert engine.allows(p, caps.BACKUP_AGENTS, Action.READ)
    assert not engine.allows(p, caps.MANAGED_COMPUTERS, Action.READ)
    assert engine.allows(p, caps.PROTECTED_DATA, Action.READ)
    assert engine.allows(p, caps.MONITORING, Action.READ)
