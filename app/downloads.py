"""File downloads that GraphQL cannot carry: the CSV an audit-log export job wrote.

GET /exports/{job id} with the same bearer credential as the API. The job must be in the
caller's scope (NOT_FOUND otherwise, as everywhere) and finished.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from app.auth.authenticate import principal_for_bearer
from app.authz.principal import Principal
from app.errors import Conflict, NotFound, TenantryError, Unauthenticated
from app.graphql.context import bearer_from
from app.graphql.ids import pk_of
from app.jobs.audit_export import AUDIT_LOG_EXPORT, export_path
from app.models import JobState
from app.services.jobs import job_in_scope

STATUS = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "BAD_USER_INPUT": 400,
    "CONFLICT": 409,
}


def error_response(exc: TenantryError) -> JSONResponse:
    body = {"errors": [{"message": exc.message, "extensions": exc.extensions}]}
    return JSONResponse(body, status_code=STATUS.get(exc.code, 500))


async def request_principal(request: Request) -> Principal:
    """The caller of a download, from the same bearer credential as the API."""
    credential = bearer_from(request)
    if credential is None:
        raise Unauthenticated("send 'Authorization: Bearer <token>'")
    return await principal_for_bearer(credential)


async def download_export(request: Request) -> Response:
    try:
        principal = await request_principal(request)
        job = await job_in_scope(principal, pk_of(request.path_params["job_id"], "Job"))
        if job.kind != AUDIT_LOG_EXPORT.name:
            raise NotFound("export")
        if job.state is not JobState.SUCCEEDED:
            raise Conflict(f"the export is {job.state.value.lower()}, not ready")
        path = export_path(job.id)
        if not path.is_file():
            raise NotFound("export file (removed by maintenance?)")
    except TenantryError as exc:
        return error_response(exc)
    return FileResponse(path, media_type="text/csv", filename=f"audit-log-{job.id}.csv")
