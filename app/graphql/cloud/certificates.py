"""GraphQL for the gateways' TLS certificates (upload, the active one, delete); guarded by
CLOUD_INFRASTRUCTURE like the rest of the infrastructure."""

from __future__ import annotations

import strawberry

from app.authz.matrix import Action
from app.graphql.cloud.infra_common import CAP, READ, Info, node
from app.graphql.cloud.infra_types import CertificateType
from app.graphql.common import actor, register_node
from app.graphql.ids import pk_of
from app.graphql.pagination import Connection, paginate
from app.graphql.permissions import guard
from app.graphql.tenancy.mutations import DeletePayload
from app.models import Certificate
from app.services import certificates

register_node("Certificate", CAP, node(CertificateType, certificates.certificate_in_scope))


@strawberry.input
class CertificateUploadInput:
    name: str
    certificate_pem: str = strawberry.field(
        description="PEM certificate chain, the gateways' (leaf) certificate first."
    )
    private_key_pem: str = strawberry.field(
        description="Unencrypted PEM private key (RSA or EC) of the leaf certificate; stored "
        "encrypted, never returned."
    )


@strawberry.type
class CertificateQuery:
    @strawberry.field(extensions=READ)
    async def certificates(
        self, first: int | None = None, after: str | None = None
    ) -> Connection[CertificateType] | None:
        return await paginate(Certificate.all(), first, after, CertificateType.from_row)

    @strawberry.field(extensions=READ)
    async def certificate(self, info: Info, id: strawberry.ID) -> CertificateType | None:
        row = await certificates.certificate_in_scope(actor(info), pk_of(id, "Certificate"))
        return CertificateType.from_row(row)


@strawberry.type
class CertificateMutation:
    @strawberry.mutation(
        extensions=guard(CAP, Action.CREATE),
        description="Validates the chain and key; the new certificate becomes the active one.",
    )
    async def certificate_upload(
        self, info: Info, input: CertificateUploadInput
    ) -> CertificateType:
        row = await certificates.upload_certificate(
            actor(info), input.name, input.certificate_pem, input.private_key_pem
        )
        return CertificateType.from_row(row)

    @strawberry.mutation(
        extensions=guard(CAP, Action.DELETE), description="Refused for the active certificate."
    )
    async def certificate_delete(self, info: Info, id: strawberry.ID) -> DeletePayload:
        await certificates.delete_certificate(actor(info), pk_of(id, "Certificate"))
        return DeletePayload(deleted_id=id)
