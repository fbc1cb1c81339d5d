"""`roleMatrix`: every row of the three portals, with the seeds' own words."""

from __future__ import annotations

import strawberry

from app.authz.matrix import load_matrix


@strawberry.type
class RoleMatrixEntry:
    portal: str = strawberry.field(
        description="Reseller Portal, Client Portal or Department Portal."
    )
    role: str
    functionality: str
    access: str = strawberry.field(description="The seed's cell text: Full, Read, N/A, Read*...")


def role_matrix_entries() -> list[RoleMatrixEntry]:
    entries: list[RoleMatrixEntry] = []
    for pm in load_matrix().portals.values():
        for row in pm.rows:
            for role in pm.roles:
                entries.append(
                    RoleMatrixEntry(
                        portal=pm.label,
                        role=role.name,
                        functionality=row.functionality,
                        access=row.cells[role.name].text,
                    )
                )
    return entries


@strawberry.type
class AuthzQuery:
    @strawberry.field(
        description="The role × functionality matrices of all three portals, whatever the edition."
    )
    def role_matrix(self) -> list[RoleMatrixEntry]:
        return role_matrix_entries()
