"""`POST /ingest/v1/batch`: backup servers and management agents report in.

Authentication: `Authorization: Bearer tna_…`, an agent key issued with the GraphQL mutation
`agentKeyCreate` (shown once). The key binds the batch to one company; new computers, servers
and jobs land in the key's location. Body: one JSON object (the request body limit,
`TENANTRY_MAX_BODY_BYTES`, default 1 MB, applies; larger reports go in several batches):

    {
      "reportedAt": "2026-11-23T10:00:00Z",
      "servers":   [{"uid", "kind": BACKUP_AND_REPLICATION|MICROSOFT_365|PUBLIC_CLOUDS|VEEAM_ONE,
                     "name", "version"?}],
      "computers": [{"uid", "hostname", "osFamily"?: WINDOWS|LINUX|MAC|OTHER, "osName"?,
                     "ipAddresses"?: [..]}],
      "agents":    [{"computer": uid, "platform": WINDOWS|LINUX|MAC, "edition": SERVER|WORKSTATION,
                     "version"?, "policy"?, "status"?: HEALTHY|WARNING|ERROR|INACCESSIBLE|UNKNOWN}],
      "jobs":      [{"uid", "kind": AGENT|VBR_BACKUP|BACKUP_COPY|REPLICATION|PUBLIC_CLOUD_POLICY|
                     MICROSOFT_365, "name", "computer": uid (AGENT) | "server": uid (others),
                     "target"?: {"kind": CLOUD|LOCAL, "tenantAccount"?, "repository"?,
                                 "subtenant"?: e-mail, "name"?},
                     "schedule"?: cron, "enabled"?: bool, "assignedByProvider"?: bool}],
      "sessions":  [{"uid", "job": uid, "result"?: NONE|SUCCESS|WARNING|FAILED, "startedAt",
                     "endedAt"?, "processedBytes"?, "transferredBytes"?, "warnings"?,
                     "messages"?: [..]}],
      "restorePoints": [{"uid", "computer": uid, "job"?: uid, "createdAt", "sizeBytes"?,
                         "targetKind"?: CLOUD|LOCAL}],
      "heartbeats": [{"computer": uid | "server": uid, "at", "status"?}],
      "veeamOne":  [{"uid", "server": uid, "objectName", "metric", "value"?, "severity"?:
                     INFO|WARNING|ERROR, "message"?, "recordedAt"}],
      "acks":      [{"job": uid, "command": START|STOP|RETRY}]
    }

Every list is optional and holds at most 1,000 records; times are ISO 8601 with a time zone.
Natural keys: computer, server and job `uid` per company; session `uid` per job; restore point
`uid` per computer; Veeam ONE record `uid` per server. A record may refer to one sent in the
same batch or earlier.

Answers:
* 200 `{"accepted": {list: count}, "rejected": [{"list", "index", "uid", "reason"}],
  "commands": [{"job": uid, "command": START|STOP|RETRY}]}`: the accepted records are written
  in one transaction, each rejected one is listed with its reason. `commands` are what the
  console asked of the company's jobs; acknowledge each (in `acks` of a later batch) once
  carried out, or it is sent again.
* 400 `{"code": "BAD_USER_INPUT", "message", "field"?}`: not JSON, not an object, an unknown or
  oversized list, a missing or malformed `reportedAt`; nothing is written.
* 413 (GraphQL-style `errors` with code BAD_USER_INPUT, from the request middleware): the body
  is over the limit; nothing is written.
* 401 `{"code": "UNAUTHENTICATED"}`: no, unknown or revoked key. 403 `{"code": "FORBIDDEN"}`:
  the key's company (or its reseller) is disabled.

Idempotent: the same batch sent twice changes nothing the second time. A report older than the
last one does not turn back a job's settings, its last run, a heartbeat or a Veeam ONE record;
a session reported running after it was reported finished stays finished. Order by
`reportedAt`: a computer (hostname, OS, addresses), a backup server (name, version), an agent
(version, policy, status…), a job, a session and a restore point keep the `reportedAt` of the
batch that last wrote them, and a batch older than that (a retry, a replay delivered late)
leaves them, the daily rollups and the job's last run as they are, so a rename or a correction
(FAILED, then WARNING once the server re-checked the session) stands; a batch with the same
`reportedAt` is applied (the last one delivered wins); a newer batch with the same values only
moves that time. Rows stored before the server reported times (sessions and restore points
before migration 0015, computers, servers and agents before 0016) and computers a discovery
registered (claimed by the report) take the next report whatever its time, then follow the
rule. Heartbeats have their own time (`at`): the newest wins, whatever the batch's.
"""

from __future__ import annotations

import json
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.errors import BadInput, TenantryError, Unauthenticated
from app.services import ingestion
from app.services.agent_keys import authenticate_agent_key

log = logging.getLogger(__name__)

STATUS = {"UNAUTHENTICATED": 401, "FORBIDDEN": 403, "BAD_USER_INPUT": 400}


def _error(exc: TenantryError) -> JSONResponse:
    body = {"code": exc.code, "message": exc.message}
    if exc.field:
        body["field"] = exc.field
    return JSONResponse(body, status_code=STATUS.get(exc.code, 500))


async def ingest_batch(request: Request) -> JSONResponse:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not credential.strip():
            raise Unauthenticated("send the agent key as 'Authorization: Bearer <key>'")
        key = await authenticate_agent_key(credential.strip())
        try:
            payload = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise BadInput("the body is not JSON") from None
        result = await ingestion.ingest(key, payload)
    except TenantryError as exc:
        return _error(exc)
    return JSONResponse(result.as_json())


routes = [Route("/ingest/v1/batch", ingest_batch, methods=["POST"])]
