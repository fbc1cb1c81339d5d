"""Who acts, and from where: what services need of a request, without knowing about HTTP."""

from __future__ import annotations

from dataclasses import dataclass

from app.authz.principal import Principal
from app.errors import Unauthenticated


@dataclass(frozen=True)
class Actor:
    principal: Principal | None
    client_address: str = ""
    request_id: str = ""

    @property
    def p(self) -> Principal:
        if self.principal is None:
            raise Unauthenticated("log in first")
        return self.principal
