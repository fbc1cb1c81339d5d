"""Reading the audit log: placeholder type until the audit package lands."""

from __future__ import annotations

import strawberry


@strawberry.type
class AuditQuery:
    pass
