"""Every principal of the world, every operation of the tenant tree, users and logs: the API
answers what the matrix says. Expectations are computed from the matrix through the engine
(tests/permission_cases.py), never from role names.

One world per principal (cheap), one subtest per operation, with ids like
"CLIENT/Location Administrator@A1/LOCATIONS/CREATE/locationCreate".
"""

from __future__ import annotations

import pytest

from app.authz.matrix import load_matrix
from tests.factories import build_world
from tests.permission_cases import EDITIONS, OPERATIONS, Subject, build_scene, run_cases, subjects

ALL_SUBJECTS = [s for edition in EDITIONS for s in subjects(edition)]


@pytest.mark.parametrize("subject", ALL_SUBJECTS, ids=[s.id for s in ALL_SUBJECTS])
async def test_operations_follow_the_matrix(
    subject: Subject, use_settings, db, gql, subtests
) -> None:
    use_settings(edition=subject.edition)  # before the world: it builds that edition's roles
    world = await build_world()
    scene = await build_scene(world, subject, enterprise=subject.edition == "enterprise")
    results = await run_cases(scene, gql, subtests)
    assert len(results) == sum(1 for op in OPERATIONS if op.applies(scene))


def test_every_world_role_is_covered() -> None:
    """Each role of each portal appears, for both editions (department roles in enterprise)."""
    for edition in EDITIONS:
        covered = {(s.portal, s.role) for s in subjects(edition)}
        for portal in {s.portal for s in subjects(edition)}:
            for role in load_matrix().portals[portal].roles:
                assert (portal, role.name) in covered


SPOT_CHECKS = {
    # The seeds' words, checked by hand against what the computed table expects and gets.
    Subject("service_provider", "Provider", "Service Provider Operator"): {
        "COMPANIES/UPDATE/companyUpdate": None,  # Full (except for creation and removal)
        "COMPANIES/CREATE/companyCreate": "FORBIDDEN",
        "COMPANIES/DELETE/companyDelete": "FORBIDDEN",
        "LOCATIONS/CREATE/locationCreate": None,
        "USERS/CREATE/userCreate": None,  # Only managed companies users...
        "USERS/CREATE/userCreate@own-org": "FORBIDDEN",  # ...not the provider's own staff
        "AUDIT_LOG/READ/auditLog": None,
    },
    Subject("service_provider", "A1", "Location Administrator"): {
        "LOCATIONS/CREATE/locationCreate": "FORBIDDEN",  # Only portal users
        "LOCATIONS/UPDATE/locationUpdate": "FORBIDDEN",
        "COMPANIES/UPDATE/companyUpdate": "FORBIDDEN",
        "USERS/CREATE/userCreate": None,
        "USERS/DELETE/userDelete": None,
        "AUDIT_LOG/READ/auditLog": "FORBIDDEN",  # Logs is a Reseller Portal row
    },
    Subject("service_provider", "R1", "Service Provider Global Administrator"): {
        "RESELLERS/CREATE/resellerCreate": "FORBIDDEN",  # resellers hang under the provider
        "RESELLERS/UPDATE/resellerUpdate": None,
        "COMPANIES/DELETE/companyDelete": None,
    },
    Subject("service_provider", "A1", "Company Owner"): {
        "COMPANIES/UPDATE/companyUpdate": None,  # company info
        "COMPANIES/UPDATE/companyDisable": "FORBIDDEN",  # not its own organization
        "COMPANIES/CREATE/companyCreate": "FORBIDDEN",
        "RESELLERS/READ/resellers": "FORBIDDEN",
    },
    Subject("enterprise", "A1", "Department User"): {
        "USERS/READ/users": "FORBIDDEN",  # Configuration tasks: N/A
        "COMPANIES/READ/company": "FORBIDDEN",
    },
}


@pytest.mark.parametrize("subject", list(SPOT_CHECKS), ids=[s.id for s in SPOT_CHECKS])
async def test_spot_checks_of_the_computed_table(
    subject: Subject, use_settings, db, gql, subtests
) -> None:
    use_settings(edition=subject.edition)
    world = await build_world()
    scene = await build_scene(world, subject, enterprise=subject.edition == "enterprise")
    results = await run_cases(scene, gql, subtests)
    for suffix, wanted in SPOT_CHECKS[subject].items():
        assert results[f"{subject.id}/{suffix}"] == (wanted, wanted), suffix


def test_the_table_is_not_trivial() -> None:
    """Each operation is refused to some role and (but resellers' removal/creation) allowed to
    some other, by the matrix alone (field level, unrestricted principals)."""
    from app.authz import engine
    from app.authz.matrix import Portal
    from tests.permission_cases import CAPABILITIES, make_principal

    for op in OPERATIONS:
        answers = {
            engine.allows(make_principal(portal, r.name), CAPABILITIES[op.capability], op.action)
            for portal in Portal
            for r in load_matrix().portals[portal].roles
        }
        assert answers == {True, False}, op.field


async def test_location_administrator_reads_its_own_locations_and_company(world, gql) -> None:
    from app.graphql.ids import to_global_id

    token = world.token("A1", "Location Administrator")
    east = to_global_id("Location", world.locations["A1-East"].id)
    body = await gql("query($id: ID!) { location(id: $id) { name } }", {"id": east}, token=token)
    assert body.get("data") == {"location": {"name": "East"}}, body
    body = await gql("{ locations(first: 10) { nodes { name } } }", token=token)
    assert body.get("data") == {"locations": {"nodes": [{"name": "East"}]}}, body
